import Events
import Foundation
import Kafka
import Logging
import Metrics
import Postgres
import Rollups

/// The query service's work on a batch: closed windows from llm.rollups.v1 into the Redis read model, anomalies
/// from llm.anomalies.v1 into Postgres. Both writes are idempotent (highest version wins; upsert by anomaly id), so
/// the batch can be replayed after a crash; offsets are committed after the writes.
public struct QueryProjector: Sendable {
    let readModel: ReadModel
    let postgres: PostgresClient
    let topics: Topics
    let logger: Logger
    private let windows = Counter(label: "tw_query_windows_total")
    private let anomalies = Counter(label: "tw_query_anomalies_total")
    private let malformed = Counter(label: "tw_query_malformed_messages_total")

    public init(readModel: ReadModel, postgres: PostgresClient, topics: Topics, logger: Logger) {
        self.readModel = readModel
        self.postgres = postgres
        self.topics = topics
        self.logger = logger
    }

    public func process(_ batch: [KafkaMessage]) async throws {
        // Dead letters: one transaction for the batch's, idempotent by DLQ offset (DeadLetterProjection).
        try await DeadLetterProjection.apply(batch.filter { $0.topic == self.topics.deadLetters }, topic: self.topics.deadLetters, postgres: self.postgres)
        var records: [RollupRecord] = []
        var anomalies: [AnomalyMessage] = []
        for message in batch {
            // Only decoding decides that a message is malformed: it is skipped and counted rather than blocking the
            // partition. Store errors (a pool timeout, Postgres restarting) are thrown, so the batch is retried and
            // no anomaly is skipped for a passing fault.
            do {
                if message.topic == self.topics.rollups {
                    records.append(try RollupRecord(json: message.value))
                } else if message.topic == self.topics.anomalies {
                    let anomaly = try AnomalyMessage(json: message.value)
                    if let key = message.key, String(decoding: key, as: UTF8.self) != anomaly.tenantID {
                        throw AnomalyMessage.Invalid(field: "tenant_id", reason: "differs from the message key")
                    }
                    anomalies.append(anomaly)
                }
            } catch {
                self.malformed.increment()
                self.logger.warning("Unreadable message skipped", metadata: ["kafka.topic": "\(message.topic)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
            }
        }
        // One transaction for the batch's anomalies: a commit (an fsync) per anomaly held the projection to a few
        // dozen a second; a replayed batch repeats idempotent writes.
        if !anomalies.isEmpty {
            let batch = anomalies
            try await self.postgres.withTransaction { connection in
                for anomaly in batch { try Self.store(anomaly, on: connection) }
            }
            self.anomalies.increment(by: batch.count)
        }
        try await self.readModel.apply(records)
        self.windows.increment(by: records.count)
    }

    /// Upserts an anomaly by id, stored whole (its canonical JSON) as jsonb; an older revision never overwrites a
    /// newer. The revision's notifications are queued in the same transaction (`NotificationOutbox`).
    func storeAnomaly(_ anomaly: AnomalyMessage) async throws {
        try await self.postgres.withTransaction { connection in try Self.store(anomaly, on: connection) }
        self.anomalies.increment()
    }

    /// The anomaly upserted (never over a newer revision) and its notifications queued, in the caller's transaction.
    static func store(_ anomaly: AnomalyMessage, on connection: isolated PostgresConnection) throws {
        try connection.query("""
            INSERT INTO anomalies (tenant_id, anomaly_id, window_start, body) VALUES (\(anomaly.tenantID), \(anomaly.anomalyID), \(anomaly.windowStart)::timestamptz, \(anomaly.canonicalJSON)::jsonb)
            ON CONFLICT (tenant_id, anomaly_id) DO UPDATE SET body = EXCLUDED.body, window_start = EXCLUDED.window_start, updated_at = now()
            WHERE coalesce((anomalies.body->>'revision')::bigint, 0) <= coalesce((EXCLUDED.body->>'revision')::bigint, 0)
            """)
        try NotificationOutbox.enqueue(anomaly, on: connection)
    }
}
