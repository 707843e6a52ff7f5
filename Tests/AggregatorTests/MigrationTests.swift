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
    @Test("the SQL merges of sketches, error maps and distinct registers equal the Swift merges, with empty and missing sides", arguments: [1, 2, 3])
    func sqlMergesEqualSwift(seed: UInt64) async throws {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: Logger(label: "migration-test"))
        _ = try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        var rng = SeededRandom(seed: seed)
        func sketch(_ n: Int) -> QuantileSketch {
            var s = QuantileSketch()
            for _ in 0..<n { s.add(Double(rng.next() % 20_000) / 3, count: Int64(rng.next() % 5 + 1)) }
            return s
        }
        func distinct(_ n: Int) -> DistinctSketch {
            var s = DistinctSketch()
            for _ in 0..<n { s.add("u\(rng.next() % 50_000)") }
            return s
        }
        func merged(_ function: String, _ a: String?, _ b: String?) async throws -> String {
            try await postgres.query("SELECT \(unescaped: function)(\(a)::jsonb, \(b)::jsonb)::text AS m")[0].decode("m")
        }
        for (n, m) in [(0, 0), (0, 40), (300, 0), (5, 2_000), (2_000, 300), (1_500, 1_500)] {
            let (a, b) = (sketch(n), sketch(m))
            var expected = a
            expected.merge(b)
            #expect(try QuantileSketch(json: try await merged("tw_jsonb_add", a.json, b.json)) == expected, "sketches of \(n) and \(m) values")
            let (x, y) = (distinct(n * 3), distinct(m * 3))
            var union = x
            union.merge(y)
            #expect(try DistinctSketch(json: try await merged("tw_jsonb_max", x.json, y.json)) == union, "registers of \(n * 3) and \(m * 3) ids")
            // Busy windows are stored dense (a string): the SQL merge reads either form on either side.
            #expect(try DistinctSketch(json: try await merged("tw_jsonb_max", x.storedJSON, y.json)) == union, "dense and sparse")
            #expect(try DistinctSketch(json: try await merged("tw_jsonb_max", x.json, y.storedJSON)) == union, "sparse and dense")
        }
        #expect(try await merged("tw_jsonb_add", #"{"timeout":2,"rate_limit":1}"#, #"{"timeout":5,"server":1}"#) == #"{"server": 1, "timeout": 7, "rate_limit": 1}"#)
        #expect(try await merged("tw_jsonb_add", nil, #"{"a":1}"#) == #"{"a": 1}"#)
        #expect(try await merged("tw_jsonb_max", #"{"3":2}"#, nil) == #"{"3": 2}"#)
        #expect(try await merged("tw_jsonb_add", #"{"a":9223372036854775807}"#, #"{"a":1}"#) == #"{"a": 9223372036854775808}"#, "sums past 2^63 are written, not an error")
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
