import Logging

/// One schema change. Versions are applied in ascending order, each exactly once.
public struct PostgresMigration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies versioned migrations at start.
///
/// Every replica of every service calls `migrate` on start; a session-level advisory lock makes them take turns, so
/// each migration runs once, in its own transaction together with its row in `tw_schema_migrations`. A version that
/// was applied under another name means the code and the database disagree, and is an error rather than a guess.
public struct PostgresMigrator: Sendable {
    /// Arbitrary constant shared by all Tokenwatch services: the advisory lock's key.
    public static let lockKey: Int64 = 0x746F_6B65_6E77 // "tokenw"

    public let migrations: [PostgresMigration]
    /// SQL applied after the migrations on every run, in one transaction under the same lock (the services' roles
    /// and grants, which follow the code rather than a version); its digest is recorded so that `missing` reports it
    /// until the running code's script has been applied.
    public let privileges: String?

    public init(migrations: [PostgresMigration], privileges: String? = nil) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.privileges = privileges
    }

    /// What `missing` reports while the privileges script of this code has not been applied.
    public static let privilegesPending = -1

    /// Applies what is missing; returns the versions applied by this call.
    @discardableResult
    public func migrate(_ client: PostgresClient, table: String = "tw_schema_migrations", lockTimeout: Duration? = nil) async throws -> [Int] {
        let versions = self.migrations.map(\.version)
        guard Set(versions).count == versions.count else {
            throw PostgresError(.migration, "duplicate migration versions in \(versions)")
        }
        let migrations = self.migrations
        let privileges = self.privileges
        let logger = client.logger
        return try await client.withConnection { connection in
            // A stuck session holding the lock (or a table a migration alters) fails the attempt after the timeout
            // rather than hanging every starting replica; the setting is the session's, reset before the connection
            // goes back to the pool.
            if let lockTimeout {
                let ms = lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000
                try await connection.query("SELECT set_config('lock_timeout', \(String(ms)), false)")
            }
            do {
                try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))")
                let applied = try await Self.applyMissing(migrations, on: connection, table: table, logger: logger)
                if let privileges { try await Self.apply(privileges: privileges, on: connection, table: table, afterMigrating: !applied.isEmpty) }
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                if lockTimeout != nil { try await connection.query("RESET lock_timeout") }
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))")
                if lockTimeout != nil { _ = try? await connection.query("RESET lock_timeout") }
                throw error
            }
        }
    }

    /// The versions this list holds that the database has not applied (all of them before the first migration), and
    /// `privilegesPending` while this code's privileges script has not run, without applying anything: what a
    /// service started with a runtime role waits for.
    public func missing(_ client: PostgresClient, table: String = "tw_schema_migrations") async throws -> [Int] {
        let migrations = self.migrations
        let digest = self.privileges.map(Self.digest)
        return try await client.withConnection { connection in
            let exists = try await connection.query("SELECT to_regclass(\(table)) IS NOT NULL AS present")
            guard try exists.first?.decode("present", as: Bool.self) == true else { return migrations.map(\.version) + (digest == nil ? [] : [Self.privilegesPending]) }
            let done = try await Self.applied(migrations, on: connection, table: table)
            var missing = migrations.map(\.version).filter { done[$0] == nil }
            if let digest, try await Self.recordedDigest(on: connection, table: table) != digest { missing.append(Self.privilegesPending) }
            return missing
        }
    }

    /// Runs the script unless it already has and no migration ran since (a migration may have made a table anew):
    /// every replica's start under `apply` would otherwise revoke and grant again, one at a time under the lock.
    private static func apply(privileges: String, on connection: PostgresConnection, table: String, afterMigrating: Bool) async throws {
        let digest = Self.digest(privileges)
        if !afterMigrating, try await Self.recordedDigest(on: connection, table: table) == digest { return }
        do {
            try await connection.withTransaction { connection in
                try connection.query("CREATE TABLE IF NOT EXISTS \(identifier: table + "_privileges") (digest text NOT NULL)")
                try connection.execute(script: privileges)
                try connection.query("DELETE FROM \(identifier: table + "_privileges")")
                try connection.query("INSERT INTO \(identifier: table + "_privileges") (digest) VALUES (\(digest))")
            }
        } catch let error as PostgresError {
            throw error.context("privileges")
        }
    }

    /// The digest of the privileges script last applied, nil before the first.
    private static func recordedDigest(on connection: PostgresConnection, table: String) async throws -> String? {
        let exists = try await connection.query("SELECT to_regclass(\(table + "_privileges")) IS NOT NULL AS present")
        guard try exists.first?.decode("present", as: Bool.self) == true else { return nil }
        return try await connection.query("SELECT digest FROM \(identifier: table + "_privileges")").first?.decode("digest", as: String.self)
    }

        /// FNV-1a of the script, as hex: identifies the script a database was granted by.
    static func digest(_ script: String) -> String {
        var h: UInt64 = 0xcbf29ce484222325
        for byte in script.utf8 { h = (h ^ UInt64(byte)) &* 0x100000001b3 }
        return String(h, radix: 16)
    }

    /// The versions the table records, checked against the names the code gives them.
    private static func applied(_ migrations: [PostgresMigration], on connection: PostgresConnection, table: String) async throws -> [Int: String] {
        var done: [Int: String] = [:]
        for row in try await connection.query("SELECT version, name FROM \(identifier: table)") {
            done[try row.decode("version")] = try row.decode("name", as: String.self)
        }
        for migration in migrations {
            if let name = done[migration.version], name != migration.name {
                throw PostgresError(.migration, "version \(migration.version) was applied as '\(name)' but the code calls it '\(migration.name)'")
            }
        }
        return done
    }

    private static func applyMissing(_ migrations: [PostgresMigration], on connection: PostgresConnection, table: String, logger: Logger) async throws -> [Int] {
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS \(identifier: table) (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        let done = try await Self.applied(migrations, on: connection, table: table)
        var applied: [Int] = []
        for migration in migrations where done[migration.version] == nil {
            do {
                try await connection.withTransaction { connection in
                    try connection.execute(script: migration.sql)
                    try connection.query("INSERT INTO \(identifier: table) (version, name) VALUES (\(migration.version), \(migration.name))")
                }
            } catch let error as PostgresError {
                throw error.context("migration \(migration.version) \(migration.name)")
            }
            logger.info("Applied migration", metadata: ["migration.version": "\(migration.version)", "migration.name": "\(migration.name)"])
            applied.append(migration.version)
        }
        return applied
    }
}
