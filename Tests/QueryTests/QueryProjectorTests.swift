import Events
import Foundation
import Kafka
import Logging
import Postgres
import QueryCore
import Redis
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Query service projections", .serialized, .timeLimit(.minutes(2)))
struct QueryProjectorTests {
    @Test("the read model keeps each window's highest version and a horizon; anomalies are upserted once")
    func projections() async throws {
        let logger = Logger(label: "query-tests")
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: logger)
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        var topics = Topics()
        topics.rollups = "r"
        topics.anomalies = "a"
        let readModel = ReadModel(redis: redis)
        let projector = QueryProjector(readModel: readModel, postgres: postgres, topics: topics, logger: logger)
        let tenant = TestEnvironment.unique("t")
        let base = EventTimestamp.now().microsecondsSinceEpoch / 60_000_000 * 60_000_000 - 600_000_000

        func record(_ minute: Int64, version: Int64, requests: Int64, model: String = "") -> KafkaMessage {
            var values = RollupValues()
            values.requests = requests
            values.latency.add(100)
            let r = RollupRecord(key: RollupKey(series: SeriesKey(tenant: tenant, provider: model.isEmpty ? "" : "openai", model: model), windowStart: base + minute * 60_000_000),
                                 granularity: .minute, version: version, values: values)
            return KafkaMessage(topic: "r", partition: 0, offset: 0, key: nil, value: r.jsonBytes())
        }
        try await projector.process([record(0, version: 2, requests: 5), record(1, version: 1, requests: 7), record(1, version: 1, requests: 7, model: "gpt-4o")])
        // A replayed older version must not overwrite the newer one; a correction (higher version) must.
        try await projector.process([record(0, version: 1, requests: 999), record(1, version: 3, requests: 8), KafkaMessage(topic: "r", partition: 0, offset: 1, key: nil, value: Array("garbage".utf8))])
        let windows = try await readModel.windows(tenant: tenant, from: base, to: base + 10 * 60_000_000)
        let totals = Dictionary(uniqueKeysWithValues: windows.filter { $0.key.series.isTotal }.map { ($0.key.windowStart, $0.values.requests) })
        #expect(totals == [base: 5, base + 60_000_000: 8])
        #expect(windows.count == 3)
        #expect(try await readModel.horizon(tenant: tenant) == base + 60_000_000)

        let start = EventTimestamp(microsecondsSinceEpoch: base).rfc3339
        func anomaly(score: String = "1.5", revision: String = "1", windowEnd: String? = nil, id: String = "a1") -> [UInt8] {
            let end = windowEnd ?? "\"\(EventTimestamp(microsecondsSinceEpoch: base + 60_000_000).rfc3339)\""
            return Array("{\"tenant_id\":\"\(tenant)\",\"anomaly_id\":\"\(id)\",\"provider\":\"\",\"model\":\"\",\"metric\":\"error_rate\",\"window_start\":\"\(start)\",\"window_end\":\(end),\"status\":\"ongoing\",\"severity\":\"warning\",\"score\":\(score),\"revision\":\(revision)}".utf8)
        }
        try await projector.process([KafkaMessage(topic: "a", partition: 0, offset: 0, key: Array(tenant.utf8), value: anomaly(revision: "1"))])
        try await projector.process([KafkaMessage(topic: "a", partition: 0, offset: 1, key: Array(tenant.utf8), value: anomaly(score: "2.5", revision: "2"))])
        // Hostile messages any producer could write: each is skipped, none reaches Postgres, none stops the batch.
        // (A window_end that is no time, or a revision that is no integer, would otherwise break the SQL casts of
        // every later upsert and anomaly query of the tenant.)
        let hostile = [anomaly(windowEnd: "\"garbage\"", id: "b1"), anomaly(revision: "\"abc\"", id: "b2"), anomaly(revision: "1e300", id: "b3"),
                       anomaly(score: "1", windowEnd: "\"0000-01-01T00:00:00Z\"", id: "b4"), Array("{\"anomaly_id\":\"b5\"}".utf8), anomaly(id: "no spaces allowed")]
        try await projector.process(hostile.enumerated().map { KafkaMessage(topic: "a", partition: 0, offset: Int64(2 + $0.offset), key: Array(tenant.utf8), value: $0.element) }
            + [KafkaMessage(topic: "a", partition: 0, offset: 9, key: Array("other-tenant".utf8), value: anomaly(id: "c1"))])
        let rows = try await postgres.query("SELECT anomaly_id, body->>'score' AS score, (body->>'window_end')::timestamptz AS e FROM anomalies WHERE tenant_id = \(tenant)")
        #expect(rows.count == 1)
        #expect(try rows[0].decode("score", as: String.self) == "2.5")

        // A store that is down is not a malformed message: the batch fails (and is retried by the consumer loop)
        // instead of the anomaly being skipped.
        let down = PostgresClient(configuration: PostgresConfiguration(url: "postgresql://tokenwatch@127.0.0.1:1/tokenwatch"), logger: logger)
        let unreachable = QueryProjector(readModel: readModel, postgres: down, topics: topics, logger: logger)
        await #expect(throws: (any Error).self) {
            try await unreachable.process([KafkaMessage(topic: "a", partition: 0, offset: 10, key: Array(tenant.utf8), value: anomaly(revision: "3", id: "d1"))])
        }
        await down.close()
        await redis.close()
        await postgres.close()
    }

    @Test("dead letters: counted per tenant and reason once, however often a batch is replayed; samples bounded; keys that are no tenant left out")
    func deadLetters() async throws {
        let logger = Logger(label: "query-tests")
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: logger)
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        var topics = Topics()
        topics.deadLetters = TestEnvironment.unique("dlq")
        let projector = QueryProjector(readModel: ReadModel(redis: redis), postgres: postgres, topics: topics, logger: logger)
        let tenant = TestEnvironment.unique("dl")
        func letter(_ offset: Int64, reason: String, key: String? = nil) -> KafkaMessage {
            KafkaMessage(topic: topics.deadLetters, partition: 0, offset: offset, key: Array((key ?? tenant).utf8),
                         value: Array("{\"event_id\":\"ev-\(offset)\",\"input_tokens\":-1}".utf8),
                         headers: [KafkaHeader(key: EventHeaders.reason, string: reason), KafkaHeader(key: EventHeaders.detail, string: "input_tokens: must be >= 0, got -1")])
        }
        let batch = (0..<60).map { letter(Int64($0), reason: $0 % 3 == 0 ? "too_late" : "invalid_event") } + [letter(60, reason: "invalid_event", key: "not a tenant!")]
        try await projector.process(batch)
        try await projector.process(batch)  // a replay after a crash
        try await projector.process(Array(batch[50...]))  // and a partial one
        let counts = try await postgres.query("SELECT reason, sum(count)::bigint AS n FROM dead_letter_counts WHERE tenant_id = \(tenant) GROUP BY reason")
        let byReason = Dictionary(uniqueKeysWithValues: try counts.map { (try $0.decode("reason", as: String.self), try $0.decode("n", as: Int64.self)) })
        #expect(byReason == ["too_late": 20, "invalid_event": 40])
        let samples = try await postgres.query("SELECT event_id, detail FROM dead_letter_samples WHERE tenant_id = \(tenant)")
        #expect(samples.count == DeadLetterProjection.samplesPerTenant)
        #expect(try samples.allSatisfy { try $0.decode("detail", as: String.self) == "input_tokens: must be >= 0, got -1" })
        #expect(try await postgres.query("SELECT 1 FROM dead_letter_samples WHERE tenant_id = 'not a tenant!'").isEmpty)
        await redis.close()
        await postgres.close()
    }
}
