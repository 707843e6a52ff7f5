import Events
import Foundation
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Schema migrations on existing data", .timeLimit(.minutes(2)))
struct MigrationTests {
    @Test("rows stored before migration 25 (every sketch an object) merge exactly with the aggregator's packed writes; the SQL merges are gone")
    func objectFormRowsMergeWithPackedWrites() async throws {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: Logger(label: "migration-test"))
        _ = try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        var rng = SeededRandom(seed: 5)
        let tenant = TestEnvironment.unique("packed")
        var before = RollupBatch(), after = RollupBatch(), reference = RollupBatch()
        for i in 0..<1_200 {
            let event = LLMEvent(
                eventID: "e\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: 1_795_000_000_000_000 + Int64(rng.next() % 120_000_000)),
                provider: "openai", model: ["m1", "m2"][Int(rng.next() % 2)], inputTokens: 10, outputTokens: 5,
                latencyMs: Double(rng.next() % 9000) + 0.5, timeToFirstTokenMs: Double(rng.next() % 400), status: i % 7 == 0 ? .error : .ok,
                errorType: i % 7 == 0 ? "timeout" : nil, costNanos: 1_000, userID: "u\(rng.next() % 3_000)", sessionID: "s\(rng.next() % 50)", app: "chat", environment: "prod")
            if i < 600 { before.add(event, promoted: [:]) } else { after.add(event, promoted: [:]) }
            reference.add(event, promoted: [:])
        }
        let table = Granularity.minute.table
        try await RollupStore.write(before.deltas(.minute), to: postgres)
        // As a release before migration 25 left its rows: every sketch and register column an object.
        var rewritten = 0
        for row in try await postgres.query("SELECT \(unescaped: RollupStore.selectColumns) FROM \(identifier: table) WHERE tenant_id = \(tenant)") {
            let record = try RollupStore.record(row, granularity: .minute)
            guard !record.values.latency.isEmpty else { continue }
            let dimensions = SeriesDimension.allCases
            let conditions = dimensions.enumerated().map { "\($0.element.rawValue) = $\($0.offset + 6)" } + ["(extract(epoch FROM window_start) * 1000000)::bigint = $\(dimensions.count + 6)::bigint"]
            try await postgres.query(PostgresQuery(
                sql: "UPDATE \(table) SET latency_sketch = $1::jsonb, ttft_sketch = $2::jsonb, users_hll = $3::jsonb, sessions_hll = $4::jsonb WHERE tenant_id = $5 AND \(conditions.joined(separator: " AND "))",
                parameters: [record.values.latency.json, record.values.timeToFirstToken.json, record.values.users.json, record.values.sessions.json, tenant]
                    + dimensions.map { record.key.series[$0] } + [String(record.key.windowStart)]))
            rewritten += 1
        }
        let objects: Int64 = try await postgres.query("SELECT count(*) AS n FROM \(identifier: table) WHERE tenant_id = \(tenant) AND jsonb_typeof(latency_sketch) = 'object' AND latency_sketch <> '{}'")[0].decode("n")
        #expect(rewritten > 3 && objects == rewritten)
        try await RollupStore.write(after.deltas(.minute), to: postgres)
        var stored: [RollupKey: RollupValues] = [:]
        for row in try await postgres.query("SELECT \(unescaped: RollupStore.selectColumns) FROM \(identifier: table) WHERE tenant_id = \(tenant)") {
            let record = try RollupStore.record(row, granularity: .minute)
            stored[record.key] = record.values
        }
        #expect(stored == reference.deltas(.minute).windows, "every sketch, register and counter equals the events added at once")
        let packed: Int64 = try await postgres.query("SELECT count(*) AS n FROM \(identifier: table) WHERE tenant_id = \(tenant) AND jsonb_typeof(latency_sketch) = 'string'")[0].decode("n")
        #expect(packed == rewritten, "the merged rows were written packed")
        let functions: Int64 = try await postgres.query("SELECT count(*) AS n FROM pg_proc WHERE proname IN ('tw_jsonb_add', 'tw_jsonb_max', 'tw_hll_sparse')")[0].decode("n")
        #expect(functions == 0, "no SQL merge is left to misread a packed sketch")
        await postgres.close()
    }

    @Test("rollups written with the sketches merged by the aggregator equal every event added at once, with two writers racing to insert the same new rows", arguments: [1, 2])
    func swiftMergedWritesAreExact(seed: UInt64) async throws {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: Logger(label: "migration-test"))
        _ = try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        var rng = SeededRandom(seed: seed)
        let tenant = TestEnvironment.unique("merge")
        var reference = RollupBatch()
        // Two writers, each with its own batches of events over the same few keys and minutes: their first inserts
        // of a row race (one waits on the other's and then merges into it), later ones merge into stored rows.
        var writers: [[RollupBatch]] = [[], []]
        for w in 0..<2 {
            for _ in 0..<6 {
                var batch = RollupBatch()
                for i in 0..<400 {
                    let status: LLMEvent.Status = rng.next() % 6 == 0 ? .error : .ok
                    let event = LLMEvent(
                        eventID: "e\(w)-\(i)", tenantID: tenant,
                        timestamp: EventTimestamp(microsecondsSinceEpoch: 1_795_000_000_000_000 + Int64(rng.next() % 180_000_000)),
                        provider: "openai", model: ["m1", "m2"][Int(rng.next() % 2)], inputTokens: Int64(rng.next() % 5000), outputTokens: Int64(rng.next() % 900),
                        latencyMs: Double(rng.next() % 9000) + 0.5, timeToFirstTokenMs: rng.next() % 3 == 0 ? nil : Double(rng.next() % 500),
                        status: status, errorType: status == .error ? ["timeout", "rate_limit"][Int(rng.next() % 2)] : nil, costNanos: Int64(rng.next() % 1_000_000),
                        userID: "u\(rng.next() % 5_000)", sessionID: "s\(rng.next() % 70)", app: ["search", "chat"][Int(rng.next() % 2)], environment: "prod")
                    let promoted = rng.next() % 2 == 0 ? ["feature": "f\(rng.next() % 3)"] : [:]
                    batch.add(event, promoted: promoted)
                    reference.add(event, promoted: promoted)
                }
                writers[w].append(batch)
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for batches in writers {
                group.addTask {
                    for batch in batches {
                        let minutes = batch.deltas(.minute), hours = minutes.coarsened(to: .hour)
                        try await postgres.withTransaction { conn in
                            try RollupStore.write(minutes, conn)
                            try RollupStore.write(hours, conn)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        for granularity in [Granularity.minute, .hour] {
            let expected = reference.deltas(granularity).windows
            var stored: [RollupKey: RollupValues] = [:]
            for row in try await postgres.query("SELECT \(unescaped: RollupStore.selectColumns) FROM \(identifier: granularity.table) WHERE tenant_id = \(tenant)") {
                let record = try RollupStore.record(row, granularity: granularity)
                stored[record.key] = record.values
            }
            #expect(stored.count == expected.count, "\(granularity): \(stored.count) rows, \(expected.count) expected")
            #expect(stored == expected, "\(granularity): every counter, sketch, error map and distinct register equals the events added at once")
            #expect(expected.values.contains { $0.users.estimate > 1_000 } && expected.values.contains { !$0.errorsByType.isEmpty })
            let dense: Int64 = try await postgres.query("SELECT count(*) AS n FROM \(identifier: granularity.table) WHERE tenant_id = \(tenant) AND jsonb_typeof(users_hll) = 'string'")[0].decode("n")
            #expect(dense > 0, "\(granularity): the busiest registers were stored dense and read back")
            let packed: Int64 = try await postgres.query("SELECT count(*) AS n FROM \(identifier: granularity.table) WHERE tenant_id = \(tenant) AND jsonb_typeof(latency_sketch) = 'string'")[0].decode("n")
            #expect(packed > 0, "\(granularity): latency sketches were stored packed and read back")
        }
        await postgres.close()
    }

    @Test("migration 9 carries stored costs from micro- to nano-dollars exactly, and a saturated sum stays the largest that fits")
    func costNanos() async throws {
        let url = try TestEnvironment.postgresURL()
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: "migration-test"))
        let database = TestEnvironment.unique("mig").replacingOccurrences(of: "-", with: "_").lowercased()
        try await admin.query("CREATE DATABASE \(identifier: database)")
        // The same server, a database of its own: the schema as a deployment before migration 9 had it.
        let base = url[..<url.lastIndex(of: "/")!]
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: "\(base)/\(database)"), logger: Logger(label: "migration-test"))
        do {
            let before = TokenwatchSchema.migrations.filter { $0.version < 9 }
            #expect(try await PostgresMigrator(migrations: before).migrate(postgres) == before.map(\.version))
            for (table, model, micros) in [("rollups_1m", "a", Int64(7)), ("rollups_1h", "b", 1_234_567), ("rollups_1d", "c", Int64.max)] {
                try await postgres.query("""
                    INSERT INTO \(identifier: table) (tenant_id, provider, model, window_start, requests, errors, errors_by_type, input_tokens,
                        output_tokens, cached_input_tokens, reasoning_tokens, cost_micros, latency_sketch, ttft_sketch)
                    VALUES ('t', 'p', \(model), '2026-11-01T00:00:00Z', 1, 0, '{}', 1, 1, 0, 0, \(micros), '{}', '{}')
                    """)
            }
            let applied = try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
            #expect(applied.first == 9)
            func cost(_ table: String) async throws -> Int64 { try await postgres.query("SELECT cost_nanos FROM \(identifier: table)")[0].decode("cost_nanos") }
            #expect(try await cost("rollups_1m") == 7_000)
            #expect(try await cost("rollups_1h") == 1_234_567_000)
            #expect(try await cost("rollups_1d") == 9_223_372_036_854_775_000)
        } catch {
            Issue.record(error)
        }
        await postgres.close()
        try await admin.query("DROP DATABASE \(identifier: database)")
        await admin.close()
    }
}
