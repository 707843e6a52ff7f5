/// The detectors' parameters: those of the model every metric is scored by (`AdaptiveModel`), chosen on the tune half
/// of the labelled dev set only (the README gives both halves' scores), and the error-burst test and the anomaly
/// lifecycle. The sensitivity divides every margin: 2.0 alerts on half the deviation, 0.5 on twice.
public struct DetectorParameters: Sendable, Equatable {
    /// Overall sensitivity (a tenant setting). Default: 1.
    public var sensitivity = 1.0
    /// Values a metric must have seen before it may alert (its range is learned over them first). Default: 200.
    public var warmupWindows = 200

    // MARK: The model (AdaptiveModel)
    /// Values the ranges describe: each value's weight halves after about 0.69 x `memory` later values. Default: 4000.
    public var memory = 4000
    /// Quantiles that span the normal range of values and of ten-value means. Default: 0.005 and 0.995.
    public var lowQuantile = 0.005
    public var highQuantile = 0.995
    /// Quantiles that span the normal range of residuals against the daily profile. Default: 0.001 and 0.999.
    public var residualLowQuantile = 0.001
    public var residualHighQuantile = 0.999
    /// How far beyond a range, as a share of it, a value must lie (times the policy's scale, over the sensitivity).
    /// Default: 0.25.
    public var margin = 0.25
    /// The LLM metrics' margin over the model's (`MetricPolicy.live`), chosen on the synthetic corpus, the live
    /// regime of 1-minute windows: per-request metrics, and the request rate. Defaults: 2.5 and 2.
    public var liveMargin = 2.5
    public var rateMargin = 2.0
    /// The ten-value mean tests speak after this many warm-ups (overlapping means are far from independent, and a
    /// range learned from a few hundred of them is too narrow). Default: 3.
    public var levelWarmupFactor = 3
    /// 0: the ten-value mean is tested against the range of past such means; n > 0: its distance from an exponentially
    /// weighted mean of about the last n values is, against the range of past such distances, so a shift that stays
    /// within the day's usual range still stands out against where the series just was. Default: 60.
    public var levelMemory = 60
    /// For the LLM metrics (`MetricPolicy.live`): a test's statistic counts fully in what it learns up to this score,
    /// and robustLearning / score beyond, so a level shift in progress does not widen the range that would reveal it
    /// (chosen on the synthetic corpus; a series of unknown kind learns every value fully: the dev set's tune half
    /// scores that higher). Default: 0.5.
    public var robustLearning = 0.5
    /// Values the centre of a per-request metric's log follows (`MetricPolicy.Scale.perRequest`). Default: 20.
    public var centerMemory = 20
    /// How much a value of an LLM metric (`MetricPolicy.live`) counts in what is learned while an anomaly of the
    /// metric is open, so that a long incident does not become the range the next one is judged by (a series of
    /// unknown kind learns every value fully: the dev set's tune half scores that higher). Default: 0.05.
    public var anomalyWeight = 0.05
    /// Weight of a new day in each slot of the daily profile (about three days of memory). Default: 0.34.
    public var profileWeight = 0.34
    /// Days a slot needs before the daily tests use it. Default: 3.
    public var profileMinDays = 3
    /// Margin multiplier each alert adds to its metric, and the half-life of that extra margin in days. Defaults:
    /// 1.5 and 2.
    public var fatigue = 1.5
    public var fatigueHalfLifeDays = 2.0
    /// Days of hourly rollups loaded to rebuild the daily profile of a series. Default: 7.
    public var seasonalDays = 7

    // MARK: Error bursts (binomial likelihood ratio)
    /// Fewest errors in a window that may alert. Default: 3.
    public var burstMinErrors = 3.0
    /// Signed sqrt(2 x log-likelihood ratio) that alerts. Default: 6.
    public var burstThreshold = 6.0

    // MARK: Anomaly lifecycle
    /// Normal windows in a row that end an anomaly; a new deviation before then extends it. Default: 10.
    public var resolveWindows = 10
    /// Windows from its start during which an anomaly also goes on while the metric stays beyond the range it opened
    /// against: a model that learns every value soon counts a lasting incident as normal (after a few values when its
    /// history is short), and "resolved" must not be said of a metric still three times its usual. A level that is
    /// new for good is accepted after this. Default: 45.
    public var holdWindows = 45
    // (Severity follows impact, not the score: `Severity.assess`.)

    public init() {}

    public static let `default` = DetectorParameters()

    /// Weight an earlier value keeps per later value.
    var decay: Float { Float(1 - 1 / Double(max(self.memory, 1))) }
}

/// How bad an anomaly is.
public enum Severity: Int, Sendable, Comparable, CaseIterable, Codable {
    case info, warning, critical

    public var name: String {
        switch self {
        case .info: return "info"
        case .warning: return "warning"
        case .critical: return "critical"
        }
    }

    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }

    public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }
}

/// Which detector spoke loudest.
public enum DetectorKind: UInt8, Sendable, Codable {
    case spike, levelShift, seasonal, errorBurst, silence

    public var name: String {
        switch self {
        case .spike: return "robust_level"
        case .levelShift: return "level_shift"
        case .seasonal: return "seasonal"
        case .errorBurst: return "error_burst"
        case .silence: return "silence"
        }
    }
}
