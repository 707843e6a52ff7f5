/// The detector for a series of unknown kind (an imported CSV, a custom metric, a counter in bytes or percent):
/// no Poisson or millisecond assumption, both directions, its scale learned from the data.
///
/// A value is anomalous when it lies beyond the range the recent past spans, by a share of that range: above
/// `q(0.995) + k (q(0.995) - q(0.005))` or below `q(0.005) - k (...)`, with the quantiles exact over the last
/// `window` values. Quantiles rather than a mean and a deviation, because real series are heavy-tailed,
/// multimodal (a daily square wave) and often near zero or in integer steps; a range rather than a median
/// absolute deviation, because the deviation of a series that sits still most of the day is 0. The range is
/// floored at 1% of the level (and a tiny absolute value), so a flat line does not alert on rounding.
///
/// One excursion is one anomaly: it opens on the first anomalous value and closes after `quiet` normal values in
/// a row, so a burst of outliers is one alert, not a string of them. Values during an excursion are learned like
/// any other, so a level that is new for good widens the range and stops alerting within `window` values.
public struct GenericDetector: Sendable {
    public struct Parameters: Sendable {
        /// Values the range is learned over (the last `window`).
        public var window = 4000
        /// Values before the first verdict.
        public var warmup = 200
        /// Lower and upper quantiles that span the normal range.
        public var lowQuantile = 0.005
        public var highQuantile = 0.995
        /// How far beyond the range, as a share of it, a value must lie; divided by the sensitivity.
        public var margin = 0.25
        /// Normal values in a row that close an excursion.
        public var quiet = 30
        public var sensitivity = 1.0

        public init() {}
        public static let `default` = Parameters()
    }

    public enum Verdict: Sendable, Equatable {
        /// Not yet warmed up, or within the range.
        case normal
        /// Anomalous, and the first value of a new excursion (an alert).
        case opened(low: Double, high: Double)
        /// Anomalous within an excursion already open.
        case continuing
    }

    let parameters: Parameters
    /// The last `window` values in arrival order (a ring) and the same values sorted.
    private var ring: [Double] = []
    private var head = 0
    private var sorted: [Double] = []
    private var normalStreak = 0
    public private(set) var inExcursion = false

    public init(parameters: Parameters = .default) {
        self.parameters = parameters
        self.ring.reserveCapacity(parameters.window)
        self.sorted.reserveCapacity(parameters.window)
    }

    /// The normal range learned so far: (low, high) beyond which a value is anomalous; nil while warming up.
    public var bounds: (low: Double, high: Double)? {
        let n = self.sorted.count
        guard n >= max(self.parameters.warmup, 1) else { return nil }
        let ql = self.sorted[Int(self.parameters.lowQuantile * Double(n - 1))]
        let qh = self.sorted[Int(self.parameters.highQuantile * Double(n - 1))]
        let range = max(qh - ql, 0.01 * max(abs(qh), abs(ql)), 1e-9)
        let k = self.parameters.margin / self.parameters.sensitivity
        return (ql - k * range, qh + k * range)
    }

    /// Scores `x` against the past, then learns it. Non-finite values are ignored (`.normal`).
    public mutating func observe(_ x: Double) -> Verdict {
        guard x.isFinite else { return .normal }
        var verdict = Verdict.normal
        if let (low, high) = self.bounds, x < low || x > high {
            verdict = self.inExcursion ? .continuing : .opened(low: low, high: high)
            self.inExcursion = true
            self.normalStreak = 0
        } else if self.inExcursion {
            self.normalStreak += 1
            if self.normalStreak >= self.parameters.quiet { self.inExcursion = false }
        }
        self.learn(x)
        return verdict
    }

    private mutating func learn(_ x: Double) {
        if self.ring.count < self.parameters.window {
            self.ring.append(x)
        } else {
            let old = self.ring[self.head]
            self.ring[self.head] = x
            self.head = (self.head + 1) % self.parameters.window
            self.sorted.remove(at: Self.insertionIndex(old, in: self.sorted))
        }
        self.sorted.insert(x, at: Self.insertionIndex(x, in: self.sorted))
    }

    /// First index whose value is not below `x` (binary search).
    static func insertionIndex(_ x: Double, in a: [Double]) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
