import Foundation

/// Addresses of the servers `make test` starts (deploy/stack.sh writes them to the state folder's stack.env and
/// the Makefile exports them). Integration tests fail, rather than skip, when one is missing: a skipped integration
/// test would let a broken setup pass.
public enum TestEnvironment {
    public struct Missing: Error, CustomStringConvertible {
        public let key: String
        public var description: String { "\(self.key) is not set; run the tests through `make test`, which starts the local stack" }
    }

    public static func require(_ key: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[key], !value.isEmpty else { throw Missing(key: key) }
        return value
    }

    public static func kafkaBrokers() throws -> String { try require("TW_KAFKA_BROKERS") }
    public static func postgresURL() throws -> String { try require("TW_POSTGRES_URL") }
    public static func redisURL() throws -> String { try require("TW_REDIS_URL") }

    /// A name no other test (or earlier run) uses.
    public static func unique(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

extension TestEnvironment {
    /// Topics of one test's own on the stack's broker (`partitions` each, 2 unless given), and the environment that
    /// points its services at them: `TW_TOPIC_*`, `TW_GROUP_PREFIX` = `run`, a 10 s shutdown budget, then `extra`.
    /// `topics` are short names: raw, events, dlq, rollups, anomalies.
    public static func pipelineEnvironment(
        run: String, topics: [String] = ["raw", "events", "dlq", "rollups", "anomalies"], partitions: [String: Int] = [:], extra: [String: String] = [:]
    ) throws -> [String: String] {
        let keys = ["raw": "TW_TOPIC_RAW", "events": "TW_TOPIC_EVENTS", "dlq": "TW_TOPIC_DLQ", "rollups": "TW_TOPIC_ROLLUPS", "anomalies": "TW_TOPIC_ANOMALIES"]
        var env = ["TW_GROUP_PREFIX": run, "TW_SHUTDOWN_TIMEOUT": "10s"]
        for topic in topics {
            guard let key = keys[topic] else { preconditionFailure("unknown topic \(topic)") }
            try MockBrokerControl.createTopic("\(run)-\(topic)", partitions: partitions[topic] ?? 2)
            env[key] = "\(run)-\(topic)"
        }
        return env.merging(extra) { _, new in new }
    }
}
