/// The detectors' parameters. Every threshold is in "z" units (deviations from the baseline in units of its robust
/// scale) and divided by the sensitivity: 2.0 alerts on half the deviation, 0.5 on twice.
public struct DetectorParameters: Sendable, Equatable {
    /// Overall sensitivity (a tenant setting). Default: 1.
    public var sensitivity = 1.0
    /// Windows a series (and metric) must have seen before it may alert. Default: 60 (an hour of 1-minute windows).
    public var warmupWindows = 60

    // MARK: Robust level detector (spikes)
    /// Weight of a new window in the exponentially weighted level and scale (memory about 1/alpha windows).
    /// Default: 0.05.
    public var alpha = 0.05
    /// The request rate's weight (it follows the day's traffic curve, so it may be slower than the others).
    /// Default: 0.03.
    public var rateAlpha = 0.03
    /// Residuals are clipped at this many scales before they update the baseline, so an anomaly barely moves it.
    /// Default: 3.
    public var clip = 3.0
    /// |z| that makes a single window anomalous. Default: 6.
    public var spikeThreshold = 6.0

    // MARK: Level shift (CUSUM on clipped z)
    /// Per-window allowance subtracted from each z before it accumulates. Default: 1.
    public var shiftDrift = 1.0
    /// z values are clipped at this before accumulating, so one spike cannot look like a shift. Default: 4.
    public var shiftClip = 4.0
    /// Accumulated evidence that signals a shift. Default: 10.
    public var shiftThreshold = 10.0

    // MARK: Seasonal detector (request rate)
    /// Days of history per hour-of-day slot (a ring). Default: 7.
    public var seasonalDays = 7
    /// Days a slot needs before the seasonal detector uses it. Default: 3.
    public var seasonalMinDays = 3
    /// |z| against the hour-of-day baseline that alerts. Default: 7.
    public var seasonalThreshold = 7.0

    // MARK: Error bursts (binomial likelihood ratio)
    /// Fewest errors in a window that may alert. Default: 3.
    public var burstMinErrors = 3.0
    /// Signed sqrt(2 x log-likelihood ratio) that alerts. Default: 6.
    public var burstThreshold = 6.0

    // MARK: Anomaly lifecycle
    /// Normal windows in a row that end an anomaly; a new deviation before then extends it. Default: 10.
    public var resolveWindows = 10
    // (Severity follows impact, not the score: `Severity.assess`.)

    public init() {}

    public static let `default` = DetectorParameters()
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
    case spike, levelShift, seasonal, errorBurst

    public var name: String {
        switch self {
        case .spike: return "robust_level"
        case .levelShift: return "level_shift"
        case .seasonal: return "seasonal"
        case .errorBurst: return "error_burst"
        }
    }
}
