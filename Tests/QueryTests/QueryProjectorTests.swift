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

        let anomaly = { (score: Double) in
            Array("{\"tenant_id\":\"\(tenant)\",\"anomaly_id\":\"a1\",\"window_start\":\"\(EventTimestamp(microsecondsSinceEpoch: base).rfc3339)\",\"score\":\(score)}".utf8)
        }
        try await projector.process([KafkaMessage(topic: "a", partition: 0, offset: 0, key: nil, value: anomaly(1.5))])
        try await projector.process([KafkaMessage(topic: "a", partition: 0, offset: 1, key: nil, value: anomaly(2.5))])
        let rows = try await postgres.query("SELECT body->>'score' AS score FROM anomalies WHERE tenant_id = \(tenant)")
        #expect(rows.count == 1)
        #expect(try rows[0].decode("score", as: String.self) == "2.5")
        await redis.close()
        await postgres.close()
    }
}
