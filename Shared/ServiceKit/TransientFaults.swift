import ClientSupport
import Kafka
import Logging
import Metrics
import Postgres
import Redis
import ServiceLifecycle

/// Which failures of a dependency pass by themselves: a connection refused or reset, a pool with no free
/// connection in time, a serialization failure or deadlock, the server restarting, a broker unreachable or a
/// leader moving. Work that failed on one is retried; anything else (a bug, a constraint violation, bad
/// configuration) is not, and stops the service so the orchestrator restarts it and the failure is seen.
public enum TransientFaults {
    public static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let e as PostgresError: return e.isRetriable
        case let e as RedisError: return e.isRetriable
        case let e as KafkaError: return e.isRetriable
        case let e as PoolError: return e.code == .timeout
        default: return false
        }
    }

    /// Runs `body` until it succeeds, retrying transient failures with exponential backoff and full jitter (100 ms
    /// growing to 5 s). Each failure is logged at error level and counted in `tw_transient_errors_total{operation}`;
    /// a failure that is not transient, cancellation or graceful shutdown ends the retries by rethrowing.
    public static func retrying<T: Sendable>(
        _ operation: String, logger: Logger, maximumDelay: Duration = .seconds(5), _ body: () async throws -> T
    ) async throws -> T {
        var backoff = Backoff(initial: .milliseconds(100), maximum: maximumDelay)
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch where Self.isTransient(error) && !Task.isCancelled && !Task.isShuttingDownGracefully {
                attempt += 1
                Counter(label: "tw_transient_errors_total", dimensions: [("operation", operation)]).increment()
                let delay = backoff.next()
                logger.error("Dependency failed; retrying", metadata: [
                    "operation": "\(operation)", "error": "\(error)", "attempt": "\(attempt)", "retry.delay": "\(delay)",
                ])
                // Shutdown interrupts the wait; the work in hand is then left uncommitted for the next owner.
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            }
        }
    }
}
