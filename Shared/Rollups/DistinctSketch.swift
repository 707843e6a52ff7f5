import Events
import Foundation

/// A HyperLogLog sketch of distinct ids (users, sessions) with 2^12 registers: a standard error of 1.04/√4096 =
/// 1.6% (so within ±3.3% 95% of the time), exact below a few hundred (linear counting). Merging takes the larger
/// register, so windows merge into hours, days and any range, and a replayed event changes nothing. Registers are
/// kept sparse (`{index: rank}`, only the set ones), so a window of a few users stays small; merged in Postgres by
/// `tw_jsonb_max`.
public struct DistinctSketch: Sendable, Hashable {
    public static let precision = 12
    public static let registerCount = 1 << precision
    /// The stated relative standard error.
    public static let standardError = 1.04 / Double(registerCount).squareRoot()

    public private(set) var registers: [Int: UInt8] = [:]

    public init() {}

    public var isEmpty: Bool { self.registers.isEmpty }

    public mutating func add(_ id: String) {
        let h = Self.hash(id)
        let index = Int(h >> UInt64(64 - Self.precision))
        let rest = h << UInt64(Self.precision)
        let rank = UInt8(min(rest.leadingZeroBitCount, 64 - Self.precision) + 1)
        if rank > self.registers[index, default: 0] { self.registers[index] = rank }
    }

    public mutating func merge(_ other: DistinctSketch) {
        for (index, rank) in other.registers where rank > self.registers[index, default: 0] { self.registers[index] = rank }
    }

    /// The estimated number of distinct ids.
    public var estimate: Int64 {
        guard !self.registers.isEmpty else { return 0 }
        let m = Double(Self.registerCount)
        var sum = Double(Self.registerCount - self.registers.count)  // 2^-0 for each empty register
        for rank in self.registers.values { sum += 1 / Double(UInt64(1) << UInt64(rank)) }
        let alpha = 0.7213 / (1 + 1.079 / m)
        let raw = alpha * m * m / sum
        let zeros = Self.registerCount - self.registers.count
        if raw <= 2.5 * m, zeros > 0 { return Int64((m * log(m / Double(zeros))).rounded()) }
        return Int64(raw.rounded())
    }

    /// FNV-1a, then the splitmix64 finalizer: stable across processes and releases (Swift's `Hasher` is seeded per
    /// process, and every replica must put an id in the same register).
    static func hash(_ id: String) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for byte in id.utf8 { h = (h ^ UInt64(byte)) &* 0x100000001b3 }
        h = (h ^ (h >> 30)) &* 0xbf58476d1ce4e5b9
        h = (h ^ (h >> 27)) &* 0x94d049bb133111eb
        return h ^ (h >> 31)
    }

    /// `{"17":3,"4095":1}`.
    public var json: String {
        "{" + self.registers.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }

    /// Reads `json`'s form (from Postgres or a topic, where any producer writes): register indexes in
    /// 0..<registerCount, ranks in 1...(65 - precision).
    public init(object: [String: Any]) throws {
        guard object.count <= Self.registerCount else { throw SketchError(message: "distinct sketch: more than \(Self.registerCount) registers") }
        for (key, value) in object {
            guard let index = Int(key), (0..<Self.registerCount).contains(index), let rank = exactCount(value), (1...Int64(65 - Self.precision)).contains(rank)
            else { throw SketchError(message: "distinct sketch: registers are 0..<\(Self.registerCount) with ranks 1...\(65 - Self.precision)") }
            self.registers[index] = UInt8(rank)
        }
    }

    public init(json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { throw SketchError(message: "distinct sketch: must be an object") }
        try self.init(object: object)
    }
}
