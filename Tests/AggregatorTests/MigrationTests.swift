import Foundation
import Logging
import Postgres
import ServiceKit
import Testing
import TestSupport

@Suite("Schema migrations on existing data", .timeLimit(.minutes(2)))
struct MigrationTests {
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
