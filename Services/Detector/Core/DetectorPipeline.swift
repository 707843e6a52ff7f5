import Events
import Kafka
import Logging
import Metrics
import Postgres
import Rollups
import ServiceKit

/// The detector's work on one batch of llm.rollups.v1: score the windows, publish the anomalies (keyed by tenant)
/// and only then let the offsets be committed. A replayed batch yields the same anomalies under the same ids
/// (upserts downstream), so a crash between publishing and committing only repeats them.
public struct DetectorPipeline: Sendable {
    let engine: DetectorEngine
    let producer: KafkaProducer
    let topics: Topics
    let logger: Logger
    private let published = Counter(label: "tw_detector_anomalies_total")
    private let malformed = Counter(label: "tw_detector_malformed_messages_total")

    public init(engine: DetectorEngine, producer: KafkaProducer, topics: Topics, logger: Logger) {
        self.engine = engine
        self.producer = producer
        self.topics = topics
        self.logger = logger
    }

    public func process(_ batch: [KafkaMessage]) async throws -> [Anomaly] {
        var windows: [(record: RollupRecord, partition: Int32)] = []
        windows.reserveCapacity(batch.count)
        for message in batch {
            do {
                windows.append((try RollupRecord(json: message.value), Int32(message.partition)))
            } catch {
                self.malformed.increment()
                self.logger.warning("Unreadable rollup skipped", metadata: ["kafka.partition": "\(message.partition)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
            }
        }
        // The engine's only failure (loading history) comes before it changes any state, so the batch can be
        // retried whole; once it has scored the windows, publishing is retried here so no window is scored twice.
        let anomalies = try await self.engine.process(windows)
        try await self.publish(anomalies)
        return anomalies
    }

    /// Publishes anomalies keyed by tenant, retrying transient broker faults.
    public func publish(_ anomalies: [Anomaly]) async throws {
        guard !anomalies.isEmpty else { return }
        let messages = anomalies.map {
            KafkaProducerMessage(topic: self.topics.anomalies, key: Array($0.series.tenant.utf8), value: $0.jsonBytes())
        }
        try await TransientFaults.retrying("publish anomalies", logger: self.logger) { try await self.producer.sendAll(messages) }
        self.published.increment(by: anomalies.count)
    }
}

/// Scores silent series every 10 seconds (`DetectorEngine.scoreSilence`) and publishes what that raises.
public func silenceWatch(pipeline: DetectorPipeline, engine: DetectorEngine, after silence: Duration, logger: Logger) -> PeriodicReload {
    PeriodicReload(every: .seconds(10), what: "Silence scoring", logger: logger) {
        try await pipeline.publish(engine.scoreSilence(now: EventTimestamp.now().microsecondsSinceEpoch, silence: silence))
    }
}

/// Reloads the tenants' detector settings every `interval`.
public func detectorSettingsRefresher(postgres: PostgresClient, engine: DetectorEngine, interval: Duration, logger: Logger) -> PeriodicReload {
    PeriodicReload(every: interval, what: "Detector settings", logger: logger) {
        engine.updateSettings(try await DetectorSettingsStore.load(from: postgres))
    }
}
