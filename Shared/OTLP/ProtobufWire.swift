import Events

/// Protocol Buffers wire format (https://protobuf.dev/programming-guides/encoding/), the part OTLP needs.
///
/// Why not swift-protobuf: OTLP/HTTP's JSON encoding is not proto3's JSON mapping (ids are hex, not base64), so JSON
/// needs its own reader anyway, and the gateway wants only a dozen fields of a span: this reader skips everything
/// else without building it, bounds every length against the buffer, and keeps only allow-listed attributes.
/// It is fuzzed (`make fuzz`) and tested against bodies written by the OpenTelemetry Python SDK.
struct ProtobufReader {
    struct Malformed: Error {
        let reason: String
    }

    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    let bytes: UnsafeRawBufferPointer
    private(set) var index: Int
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.index = 0
        self.end = bytes.count
    }

    private init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
        self.bytes = bytes
        self.index = range.lowerBound
        self.end = range.upperBound
    }

    /// The next field's number and wire type, or nil at the end of this message.
    mutating func nextField() throws(Malformed) -> (number: UInt64, wireType: WireType)? {
        guard self.index < self.end else { return nil }
        let tag = try self.varint()
        guard let wire = WireType(rawValue: UInt8(tag & 7)) else { throw Malformed(reason: "invalid wire type \(tag & 7)") }
        let number = tag >> 3
        guard number >= 1, number <= 536_870_911 else { throw Malformed(reason: "invalid field number \(number)") }
        return (number, wire)
    }

    mutating func varint() throws(Malformed) -> UInt64 {
        do throws(Varint.Invalid) {
            return try Varint.read(self.bytes, at: &self.index, end: self.end)
        } catch {
            throw Malformed(reason: error == .truncated ? "truncated varint" : "varint longer than 64 bits")
        }
    }

    mutating func fixed64() throws(Malformed) -> UInt64 {
        guard self.end - self.index >= 8 else { throw Malformed(reason: "truncated fixed64") }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(self.bytes[self.index + i]) << (8 * UInt64(i)) }
        self.index += 8
        return value
    }

    mutating func fixed32() throws(Malformed) -> UInt32 {
        guard self.end - self.index >= 4 else { throw Malformed(reason: "truncated fixed32") }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(self.bytes[self.index + i]) << (8 * UInt32(i)) }
        self.index += 4
        return value
    }

    /// A length-delimited field's byte range, checked against the enclosing message.
    mutating func lengthDelimited() throws(Malformed) -> Range<Int> {
        let length = try self.varint()
        guard length <= UInt64(self.end - self.index) else { throw Malformed(reason: "length \(length) runs past the end of the message") }
        let start = self.index
        self.index += Int(length)
        return start..<self.index
    }

    /// A reader over an embedded message.
    mutating func message() throws(Malformed) -> ProtobufReader {
        ProtobufReader(self.bytes, range: try self.lengthDelimited())
    }

    mutating func string() throws(Malformed) -> String {
        let range = try self.lengthDelimited()
        guard let s = utf8String(UnsafeRawBufferPointer(rebasing: self.bytes[range])) else {
            throw Malformed(reason: "string is not valid UTF-8")
        }
        return s
    }

    mutating func bytesField() throws(Malformed) -> [UInt8] {
        Array(UnsafeRawBufferPointer(rebasing: self.bytes[try self.lengthDelimited()]))
    }

    /// Skips a field this reader does not use. Groups (deprecated, never in OTLP) are refused.
    mutating func skip(_ wire: WireType) throws(Malformed) {
        switch wire {
        case .varint: _ = try self.varint()
        case .fixed64: _ = try self.fixed64()
        case .fixed32: _ = try self.fixed32()
        case .lengthDelimited: _ = try self.lengthDelimited()
        case .startGroup, .endGroup: throw Malformed(reason: "groups are not supported")
        }
    }

    /// Checks a known field's wire type.
    static func expect(_ wire: WireType, _ expected: WireType, field: String) throws(Malformed) {
        guard wire == expected else { throw Malformed(reason: "\(field) has wire type \(wire.rawValue), expected \(expected.rawValue)") }
    }
}

/// Writes protobuf messages: the gateway's OTLP responses, and request bodies for tests and benchmarks.
public struct ProtobufWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    mutating func tag(_ field: UInt64, _ wire: ProtobufReader.WireType) {
        self.varint(field << 3 | UInt64(wire.rawValue))
    }

    public mutating func varint(_ value: UInt64) {
        Varint.append(value, to: &self.bytes)
    }

    public mutating func varintField(_ field: UInt64, _ value: UInt64) {
        self.tag(field, .varint)
        self.varint(value)
    }

    public mutating func fixed64Field(_ field: UInt64, _ value: UInt64) {
        self.tag(field, .fixed64)
        for i in 0..<8 { self.bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    public mutating func bytesField(_ field: UInt64, _ value: some Collection<UInt8>) {
        self.tag(field, .lengthDelimited)
        self.varint(UInt64(value.count))
        self.bytes.append(contentsOf: value)
    }

    public mutating func stringField(_ field: UInt64, _ value: String) {
        self.bytesField(field, Array(value.utf8))
    }

    public mutating func messageField(_ field: UInt64, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        self.bytesField(field, inner.bytes)
    }
}
