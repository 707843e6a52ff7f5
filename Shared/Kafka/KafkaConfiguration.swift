/// Settings shared by producers and consumers.
public struct KafkaClientConfiguration: Sendable {
    /// Comma-separated `host:port` list. Default: `127.0.0.1:9092`.
    public var bootstrapServers: String = "127.0.0.1:9092"
    /// `client.id` reported to the broker. Default: `tokenwatch`.
    public var clientID: String = "tokenwatch"
    /// Further librdkafka properties (`security.protocol`, `ssl.ca.location`, `sasl.*`, ...), applied last.
    /// Default: none.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String = "127.0.0.1:9092", clientID: String = "tokenwatch", properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.properties = properties
    }

    var baseProperties: [String: String] {
        ["bootstrap.servers": self.bootstrapServers, "client.id": self.clientID]
    }
}

/// Producer settings. The delivery promise of DESIGN.md needs the idempotent producer and `acks=all`; those two are
/// always set and cannot be overridden through `properties`.
public struct KafkaProducerConfiguration: Sendable {
    public var client: KafkaClientConfiguration
    /// `compression.codec`: none, gzip, snappy, lz4, zstd. Default: `lz4`.
    public var compression: String = "lz4"
    /// `linger.ms`: how long to wait to fill a batch. Default: 5.
    public var lingerMilliseconds: Int = 5
    /// `message.timeout.ms`: how long librdkafka retries a message before reporting it failed. Default: 30000.
    public var messageTimeoutMilliseconds: Int = 30_000
    /// `queue.buffering.max.messages`: local queue bound; a full queue applies backpressure. Default: 500000.
    public var maxQueuedMessages: Int = 500_000
    /// How long `shutdown()` waits for queued messages to be delivered. Default: 10 s.
    public var flushTimeout: Duration = .seconds(10)

    public init(client: KafkaClientConfiguration) {
        self.client = client
    }

    var properties: [String: String] {
        var p = self.client.baseProperties
        p["compression.codec"] = self.compression
        p["linger.ms"] = String(self.lingerMilliseconds)
        p["message.timeout.ms"] = String(self.messageTimeoutMilliseconds)
        p["queue.buffering.max.messages"] = String(self.maxQueuedMessages)
        // murmur2 keeps a key on the same partition as Java clients would put it, so producers written in other
        // languages and ours agree on which partition holds a tenant.
        p["partitioner"] = "murmur2_random"
        p.merge(self.client.properties) { _, new in new }
        p["enable.idempotence"] = "true"
        p["acks"] = "all"
        return p
    }
}

/// Consumer-group settings. Offsets are only ever committed explicitly.
public struct KafkaConsumerConfiguration: Sendable {
    public var client: KafkaClientConfiguration
    /// `group.id`. Required.
    public var groupID: String
    /// `auto.offset.reset` when the group has no committed offset: earliest or latest. Default: `earliest`.
    public var autoOffsetReset: String = "earliest"
    /// `session.timeout.ms`: how long a silent member keeps its partitions. Default: 6000 (quick failover).
    public var sessionTimeoutMilliseconds: Int = 6000
    /// `heartbeat.interval.ms`. Default: 1000.
    public var heartbeatIntervalMilliseconds: Int = 1000
    /// `max.poll.interval.ms`: the longest a batch may take to process. Default: 300000.
    public var maxPollIntervalMilliseconds: Int = 300_000
    /// `partition.assignment.strategy`. Default: `cooperative-sticky` (a rebalance moves only the partitions that
    /// change owner, so the others keep flowing).
    public var assignmentStrategy: String = "cooperative-sticky"
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch that finds nothing. Default: 100 (librdkafka's is
    /// 500). A broker answers as soon as data arrives, so on a real cluster this only sets how often an idle consumer
    /// asks (ten times a second instead of two). librdkafka's mock broker, which `make run` and the tests use, holds
    /// such a fetch the whole time even when data arrives: at 500 ms a lingering aggregator batch saw that as a
    /// pause longer than its quiet and was cut short (more batches, each rewriting its rows: `make bench`).
    public var fetchWaitMaxMilliseconds: Int = 100

    public init(client: KafkaClientConfiguration, groupID: String) {
        self.client = client
        self.groupID = groupID
    }

    var properties: [String: String] {
        var p = self.client.baseProperties
        p["group.id"] = self.groupID
        p["auto.offset.reset"] = self.autoOffsetReset
        p["session.timeout.ms"] = String(self.sessionTimeoutMilliseconds)
        p["heartbeat.interval.ms"] = String(self.heartbeatIntervalMilliseconds)
        p["max.poll.interval.ms"] = String(self.maxPollIntervalMilliseconds)
        p["partition.assignment.strategy"] = self.assignmentStrategy
        p["fetch.wait.max.ms"] = String(self.fetchWaitMaxMilliseconds)
        p.merge(self.client.properties) { _, new in new }
        // The caller decides what is done and commits it; nothing is committed or stored behind its back.
        p["enable.auto.commit"] = "false"
        p["enable.auto.offset.store"] = "false"
        p["enable.partition.eof"] = "false"
        return p
    }
}
