/// What an anomaly of a metric means to the people running an LLM application, applied on top of what the model
/// finds (`AdaptiveModel` tests every metric the same way, learning its scale and shape from the data):
///
/// - the harmful direction: more errors, slower, dearer, longer answers alert; the request rate and a series of
///   unknown kind alert both ways (a surge and a collapse of traffic both matter);
/// - a minimum impact, in requests a minute as `Severity` counts them: two extra requests at night are not an
///   incident, nor is the p95 of a minute with three calls;
/// - the margin: a 1-minute series has 1,440 chances a day to cross a bound, five times as many as the 5-minute
///   series the model's margin was chosen on, and a page must mean something, so the LLM metrics ask for a wider
///   margin than a backtest of a series of unknown kind;
/// - whether the metric has a daily rhythm worth a profile (the request rate; per-request metrics follow the mix of
///   calls more than the clock, and leaving them without a profile keeps a series within 2 KB);
/// - what kind of number it is (`Scale`): the model learns the scale and the shape of whatever it is given, but a
///   count and a per-request figure have a noise that is known to change with the traffic, which no amount of
///   history teaches a model that sees one number a window.
public struct MetricPolicy: Sendable, Equatable {
    public enum Scale: Sendable, Equatable {
        /// The values as they are.
        case raw
        /// Counts: 2 sqrt(x + 3/8) (Anscombe), where Poisson noise has about unit variance at any volume, so eight
        /// requests against a usual one and a half is not a surge and 800 against 150 is.
        case counts
        /// A figure over a window's calls (a p95, a mean cost): log(x + offset), where a doubling is the same step
        /// at any level, measured from a slowly learned centre in units of the noise of a window of n calls,
        /// 0.1 + 1/sqrt(n), so one scale is learned for busy and quiet hours alike.
        case perRequest(offset: Double)
    }

    public var alertsBelow: Bool
    /// An LLM metric of the live regime: its margin is the model's times `DetectorParameters.liveMargin`.
    public var live: Bool
    public var minimumImpact: Double
    public var dailyRhythm: Bool
    public var scale: Scale
    /// `DetectorParameters.holdWindows` times this: how long an anomaly may go on while the metric stays beyond the
    /// range it opened against. A traffic level that doubled is often the new normal within the hour; a p95 three
    /// times its usual is an incident until it is back, so per-request metrics hold longer.
    public var holdScale: Int

    public init(alertsBelow: Bool, live: Bool, minimumImpact: Double, dailyRhythm: Bool, scale: Scale, holdScale: Int = 1) {
        self.alertsBelow = alertsBelow
        self.live = live
        self.minimumImpact = minimumImpact
        self.dailyRhythm = dailyRhythm
        self.scale = scale
        self.holdScale = holdScale
    }

    /// A series of unknown kind (`detector backtest --metric generic`): both ways, no minimum, the model's margin.
    public static let generic = MetricPolicy(alertsBelow: true, live: false, minimumImpact: 0, dailyRhythm: true, scale: .raw)
}

extension DetectorMetric {
    public var policy: MetricPolicy {
        switch self {
        case .requestRate: return MetricPolicy(alertsBelow: true, live: true, minimumImpact: 5, dailyRhythm: true, scale: .counts)
        case .errorRate: return MetricPolicy(alertsBelow: false, live: false, minimumImpact: 0, dailyRhythm: false, scale: .raw)
        case .latencyP95, .timeToFirstTokenP95, .outputTokensPerRequest:
            return MetricPolicy(alertsBelow: false, live: true, minimumImpact: 0, dailyRhythm: false, scale: .perRequest(offset: 1), holdScale: 6)
        case .costPerRequest:
            return MetricPolicy(alertsBelow: false, live: true, minimumImpact: 1, dailyRhythm: false, scale: .perRequest(offset: 1e-6), holdScale: 6)
        }
    }
}

extension DetectorParameters {
    /// The margin a metric under `policy` is held to, before fatigue.
    func margin(_ policy: MetricPolicy) -> Double {
        self.margin * (policy.live ? (policy.scale == .counts ? self.rateMargin : self.liveMargin) : 1) / self.sensitivity
    }
}
