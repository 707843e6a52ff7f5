import Events
import IngestorCore
import Kafka
import Logging
import Postgres
import Redis
import ServiceKit
import Synchronization

/// The ingestor: llm.events.raw.v1 -> validated, normalized, deduplicated, priced events on llm.events.v1, rejects on
/// llm.events.dlq.v1; source offsets committed only after every output of a batch is acknowledged.
@main
struct IngestorMain {
    static func main() async {
        await ServiceRunner.main(service: "ingestor", defaultPort: 8081) { runtime in
            let settings = try IngestorSettings()
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            let producer = try runtime.makeProducer()
            let consumer = try runtime.makeConsumer(group: runtime.configuration.consumerGroup)
            let tenants = TenantRegistry(postgres: postgres)
            try await tenants.reload()
            let pipeline = IngestPipeline(
                configuration: .init(topics: runtime.configuration.topics), producer: producer,
                deduplicator: Deduplicator(redis: redis, ttlSeconds: Int(settings.dedupeTTL.components.seconds)),
                prices: try await PriceTable.load(from: postgres), tenants: tenants,
                dimensions: DimensionRegistry(postgres: postgres, cap: settings.dimensionCap), logger: runtime.logger)
            let logger = runtime.logger
            // Per partition, the offset after the last message this member processed (or sought back to).
            let expected = Mutex<[KafkaTopicPartition: Int64]>([:])
            let loop = ConsumerService(consumer: consumer, topics: [runtime.configuration.topics.raw], logger: logger, batchSize: settings.batchSize) { fetched in
                // A stale fetch (see `FetchGap`): that partition's messages are dropped and it is read again from the
                // committed offset, unless retention deleted what lies in between. Without the committed offsets
                // (the broker busy with a rebalance) the batch goes on as it is.
                var batch = fetched
                let unverified = FetchGap.unverified(in: fetched, expected: expected.withLock { $0 })
                let committed = unverified.isEmpty ? [:] : ((try? await consumer.committed(Array(unverified))) ?? [:])
                // Only the unverified partitions were asked for: the others have no committed offset here, so no gap.
                var gaps = FetchGap.gaps(in: fetched, committed: committed)
                for (tp, offset) in gaps {
                    if let low = try? await consumer.lowWatermark(tp), low > offset {
                        logger.error("Raw events deleted by retention before they were ingested", metadata: ["kafka.partition": "\(tp)", "from": "\(offset)", "to": "\(low)"])
                        gaps[tp] = nil
                    }
                }
                if !gaps.isEmpty {
                    logger.warning("Stale fetch: reading partitions again from their committed offsets", metadata: ["kafka.partitions": "\(gaps.keys.sorted { $0.partition < $1.partition })"])
                    batch.removeAll { gaps[$0.topicPartition] != nil }
                    try await consumer.seek(gaps.mapValues { .offset($0) })
                    expected.withLock { for (tp, offset) in gaps { $0[tp] = offset } }
                }
                guard !batch.isEmpty else { return }
                let (_, commit) = try await pipeline.process(batch)
                expected.withLock { $0.merge(commit) { $1 } }
                do {
                    try await consumer.commit(commit)
                } catch {
                    // The outputs are acknowledged; a failed commit (a rebalance took the partition) only means the
                    // next owner replays them, which dedupe marks as replays and the aggregator skips.
                    logger.warning("Offset commit failed; the batch will be replayed", metadata: ["error": "\(error)"])
                }
            }
            return ServiceParts(
                services: [producer, priceRefresher(postgres: postgres, pipeline: pipeline, interval: settings.pricesRefresh, logger: logger), loop],
                readinessChecks: .dependencies(kafka: { await producer.brokersReachable() }, redis: redis, postgres: postgres))
        }
    }
}
