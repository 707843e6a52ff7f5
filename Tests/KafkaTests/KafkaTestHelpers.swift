import Kafka
import Logging
import Synchronization
import TestSupport

let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests")
    logger.logLevel = .warning
    return logger
}()

func makeProducer(lingerMs: Int = 5) throws -> KafkaProducer {
    var config = KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers(), clientID: "kafka-tests"))
    config.lingerMilliseconds = lingerMs
    return try KafkaProducer(configuration: config, logger: testLogger)
}

func makeConsumer(group: String, handler: (any KafkaRebalanceHandler)? = nil, brokers: String? = nil) throws -> KafkaConsumer {
    let config = KafkaConsumerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try brokers ?? TestEnvironment.kafkaBrokers(), clientID: "kafka-tests"), groupID: group)
    return try KafkaConsumer(configuration: config, rebalanceHandler: handler, logger: testLogger)
}

/// A new topic holding `count` messages, values "0", "1", ..., keyed over `keys` keys.
func producedTopic(_ prefix: String, partitions: Int, count: Int, keys: Int) async throws -> String {
    let topic = TestEnvironment.unique(prefix)
    try MockBrokerControl.createTopic(topic, partitions: partitions)
    let producer = try makeProducer()
    try await producer.sendAll((0..<count).map { i in
        KafkaProducerMessage(topic: topic, key: Array("k\(i % keys)".utf8), value: Array("\(i)".utf8))
    })
    await producer.shutdown()
    return topic
}

/// The sizes of the batches a new member of a new group reads from `topic` (with `batches`) until it holds `count`
/// messages; throws if that takes longer than `limit`.
func batchSizes(_ topic: String, count: Int, within limit: Duration, _ batches: @escaping @Sendable (KafkaConsumer) -> KafkaMessageBatches) async throws -> [Int] {
    let consumer = try makeConsumer(group: TestEnvironment.unique("g"))
    try consumer.subscribe(topics: [topic])
    let sizes = try await within(limit, "\(count) messages from \(topic)") {
        var sizes: [Int] = []
        for try await batch in batches(consumer) {
            sizes.append(batch.count)
            if sizes.reduce(0, +) >= count { break }
        }
        return sizes
    }
    await consumer.close()
    return sizes
}

/// Records assignments and lets a test await a state of them.
final class RecordingRebalanceHandler: KafkaRebalanceHandler {
    private let state = Mutex<(assigned: Set<KafkaTopicPartition>, waiters: [(@Sendable (Set<KafkaTopicPartition>) -> Bool, CheckedContinuation<Void, Never>)])>(([], []))
    let starts: [KafkaTopicPartition: KafkaOffset]

    init(starts: [KafkaTopicPartition: KafkaOffset] = [:]) { self.starts = starts }

    private let assignments = Atomic<Int>(0)

    var assigned: Set<KafkaTopicPartition> { self.state.withLock { $0.assigned } }
    /// Whether any assignment, even an empty one, has been handed to the member.
    var everAssigned: Bool { self.assignments.load(ordering: .relaxed) > 0 }

    func partitionsAssigned(_ partitions: [KafkaTopicPartition]) async throws -> [KafkaTopicPartition: KafkaOffset] {
        self.assignments.add(1, ordering: .relaxed)
        self.update { $0.formUnion(partitions) }
        return self.starts
    }

    func partitionsRevoked(_ partitions: [KafkaTopicPartition], lost: Bool) async {
        self.update { $0.subtract(partitions) }
    }

    /// Returns once the assignment satisfies `condition`.
    func waitUntil(_ condition: @escaping @Sendable (Set<KafkaTopicPartition>) -> Bool) async {
        await withCheckedContinuation { continuation in
            let ready = self.state.withLock { state -> Bool in
                if condition(state.assigned) { return true }
                state.waiters.append((condition, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    private func update(_ change: (inout Set<KafkaTopicPartition>) -> Void) {
        let ready = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state.assigned)
            let current = state.assigned
            let (done, pending) = (state.waiters.filter { $0.0(current) }, state.waiters.filter { !$0.0(current) })
            state.waiters = pending
            return done.map(\.1)
        }
        for continuation in ready { continuation.resume() }
    }
}
