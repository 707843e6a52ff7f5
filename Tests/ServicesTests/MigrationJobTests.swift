import Foundation
import Logging
import Postgres
import Testing
import TestSupport

/// The migration Job's split of duties (issue 17): the schema is changed by one credential (`TW_MIGRATIONS=only`),
/// each service runs with a role of its own that may not change it and holds only the grants of the tables its service
/// uses (`TokenwatchSchema.servicePrivileges`; `TW_MIGRATIONS=wait`), and waits for the schema and grants it needs.
@Suite("Migrations by a Job, services on a runtime role", .serialized, .timeLimit(.minutes(3)))
struct MigrationJobTests {
    @Test("services on their own roles wait for the schema, a TW_MIGRATIONS=only run applies it and the grants and exits 0, then they serve; each role is refused DDL and tables its service does not use")
    func jobAndRuntimeRole() async throws {
        let db = try await ServiceRolesDatabase.create("job")
        let database = db.name

        // All five services, each on its own role, started before the schema exists.
        let adminToken = "job-admin-token-0123456789"
        let env = try TestEnvironment.pipelineEnvironment(run: database, extra: ["TW_MIGRATIONS": "wait", "TW_MIGRATIONS_WAIT": "120s", "TW_ADMIN_TOKEN": adminToken])
        let services = try ServiceRolesDatabase.services.map { try ServiceProcess($0, environment: env.merging(["TW_POSTGRES_URL": try db.url(for: $0)]) { $1 }) }
        for service in services {
            try await eventually(.seconds(30), "\(service.name) says it waits for the schema") { service.log.contains("Waiting for the schema") }
            #expect(await service.get("/readyz")?.status != 200)
        }

        let job = try ServiceProcess("query", environment: ["TW_POSTGRES_URL": db.ownerURL, "TW_MIGRATIONS": "only"])
        #expect(job.waitForExit(timeout: .seconds(60)) == 0, "the migration run exits 0: \(job.log.suffix(2000))")
        #expect(job.log.contains("Migrations applied"))

        for service in services { try await service.waitUntilReady(timeout: .seconds(60)) }
        // Through the gateway on the runtime role: a tenant created, its settings read and written under row-level security.
        let http = HTTPClient(port: services[0].port)
        let created = try await http.call("POST", "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(database)-t"}"#)
        let key = try #require(created.json["api_key"] as? String, "\(created.status) \(created.body)")
        #expect(try await http.call("GET", "/v1/detector/settings", token: key).status == 200)
        #expect(try await http.call("POST", "/v1/events", token: key, body: "[\(validEvent("\(database)-1"))]").status == 202)
        for service in services {
            #expect(!service.log.contains("permission denied"), "\(service.name): the runtime role's grants cover what it does: \(service.log.suffix(1500))")
            #expect(try service.stop() == 0, "\(service.name) stops cleanly: \(service.log.suffix(1500))")
        }

        // Each role reads and writes what its service uses, and may not change the schema or read another's tables.
        let gateway = PostgresClient(configuration: PostgresConfiguration(url: try db.url(for: "gateway")), logger: Logger(label: "migration-job-test"))
        _ = try await gateway.query("SELECT count(*) FROM rollups_1m")
        for ddl in ["CREATE TABLE intruder (a int)", "ALTER TABLE rollups_1m ADD COLUMN intruder int", "DROP TABLE rollups_1m", "CREATE ROLE intruder"] {
            await #expect(throws: PostgresError.self, "\(ddl) is refused") { try await gateway.query(PostgresQuery(sql: ddl, parameters: [])) }
        }
        await #expect(throws: PostgresError.self, "the gateway may not write rollups") { try await gateway.query("DELETE FROM rollups_1m") }
        await gateway.close()
        let ingestor = PostgresClient(configuration: PostgresConfiguration(url: try db.url(for: "ingestor")), logger: Logger(label: "migration-job-test"))
        await #expect(throws: PostgresError.self, "the ingestor may not read API keys") { try await ingestor.query("SELECT count(*) FROM api_keys") }
        await ingestor.close()
        try await db.drop()
    }
}
