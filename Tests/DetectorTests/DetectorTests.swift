import DetectorCore
import Foundation
import Rollups
import Testing

let series = SeriesKey(tenant: "t", provider: "openai", model: "gpt-4o")
let day0: Int64 = 1_767_225_600_000_000

/// A steady, noisy series of `count` minutes: Poisson-like counts around `rate` (with a daily curve of `amplitude`),
/// latency around 800 ms, cost and tokens steady, 1% errors.
func steady(_ count: Int, rate: Double = 40, amplitude: Double = 0, seed: UInt64 = 7, start: Int = 0) -> [WindowObservation] {
    var rng = Noise(seed: seed)
    return (start..<(start + count)).map { t in
        let lambda = rate * (1 + amplitude * sin(2 * .pi * Double(t % 1440) / 1440))
        let n = max(0, (lambda + lambda.squareRoot() * rng.normal()).rounded())
        return WindowObservation(
            windowStart: day0 + Int64(t) * 60_000_000, requests: n, errors: (n * 0.01).rounded(.down),
            latencyP95: 800 * exp(0.05 * rng.normal()), costPerRequest: 0.002 * exp(0.05 * rng.normal()),
            outputTokensPerRequest: 300 * exp(0.05 * rng.normal()), ttftP95: 200 * exp(0.05 * rng.normal()))
    }
}

struct Noise {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func unit() -> Double {
        self.state = self.state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Double(self.state >> 11) / Double(1 << 53)
    }
    mutating func normal() -> Double { (-2 * log(max(self.unit(), 1e-300))).squareRoot() * cos(2 * .pi * self.unit()) }
}

func run(_ observations: [WindowObservation], parameters: DetectorParameters = .default) -> [Anomaly] {
    Backtest.run(series: series, observations: observations, parameters: parameters).anomalies
}

@Suite("Detectors on constructed series")
struct DetectorTests {
    @Test("the metric names the API accepts (Vocabulary) are the detector's")
    func vocabulary() {
        #expect(Set(DetectorMetric.allCases.map(\.name)) == Set(Vocabulary.detectorMetrics))
    }

    @Test("a latency spike is found, with the window, the expected range and a sentence; steady traffic alone raises nothing")
    func spike() {
        var windows = steady(600)
        #expect(run(windows).isEmpty, "steady noise is not an anomaly")
        for t in 400..<403 { windows[t].latencyP95 *= 4 }
        let found = run(windows)
        #expect(found.count == 1)
        let a = found[0]
        #expect(a.metric == .latencyP95 && a.start == windows[400].windowStart && a.end == windows[402].windowStart + 60_000_000)
        // p95 four times its usual in minutes of 40 calls: a few calls much slower (impact 6 a minute): a warning.
        #expect(a.status == .resolved && a.severity == .warning)
        #expect(a.expected > 700 && a.expected < 900 && a.expectedHigh < a.observed && a.observed > 2500)
        #expect(a.explanation.contains("p95 latency of openai/gpt-4o"))
        #expect(a.id == run(windows)[0].id, "the id is deterministic")
    }

    @Test("a daily traffic curve is not an anomaly; a surge at night is")
    func seasonality() {
        var windows = steady(5 * 1440, rate: 60, amplitude: 0.7, seed: 3)
        #expect(run(windows).filter { $0.metric == .requestRate }.isEmpty, "five days of a strong daily curve alone")
        // Night of day 5: traffic as high as the daytime peak for two hours.
        let night = 4 * 1440 + 1080 + 90
        for t in night..<(night + 120) { windows[t].requests = 100 }
        let found = run(windows).filter { $0.metric == .requestRate }
        #expect(found.count == 1)
        #expect(found.first.map { $0.start >= windows[night].windowStart && $0.start <= windows[night + 10].windowStart } == true)
    }

    @Test("errors on small counts do not alert; a burst on many requests does")
    func errorBursts() {
        var quiet = steady(600, rate: 3, seed: 11)
        for t in stride(from: 200, to: 600, by: 97) { quiet[t].errors = min(quiet[t].requests, 2) }
        #expect(run(quiet).filter { $0.metric == .errorRate }.isEmpty, "2 errors among a handful of requests")
        var busy = steady(600, rate: 500, seed: 12)
        for t in 300..<310 { busy[t].errors = (busy[t].requests * 0.3).rounded() }
        let found = run(busy).filter { $0.metric == .errorRate }
        #expect(found.count == 1 && found[0].detector == .errorBurst && found[0].start == busy[300].windowStart)
    }

    @Test("a level shift is reported once as a shift, not as a run of spikes")
    func levelShift() {
        var windows = steady(900, rate: 30, seed: 5)
        for t in 500..<900 { windows[t].costPerRequest *= 1.8 }
        let found = run(windows).filter { $0.metric == .costPerRequest }
        #expect(found.count == 1)
        #expect(found.first?.detector == .levelShift || found.first?.detector == .spike)
        #expect(found.first.map { $0.start >= windows[500].windowStart && $0.start <= windows[510].windowStart } == true)
    }

    @Test("warm-up: nothing alerts before a series has enough history")
    func warmup() {
        var windows = steady(200)
        for t in 30..<33 { windows[t].latencyP95 *= 5 }
        #expect(run(windows).isEmpty)
        var p = DetectorParameters.default
        p.warmupWindows = 10
        #expect(run(windows, parameters: p).count == 1)
    }

    @Test("a state rebuilt from the last hours of history finds the same incidents as one kept all along")
    func rebuild() {
        var windows = steady(3 * 1440, rate: 25, amplitude: 0.5, seed: 9)
        for t in (2 * 1440 + 100)..<(2 * 1440 + 105) { windows[t].latencyP95 *= 4 }
        for t in (2 * 1440 + 400)..<(2 * 1440 + 420) { windows[t].errors = (windows[t].requests * 0.5).rounded() }
        let p = DetectorParameters.default
        var continuous = SeriesDetector(parameters: p)
        var kept: [Anomaly] = []
        for o in windows { kept += continuous.observe(o, series: series, parameters: p) }
        // A restart at the start of day 3: hourly history for the profile, six hours of minutes replayed.
        let restart = 2 * 1440
        var rebuilt = SeriesDetector(parameters: p)
        for hour in stride(from: 0, to: restart - 360, by: 60) {
            rebuilt.learnHour(hourStart: windows[hour].windowStart, requests: windows[hour..<(hour + 60)].reduce(0) { $0 + $1.requests }, windowsPerHour: 60)
        }
        for o in windows[(restart - 360)..<restart] { rebuilt.learn(o, series: series, parameters: p) }
        var after: [Anomaly] = []
        for o in windows[restart...] { after += rebuilt.observe(o, series: series, parameters: p) }
        // The rebuilt ranges are learned over the replayed hours, the kept ones over days: the same incidents are
        // found, opening at the same windows with the same severity (their extents may differ).
        let keptAfter = kept.filter { $0.start >= windows[restart].windowStart }
        #expect(!keptAfter.isEmpty)
        func openings(_ anomalies: [Anomaly]) -> [String: Severity] {
            Dictionary(anomalies.filter { $0.revision == 1 }.map { ($0.id, $0.severity) }, uniquingKeysWith: { a, _ in a })
        }
        #expect(openings(after) == openings(keptAfter))
        #expect(Set(after.map(\.start)) == Set(keptAfter.map(\.start)))
    }

    @Test("muted metrics are learned but never reported")
    func muted() {
        var windows = steady(600)
        for t in 400..<403 { windows[t].latencyP95 *= 4 }
        let rule = TenantDetectorSettings(muted: [.init(provider: "openai", metric: "latency_p95")])
        let found = Backtest.run(series: series, observations: windows, parameters: .default, muted: rule.mask(for: series)).anomalies
        #expect(found.isEmpty)
        #expect(TenantDetectorSettings(muted: [.init(model: "other")]).mask(for: series) == .none)
        #expect(TenantDetectorSettings(muted: [.init(model: "gpt-4o")]).mask(for: series) == .all)
    }

    @Test("CSV backtests read any regular interval and report bad lines")
    func csv() throws {
        var text = "timestamp,value\n"
        for i in 0..<300 { text += "\(1_767_225_600 + i * 300),\(i == 250 ? 4000 : 800 + (i % 7) * 10)\n" }
        let (interval, rows, _) = try Backtest.parseCSV(text)
        #expect(interval == 300_000_000 && rows.count == 300)
        let found = Backtest.run(series: series, observations: try Backtest.observations(rows, metric: .latencyP95, interval: interval), parameters: .default,
                                 muted: MetricMask([.requestRate, .errorRate, .costPerRequest, .outputTokensPerRequest, .timeToFirstTokenP95])).anomalies
        #expect(found.count == 1 && found[0].metric == .latencyP95)
        #expect(throws: Backtest.CSVError.self) { try Backtest.parseCSV("timestamp,value\n1767225600,1\n1767225500,2\n") }
        #expect(throws: Backtest.CSVError.self) { try Backtest.parseCSV("1767225600,x\n1767225660,2\n") }
    }

    @Test("the evaluation corpus is reproducible from its seed and the detectors meet the accuracy targets on a sample")
    func evaluationSample() {
        let a = Evaluation.corpus(seed: 1, count: 12, days: 4)
        let b = Evaluation.corpus(seed: 1, count: 12, days: 4)
        #expect(a.flatMap(\.observations).map { [$0.requests, $0.errors, $0.latencyP95.isNaN ? -1 : $0.latencyP95] } == b.flatMap(\.observations).map { [$0.requests, $0.errors, $0.latencyP95.isNaN ? -1 : $0.latencyP95] })
        let report = Evaluation.detectors(a, days: 4)
        #expect(report.overall.labels > 0)
        #expect(report.overall.f1 >= 0.8)
        #expect(report.falseAlertsPerSeriesWeek < 1)
    }
}
