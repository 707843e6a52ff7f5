import Events
import Foundation

/// Reads a stored sketch: a flat JSON object of whole counts, as Postgres prints jsonb (`{"z": 3, "412": 10}`).
///
/// The aggregator reads back every watched row it merges into, and the query service every row it answers from;
/// Foundation's JSONSerialization builds a tree of boxed numbers for each and cost more than the merge itself. The
/// strict scanner yields the pairs in order, counts as `Int64` in 0...2^53 (`exactCount`'s rule).
public enum StoredSketch {
    public typealias Entry = (key: String, count: Int64)

    /// The pairs of `text`; throws unless it is one object of string keys and whole counts in 0...2^53.
    static func entries(_ text: String, column: String) throws -> [Entry] {
        var text = text
        guard let entries = text.withUTF8({ Self.flatCounts(UnsafeRawBufferPointer($0)) }) else {
            throw SketchError(message: "column \(column): must be an object of whole counts in 0...2^53")
        }
        return entries
    }

    static func flatCounts(_ bytes: UnsafeRawBufferPointer) -> [Entry]? {
        var s = JSONScanner(bytes)
        var out: [Entry] = []
        do {
            try s.expect(UInt8(ascii: "{"), "an object")
            if !s.consume(UInt8(ascii: "}")) {
                repeat {
                    guard s.peek() == UInt8(ascii: "\"") else { return nil }
                    let key = try s.readString(maxLength: 1024)
                    try s.expect(UInt8(ascii: ":"), "':'")
                    let n = try s.readNumber()
                    guard n.isIntegerLiteral, !n.negative, !n.truncated, n.exponent == 0, n.mantissa <= UInt64(EventLimits.maxExactJSONInteger) else { return nil }
                    out.append((key, Int64(n.mantissa)))
                } while s.consume(UInt8(ascii: ","))
                try s.expect(UInt8(ascii: "}"), "',' or '}'")
            }
            s.skipWhitespace()
            return s.isAtEnd ? out : nil
        } catch {
            return nil
        }
    }

    /// The bytes of a stored JSON string holding base64 (a sketch's dense or packed form), nil unless `text` is one.
    static func base64String(_ text: String) -> Data? {
        guard text.utf8.count >= 2, text.utf8.first == UInt8(ascii: "\""), text.utf8.last == UInt8(ascii: "\"") else { return nil }
        return Data(base64Encoded: String(text.dropFirst().dropLast()))
    }

    /// The pairs of a parsed JSON object (a topic payload), each count checked by `exactCount`.
    static func entries(_ object: [String: Any], invalid: (String) -> SketchError) throws -> [Entry] {
        try object.map { key, value in
            guard let n = exactCount(value) else { throw invalid(key) }
            return (key, n)
        }
    }
}

extension StoredSketch {
    /// `{"k":v,...}`, byte by byte: the stored form every sketch shares (the aggregator writes one for every watched
    /// row it merges), with `zero` first under the key `z` when given.
    static func json<K: BinaryInteger, V: BinaryInteger>(_ pairs: some Sequence<(K, V)>, zero: Int64? = nil, capacity: Int) -> String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(capacity)
        func key(_ write: (inout [UInt8]) -> Void) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            write(&out)
            out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        }
        if let zero {
            key { $0.append(UInt8(ascii: "z")) }
            out.appendDecimal(zero)
        }
        for (k, v) in pairs {
            key { $0.appendDecimal(k) }
            out.appendDecimal(v)
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}
