import Events
import Testing

@Suite("Varint (LEB128), shared by OTLP's protobuf and the packed sketches")
struct VarintTests {
    private func read(_ bytes: [UInt8]) -> Result<(UInt64, Int), Varint.Invalid> {
        bytes.withUnsafeBytes { raw in
            var index = 0
            do throws(Varint.Invalid) {
                let value = try Varint.read(raw, at: &index, end: raw.count)
                return .success((value, index))
            } catch {
                return .failure(error)
            }
        }
    }

    @Test("values round trip in as many bytes as their significant bits need, seven a byte")
    func roundTrip() throws {
        for (value, length) in [(UInt64(0), 1), (1, 1), (127, 1), (128, 2), (300, 2), (16_383, 2), (16_384, 3), (UInt64(UInt32.max), 5), (UInt64(Int64.max), 9), (UInt64.max, 10)] {
            var bytes: [UInt8] = [0xAA]  // appended after what is there
            Varint.append(value, to: &bytes)
            #expect(bytes.count == 1 + length, "\(value)")
            let (read, end) = try self.read(Array(bytes.dropFirst())).get()
            #expect(read == value)
            #expect(end == length, "the index moves past the varint, no further")
        }
        // Protobuf's own example: 150 is 0x96 0x01.
        var bytes: [UInt8] = []
        Varint.append(150, to: &bytes)
        #expect(bytes == [0x96, 0x01])
    }

    @Test("a varint cut short or wider than 64 bits is refused, never wrapped")
    func refused() {
        #expect(throws: Varint.Invalid.truncated) { try self.read([]).get() }
        #expect(throws: Varint.Invalid.truncated) { try self.read([0x80, 0x80]).get() }
        // Ten bytes whose last holds more than the 64th bit, and eleven bytes.
        #expect(throws: Varint.Invalid.overlong) { try self.read(Array(repeating: 0xFF, count: 9) + [0x02]).get() }
        #expect(throws: Varint.Invalid.overlong) { try self.read(Array(repeating: 0x80, count: 10) + [0x00]).get() }
        // Reading stops at `end`, not at the buffer's end.
        let bytes: [UInt8] = [0x96, 0x01]
        bytes.withUnsafeBytes { raw in
            var index = 0
            #expect(throws: Varint.Invalid.truncated) { try Varint.read(raw, at: &index, end: 1) }
        }
    }
}
