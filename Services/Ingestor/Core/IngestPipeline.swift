import Events
import Kafka
import Logging
import Metrics
import Rollups
import Synchronization

/// The ingestor's work on one batch of raw messages (DESIGN.md, "Delivery"):
/// validate again (direct producers are not trusted), normalize, drop client retries, price what has no cost,
/// produce the results to llm.events.v1 and the rejects to llm.events.dlq.v1, and only once the broker has
/// acknowledged every one of them commit the source offsets. A produce that fails for good throws, which stops the
/// service before anything of the batch is committed: the batch is replayed, never skipped.
public final class IngestPipeline: Sendable {
    public struct Configuration: Sendable {
        public var topics: Topics
        public var limits: EventLimits

        public init(topics: Topics, limits: EventLimits = .default) {
            self.topics = topics
            self.limits = limits
        }
    }

    /// Stable dead-letter reason codes (`tw-reason` header).
    public enum Reason: String, Sendable {
        case invalidEvent = "invalid_event"
        case missingTenant = "missing_tenant"
        case unknownTenant = "unknown_tenant"
        case tenantDisabled = "tenant_disabled"
    }

    let configuration: Configuration
    let producer: KafkaProducer
    let deduplicator: Deduplicator
    let prices: Mutex<PriceTable>
    let tenants: TenantRegistry
    let dimensions: DimensionRegistry?
    let normalizer = EventNormalizer()
    let logger: Logger
    private let accepted = Counter(label: "tw_ingest_events_total", dimensions: [("outcome", "accepted")])
    private let duplicates = Counter(label: "tw_ingest_events_total", dimensions: [("outcome", "duplicate")])
    private let replays = Counter(label: "tw_ingest_events_total", dimensions: [("outcome", "replay")])
    private let rejected = Counter(label: "tw_ingest_events_total", dimensions: [("outcome", "rejected")])
    private let unpriced = Counter(label: "tw_ingest_unpriced_events_total")
    /// Where accepted events' costs came from (`CostPolicy.Source`).
    private let costSources = Dictionary(uniqueKeysWithValues: CostPolicy.Source.allCases.map {
        ($0, Counter(label: "tw_ingest_cost_source_total", dimensions: [("source", $0.rawValue)]))
    })

    public init(configuration: Configuration, producer: KafkaProducer, deduplicator: Deduplicator, prices: PriceTable, tenants: TenantRegistry,
                dimensions: DimensionRegistry? = nil, logger: Logger) {
        self.configuration = configuration
        self.dimensions = dimensions
        self.tenants = tenants
        self.producer = producer
        self.deduplicator = deduplicator
        self.prices = Mutex(prices)
        self.logger = logger
    }

    /// Replaces the price table (the periodic reload).
    public func updatePrices(_ table: PriceTable) { self.prices.withLock { $0 = table } }

    /// What became of each message of a batch; returned for tests and logs.
    public struct Summary: Sendable, Equatable {
        public var accepted = 0
        public var replayed = 0
        public var duplicates = 0
        public var rejected = 0
        public var unpriced = 0

        public init(accepted: Int = 0, replayed: Int = 0, duplicates: Int = 0, rejected: Int = 0, unpriced: Int = 0) {
            self.accepted = accepted
            self.replayed = replayed
            self.duplicates = duplicates
            self.rejected = rejected
            self.unpriced = unpriced
        }

        mutating func add(_ other: Summary) {
            self.accepted += other.accepted
            self.replayed += other.replayed
            self.duplicates += other.duplicates
            self.rejected += other.rejected
            self.unpriced += other.unpriced
        }
    }

    /// Processes `batch` and returns the offsets to commit (next offset per partition). Throws when an output could
    /// not be delivered; nothing of the batch may then be committed.
    ///
    /// Partitions are processed concurrently, each with its own Redis round trip and produce: one partition's wait
    /// for Redis or for the broker's acknowledgements overlaps another's decoding, instead of every wait of the batch
    /// coming in turn (`make bench`). A tenant's events keep their order (the gateway keys them by tenant, so they
    /// share a partition), and a partition's events are produced in order.
    public func process(_ batch: [KafkaMessage], now: EventTimestamp = .now()) async throws -> (summary: Summary, commit: [KafkaTopicPartition: Int64]) {
        let parts = batch.byPartition
        var summary = Summary()
        if parts.count <= 1 {
            summary = try await self.processPartition(batch, now: now)
        } else {
            try await withThrowingTaskGroup(of: Summary.self) { group in
                for messages in parts.values { group.addTask { try await self.processPartition(messages, now: now) } }
                for try await part in group { summary.add(part) }
            }
        }
        self.accepted.increment(by: summary.accepted)
        self.replays.increment(by: summary.replayed)
        self.duplicates.increment(by: summary.duplicates)
        self.unpriced.increment(by: summary.unpriced)
        self.rejected.increment(by: summary.rejected)
        return (summary, batch.nextOffsets)
    }

    private func processPartition(_ batch: [KafkaMessage], now: EventTimestamp) async throws -> Summary {
        var summary = Summary()
        var outputs: [KafkaProducerMessage] = []
        outputs.reserveCapacity(batch.count)
        // The valid events and the index of each one's message: parallel arrays, so that no step copies a message
        // (four reference counts each) or an event more than it must.
        var events: [LLMEvent] = [], sources: [Int] = []
        events.reserveCapacity(batch.count)
        sources.reserveCapacity(batch.count)
        let decoder = EventDecoder(limits: self.configuration.limits)

        for (i, message) in batch.enumerated() {
            let event: LLMEvent
            do {
                event = try decoder.decode(message.value, now: now)
            } catch {
                outputs.append(self.deadLetter(message, reason: .invalidEvent, detail: error.description))
                summary.rejected += 1
                continue
            }
            guard event.tenantID != nil else {
                outputs.append(self.deadLetter(message, reason: .missingTenant, detail: "tenant_id: required on events produced to Kafka directly"))
                summary.rejected += 1
                continue
            }
            events.append(self.normalizer.normalize(event))
            sources.append(i)
        }

        // Tenants must exist and be enabled (a commas in an id cannot occur: ids are validated identifiers).
        let tenantIDs = Set(events.map { $0.tenantID! })
        try await self.tenants.resolve(tenantIDs)
        // Each tenant's settings once a batch (not three lookups under a lock an event).
        let tenants = self.tenants.infos(tenantIDs)
        var kept = 0
        for k in events.indices {
            let tenant = events[k].tenantID!
            switch tenants[tenant]?.status ?? .unknown {
            case .active:
                if kept != k {
                    events.swapAt(kept, k)
                    sources.swapAt(kept, k)
                }
                kept += 1
                continue
            case .unknown:
                outputs.append(self.deadLetter(batch[sources[k]], reason: .unknownTenant, detail: "tenant_id: no tenant '\(tenant)' exists"))
            case .disabled:
                outputs.append(self.deadLetter(batch[sources[k]], reason: .tenantDisabled, detail: "tenant_id: tenant '\(tenant)' is disabled"))
            }
            summary.rejected += 1
        }
        events.removeLast(events.count - kept)
        sources.removeLast(sources.count - kept)

        // Promoted tags (the tenant's keys the event carries), then the cardinality cap on them, app and environment.
        var promoted: [[String: String]] = events.map { event in
            guard let keys = tenants[event.tenantID!]?.promotedTags, !keys.isEmpty, !event.tags.isEmpty else { return [:] }
            return event.tags.filter { keys.contains($0.key) }
        }
        if let dimensions = self.dimensions {
            (events, promoted) = try await dimensions.apply(events, promoted: promoted)
        }
        let verdicts = try await self.deduplicator.classify(events.indices.map { k in
            Deduplicator.Item(tenant: events[k].tenantID!, eventID: events[k].eventID, partition: batch[sources[k]].partition, offset: batch[sources[k]].offset)
        })
        let prices = self.prices.withLock { $0 }
        var costSources: [CostPolicy.Source: Int] = [:]
        defer { for (source, n) in costSources { self.costSources[source]?.increment(by: n) } }
        for k in events.indices {
            switch verdicts[k] {
            case .duplicate:
                summary.duplicates += 1
                continue
            case .replay: summary.replayed += 1
            case .first: summary.accepted += 1
            }
            let event = events[k]
            let table = prices.price(tenant: event.tenantID!, provider: event.provider, model: event.model).map { $0.costNanos(of: event) }
            let usedTokens = event.inputTokens > 0 || event.outputTokens > 0
            let (cost, source) = (tenants[event.tenantID!]?.costPolicy ?? .default).resolve(clientCost: event.costNanos, tablePrice: table, usedTokens: usedTokens)
            events[k].costNanos = cost
            // Unknown model: priced 0 and flagged in a header and a metric, never silently.
            if source == .unknownModel { summary.unpriced += 1 }
            costSources[source, default: 0] += 1
            let costSource = source.rawValue
            var headers = self.sourceHeaders(batch[sources[k]])
            headers.reserveCapacity(6)
            headers.append(KafkaHeader(key: EventHeaders.schemaVersion, string: "1"))
            headers.append(KafkaHeader(key: EventHeaders.costSource, string: costSource))
            if costSource == "unknown_model" { headers.append(KafkaHeader(key: EventHeaders.unpriced, string: "1")) }
            if !promoted[k].isEmpty { headers.append(KafkaHeader(key: EventHeaders.promotedTags, string: PromotedTags.header(promoted[k]))) }
            outputs.append(KafkaProducerMessage(topic: self.configuration.topics.events, key: Array(event.tenantID!.utf8), value: events[k].jsonBytes(), headers: headers))
        }

        try await self.producer.sendAll(outputs)

        return summary
    }

    private func sourceHeaders(_ message: KafkaMessage) -> [KafkaHeader] {
        [
            KafkaHeader(key: EventHeaders.sourceTopic, string: message.topic),
            KafkaHeader(key: EventHeaders.sourcePartition, string: String(message.partition)),
            KafkaHeader(key: EventHeaders.sourceOffset, string: String(message.offset)),
        ]
    }

    /// The rejected input exactly as received, keyed as it came (the tenant, for well-behaved producers).
    private func deadLetter(_ message: KafkaMessage, reason: Reason, detail: String) -> KafkaProducerMessage {
        var headers = self.sourceHeaders(message)
        headers.append(KafkaHeader(key: EventHeaders.reason, string: reason.rawValue))
        // Bounded: a detail quotes at most a field name and a short rule, but input is untrusted.
        headers.append(KafkaHeader(key: EventHeaders.detail, string: String(detail.prefix(512))))
        return KafkaProducerMessage(topic: self.configuration.topics.deadLetters, key: message.key, value: message.value, headers: headers)
    }
}

/// The ingestor's guard against a stale fetch (the cousin of the aggregator's `Gap`): after a rebalance a member can
/// be handed messages of a partition fetched before it lost it, starting past the group's committed offset, while the
/// messages in between were never processed by anyone. Committing after such a batch would skip them for good.
public enum FetchGap {
    /// The partitions of `batch` that need the check: those whose first message is not the one after what this
    /// member processed last (`expected`). A partition that goes on where this member left off has no gap, whatever
    /// the group committed since (at worst a replay), so the broker is asked only after a rebalance or a seek, not
    /// once a batch.
    public static func unverified(in batch: [KafkaMessage], expected: [KafkaTopicPartition: Int64]) -> Set<KafkaTopicPartition> {
        Set(Self.firstOffsets(batch).filter { expected[$0.key] != $0.value }.keys)
    }

    /// The partitions of `batch` whose first message lies past the committed offset, with the offset to seek back
    /// to. A partition without a committed offset (nothing processed yet, or not asked) has no gap.
    public static func gaps(in batch: [KafkaMessage], committed: [KafkaTopicPartition: Int64?]) -> [KafkaTopicPartition: Int64] {
        var out: [KafkaTopicPartition: Int64] = [:]
        for (tp, offset) in Self.firstOffsets(batch) {
            if case let committed?? = committed[tp], offset > committed { out[tp] = committed }
        }
        return out
    }

    /// The lowest offset of each partition in `batch`.
    static func firstOffsets(_ batch: [KafkaMessage]) -> [KafkaTopicPartition: Int64] {
        var first: [KafkaTopicPartition: Int64] = [:]
        for message in batch where first[message.topicPartition].map({ message.offset < $0 }) ?? true { first[message.topicPartition] = message.offset }
        return first
    }
}
