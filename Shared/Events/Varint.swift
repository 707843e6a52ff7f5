/// LEB128, protobuf's varint: seven bits a byte, least significant first. One implementation for OTLP's protobuf
/// reader and writer and the rollups' packed sketches.
public enum Varint {
    public enum Invalid: Error, Equatable {
        /// The input ended inside the varint.
        case truncated
        /// More than ten bytes, or a tenth byte above 1: wider than 64 bits.
        case overlong
    }

    @inlinable
    public static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Reads the varint at `index` in `bytes[..<end]` and moves `index` past it. `end` must not exceed `bytes.count`.
    @inlinable
    public static func read(_ bytes: UnsafeRawBufferPointer, at index: inout Int, end: Int) throws(Invalid) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < end else { throw .truncated }
            let byte = bytes[index]
            index += 1
            if shift == 63 && byte > 1 { throw .overlong }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }
}
