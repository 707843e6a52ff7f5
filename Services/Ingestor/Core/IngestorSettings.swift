import ServiceKit

/// The ingestor's own settings (beyond `ServiceConfiguration`).
public struct IngestorSettings: Sendable {
    /// `TW_DEDUPE_TTL`: how long event_ids are remembered for catching client retries. Default: 24h.
    public var dedupeTTL: Duration = .seconds(24 * 3600)
    /// `TW_PRICES_REFRESH`: how often the price table is reloaded from Postgres. Default: 60s.
    public var pricesRefresh: Duration = .seconds(60)
    /// `TW_INGEST_BATCH`: most raw messages handled (and committed) together. Default: 2000.
    public var batchSize = 2000
    /// `TW_DIMENSION_CAP`: distinct values of `app`, and of `environment`, each tenant may have; later ones are
    /// counted as `other`. Default: 100.
    public var dimensionCap = 100

    public init(environment: Environment = Environment()) throws(ConfigurationError) {
        self.dedupeTTL = try environment.duration("TW_DEDUPE_TTL", default: self.dedupeTTL, in: .seconds(60) ... .seconds(30 * 24 * 3600))
        self.pricesRefresh = try environment.duration("TW_PRICES_REFRESH", default: self.pricesRefresh, in: .seconds(1) ... .seconds(24 * 3600))
        self.batchSize = try environment.int("TW_INGEST_BATCH", default: self.batchSize, in: 1...100_000)
        self.dimensionCap = try environment.int("TW_DIMENSION_CAP", default: self.dimensionCap, in: 1...10_000)
    }
}
