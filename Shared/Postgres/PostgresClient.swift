import ClientSupport
import Logging

/// Where and how to reach Postgres.
public struct PostgresConfiguration: Sendable {
    /// libpq connection URI, e.g. `postgresql://user:pass@host:5432/db?sslmode=require`. Default: local `tokenwatch`.
    public var url: String = "postgresql://tokenwatch@127.0.0.1:5432/tokenwatch"
    /// Pool size. Default: 8.
    public var maxConnections: Int = 8
    /// How long a caller waits for a free connection. Default: 10 s.
    public var leaseTimeout: Duration = .seconds(10)
    /// Reported as `application_name`. Default: `tokenwatch`.
    public var applicationName: String = "tokenwatch"

    public init(url: String) {
        self.url = url
    }
}

/// A pooled Postgres client. A connection that breaks is dropped and replaced on the next lease, so the client
/// recovers by itself after a server restart (the statement in flight fails with a retriable error).
public final class PostgresClient: Sendable {
    private let pool: ConnectionPool<PostgresConnection>
    public let configuration: PostgresConfiguration
    let logger: Logger

    public init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.pool = ConnectionPool(name: "postgres", maxConnections: configuration.maxConnections, leaseTimeout: configuration.leaseTimeout) {
            try await PostgresConnection.connect(url: configuration.url, applicationName: configuration.applicationName)
        }
    }

    /// Runs one parameterized statement on a pooled connection.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await self.pool.withConnection { try await $0.query(query) }
    }

    /// Runs `body` in a transaction on one connection: COMMIT on return, ROLLBACK on throw.
    public func withTransaction<R: Sendable>(_ body: @Sendable (isolated PostgresConnection) async throws -> R) async throws -> R {
        try await self.pool.withConnection { connection in
            try await connection.withTransaction(body)
        }
    }

    /// Lends one connection for several statements.
    public func withConnection<R: Sendable>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        try await self.pool.withConnection(body)
    }

    /// True when `SELECT 1` succeeds; for readiness checks.
    public func ping() async -> Bool {
        (try? await self.query("SELECT 1").count) == 1
    }

    public func close() async { await self.pool.close() }
}
