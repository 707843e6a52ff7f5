import AggregatorCore
import Events
import Kafka
import Logging
import Postgres
import ServiceKit
import Synchronization

/// The aggregator: llm.events.v1 -> 1-minute, hourly and daily rollups in Postgres, exactly once, and closed windows
/// on llm.rollups.v1.
@main
struct AggregatorMain {
    static func main() async {
        await ServiceRunner.main(service: "aggregator", defaultPort: 8082) { runtime in
            let settings = try AggregatorSettings(environment: Environment())
            let postgres = try await connectPostgres(runtime)
            let producer = try runtime.makeProducer()
            let states = PartitionStates()
            let consumer = try runtime.makeConsumer(group: runtime.configuration.consumerGroup, rebalanceHandler: AggregatorRebalanceHandler(postgres: postgres, states: states, logger: runtime.logger))
            let core = AggregatorCore(postgres: postgres, producer: producer, states: states, settings: settings, topics: runtime.configuration.topics, logger: runtime.logger,
                                      lowWatermark: { try await consumer.lowWatermark($0) })
            let emitter = RollupEmitter(core: core)
            let logger = runtime.logger
            let lastEmit = Mutex(ContinuousClock.now)
            let loop = ConsumerService(consumer: consumer, topics: [runtime.configuration.topics.events], logger: logger, batchSize: settings.batchSize, includeEmpty: true, linger: settings.linger, quiet: settings.quiet) { batch in
                if !batch.isEmpty {
                    let summary = try await core.process(batch)
                    if !summary.fenced.isEmpty {
                        var seeks: [KafkaTopicPartition: KafkaOffset] = [:]
                        for tp in summary.fenced { if let state = states[tp] { seeks[tp] = .offset(state.nextOffset) } }
                        try await consumer.seek(seeks)
                    }
                    // Kafka's committed offsets are informational here (lag metrics, autoscaling): Postgres holds the
                    // offsets the aggregator resumes from.
                    var commit: [KafkaTopicPartition: Int64] = [:]
                    for tp in Set(batch.map(\.topicPartition)) { if let state = states[tp] { commit[tp] = state.nextOffset } }
                    do { try await consumer.commit(commit) } catch {
                        logger.debug("Informational offset commit failed", metadata: ["error": "\(error)"])
                    }
                }
                let due = lastEmit.withLock { last -> Bool in
                    guard ContinuousClock.now - last >= .seconds(1) else { return false }
                    last = ContinuousClock.now
                    return true
                }
                if due { try await emitter.emit() }
            }
            return ServiceParts(
                services: [producer, loop],
                readinessChecks: .dependencies(kafka: { await producer.brokersReachable() }, postgres: postgres))
        }
    }
}
