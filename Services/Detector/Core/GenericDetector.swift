import Foundation

/// The detector for a series of unknown kind (an imported CSV, a custom metric, a counter in bytes or percent):
/// no Poisson or millisecond assumption, both directions, its scale learned from the data.
///
/// Three tests, any of which makes a value anomalous:
/// - **Range**: the value lies beyond the range the last `window` values span, by a share of that range: above
///   `q(0.995) + k (q(0.995) - q(0.005))` or below `q(0.005) - k (...)`, the quantiles exact. Quantiles rather than
///   a mean and a deviation, because real series are heavy-tailed, multimodal (a daily square wave) and often near
///   zero or in integer steps; a range rather than a median absolute deviation, because the deviation of a series
///   that sits still most of the day is 0. The range is floored at 1% of the level (and a tiny absolute value), so
///   a flat line does not alert on rounding.
/// - **Daily rhythm**, when the rows are at a regular interval that divides a day: the value minus the median of
///   the values at the same time on the previous `seasonalDays` days (`period` rows earlier, and twice, ...) is a
///   residual, tested the same way against the range of past residuals (0.1% to 99.9%), once all those days are
///   known. It finds what is normal for the series but not at that hour: a daily peak that does not come, a flat
///   afternoon.
/// - **Short-window level**: the mean of the last `shortWindow` values, tested against the range of past such means
///   (the same quantiles and margin). A shift of level smaller than the noise of single values (a few more errors a
///   minute, denser spikes, a latency step inside the usual spread) moves the mean of ten values well outside the
///   range that means of ten ever span, though no single value is extreme.
///
/// One excursion is one anomaly: it opens on the first anomalous value and closes after `quiet` normal values in
/// a row (ten: a short gap inside one incident does not make it two), so a burst of outliers is one alert, not a string of them. A series that alerts often is held to more:
/// each alert multiplies the margin by `fatigue` (1.5), and the extra margin halves every `fatigueHalfLifeDays`
/// (2 days), so a noisy series settles at fewer, larger alerts while a quiet one keeps its full sensitivity. Values during an excursion are learned like
/// any other, so a level that is new for good widens the range and stops alerting within `window` values.
public struct GenericDetector: Sendable {
    public struct Parameters: Sendable {
        /// Values (and residuals) the ranges are learned over: the last `window`.
        public var window = 4000
        /// Values before the first verdict (and residuals before the daily test speaks).
        public var warmup = 200
        /// Lower and upper quantiles that span the normal range of values, and of daily residuals.
        public var lowQuantile = 0.005
        public var highQuantile = 0.995
        public var residualLowQuantile = 0.001
        public var residualHighQuantile = 0.999
        /// How far beyond a range, as a share of it, a value or residual must lie; divided by the sensitivity.
        public var margin = 0.25
        /// Previous days whose value at the same time gives the daily expectation (their median); 0 turns the daily
        /// test off.
        public var seasonalDays = 3
        /// Values in the short window whose mean is tested (0 turns that test off).
        public var shortWindow = 10
        /// Normal values in a row that close an excursion.
        public var quiet = 10
        /// Margin multiplier each alert adds, and the half-life of that extra margin in days (rows of 1 minute
        /// when the interval is unknown).
        public var fatigue = 1.5
        public var fatigueHalfLifeDays = 2.0
        public var sensitivity = 1.0

        public init() {}
        public static let `default` = Parameters()
    }

    public enum Verdict: Sendable, Equatable {
        /// Not yet warmed up, or within the ranges.
        case normal
        /// Anomalous, and the first value of a new excursion (an alert), with the normal range of values then.
        case opened(low: Double, high: Double)
        /// Anomalous within an excursion already open.
        case continuing
    }

    let parameters: Parameters
    /// Rows per day, when the interval divides a day (0: no daily test).
    let period: Int
    private var values: SlidingQuantiles
    private var residuals: SlidingQuantiles
    private var shortMeans: SlidingQuantiles
    /// The last `shortWindow` values (a ring) and their sum.
    private var recent: [Double] = []
    private var recentHead = 0
    /// The last `period x seasonalDays` values, for the same time on previous days.
    private var history: [Double] = []
    private var historyHead = 0
    private var seen = 0
    private var normalStreak = 0
    public private(set) var inExcursion = false
    /// The margin's multiplier (>= 1) and its decay per row.
    private var strictness = 1.0
    private let relaxation: Double

    /// `interval`: the rows' interval in microseconds, if regular (enables the daily test when it divides a day).
    public init(parameters: Parameters = .default, interval: Int64? = nil) {
        self.parameters = parameters
        self.values = SlidingQuantiles(capacity: parameters.window)
        self.residuals = SlidingQuantiles(capacity: parameters.window)
        self.shortMeans = SlidingQuantiles(capacity: parameters.shortWindow > 0 ? parameters.window : 1)
        let day: Int64 = 86_400_000_000
        if let interval, interval > 0, interval < day, day % interval == 0, parameters.seasonalDays > 0,
           Int(day / interval) * parameters.seasonalDays <= 200_000 {
            self.period = Int(day / interval)
        } else {
            self.period = 0
        }
        let rowsPerDay = interval.map { $0 > 0 ? Double(day) / Double($0) : 1440 } ?? 1440
        self.relaxation = pow(0.5, 1 / max(parameters.fatigueHalfLifeDays * rowsPerDay, 1))
    }

    /// The normal range of values learned so far: (low, high); nil while warming up.
    public var bounds: (low: Double, high: Double)? {
        guard self.values.count >= max(self.parameters.warmup, 1) else { return nil }
        return self.values.range(self.parameters.lowQuantile, self.parameters.highQuantile, margin: self.margin)
    }

    private var margin: Double { self.parameters.margin * self.strictness / self.parameters.sensitivity }

    /// Scores `x` against the past, then learns it. Non-finite values are ignored (`.normal`).
    public mutating func observe(_ x: Double) -> Verdict {
        guard x.isFinite else { return .normal }
        self.strictness = 1 + (self.strictness - 1) * self.relaxation
        let margin = self.margin
        var anomalous = false
        let bounds = self.bounds
        if let (low, high) = bounds, x < low || x > high { anomalous = true }
        var residual: Double?
        if let expected = self.sameTimeOnPreviousDays() {
            let r = x - expected
            residual = r
            if self.residuals.count >= max(self.parameters.warmup, 1), bounds != nil {
                let (low, high) = self.residuals.range(self.parameters.residualLowQuantile, self.parameters.residualHighQuantile, margin: margin)
                if r < low || r > high { anomalous = true }
            }
        }
        let shortMean = self.shortWindowMean(adding: x)
        // Three warm-ups of means: overlapping windows are far from independent, and a range learned from a few
        // hundred of them is too narrow.
        if let shortMean, self.shortMeans.count >= max(self.parameters.warmup * 3, 1), bounds != nil {
            let (low, high) = self.shortMeans.range(self.parameters.lowQuantile, self.parameters.highQuantile, margin: margin)
            if shortMean < low || shortMean > high { anomalous = true }
        }
        var verdict = Verdict.normal
        if anomalous {
            verdict = self.inExcursion ? .continuing : .opened(low: bounds?.low ?? x, high: bounds?.high ?? x)
            if !self.inExcursion { self.strictness *= self.parameters.fatigue }
            self.inExcursion = true
            self.normalStreak = 0
        } else if self.inExcursion {
            self.normalStreak += 1
            if self.normalStreak >= self.parameters.quiet { self.inExcursion = false }
        }
        self.values.add(x)
        if let residual { self.residuals.add(residual) }
        if let shortMean { self.shortMeans.add(shortMean) }
        self.remember(x)
        return verdict
    }

    /// Adds `x` to the short window; its mean once the window is full (summed afresh: ten additions, no drift).
    private mutating func shortWindowMean(adding x: Double) -> Double? {
        let k = self.parameters.shortWindow
        guard k > 0 else { return nil }
        if self.recent.count < k {
            self.recent.append(x)
        } else {
            self.recent[self.recentHead] = x
            self.recentHead = (self.recentHead + 1) % k
        }
        return self.recent.count == k ? self.recent.reduce(0, +) / Double(k) : nil
    }

    /// Median of the values `period`, `2 period`, ... rows ago, once every one of the `seasonalDays` is known (so
    /// one outlier yesterday is outvoted rather than becoming today's expectation).
    private func sameTimeOnPreviousDays() -> Double? {
        guard self.period > 0, self.seen >= self.period * self.parameters.seasonalDays else { return nil }
        let capacity = self.period * self.parameters.seasonalDays
        var past: [Double] = []
        for day in 1...self.parameters.seasonalDays where self.seen >= day * self.period {
            // history[historyHead] is the oldest once full; the value `n` rows ago is at head - n.
            let index = ((self.historyHead - day * self.period) % capacity + capacity) % capacity
            past.append(self.history[index])
        }
        past.sort()
        return past[past.count / 2]
    }

    private mutating func remember(_ x: Double) {
        self.seen += 1
        guard self.period > 0 else { return }
        let capacity = self.period * self.parameters.seasonalDays
        if self.history.count < capacity {
            self.history.append(x)
        } else {
            self.history[self.historyHead] = x
        }
        self.historyHead = (self.historyHead + 1) % capacity
    }
}

/// The last `capacity` values, in arrival order (a ring) and sorted: exact quantiles of a sliding window.
struct SlidingQuantiles: Sendable {
    let capacity: Int
    private var ring: [Double] = []
    private var head = 0
    private var sorted: [Double] = []

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    var count: Int { self.sorted.count }

    /// [q(low) - m r, q(high) + m r] with r = q(high) - q(low), floored at 1% of the level and 1e-9.
    func range(_ low: Double, _ high: Double, margin: Double) -> (low: Double, high: Double) {
        let n = self.sorted.count
        let ql = self.sorted[Int(low * Double(n - 1))]
        let qh = self.sorted[Int(high * Double(n - 1))]
        let r = max(qh - ql, 0.01 * max(abs(qh), abs(ql)), 1e-9)
        return (ql - margin * r, qh + margin * r)
    }

    mutating func add(_ x: Double) {
        if self.ring.count < self.capacity {
            self.ring.append(x)
        } else {
            let old = self.ring[self.head]
            self.ring[self.head] = x
            self.head = (self.head + 1) % self.capacity
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
