/// An instant with microsecond precision, written as RFC 3339 in UTC.
public struct EventTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The instants read from outside (query ranges, topic messages) may name: 1970-01-01T00:00:00Z to
    /// 9999-12-31T23:59:59Z. Postgres has no year 0, and nothing Tokenwatch stores lies before 1970.
    public static let acceptedRange: ClosedRange<Int64> = 0...253_402_300_799_000_000

    public var microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    public init(secondsSinceEpoch: Double) {
        self.microsecondsSinceEpoch = Int64((secondsSinceEpoch * 1_000_000).rounded())
    }

    public static func < (a: EventTimestamp, b: EventTimestamp) -> Bool { a.microsecondsSinceEpoch < b.microsecondsSinceEpoch }

    public static func now() -> EventTimestamp {
        let d = ContinuousClockReference.wallNow()
        return EventTimestamp(microsecondsSinceEpoch: d)
    }

    public var description: String { self.rfc3339 }

    /// Parses RFC 3339 (`2026-11-23T06:37:02.123Z`, `...+02:00`); fractions beyond microseconds are truncated.
    public init?(rfc3339 text: some StringProtocol) {
        var utf8 = Array(text.utf8)
        guard let value = utf8.withUnsafeMutableBytes({ Self.parse(UnsafeRawBufferPointer($0)) }) else { return nil }
        self.microsecondsSinceEpoch = value
    }

    static func parse(_ b: UnsafeRawBufferPointer) -> Int64? {
        // YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)
        guard b.count >= 20 else { return nil }
        func digits(_ at: Int, _ n: Int) -> Int? {
            var v = 0
            for i in at..<(at + n) {
                guard i < b.count, b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard let year = digits(0, 4), b[4] == UInt8(ascii: "-"), let month = digits(5, 2), b[7] == UInt8(ascii: "-"),
            let day = digits(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
            let hour = digits(11, 2), b[13] == UInt8(ascii: ":"), let minute = digits(14, 2), b[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour <= 23, minute <= 59,
            second <= 60
        else { return nil }
        var i = 19
        var micros = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var n = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if n < 6 { micros = micros * 10 + Int(b[i] - 48) }
                n += 1
                i += 1
            }
            guard n > 0 else { return nil }
            for _ in Swift.min(n, 6)..<6 { micros *= 10 }
        }
        guard i < b.count else { return nil }
        var offsetSeconds = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            guard let oh = digits(i + 1, 2), i + 3 < b.count, b[i + 3] == UInt8(ascii: ":"), let om = digits(i + 4, 2),
                oh <= 23, om <= 59
            else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (b[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // A leap second (:60) is counted as the last microsecond of :59.
        let leap = second == 60
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + (leap ? 59 : second)) - Int64(offsetSeconds)
        return seconds * 1_000_000 + Int64(leap ? 999_999 : micros)
    }

    /// `2026-11-23T06:37:02.123456Z`; the fraction is left out when zero.
    public var rfc3339: String {
        var out: [UInt8] = []
        out.reserveCapacity(27)
        self.write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func write(into out: inout [UInt8]) {
        let micros = self.microsecondsSinceEpoch
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86400
        var secondOfDay = seconds % 86400
        if secondOfDay < 0 {
            secondOfDay += 86400
            days -= 1
        }
        let (y, m, d) = civilFromDays(Int(days))
        // In place, no array a field: every event is written with its timestamp.
        func put(_ v: Int, _ width: Int) { out.appendDecimal(v, width: width) }
        put(y, 4); out.append(UInt8(ascii: "-")); put(m, 2); out.append(UInt8(ascii: "-")); put(d, 2)
        out.append(UInt8(ascii: "T"))
        put(Int(secondOfDay / 3600), 2); out.append(UInt8(ascii: ":"))
        put(Int(secondOfDay / 60 % 60), 2); out.append(UInt8(ascii: ":"))
        put(Int(secondOfDay % 60), 2)
        if fraction != 0 {
            out.append(UInt8(ascii: "."))
            put(Int(fraction), 6)
        }
        out.append(UInt8(ascii: "Z"))
    }
}

func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar).
func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146097 + doe - 719468
}

func civilFromDays(_ z: Int) -> (Int, Int, Int) {
    let z = z + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}
