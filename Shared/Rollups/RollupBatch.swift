import Events

/// What one batch of events adds to the rollups at every level and granularity, built with one dictionary update
/// per event (and one per promoted tag) instead of one per level and granularity (`RollupDeltas.add`, the reference
/// the tests compare with): events are added at their full key and minute, and the coarser levels, hours and days
/// are derived by merging those, which is exact (every field merges by integer addition or register maximum).
/// With a realistic tenant (20 apps × 3 environments × 3 models) this cut the aggregator's CPU per event by more
/// than half (`make bench`).
public struct RollupBatch: Sendable {
    /// Per full key (app × environment × model) and minute: everything but distinct ids.
    private var fine: [RollupKey: RollupValues] = [:]
    /// Per promoted tag and minute: counters only (tag rows keep no distributions).
    private var tags: [RollupKey: UsageCounters] = [:]
    /// Per tenant and minute: distinct users and sessions (kept in the tenant's total rows only).
    private var distinct: [RollupKey: RollupValues] = [:]

    public init() {}

    public var isEmpty: Bool { self.fine.isEmpty }

    public mutating func add(_ event: LLMEvent, promoted: [String: String] = [:]) {
        let start = Granularity.minute.windowStart(event.timestamp)
        let full = SeriesKey(event: event)
        self.fine[RollupKey(series: full, windowStart: start), default: RollupValues()].add(event)
        if event.userID != nil || event.sessionID != nil {
            self.distinct[RollupKey(series: .total(full.tenant), windowStart: start), default: RollupValues()].addDistinct(event)
        }
        for (key, value) in promoted {
            let series = SeriesKey(tenant: full.tenant, provider: "", model: "", tagKey: key, tagValue: value)
            self.tags[RollupKey(series: series, windowStart: start), default: UsageCounters()].add(event)
        }
    }

    /// The deltas at `granularity`, every level: what `RollupDeltas.add` of each event would have built.
    public func deltas(_ granularity: Granularity) -> RollupDeltas {
        granularity == .minute ? self.minutes() : self.minutes().coarsened(to: granularity)
    }

    /// Keys here are at their minute already: only the levels are derived.
    private func minutes() -> RollupDeltas {
        var out = RollupDeltas(granularity: .minute)
        for (key, values) in self.fine {
            for level in SeriesKey.eventLevels {
                out.merge(RollupKey(series: key.series.projected(onto: level), windowStart: key.windowStart), values)
            }
        }
        for (key, counters) in self.tags {
            var values = RollupValues()
            values.counters = counters
            out.merge(key, values)
        }
        for (key, values) in self.distinct { out.merge(key, values) }
        return out
    }
}

extension RollupDeltas {
    /// These deltas at a coarser granularity: each row merged into its hour's or day's (exact, as every field merges
    /// by addition or register maximum). Hours from minutes, days from hours: far fewer rows than the batch's
    /// full keys at every level.
    public func coarsened(to granularity: Granularity) -> RollupDeltas {
        var out = RollupDeltas(granularity: granularity)
        for (key, values) in self.windows {
            out.merge(RollupKey(series: key.series, windowStart: granularity.windowStart(EventTimestamp(microsecondsSinceEpoch: key.windowStart))), values)
        }
        return out
    }

    /// Merges `values` into the row of `key`: all of it where the row keeps distributions, the counters elsewhere.
    mutating func merge(_ key: RollupKey, _ values: RollupValues) {
        if key.series.keepsDistributions {
            self.windows[key, default: RollupValues()].merge(values)
        } else {
            self.windows[key, default: RollupValues()].counters.merge(values.counters)
        }
    }
}
