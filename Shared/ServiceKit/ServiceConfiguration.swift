import Events
import Kafka
import Logging
import Redis

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
    /// `TW_MANAGEMENT_PORT`: a second listener for `/healthz`, `/readyz`, `/healthz/dependencies` and `/metrics`,
    /// which then leave the API port (Kubernetes: 9090, reachable from the monitoring namespace and the kubelet only).
    /// Unset (the default): they are served on `TW_HTTP_PORT`. `TW_MANAGEMENT_HOST` (default `TW_HTTP_HOST`).
    public var managementPort: Int?
    public var managementHost = "127.0.0.1"
    /// `TW_LOG_LEVEL`: trace, debug, info, notice, warning, error, critical. Default: `info`.
    public var logLevel: Logger.Level = .info
    /// `TW_LOG_FORMAT`: `text` or `json` (one JSON object per line). Default: `text`.
    public var logFormat = "text"
    /// `TW_KAFKA_BROKERS`, `TW_KAFKA_PROPERTIES` (extra librdkafka properties, `k=v,k=v`), and the security settings
    /// `TW_KAFKA_SECURITY_PROTOCOL` (plaintext, ssl, sasl_plaintext, sasl_ssl), `TW_KAFKA_SSL_CA_FILE`,
    /// `TW_KAFKA_SSL_CERT_FILE`, `TW_KAFKA_SSL_KEY_FILE`, `TW_KAFKA_SASL_MECHANISM` (PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512), `TW_KAFKA_SASL_USERNAME`, `TW_KAFKA_SASL_PASSWORD`. Default: `127.0.0.1:9092`, plaintext.
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
    /// `TW_MIGRATIONS`: `apply` (default: migrate at start under an advisory lock, one replica at a time), `wait`
    /// (never migrate: wait until the schema holds every migration this build knows, for a runtime role without
    /// DDL; a Job or `only` migrates), or `only` (migrate, then exit 0: the migration Job, with the DDL credential).
    public var migrations = MigrationMode.apply
    /// `TW_MIGRATIONS_LOCK_TIMEOUT`: how long `apply` and `only` wait for the migration lock (or any lock a migration
    /// needs) before failing, instead of hanging behind a stuck session. Default: 60s.
    public var migrationLockTimeout: Duration = .seconds(60)
    /// `TW_MIGRATIONS_WAIT`: how long `wait` waits for the schema before the service gives up. Default: 10m.
    public var migrationWait: Duration = .seconds(600)
    /// `TW_REDIS_URL`: `redis://[:password@]host:port[/db]`, or `rediss://` for TLS. Default: `redis://127.0.0.1:6379`.
    public var redisURL = "redis://127.0.0.1:6379"
    /// `TW_REDIS_TLS_CA_FILE` (default: the system's CAs), `TW_REDIS_TLS_CERT_FILE` and `TW_REDIS_TLS_KEY_FILE` (mutual
    /// TLS), `TW_REDIS_TLS_SERVER_NAME` (default: the URL's host), for `rediss://`. Default: unset.
    public var redisTLS = RedisTLSConfiguration()
    /// `TW_REDIS_POOL_SIZE`. Default: 8.
    public var redisPoolSize = 8
    /// `TW_SHUTDOWN_TIMEOUT`: how long graceful shutdown may take before work is cancelled; keep it below the
    /// pod's terminationGracePeriodSeconds. Default: 25s.
    public var shutdownTimeout: Duration = .seconds(25)

    /// librdkafka security properties from the TW_KAFKA_* security variables. Values are never echoed in errors.
    static func kafkaSecurity(_ e: Environment) throws(ConfigurationError) -> [String: String] {
        var out: [String: String] = [:]
        let protocolName = try e.choice("TW_KAFKA_SECURITY_PROTOCOL", default: "plaintext", allowed: ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])
        out["security.protocol"] = protocolName
        if let ca = try e.readableFile("TW_KAFKA_SSL_CA_FILE") { out["ssl.ca.location"] = ca }
        if let certificate = try e.readableFile("TW_KAFKA_SSL_CERT_FILE") { out["ssl.certificate.location"] = certificate }
        if let key = try e.readableFile("TW_KAFKA_SSL_KEY_FILE") { out["ssl.key.location"] = key }
        if protocolName.hasPrefix("sasl") {
            let mechanism = e.raw("TW_KAFKA_SASL_MECHANISM")?.uppercased() ?? "PLAIN"
            guard ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(mechanism) else {
                throw ConfigurationError(key: "TW_KAFKA_SASL_MECHANISM", reason: "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            }
            out["sasl.mechanisms"] = mechanism
            out["sasl.username"] = try e.requiredString("TW_KAFKA_SASL_USERNAME")
            out["sasl.password"] = try e.requiredString("TW_KAFKA_SASL_PASSWORD")
        }
        return out
    }

    /// This service's consumer group.
    public var consumerGroup: String { "\(self.groupPrefix)-\(self.serviceName)" }

    public init(serviceName: String, defaultPort: Int, environment: Environment = Environment()) throws(ConfigurationError) {
        let e = environment
        self.serviceName = serviceName
        self.httpHost = e.string("TW_HTTP_HOST", default: self.httpHost)
        self.httpPort = try e.int("TW_HTTP_PORT", default: defaultPort, in: 1...65535)
        if e.raw("TW_MANAGEMENT_PORT") != nil {
            let port = try e.int("TW_MANAGEMENT_PORT", default: 0, in: 1...65535)
            guard port != self.httpPort else { throw ConfigurationError(key: "TW_MANAGEMENT_PORT", reason: "must differ from TW_HTTP_PORT (\(self.httpPort))") }
            self.managementPort = port
        }
        self.managementHost = e.string("TW_MANAGEMENT_HOST", default: self.httpHost)
        let level = try e.choice("TW_LOG_LEVEL", default: "info", allowed: Logger.Level.allCases.map(\.rawValue))
        self.logLevel = Logger.Level(rawValue: level)!
        self.logFormat = try e.choice("TW_LOG_FORMAT", default: "text", allowed: ["text", "json"])
        self.kafka = KafkaClientConfiguration(
            bootstrapServers: e.string("TW_KAFKA_BROKERS", default: "127.0.0.1:9092"),
            clientID: "tokenwatch-\(serviceName)",
            properties: try Self.kafkaSecurity(e).merging(try e.properties("TW_KAFKA_PROPERTIES")) { _, explicit in explicit })
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
        self.migrations = MigrationMode(rawValue: try e.choice("TW_MIGRATIONS", default: "apply", allowed: MigrationMode.allCases.map(\.rawValue)))!
        self.migrationLockTimeout = try e.duration("TW_MIGRATIONS_LOCK_TIMEOUT", default: self.migrationLockTimeout, in: .seconds(1) ... .seconds(3600))
        self.migrationWait = try e.duration("TW_MIGRATIONS_WAIT", default: self.migrationWait, in: .seconds(1) ... .seconds(86_400))
        self.redisURL = e.string("TW_REDIS_URL", default: self.redisURL)
        guard self.redisURL.hasPrefix("redis://") || self.redisURL.hasPrefix("rediss://") else {
            throw ConfigurationError(key: "TW_REDIS_URL", reason: "expected a redis:// or rediss:// URL")
        }
        self.redisTLS = RedisTLSConfiguration(
            caFile: try e.readableFile("TW_REDIS_TLS_CA_FILE"), certificateFile: try e.readableFile("TW_REDIS_TLS_CERT_FILE"),
            keyFile: try e.readableFile("TW_REDIS_TLS_KEY_FILE"), serverName: e.raw("TW_REDIS_TLS_SERVER_NAME"))
        guard (self.redisTLS.certificateFile == nil) == (self.redisTLS.keyFile == nil) else {
            throw ConfigurationError(key: "TW_REDIS_TLS_CERT_FILE", reason: "set TW_REDIS_TLS_CERT_FILE and TW_REDIS_TLS_KEY_FILE together")
        }
        self.redisPoolSize = try e.int("TW_REDIS_POOL_SIZE", default: 8, in: 1...200)
        self.shutdownTimeout = try e.duration("TW_SHUTDOWN_TIMEOUT", default: .seconds(25), in: .seconds(1) ... .seconds(600))
    }
}

/// Who applies the schema migrations (`TW_MIGRATIONS`).
public enum MigrationMode: String, Sendable, CaseIterable {
    case apply, wait, only
}
