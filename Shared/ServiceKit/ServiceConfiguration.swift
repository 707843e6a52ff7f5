import Events
import Kafka
import Logging

/// The settings every Tokenwatch service shares, read from environment variables (each key is listed in the
/// README's configuration table).
public struct ServiceConfiguration: Sendable {
    /// Service name, for logs, metrics and the Kafka client id.
    public var serviceName: String
    /// `TW_HTTP_HOST`: address of the HTTP listener (API and/or /healthz, /readyz, /metrics). Default: `127.0.0.1`
    /// (the Kubernetes manifests set `0.0.0.0`).
    public var httpHost = "127.0.0.1"
    /// `TW_HTTP_PORT`. Default: 8080 gateway, 8081 ingestor, 8082 aggregator, 8083 detector, 8084 query.
    public var httpPort: Int
    /// `TW_LOG_LEVEL`: trace, debug, info, notice, warning, error, critical. Default: `info`.
    public var logLevel: Logger.Level = .info
    /// `TW_LOG_FORMAT`: `text` or `json` (one JSON object per line). Default: `text`.
    public var logFormat = "text"
    /// `TW_KAFKA_BROKERS`, `TW_KAFKA_PROPERTIES` (extra librdkafka properties, `k=v,k=v`). Default: `127.0.0.1:9092`.
    public var kafka: KafkaClientConfiguration
    /// `TW_TOPIC_RAW`, `TW_TOPIC_EVENTS`, `TW_TOPIC_DLQ`, `TW_TOPIC_ROLLUPS`, `TW_TOPIC_ANOMALIES`. Defaults: DESIGN.md names.
    public var topics = Topics()
    /// `TW_GROUP_PREFIX`: consumer groups are `<prefix>-<service>`, so several deployments can share a cluster.
    /// Default: `tokenwatch`.
    public var groupPrefix = "tokenwatch"
    /// `TW_POSTGRES_URL`: libpq URI. Default: `postgresql://tokenwatch@127.0.0.1:5432/tokenwatch`.
    public var postgresURL = "postgresql://tokenwatch@127.0.0.1:5432/tokenwatch"
    /// `TW_POSTGRES_POOL_SIZE`. Default: 8.
    public var postgresPoolSize = 8
    /// `TW_REDIS_URL`: `redis://[:password@]host:port[/db]`. Default: `redis://127.0.0.1:6379`.
    public var redisURL = "redis://127.0.0.1:6379"
    /// `TW_REDIS_POOL_SIZE`. Default: 8.
    public var redisPoolSize = 8
    /// `TW_SHUTDOWN_TIMEOUT`: how long graceful shutdown may take before work is cancelled; keep it below the
    /// pod's terminationGracePeriodSeconds. Default: 25s.
    public var shutdownTimeout: Duration = .seconds(25)

    /// This service's consumer group.
    public var consumerGroup: String { "\(self.groupPrefix)-\(self.serviceName)" }

    public init(serviceName: String, defaultPort: Int, environment: Environment = Environment()) throws(ConfigurationError) {
        let e = environment
        self.serviceName = serviceName
        self.httpHost = e.string("TW_HTTP_HOST", default: self.httpHost)
        self.httpPort = try e.int("TW_HTTP_PORT", default: defaultPort, in: 1...65535)
        let level = try e.choice("TW_LOG_LEVEL", default: "info", allowed: Logger.Level.allCases.map(\.rawValue))
        self.logLevel = Logger.Level(rawValue: level)!
        self.logFormat = try e.choice("TW_LOG_FORMAT", default: "text", allowed: ["text", "json"])
        self.kafka = KafkaClientConfiguration(
            bootstrapServers: e.string("TW_KAFKA_BROKERS", default: "127.0.0.1:9092"),
            clientID: "tokenwatch-\(serviceName)",
            properties: try e.properties("TW_KAFKA_PROPERTIES"))
        self.topics.raw = e.string("TW_TOPIC_RAW", default: self.topics.raw)
        self.topics.events = e.string("TW_TOPIC_EVENTS", default: self.topics.events)
        self.topics.deadLetters = e.string("TW_TOPIC_DLQ", default: self.topics.deadLetters)
        self.topics.rollups = e.string("TW_TOPIC_ROLLUPS", default: self.topics.rollups)
        self.topics.anomalies = e.string("TW_TOPIC_ANOMALIES", default: self.topics.anomalies)
        self.groupPrefix = e.string("TW_GROUP_PREFIX", default: self.groupPrefix)
        self.postgresURL = e.string("TW_POSTGRES_URL", default: self.postgresURL)
        guard self.postgresURL.hasPrefix("postgresql://") || self.postgresURL.hasPrefix("postgres://") else {
            throw ConfigurationError(key: "TW_POSTGRES_URL", reason: "expected a postgresql:// URI")
        }
        self.postgresPoolSize = try e.int("TW_POSTGRES_POOL_SIZE", default: 8, in: 1...200)
        self.redisURL = e.string("TW_REDIS_URL", default: self.redisURL)
        guard self.redisURL.hasPrefix("redis://") else {
            throw ConfigurationError(key: "TW_REDIS_URL", reason: "expected a redis:// URL")
        }
        self.redisPoolSize = try e.int("TW_REDIS_POOL_SIZE", default: 8, in: 1...200)
        self.shutdownTimeout = try e.duration("TW_SHUTDOWN_TIMEOUT", default: .seconds(25), in: .seconds(1) ... .seconds(600))
    }
}
