import ServiceKit

/// The aggregator's own settings (beyond `ServiceConfiguration`).
public struct AggregatorSettings: Sendable {
    /// `TW_ALLOWED_LATENESS`: how far behind its partition's watermark (the latest event time seen) an event may be
    /// and still update its window; later ones go to the DLQ as `too_late`. Default: 10m.
    public var allowedLateness: Duration = .seconds(600)
    /// `TW_EMIT_DELAY`: a window is emitted on llm.rollups.v1 once the watermark, or the wall clock when the
    /// partition is quiet, is this far past its end. Default: 5s.
    public var emitDelay: Duration = .seconds(5)
    /// `TW_AGGREGATOR_BATCH`: most events in one batch, applied in one Postgres transaction per partition. Default:
    /// 50000 (at most about 50 MB of messages).
    public var batchSize = 50_000
    /// `TW_AGGREGATOR_LINGER`: how long a batch keeps gathering polls (each takes what arrived within 100 ms) while
    /// events keep arriving; a poll that finds nothing hands the batch over at once. Default: 1s. A tenant's batch
    /// touches most of its rollup rows (every app, environment, model and promoted tag value it sends) within a
    /// fraction of a second, and each row is written once a batch: under steady traffic the rows written, Postgres's
    /// main cost, follow the number of batches, not of events. The price is freshness: a rollup lags its events by
    /// up to this much more (`make bench`, end-to-end delay). 0 makes every poll a batch.
    public var linger: Duration = .seconds(1)
    /// `TW_AGGREGATOR_QUIET`: the lingering polls' timeout; one that finds no event in this long ends the batch
    /// early. Default: 250ms. Under load the ingestor pauses now and then (its own batches, a busy machine); a
    /// shorter quiet cuts batches at such pauses, and every extra batch writes its rows again (`make bench`,
    /// realistic workload: 100 ms wrote about twice the rollup rows of 250 ms while the local broker held empty
    /// fetches for 500 ms; with the 100 ms fetch wait, as many rows and no faster). The price: the last events of a
    /// burst reach the rollups up to this much later.
    public var quiet: Duration = .milliseconds(250)
    /// `TW_AGGREGATOR_KNOWN_USERS`: most per-user row keys held in memory (`KnownUsers`, 25–100 bytes each), so
    /// that new users' rows are inserted plainly rather than upserted. Default: 1000000. 0 upserts every row.
    public var knownUsers = 1_000_000

    public init(allowedLateness: Duration = .seconds(600), emitDelay: Duration = .seconds(5), batchSize: Int = 50_000, linger: Duration = .seconds(1)) {
        self.allowedLateness = allowedLateness
        self.emitDelay = emitDelay
        self.batchSize = batchSize
        self.linger = linger
    }

    public init(environment: Environment) throws(ConfigurationError) {
        self.init()
        self.allowedLateness = try environment.duration("TW_ALLOWED_LATENESS", default: self.allowedLateness, in: .seconds(0) ... .seconds(7 * 24 * 3600))
        self.emitDelay = try environment.duration("TW_EMIT_DELAY", default: self.emitDelay, in: .seconds(0) ... .seconds(3600))
        self.batchSize = try environment.int("TW_AGGREGATOR_BATCH", default: self.batchSize, in: 1...100_000)
        self.linger = try environment.duration("TW_AGGREGATOR_LINGER", default: self.linger, in: .seconds(0) ... .seconds(60))
        self.quiet = try environment.duration("TW_AGGREGATOR_QUIET", default: self.quiet, in: .milliseconds(100) ... .seconds(10))
        self.knownUsers = try environment.int("TW_AGGREGATOR_KNOWN_USERS", default: self.knownUsers, in: 0...100_000_000)
    }
}

extension Duration {
    var microseconds: Int64 { self.components.seconds * 1_000_000 + self.components.attoseconds / 1_000_000_000_000 }
}
