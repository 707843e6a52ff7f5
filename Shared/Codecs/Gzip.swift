import CZlib

/// Why a compressed body was refused.
public struct GzipError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case invalid, tooLarge }
    public let kind: Kind
    public let message: String
    public var description: String { self.message }
}

/// gzip over zlib, with a bound on the output: a small body that inflates to gigabytes (a gzip bomb) is refused
/// as soon as the bound is crossed, without ever holding more than the bound in memory.
public enum Gzip {
    public static func decompress(_ input: [UInt8], maxOutput: Int) throws(GzipError) -> [UInt8] {
        var stream = z_stream()
        // 15 + 16: a gzip wrapper (not raw deflate or zlib).
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw GzipError(kind: .invalid, message: "gzip: cannot initialize")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        // A gzip member ends with its uncompressed size (ISIZE, mod 2^32): untrusted, but within the bound it lets
        // the output be allocated once instead of doubling (which held up to three times a 20 MB body at once); a
        // lie costs nothing, since pages never written are never resident.
        output.reserveCapacity(min(maxOutput, max(Self.declaredSize(input) ?? 0, input.count * 4, 4096)))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var status: Int32 = Z_OK
        var failure: GzipError?
        input.withUnsafeBufferPointer { inBuffer in
            stream.next_in = UnsafeMutablePointer(mutating: inBuffer.baseAddress)
            stream.avail_in = uInt(inBuffer.count)
            // RFC 1952 §2.2: a gzip file is a series of members (what `cat a.gz b.gz` and streaming compressors
            // make); every one is inflated, into the same bound. Bytes after the last member that do not start
            // another one are refused, never ignored: they may be data the client believes it sent.
            while true {
                repeat {
                    chunk.withUnsafeMutableBufferPointer { outBuffer in
                        stream.next_out = outBuffer.baseAddress
                        stream.avail_out = uInt(outBuffer.count)
                        status = inflate(&stream, Z_NO_FLUSH)
                    }
                    let produced = chunk.count - Int(stream.avail_out)
                    if output.count + produced > maxOutput {
                        failure = GzipError(kind: .tooLarge, message: "gzip body inflates to more than \(maxOutput) bytes")
                        return
                    }
                    output.append(contentsOf: chunk[0..<produced])
                    if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
                } while status == Z_OK
                guard status == Z_STREAM_END, stream.avail_in > 0 else { return }
                let next = stream.next_in!
                guard stream.avail_in >= 2, next[0] == 0x1f, next[1] == 0x8b else {
                    failure = GzipError(kind: .invalid, message: "gzip body has \(stream.avail_in) bytes of trailing data after its last member")
                    return
                }
                guard inflateReset(&stream) == Z_OK else {
                    failure = GzipError(kind: .invalid, message: "gzip: cannot start the next member")
                    return
                }
            }
        }
        if let failure { throw failure }
        guard status == Z_STREAM_END else { throw GzipError(kind: .invalid, message: "gzip body is corrupt or truncated") }
        return output
    }

    /// The uncompressed size a gzip body declares in its last member's trailer (ISIZE, RFC 1952: mod 2^32, and
    /// untrusted); nil when the body is too short to be gzip.
    public static func declaredSize(_ input: [UInt8]) -> Int? {
        guard input.count >= 18 else { return nil }
        return input[(input.count - 4)...].reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    /// Compresses `input` (tests, clients written in Swift).
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        input.withUnsafeBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = UnsafeMutablePointer(mutating: inBuffer.baseAddress)
                stream.avail_in = uInt(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = uInt(outBuffer.count)
                deflate(&stream, Z_FINISH)
            }
        }
        return Array(output[0..<Int(stream.total_out)])
    }
}
