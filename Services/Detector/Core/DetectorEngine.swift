import Events
import Kafka
import Logging
import Metrics
import Rollups
import Synchronization

/// A tenant's detector settings (Postgres `detector_settings`, edited through the gateway).
public struct TenantDetectorSettings: Sendable, Equatable {
    /// A muted series or metric: every member given must match; nil matches anything.
    public struct MuteRule: Sendable, Equatable, Codable {
        public var app: String?
        public var environment: String?
        public var provider: String?
        public var model: String?
        public var metric: String?

        public init(app: String? = nil, environment: String? = nil, provider: String? = nil, model: String? = nil, metric: String? = nil) {
            self.app = app
            self.environment = environment
            self.provider = provider
            self.model = model
            self.metric = metric
        }

        func value(_ d: SeriesDimension) -> String? {
            switch d {
            case .app: return self.app
            case .environment: return self.environment
            case .provider: return self.provider
            case .model: return self.model
            case .tagKey, .tagValue: return nil
            }
        }
    }

    /// 0.25 (only large deviations) ... 4 (small ones too). Default: 1.
    public var sensitivity: Double = 1
    public var muted: [MuteRule] = []

    public init(sensitivity: Double = 1, muted: [MuteRule] = []) {
        self.sensitivity = sensitivity
        self.muted = muted
    }

    public func mask(for series: SeriesKey) -> MetricMask {
        var mask = MetricMask.none
        for rule in self.muted {
            if SeriesDimension.allCases.contains(where: { d in rule.value(d).map { $0 != series[d] } ?? false }) { continue }
            if let name = rule.metric {
                if let metric = DetectorMetric(name: name) { mask.bits |= MetricMask([metric]).bits }
            } else {
                return .all
            }
        }
        return mask
    }
}

/// Where past windows come from when a series' state must be rebuilt (after a restart or a rebalance).
public protocol DetectorHistory: Sendable {
    /// For each series: hourly request totals of the `seasonalDays` days before `replayStart`, and the 1-minute
    /// windows in [replayStart, before), both in time order.
    func load(_ requests: [HistoryRequest]) async throws -> [SeriesKey: SeriesHistory]
}

public struct HistoryRequest: Sendable, Hashable {
    public var series: SeriesKey
    /// Start of the first window not to load (the one about to be scored).
    public var before: Int64
    /// Start of the minute replay (hour-aligned, so the daily profile gets whole hours).
    public var replayStart: Int64
    public var seasonalStart: Int64
}

public struct SeriesHistory: Sendable {
    public var hours: [(start: Int64, requests: Double)] = []
    public var minutes: [WindowObservation] = []

    public init(hours: [(start: Int64, requests: Double)] = [], minutes: [WindowObservation] = []) {
        self.hours = hours
        self.minutes = minutes
    }
}

/// Scores every series of the partitions this replica owns. State lives in memory; a series seen for the first time
/// (after a start, a restart or a rebalance) is first rebuilt from its history, so a replica that takes a series over
/// finds the same incidents as one that kept it all along (its ranges are learned over the replayed hours rather
/// than days, so marginal windows may be judged differently).
public final class DetectorEngine: Sendable {
    struct State {
        var series: [SeriesKey: SeriesDetector] = [:]
        var settings: [String: TenantDetectorSettings] = [:]
        /// Per owned input partition, the latest window start seen: how far the pipeline has delivered.
        var watermarks: [Int32: Int64] = [:]
    }

    public let parameters: DetectorParameters
    let history: (any DetectorHistory)?
    /// Hours of 1-minute windows replayed on a rebuild.
    public let replayHours: Int
    let logger: Logger
    private let state = Mutex(State())
    private let scored = Counter(label: "tw_detector_windows_total")
    private let ignored = Counter(label: "tw_detector_ignored_windows_total")
    private let rebuilt = Counter(label: "tw_detector_rebuilt_series_total")
    private let seriesGauge = Gauge(label: "tw_detector_series")
    private let silentWindows = Counter(label: "tw_detector_silent_series_scored_total")

    public init(parameters: DetectorParameters = .default, history: (any DetectorHistory)?, replayHours: Int = 6, logger: Logger) {
        self.parameters = parameters
        self.history = history
        self.replayHours = replayHours
        self.logger = logger
    }

    public var seriesCount: Int { self.state.withLock { $0.series.count } }

    public func updateSettings(_ settings: [String: TenantDetectorSettings]) {
        self.state.withLock { $0.settings = settings }
    }

    func parameters(for tenant: String, in state: State) -> (DetectorParameters, TenantDetectorSettings?) {
        guard let settings = state.settings[tenant] else { return (self.parameters, nil) }
        var p = self.parameters
        p.sensitivity = settings.sensitivity
        return (p, settings)
    }

    /// Scores the windows of a batch in order; returns what to publish.
    public func process(_ windows: [(record: RollupRecord, partition: Int32)]) async throws -> [Anomaly] {
        // The watched levels only: the full cross product (app x environment x model) is for queries.
        let minute = windows.filter { $0.record.granularity == .minute && $0.record.key.series.isWatched }
        try await self.rebuildUnseen(minute)
        var out: [Anomaly] = []
        self.state.withLock { state in
            for (record, partition) in minute {
                let series = record.key.series
                let (p, settings) = self.parameters(for: series.tenant, in: state)
                let mask = settings?.mask(for: series) ?? .none
                var detector = state.series.removeValue(forKey: series) ?? SeriesDetector(parameters: self.parameters)
                // A correction of a window already scored: rollups count it, the detector scored the window once.
                if record.key.windowStart <= detector.lastWindow { self.ignored.increment() }
                out += detector.observe(WindowObservation(record), series: series, parameters: p, muted: mask)
                detector.partition = partition
                state.series[series] = detector
                state.watermarks[partition] = max(state.watermarks[partition] ?? .min, record.key.windowStart)
            }
            self.seriesGauge.record(state.series.count)
        }
        self.scored.increment(by: minute.count)
        return out
    }

    /// Rebuilds the series of `windows` this replica has no state for, from history before their first window here.
    func rebuildUnseen(_ windows: [(record: RollupRecord, partition: Int32)]) async throws {
        guard let history else { return }
        var requests: [SeriesKey: HistoryRequest] = [:]
        self.state.withLock { state in
            for (record, _) in windows where state.series[record.key.series] == nil && requests[record.key.series] == nil {
                let before = record.key.windowStart
                let replayStart = Self.hourStart(before - Int64(self.replayHours) * 3_600_000_000)
                requests[record.key.series] = HistoryRequest(
                    series: record.key.series, before: before, replayStart: replayStart,
                    seasonalStart: replayStart - Int64(self.parameters.seasonalDays) * 86_400_000_000)
            }
        }
        guard !requests.isEmpty else { return }
        let loaded = try await history.load(Array(requests.values))
        self.state.withLock { state in
            for (series, request) in requests where state.series[series] == nil {
                var detector = SeriesDetector(parameters: self.parameters)
                let (p, _) = self.parameters(for: series.tenant, in: state)
                if let past = loaded[series] {
                    for hour in past.hours where hour.start < request.replayStart {
                        detector.learnHour(hourStart: hour.start, requests: hour.requests, windowsPerHour: 60, p: p)
                    }
                    for window in past.minutes where window.windowStart < request.before {
                        detector.learn(window, series: series, parameters: p)
                    }
                }
                state.series[series] = detector
            }
        }
        self.rebuilt.increment(by: requests.count)
    }

    /// Silence is an anomaly: a series that stops sending gets no rollups, so its minutes are scored here, as
    /// windows without traffic, once they closed `silence` ago by the wall clock, and never beyond the newest window
    /// the pipeline delivered on the series' partition (a stalled pipeline is not an outage of every series; the
    /// price: when every series of a partition stops at once, nothing is raised until one sends again). A busy
    /// series' outage is then a request-rate anomaly within about `silence` plus a minute, resolved when traffic
    /// returns. Windows scored here that later get a rollup after all (events later than `silence`) are corrections
    /// the detector ignores, like any window scored once.
    public func scoreSilence(now: Int64, silence: Duration) -> [Anomaly] {
        let minute: Int64 = 60_000_000
        let silenceMicros = silence.components.seconds * 1_000_000
        let closed = (now - silenceMicros - minute) / minute * minute
        var out: [Anomaly] = []
        var scored = 0
        self.state.withLock { state in
            for (series, detector) in state.series {
                guard let mark = state.watermarks[detector.partition] else { continue }
                let target = min(closed, mark)
                guard target > detector.lastWindow else { continue }
                let (p, settings) = self.parameters(for: series.tenant, in: state)
                var d = detector
                out += d.observe(.empty(at: target, interval: minute), series: series, parameters: p, muted: settings?.mask(for: series) ?? .none)
                state.series[series] = d
                scored += 1
            }
        }
        self.silentWindows.increment(by: scored)
        return out
    }

    /// Forgets the series of partitions this replica no longer owns (their new owner rebuilds them).
    public func revoke(partitions: Set<Int32>) {
        self.state.withLock { state in
            state.series = state.series.filter { !partitions.contains($0.value.partition) }
            for partition in partitions { state.watermarks[partition] = nil }
            self.seriesGauge.record(state.series.count)
        }
    }

    static func hourStart(_ t: Int64) -> Int64 { Granularity.hour.windowStart(EventTimestamp(microsecondsSinceEpoch: t)) }
}

/// Drops the revoked partitions' series.
public struct DetectorRebalanceHandler: KafkaRebalanceHandler {
    let engine: DetectorEngine

    public init(engine: DetectorEngine) { self.engine = engine }

    public func partitionsAssigned(_ partitions: [KafkaTopicPartition]) async throws -> [KafkaTopicPartition: KafkaOffset] { [:] }

    public func partitionsRevoked(_ partitions: [KafkaTopicPartition], lost: Bool) async {
        self.engine.revoke(partitions: Set(partitions.map { Int32($0.partition) }))
    }
}
