import Foundation
import Logging
import Postgres
import Testing
import TestSupport

/// A database of a test's own on the stack's Postgres, its schema owned by the stack's login (the migration Job's
/// credential), and the services' own roles (`tokenwatch_<service>`, LOGIN NOINHERIT) made beforehand, as
/// CloudNativePG's managed roles or an operator would: the migrations grant them what each uses in this database.
struct ServiceRolesDatabase {
    let name: String
    /// The owner's URL: the migration Job's credential.
    let ownerURL: String
    let admin: PostgresClient

    static func create(_ prefix: String) async throws -> ServiceRolesDatabase {
        let url = try TestEnvironment.postgresURL()
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: prefix))
        let name = TestEnvironment.unique(prefix).replacingOccurrences(of: "-", with: "_").lowercased()
        try await admin.query("CREATE DATABASE \(identifier: name)")
        for service in Self.services {
            try await admin.query(PostgresQuery(sql: """
                DO $$ BEGIN CREATE ROLE tokenwatch_\(service) LOGIN NOINHERIT; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
                """, parameters: []))
        }
        return ServiceRolesDatabase(name: name, ownerURL: "\(url[..<url.lastIndex(of: "/")!])/\(name)", admin: admin)
    }

    static let services = ["gateway", "ingestor", "aggregator", "detector", "query"]

    /// `service`'s URL for `host:port` (the stack's Postgres unless given: a pooler in front of it).
    func url(for service: String, hostPort: String? = nil) throws -> String {
        let stack = try #require(try TestEnvironment.postgresURL().firstMatch(of: /@([^\/?]+)\//)).1
        return "postgresql://tokenwatch_\(service)@\(hostPort ?? String(stack))/\(self.name)"
    }

    func drop() async throws {
        try await self.admin.query("DROP DATABASE \(identifier: self.name) WITH (FORCE)")
        await self.admin.close()
    }
}
