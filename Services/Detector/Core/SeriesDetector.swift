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
    /// Windows the normal range was learned over, at the peak.
    var learned: Int32 = 0
    /// The direction and the normal range when it opened (`DetectorParameters.holdWindows`).
    var up = true
    var openLow: Float = 0
    var openHigh: Float = 0
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
    /// Windows the range was learned over.
    var learned: Int32 = 0
}

/// The model every live metric is scored by: 20 centroids for single values, 10 for ten-value means (`make eval`
/// measures them against exact windows; 16 and 8 for the per-request metrics lost a tenth of the synthetic F1).
typealias LiveModel = AdaptiveModel<DecayedDigest<20>, DecayedDigest<10>>

/// Everything the detector keeps for one series: a model per metric (`AdaptiveModel`, the request rate's with its
/// daily profile), the error-rate baseline, and the anomalies currently open. Under 2 KB (`make bench` measures it).
/// `detector backtest` and `make eval` run this same type over stored or imported series.
public struct SeriesDetector: Sendable {
    /// The request rate's model, with its daily profile.
    var rate: LiveModel
    /// P95 latency, cost per request, output tokens per request, p95 time to first token (stored properties, not an
    /// InlineArray: a mutating call through its subscript copied the model out and back, a fifth of the time).
    var latency: LiveModel
    var cost: LiveModel
    var tokens: LiveModel
    var ttft: LiveModel
    /// Per ratio model, the slowly learned centre of its metric's log (`MetricPolicy.Scale.perRequest`).
    var centers: InlineArray<4, Float> = .init(repeating: 0)
    var errors = ErrorBaseline()
    var open: [OpenAnomaly] = []
    /// Anomalies resolved in the last `settleWindows`: metric, direction, end. While a model is still learning a
    /// level the last anomaly announced, the same deviation again is that anomaly's tail, not a new one.
    var settling: [Settling] = []
    /// Start of the last window seen (microseconds), or Int64.min before the first.
    public internal(set) var lastWindow = Int64.min
    /// The input partition the series arrives on (states are dropped when it is revoked).
    public var partition: Int32 = -1
    /// The request-rate slot carries a series of unknown kind (`backtest --metric generic`): `MetricPolicy.generic`.
    let generic: Bool

    static let modelled: [DetectorMetric] = [.requestRate, .latencyP95, .costPerRequest, .outputTokensPerRequest, .timeToFirstTokenP95]

    public init(parameters: DetectorParameters = .default, generic: Bool = false) {
        self.generic = generic
        self.rate = LiveModel(memory: parameters.memory)
        self.latency = LiveModel(memory: parameters.memory)
        self.cost = self.latency
        self.tokens = self.latency
        self.ttft = self.latency
    }

    func policy(_ metric: DetectorMetric) -> MetricPolicy {
        self.generic && metric == .requestRate ? .generic : metric.policy
    }

    /// Windows after an anomaly resolves during which the same deviation does not open a new one (unless twice
    /// as strong).
    static let settleWindows = 60

    /// Gaps longer than this are filled only with their last part (the state after hours of silence is the same).
    static let maxGapWindows: Int64 = 180

    /// Scores one window and learns from it; returns the anomalies that opened, escalated or resolved with it.
    /// Windows must come in order; a window not after the last one is ignored (the detector scores each window once).
    /// Missing windows in between are learned as windows without traffic (skipped for a series of unknown kind).
    public mutating func observe(_ o: WindowObservation, series: SeriesKey, parameters p: DetectorParameters, muted: MetricMask = .none) -> [Anomaly] {
        guard o.windowStart > self.lastWindow else { return [] }
        var out: [Anomaly] = []
        // A series of unknown kind has no value where a row is missing; a metric's missing window had no traffic.
        if self.lastWindow != Int64.min && !self.generic {
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
        self.lastWindow = o.windowStart

        // Error rate: binomial burst test against the learned rate.
        if o.requests > 0 {
            let n = o.requests, k = o.errors
            let p0 = self.errors.rate
            let threshold = p.burstThreshold / p.sensitivity
            let zb = k >= p.burstMinErrors ? self.errors.burstZ(errors: k, requests: n) : 0
            let band = threshold * (p0 * (1 - p0) / n).squareRoot()
            let verdict = Verdict(score: zb / threshold, detector: .errorBurst, observed: k / n, expected: p0, low: max(0, p0 - band), high: min(1, p0 + band))
            _ = self.track(.errorRate, verdict, window: o, warm: !muted.contains(.errorRate), series: series, p: p, out: &out)
            self.errors.update(errors: k, requests: n)
        }

        for (i, metric) in Self.modelled.enumerated() {
            let value = o.value(metric)
            guard value.isFinite else { continue }
            let policy = self.policy(metric)
            // A per-request metric's first value is its centre: the model never sees an offset of the raw log.
            if case .perRequest(let offset) = policy.scale, self.count(i) == 0, value >= 0 { self.centers[i - 1] = Float(log(value + offset)) }
            let units = Units(scale: policy.scale, requests: o.requests, center: i == 0 ? 0 : Double(self.centers[i - 1]))
            guard let input = units.input(value) else { continue }
            let weight = policy.live && self.open.contains { $0.metric == metric } ? Float(p.anomalyWeight) : 1
            let robust = policy.live ? Float(p.robustLearning) : 0
            let (up, down) = self.withModel(i) {
                $0.observe(input, time: o.windowStart, interval: o.interval, margin: p.margin(policy), weight: weight, robust: robust, rhythm: policy.dailyRhythm, p: p)
            }
            var verdict = self.verdict(metric, value: value, up: up, down: down, policy: policy, units: units, window: o)
            verdict.learned = Int32(min(self.count(i), p.memory))
            if self.track(metric, verdict, window: o, warm: !muted.contains(metric), series: series, p: p, out: &out) {
                self.withModel(i) { $0.alerted(p: p) }
            }
            if case .perRequest(let offset) = policy.scale {
                // A metric that alerts upward only follows a fall ten times slower: an hour of faster calls must not
                // make the return to the usual latency look like a rise.
                let y = log(value + offset)
                let follow = !policy.alertsBelow && y < Double(self.centers[i - 1]) ? 0.1 : 1
                self.recenter(i, y, noise: units.noise, weight: Double(weight) * follow, p: p)
            }
        }
    }

    /// Values the model of `modelled[i]` has learned.
    func count(_ i: Int) -> Int {
        switch i {
        case 0: return Int(self.rate.values.count)
        case 1: return Int(self.latency.values.count)
        case 2: return Int(self.cost.values.count)
        case 3: return Int(self.tokens.values.count)
        default: return Int(self.ttft.values.count)
        }
    }

    /// The spread of the values of `modelled[i]`'s model (read in place: through `withModel` it was copied).
    func spread(_ i: Int) -> Float? {
        switch i {
        case 0: return self.rate.values.spread
        case 1: return self.latency.values.spread
        case 2: return self.cost.values.spread
        case 3: return self.tokens.values.spread
        default: return self.ttft.values.spread
        }
    }

    /// Calls `body` with the model of `modelled[i]`, in place.
    mutating func withModel<R>(_ i: Int, _ body: (inout LiveModel) -> R) -> R {
        switch i {
        case 0: return body(&self.rate)
        case 1: return body(&self.latency)
        case 2: return body(&self.cost)
        case 3: return body(&self.tokens)
        default: return body(&self.ttft)
        }
    }

    /// Moves a per-request metric's centre toward `y` (a plain mean at first, then an exponential weight of
    /// 1 / `centerMemory`), by at most three learned spreads, and by `weight` of that while an anomaly is open, so an
    /// incident barely drags it.
    private mutating func recenter(_ i: Int, _ y: Double, noise: Double, weight: Double, p: DetectorParameters) {
        let count = self.count(i)
        let c = Double(self.centers[i - 1])
        guard count > 1 else {
            self.centers[i - 1] = Float(y)
            return
        }
        let spread = self.spread(i).map(Double.init) ?? 1
        let bound = 3 * max(spread, 1e-3) * noise
        self.centers[i - 1] = Float(c + weight * max(1 / Double(max(p.centerMemory, 1)), 1 / Double(count)) * min(max(y - c, -bound), bound))
    }

    /// The model's assessment as the metric's policy reads it: the harmful direction only, and nothing below the
    /// minimum impact.
    private func verdict(_ metric: DetectorMetric, value: Double, up: Assessment, down: Assessment, policy: MetricPolicy, units: Units,
                         window o: WindowObservation) -> Verdict {
        let a = policy.alertsBelow && down.score > up.score ? down : up
        var score = Double(a.score)
        let expected = units.value(Double(a.expected))
        if score >= 1 && policy.minimumImpact > 0 {
            let impact = Severity.impact(metric: metric, observed: value, expected: expected, requests: o.requests, interval: o.interval,
                                         slowShare: Severity.slowShare(metric, window: o, expected: expected))
            if impact.perMinute < policy.minimumImpact { score = 0 }
        }
        let detector: DetectorKind
        switch a.test {
        case .range: detector = metric == .requestRate && !self.generic && value == 0 && expected > 0 ? .silence : .spike
        case .level: detector = .levelShift
        case .rhythm, .rhythmLevel: detector = .seasonal
        }
        // LLM metrics are never negative: the range is said from 0.
        let floor = self.generic && metric == .requestRate ? -Double.infinity : 0
        return Verdict(score: score, detector: detector, observed: value, expected: max(floor, expected), low: max(floor, units.value(Double(a.low))),
                       high: units.value(Double(a.high)))
    }

    /// The anomaly lifecycle of one metric: open, extend, escalate, resolve.
    /// Returns whether a new anomaly opened.
    private mutating func track(_ metric: DetectorMetric, _ v: Verdict, window o: WindowObservation, warm: Bool, series: SeriesKey, p: DetectorParameters, out: inout [Anomaly]) -> Bool {
        let index = self.open.firstIndex { $0.metric == metric }
        var abnormal = warm && v.score >= 1
        if !abnormal, warm, let i = index {
            // Within its first `holdWindows`, an anomaly goes on while the metric stays beyond the range it opened
            // against, though the model already counts the first anomalous values among the normal ones.
            let a = self.open[i]
            let age = (o.windowStart - a.start) / max(o.interval, 1)
            let beyond = a.up ? v.observed > Double(a.openHigh) : v.observed < Double(a.openLow)
            abnormal = age < Int64(p.holdWindows * self.policy(metric).holdScale) && beyond
        }
        guard abnormal else {
            guard let i = index else { return false }
            self.open[i].normalStreak += 1
            if self.open[i].normalStreak >= p.resolveWindows {
                self.open[i].revision += 1
                out.append(self.anomaly(self.open[i], series: series, status: .resolved, interval: o.interval))
                let a = self.open.remove(at: i)
                self.settling.removeAll { $0.metric == metric }
                self.settling.append(Settling(metric: metric, up: a.observed > a.expected, end: a.end))
            }
            return false
        }
        // For the request rate the window's own count is the observation; other metrics touch the window's calls.
        let severity = Severity.assess(metric: metric, observed: v.observed, expected: v.expected, requests: o.requests, interval: o.interval,
                                       slowShare: Severity.slowShare(metric, window: o, expected: v.expected))
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
                self.open[i].learned = v.learned
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
            return false
        } else {
            // Just after an anomaly in the same direction resolved, the baseline is still learning the level it
            // announced: only a deviation twice as strong is a new incident.
            let up = v.observed > v.expected
            self.settling.removeAll { o.windowStart - $0.end > Int64(Self.settleWindows) * o.interval }
            if self.settling.contains(where: { $0.metric == metric && $0.up == up }) && v.score < 2 { return false }
            let new = OpenAnomaly(
                metric: metric, start: o.windowStart, end: end, severity: severity, detector: v.detector, score: Float(v.score),
                peakWindow: o.windowStart, observed: Float(v.observed), expected: Float(v.expected), low: Float(v.low), high: Float(v.high),
                learned: v.learned, up: up, openLow: Float(v.low), openHigh: Float(v.high))
            self.open.append(new)
            out.append(self.anomaly(new, series: series, status: .ongoing, interval: o.interval))
            return true
        }
    }

    private func anomaly(_ a: OpenAnomaly, series: SeriesKey, status: Anomaly.Status, interval: Int64) -> Anomaly {
        Anomaly(
            series: series, metric: a.metric, start: a.start, end: a.end, status: status, severity: a.severity, detector: a.detector,
            score: Double(a.score), peakWindow: a.peakWindow, observed: Double(a.observed), expected: Double(a.expected),
            expectedLow: Double(a.low), expectedHigh: Double(a.high), revision: Int(a.revision), interval: interval,
            learnedOver: Int64(a.learned) * interval)
    }

    /// Adds an hour from the hourly rollups to the request rate's daily profile (rebuilding the days before the
    /// replayed minutes): each of its slots gets the hour's mean requests per window.
    public mutating func learnHour(hourStart: Int64, requests: Double, windowsPerHour: Double, p: DetectorParameters = .default) {
        guard windowsPerHour > 0, self.policy(.requestRate).dailyRhythm else { return }
        guard self.rate.hasRhythm(interval: Int64(3_600_000_000 / windowsPerHour), p: p) else { return }
        let length = self.rate.rhythm[0].slotLength
        var slot = self.rate.rhythm[0].slot(of: hourStart)
        while slot * length < hourStart + 3_600_000_000 {
            self.rate.rhythm[0].commit(slot: slot, mean: Float(requests / windowsPerHour), p: p)
            slot += 1
        }
    }
}

/// A metric's values as its model sees them (`MetricPolicy.Scale`), and the model's figures back in the metric's units.
struct Units {
    var scale: MetricPolicy.Scale
    /// The noise of a window of this many calls, for per-request figures.
    var noise: Double
    var center: Double

    init(scale: MetricPolicy.Scale, requests: Double, center: Double) {
        self.scale = scale
        self.noise = 0.1 + 1 / max(requests, 1).squareRoot()
        self.center = center
    }

    func input(_ value: Double) -> Double? {
        switch self.scale {
        case .raw: return value
        case .counts: return value >= 0 ? 2 * (value + 0.375).squareRoot() : nil
        case .perRequest(let offset): return value >= 0 ? (log(value + offset) - self.center) / self.noise : nil
        }
    }

    func value(_ x: Double) -> Double {
        guard x.isFinite else { return x }
        switch self.scale {
        case .raw: return x
        case .counts: return x <= 0 ? 0 : max(0, x * x / 4 - 0.375)
        case .perRequest(let offset): return max(0, exp(min(self.center + x * self.noise, 700)) - offset)
        }
    }
}
