@testable import DetectorCore
import Logging
import Rollups
import Foundation
import Testing

@Suite("The live engine on series of unknown kind, and the NAB scorer")
struct GenericDetectorTests {
    /// Alerts (row indexes) of the live engine over `values` as a series of unknown kind (`backtest --metric generic`).
    func alerts(_ values: [Double], _ parameters: DetectorParameters = .default) -> [Int] {
        NABBenchmark.live(parameters: parameters)(values, values.indices.map { Int64($0) * 60_000_000 })
    }

    /// A noisy series around `level` (deterministic).
    func noisy(_ count: Int, level: Double, spread: Double, seed: UInt64 = 7) -> [Double] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return level + spread * (Double(state >> 11) / Double(1 << 53) - 0.5)
        }
    }

    @Test("a spike up and a dip down are found in either direction, once each, with no alert on the noise around them")
    func bothDirections() {
        var values = self.noisy(3000, level: 50, spread: 10)
        for i in 1500..<1504 { values[i] = 95 }  // a burst of four outliers: one excursion
        values[2500] = 2
        #expect(self.alerts(values) == [1500, 2500])
    }

    @Test("series of unknown kind: near zero, integer steps, percentages, negative values, a flat line and a daily square wave raise nothing")
    func noFalseAlarms() {
        let counts = (0..<3000).map { Double([0, 0, 1, 0, 2, 0, 1][$0 % 7]) }
        let percent = self.noisy(3000, level: 0.4, spread: 0.2)
        let negative = self.noisy(3000, level: -1200, spread: 300)
        let flat = [Double](repeating: 17.25, count: 3000)
        let square = (0..<3000).map { ($0 / 144) % 2 == 0 ? 10.0 : 80.0 }
        for (name, series) in [("counts", counts), ("percent", percent), ("negative", negative), ("flat", flat), ("square", square)] {
            #expect(self.alerts(series).isEmpty, "\(name)")
        }
        // A flat line that moves is an anomaly, however small its range was.
        var moved = flat
        moved[2000] = 19
        #expect(self.alerts(moved) == [2000])
    }

    @Test("a shift of level smaller than the noise is found by the short-window mean, though no single value leaves the usual range")
    func smallLevelShift() {
        // Bell-shaped noise (a sum of four uniform draws, sd 11.5 around 100): single values span about 70...130. From
        // row 2000 the level is 20 higher for 100 rows: inside the range learned for single values, while the mean
        // of ten (normally 100 +- 9) sits near 120.
        let parts = (0..<4).map { self.noisy(4000, level: 0, spread: 20, seed: 7 + UInt64($0) * 101) }
        var values = (0..<4000).map { i in 100 + parts.reduce(0) { $0 + $1[i] } }
        for i in 2000..<2100 { values[i] += 20 }
        let found = self.alerts(values).filter { $0 >= 1900 }
        #expect(found.count == 1 && (2000..<2030).contains(found[0]), "one alert within three short windows of the shift: \(found)")
        var valuesOnly = DetectorParameters.default
        valuesOnly.levelWarmupFactor = 1000  // the ten-value mean never speaks
        let late = self.alerts(values, valuesOnly)
        #expect((late.first ?? .max) > (found.first ?? 0) + 10, "single values find it later, if at all: \(late)")
    }

    @Test("a level that is new for good is learned: alerts stop, and a later incident at the new level is found")
    func newLevel() {
        var values = self.noisy(12000, level: 100, spread: 10)
        for i in 3000..<12000 { values[i] += 300 }  // a deploy that quadruples the level for good
        values[11000] = 900
        let found = self.alerts(values)
        #expect(found.first == 3000)
        #expect(found.contains(11000), "the incident after the new level: \(found)")
        #expect(found.filter { $0 > 3000 && $0 < 11000 }.count <= 1, "the new level is not alerted on for long: \(found)")
    }

    @Test("the daily rhythm: a day whose peak does not come is found, though every value is within the usual range; ordinary days raise nothing")
    func dailyRhythm() {
        // Five-minute rows (288 a day): 20 most of the day, a peak of 80 from 12:00 to 14:00, light noise.
        let perDay = 288
        var state: UInt64 = 3
        func noise() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53) - 0.5
        }
        var values = (0..<(10 * perDay)).map { i -> Double in
            let slot = i % perDay
            return (slot >= 144 && slot < 168 ? 80 : 20) + 2 * noise()
        }
        let times = values.indices.map { Int64($0) * 300_000_000 }
        // Ten ordinary days. The edges of this wave fall on the profile's slot boundaries, where its interpolation
        // leaves residuals that the residual-mean range takes days to learn: a marginal alert or two, none where the
        // missing peak is found below.
        let ordinary = NABBenchmark.live()(values, times)
        #expect(ordinary.count <= 2 && !ordinary.contains { (7 * perDay + 144)..<(7 * perDay + 150) ~= $0 }, "ten ordinary days: \(ordinary)")
        // Day 8: no peak.
        for i in (7 * perDay + 144)..<(7 * perDay + 168) { values[i] = 20 + 2 * noise() }
        let found = NABBenchmark.live()(values, times).filter { !ordinary.contains($0) }
        #expect(found.count == 1 && (found.first ?? 0) >= 7 * perDay + 144 && (found.first ?? 0) < 7 * perDay + 150, "\(found)")
        // Without the daily profile (a model of a metric without a rhythm), the missing peak goes unseen.
        let p = DetectorParameters.default
        var plain = LiveModel(memory: p.memory)
        #expect(zip(values, times).allSatisfy { x, t in
            let (up, down) = plain.observe(x, time: t, interval: 300_000_000, margin: p.margin, rhythm: false, p: p)
            return max(up.score, down.score) < 1
        })
    }

    @Test("alert fatigue: a series that keeps alerting is held to larger deviations; the extra margin wears off in days")
    func fatigue() {
        // One-minute rows; every 60 minutes a spike 60% of the range beyond it, from row 1000 on.
        var values = self.noisy(4000, level: 50, spread: 10)
        for i in stride(from: 1000, to: 2000, by: 60) { values[i] = 61 }
        var tireless = DetectorParameters.default
        tireless.fatigue = 1
        let all = self.alerts(values, tireless)
        let held = self.alerts(values)
        #expect(all.count >= 4, "without fatigue, until the spikes are common enough to be learned: \(all)")
        #expect(held.first == 1000 && held.count < all.count && Set(held).isSubset(of: Set(all)), "\(held)")
        // Two half-lives later (four days of minutes would be 5,760 rows; two days' quiet halves it twice over
        // two days): the same spike alerts again.
        var later = values + self.noisy(6000, level: 50, spread: 10, seed: 9)
        later[9500] = 61
        #expect(self.alerts(later).contains(9500))
    }

    @Test("sensitivity narrows or widens the margin beyond the learned range")
    func sensitivity() {
        var values = self.noisy(3000, level: 50, spread: 10)
        values[2000] = 58.5  // 35% of the range beyond it
        // The range of single values alone (the short-window mean, twice as sensitive, also finds noise in noise).
        var low = DetectorParameters.default
        low.sensitivity = 0.5
        low.levelWarmupFactor = 1000
        var high = low
        high.sensitivity = 2
        #expect(self.alerts(values, low).isEmpty)
        #expect(self.alerts(values, high) == [2000])
    }

    // MARK: - NAB scoring

    func file(rows: Int, windows: [ClosedRange<Int>]) -> NABBenchmark.File {
        NABBenchmark.File(name: "f", times: (0..<rows).map { Int64($0) * 300_000_000 }, values: [Double](repeating: 0, count: rows),
                          windows: windows.map { Int64($0.lowerBound) * 300_000_000...Int64($0.upperBound) * 300_000_000 })
    }

    @Test("NAB scoring: null is 0 and a detection at every window's start ~100; early beats late; false positives cost their weight, less just after a window")
    func nabScoring() {
        let f = self.file(rows: 1000, windows: [300...400, 700...800])
        let standard = NABBenchmark.profiles[0]
        func normalized(_ detections: [Int], profile: NABBenchmark.Profile = NABBenchmark.profiles[0]) -> Double {
            let raw = NABBenchmark.score(f, detections: detections, profile: profile).raw
            let null = -profile.fnWeight * 2, perfect = profile.tpWeight * 2
            return 100 * (raw - null) / (perfect - null)
        }
        #expect(normalized([]) == 0)
        // NAB's scaled sigmoid of the position -(last - row + 1) / width, divided by its value at the window's start.
        func tp(_ row: Int, in window: ClosedRange<Int>) -> Double {
            let p = -Double(window.upperBound - row + 1) / Double(window.count)
            return (2 / (1 + exp(5 * p)) - 1) / (2 / (1 + exp(-5.0)) - 1)
        }
        // At each window's first row: a perfect detector.
        #expect(abs(normalized([300, 700]) - 100) < 1e-9)
        // Half way in: 0.848 / 0.987; at the last row almost nothing.
        #expect(abs(NABBenchmark.score(f, detections: [350], profile: standard).raw - (tp(350, in: 300...400) - 1)) < 1e-9)
        #expect(abs(tp(350, in: 300...400) - 0.8633) < 0.001)
        #expect(abs(NABBenchmark.score(f, detections: [400], profile: standard).raw - (tp(400, in: 300...400) - 1)) < 1e-9)
        #expect(tp(400, in: 300...400) < 0.06)
        // Probation is 15% of the rows, at most 750: a 10,000-row file's window at rows 900...1000 is scored, one
        // wholly in the first 750 rows is not (neither found nor missed).
        let long = self.file(rows: 10000, windows: [100...200, 900...1000])
        #expect(NABBenchmark.score(long, detections: [900], profile: standard).truePositives == 1)
        #expect(NABBenchmark.score(long, detections: [], profile: standard).raw == -1)
        #expect(NABBenchmark.scoredWindows(long) == 1)
        // Later detections in a window are free; in probation (the first 15% here) ignored.
        #expect(NABBenchmark.score(f, detections: [300, 310, 320, 700], profile: standard).raw == NABBenchmark.score(f, detections: [300, 700], profile: standard).raw)
        #expect(NABBenchmark.score(f, detections: [10, 100], profile: standard).falsePositives == 0)
        // A false positive before any window costs its full weight; far after a window, the full weight; just after, little.
        let none = NABBenchmark.score(f, detections: [], profile: standard).raw
        #expect(abs(NABBenchmark.score(f, detections: [200], profile: standard).raw - (none - 0.11)) < 1e-9)
        #expect(abs(NABBenchmark.score(f, detections: [650], profile: standard).raw - (none - 0.11)) < 0.01)
        let justAfter = NABBenchmark.score(f, detections: [402], profile: standard).raw - none
        #expect(justAfter < 0 && justAfter > -0.01)
        // The profiles weigh the same detections differently.
        #expect(normalized([200, 300], profile: NABBenchmark.profiles[1]) < normalized([200, 300], profile: NABBenchmark.profiles[0]))
    }

    @Test("exports as written: YYYY-MM-DD HH:MM:SS and RFC 3339 without a zone read as UTC; an hour written twice at a clock change is skipped with a warning")
    func csvFormats() throws {
        let text = """
            timestamp,value
            2026-03-29 00:00:00,1
            2026-03-29T01:00:00,2
            2026-03-29 02:00:00.000,3
            2026-03-29 02:00:00,3
            2026-03-29T03:00:00Z,4
            2026-03-29T04:00:00+00:00,5
            """
        let (interval, rows, warnings) = try Backtest.parseCSV(text)
        #expect(interval == 3_600_000_000)
        #expect(rows.map(\.value) == [1, 2, 3, 4, 5])
        #expect(rows.first?.time == 1_774_742_400_000_000)
        #expect(warnings.count == 1 && warnings[0].contains("line 5") && warnings[0].contains("repeats"))
    }
}

@Suite("Explanations")
struct ExplanationTests {
    @Test("near zero the expected value and range are in the metric's own units (no log-space offset), and the alert reads upward")
    func nearZero() {
        // A fast cache: p95 latency around 0.4 ms, then 30 ms for three windows.
        var windows = steady(600)
        for t in windows.indices { windows[t].latencyP95 = 0.3 + Double(t % 3) * 0.1 }
        for t in 400..<403 { windows[t].latencyP95 = 30 }
        let found = run(windows).filter { $0.metric == .latencyP95 }
        #expect(found.count == 1)
        let a = found[0]
        #expect(a.expected < 0.6 && a.expectedLow >= 0 && a.expectedHigh < a.observed, "\(a.expected) \(a.expectedLow) \(a.expectedHigh)")
        #expect(a.explanation.contains("30 ms"), "\(a.explanation)")
    }

    @Test("a request rate is per the series' interval: /min live, /hour for an hourly CSV")
    func units() {
        var rows: [Backtest.Row] = []
        for i in 0..<600 { rows.append(Backtest.Row(time: day0 + Int64(i) * 3_600_000_000, value: i == 500 ? 900 : Double(100 + i % 5))) }
        let observations = try! Backtest.observations(rows, metric: .requestRate, interval: 3_600_000_000)
        var muted = MetricMask.all
        muted.bits &= ~MetricMask([.requestRate]).bits
        let found = Backtest.run(series: series, observations: observations, parameters: .default, muted: muted).anomalies
        #expect(found.first?.explanation.contains("requests/hour") == true, "\(found.first?.explanation ?? "none")")
        #expect(found.first?.explanation.contains("/min") == false)
        #expect(Anomaly.per(300_000_000) == " per 5 min" && Anomaly.per(60_000_000) == "/min" && Anomaly.per(86_400_000_000) == "/day")
    }
}

@Suite("Severity follows impact")
struct SeverityTests {
    @Test("the cases of issue 14: 36.8% of a busy model's calls failing is critical; a 1-3 s slowdown in a 25-call minute is info")
    func issueCases() {
        #expect(Severity.assess(metric: .errorRate, observed: 0.368, expected: 0.007, requests: 200, interval: 60_000_000) == .critical)
        #expect(Severity.assess(metric: .latencyP95, observed: 3000, expected: 1000, requests: 25, interval: 60_000_000) == .info)
    }

    @Test("reach and size both count: a busy series' outage is critical, a quiet one's a warning; a small deviation of a huge series is not critical")
    func reachAndSize() {
        #expect(Severity.assess(metric: .requestRate, observed: 0, expected: 120, requests: 0, interval: 60_000_000) == .critical)
        #expect(Severity.assess(metric: .requestRate, observed: 0, expected: 5, requests: 0, interval: 60_000_000) == .warning)
        #expect(Severity.assess(metric: .latencyP95, observed: 1100, expected: 1000, requests: 100_000, interval: 60_000_000) == .info, "10% slower: magnitude 0.1")
        #expect(Severity.assess(metric: .latencyP95, observed: 4000, expected: 1000, requests: 1000, interval: 60_000_000) == .critical)
        #expect(Severity.assess(metric: .costPerRequest, observed: 0.02, expected: 0.01, requests: 40, interval: 60_000_000) == .critical)
        #expect(Severity.assess(metric: .errorRate, observed: 1, expected: 0.01, requests: 4, interval: 60_000_000) == .warning, "every call of a quiet series failing")
        // Per minute: the same counts over an hour are 60 times less.
        #expect(Severity.assess(metric: .errorRate, observed: 0.368, expected: 0.007, requests: 200, interval: 3_600_000_000) == .info)
    }

    @Test("the detector publishes the severity of the impact: an error storm on a busy series is critical from its first window")
    func published() {
        var windows = steady(600, rate: 300)
        for t in 400..<405 { windows[t].errors = (windows[t].requests * 0.37).rounded() }
        let found = run(windows).filter { $0.metric == .errorRate }
        #expect(found.count == 1 && found.first?.severity == .critical)
    }
}

extension SeverityTests {
    @Test("when the median is beyond the usual p95, every call got slower: a 4x slowdown of 20 calls a minute is critical, of its p95 alone a warning")
    func wholeDistribution() {
        #expect(Severity.assess(metric: .latencyP95, observed: 3600, expected: 900, requests: 20, interval: 60_000_000, slowShare: 0.5) == .critical)
        #expect(Severity.assess(metric: .latencyP95, observed: 3600, expected: 900, requests: 20, interval: 60_000_000) == .warning)
        var windows = steady(600)
        for t in windows.indices { windows[t].latencyP50 = windows[t].latencyP95 / 2 }
        for t in 400..<403 { windows[t].latencyP95 *= 4; windows[t].latencyP50 = windows[t].latencyP95 * 0.9 }
        #expect(run(windows).first { $0.metric == .latencyP95 }?.severity == .critical)
    }
}

@Suite("Ongoing anomalies")
struct OngoingAnomalyTests {
    @Test("an open anomaly is published again as it grows (2, 4, 8, 16 windows), its end and peak moving forward, a bounded number of times")
    func extent() {
        var windows = steady(700)
        for t in 400..<440 { windows[t].latencyP95 *= t < 420 ? 3 : 5 }
        let published = Backtest.run(series: series, observations: windows, parameters: .default).events.filter { $0.metric == .latencyP95 }
        let ongoing = published.filter { $0.status == .ongoing }
        #expect(Set(published.map(\.id)).count == 1, "one anomaly")
        let lengths = ongoing.map { ($0.end - $0.start) / 60_000_000 }
        #expect(lengths.starts(with: [1, 2, 4, 8, 16, 32]), "\(lengths)")
        #expect(published.count <= 2 + 6 + 3, "bounded: \(published.count)")
        #expect(zip(ongoing, ongoing.dropFirst()).allSatisfy { $0.end < $1.end && $0.revision < $1.revision })
        #expect(ongoing.last!.peakWindow >= windows[420].windowStart, "the peak follows the worse second half")
        #expect(published.last?.status == .resolved && published.last?.end == windows[439].windowStart + 60_000_000)
    }
}

@Suite("Silence is an anomaly")
struct SilenceTests {
    let minute: Int64 = 60_000_000

    func record(_ series: SeriesKey, minute m: Int, requests: Int64) -> (record: RollupRecord, partition: Int32) {
        var values = RollupValues()
        values.requests = requests
        return (RollupRecord(key: RollupKey(series: series, windowStart: day0 + Int64(m) * self.minute), granularity: .minute, version: 1, values: values), 0)
    }

    @Test("a busy series that stops is raised by the wall clock within a few minutes, and resolved when traffic returns; a stalled partition raises nothing")
    func outage() async throws {
        let engine = DetectorEngine(history: nil, logger: Logger(label: "silence-test"))
        let quiet = SeriesKey(tenant: "acme", provider: "openai", model: "gpt-4o")
        let other = SeriesKey(tenant: "acme", provider: "anthropic", model: "claude-sonnet-4")
        var found: [Anomaly] = []
        // Four hours of traffic: past the warm-up (200 windows).
        for m in 0..<240 {
            found += try await engine.process([self.record(quiet, minute: m, requests: 100 + Int64(m % 7)), self.record(other, minute: m, requests: 50)])
        }
        #expect(found.isEmpty)
        // `quiet` stops at minute 240; `other` goes on, so the pipeline is delivering.
        for m in 240..<246 { found += try await engine.process([self.record(other, minute: m, requests: 50)]) }
        #expect(found.isEmpty, "no rollup of the silent series: nothing scored it yet")
        // Two minutes after minute 241 closed, by the wall clock.
        let now = day0 + 242 * self.minute + 120_000_000 + 1
        let raised = engine.scoreSilence(now: now, silence: .seconds(120))
        let outage = try #require(raised.first { $0.series == quiet })
        #expect(outage.metric == .requestRate && outage.status == .ongoing && outage.severity == .critical)
        #expect(outage.start == day0 + 240 * self.minute && outage.observed == 0 && outage.detector == .silence)
        #expect(outage.explanation.contains("received no requests"), "\(outage.explanation)")
        #expect(raised.allSatisfy { $0.series == quiet }, "the series that goes on is not silent")
        #expect(engine.scoreSilence(now: now, silence: .seconds(120)).isEmpty, "each window is scored once")

        // Traffic returns: the anomaly resolves after the usual run of normal windows.
        var after: [Anomaly] = []
        for m in 246..<260 { after += try await engine.process([self.record(quiet, minute: m, requests: 100), self.record(other, minute: m, requests: 50)]) }
        #expect(after.contains { $0.id == outage.id && $0.status == .resolved })

        // Everything on the partition stops (a stalled pipeline looks the same): nothing is raised.
        let stalled = engine.scoreSilence(now: day0 + 320 * self.minute, silence: .seconds(120))
        #expect(stalled.isEmpty, "\(stalled.map(\.explanation))")
    }
}

@Suite("Fewer, better alerts")
struct LongAnomalyTests {
    @Test("a level that is new for good (traffic doubled by a deploy) is learned: its anomaly resolves within an hour")
    func newLevel() {
        var windows = steady(1000, rate: 40)
        for t in 300..<1000 { windows[t].requests *= 2 }
        let found = run(windows).filter { $0.metric == .requestRate }
        #expect(found.count == 1, "\(found.map { ($0.start - windows[0].windowStart) / 60_000_000 }) \(found.map { ($0.end - $0.start) / 60_000_000 }) \(found.map(\.explanation))")
        let a = found[0]
        #expect(a.status == .resolved && (a.end - a.start) / 60_000_000 <= 60, "open for \((a.end - a.start) / 60_000_000) minutes")
    }

    @Test("a long latency incident re-baselines, so a later, different incident is a second anomaly")
    func twoIncidents() {
        // A series two days old: three hours slow, then back; later a sharp, different incident.
        var windows = steady(3600)
        for t in 2880..<3060 { windows[t].latencyP95 *= 3 }
        for t in 3400..<3410 { windows[t].latencyP95 *= 6 }
        let found = run(windows).filter { $0.metric == .latencyP95 }
        #expect(found.count == 2, "\(found.map { ($0.start - windows[0].windowStart) / 60_000_000 })")
        #expect(found.first.map { $0.start == windows[2880].windowStart && $0.end >= windows[3059].windowStart } == true, "the first lasts while the latency is high")
        #expect(found.last.map { $0.start >= windows[3400].windowStart } == true)
    }
}
