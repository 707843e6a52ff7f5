import Foundation

/// A value that can be sent as a query parameter (text format).
public protocol PostgresEncodable: Sendable {
    /// The value in Postgres's text input format; nil for NULL.
    var postgresText: String? { get }
}

/// A value that can be read from a result column (text format).
public protocol PostgresDecodable {
    init(postgresText: String) throws(PostgresError)
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public init(postgresText: String) { self = postgresText }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw PostgresError(.decoding, "not a boolean: \(postgresText)")
        }
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        if self.isNaN { return "NaN" }
        if self.isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return String(self)
    }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Double(postgresText) else { throw PostgresError(.decoding, "not a number: \(postgresText)") }
        self = value
    }
}

extension FixedWidthInteger where Self: Sendable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Self(postgresText) else { throw PostgresError(.decoding, "not an integer of \(Self.self): \(postgresText)") }
        self = value
    }
}

extension Int: PostgresEncodable, PostgresDecodable {}
extension Int64: PostgresEncodable, PostgresDecodable {}
extension Int32: PostgresEncodable, PostgresDecodable {}
extension Int16: PostgresEncodable, PostgresDecodable {}

/// bytea, in hex format (`\x0aff`).
extension Array: PostgresEncodable where Element == UInt8 {
    public var postgresText: String? {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        out.reserveCapacity(2 + self.count * 2)
        for b in self {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array: PostgresDecodable where Element == UInt8 {
    public init(postgresText: String) throws(PostgresError) {
        let utf8 = Array<UInt8>(postgresText.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            throw PostgresError(.decoding, "not a hex bytea value")
        }
        func nibble(_ c: UInt8) throws(PostgresError) -> UInt8 {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: throw PostgresError(.decoding, "not a hex digit in bytea")
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var i = 2
        while i < utf8.count {
            bytes.append(try nibble(utf8[i]) << 4 | nibble(utf8[i + 1]))
            i += 2
        }
        self = bytes
    }
}

/// timestamptz: sent as ISO 8601 with microseconds; read in the ISO DateStyle the connection sets, in UTC.
extension Date: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        let micros = (self.timeIntervalSince1970 * 1_000_000).rounded()
        let seconds = Int64((micros / 1_000_000).rounded(.down))
        let fraction = Int64(micros) - seconds * 1_000_000
        return Self.isoString(seconds: seconds, micros: fraction)
    }

    static func isoString(seconds: Int64, micros: Int64) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        let date = String(format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, Int32(micros))
        return date
    }

    public init(postgresText: String) throws(PostgresError) {
        // "2026-11-23 06:37:02.123456+00" (ISO DateStyle, UTC session time zone)
        let text = Array(postgresText.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= text.count else { return nil }
            var v = 0
            for i in range {
                guard text[i] >= 48 && text[i] <= 57 else { return nil }
                v = v * 10 + Int(text[i] - 48)
            }
            return v
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { throw PostgresError(.decoding, "not a timestamp: \(postgresText)") }
        var i = 19
        var fraction = 0.0
        if i < text.count, text[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < text.count, text[i] >= 48, text[i] <= 57 {
                fraction += Double(text[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset = 0
        if i < text.count, text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") {
            let sign = text[i] == UInt8(ascii: "-") ? -1 : 1
            guard let oh = number((i + 1)..<(i + 3)) else { throw PostgresError(.decoding, "bad time zone in \(postgresText)") }
            var om = 0
            if i + 5 < text.count + 1, i + 3 < text.count, text[i + 3] == UInt8(ascii: ":"), let m = number((i + 4)..<(i + 6)) { om = m }
            offset = sign * (oh * 3600 + om * 60)
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        self = Date(timeIntervalSince1970: Double(seconds - offset) + fraction)
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self.flatMap(\.postgresText) }
}
