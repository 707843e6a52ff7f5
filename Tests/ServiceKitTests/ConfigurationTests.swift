import Events
import Kafka
import Logging
import Redis
import ServiceKit
import Testing

@Suite("Configuration from the environment")
struct ConfigurationTests {
    @Test("defaults when nothing is set")
    func defaults() throws {
        let c = try ServiceConfiguration(serviceName: "ingestor", defaultPort: 8081, environment: Environment([:]))
        #expect(c.httpHost == "127.0.0.1" && c.httpPort == 8081)
        #expect(c.logLevel == .info && c.logFormat == "text")
        #expect(c.kafka.bootstrapServers == "127.0.0.1:9092" && c.kafka.clientID == "tokenwatch-ingestor")
        #expect(c.topics.raw == "llm.events.raw.v1" && c.topics.anomalies == "llm.anomalies.v1")
        #expect(c.postgresPoolSize == 8 && c.redisPoolSize == 8)
        #expect(c.shutdownTimeout == .seconds(25))
    }

    @Test("every key is read")
    func overrides() throws {
        let c = try ServiceConfiguration(serviceName: "gateway", defaultPort: 8080, environment: Environment([
            "TW_HTTP_HOST": "0.0.0.0", "TW_HTTP_PORT": "9000", "TW_LOG_LEVEL": "DEBUG", "TW_LOG_FORMAT": "json",
            "TW_KAFKA_BROKERS": "k1:9092,k2:9092", "TW_KAFKA_PROPERTIES": "security.protocol=ssl, ssl.ca.location=/ca.pem",
            "TW_TOPIC_RAW": "raw", "TW_TOPIC_EVENTS": "ev", "TW_TOPIC_DLQ": "dlq", "TW_TOPIC_ROLLUPS": "ro", "TW_TOPIC_ANOMALIES": "an",
            "TW_POSTGRES_URL": "postgresql://u@db/x", "TW_POSTGRES_POOL_SIZE": "20", "TW_REDIS_URL": "redis://cache:6380/2",
            "TW_REDIS_POOL_SIZE": "3", "TW_SHUTDOWN_TIMEOUT": "1500ms",
        ]))
        #expect(c.httpHost == "0.0.0.0" && c.httpPort == 9000 && c.logLevel == .debug && c.logFormat == "json")
        #expect(c.kafka.bootstrapServers == "k1:9092,k2:9092")
        #expect(c.kafka.properties == ["security.protocol": "ssl", "ssl.ca.location": "/ca.pem"])
        #expect([c.topics.raw, c.topics.events, c.topics.deadLetters, c.topics.rollups, c.topics.anomalies] == ["raw", "ev", "dlq", "ro", "an"])
        #expect(c.postgresURL == "postgresql://u@db/x" && c.postgresPoolSize == 20)
        #expect(c.redisURL == "redis://cache:6380/2" && c.redisPoolSize == 3)
        #expect(c.shutdownTimeout == .milliseconds(1500))
    }

    @Test("a bad value names the key and the rule", arguments: [
        ("TW_HTTP_PORT", "80a", "TW_HTTP_PORT: expected an integer in 1...65535, got '80a'"),
        ("TW_HTTP_PORT", "70000", "TW_HTTP_PORT: expected an integer in 1...65535, got '70000'"),
        ("TW_LOG_LEVEL", "loud", "TW_LOG_LEVEL: expected one of trace, debug, info, notice, warning, error, critical, got 'loud'"),
        ("TW_LOG_FORMAT", "xml", "TW_LOG_FORMAT: expected one of text, json, got 'xml'"),
        ("TW_POSTGRES_URL", "mysql://x", "TW_POSTGRES_URL: expected a postgresql:// URI"),
        ("TW_REDIS_URL", "http://x", "TW_REDIS_URL: expected a redis:// or rediss:// URL"),
        ("TW_POSTGRES_POOL_SIZE", "0", "TW_POSTGRES_POOL_SIZE: expected an integer in 1...200, got '0'"),
        ("TW_KAFKA_PROPERTIES", "novalue", "TW_KAFKA_PROPERTIES: expected key=value pairs separated by commas"),
        ("TW_SHUTDOWN_TIMEOUT", "soon", "TW_SHUTDOWN_TIMEOUT: expected a duration such as 500ms, 30s or 5m within 1.0 seconds...600.0 seconds, got 'soon'"),
    ])
    func badValues(key: String, value: String, message: String) {
        do {
            _ = try ServiceConfiguration(serviceName: "query", defaultPort: 8084, environment: Environment([key: value]))
            Issue.record("\(key)=\(value) was accepted")
        } catch {
            #expect(error.key == key)
            #expect(error.description == message)
        }
    }

    @Test("booleans and durations")
    func scalars() throws {
        let e = Environment(["A": "yes", "B": "0", "C": "maybe", "D": "2m", "E": "45"])
        #expect(try e.bool("A", default: false))
        #expect(try !e.bool("B", default: true))
        #expect(throws: ConfigurationError.self) { try e.bool("C", default: true) }
        #expect(try e.duration("D", default: .seconds(1), in: .seconds(0) ... .seconds(1000)) == .seconds(120))
        #expect(try e.duration("E", default: .seconds(1), in: .seconds(0) ... .seconds(1000)) == .seconds(45))
        #expect(try e.bool("MISSING", default: true))
        #expect(throws: ConfigurationError.self) { try e.requiredString("MISSING") }
    }

    @Test("Kafka TLS and SASL settings become librdkafka properties; a librdkafka client accepts them; errors never echo a secret")
    func kafkaSecurity() throws {
        let ca = "/etc/ssl/certs/ca-certificates.crt"
        let c = try ServiceConfiguration(serviceName: "ingestor", defaultPort: 8081, environment: Environment([
            "TW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TW_KAFKA_SSL_CA_FILE": ca, "TW_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "TW_KAFKA_SASL_USERNAME": "svc", "TW_KAFKA_SASL_PASSWORD": "s3cret-value",
        ]))
        #expect(c.kafka.properties["security.protocol"] == "sasl_ssl")
        #expect(c.kafka.properties["ssl.ca.location"] == ca)
        #expect(c.kafka.properties["sasl.mechanisms"] == "SCRAM-SHA-512")
        #expect(c.kafka.properties["sasl.username"] == "svc" && c.kafka.properties["sasl.password"] == "s3cret-value")
        // librdkafka (Debian's build has SSL and SASL) takes the configuration and loads the CA file.
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: c.kafka), logger: Logger(label: "config-test"))
        _ = producer

        #expect { try ServiceConfiguration(serviceName: "x", defaultPort: 1, environment: Environment(["TW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "TW_KAFKA_SASL_USERNAME": "svc"])) } throws: {
            "\($0)" == "TW_KAFKA_SASL_PASSWORD: is required"
        }
        #expect { try ServiceConfiguration(serviceName: "x", defaultPort: 1, environment: Environment(["TW_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"])) } throws: {
            "\($0)".hasPrefix("TW_KAFKA_SSL_CA_FILE: cannot read")
        }
        #expect { try ServiceConfiguration(serviceName: "x", defaultPort: 1, environment: Environment(["TW_KAFKA_SECURITY_PROTOCOL": "tls"])) } throws: {
            "\($0)".hasPrefix("TW_KAFKA_SECURITY_PROTOCOL: expected one of")
        }
        let tls = try ServiceConfiguration(serviceName: "x", defaultPort: 1, environment: Environment(["TW_REDIS_URL": "rediss://:pw@cache:6380", "TW_REDIS_TLS_CA_FILE": ca]))
        #expect(tls.redisTLS.caFile == ca)
    }
}
