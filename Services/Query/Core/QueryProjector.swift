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
        var records: [RollupRecord] = []
        for message in batch {
            do {
                if message.topic == self.topics.rollups {
                    records.append(try RollupRecord(json: message.value))
                } else if message.topic == self.topics.anomalies {
                    try await self.storeAnomaly(message.value)
                }
            } catch let error as PostgresError {
                throw error
            } catch {
                // A message this version cannot read is skipped and counted rather than blocking the partition.
                self.malformed.increment()
                self.logger.warning("Unreadable message skipped", metadata: ["kafka.topic": "\(message.topic)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
            }
        }
        try await self.readModel.apply(records)
        self.windows.increment(by: records.count)
    }

    /// An anomaly: `{"tenant_id", "anomaly_id", "window_start", ...}`, stored whole as jsonb.
    func storeAnomaly(_ bytes: [UInt8]) async throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let tenant = object["tenant_id"] as? String, let id = object["anomaly_id"] as? String,
            let start = (object["window_start"] as? String).flatMap({ EventTimestamp(rfc3339: $0) })
        else { throw SketchError(message: "anomaly needs tenant_id, anomaly_id and window_start") }
        let body = String(decoding: bytes, as: UTF8.self)
        try await self.postgres.query("""
            INSERT INTO anomalies (tenant_id, anomaly_id, window_start, body) VALUES (\(tenant), \(id), \(start.rfc3339)::timestamptz, \(body)::jsonb)
            ON CONFLICT (tenant_id, anomaly_id) DO UPDATE SET body = EXCLUDED.body, window_start = EXCLUDED.window_start, updated_at = now()
            WHERE coalesce((anomalies.body->>'revision')::bigint, 0) <= coalesce((EXCLUDED.body->>'revision')::bigint, 0)
            """)
        self.anomalies.increment()
    }
}
