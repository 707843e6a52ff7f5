import Foundation
import Rollups

/// Scoring by the rules of the Numenta Anomaly Benchmark (https://github.com/numenta/NAB, `nab/scorer.py`), over
/// labelled real series: `make eval`'s real-data report.
///
/// Per file, the first 15% of rows, at most 750, are probation: detections there are ignored, and a window that
/// lies wholly in it is not scored. A detection is an alert (an anomaly opening), at a row. In each labelled window
/// the first detection is a true positive worth `tpWeight x sigma(position) / sigma(-1)`, where the position runs
/// from -1 at the window's first row to 0 past its last and sigma(p) = 2 / (1 + e^(5p)) - 1 rewards early
/// detection; later detections in the window are free. A window
/// without one costs `fnWeight`. Each detection outside every window costs `fpWeight`, scaled by sigma of its
/// distance after the closest preceding window (relative to that window's length), so a late detection just
/// after a window costs little; with no window before it, the full weight. Scores are summed over the corpus and
/// normalized as NAB does: 100 (raw - null) / (perfect - null), where null (no detections) = -fnWeight x windows
/// and perfect = tpWeight x windows.
public enum NABBenchmark {
    public struct Profile: Sendable {
        public var name: String
        public var tpWeight: Double
        public var fpWeight: Double
        public var fnWeight: Double
    }

    /// NAB's three application profiles (`config/profiles.json`).
    public static let profiles = [
        Profile(name: "standard", tpWeight: 1, fpWeight: 0.11, fnWeight: 1),
        Profile(name: "reward_low_fp", tpWeight: 1, fpWeight: 0.22, fnWeight: 1),
        Profile(name: "reward_low_fn", tpWeight: 1, fpWeight: 0.11, fnWeight: 2),
    ]

    public struct File: Sendable {
        public var name: String
        public var times: [Int64]
        public var values: [Double]
        /// Labelled windows, inclusive, in microseconds.
        public var windows: [ClosedRange<Int64>]

        public init(name: String, times: [Int64], values: [Double], windows: [ClosedRange<Int64>]) {
            self.name = name
            self.times = times
            self.values = values
            self.windows = windows
        }
    }

    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads a NAB-layout directory: `labels/windows.json` (file -> [[start, end], ...]) and `data/<file>`
    /// (`timestamp,value`, `YYYY-MM-DD HH:MM:SS` UTC; a repeated timestamp, as at a clock change, is skipped).
    public static func load(directory: String) throws -> [File] {
        let labelsURL = URL(fileURLWithPath: directory).appendingPathComponent("labels/windows.json")
        guard let labels = try JSONSerialization.jsonObject(with: Data(contentsOf: labelsURL)) as? [String: [[String]]] else {
            throw LoadError(description: "\(labelsURL.path): expected an object of file -> [[start, end]]")
        }
        return try labels.keys.sorted().map { name in
            let text = try String(contentsOfFile: URL(fileURLWithPath: directory).appendingPathComponent("data/\(name)").path, encoding: .utf8)
            let (_, rows, _) = try Backtest.parseCSV(text)
            let windows = try labels[name]!.map { pair -> ClosedRange<Int64> in
                guard pair.count == 2, let a = Backtest.parseTime(pair[0]), let b = Backtest.parseTime(pair[1]), a <= b else {
                    throw LoadError(description: "\(name): a window must be [start, end]")
                }
                return a...b
            }
            return File(name: name, times: rows.map(\.time), values: rows.map(\.value), windows: windows)
        }
    }

    static func sigma(_ position: Double) -> Double {
        if position > 3 { return -1 }
        if position < -3 { return 1 }
        return 2 / (1 + exp(5 * position)) - 1
    }

    public struct FileScore: Sendable {
        public var raw: Double
        public var truePositives: Int
        public var falsePositives: Int
        /// For each detected window, the rows from its first row to the detection, as a share of its rows.
        public var delayShares: [Double]
    }

    /// Rows of probation, as NAB's sweeper counts them: 15% of the file, at most 750 rows (15% of 5,000).
    static func probation(_ rows: Int) -> Int {
        min(Int((0.15 * Double(rows)).rounded(.down)), 750)
    }

    /// Scores the detections (row indexes) of one file under one profile, as `nab/sweeper.py` does for a detector
    /// whose detections are exactly these rows.
    public static func score(_ file: File, detections: [Int], profile: Profile) -> FileScore {
        let probation = self.probation(file.times.count)
        // Each window's rows: [first, last]. A window that lies wholly in probation is not scored at all.
        let allWindows: [ClosedRange<Int>] = file.windows.compactMap { w in
            guard let first = file.times.firstIndex(where: { w.contains($0) }), let last = file.times.lastIndex(where: { w.contains($0) }) else { return nil }
            return first...last
        }
        let windowRows = allWindows.filter { $0.upperBound >= probation }
        let scored = detections.filter { $0 >= probation }.sorted()
        let maxTP = sigma(-1)
        var result = FileScore(raw: 0, truePositives: 0, falsePositives: 0, delayShares: [])
        for rows in windowRows {
            if let first = scored.first(where: { rows.contains($0) }) {
                let width = Double(rows.count)
                let position = -Double(rows.upperBound - first + 1) / width
                result.raw += sigma(position) / maxTP * profile.tpWeight
                result.truePositives += 1
                result.delayShares.append(Double(first - rows.lowerBound) / width)
            } else {
                result.raw -= profile.fnWeight
            }
        }
        for d in scored where !allWindows.contains(where: { $0.contains(d) }) {
            result.falsePositives += 1
            if let before = allWindows.filter({ $0.upperBound < d }).max(by: { $0.upperBound < $1.upperBound }) {
                let distance = before.count <= 1 ? 3.0 : Double(d - before.upperBound) / Double(before.count - 1)
                result.raw += sigma(distance) * profile.fpWeight
            } else {
                result.raw -= profile.fpWeight
            }
        }
        return result
    }

    /// The windows of a file that are scored (not wholly in probation).
    static func scoredWindows(_ file: File) -> Int {
        let probation = self.probation(file.times.count)
        return file.windows.filter { w in file.times.lastIndex(where: { w.contains($0) }).map { $0 >= probation } ?? false }.count
    }

    public struct Report: Sendable {
        public var detector: String
        /// Normalized score per profile, in `profiles` order.
        public var scores: [Double]
        public var windows: Int
        public var truePositives: Int
        public var falsePositives: Int
        public var falseAlertsPerSeriesDay: Double
        /// Median delay from a window's start to its first detection, as a share of the window.
        public var medianDelayShare: Double?
        public var seconds: Double
        public var rows: Int
    }

    /// Runs `detect` (values and times of a file -> detection rows) over the corpus and scores it.
    public static func evaluate(_ files: [File], detector: String, _ detect: ([Double], [Int64]) -> [Int]) -> Report {
        var raw = [Double](repeating: 0, count: profiles.count)
        var tp = 0, fp = 0, days = 0.0, rows = 0
        var delayShares: [Double] = []
        let started = ContinuousClock.now
        var detections: [[Int]] = []
        for file in files { detections.append(detect(file.values, file.times)) }
        let elapsed = ContinuousClock.now - started
        for (file, found) in zip(files, detections) {
            rows += file.values.count
            for (i, profile) in profiles.enumerated() {
                let s = score(file, detections: found, profile: profile)
                raw[i] += s.raw
                if i == 0 {
                    tp += s.truePositives
                    fp += s.falsePositives
                    delayShares += s.delayShares
                }
            }
            let probation = self.probation(file.times.count)
            if let first = file.times.dropFirst(probation).first, let last = file.times.last { days += Double(last - first) / 86_400_000_000 }
        }
        let windows = files.reduce(0) { $0 + scoredWindows($1) }
        let scores = profiles.enumerated().map { i, p in
            let null = -p.fnWeight * Double(windows)
            let perfect = p.tpWeight * Double(windows)
            return 100 * (raw[i] - null) / (perfect - null)
        }
        let sortedShares = delayShares.sorted()
        return Report(detector: detector, scores: scores, windows: windows, truePositives: tp, falsePositives: fp,
                      falseAlertsPerSeriesDay: days > 0 ? Double(fp) / days : 0,
                      medianDelayShare: sortedShares.isEmpty ? nil : sortedShares[sortedShares.count / 2],
                      seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, rows: rows)
    }

    // MARK: - Detectors

    /// The live detector (`SeriesDetector`, as `detector backtest` runs it) with the values in `metric`'s slot, under
    /// that metric's policy, or as a series of unknown kind (`metric` nil: `MetricPolicy.generic`): an alert where an
    /// anomaly opens.
    public static func live(_ metric: DetectorMetric? = nil, parameters: DetectorParameters = .default) -> ([Double], [Int64]) -> [Int] {
        return { values, times in
            let interval = Backtest.regularInterval(times) ?? 60_000_000
            let rows = zip(times, values).map { Backtest.Row(time: $0, value: $1) }
            let slot = metric ?? .requestRate
            guard let observations = try? Backtest.observations(rows, metric: slot, interval: interval) else { return [] }
            let index = Dictionary(times.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            return Backtest.run(series: SeriesKey(tenant: "nab", provider: "", model: "file"), observations: observations, parameters: parameters,
                                muted: Backtest.only(slot), generic: metric == nil).anomalies.compactMap { index[$0.start] }.sorted()
        }
    }

    /// The model alone under the generic policy, with exact windows or the live sketches: what the sketches cost.
    /// Alerts open and close as `SeriesDetector`'s lifecycle does (`resolveWindows` normal values close one).
    static func model<Points: RangeSketch, Means: RangeSketch>(_ kind: AdaptiveModel<Points, Means>.Type, parameters p: DetectorParameters = .default) -> ([Double], [Int64]) -> [Int] {
        return { values, times in
            let interval = Backtest.regularInterval(times) ?? 60_000_000
            var model = AdaptiveModel<Points, Means>(memory: p.memory)
            var out: [Int] = []
            var open = false, streak = 0
            for (i, (x, t)) in zip(values, times).enumerated() {
                let (up, down) = model.observe(x, time: t, interval: interval, margin: p.margin / p.sensitivity, weight: 1, rhythm: true, p: p)
                if max(up.score, down.score) >= 1 {
                    if !open {
                        out.append(i)
                        model.alerted(p: p)
                    }
                    open = true
                    streak = 0
                } else if open {
                    streak += 1
                    if streak >= p.resolveWindows { open = false }
                }
            }
            return out
        }
    }

    /// The model's exact reference (`SlidingQuantiles` windows) and the live sketches, for `make eval`.
    public static func exactModel(_ p: DetectorParameters = .default) -> ([Double], [Int64]) -> [Int] { Self.model(AdaptiveModel<SlidingQuantiles, SlidingQuantiles>.self, parameters: p) }
    public static func sketchedModel(_ p: DetectorParameters = .default) -> ([Double], [Int64]) -> [Int] { Self.model(LiveModel.self, parameters: p) }

    /// `split.json` beside the labels (half name -> files), if present.
    public static func split(directory: String) -> [String: [String]]? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent("split.json")) else { return nil }
        return try? JSONDecoder().decode([String: [String]].self, from: data)
    }

    /// An alert per excursion of a score beyond a threshold (an excursion closes after `quiet` normal rows, so
    /// baselines are not penalized for repeating themselves): the baselines below use it.
    static func excursions(_ count: Int, quiet: Int = 30, _ anomalous: (Int) -> Bool) -> [Int] {
        var out: [Int] = []
        var open = false, streak = 0
        for i in 0..<count {
            if anomalous(i) {
                if !open { out.append(i) }
                open = true
                streak = 0
            } else if open {
                streak += 1
                if streak >= quiet { open = false }
            }
        }
        return out
    }

    /// Static threshold: the minimum and maximum of the probation rows, widened by 10% of their range.
    public static func staticThreshold(_ values: [Double], _ times: [Int64]) -> [Int] {
        let probation = max(1, Int(0.15 * Double(values.count)))
        let head = values.prefix(probation)
        let lo = head.min()!, hi = head.max()!
        let margin = 0.1 * max(hi - lo, 1e-9)
        return excursions(values.count) { values[$0] < lo - margin || values[$0] > hi + margin }
    }

    /// z-score against the running mean and deviation of everything before (|z| > 4).
    public static func zScore(_ values: [Double], _ times: [Int64]) -> [Int] {
        var n = 0.0, mean = 0.0, m2 = 0.0
        var flags = [Bool](repeating: false, count: values.count)
        for (i, x) in values.enumerated() {
            if n >= 30 {
                let sd = (m2 / (n - 1)).squareRoot()
                flags[i] = sd > 0 && abs(x - mean) / sd > 4
            }
            n += 1
            let d = x - mean
            mean += d / n
            m2 += d * (x - mean)
        }
        return excursions(values.count) { flags[$0] }
    }

    /// NAB's windowed Gaussian: z-score against the last 6,400 values (|z| > 5).
    public static func windowedGaussian(_ values: [Double], _ times: [Int64]) -> [Int] {
        let window = 6400
        var sum = 0.0, sumSquares = 0.0
        var flags = [Bool](repeating: false, count: values.count)
        for (i, x) in values.enumerated() {
            let n = Double(min(i, window))
            if n >= 30 {
                let mean = sum / n
                let sd = max(sumSquares / n - mean * mean, 0).squareRoot()
                flags[i] = sd > 0 && abs(x - mean) / sd > 5
            }
            sum += x
            sumSquares += x * x
            if i >= window {
                sum -= values[i - window]
                sumSquares -= values[i - window] * values[i - window]
            }
        }
        return excursions(values.count) { flags[$0] }
    }

    /// One row per file: windows found, false alerts and the standard profile's raw score (0 is what the null
    /// detector scores on a file minus its windows).
    public static func perFile(_ files: [File], _ detect: ([Double], [Int64]) -> [Int]) -> String {
        var out = "| file | rows | windows found | false alerts | standard raw |\n| --- | ---: | ---: | ---: | ---: |\n"
        for file in files {
            let s = score(file, detections: detect(file.values, file.times), profile: profiles[0])
            out += "| \(file.name) | \(file.values.count) | \(s.truePositives)/\(scoredWindows(file)) | \(s.falsePositives) | \(String(format: "%.2f", s.raw)) |\n"
        }
        return out
    }

    /// The markdown table of reports.
    public static func markdown(_ reports: [Report], files: Int) -> String {
        var out = "### Real labelled series (NAB scoring, \(files) files, \(reports.first?.windows ?? 0) windows; null 0, perfect 100)\n\n"
        out += "| detector | standard | reward low FP | reward low FN | windows found | false alerts | false alerts / series-day | median delay (share of window) | rows/s |\n"
        out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        for r in reports {
            let delay = r.medianDelayShare.map { String(format: "%.2f", $0) } ?? "–"
            let rate = r.seconds > 0 ? String(format: "%.0f", Double(r.rows) / r.seconds) : "–"
            out += "| \(r.detector) | \(String(format: "%.1f", r.scores[0])) | \(String(format: "%.1f", r.scores[1])) | \(String(format: "%.1f", r.scores[2])) | \(r.truePositives)/\(r.windows) | \(r.falsePositives) | \(String(format: "%.2f", r.falseAlertsPerSeriesDay)) | \(delay) | \(rate) |\n"
        }
        return out
    }
}
