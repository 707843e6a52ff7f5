import Events
import Foundation

/// A HyperLogLog sketch of distinct ids (users, sessions) with 2^12 registers: a standard error of 1.04/√4096 =
/// 1.6% (so within ±3.3% 95% of the time), exact below a few hundred (linear counting). Merging takes the larger
/// register, so windows merge into hours, days and any range, and a replayed event changes nothing. Stored sparse
/// (`{index: rank}`, only the set ones), so a window of a few users stays small, and dense once that is larger
/// (`storedJSON`); merged by the aggregator (`RollupStore.write`).
public struct DistinctSketch: Sendable, Hashable {
    public static let precision = 12
    public static let registerCount = 1 << precision
    /// The stated relative standard error.
    public static let standardError = 1.04 / Double(registerCount).squareRoot()

    /// Dense registers (rank by index), empty until the first id: most rows keep no distinct ids, and a window of a
    /// busy tenant sets nearly all 4,096, where a dictionary cost the aggregator more than the rest of its merge.
    private var registers: [UInt8] = []

    public init() {}

    public var isEmpty: Bool { self.registers.isEmpty }

    public mutating func add(_ id: String) {
        let h = Self.hash(id)
        let index = Int(h >> UInt64(64 - Self.precision))
        let rest = h << UInt64(Self.precision)
        self.raise(index, to: UInt8(min(rest.leadingZeroBitCount, 64 - Self.precision) + 1))
    }

    private mutating func raise(_ index: Int, to rank: UInt8) {
        if self.registers.isEmpty { self.registers = [UInt8](repeating: 0, count: Self.registerCount) }
        if rank > self.registers[index] { self.registers[index] = rank }
    }

    public mutating func merge(_ other: DistinctSketch) {
        guard !other.registers.isEmpty else { return }
        guard !self.registers.isEmpty else { return self = other }
        for i in 0..<Self.registerCount where other.registers[i] > self.registers[i] { self.registers[i] = other.registers[i] }
    }

    /// The estimated number of distinct ids.
    public var estimate: Int64 {
        guard !self.registers.isEmpty else { return 0 }
        let m = Double(Self.registerCount)
        var sum = 0.0, zeros = 0
        for rank in self.registers {
            if rank == 0 { zeros += 1 }
            sum += 1 / Double(UInt64(1) << UInt64(rank))  // 2^-0 for each empty register
        }
        let alpha = 0.7213 / (1 + 1.079 / m)
        let raw = alpha * m * m / sum
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

    /// `{"17":3,"4095":1}`: the set registers, written byte by byte (up to 4,096 of them for every tenant total row
    /// the aggregator merges).
    public var json: String {
        StoredSketch.json(self.registers.enumerated().lazy.filter { $0.element > 0 }.map { ($0.offset, $0.element) },
                          capacity: self.registers.isEmpty ? 2 : 10 * Self.registerCount)
    }

    /// The stored column: `json` while few registers are set, else every register as one JSON string, the base64 of
    /// the 4,096 rank bytes (5,464 characters against about 37,000 for the object of a busy window, which Postgres
    /// parsed number by number and the aggregator read back and wrote again for every tenant total row of a batch).
    public var storedJSON: String {
        let set = self.registers.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
        guard set > Self.denseFrom else { return self.json }
        return "\"" + Data(self.registers).base64EncodedString() + "\""
    }

    /// Past this many set registers the sparse object (about 9 bytes a register) is longer than the dense string.
    static let denseFrom = 600

    /// Reads a stored column: `storedJSON`'s dense string or `json`'s object.
    public init(stored text: String, column: String) throws {
        guard text.utf8.first == UInt8(ascii: "\"") else {
            try self.init(entries: StoredSketch.entries(text, column: column))
            return
        }
        let invalid = SketchError(message: "column \(column): must be the base64 of \(Self.registerCount) registers of rank 0...\(65 - Self.precision)")
        guard text.utf8.count == 2 + (Self.registerCount + 2) / 3 * 4, let bytes = StoredSketch.base64String(text), bytes.count == Self.registerCount,
              bytes.allSatisfy({ $0 <= 65 - Self.precision })
        else { throw invalid }
        self.init()
        if bytes.contains(where: { $0 > 0 }) { self.registers = [UInt8](bytes) }
    }

    /// Reads `json`'s form (from Postgres or a topic, where any producer writes): register indexes in
    /// 0..<registerCount, ranks in 1...(65 - precision).
    public init(object: [String: Any]) throws {
        try self.init(entries: StoredSketch.entries(object) { _ in Self.invalid })
    }

    init(entries: [StoredSketch.Entry]) throws {
        guard entries.count <= Self.registerCount else { throw SketchError(message: "distinct sketch: more than \(Self.registerCount) registers") }
        for (key, rank) in entries {
            guard let index = Int(key), (0..<Self.registerCount).contains(index), (1...Int64(65 - Self.precision)).contains(rank) else { throw Self.invalid }
            self.raise(index, to: UInt8(rank))
        }
    }

    static let invalid = SketchError(message: "distinct sketch: registers are 0..<\(registerCount) with ranks 1...\(65 - precision)")

    public init(json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { throw SketchError(message: "distinct sketch: must be an object") }
        try self.init(object: object)
    }
}
