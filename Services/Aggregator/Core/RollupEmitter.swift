import Events
import Kafka
import Logging
import Metrics
import Postgres
import Rollups

/// Publishes closed 1-minute windows on llm.rollups.v1.
///
/// A window is closed for partition p once E(p) = max(watermark(p), wall clock) − emit delay is past its end: the
/// data watermark closes windows while events flow, the wall clock closes them on a quiet partition. The windows to
/// publish are the `rollup_emits` rows written in the same transaction as their deltas, so a crash between apply
/// and publish loses no emission; a late update writes the row again and the window is published once more with a
/// higher version (a correction). Publishing is at least once; readers keep the highest version of each window.
public struct RollupEmitter: Sendable {
    let core: AggregatorCore
    private let emitted = Counter(label: "tw_aggregator_windows_emitted_total")

    public init(core: AggregatorCore) {
        self.core = core
    }

    /// Publishes every closed window of the owned partitions; returns how many.
    @discardableResult
    public func emit(wallClock: EventTimestamp = .now()) async throws -> Int {
        var total = 0
        for tp in self.core.states.owned.sorted(by: { $0.partition < $1.partition }) {
            guard let state = self.core.states[tp] else { continue }
            let horizon = max(state.watermark, wallClock.microsecondsSinceEpoch) - self.core.settings.emitDelay.microseconds
            let cutoff = EventTimestamp(microsecondsSinceEpoch: horizon).rfc3339
            let rows = try await self.core.postgres.query("""
                SELECT \(unescaped: RollupStore.selectColumns) FROM rollup_emits e
                JOIN rollups_1m r USING (tenant_id, \(unescaped: SeriesKey.columns), window_start)
                WHERE e.topic = \(tp.topic) AND e.partition = \(tp.partition) AND e.window_start + interval '1 minute' <= \(cutoff)::timestamptz
                """)
            if rows.isEmpty { continue }
            // In window order: a reader that has seen a window knows every earlier window of the partition was sent.
            let records = try rows.map { try RollupStore.record($0, granularity: .minute) }
                .sorted { ($0.key.windowStart, $0.key.series) < ($1.key.windowStart, $1.key.series) }
            try await self.core.producer.sendAll(records.map {
                KafkaProducerMessage(topic: self.core.topics.rollups, key: Array($0.key.series.tenant.utf8), value: $0.jsonBytes())
            })
            try await self.core.postgres.query("""
                DELETE FROM rollup_emits WHERE topic = \(tp.topic) AND partition = \(tp.partition)
                AND window_start + interval '1 minute' <= \(cutoff)::timestamptz
                """)
            total += records.count
        }
        self.emitted.increment(by: total)
        return total
    }
}
