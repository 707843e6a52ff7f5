import Events
import Kafka
import Logging
import Metrics
import Postgres
import Rollups

/// Applies batches of llm.events.v1 to the rollups, exactly once (DESIGN.md, "Delivery").
///
/// Per input partition and batch, one Postgres transaction writes the rollup deltas (1m, 1h and 1d, derived from
/// the same events) and the per-user daily totals, the new consumed offset, the data watermark, the highest source offset applied per source
/// partition, and the list of windows to (re)emit. The offset moves only if it still holds what this member loaded
/// (compare-and-set): a member that lost the partition to a rebalance without noticing (a zombie) cannot apply the
/// same events a second time; it reloads instead. Replays from the ingestor (source offset at or below the mark)
/// are skipped; events more than the allowed lateness behind the watermark go to the DLQ as `too_late` before the
/// transaction, so a crash can repeat a dead letter but never lose one.
public final class AggregatorCore: Sendable {
    public let postgres: PostgresClient
    public let producer: KafkaProducer
    public let states: PartitionStates
    public let settings: AggregatorSettings
    public let topics: Topics
    /// The per-user rows known to exist (`KnownUsers`; nil with `TW_AGGREGATOR_KNOWN_USERS=0`).
    let knownUsers: KnownUsers?
    let logger: Logger
    private let applied = Counter(label: "tw_aggregator_events_total", dimensions: [("outcome", "applied")])
    private let replays = Counter(label: "tw_aggregator_events_total", dimensions: [("outcome", "replay")])
    private let late = Counter(label: "tw_aggregator_events_total", dimensions: [("outcome", "too_late")])
    private let rejected = Counter(label: "tw_aggregator_events_total", dimensions: [("outcome", "rejected")])
    private let fenced = Counter(label: "tw_aggregator_fenced_batches_total")
    private let gaps = Counter(label: "tw_aggregator_rewound_batches_total")
    private let retentionGaps = Counter(label: "tw_aggregator_retention_gaps_total")

    /// Events on llm.events.v1 were validated by the ingestor; re-reading them must not reject them for their age.
    /// Their tags are skipped: the promoted ones come resolved in a header, and the rest are not aggregated.
    let decoder: EventDecoder = {
        var limits = EventLimits()
        limits.maxAgeSeconds = 100 * 365 * 86400
        limits.maxFutureSkewSeconds = 100 * 365 * 86400
        return EventDecoder(limits: limits, skipsTags: true)
    }()

    /// The broker's low watermark of a partition (`KafkaConsumer.lowWatermark`), to tell a gap retention made from
    /// one a stale fetch made; without it every gap is a stale fetch.
    let lowWatermark: (@Sendable (KafkaTopicPartition) async throws -> Int64)?

    public init(postgres: PostgresClient, producer: KafkaProducer, states: PartitionStates, settings: AggregatorSettings, topics: Topics, logger: Logger,
                lowWatermark: (@Sendable (KafkaTopicPartition) async throws -> Int64)? = nil) {
        self.lowWatermark = lowWatermark
        self.postgres = postgres
        self.producer = producer
        self.states = states
        self.settings = settings
        self.topics = topics
        self.logger = logger
        self.knownUsers = settings.knownUsers > 0 ? KnownUsers(capacity: settings.knownUsers) : nil
    }

    public struct Summary: Sendable, Equatable {
        public var applied = 0
        public var replays = 0
        public var tooLate = 0
        public var rejected = 0
        /// Partitions whose batch was refused because another member had moved their offset.
        public var fenced: [KafkaTopicPartition] = []
        public init() {}
    }

    /// A batch whose first new message is past the stored offset: messages in between were never delivered to this
    /// member (fetched before a revocation, or before a seek took effect). Applying it would move the stored offset
    /// over them; instead nothing of it is applied, the state is reloaded and the caller seeks to the stored offset.
    public struct Gap: Error, CustomStringConvertible {
        public let partition: KafkaTopicPartition
        public let expected: Int64
        public let got: Int64
        public var description: String { "\(self.partition): next message at offset \(self.got), stored offset \(self.expected)" }
    }

    public struct Fenced: Error, CustomStringConvertible {
        public let partition: KafkaTopicPartition
        public var description: String { "aggregator offset of \(self.partition) moved under us (another member owns it)" }
    }

    /// Applies `batch`; returns what happened. Messages of partitions this member does not own are ignored (they
    /// can trail a revocation). A fenced partition's state is reloaded and the returned summary names it: the
    /// caller seeks it back to the reloaded offset.
    public func process(_ batch: [KafkaMessage]) async throws -> Summary {
        let byPartition = batch.byPartition
        // Partitions apply concurrently, each in its own transaction on its own connection: one partition's Postgres
        // time overlaps another's decoding (`make bench`). They cannot deadlock: every transaction takes its rows in
        // one global order (statement by statement, keys sorted within each).
        let outcomes = try await withThrowingTaskGroup(of: Summary.self) { group in
            for (tp, messages) in byPartition {
                guard let state = self.states[tp] else { continue }
                group.addTask {
                    var summary = Summary()
                    do {
                        try await self.apply(messages, partition: tp, state: state, summary: &summary)
                    } catch where error is Fenced || error is Gap {
                        // Nothing of this partition's batch was applied. Another member may have moved the offset (fenced,
                        // or the stale fetch of a zombie): reload what is stored, which the caller seeks to.
                        summary = Summary()
                        self.logger.warning("Batch not applied: reloading partition state", metadata: ["kafka.partition": "\(tp)", "error": "\(error)"])
                        (error is Fenced ? self.fenced : self.gaps).increment()
                        // Another member may have written this partition's tenants meanwhile.
                        self.knownUsers?.forgetAll()
                        self.states[tp] = try await PartitionState.load(tp, postgres: self.postgres)
                        summary.fenced.append(tp)
                    }
                    return summary
                }
            }
            var all: [Summary] = []
            for try await summary in group { all.append(summary) }
            return all
        }
        var summary = Summary()
        for part in outcomes {
            summary.applied += part.applied
            summary.replays += part.replays
            summary.tooLate += part.tooLate
            summary.rejected += part.rejected
            summary.fenced += part.fenced
        }
        summary.fenced.sort { $0.partition < $1.partition }
        self.applied.increment(by: summary.applied)
        self.replays.increment(by: summary.replays)
        self.late.increment(by: summary.tooLate)
        self.rejected.increment(by: summary.rejected)
        return summary
    }

    private func apply(_ messages: [KafkaMessage], partition tp: KafkaTopicPartition, state: PartitionState, summary: inout Summary) async throws {
        var next = state
        var rollups = RollupBatch()
        var users = UserTotalDeltas()
        var evidence = EvidenceSamples()
        var deadLetters: [KafkaProducerMessage] = []
        let lateness = self.settings.allowedLateness.microseconds
        // Offsets of one partition are contiguous (an idempotent producer writes no transaction markers), so the first
        // message not applied yet must be the stored offset itself; otherwise the messages in between never reached
        // this member, and moving the offset over them would lose them. Only retention may have removed them.
        if let first = messages.first(where: { $0.offset >= next.nextOffset }), first.offset > next.nextOffset {
            let low = (try? await self.lowWatermark?(tp)) ?? 0
            guard low > next.nextOffset else { throw Gap(partition: tp, expected: next.nextOffset, got: first.offset) }
            self.logger.error("Events deleted by retention before they were applied", metadata: [
                "kafka.partition": "\(tp)", "from": "\(next.nextOffset)", "to": "\(low)"])
            self.retentionGaps.increment()
            next.nextOffset = max(low, next.nextOffset)
            if first.offset > next.nextOffset { throw Gap(partition: tp, expected: next.nextOffset, got: first.offset) }
        }
        for message in messages {
            // Messages before the stored offset were applied already (a seek can deliver a few twice).
            guard message.offset >= next.nextOffset else { continue }
            next.nextOffset = message.offset + 1
            guard let sourcePartition = message.header(EventHeaders.sourcePartition).flatMap({ Int32(String(decoding: $0, as: UTF8.self)) }),
                let sourceOffset = message.header(EventHeaders.sourceOffset).flatMap({ Int64(String(decoding: $0, as: UTF8.self)) })
            else {
                deadLetters.append(self.deadLetter(message, reason: "missing_source", detail: "headers \(EventHeaders.sourcePartition) and \(EventHeaders.sourceOffset) are required on \(message.topic)"))
                summary.rejected += 1
                continue
            }
            if let mark = next.marks[sourcePartition], sourceOffset <= mark {
                summary.replays += 1
                continue
            }
            next.marks[sourcePartition] = sourceOffset
            let event: LLMEvent
            let promoted: [String: String]
            do {
                event = try self.decoder.decode(message.value)
                promoted = try PromotedTags.parse(message.header(EventHeaders.promotedTags))
            } catch {
                deadLetters.append(self.deadLetter(message, reason: "invalid_event", detail: "\(error)"))
                summary.rejected += 1
                continue
            }
            let t = event.timestamp.microsecondsSinceEpoch
            if t < next.watermark - lateness {
                deadLetters.append(self.deadLetter(message, reason: "too_late", detail: "timestamp: \(event.timestamp.rfc3339) is more than the allowed lateness behind the watermark \(EventTimestamp(microsecondsSinceEpoch: next.watermark).rfc3339)"))
                summary.tooLate += 1
                continue
            }
            next.watermark = max(next.watermark, t)
            rollups.add(event, promoted: promoted)
            users.add(event)
            evidence.add(event)
            summary.applied += 1
        }
        guard next != state else { return }
        // Dead letters first: acknowledged before the transaction, so they are never lost (at worst repeated).
        try await self.producer.sendAll(deadLetters)

        let minutes = rollups.deltas(.minute), hours = minutes.coarsened(to: .hour), days = hours.coarsened(to: .day)
        let changedMarks = next.marks.filter { state.marks[$0.key] != $0.value }
        // Published on llm.rollups.v1: the levels with distributions (what the detector watches and the read model
        // serves); the multiplying levels are read from Postgres only.
        let emits = minutes.windows.keys.filter(\.series.keepsDistributions).map { ($0.series, $0.windowStart) }
        let expected = state.nextOffset
        let final = next
        let rollupDeltas = [minutes, hours, days].filter { !$0.isEmpty }
        let upserts = evidence.statements()
        let userDeltas = users
        let transaction: @Sendable (isolated PostgresConnection, KnownUsers?) throws -> [UserDayKey] = { conn, known in
            let moved = try conn.query("""
                UPDATE aggregator_partitions SET next_offset = \(final.nextOffset), watermark_us = \(final.watermark)
                WHERE topic = \(tp.topic) AND partition = \(tp.partition) AND next_offset = \(expected)
                """)
            guard moved.affectedRows == 1 else { throw Fenced(partition: tp) }
            for (sourcePartition, offset) in changedMarks.sorted(by: { $0.key < $1.key }) {
                try conn.query("""
                    INSERT INTO aggregator_source_marks (topic, partition, source_partition, source_offset)
                    VALUES (\(tp.topic), \(tp.partition), \(sourcePartition), \(offset))
                    ON CONFLICT (topic, partition, source_partition) DO UPDATE SET source_offset = GREATEST(aggregator_source_marks.source_offset, EXCLUDED.source_offset)
                    """)
            }
            for deltas in rollupDeltas { try RollupStore.write(deltas, conn) }
            let inserted = try UserTotalsStore.write(userDeltas, known: known, conn)
            for upsert in upserts { try conn.query(upsert) }
            if !emits.isEmpty {
                // One statement: the windows' keys as arrays, unnested.
                let sorted = emits.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) })
                var parameters = PostgresParameters()
                parameters.append(tp.topic)
                parameters.append(String(tp.partition))
                parameters.append(binary: PostgresBinaryArray.text(sorted.map(\.0.tenant)))
                for d in SeriesDimension.allCases { parameters.append(binary: PostgresBinaryArray.text(sorted.map { $0.0[d] })) }
                parameters.append(binary: PostgresBinaryArray.timestamptz(microsecondsSinceEpoch: sorted.map(\.1)))
                let columns = [("tenant_id", "text[]")] + SeriesDimension.allCases.map { ($0.rawValue, "text[]") } + [("window_start", "timestamptz[]")]
                try conn.query(PostgresQuery(
                    sql: """
                        INSERT INTO rollup_emits (topic, partition, tenant_id, \(SeriesKey.columns), window_start)
                        SELECT $1, $2::integer, u.* FROM (\(PostgresQuery.zippedRows(columns, firstParameter: 3))) AS u ON CONFLICT DO NOTHING
                        """,
                    parameters: parameters))
            }
            return inserted
        }
        let inserted: [UserDayKey]
        do {
            inserted = try await self.postgres.withTransaction { conn in try transaction(conn, self.knownUsers) }
        } catch where KnownUsers.isStale(error) {
            // Another writer added or removed per-user rows of these tenants: written again with upserts.
            self.logger.info("Per-user rows not as known: batch written again with upserts", metadata: ["kafka.partition": "\(tp)", "error": "\(error)"])
            self.knownUsers?.forgetAll()
            inserted = try await self.postgres.withTransaction { conn in try transaction(conn, nil) }
        }
        self.knownUsers?.inserted(inserted)
        self.states[tp] = next
    }

    private func deadLetter(_ message: KafkaMessage, reason: String, detail: String) -> KafkaProducerMessage {
        var headers = message.headers.filter { $0.key != EventHeaders.reason && $0.key != EventHeaders.detail }
        headers.append(KafkaHeader(key: EventHeaders.reason, string: reason))
        headers.append(KafkaHeader(key: EventHeaders.detail, string: String(detail.prefix(512))))
        return KafkaProducerMessage(topic: self.topics.deadLetters, key: message.key, value: message.value, headers: headers)
    }
}
