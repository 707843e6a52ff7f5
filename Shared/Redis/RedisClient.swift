import ClientSupport
import Logging

/// A pooled Redis client.
///
/// A command that fails because its connection broke (the server restarted, a timeout) is retried once on a new
/// connection: the services only send commands for which a repeat is harmless (SET NX of the same value, GET, SET,
/// EXPIRE, DEL) or whose repeat is tolerable (a rate-limit INCR counted twice on a reconnect).
public final class RedisClient: Sendable {
    private let pool: ConnectionPool<RedisConnection>
    public let configuration: RedisConfiguration
    private let logger: Logger

    public init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.pool = ConnectionPool(name: "redis", maxConnections: configuration.maxConnections, leaseTimeout: configuration.leaseTimeout) {
            try await RedisConnection.connect(configuration)
        }
    }

    /// Runs one command; error replies throw `RedisError` with code `.server`.
    @discardableResult
    public func command(_ arguments: RedisArgument...) async throws -> RedisValue {
        try await self.command(arguments)
    }

    @discardableResult
    public func command(_ arguments: [RedisArgument]) async throws -> RedisValue {
        try await self.withRetry { connection in try await connection.command(arguments) }
    }

    /// Sends the commands in one round trip; error replies are returned in place.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RedisValue] {
        if commands.isEmpty { return [] }
        return try await self.withRetry { connection in try await connection.pipeline(commands) }
    }

    /// Lends a connection for several commands in a row (MULTI/EXEC, WATCH).
    public func withConnection<R: Sendable>(_ body: (RedisConnection) async throws -> R) async throws -> R {
        try await self.pool.withConnection(body)
    }

    /// True when a PING succeeds; for readiness checks.
    public func ping() async -> Bool {
        (try? await self.command("PING"))?.string == "PONG"
    }

    public func close() async { await self.pool.close() }

    private func withRetry<R: Sendable>(_ body: (RedisConnection) async throws -> R) async throws -> R {
        do {
            return try await self.pool.withConnection(body)
        } catch let error as RedisError where error.isRetriable {
            self.logger.debug("Redis connection failed; retrying once on a new one", metadata: ["error": "\(error)"])
            return try await self.pool.withConnection(body)
        }
    }
}
