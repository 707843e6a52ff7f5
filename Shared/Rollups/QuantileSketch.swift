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
        self.count += count
        if value < Self.minValue {
            self.zeroCount += count
        } else {
            self.buckets[Self.index(value), default: 0] += count
        }
    }

    public mutating func merge(_ other: QuantileSketch) {
        self.count += other.count
        self.zeroCount += other.zeroCount
        for (i, n) in other.buckets { self.buckets[i, default: 0] += n }
    }

    static func index(_ value: Double) -> Int32 { Int32(Foundation.ceil(Foundation.log(value) / logGamma)) }
    static func value(ofBucket i: Int32) -> Double { 2 * Foundation.pow(gamma, Double(i)) / (gamma + 1) }

    /// The q-quantile (0...1), nil when empty.
    public func quantile(_ q: Double) -> Double? {
        guard self.count > 0, q >= 0, q <= 1 else { return nil }
        let rank = Int64((q * Double(self.count - 1)).rounded(.down))
        var seen = self.zeroCount
        if rank < seen { return 0 }
        for i in self.buckets.keys.sorted() {
            seen += self.buckets[i]!
            if rank < seen { return Self.value(ofBucket: i) }
        }
        return nil
    }

    // MARK: - JSON (stored as jsonb; merged in SQL by tw_sketch_merge)

    /// `{"z":3,"412":10,...}`: bucket index to count, `z` for the zero bucket.
    public var json: String {
        var parts: [String] = []
        parts.reserveCapacity(self.buckets.count + 1)
        if self.zeroCount > 0 { parts.append("\"z\":\(self.zeroCount)") }
        for (i, n) in self.buckets.sorted(by: { $0.key < $1.key }) { parts.append("\"\(i)\":\(n)") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    public init(json: String) throws {
        self.init()
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw SketchError(message: "sketch JSON must be an object")
        }
        for (key, value) in object {
            guard let n = (value as? NSNumber)?.int64Value, n >= 0 else { throw SketchError(message: "bad count for \(key)") }
            if key == "z" {
                self.zeroCount += n
            } else if let i = Int32(key) {
                self.buckets[i, default: 0] += n
            } else {
                throw SketchError(message: "bad bucket \(key)")
            }
            self.count += n
        }
    }
}

public struct SketchError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { self.message }
}
