import Events
import Rollups

/// The metrics the detector watches on every series.
public enum DetectorMetric: Int, CaseIterable, Sendable, Codable, Hashable {
    case requestRate
    case errorRate
    case latencyP95
    case costPerRequest
    case outputTokensPerRequest
    case timeToFirstTokenP95

    public var name: String {
        switch self {
        case .requestRate: return "request_rate"
        case .errorRate: return "error_rate"
        case .latencyP95: return "latency_p95"
        case .costPerRequest: return "cost_per_request"
        case .outputTokensPerRequest: return "output_tokens_per_request"
        case .timeToFirstTokenP95: return "ttft_p95"
        }
    }

    public init?(name: String) {
        guard let metric = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = metric
    }

    /// Words for explanations.
    var phrase: String {
        switch self {
        case .requestRate: return "request rate"
        case .errorRate: return "error rate"
        case .latencyP95: return "p95 latency"
        case .costPerRequest: return "cost per request"
        case .outputTokensPerRequest: return "output tokens per request"
        case .timeToFirstTokenP95: return "p95 time to first token"
        }
    }

    var unit: String {
        switch self {
        case .requestRate: return "requests/min"
        case .errorRate: return ""
        case .latencyP95, .timeToFirstTokenP95: return "ms"
        case .costPerRequest: return "USD"
        case .outputTokensPerRequest: return "tokens"
        }
    }

}

/// One window of one series as the detector sees it. Per-request metrics are NaN in a window without requests;
/// percentiles are NaN when the window has no sample.
public struct WindowObservation: Sendable, Equatable {
    /// Window start, microseconds since the epoch.
    public var windowStart: Int64
    /// Window length in microseconds (1 minute from the pipeline; any regular interval in a backtest).
    public var interval: Int64
    public var requests: Double
    public var errors: Double
    public var latencyP95: Double
    public var costPerRequest: Double
    public var outputTokensPerRequest: Double
    public var ttftP95: Double
    /// Median latency, for how many calls a latency anomaly touches (`Severity.assess`); NaN when unknown.
    public var latencyP50: Double = .nan

    public init(windowStart: Int64, interval: Int64 = 60_000_000, requests: Double, errors: Double = 0, latencyP95: Double = .nan,
                costPerRequest: Double = .nan, outputTokensPerRequest: Double = .nan, ttftP95: Double = .nan) {
        self.windowStart = windowStart
        self.interval = interval
        self.requests = requests
        self.errors = errors
        self.latencyP95 = latencyP95
        self.costPerRequest = costPerRequest
        self.outputTokensPerRequest = outputTokensPerRequest
        self.ttftP95 = ttftP95
    }

    /// A window of the pipeline's rollups.
    public init(_ record: RollupRecord) {
        let v = record.values
        let n = Double(v.requests)
        self.init(
            windowStart: record.key.windowStart, interval: record.granularity.microseconds, requests: n, errors: Double(v.errors),
            latencyP95: v.latency.quantile(0.95) ?? .nan,
            costPerRequest: n > 0 ? Double(v.costNanos) / Double(LLMEvent.nanosPerUSD) / n : .nan,
            outputTokensPerRequest: n > 0 ? Double(v.outputTokens) / n : .nan,
            ttftP95: v.timeToFirstToken.quantile(0.95) ?? .nan)
        self.latencyP50 = v.latency.quantile(0.5) ?? .nan
    }

    /// An empty window (no traffic): what a series shows where the pipeline emitted nothing.
    public static func empty(at windowStart: Int64, interval: Int64) -> WindowObservation {
        WindowObservation(windowStart: windowStart, interval: interval, requests: 0)
    }

    public func value(_ metric: DetectorMetric) -> Double {
        switch metric {
        case .requestRate: return self.requests
        case .errorRate: return self.requests > 0 ? self.errors / self.requests : .nan
        case .latencyP95: return self.latencyP95
        case .costPerRequest: return self.costPerRequest
        case .outputTokensPerRequest: return self.outputTokensPerRequest
        case .timeToFirstTokenP95: return self.ttftP95
        }
    }
}
