import Foundation
import Rollups

/// The accuracy harness (`make eval`): a labelled corpus generated from a seed, the detectors run over it through
/// `Backtest.run`, and a report of precision, recall, F1 and delay per anomaly kind against two simple baselines.
public enum Evaluation {
    public enum Kind: String, CaseIterable, Sendable {
        case spike, levelShift = "level_shift", errorBurst = "error_burst", latencyDegradation = "latency_degradation", costJump = "cost_jump"

        /// The metric on which the kind shows.
        var metric: DetectorMetric {
            switch self {
            case .spike, .levelShift: return .requestRate
            case .errorBurst: return .errorRate
            case .latencyDegradation: return .latencyP95
            case .costJump: return .costPerRequest
            }
        }
    }

    public struct Label: Sendable {
        public var kind: Kind
        /// Window indexes, inclusive.
        public var start: Int
        public var end: Int
    }

    public struct LabelledSeries: Sendable {
        public var series: SeriesKey
        public var observations: [WindowObservation]
        public var labels: [Label]
    }

    /// An alert as the scorer sees it: a metric and a span of window indexes.
    struct Alert {
        var metric: DetectorMetric
        var start: Int
        var end: Int
    }

    // MARK: - Corpus

    /// `count` series of `days` days of 1-minute windows: daily (and weekend) seasonality, Poisson traffic with
    /// extra noise, slow drift, and injected, labelled anomalies after the first two days.
    public static func corpus(seed: UInt64, count: Int, days: Int) -> [LabelledSeries] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in self.series(index: i, days: days, rng: &rng) }
    }

    static let origin: Int64 = 1_767_225_600_000_000  // 2026-01-01T00:00:00Z, a Thursday

    static func series(index: Int, days: Int, rng: inout SplitMix64) -> LabelledSeries {
        let windows = days * 1440
        let base = exp(rng.uniform(log(0.5), log(300)))
        let amplitude = rng.uniform(0.3, 0.8)
        let phase = rng.uniform(0, 1440)
        let weekend = rng.uniform(0.6, 1.0)
        let drift = rng.uniform(-0.3, 0.3)
        let errorRate = exp(rng.uniform(log(0.002), log(0.03)))
        let latency = exp(rng.uniform(log(400), log(6000)))
        let cost = exp(rng.uniform(log(0.0002), log(0.05)))
        let tokens = exp(rng.uniform(log(50), log(1500)))
        let ttftShare = rng.uniform(0.15, 0.4)

        func rate(_ t: Int) -> Double {
            let minute = Double(t % 1440)
            let seasonal = 1 + amplitude * sin(2 * .pi * (minute - phase) / 1440)
            // The origin is a Thursday: the weekend is days 2 and 3, eased in and out over six hours.
            let hour = Double(t) / 60
            let ramp = { (x: Double) in min(1, max(0, x / 6)) }
            let weekendShare = ramp(hour - 48) * ramp(96 - hour)
            return base * seasonal * (1 - (1 - weekend) * weekendShare) * exp(drift * Double(t) / Double(windows))
        }

        // Anomalies: up to three per series, apart, after the first two days; each kind only where it can show.
        var labels: [Label] = []
        let wanted = Int(rng.next() % 4)
        var attempts = 0
        while labels.count < wanted && attempts < 20 {
            attempts += 1
            let kind = Kind.allCases[Int(rng.next() % UInt64(Kind.allCases.count))]
            let duration: Int
            switch kind {
            case .spike: duration = 1 + Int(rng.next() % 3)
            case .levelShift: duration = 120 + Int(rng.next() % 241)
            case .errorBurst: duration = 5 + Int(rng.next() % 26)
            case .latencyDegradation: duration = 15 + Int(rng.next() % 76)
            case .costJump: duration = 60 + Int(rng.next() % 181)
            }
            let start = 2 * 1440 + Int(rng.next() % UInt64(windows - 2 * 1440 - duration - 60))
            let volume = rate(start)
            let minimum: Double = kind == .spike || kind == .levelShift ? 5 : kind == .errorBurst ? 8 : 2
            guard volume >= minimum else { continue }
            guard !labels.contains(where: { abs($0.start - start) < 600 }) else { continue }
            labels.append(Label(kind: kind, start: start, end: start + duration - 1))
        }
        let magnitudes = labels.map { label -> Double in
            switch label.kind {
            case .spike: return max(3, 1 + 12 / rate(label.start).squareRoot()) * rng.uniform(1, 1.5)
            case .levelShift: return rng.next() % 3 == 0 ? rng.uniform(0.2, 0.4) : rng.uniform(2, 3)
            case .errorBurst: return rng.uniform(0.15, 0.4)
            case .latencyDegradation: return rng.uniform(2, 4)
            case .costJump: return rng.uniform(1.8, 3)
            }
        }

        var observations: [WindowObservation] = []
        observations.reserveCapacity(windows)
        for t in 0..<windows {
            var lambda = rate(t) * rng.gamma(shape: 50) / 50
            var p = errorRate
            var latencyFactor = 1.0, costFactor = 1.0
            for (label, m) in zip(labels, magnitudes) where t >= label.start && t <= label.end {
                switch label.kind {
                case .spike, .levelShift: lambda *= m
                case .errorBurst: p = max(p, m)
                case .latencyDegradation: latencyFactor = m
                case .costJump: costFactor = m
                }
            }
            let n = Double(rng.poisson(lambda))
            let k = n > 0 ? Double(rng.binomial(n: Int(n), p: p)) : 0
            let noise = 1 / (n + 1).squareRoot()
            let load = 1 + 0.15 * (rate(t) / base - 1)
            var o = WindowObservation(windowStart: Self.origin + Int64(t) * 60_000_000, requests: n, errors: k)
            if n > 0 {
                o.latencyP95 = latency * load * latencyFactor * exp(rng.normal() * (0.05 + 0.35 * noise))
                o.ttftP95 = latency * ttftShare * load * latencyFactor * exp(rng.normal() * (0.05 + 0.35 * noise))
                o.costPerRequest = cost * costFactor * exp(rng.normal() * (0.04 + 0.4 * noise))
                o.outputTokensPerRequest = tokens * exp(rng.normal() * (0.04 + 0.5 * noise))
            }
            observations.append(o)
        }
        return LabelledSeries(series: SeriesKey(tenant: "eval", provider: "p\(index % 7)", model: "m\(index)"), observations: observations, labels: labels)
    }

    // MARK: - Scoring

    public struct Score: Sendable {
        public var labels = 0
        public var detected = 0
        public var alerts = 0
        public var truePositiveAlerts = 0
        public var delays: [Int] = []

        public var recall: Double { self.labels == 0 ? 1 : Double(self.detected) / Double(self.labels) }
        public var precision: Double { self.alerts == 0 ? 1 : Double(self.truePositiveAlerts) / Double(self.alerts) }
        public var f1: Double { self.precision + self.recall == 0 ? 0 : 2 * self.precision * self.recall / (self.precision + self.recall) }
    }

    public struct Report: Sendable {
        public var name: String
        public var byKind: [Kind: Score]
        public var overall: Score
        public var falseAlerts: Int
        public var seriesWeeks: Double
        public var falseAlertsPerSeriesWeek: Double { Double(self.falseAlerts) / self.seriesWeeks }
    }

    /// Windows after a labelled anomaly's end during which an alert still belongs to it (recovery, resolve delay).
    static let grace = 40

    static func score(name: String, corpus: [LabelledSeries], days: Int, alerts: [[Alert]]) -> Report {
        var byKind: [Kind: Score] = [:]
        var byMetric: [DetectorMetric: Score] = [:]
        var falseAlerts = 0
        for (s, seriesAlerts) in zip(corpus, alerts) {
            for label in s.labels {
                byKind[label.kind, default: Score()].labels += 1
                let hits = seriesAlerts.filter { $0.metric == label.kind.metric && $0.start <= label.end && $0.end >= label.start }
                if let first = hits.min(by: { $0.start < $1.start }) {
                    byKind[label.kind, default: Score()].detected += 1
                    byKind[label.kind, default: Score()].delays.append(max(0, first.start - label.start))
                }
            }
            for alert in seriesAlerts {
                byMetric[alert.metric, default: Score()].alerts += 1
                let explained = s.labels.contains { alert.start <= $0.end + Self.grace && alert.end >= $0.start }
                if explained { byMetric[alert.metric, default: Score()].truePositiveAlerts += 1 } else { falseAlerts += 1 }
            }
        }
        var overall = Score()
        for kind in Kind.allCases {
            var k = byKind[kind] ?? Score()
            let m = byMetric[kind.metric] ?? Score()
            k.alerts = m.alerts
            k.truePositiveAlerts = m.truePositiveAlerts
            byKind[kind] = k
            overall.labels += k.labels
            overall.detected += k.detected
            overall.delays += k.delays
        }
        for m in byMetric.values {
            overall.alerts += m.alerts
            overall.truePositiveAlerts += m.truePositiveAlerts
        }
        return Report(name: name, byKind: byKind, overall: overall, falseAlerts: falseAlerts, seriesWeeks: Double(corpus.count * days) / 7)
    }

    // MARK: - Runs

    /// Tokenwatch's detectors, through the backtest path.
    public static func detectors(_ corpus: [LabelledSeries], days: Int, parameters: DetectorParameters = .default, verbose: Bool = false) -> Report {
        let alerts = corpus.map { s -> [Alert] in
            Backtest.run(series: s.series, observations: s.observations, parameters: parameters).anomalies.map { a in
                Alert(metric: a.metric, start: Int((a.start - Self.origin) / 60_000_000), end: Int((a.end - Self.origin) / 60_000_000) - 1)
            }
        }
        if verbose {
            for (s, seriesAlerts) in zip(corpus, alerts) {
                for label in s.labels where !seriesAlerts.contains(where: { $0.metric == label.kind.metric && $0.start <= label.end && $0.end >= label.start }) {
                    let o = s.observations[label.start], before = s.observations[label.start - 30]
                    print("missed \(label.kind.rawValue) in \(s.series.model) at \(label.start) for \(label.end - label.start + 1): requests \(before.requests) -> \(o.requests), value \(before.value(label.kind.metric)) -> \(o.value(label.kind.metric))")
                }
                for alert in seriesAlerts where !s.labels.contains(where: { alert.start <= $0.end + Self.grace && alert.end >= $0.start }) {
                    print("false \(alert.metric.name) in \(s.series.model) at \(alert.start)...\(alert.end), requests \(s.observations[alert.start].requests)")
                }
            }
        }
        return score(name: "tokenwatch", corpus: corpus, days: days, alerts: alerts)
    }

    /// Flags per window and metric become alerts the way the detector's lifecycle does (gaps under 10 windows join).
    static func alerts(from flags: [[Bool]]) -> [Alert] {
        var out: [Alert] = []
        for metric in DetectorMetric.allCases {
            var current: Alert?
            for (t, row) in flags.enumerated() where row[metric.rawValue] {
                if var c = current, t - c.end <= 10 {
                    c.end = t
                    current = c
                } else {
                    if let c = current { out.append(c) }
                    current = Alert(metric: metric, start: t, end: t)
                }
            }
            if let c = current { out.append(c) }
        }
        return out
    }

    /// Baseline 1: static thresholds per series, set from its first day (what fixed-threshold alerting does).
    public static func staticThreshold(_ corpus: [LabelledSeries], days: Int) -> Report {
        let alerts = corpus.map { s -> [Alert] in
            let day = s.observations.prefix(1440)
            func quantile(_ values: [Double], _ q: Double) -> Double {
                let v = values.filter(\.isFinite).sorted()
                return v.isEmpty ? .infinity : v[min(v.count - 1, Int(q * Double(v.count)))]
            }
            var upper: [Double] = [], lower: [Double] = []
            for metric in DetectorMetric.allCases {
                let values = day.map { $0.value(metric) }
                upper.append(metric == .errorRate ? max(0.1, 3 * quantile(values, 0.5)) : 1.5 * quantile(values, 0.999))
                lower.append(metric == .requestRate ? quantile(values, 0.001) / 2 : -.infinity)
            }
            let flags = s.observations.enumerated().map { (t, o) in
                DetectorMetric.allCases.map { m -> Bool in
                    let v = o.value(m)
                    return t >= 1440 && v.isFinite && (v > upper[m.rawValue] || v < lower[m.rawValue])
                }
            }
            return self.alerts(from: flags)
        }
        return score(name: "static threshold", corpus: corpus, days: days, alerts: alerts)
    }

    /// Baseline 2: a plain z-score against the mean and standard deviation of the previous hour, |z| > 3.
    public static func zScore(_ corpus: [LabelledSeries], days: Int) -> Report {
        let alerts = corpus.map { s -> [Alert] in
            var flags = [[Bool]](repeating: [Bool](repeating: false, count: DetectorMetric.allCases.count), count: s.observations.count)
            for metric in DetectorMetric.allCases {
                let values = s.observations.map { $0.value(metric) }
                for t in 60..<values.count where values[t].isFinite {
                    let window = values[(t - 60)..<t].filter(\.isFinite)
                    guard window.count >= 30 else { continue }
                    let mean = window.reduce(0, +) / Double(window.count)
                    let sd = (window.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(window.count)).squareRoot()
                    guard sd > 0 else { continue }
                    let z = (values[t] - mean) / sd
                    flags[t][metric.rawValue] = metric.policy.alertsBelow ? abs(z) > 3 : z > 3
                }
            }
            return self.alerts(from: flags)
        }
        return score(name: "plain z-score", corpus: corpus, days: days, alerts: alerts)
    }

    /// The report as Markdown.
    public static func markdown(_ reports: [Report], seed: UInt64, series: Int, days: Int) -> String {
        var out = "Corpus: \(series) series x \(days) days of 1-minute windows, seed \(seed); \(reports.first.map { $0.overall.labels } ?? 0) labelled anomalies.\n\n"
        out += "| detector | kind | labels | precision | recall | F1 | median delay (min) |\n| --- | --- | --- | --- | --- | --- | --- |\n"
        for r in reports {
            for kind in Kind.allCases {
                let s = r.byKind[kind] ?? Score()
                out += "| \(r.name) | \(kind.rawValue) | \(s.labels) | \(f(s.precision)) | \(f(s.recall)) | \(f(s.f1)) | \(median(s.delays)) |\n"
            }
            out += "| \(r.name) | **overall** | \(r.overall.labels) | \(f(r.overall.precision)) | \(f(r.overall.recall)) | **\(f(r.overall.f1))** | \(median(r.overall.delays)) |\n"
        }
        out += "\n| detector | alerts | false alerts | false alerts per series-week |\n| --- | --- | --- | --- |\n"
        for r in reports { out += "| \(r.name) | \(r.overall.alerts) | \(r.falseAlerts) | \(String(format: "%.3f", r.falseAlertsPerSeriesWeek)) |\n" }
        return out
    }

    static func f(_ x: Double) -> String { String(format: "%.3f", x) }
    static func median(_ values: [Int]) -> String {
        guard !values.isEmpty else { return "-" }
        return String(values.sorted()[values.count / 2])
    }
}

/// A small, fast, seedable generator (SplitMix64) with the distributions the corpus needs.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(self.next() >> 11) / Double(1 << 53) }
    mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * self.unit() }

    mutating func normal() -> Double {
        let u = max(self.unit(), 1e-300), v = self.unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }

    /// Marsaglia–Tsang.
    mutating func gamma(shape: Double) -> Double {
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                x = self.normal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = self.unit()
            if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }

    mutating func poisson(_ lambda: Double) -> Int {
        if lambda < 30 {
            let l = exp(-lambda)
            var k = 0, p = 1.0
            repeat {
                k += 1
                p *= self.unit()
            } while p > l
            return k - 1
        }
        return max(0, Int((lambda + lambda.squareRoot() * self.normal()).rounded()))
    }

    mutating func binomial(n: Int, p: Double) -> Int {
        if n < 40 {
            var k = 0
            for _ in 0..<n where self.unit() < p { k += 1 }
            return k
        }
        let mean = Double(n) * p, sd = (mean * (1 - p)).squareRoot()
        return min(n, max(0, Int((mean + sd * self.normal()).rounded())))
    }
}
