import Foundation
import Rollups

/// Which metrics of a series are muted (a tenant setting): they are still learned, never reported.
public struct MetricMask: Sendable, Equatable {
    public var bits: UInt8

    public init(_ metrics: [DetectorMetric] = []) { self.bits = metrics.reduce(0) { $0 | 1 << UInt8($1.rawValue) } }
    public static let none = MetricMask()
    public static let all = MetricMask(DetectorMetric.allCases)
    public func contains(_ m: DetectorMetric) -> Bool { self.bits & (1 << UInt8(m.rawValue)) != 0 }
}

/// An anomaly being tracked: open from its first anomalous window until `resolveWindows` normal windows in a row.
struct OpenAnomaly: Sendable, Equatable {
    var metric: DetectorMetric
    var start: Int64
    var end: Int64
    var normalStreak: Int32 = 0
    var revision: Int32 = 1
    var severity: Severity
    var detector: DetectorKind
    var score: Float
    var peakWindow: Int64
    var observed: Float
    var expected: Float
    var low: Float
    var high: Float
}

/// A recently resolved anomaly's metric and direction (`SeriesDetector.settling`).
struct Settling: Sendable, Equatable {
    var metric: DetectorMetric
    var up: Bool
    var end: Int64
}

/// One scored metric of one window.
struct Verdict {
    var score: Double
    var detector: DetectorKind
    var observed: Double
    var expected: Double
    var low: Double
    var high: Double
}

/// Everything the detector keeps for one series: a robust baseline per metric, the request rate's hour-of-day
/// profile, the error-rate baseline, and the anomalies currently open. About 1 KB.
public struct SeriesDetector: Sendable, Equatable {
    var requests = RobustBaseline()
    var latency = RobustBaseline()
    var cost = RobustBaseline()
    var tokens = RobustBaseline()
    var ttft = RobustBaseline()
    var errors = ErrorBaseline()
    var seasonal: SeasonalProfile
    var open: [OpenAnomaly] = []
    /// Anomalies resolved in the last `settleWindows`: metric, direction, end. While a baseline is still settling on
    /// a level the last anomaly announced, the same deviation again is that anomaly's tail, not a new one.
    var settling: [Settling] = []
    /// Start of the last window seen (microseconds), or Int64.min before the first.
    public internal(set) var lastWindow = Int64.min
    /// Windows seen, empty ones included (warm-up).
    public internal(set) var windows: Int32 = 0
    /// The input partition the series arrives on (states are dropped when it is revoked).
    public var partition: Int32 = -1

    public init(parameters: DetectorParameters = .default) {
        self.seasonal = SeasonalProfile(days: parameters.seasonalDays)
    }

    /// Windows after an anomaly resolves during which the same deviation does not open a new one (unless twice
    /// as strong).
    static let settleWindows = 60

    /// Gaps longer than this are filled only with their last part (the state after hours of silence is the same).
    static let maxGapWindows: Int64 = 180

    /// Scores one window and learns from it; returns the anomalies that opened, escalated or resolved with it.
    /// Windows must come in order; a window not after the last one is ignored (the detector scores each window once).
    /// Missing windows in between are learned as windows without traffic.
    public mutating func observe(_ o: WindowObservation, series: SeriesKey, parameters p: DetectorParameters, muted: MetricMask = .none) -> [Anomaly] {
        guard o.windowStart > self.lastWindow else { return [] }
        var out: [Anomaly] = []
        if self.lastWindow != Int64.min {
            let missing = (o.windowStart - self.lastWindow) / o.interval - 1
            if missing > 0 {
                var t = self.lastWindow + o.interval * max(1, missing - Self.maxGapWindows + 1)
                while t < o.windowStart {
                    self.step(.empty(at: t, interval: o.interval), series: series, p: p, muted: muted, out: &out)
                    t += o.interval
                }
            }
        }
        self.step(o, series: series, p: p, muted: muted, out: &out)
        return out
    }

    /// Learns from a window without scoring it (rebuilding from history): same state, nothing reported.
    public mutating func learn(_ o: WindowObservation, series: SeriesKey, parameters p: DetectorParameters) {
        _ = self.observe(o, series: series, parameters: p, muted: .all)
    }

    private mutating func step(_ o: WindowObservation, series: SeriesKey, p: DetectorParameters, muted: MetricMask, out: inout [Anomaly]) {
        self.windows &+= 1
        self.lastWindow = o.windowStart
        let warm = Int(self.windows) > p.warmupWindows
        let n = o.requests
        let windowsPerHour = Double(3_600_000_000 / max(o.interval, 1))

        // Request rate: robust level and level shift on the Anscombe transform 2 sqrt(x + 3/8), where Poisson counts
        // have unit variance at any volume (so 8 requests against a usual 1.5 is not a spike, 800 against 150 is);
        // plus the hour-of-day profile.
        do {
            let x = n
            let y = 2 * (x + 0.375).squareRoot()
            var rateParameters = p
            rateParameters.alpha = p.rateAlpha
            let z = self.requests.z(y, floor: 1)
            var verdict = self.levelVerdict(z: z, baseline: self.requests, floor: 1, x: y, log: false, bothWays: true, p: p)
            verdict.observed = x
            verdict.expected = Self.fromAnscombe(verdict.expected)
            verdict.low = Self.fromAnscombe(verdict.low)
            verdict.high = Self.fromAnscombe(verdict.high)
            if let (mean, spread) = self.seasonal.expected(at: o.windowStart, minDays: p.seasonalMinDays) {
                let s = (mean + spread * spread + 0.01 * mean * mean + 1).squareRoot()
                let zs = (x - mean) / s
                let threshold = p.seasonalThreshold / p.sensitivity
                if abs(zs) / threshold > verdict.score {
                    verdict = Verdict(score: abs(zs) / threshold, detector: .seasonal, observed: x, expected: mean,
                                      low: max(0, mean - threshold * s), high: mean + threshold * s)
                }
            }
            self.track(.requestRate, verdict, window: o, warm: warm && !muted.contains(.requestRate), series: series, p: p, out: &out)
            self.requests.update(y, z: z, floor: 1, p: rateParameters)
            if verdict.detector == .levelShift && verdict.score >= 1 { self.requests.resetShift() }
            self.seasonal.add(windowStart: o.windowStart, requests: x, windowsPerHour: windowsPerHour)
        }

        // Error rate: binomial burst test against the learned rate.
        if n > 0 {
            let k = o.errors
            let p0 = self.errors.rate
            let threshold = p.burstThreshold / p.sensitivity
            let zb = k >= p.burstMinErrors ? self.errors.burstZ(errors: k, requests: n) : 0
            let band = threshold * (p0 * (1 - p0) / n).squareRoot()
            let verdict = Verdict(score: zb / threshold, detector: .errorBurst, observed: k / n, expected: p0, low: max(0, p0 - band), high: min(1, p0 + band))
            self.track(.errorRate, verdict, window: o, warm: warm && !muted.contains(.errorRate), series: series, p: p, out: &out)
            self.errors.update(errors: k, requests: n)
        }

        // Per-request and percentile metrics, in log space, upward only. Their noise shrinks with the requests in
        // the window, so residuals are measured in units of w(n) = 0.1 + 1/sqrt(n): the scale is learned once for
        // busy and quiet hours alike.
        let floor = 0.1
        // (Copied out and back: a mutating call cannot also take one of self's properties inout.)
        var b = self.latency
        self.logMetric(.latencyP95, o.latencyP95, offset: 1, baseline: &b, floor: floor, window: o, warm: warm, muted: muted, series: series, p: p, out: &out)
        self.latency = b
        b = self.cost
        self.logMetric(.costPerRequest, o.costPerRequest, offset: 1e-6, baseline: &b, floor: floor, window: o, warm: warm, muted: muted, series: series, p: p, out: &out)
        self.cost = b
        b = self.tokens
        self.logMetric(.outputTokensPerRequest, o.outputTokensPerRequest, offset: 1, baseline: &b, floor: floor, window: o, warm: warm, muted: muted, series: series, p: p, out: &out)
        self.tokens = b
        b = self.ttft
        self.logMetric(.timeToFirstTokenP95, o.ttftP95, offset: 1, baseline: &b, floor: floor, window: o, warm: warm, muted: muted, series: series, p: p, out: &out)
        self.ttft = b
    }

    private mutating func logMetric(
        _ metric: DetectorMetric, _ value: Double, offset: Double, baseline: inout RobustBaseline, floor: Double, window o: WindowObservation,
        warm: Bool, muted: MetricMask, series: SeriesKey, p: DetectorParameters, out: inout [Anomaly]
    ) {
        guard value.isFinite, value >= 0 else { return }
        let w = 0.1 + 1 / max(o.requests, 1).squareRoot()
        let x = log(value + offset)
        let z = baseline.z(x, floor: floor, noise: w)
        var verdict = self.levelVerdict(z: z, baseline: baseline, floor: floor * w, x: x, log: true, bothWays: false, p: p, noise: w, offset: offset)
        verdict.observed = value
        let ready = warm && Int(baseline.count) >= p.warmupWindows / 2 && !muted.contains(metric)
        self.track(metric, verdict, window: o, warm: ready, series: series, p: p, out: &out)
        baseline.update(x, z: z, floor: floor, p: p, noise: w)
        if verdict.detector == .levelShift && verdict.score >= 1 { baseline.resetShift() }
    }

    /// Spike (|z|) and level shift (CUSUM including this window), whichever is stronger. In log space the baseline
    /// is of log(value + offset): the offset is taken off again, so "expected" and the range are in the metric's
    /// own units even near zero.
    private func levelVerdict(z: Double, baseline b: RobustBaseline, floor: Double, x: Double, log: Bool, bothWays: Bool, p: DetectorParameters, noise: Double = 1, offset: Double = 0) -> Verdict {
        let spikeThreshold = p.spikeThreshold / p.sensitivity
        let shiftThreshold = p.shiftThreshold / p.sensitivity
        let clipped = min(max(z, -p.shiftClip), p.shiftClip)
        let up = max(0, Double(b.cusumUp) + clipped - p.shiftDrift)
        let down = bothWays ? max(0, Double(b.cusumDown) - clipped - p.shiftDrift) : 0
        let spike = (bothWays ? abs(z) : max(z, 0)) / spikeThreshold
        let shift = max(up, down) / shiftThreshold
        let s = max(Double(b.scale) * noise, floor)
        let level = Double(b.level)
        let (expected, low, high) = log
            ? (max(0, exp(level) - offset), max(0, exp(level - spikeThreshold * s) - offset), max(0, exp(level + spikeThreshold * s) - offset))
            : (level, max(0, level - spikeThreshold * s), level + spikeThreshold * s)
        return Verdict(score: max(spike, shift), detector: shift > spike ? .levelShift : .spike, observed: x, expected: expected, low: low, high: high)
    }

    static func fromAnscombe(_ y: Double) -> Double { max(0, y * y / 4 - 0.375) }

    /// The anomaly lifecycle of one metric: open, extend, escalate, resolve.
    private mutating func track(_ metric: DetectorMetric, _ v: Verdict, window o: WindowObservation, warm: Bool, series: SeriesKey, p: DetectorParameters, out: inout [Anomaly]) {
        let index = self.open.firstIndex { $0.metric == metric }
        let abnormal = warm && v.score >= 1
        guard abnormal else {
            guard let i = index else { return }
            self.open[i].normalStreak += 1
            if self.open[i].normalStreak >= p.resolveWindows {
                self.open[i].revision += 1
                out.append(self.anomaly(self.open[i], series: series, status: .resolved, interval: o.interval))
                let a = self.open.remove(at: i)
                self.settling.removeAll { $0.metric == metric }
                self.settling.append(Settling(metric: metric, up: a.observed > a.expected, end: a.end))
            }
            return
        }
        // For the request rate the window's own count is the observation; other metrics touch the window's calls.
        let slowShare = metric == .latencyP95 && o.latencyP50 >= v.expected ? 0.5 : 0.05
        let severity = Severity.assess(metric: metric, observed: v.observed, expected: v.expected, requests: o.requests, interval: o.interval, slowShare: slowShare)
        let end = o.windowStart + o.interval
        if let i = index {
            self.open[i].end = end
            self.open[i].normalStreak = 0
            // The peak is the worst window: the most surprising one, or one further from what was expected when
            // the anomaly opened (the baseline learns during a long anomaly, so a worsening can score lower).
            let a = self.open[i]
            let further = abs(v.observed - Double(a.expected)) > abs(Double(a.observed) - Double(a.expected))
                && (v.observed - Double(a.expected)) * (Double(a.observed) - Double(a.expected)) > 0
            if v.score > Double(self.open[i].score) {
                self.open[i].score = Float(v.score)
                self.open[i].peakWindow = o.windowStart
                self.open[i].observed = Float(v.observed)
                self.open[i].expected = Float(v.expected)
                self.open[i].low = Float(v.low)
                self.open[i].high = Float(v.high)
                self.open[i].detector = v.detector
            } else if further {
                // Against the same expectation, so the sentence compares the worst with what was usual before.
                self.open[i].peakWindow = o.windowStart
                self.open[i].observed = Float(v.observed)
            }
            // Published again when its severity rises, and as it grows (at 2, 4, 8, ... windows long), so lists,
            // pages and notifications show its current extent and peak with a bounded number of updates.
            let length = (end - self.open[i].start) / max(o.interval, 1)
            let grown = length >= 2 && length & (length - 1) == 0
            if severity > self.open[i].severity || grown {
                self.open[i].severity = max(severity, self.open[i].severity)
                self.open[i].revision += 1
                out.append(self.anomaly(self.open[i], series: series, status: .ongoing, interval: o.interval))
            }
        } else {
            // Just after an anomaly in the same direction resolved, the baseline is still learning the level it
            // announced: only a deviation twice as strong is a new incident.
            let up = v.observed > v.expected
            self.settling.removeAll { o.windowStart - $0.end > Int64(Self.settleWindows) * o.interval }
            if self.settling.contains(where: { $0.metric == metric && $0.up == up }) && v.score < 2 { return }
            let new = OpenAnomaly(
                metric: metric, start: o.windowStart, end: end, severity: severity, detector: v.detector, score: Float(v.score),
                peakWindow: o.windowStart, observed: Float(v.observed), expected: Float(v.expected), low: Float(v.low), high: Float(v.high))
            self.open.append(new)
            out.append(self.anomaly(new, series: series, status: .ongoing, interval: o.interval))
        }
    }

    private func anomaly(_ a: OpenAnomaly, series: SeriesKey, status: Anomaly.Status, interval: Int64) -> Anomaly {
        Anomaly(
            series: series, metric: a.metric, start: a.start, end: a.end, status: status, severity: a.severity, detector: a.detector,
            score: Double(a.score), peakWindow: a.peakWindow, observed: Double(a.observed), expected: Double(a.expected),
            expectedLow: Double(a.low), expectedHigh: Double(a.high), revision: Int(a.revision), interval: interval)
    }

    /// Adds an hour from the hourly rollups to the hour-of-day profile (rebuilding the days before the replayed
    /// minutes), and counts its windows toward the warm-up.
    public mutating func learnHour(hourStart: Int64, requests: Double, windowsPerHour: Double) {
        self.seasonal.commit(hour: SeasonalProfile.hour(of: hourStart), mean: requests / windowsPerHour)
        self.windows &+= Int32(windowsPerHour)
    }
}
