import Events
import Foundation
import Kafka
import Postgres

/// A tenant's dead letters as it can see them: counts per minute and reason, and the latest samples, from
/// llm.events.dlq.v1. One transaction per batch applies the counts and samples and moves, per DLQ partition, the
/// next offset to apply (`dead_letter_marks`), so a batch replayed after a crash or a rebalance counts nothing twice.
/// Messages whose key is not a valid tenant id (a direct producer's) are left out: no tenant could see them.
public struct DeadLetterProjection: Sendable {
    /// Latest samples kept per tenant.
    public static let samplesPerTenant = 50
    /// Longest detail kept.
    static let maxDetail = 500

    struct Letter: Sendable {
        var tenant: String
        var partition: Int32
        var offset: Int64
        var reason: String
        var detail: String
        var eventID: String?
    }

    /// The letters of `batch` that belong to a tenant (in offset order per partition).
    static func letters(_ batch: [KafkaMessage]) -> [Letter] {
        batch.compactMap { message in
            guard let key = message.key, let tenant = String(validating: key, as: UTF8.self),
                (try? LLMEvent.validateTenantID(tenant)) != nil
            else { return nil }
            let text = { (name: String) in message.header(name).map { String(decoding: $0, as: UTF8.self) } }
            let reason = String((text(EventHeaders.reason) ?? "unknown").prefix(64))
            let detail = String((text(EventHeaders.detail) ?? "").prefix(Self.maxDetail))
            // The event id, when the rejected input is a JSON object that names one (bounded; otherwise nil).
            var eventID: String?
            if message.value.count <= EventLimits.default.maxEventBytes,
                let object = (try? JSONSerialization.jsonObject(with: Data(message.value))) as? [String: Any],
                let id = object["event_id"] as? String, (1...EventLimits.default.maxEventIDLength).contains(id.utf8.count)
            {
                eventID = id
            }
            return Letter(tenant: tenant, partition: message.partition, offset: message.offset, reason: reason, detail: detail, eventID: eventID)
        }
    }

    /// Applies `batch` (messages of `topic`) in one transaction; `now` is the minute the letters are counted in.
    public static func apply(_ batch: [KafkaMessage], topic: String, postgres: PostgresClient, now: EventTimestamp = .now()) async throws {
        guard !batch.isEmpty else { return }
        let partitions = Set(batch.map(\.partition))
        let nextOffsets = batch.nextOffsets
        let letters = Self.letters(batch)
        let minute = EventTimestamp(microsecondsSinceEpoch: now.microsecondsSinceEpoch / 60_000_000 * 60_000_000).rfc3339
        let at = now.rfc3339
        try await postgres.withTransaction { conn in
            var marks: [Int32: Int64] = [:]
            for partition in partitions {
                try conn.query("INSERT INTO dead_letter_marks (topic, partition, next_offset) VALUES (\(topic), \(partition), \(Int64(0))) ON CONFLICT DO NOTHING")
                let row = try conn.query("SELECT next_offset FROM dead_letter_marks WHERE topic = \(topic) AND partition = \(partition) FOR UPDATE")[0]
                marks[partition] = try row.decode("next_offset")
            }
            let fresh = letters.filter { $0.offset >= marks[$0.partition] ?? 0 }
            var counts: [String: [String: Int64]] = [:]
            for letter in fresh {
                counts[letter.tenant, default: [:]][letter.reason, default: 0] += 1
                try conn.query("""
                    INSERT INTO dead_letter_samples (tenant_id, dlq_partition, dlq_offset, at, reason, detail, event_id)
                    VALUES (\(letter.tenant), \(letter.partition), \(letter.offset), \(at)::timestamptz, \(letter.reason), \(letter.detail), \(letter.eventID))
                    ON CONFLICT DO NOTHING
                    """)
            }
            for (tenant, reasons) in counts {
                for (reason, n) in reasons {
                    try conn.query("""
                        INSERT INTO dead_letter_counts (tenant_id, window_start, reason, count) VALUES (\(tenant), \(minute)::timestamptz, \(reason), \(n))
                        ON CONFLICT (tenant_id, window_start, reason) DO UPDATE SET count = dead_letter_counts.count + EXCLUDED.count
                        """)
                }
                try conn.query("""
                    DELETE FROM dead_letter_samples WHERE tenant_id = \(tenant) AND (dlq_partition, dlq_offset) NOT IN (
                        SELECT dlq_partition, dlq_offset FROM dead_letter_samples WHERE tenant_id = \(tenant)
                        ORDER BY at DESC, dlq_offset DESC LIMIT \(Int64(Self.samplesPerTenant)))
                    """)
            }
            for (tp, next) in nextOffsets where tp.topic == topic {
                try conn.query("UPDATE dead_letter_marks SET next_offset = greatest(next_offset, \(next)) WHERE topic = \(topic) AND partition = \(tp.partition)")
            }
        }
    }
}
