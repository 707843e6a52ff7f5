import Events
import Foundation

/// A mergeable quantile sketch with relative accuracy 1% (DDSketch: logarithmic buckets).
///
/// A value x > 0 falls in bucket i = ceil(log_γ(x)) with γ = (1 + α) / (1 − α), α = 0.01, and is estimated as
/// 2γ^i / (γ + 1): every quantile read from the sketch is within 1% of a value that was really added (the exact
/// rank's value). Buckets are integer counts, so merging two sketches adds counts: windows merge exactly into hours,
/// days, any range and any set of series. Values below `minValue` (0.001 ms) count in a zero bucket.
public struct QuantileSketch: Sendable, Hashable {
    public static let relativeAccuracy = 0.01
    static let gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy)
    static let logGamma = Foundation.log(gamma)
    public static let minValue = 0.001

    public private(set) var zeroCount: Int64 = 0
    public private(set) var buckets: [Int32: Int64] = [:]
    public private(set) var count: Int64 = 0

    public init() {}

    public var isEmpty: Bool { self.count == 0 }

    public mutating func add(_ value: Double, count: Int64 = 1) {
        guard value.isFinite, value >= 0, count > 0 else { return }
        self.count +|= count
        if value < Self.minValue {
            self.zeroCount +|= count
        } else {
            self.buckets[Self.index(value), default: 0] +|= count
        }
    }

    public mutating func merge(_ other: QuantileSketch) {
        self.count +|= other.count
        self.zeroCount +|= other.zeroCount
        for (i, n) in other.buckets { self.buckets[i, default: 0] +|= n }
    }

    static func index(_ value: Double) -> Int32 { Int32(Foundation.ceil(Foundation.log(value) / logGamma)) }
    static func value(ofBucket i: Int32) -> Double { 2 * Foundation.pow(gamma, Double(i)) / (gamma + 1) }

    /// The q-quantile (0...1), nil when empty, by the nearest-rank definition: the value at rank ⌈q·n⌉ (1-based)
    /// of the n values added, read within the stated relative error. A high percentile of a few calls therefore
    /// reports the slow ones (the p99 of 148 ms and 284 ms is 284 ms), and p0 is the smallest value.
    public func quantile(_ q: Double) -> Double? {
        guard self.count > 0, q >= 0, q <= 1 else { return nil }
        let rank = Swift.max(0, Int64((q * Double(self.count)).rounded(.up)) - 1)
        var seen = self.zeroCount
        if rank < seen { return 0 }
        for i in self.buckets.keys.sorted() {
            seen +|= self.buckets[i]!
            if rank < seen { return Self.value(ofBucket: i) }
        }
        return nil
    }

    // MARK: - JSON (llm.rollups.v1; the stored form of rows written before `storedJSON`)

    /// `{"z":3,"412":10,...}`: bucket index to count, `z` for the zero bucket; written byte by byte (the aggregator
    /// writes one for every watched row it merges).
    public var json: String {
        StoredSketch.json(self.buckets.sorted { $0.key < $1.key }.lazy.map { ($0.key, $0.value) }, zero: self.zeroCount > 0 ? self.zeroCount : nil,
                          capacity: 16 * (self.buckets.count + 1))
    }

    /// The stored column: `{}` when empty, else one JSON string, the base64 of the buckets packed as LEB128 varints
    /// (a format byte, 1; the zero bucket's count; the number of buckets; then, in ascending order, each bucket's
    /// index as a zigzag delta from the previous one (from 0 for the first) and its count). A busy window's sketch
    /// of ~260 buckets is 650–850 characters against 2,050–2,450 as `json`, whose every number Postgres parsed,
    /// converted to numeric, compressed and printed back on each batch's update of a watched row.
    public var storedJSON: String {
        guard !self.isEmpty else { return "{}" }
        var bytes: [UInt8] = [Self.packedFormat]
        bytes.reserveCapacity(8 + 5 * self.buckets.count)
        Varint.append(UInt64(self.zeroCount), to: &bytes)
        Varint.append(UInt64(self.buckets.count), to: &bytes)
        var previous: Int64 = 0
        for (index, n) in self.buckets.sorted(by: { $0.key < $1.key }) {
            let delta = Int64(index) - previous
            Varint.append(UInt64(bitPattern: (delta << 1) ^ (delta >> 63)), to: &bytes)
            Varint.append(UInt64(n), to: &bytes)
            previous = Int64(index)
        }
        return "\"" + Data(bytes).base64EncodedString() + "\""
    }

    static let packedFormat: UInt8 = 1

    /// Reads a stored column: `storedJSON`'s string or `json`'s object (rows written before the packed form), both
    /// strictly: bucket indexes in `bucketRange`, ascending, whole counts (that fit Int64 packed, in 0...2^53 in the
    /// object, JSON's exact integers), nothing left over.
    public init(stored text: String, column: String) throws {
        guard text.utf8.first == UInt8(ascii: "\"") else {
            try self.init(entries: StoredSketch.entries(text, column: column))
            return
        }
        let invalid = SketchError(message: "column \(column): must be the base64 of a packed quantile sketch (format \(Self.packedFormat))")
        guard let data = StoredSketch.base64String(text) else { throw invalid }
        self.init()
        var reader = VarintReader(bytes: [UInt8](data))
        guard reader.byte() == Self.packedFormat, let zero = reader.count(), let buckets = reader.varint(),
              buckets <= UInt64(Self.bucketRange.count)
        else { throw invalid }
        self.zeroCount = zero
        self.count = zero
        var index: Int64 = 0
        for position in 0..<Int(buckets) {
            guard let zigzag = reader.varint(), let n = reader.count() else { throw invalid }
            let delta = Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
            guard position == 0 || delta > 0, delta.magnitude <= UInt64(Self.bucketRange.count) else { throw invalid }
            index += delta
            guard let i = Int32(exactly: index), Self.bucketRange.contains(i) else { throw invalid }
            if n > 0 { self.buckets[i] = n }
            self.count +|= n
        }
        guard reader.isAtEnd else { throw invalid }
    }

    /// The buckets a sketch read from outside may hold: from below `minValue` (-345) to 5,000, whose value (about
    /// 2.7e43) is far above any latency and still leaves every quantile finite. (Near the top of Double's range,
    /// around bucket 35,490, a bucket's value overflows to infinity, which no JSON can carry; the topic fuzzer found
    /// that.)
    public static let bucketRange: ClosedRange<Int32> = -1_000...5_000

    public init(json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw SketchError(message: "sketch JSON must be an object")
        }
        try self.init(object: object)
    }

    /// Reads the `json` form already parsed. Sketches arrive from topics any producer can write to, so each bucket
    /// index and count is range-checked: counts are exact integers (< 2^53) and buckets are ones `add` can make.
    public init(object: [String: Any]) throws {
        try self.init(entries: StoredSketch.entries(object) { key in SketchError(message: "sketch bucket \(key.prefix(16)): count must be an integer in 0...2^53") })
    }

    init(entries: [StoredSketch.Entry]) throws {
        self.init()
        for (key, n) in entries {
            if key == "z" {
                self.zeroCount +|= n
            } else if let i = Int32(key), Self.bucketRange.contains(i) {
                // An empty bucket is no bucket: a sketch read back equals the one its values built (the fuzzer
                // found `{"8":0}` read as a bucket the packed form then left out).
                if n > 0 { self.buckets[i, default: 0] +|= n }
            } else {
                throw SketchError(message: "sketch bucket \(key.prefix(16)): must be z or an integer in \(Self.bucketRange)")
            }
            self.count +|= n
        }
    }
}

/// A JSON number that is a whole count in 0...2^53 (what a double holds exactly), or nil.
public func exactCount(_ value: Any?) -> Int64? {
    guard let number = value as? NSNumber else { return nil }
    let d = number.doubleValue
    guard d.isFinite, d >= 0, d <= Double(EventLimits.maxExactJSONInteger), d.rounded() == d else { return nil }
    return number.int64Value
}

public struct SketchError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { self.message }
}

/// Reads what `Varint.append` wrote; nil past the end or for a varint longer than 64 bits.
struct VarintReader {
    let bytes: [UInt8]
    var position = 0

    var isAtEnd: Bool { self.position == self.bytes.count }

    mutating func byte() -> UInt8? {
        guard self.position < self.bytes.count else { return nil }
        defer { self.position += 1 }
        return self.bytes[self.position]
    }

    mutating func varint() -> UInt64? {
        var position = self.position
        defer { self.position = position }
        return self.bytes.withUnsafeBytes { raw in try? Varint.read(raw, at: &position, end: raw.count) }
    }

    /// A count: a varint that fits Int64 (a saturated sum included).
    mutating func count() -> Int64? {
        guard let v = self.varint(), v <= UInt64(Int64.max) else { return nil }
        return Int64(v)
    }
}
