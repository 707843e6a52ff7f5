import Foundation
import Logging
import Postgres
import Testing
import TestSupport

/// A database of a test's own on the stack's Postgres, with a runtime role made as the README says ("Schema
/// migrations and database roles"): NOINHERIT, schema usage, default DML privileges on what the owner creates.
struct RuntimeRoleDatabase {
    let name: String
    let role: String
    /// The owner's URL (the stack's login, which owns the database): the migration Job's credential.
    let ownerURL: String
    let admin: PostgresClient
    let owner: PostgresClient

    static func create(_ prefix: String) async throws -> RuntimeRoleDatabase {
        let url = try TestEnvironment.postgresURL()
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: prefix))
        let name = TestEnvironment.unique(prefix).replacingOccurrences(of: "-", with: "_").lowercased()
        let role = "tw_runtime_" + String(name.suffix(8))
        try await admin.query("CREATE DATABASE \(identifier: name)")
        try await admin.query("CREATE ROLE \(identifier: role) LOGIN NOINHERIT")
        let ownerURL = "\(url[..<url.lastIndex(of: "/")!])/\(name)"
        let owner = PostgresClient(configuration: PostgresConfiguration(url: ownerURL), logger: Logger(label: prefix))
        // Made once before the first migration: what the owner creates later is readable and writable by the
        // runtime role, nothing more.
        try await owner.query("GRANT USAGE ON SCHEMA public TO \(identifier: role)")
        try await owner.query("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \(identifier: role)")
        try await owner.query("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO \(identifier: role)")
        return RuntimeRoleDatabase(name: name, role: role, ownerURL: ownerURL, admin: admin, owner: owner)
    }

    /// The runtime role's URL for `host:port` (the stack's Postgres unless given: a pooler in front of it).
    func runtimeURL(hostPort: String? = nil) throws -> String {
        let url = try TestEnvironment.postgresURL()
        let stack = try #require(url.firstMatch(of: /@([^\/?]+)\//)).1
        return "postgresql://\(self.role)@\(hostPort ?? String(stack))/\(self.name)"
    }

    /// After the migrations made them: every row of the row-level-secured tables, and the tenant role the gateway
    /// switches to.
    func grantRuntimeRoles() async throws {
        try await self.owner.query("GRANT tokenwatch_service, tokenwatch_tenant TO \(identifier: self.role)")
    }

    func drop() async throws {
        await self.owner.close()
        try await self.admin.query("DROP DATABASE \(identifier: self.name) WITH (FORCE)")
        try await self.admin.query("DROP ROLE \(identifier: self.role)")
        await self.admin.close()
    }
}
