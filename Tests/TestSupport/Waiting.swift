import Kafka
import Logging

public struct TimedOut: Error, CustomStringConvertible {
    public let description: String
}

/// Runs `body`, failing if it takes longer than `limit` (a guard against hangs, not a timing assertion).
public func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(description: "timed out: \(what)") }
        return value
    }
}

/// Reads batches until `count` messages arrived.
public func collect(_ consumer: KafkaConsumer, count: Int) async throws -> [KafkaMessage] {
    var out: [KafkaMessage] = []
    for try await batch in consumer.batches() {
        out += batch
        if out.count >= count { break }
    }
    return out
}

/// Reads a whole topic from the beginning with a fresh group until `count` messages arrived (or `limit` passed).
public func readTopic(_ topic: String, count: Int, limit: Duration = .seconds(60)) async throws -> [KafkaMessage] {
    try await withFreshReader(topic) { consumer in
        try await within(limit, "\(count) messages on \(topic)") { try await collect(consumer, count: count) }
    }
}

/// Runs `body` with a consumer of `topic` in a group of its own (so it reads from the beginning), closed after.
func withFreshReader<T: Sendable>(_ topic: String, _ body: (KafkaConsumer) async throws -> T) async throws -> T {
    var logger = Logger(label: "test-reader")
    logger.logLevel = .warning
    let consumer = try KafkaConsumer(
        configuration: KafkaConsumerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers(), clientID: "test-reader"), groupID: TestEnvironment.unique("reader")),
        logger: logger)
    try consumer.subscribe(topics: [topic])
    do {
        let result = try await body(consumer)
        await consumer.close()
        return result
    } catch {
        await consumer.close()
        throw error
    }
}

/// Checks `condition` every `interval` until it holds, failing after `limit`: for states that change with time and
/// send no event (a cache entry expiring), where there is nothing to await.
public func eventually(_ limit: Duration, _ what: String, interval: Duration = .milliseconds(100), _ condition: @escaping @Sendable () async throws -> Bool) async throws {
    try await within(limit, what) {
        while try await !condition() { try await Task.sleep(for: interval) }
    }
}

/// Reads `topic` from the beginning with a fresh group until a message satisfies `matches` (or `limit` passed).
public func firstMessage(on topic: String, limit: Duration = .seconds(60), matching matches: @escaping @Sendable (KafkaMessage) -> Bool) async throws -> KafkaMessage {
    try await withFreshReader(topic) { consumer in
        try await within(limit, "a matching message on \(topic)") { () async throws -> KafkaMessage in
            for try await batch in consumer.batches() {
                if let message = batch.first(where: matches) { return message }
            }
            throw TimedOut(description: "the consumer of \(topic) ended")
        }
    }
}
