import Events
import Foundation
import Rollups

/// Runs the live detectors, with the same parameters, over a historical series: what they would have raised.
/// `detector backtest` and the evaluation harness both go through `run`.
public enum Backtest {
    public struct Row: Sendable, Equatable {
        public var time: Int64
        public var value: Double
        public var requests: Double?

        public init(time: Int64, value: Double, requests: Double? = nil) {
            self.time = time
            self.value = value
            self.requests = requests
        }
    }

    public struct CSVError: Error, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var description: String { "line \(self.line): \(self.reason)" }
    }

    /// Most rows a CSV may hold (a year of minutes).
    public static let maxRows = 600_000

    /// A timestamp as exports write them: RFC 3339, RFC 3339 without a zone or `YYYY-MM-DD HH:MM:SS[.fff]` (both
    /// read as UTC), or Unix seconds.
    public static func parseTime(_ text: String) -> Int64? {
        if let t = EventTimestamp(rfc3339: text) { return t.microsecondsSinceEpoch }
        var zoned = text.replacingOccurrences(of: " ", with: "T")
        if zoned.count >= 19, zoned.count <= 29, !zoned.hasSuffix("Z"), !zoned.dropFirst(19).contains(where: { $0 == "+" || $0 == "-" }) { zoned += "Z" }
        if let t = EventTimestamp(rfc3339: zoned) { return t.microsecondsSinceEpoch }
        if let seconds = Double(text), seconds.isFinite, abs(seconds) < 1e11 { return Int64(seconds * 1_000_000) }
        return nil
    }

    /// Reads `timestamp,value[,requests]` lines (a header line is skipped; timestamps as `parseTime` reads them),
    /// in time order, at one regular interval (the most common gap; longer gaps are windows without data). A row
    /// whose time repeats the previous one (an hour written twice at a clock change, a duplicated export line) is
    /// skipped, and said in the warnings; a time going backwards is an error.
    public static func parseCSV(_ text: String) throws -> (interval: Int64, rows: [Row], warnings: [String]) {
        var rows: [Row] = []
        var warnings: [String] = []
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 2 || fields.count == 3 else { throw CSVError(line: index + 1, reason: "expected timestamp,value[,requests]") }
            guard let time = Self.parseTime(fields[0]) else {
                if rows.isEmpty && index == 0 { continue }  // a header
                throw CSVError(line: index + 1, reason: "timestamp: expected RFC 3339, YYYY-MM-DD HH:MM:SS (UTC) or Unix seconds")
            }
            guard let value = Double(fields[1]), value.isFinite else { throw CSVError(line: index + 1, reason: "value: expected a finite number") }
            var requests: Double?
            if fields.count == 3 {
                guard let n = Double(fields[2]), n.isFinite, n >= 0 else { throw CSVError(line: index + 1, reason: "requests: expected a number >= 0") }
                requests = n
            }
            if let last = rows.last, time == last.time {
                if warnings.count < 20 { warnings.append("line \(index + 1): timestamp \(fields[0]) repeats the previous row; skipped") }
                continue
            }
            if let last = rows.last, time < last.time { throw CSVError(line: index + 1, reason: "timestamps must increase") }
            rows.append(Row(time: time, value: value, requests: requests))
            guard rows.count <= Self.maxRows else { throw CSVError(line: index + 1, reason: "more than \(Self.maxRows) rows") }
        }
        guard rows.count >= 2 else { throw CSVError(line: 0, reason: "need at least two rows") }
        return (Self.regularInterval(rows.map(\.time))!, rows, warnings)
    }

    /// Observations of one metric. Only that metric can alert (the others are muted); per-request metrics use the
    /// requests column for their noise floor when given (else 100 requests per window).
    public static func observations(_ rows: [Row], metric: DetectorMetric, interval: Int64) throws -> [WindowObservation] {
        try rows.map { row in
            let n = row.requests ?? (metric == .requestRate ? row.value : 100)
            var o = WindowObservation(windowStart: row.time, interval: interval, requests: n)
            switch metric {
            case .requestRate: o.requests = row.value
            case .errorRate:
                guard let requests = row.requests else { throw CSVError(line: 0, reason: "error_rate needs the requests column (timestamp,value,requests)") }
                o.errors = (row.value * requests).rounded()
            case .latencyP95: o.latencyP95 = row.value
            case .costPerRequest: o.costPerRequest = row.value
            case .outputTokensPerRequest: o.outputTokensPerRequest = row.value
            case .timeToFirstTokenP95: o.ttftP95 = row.value
            }
            return o
        }
    }

    /// Every anomaly publication the detectors would have made over `observations` (in time order), and the
    /// anomalies as they ended (one per anomaly: the last publication).
    /// `generic`: the request-rate slot carries a series of unknown kind (`MetricPolicy.generic`).
    public static func run(series: SeriesKey, observations: [WindowObservation], parameters: DetectorParameters, muted: MetricMask = .none,
                           generic: Bool = false) -> (events: [Anomaly], anomalies: [Anomaly]) {
        var detector = SeriesDetector(parameters: parameters, generic: generic)
        var events: [Anomaly] = []
        for o in observations { events += detector.observe(o, series: series, parameters: parameters, muted: muted) }
        var last: [String: Anomaly] = [:]
        var order: [String] = []
        for e in events {
            if last[e.id] == nil { order.append(e.id) }
            last[e.id] = e
        }
        // Still open at the end: as far as they got.
        for a in detector.open {
            let id = Anomaly(series: series, metric: a.metric, start: a.start, end: a.end, status: .ongoing, severity: a.severity, detector: a.detector,
                             score: 0, peakWindow: 0, observed: 0, expected: 0, expectedLow: 0, expectedHigh: 0, revision: 0).id
            if var open = last[id] {
                open.end = a.end
                last[id] = open
            }
        }
        return (events, order.compactMap { last[$0] })
    }

    /// A one-line JSON summary of a backtest.
    public static func summary(windows: Int, interval: Int64, anomalies: [Anomaly]) -> String {
        var bySeverity: [String: Int] = [:], byMetric: [String: Int] = [:], byDetector: [String: Int] = [:]
        for a in anomalies {
            bySeverity[a.severity.name, default: 0] += 1
            byMetric[a.metric.name, default: 0] += 1
            byDetector[a.detector.name, default: 0] += 1
        }
        func object(_ d: [String: Int]) -> String { "{" + d.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}" }
        let days = Double(windows) * Double(interval) / 86_400_000_000
        return "{\"summary\":{\"windows\":\(windows),\"interval_seconds\":\(interval / 1_000_000),\"days\":\(String(format: "%.2f", days)),\"anomalies\":\(anomalies.count),\"by_severity\":\(object(bySeverity)),\"by_metric\":\(object(byMetric)),\"by_detector\":\(object(byDetector))}}"
    }
}

extension Backtest {
    /// An excursion the generic detector found: from its first to its last anomalous row.
    public struct GenericAnomaly: Sendable, Equatable, Encodable {
        public var start: String
        public var end: String
        public var direction: String
        /// The most extreme value of the excursion, and the normal range when it opened.
        public var peak: Double
        public var expectedLow: Double
        public var expectedHigh: Double
        public var rows: Int
        /// Which test opened it (`robust_level`, `level_shift`, `seasonal`) and the sentence the live detector writes.
        public var test: String
        public var explanation: String

        enum CodingKeys: String, CodingKey {
            case start = "window_start", end = "window_end", direction, peak = "observed", expectedLow = "expected_low", expectedHigh = "expected_high", rows,
                 test = "detector", explanation
        }
    }

    /// The most common gap between rows (the interval a series was written at).
    public static func regularInterval(_ times: [Int64]) -> Int64? {
        var gaps: [Int64: Int] = [:]
        for (a, b) in zip(times, times.dropFirst()) { gaps[b - a, default: 0] += 1 }
        return gaps.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key
    }

    /// `--metric generic`: the values as a series of unknown kind, through the live detector (`MetricPolicy.generic`).
    public static func generic(_ rows: [Row], interval: Int64, parameters: DetectorParameters) -> [GenericAnomaly] {
        let observations = rows.map { WindowObservation(windowStart: $0.time, interval: interval, requests: $0.value) }
        let series = SeriesKey(tenant: "csv", provider: "", model: "series")
        let found = Self.run(series: series, observations: observations, parameters: parameters, muted: Self.only(.requestRate), generic: true).anomalies
        let index = Dictionary(rows.enumerated().map { ($1.time, $0) }, uniquingKeysWith: { a, _ in a })
        return found.map { a in
            let first = index[a.start] ?? 0
            let last = max(first, (index[a.end - interval] ?? first))
            let span = rows[first...last].map(\.value)
            let up = a.observed > a.expected
            return GenericAnomaly(
                start: EventTimestamp(microsecondsSinceEpoch: a.start).rfc3339, end: EventTimestamp(microsecondsSinceEpoch: a.end).rfc3339,
                direction: up ? "up" : "down", peak: (up ? span.max() : span.min()) ?? a.observed, expectedLow: a.expectedLow, expectedHigh: a.expectedHigh,
                rows: last - first + 1, test: a.detector.name, explanation: a.explanation)
        }
    }

    /// Every metric muted but `metric`.
    public static func only(_ metric: DetectorMetric) -> MetricMask {
        var muted = MetricMask.all
        muted.bits &= ~MetricMask([metric]).bits
        return muted
    }
}
