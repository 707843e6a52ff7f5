import Logging
import Postgres
import ServiceKit

/// Reloads the price table and the tenant registry every `interval`, so price edits and tenant changes in Postgres
/// reach every ingestor replica without a restart.
public func priceRefresher(postgres: PostgresClient, pipeline: IngestPipeline, interval: Duration, logger: Logger) -> PeriodicReload {
    PeriodicReload(every: interval, what: "Price table and tenant registry", logger: logger) {
        pipeline.updatePrices(try await PriceTable.load(from: postgres))
        try await pipeline.tenants.reload()
    }
}
