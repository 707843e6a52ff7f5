import ServiceKit

/// The aggregator's own settings (beyond `ServiceConfiguration`).
public struct AggregatorSettings: Sendable {
    /// `TW_ALLOWED_LATENESS`: how far behind its partition's watermark (the latest event time seen) an event may be
    /// and still update its window; later ones go to the DLQ as `too_late`. Default: 10m.
    public var allowedLateness: Duration = .seconds(600)
    /// `TW_EMIT_DELAY`: a window is emitted on llm.rollups.v1 once the watermark, or the wall clock when the
    /// partition is quiet, is this far past its end. Default: 5s.
    public var emitDelay: Duration = .seconds(5)
    /// `TW_AGGREGATOR_BATCH`: most events taken in one poll, applied in one Postgres transaction per partition.
    /// Default: 20000. A poll takes what arrived within 100 ms, so batches are small when the aggregator keeps up and
    /// grow to this when it falls behind; the cost of a transaction is mostly per row and per sketch merge, not per
    /// event, so larger batches catch up faster (`make bench`).
    public var batchSize = 20_000

    public init(allowedLateness: Duration = .seconds(600), emitDelay: Duration = .seconds(5), batchSize: Int = 20_000) {
        self.allowedLateness = allowedLateness
        self.emitDelay = emitDelay
        self.batchSize = batchSize
    }

    public init(environment: Environment) throws(ConfigurationError) {
        self.init()
        self.allowedLateness = try environment.duration("TW_ALLOWED_LATENESS", default: self.allowedLateness, in: .seconds(0) ... .seconds(7 * 24 * 3600))
        self.emitDelay = try environment.duration("TW_EMIT_DELAY", default: self.emitDelay, in: .seconds(0) ... .seconds(3600))
        self.batchSize = try environment.int("TW_AGGREGATOR_BATCH", default: self.batchSize, in: 1...100_000)
    }
}

extension Duration {
    var microseconds: Int64 { self.components.seconds * 1_000_000 + self.components.attoseconds / 1_000_000_000_000 }
}
