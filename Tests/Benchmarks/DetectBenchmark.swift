import DetectorCore
import Foundation
import Rollups

/// Detector speed and memory: 100,000 live series, each warmed with two hours of windows, then every series scored
/// window after window with all detectors on. Figures: series-windows per second on one core (the scoring alone,
/// states held in an array; and through a dictionary keyed by series, as the engine keeps them) and memory per
/// series (RSS growth / series).
func detectBenchmark(seriesCount: Int = 100_000) {
    let p = DetectorParameters.default
    let keys = (0..<seriesCount).map { SeriesKey(tenant: "tenant-\($0 % 500)", provider: "openai", model: "model-\($0)") }
    func observation(_ s: Int, _ t: Int) -> WindowObservation {
        // Cheap deterministic noise: the benchmark measures the detectors, not a random number generator.
        let h = Double((s &* 2_654_435_761 &+ t &* 40_503) % 1000) / 1000
        let n = 20 + 10 * h
        return WindowObservation(windowStart: 1_767_225_600_000_000 + Int64(t) * 60_000_000, requests: n.rounded(), errors: h > 0.9 ? 1 : 0,
                                 latencyP95: 800 * (1 + 0.1 * h), costPerRequest: 0.002 * (1 + 0.05 * h),
                                 outputTokensPerRequest: 300 * (1 + 0.05 * h), ttftP95: 200 * (1 + 0.1 * h))
    }
    let before = residentBytes()
    var states = [SeriesDetector](repeating: SeriesDetector(parameters: p), count: seriesCount)
    for i in states.indices { states[i] = SeriesDetector(parameters: p) }  // own profile storage each
    let warmup = 120
    for t in 0..<warmup {
        for s in 0..<seriesCount { _ = states[s].observe(observation(s, t), series: keys[s], parameters: p) }
    }
    let after = residentBytes()
    let perSeries = Double(after - before) / Double(seriesCount)

    var anomalies = 0
    let rounds = 20
    let inputs = (0..<rounds).map { r in (0..<seriesCount).map { observation($0, warmup + r) } }
    // Three passes of `rounds` windows each; this machine's speed varies by half between runs, so the median and the
    // best pass are printed (the best is the code's speed with the least interference).
    var rates: [Double] = []
    for pass in 0..<3 {
        let start = ContinuousClock.now
        for r in 0..<rounds {
            let row = inputs[r]
            for s in 0..<seriesCount {
                var o = row[s]
                o.windowStart += Int64(pass * rounds) * 60_000_000
                anomalies += states[s].observe(o, series: keys[s], parameters: p).count
            }
        }
        let elapsed = ContinuousClock.now - start
        rates.append(Double(rounds * seriesCount) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
    }
    rates.sort()
    let rate = rates[1]

    var byKey = Dictionary(uniqueKeysWithValues: zip(keys, states))
    states = []
    let dictStart = ContinuousClock.now
    for r in 0..<rounds {
        let row = inputs[r]
        for s in 0..<seriesCount {
            var o = row[s]
            o.windowStart += Int64(3 * rounds) * 60_000_000
            anomalies += byKey[keys[s]]!.observe(o, series: keys[s], parameters: p).count
        }
    }
    let dictElapsed = ContinuousClock.now - dictStart
    let dictSeconds = Double(dictElapsed.components.seconds) + Double(dictElapsed.components.attoseconds) / 1e18
    print(String(format: "detector: %.0f series-windows/s on one core (median of 3 passes; best %.0f), all detectors on (%.2f of the 1,000,000 target); %.0f/s with states in a dictionary by series key", rate, rates[2], rate / 1_000_000, Double(rounds * seriesCount) / dictSeconds))
    print(String(format: "detector: %d live series hold %.0f MB (%.0f bytes per series; target: 100,000 series under 200 MB); %d anomalies on steady input", seriesCount, Double(after - before) / 1_048_576, perSeries, anomalies))
    _ = byKey.count
}

/// This process's resident set size (Linux /proc).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}
