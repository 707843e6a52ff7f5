@testable import DetectorCore
import Foundation
import Rollups
import Testing

@Suite("The live model's sketches and policies")
struct AdaptiveModelTests {
    /// Deterministic bell-shaped noise (a sum of four uniform draws).
    func bell(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        func unit() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 11) / Float(1 << 53)
        }
        return (0..<count).map { _ in (0..<4).reduce(Float(0)) { s, _ in s + unit() } - 2 }
    }

    @Test("the digest's extreme quantiles stay close to the exact window's, for bell-shaped and heavy-tailed values")
    func digestAgainstExact() {
        let decay = DetectorParameters.default.decay
        for (name, values) in [("bell", self.bell(4000, seed: 3)), ("heavy", self.bell(4000, seed: 5).map { exp(3 * $0) })] {
            var digest = DecayedDigest<20>()
            var exact = SlidingQuantiles(memory: 4000)
            for x in values {
                digest.add(x, decay: decay, weight: 1)
                exact.add(x, decay: decay, weight: 1)
            }
            let span = exact.quantile(0.995)! - exact.quantile(0.005)!
            for q: Float in [0.005, 0.05, 0.5, 0.95, 0.995] {
                let error = abs(digest.quantile(q)! - exact.quantile(q)!) / span
                #expect(error < 0.05, "\(name) q\(q): \(digest.quantile(q)!) against \(exact.quantile(q)!)")
            }
        }
    }

    @Test("the digest forgets: after seven memories of a new level, its range is the new level's; an open anomaly's lightly weighted values barely move it")
    func digestForgets() {
        var digest = DecayedDigest<20>()
        let decay = DetectorParameters.default.decay
        for x in self.bell(4000, seed: 7) { digest.add(x, decay: decay, weight: 1) }
        for x in self.bell(30000, seed: 8) { digest.add(x + 100, decay: decay, weight: 1) }
        #expect(digest.quantile(0.005)! > 98 && digest.quantile(0.995)! < 102)
        // Forty values are 1% of a memory of 4,000: at full weight the upper range is theirs; at an open anomaly's
        // weight (0.05) they count as two.
        var light = digest
        for _ in 0..<40 { digest.add(500, decay: decay, weight: 1) }
        for _ in 0..<40 { light.add(500, decay: decay, weight: Float(DetectorParameters.default.anomalyWeight)) }
        #expect(digest.quantile(0.995)! > 400 && light.quantile(0.995)! < 105, "\(digest.quantile(0.995)!) \(light.quantile(0.995)!)")
    }

    @Test("a live series' whole state, every metric's model with the request rate's daily profile, is under 2 KB")
    func memory() {
        var detector = SeriesDetector()
        for o in steady(300) { _ = detector.observe(o, series: series, parameters: .default) }
        #expect(detector.rate.rhythm.count == 1 && [detector.latency, detector.cost, detector.tokens, detector.ttft].allSatisfy { $0.rhythm.isEmpty })
        // The struct itself, and the request rate's daily part on the heap (with an array's header and malloc's).
        let bytes = MemoryLayout<SeriesDetector>.stride + MemoryLayout<LiveModel.RhythmPart>.stride + 32 + 16
        #expect(bytes <= 2048, "\(bytes) bytes: \(MemoryLayout<SeriesDetector>.stride) + \(MemoryLayout<LiveModel.RhythmPart>.stride); model \(MemoryLayout<LiveModel>.stride), channel \(MemoryLayout<Channel<DecayedDigest<20>, DecayedDigest<10>>>.stride), digest \(MemoryLayout<DecayedDigest<20>>.stride)")
    }

    @Test("harmful direction only: latency falling by half and cost halving raise nothing; the request rate alerts both ways")
    func direction() {
        var windows = steady(600)
        for t in 400..<460 {
            windows[t].latencyP95 /= 2
            windows[t].costPerRequest /= 2
        }
        #expect(run(windows).filter { $0.metric != .requestRate }.isEmpty, "\(run(windows).map(\.explanation))")
        var drop = steady(600, rate: 200)
        for t in 400..<460 { drop[t].requests = 40 }
        #expect(run(drop).contains { $0.metric == .requestRate && $0.observed < $0.expected })
    }

    @Test("minimum impact: two extra requests a minute at a quiet series are not an incident, two hundred at a busy one are")
    func minimumImpact() {
        var quiet = steady(600, rate: 0.5, seed: 4)
        for t in 400..<420 { quiet[t].requests += 2 }
        #expect(run(quiet).filter { $0.metric == .requestRate }.isEmpty, "\(run(quiet).map(\.explanation))")
        var busy = steady(600, rate: 400, seed: 4)
        for t in 400..<420 { busy[t].requests += 200 }
        #expect(run(busy).contains { $0.metric == .requestRate && $0.observed > $0.expected })
    }

    @Test("the explanation names the test and the history the range was learned over, in the metric's units")
    func explanation() {
        var windows = steady(600)
        for t in 400..<403 { windows[t].latencyP95 *= 4 }
        let a = try? #require(run(windows).first { $0.metric == .latencyP95 })
        #expect(a?.explanation.contains("outside the normal") == true && a?.explanation.contains("learned over the last 6.7 hours") == true
                && a?.explanation.contains(" ms") == true, "\(a?.explanation ?? "none")")
    }

    @Test("per-request figures are measured in the noise of their window's calls: a p95 of two calls twice its usual is noise, of two hundred an incident")
    func perRequestNoise() {
        let p = DetectorParameters.default
        let few = Units(scale: .perRequest(offset: 1), requests: 2, center: log(801))
        let many = Units(scale: .perRequest(offset: 1), requests: 200, center: log(801))
        #expect(few.input(1600)! < many.input(1600)! / 3)
        #expect(abs(few.value(few.input(1600)!) - 1600) < 0.01 && abs(many.value(0) - 800) < 0.01)
        let counts = Units(scale: .counts, requests: 0, center: 0)
        #expect(abs(counts.value(counts.input(150)!) - 150) < 1e-9 && counts.value(-3) == 0)
        #expect(p.margin(DetectorMetric.latencyP95.policy) > p.margin(.generic))
    }
}

extension AdaptiveModelTests {
    @Test("an outage of a perfectly steady series resolves within the usual run of normal windows once traffic returns")
    func outageResolves() {
        var windows = (0..<300).map { WindowObservation(windowStart: day0 + Int64($0) * 60_000_000, requests: 60) }
        for t in 250..<257 { windows[t].requests = 0 }
        let published = Backtest.run(series: series, observations: windows, parameters: .default).events.filter { $0.metric == .requestRate }
        let resolved = published.first { $0.status == .resolved }
        #expect(published.first?.start == windows[250].windowStart && published.first?.detector == .silence)
        // Its last anomalous window is the last silent one: the ten-value mean still catching up is not a shift.
        #expect(resolved.map { $0.end == windows[257].windowStart } == true, "ends \(resolved.map { ($0.end - day0) / 60_000_000 } ?? -1)")
        #expect(Set(published.map(\.id)).count == 1, "one anomaly")
    }
}

extension AdaptiveModelTests {
    @Test("values beyond what a Float holds, as an imported CSV may carry, are skipped like missing ones: nothing infinite reaches an anomaly")
    func hugeValues() throws {
        var text = "timestamp,value\n"
        for i in 0..<400 { text += "\(1_767_225_600 + i * 300),\(i == 300 ? "1e300" : i == 350 ? "9000" : String(100 + i % 7))\n" }
        let (interval, rows, _) = try Backtest.parseCSV(text)
        let found = Backtest.generic(rows, interval: interval, parameters: .default)
        #expect(found.count == 1 && found[0].peak == 9000, "\(found)")
        #expect(found.allSatisfy { $0.expectedLow.isFinite && $0.expectedHigh.isFinite })
    }
}
