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

    // MARK: - JSON (stored as jsonb; merged in SQL by tw_sketch_merge)

    /// `{"z":3,"412":10,...}`: bucket index to count, `z` for the zero bucket; written byte by byte (the aggregator
    /// writes one for every watched row it merges).
    public var json: String {
        StoredSketch.json(self.buckets.sorted { $0.key < $1.key }.lazy.map { ($0.key, $0.value) }, zero: self.zeroCount > 0 ? self.zeroCount : nil,
                          capacity: 16 * (self.buckets.count + 1))
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
                self.buckets[i, default: 0] +|= n
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
