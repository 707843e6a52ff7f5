import Foundation

/// The test that found a value anomalous (`AdaptiveModel`).
enum ModelTest: UInt8, Sendable {
    case range, level, rhythm, rhythmLevel
}

/// One direction's strongest test: its score (how far beyond the quantile, in units of the margin times the range:
/// 1 is on the bound), what was expected and the normal range, in the stream's units.
struct Assessment: Sendable {
    var score: Float = 0
    var test = ModelTest.range
    var expected: Float = .nan
    var low: Float = .nan
    var high: Float = .nan
}

/// The model behind every live metric and every backtest: what is normal for one stream of values, learned from the
/// values alone (no Poisson, millisecond or Gaussian assumption), in fixed memory, and four tests of a new value
/// against it. The metric's policy (`MetricPolicy`: direction, minimum impact, margin) is applied on top by
/// `SeriesDetector`.
///
/// - **range** (`spike`): the value against the range the recent values span: beyond `q(0.5%)` or `q(99.5%)` by more
///   than `margin` times that range. Quantiles rather than a mean and a deviation, because real series are
///   heavy-tailed, multimodal (a daily square wave) and often near zero or in integer steps; a range rather than a
///   median absolute deviation, because the deviation of a series that sits still most of the day is 0. The range
///   is floored at 1% of the level, so a flat line does not alert on rounding.
/// - **level** (`level_shift`): the mean of about the last ten values (exponentially weighted) minus a slow mean of
///   about the last `levelMemory`, against the range of past such distances. A shift smaller than the noise of single
///   values, or inside the day's usual range, moves it well outside the range it ever spans.
/// - **rhythm** (`seasonal`), for metrics with a daily rhythm: the value minus what is usual at this time of day (a
///   profile of 48 half-hour slots, each an exponentially weighted mean over about three days, interpolated
///   between slot centres) is a residual, tested against the range of past residuals (0.1% to 99.9%): a peak that
///   does not come, a surge at night.
/// - **rhythm level**: the mean of about the last ten residuals against the range of past such means: an hour whose
///   shape is off by less than single residuals vary (a lower peak, a flat afternoon).
///
/// A series that alerts often is held to more: each alert multiplies the margin by `fatigue`, and the extra margin
/// halves every `fatigueHalfLifeDays`. Anomalous values are learned like any other, so a level that is new for good
/// widens the range and stops alerting within the memory.
struct AdaptiveModel<Points: RangeSketch, Means: RangeSketch>: Sendable {
    typealias RhythmPart = Rhythm<Points, Means>
    var values: Channel<Points, Means>
    /// Holds one element when the metric has a daily rhythm and the rows' interval allows a profile; on the heap, so
    /// metrics without one pay 8 bytes.
    var rhythm: [RhythmPart] = []
    var strictness: Float = 1

    init(memory: Int) {
        self.values = Channel(memory: memory)
    }

    /// Scores `x` against what was learned so far (up and down apart, for the policy to choose), then learns it.
    /// `margin` is the parameters' margin with the policy and the sensitivity applied; `time` and `interval` in
    /// microseconds. Before the warm-up every score is 0.
    /// `weight`: how much `x` counts in what is learned (less while an anomaly of the stream is open, so a long
    /// incident does not become the range the next one is judged by).
    /// `rhythm`: whether the stream has a daily profile (the metric's policy; the same on every call). `robust`: from
    /// which score a test's statistic counts less in what it learns (`robust(_:from:)`; 0: never).
    mutating func observe(_ x: Double, time: Int64, interval: Int64, margin: Double, weight: Float = 1, robust: Float = 0, rhythm: Bool,
                          p: DetectorParameters) -> (up: Assessment, down: Assessment) {
        var up = Assessment(), down = Assessment()
        // (A finite Double beyond Float's range, from an imported CSV, is no value either.)
        let value = Float(x)
        guard value.isFinite else { return (up, down) }
        self.relax(interval: interval, p: p)
        let m = Float(margin) * self.strictness
        let warm = Int(self.values.count) >= p.warmupWindows
        var mean = self.values.shortMean(adding: value)
        // The level test's statistic: the ten-value mean itself, or (levelMemory > 0) its distance from the slow
        // baseline before it, so a shift within the day's usual range still stands out against where the series was.
        let baseline = p.levelMemory > 0 ? self.values.baseline : 0
        if p.levelMemory > 0, let m = mean { mean = m - baseline }
        var pointScore: Float = 0, meanScore: Float = 0
        if warm {
            pointScore = self.values.points.score(value, low: Float(p.lowQuantile), high: Float(p.highQuantile), margin: m, test: .range, offset: 0, expected: nil, up: &up, down: &down)
            // A level is off while the latest value is off the same way: a mean still catching up after a return
            // (an outage that ended) is not a shift.
            if let mean, Int(self.values.count) >= p.warmupWindows * p.levelWarmupFactor, p.levelMemory == 0 || (mean > 0) == (value > baseline) {
                meanScore = self.values.means.score(mean, low: Float(p.lowQuantile), high: Float(p.highQuantile), margin: m, test: .level, offset: baseline,
                           expected: p.levelMemory > 0 ? baseline : nil, up: &up, down: &down)
            }
        }
        let meanWeight = weight * Self.robust(meanScore, from: robust)
        self.values.learn(value, mean: mean, decay: p.decay, weight: weight * Self.robust(pointScore, from: robust), meanWeight: meanWeight)
        if p.levelMemory > 0 { self.values.follow(value, weight: meanWeight * max(1 / Float(p.levelMemory), 1 / Float(self.values.count))) }
        if rhythm, self.hasRhythm(interval: interval, p: p) {
                self.rhythm[0].observe(value, time: time, interval: interval, warm: warm, margin: m, weight: weight, robust: robust, p: p, up: &up, down: &down)
        }
        return (up, down)
    }

    /// Whether the stream has its daily part, made on first need; false when rows `interval` apart allow none.
    mutating func hasRhythm(interval: Int64, p: DetectorParameters) -> Bool {
        if self.rhythm.isEmpty, let slots = RhythmPart.slots(interval: interval) { self.rhythm = [RhythmPart(memory: p.memory, slots: slots)] }
        return !self.rhythm.isEmpty
    }

    /// An anomaly opened on this stream: hold it to a larger margin for a while.
    mutating func alerted(p: DetectorParameters) {
        self.strictness *= Float(p.fatigue)
    }

    private mutating func relax(interval: Int64, p: DetectorParameters) {
        guard self.strictness > 1.0001 else {
            self.strictness = 1
            return
        }
        let rowsPerDay = 86_400_000_000 / Double(max(interval, 1))
        let relaxation = Float(pow(0.5, 1 / max(p.fatigueHalfLifeDays * rowsPerDay, 1)))
        self.strictness = 1 + (self.strictness - 1) * relaxation
    }

    /// How much a value counts in what its test learns: fully up to the score `from`, from / score beyond, so a shift
    /// in progress does not widen, value by value, the range that would reveal it (0: always fully).
    static func robust(_ score: Float, from: Float) -> Float {
        from > 0 && score > from ? from / score : 1
    }
}

/// One stream tested two ways: a value against the range of past values, and the mean of the last ten against the
/// range of past such means.
struct Channel<Points: RangeSketch, Means: RangeSketch>: Sendable {
    var points: Points
    var means: Means
    /// An exponentially weighted mean over about the last ten values (weight 2/11, as a ten-value window's; a plain
    /// mean of the first ten): 4 bytes where the window's ring took 40.
    private var recent: Float = 0
    /// Values learned.
    private(set) var count: Int32 = 0
    /// An exponentially weighted mean of the values (the level test's reference when `levelMemory` > 0).
    private(set) var baseline: Float = 0

    static var shortWindow: Int { 10 }

    init(memory: Int) {
        self.points = Points(memory: memory)
        self.means = Means(memory: memory)
    }

    /// Adds `x` to the short mean; the mean once ten values are in (`learn` follows every call, counting `x`).
    mutating func shortMean(adding x: Float) -> Float? {
        let n = Int(self.count) + 1
        self.recent += (x - self.recent) * (n < 10 ? 1 / Float(n) : 2 / 11)
        return n >= 10 ? self.recent : nil
    }

    /// The spread of single values, as a normal deviation would be: the 0.5%-99.5% range over 5.15; nil while empty.
    var spread: Float? {
        guard let (low, high) = self.points.quantiles(0.005, 0.995) else { return nil }
        return (high - low) / 5.15
    }

    mutating func follow(_ x: Float, weight: Float) {
        self.baseline += weight * (x - self.baseline)
    }

    mutating func learn(_ x: Float, mean: Float?, decay: Float, weight: Float, meanWeight: Float) {
        self.points.add(x, decay: decay, weight: weight)
        if let mean { self.means.add(mean, decay: decay, weight: meanWeight) }
        if self.count < Int32.max { self.count += 1 }
    }
}

/// The daily part of a model: what is usual at each time of day, and the residuals against it as a channel.
struct Rhythm<Points: RangeSketch, Means: RangeSketch>: Sendable {
    var residuals: Channel<Points, Means>
    /// Per slot of the day: the exponentially weighted mean of its days, and how many days it has seen (capped).
    var profile: InlineArray<48, Float> = .init(repeating: 0)
    /// Two slots a byte, four bits each (days are counted up to 15; the tests need 3).
    var days: InlineArray<24, UInt8> = .init(repeating: 0)
    let slots: Int32
    /// The slot being accumulated (slots since the epoch), its sum and count.
    var current: Int32 = -1
    var sum: Float = 0
    var n: Float = 0

    init(memory: Int, slots: Int) {
        self.residuals = Channel(memory: memory)
        self.slots = Int32(slots)
    }

    /// Slots a day for rows `interval` apart: 48 (half-hours) when rows are at most 30 minutes apart, else one a
    /// row when the interval divides a day into at least four; nil otherwise (no daily test).
    static func slots(interval: Int64) -> Int? {
        let day: Int64 = 86_400_000_000
        guard interval > 0 else { return nil }
        if interval <= day / 48 { return 48 }
        guard day % interval == 0, day / interval >= 4 else { return nil }
        return Int(day / interval)
    }

    var slotLength: Int64 { 86_400_000_000 / Int64(self.slots) }

    /// The slot holding `time`, counted from the epoch (rounded down before it too).
    func slot(of time: Int64) -> Int64 {
        time >= 0 ? time / self.slotLength : (time - self.slotLength + 1) / self.slotLength
    }

    /// What is usual at `time`: the two nearest slot centres interpolated, once both have `profileMinDays` days.
    func expected(at time: Int64, p: DetectorParameters) -> Float? {
        let n = Int(self.slots)
        let dayTime = ((time % 86_400_000_000) + 86_400_000_000) % 86_400_000_000
        let position = Double(dayTime) / Double(self.slotLength) - 0.5
        let i = Int(position.rounded(.down))
        let f = Float(position - Double(i))
        let a = (i % n + n) % n, b = (a + 1) % n
        guard self.dayCount(a) >= p.profileMinDays, self.dayCount(b) >= p.profileMinDays else { return nil }
        return self.profile[a] * (1 - f) + self.profile[b] * f
    }

    func rowsPerDay(_ interval: Int64) -> Int { Int(86_400_000_000 / max(interval, 1)) }

    mutating func observe(_ x: Float, time: Int64, interval: Int64, warm: Bool, margin: Float, weight: Float, robust: Float, p: DetectorParameters,
                          up: inout Assessment, down: inout Assessment) {
        if let expected = self.expected(at: time, p: p) {
            let residual = x - expected
            let mean = self.residuals.shortMean(adding: residual)
            var pointScore: Float = 0, meanScore: Float = 0
            if warm && Int(self.residuals.count) >= p.warmupWindows {
                let lowQ = Float(p.residualLowQuantile), highQ = Float(p.residualHighQuantile)
                pointScore = self.residuals.points.score(residual, low: lowQ, high: highQ, margin: margin,
                                                   test: .rhythm, offset: expected, expected: expected, up: &up, down: &down)
                // Residual means vary most around the day's transitions: their range is learned over three whole days.
                if let mean, Int(self.residuals.count) >= max(p.warmupWindows * p.levelWarmupFactor, 3 * self.rowsPerDay(interval)) {
                    meanScore = self.residuals.means.score(mean, low: Float(p.lowQuantile), high: Float(p.highQuantile), margin: margin,
                                                       test: .rhythmLevel, offset: expected, expected: expected, up: &up, down: &down)
                }
            }
            self.residuals.learn(residual, mean: mean, decay: p.decay, weight: weight * AdaptiveModel<Points, Means>.robust(pointScore, from: robust),
                                 meanWeight: weight * AdaptiveModel<Points, Means>.robust(meanScore, from: robust))
        }
        self.accumulate(x, time: time, p: p)
    }

    /// Adds a row to its slot; a slot is folded into the profile when the next one starts.
    mutating func accumulate(_ x: Float, time: Int64, p: DetectorParameters) {
        let slot = Int32(clamping: self.slot(of: time))
        if slot != self.current {
            if self.current >= 0 && self.n > 0 { self.commit(slot: Int64(self.current), mean: self.sum / self.n, p: p) }
            self.current = slot
            self.sum = 0
            self.n = 0
        }
        self.sum += x
        self.n += 1
    }

    /// Folds one slot's mean into the profile (live, or from hourly rollups when a series is rebuilt).
    mutating func commit(slot: Int64, mean: Float, p: DetectorParameters) {
        let k = Int((slot % Int64(self.slots) + Int64(self.slots)) % Int64(self.slots))
        let days = self.dayCount(k)
        self.profile[k] = days == 0 ? mean : self.profile[k] + Float(p.profileWeight) * (mean - self.profile[k])
        if days < 15 {
            let shift = UInt8(k % 2 * 4)
            self.days[k / 2] = self.days[k / 2] & ~(0xF << shift) | UInt8(days + 1) << shift
        }
    }

    func dayCount(_ k: Int) -> Int { Int(self.days[k / 2] >> UInt8(k % 2 * 4) & 0xF) }
}

extension RangeSketch {
    /// Raises `up` or `down` to the score of `x` against the sketch's [low, high] quantiles plus `margin` times their
    /// range (floored at 1% of the level). `offset` moves the bounds into the stream's units (the daily expectation
    /// for residuals). `expected` nil: the sketch's median, read only when the score is reported.
    /// Returns the test's own score (0 within the quantiles). A method of the sketch, so the sketch is read in place
    /// (passed as an argument from a mutating context, each was copied: a tenth of the time).
    @discardableResult
    func score(_ x: Float, low: Float, high: Float, margin: Float, test: ModelTest, offset: Float, expected: Float?,
                      up: inout Assessment, down: inout Assessment) -> Float {
        guard let (ql, qh) = self.quantiles(low, high) else { return 0 }
        // The 1% floor is of the level in the stream's units: for a distance or a residual, of what it is added to.
        let range = max(qh - ql, 0.01 * max(abs(qh + offset), abs(ql + offset)), 1e-9)
        let unit = max(margin * range, 1e-12)
        let lowBound = offset + ql - margin * range, highBound = offset + qh + margin * range
        if x > qh {
            let s = (x - qh) / unit
            if s > up.score { up = Assessment(score: s, test: test, expected: expected ?? offset + (self.quantile(0.5) ?? x), low: lowBound, high: highBound) }
            return s
        } else if x < ql {
            let s = (ql - x) / unit
            if s > down.score { down = Assessment(score: s, test: test, expected: expected ?? offset + (self.quantile(0.5) ?? x), low: lowBound, high: highBound) }
            return s
        }
        return 0
    }

}
