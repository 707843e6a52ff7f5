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
    var logger = Logger(label: "test-reader")
    logger.logLevel = .warning
    let consumer = try KafkaConsumer(
        configuration: KafkaConsumerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers(), clientID: "test-reader"), groupID: TestEnvironment.unique("reader")),
        logger: logger)
    try consumer.subscribe(topics: [topic])
    do {
        let messages = try await within(limit, "\(count) messages on \(topic)") { try await collect(consumer, count: count) }
        await consumer.close()
        return messages
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
