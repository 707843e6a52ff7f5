import Foundation
import Logging
import Postgres
import Testing
import TestSupport

/// The migration Job's split of duties (issue 17): the schema is changed by one credential (`TW_MIGRATIONS=only`),
/// the services run with a role that may not change it (`TW_MIGRATIONS=wait`) and wait for the schema they need.
@Suite("Migrations by a Job, services on a runtime role", .serialized, .timeLimit(.minutes(3)))
struct MigrationJobTests {
    @Test("a service on a role without DDL waits for the schema, a TW_MIGRATIONS=only run applies it and exits 0, then the service serves; the role is refused DDL")
    func jobAndRuntimeRole() async throws {
        let url = try TestEnvironment.postgresURL()
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: "migration-job-test"))
        let database = TestEnvironment.unique("job").replacingOccurrences(of: "-", with: "_").lowercased()
        let role = "tw_runtime_" + String(database.suffix(8))
        try await admin.query("CREATE DATABASE \(identifier: database)")
        try await admin.query("CREATE ROLE \(identifier: role) LOGIN NOINHERIT")
        let base = url[..<url.lastIndex(of: "/")!]
        let owner = PostgresClient(configuration: PostgresConfiguration(url: "\(base)/\(database)"), logger: Logger(label: "migration-job-test"))
        // The documented grants (README, "Deploying on Kubernetes"), made once before the first migration: what the
        // owner creates later is readable and writable by the runtime role, nothing more.
        try await owner.query("GRANT USAGE ON SCHEMA public TO \(identifier: role)")
        try await owner.query("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \(identifier: role)")
        try await owner.query("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO \(identifier: role)")
        let runtimeURL = url.replacingOccurrences(of: "://tokenwatch@", with: "://\(role)@")
        let runtimeBase = runtimeURL[..<runtimeURL.lastIndex(of: "/")!]

        // All five services on the runtime role, started before the schema exists.
        let adminToken = "job-admin-token-0123456789"
        let env = try TestEnvironment.pipelineEnvironment(run: database, extra: [
            "TW_POSTGRES_URL": "\(runtimeBase)/\(database)", "TW_MIGRATIONS": "wait", "TW_MIGRATIONS_WAIT": "120s", "TW_ADMIN_TOKEN": adminToken])
        let services = try ["gateway", "ingestor", "aggregator", "detector", "query"].map { try ServiceProcess($0, environment: env) }
        for service in services {
            try await eventually(.seconds(30), "\(service.name) says it waits for the schema") { service.log.contains("Waiting for the schema") }
            #expect(await service.get("/readyz")?.status != 200)
        }

        let job = try ServiceProcess("query", environment: ["TW_POSTGRES_URL": "\(base)/\(database)", "TW_MIGRATIONS": "only"])
        #expect(job.waitForExit(timeout: .seconds(60)) == 0, "the migration run exits 0: \(job.log.suffix(2000))")
        #expect(job.log.contains("Migrations applied"))

        // The roles the migrations create, granted to the runtime role: every row of the row-level-secured tables,
        // and the tenant role the gateway switches to.
        try await owner.query("GRANT tokenwatch_service, tokenwatch_tenant TO \(identifier: role)")
        for service in services { try await service.waitUntilReady(timeout: .seconds(60)) }
        // Through the gateway on the runtime role: a tenant created, its settings read and written under row-level security.
        let http = HTTPClient(port: services[0].port)
        let created = try await http.call("POST", "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(database)-t"}"#)
        let key = try #require(created.json["api_key"] as? String, "\(created.status) \(created.body)")
        #expect(try await http.call("GET", "/v1/detector/settings", token: key).status == 200)
        #expect(try await http.call("POST", "/v1/events", token: key, body: "[\(validEvent("\(database)-1"))]").status == 202)
        for service in services {
            #expect(!service.log.contains("permission denied"), "\(service.name): the runtime role's grants cover what it does: \(service.log.suffix(1500))")
            #expect(try service.stop() == 0, "\(service.name) stops cleanly")
        }

        // The runtime role reads and writes, and may not change the schema.
        let runtime = PostgresClient(configuration: PostgresConfiguration(url: "\(runtimeBase)/\(database)"), logger: Logger(label: "migration-job-test"))
        _ = try await runtime.query("SELECT count(*) FROM rollups_1m")
        for ddl in ["CREATE TABLE intruder (a int)", "ALTER TABLE rollups_1m ADD COLUMN intruder int", "DROP TABLE rollups_1m"] {
            await #expect(throws: PostgresError.self, "\(ddl) is refused") { try await runtime.query(PostgresQuery(sql: ddl, parameters: [])) }
        }
        await runtime.close()
        await owner.close()
        try await admin.query("DROP DATABASE \(identifier: database)")
        try await admin.query("DROP ROLE \(identifier: role)")
        await admin.close()
    }
}
