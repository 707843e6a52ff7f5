import Logging
import Postgres
import ServiceLifecycle

/// Reloads the price table and the tenant registry every `interval`, so price edits and tenant changes in Postgres
/// reach every ingestor replica without a restart. A failed reload keeps what it had and is retried at the next tick.
public struct PriceRefresher: Service {
    let postgres: PostgresClient
    let pipeline: IngestPipeline
    let interval: Duration
    let logger: Logger

    public init(postgres: PostgresClient, pipeline: IngestPipeline, interval: Duration, logger: Logger) {
        self.postgres = postgres
        self.pipeline = pipeline
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while true {
            // Graceful shutdown ends the wait at once rather than holding the service group up for a whole interval.
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                return
            }
            do {
                self.pipeline.updatePrices(try await PriceTable.load(from: self.postgres))
                try await self.pipeline.tenants.reload()
            } catch {
                self.logger.warning("Price or tenant reload failed; keeping the previous ones", metadata: ["error": "\(error)"])
            }
        }
    }
}
