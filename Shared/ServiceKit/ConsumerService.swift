import Kafka
import Logging
import Metrics
import Redis
import ServiceLifecycle

/// Runs a consumer-group loop as a `Service`: hands each batch to `process`, and on graceful shutdown stops taking
/// batches, lets the batch in hand finish, and leaves the group cleanly (the rebalance handler sees the revoke).
public struct ConsumerService: Service {
    public let consumer: KafkaConsumer
    public let topics: [String]
    public let logger: Logger
    public let process: @Sendable ([KafkaMessage]) async throws -> Void
    public let batchSize: Int
    public let includeEmpty: Bool
    /// `KafkaConsumer.batches(linger:)`: how long a consumer that is behind gathers polls into one batch.
    public let linger: Duration
    /// `KafkaConsumer.batches(quiet:)`: how long without a message ends a lingering batch (nil: a poll's timeout).
    public let quiet: Duration?
    private let consumed: Counter

    /// With `includeEmpty`, `process` is also called with an empty batch whenever a poll finds nothing (about every
    /// 100 ms), for periodic work.
    public init(consumer: KafkaConsumer, topics: [String], logger: Logger, batchSize: Int = 1000, includeEmpty: Bool = false, linger: Duration = .zero,
                quiet: Duration? = nil, process: @escaping @Sendable ([KafkaMessage]) async throws -> Void) {
        self.consumer = consumer
        self.topics = topics
        self.logger = logger
        self.batchSize = batchSize
        self.includeEmpty = includeEmpty
        self.linger = linger
        self.quiet = quiet
        self.process = process
        self.consumed = Counter(label: "tw_consumed_messages_total", dimensions: [("topic", topics.joined(separator: ","))])
    }

    public func run() async throws {
        try self.consumer.subscribe(topics: self.topics)
        let consumer = self.consumer
        let stream = consumer.batches(maxMessages: self.batchSize, includeEmpty: self.includeEmpty, linger: self.linger, quiet: self.quiet)
        do {
            // Cancellation only interrupts the wait for the next batch; a batch in `process` runs to its end
            // because the loop checks for shutdown between batches.
            // A batch that fails on a transient fault (Postgres or Redis restarting, a pool timeout, the broker
            // unreachable) is processed again, with backoff, rather than ending the service: every stage's work
            // on a batch is idempotent (DESIGN.md, Delivery), and offsets are only committed after it succeeds.
            for try await batch in stream.cancelOnGracefulShutdown() {
                try await TransientFaults.retrying("consume \(self.topics.joined(separator: ","))", logger: self.logger) {
                    try await self.process(batch)
                }
                self.consumed.increment(by: batch.count)
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }
}

/// The standard clients of a service, built from its configuration.
extension ServiceRuntime {
    public func makeProducer() throws -> KafkaProducer {
        try KafkaProducer(configuration: KafkaProducerConfiguration(client: self.configuration.kafka), logger: self.logger)
    }

    public func makeConsumer(group: String, rebalanceHandler: (any KafkaRebalanceHandler)? = nil) throws -> KafkaConsumer {
        try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: self.configuration.kafka, groupID: group), rebalanceHandler: rebalanceHandler, logger: self.logger)
    }

    public func makeRedis() throws -> RedisClient {
        var config = try RedisConfiguration(url: self.configuration.redisURL)
        config.maxConnections = self.configuration.redisPoolSize
        if config.tls != nil { config.tls = self.configuration.redisTLS }
        return RedisClient(configuration: config, logger: self.logger)
    }
}
