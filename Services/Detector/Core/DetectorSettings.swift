import ServiceKit

/// The detector service's own settings (beyond `ServiceConfiguration`).
public struct DetectorSettings: Sendable {
    /// `TW_DETECTOR_BATCH`: most rollup windows scored (and committed) together. Default: 2000.
    public var batchSize = 2000
    /// `TW_DETECTOR_WARMUP_WINDOWS`: values a metric's model learns before it may alert. Default: 200.
    public var warmupWindows = DetectorParameters.default.warmupWindows
    /// `TW_DETECTOR_REPLAY_HOURS`: hours of 1-minute windows replayed to rebuild a series (plus 7 days of hourly
    /// rollups for the daily profile). Default: 6.
    public var replayHours = 6
    /// `TW_DETECTOR_SETTINGS_REFRESH`: how often tenants' sensitivity and muted series are reloaded. Default: 30s.
    public var settingsRefresh: Duration = .seconds(30)
    /// `TW_DETECTOR_SILENCE_AFTER`: how long after a minute closed, by the wall clock, a series that sent nothing
    /// for it is scored as silent (`DetectorEngine.scoreSilence`); 0 turns silence detection off. Default: 2m.
    public var silenceAfter: Duration = .seconds(120)

    public init(environment: Environment = Environment()) throws(ConfigurationError) {
        self.batchSize = try environment.int("TW_DETECTOR_BATCH", default: self.batchSize, in: 1...100_000)
        self.warmupWindows = try environment.int("TW_DETECTOR_WARMUP_WINDOWS", default: self.warmupWindows, in: 0...100_000)
        self.replayHours = try environment.int("TW_DETECTOR_REPLAY_HOURS", default: self.replayHours, in: 1...168)
        self.settingsRefresh = try environment.duration("TW_DETECTOR_SETTINGS_REFRESH", default: self.settingsRefresh, in: .seconds(1) ... .seconds(3600))
        self.silenceAfter = try environment.duration("TW_DETECTOR_SILENCE_AFTER", default: self.silenceAfter, in: .seconds(0) ... .seconds(3600))
    }
}
