import Events
import Foundation
import Kafka
import Logging
import Notify
import Postgres
import QueryCore
import Redis
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Notifications: outbox and webhook delivery", .serialized, .timeLimit(.minutes(2)))
struct NotificationTests {
    let logger = Logger(label: "notification-tests")

    func setUp() throws -> (PostgresClient, QueryProjector, NotificationDelivery) {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: self.logger)
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: self.logger)
        var topics = Topics()
        topics.anomalies = "a"
        let projector = QueryProjector(readModel: ReadModel(redis: redis), postgres: postgres, topics: topics, logger: self.logger)
        // Loopback receivers need the operator's allowance, as any private address would.
        let delivery = NotificationDelivery(postgres: postgres, policy: EgressPolicy(allowHTTP: true, allowedNetworks: [Network("127.0.0.0/8")!]),
                                            client: try WebhookClient(timeout: .seconds(5)), logger: self.logger)
        return (postgres, projector, delivery)
    }

    func anomaly(tenant: String, id: String, revision: Int, status: String = "ongoing", severity: String = "warning") -> KafkaMessage {
        let json = """
            {"tenant_id":"\(tenant)","anomaly_id":"\(id)","provider":"openai","model":"gpt-4o","metric":"error_rate","window_start":"2026-11-29T10:00:00Z",\
            "window_end":"2026-11-29T10:05:00Z","status":"\(status)","severity":"\(severity)","score":2.5,"revision":\(revision),"explanation":"Error burst."}
            """
        return KafkaMessage(topic: "a", partition: 0, offset: Int64(revision), key: Array(tenant.utf8), value: Array(json.utf8))
    }

    func channel(_ postgres: PostgresClient, tenant: String, port: Int, secret: String, minSeverity: String = "warning") async throws -> String {
        let id = "ch_" + TestEnvironment.unique("c").replacingOccurrences(of: "-", with: "_")
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'T') ON CONFLICT DO NOTHING")
        try await postgres.query("""
            INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity)
            VALUES (\(id), \(tenant), 'ops', 'webhook', \("http://127.0.0.1:\(port)/hooks/tokenwatch"), \(secret), \(minSeverity))
            """)
        return id
    }

    struct World {
        let postgres: PostgresClient, projector: QueryProjector, delivery: NotificationDelivery
        let secret: String, receiver: WebhookReceiver, tenant: String, channelID: String
    }

    /// A migrated database, a receiver (with `extra` arguments), a tenant and its channel to the receiver.
    func world(_ extra: [String] = []) async throws -> World {
        let (postgres, projector, delivery) = try self.setUp()
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let secret = StandardWebhooks.newSecret()
        let receiver = try await WebhookReceiver(secret: secret, extra: extra)
        let tenant = TestEnvironment.unique("nt")
        let channelID = try await self.channel(postgres, tenant: tenant, port: receiver.port, secret: secret)
        return World(postgres: postgres, projector: projector, delivery: delivery, secret: secret, receiver: receiver, tenant: tenant, channelID: channelID)
    }

    /// Runs delivery passes until `done` (each pass takes what is due).
    func deliver(_ delivery: NotificationDelivery, until what: String, _ done: @escaping @Sendable () -> Bool) async throws {
        try await eventually(.seconds(30), what, interval: .milliseconds(50)) {
            _ = try await delivery.deliverDue()
            return done()
        }
    }

    @Test("one signed delivery per anomaly revision, however often the batch is replayed; below the channel's severity nothing")
    func oncePerRevision() async throws {
        let w = try await self.world()
        let (postgres, projector, delivery, _, receiver, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.secret, w.receiver, w.tenant, w.channelID)
        let first = self.anomaly(tenant: tenant, id: "an1", revision: 1), resolved = self.anomaly(tenant: tenant, id: "an1", revision: 2, status: "resolved")
        try await projector.process([first, resolved, self.anomaly(tenant: tenant, id: "an2", revision: 1, severity: "info")])
        try await projector.process([first, resolved])  // a replayed batch
        try await self.deliver(delivery, until: "both revisions delivered") { receiver.deliveries.count >= 2 }
        // Nothing else comes (a few more passes).
        for _ in 0..<5 { _ = try await delivery.deliverDue() }
        let got = receiver.deliveries
        #expect(got.count == 2, "\(got)")
        #expect(got.allSatisfy { $0["valid"] as? Bool == true }, "signatures verify with the receiver's own HMAC")
        #expect(Set(got.compactMap { $0["id"] as? String }) == ["an1-r1", "an1-r2"])
        #expect(Set(got.compactMap { ($0["body"] as? [String: Any])?["type"] as? String }) == ["anomaly.ongoing", "anomaly.resolved"])
        #expect(got.allSatisfy { $0["path"] as? String == "/hooks/tokenwatch" && ($0["host"] as? String)?.hasPrefix("127.0.0.1:") == true })
        let rows = try await postgres.query("SELECT count(*)::bigint AS n, count(delivered_at)::bigint AS d FROM notification_outbox WHERE channel_id = \(channelID)")
        #expect(try rows[0].decode("n", as: Int64.self) == 2 && rows[0].decode("d", as: Int64.self) == 2)
        receiver.process.stop()
        await postgres.close()
    }

    @Test("a receiver failing three times gets the message on the fourth attempt, same webhook-id; a 4xx fails for good; the log says so")
    func retries() async throws {
        let w = try await self.world(["--fail-first", "3"])
        let (postgres, projector, delivery, secret, flaky, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.secret, w.receiver, w.tenant, w.channelID)
        try await projector.process([self.anomaly(tenant: tenant, id: "an3", revision: 1)])
        // Backoff is seconds long; the test moves each retry's time to now rather than waiting it out.
        try await eventually(.seconds(30), "delivered after retries", interval: .milliseconds(50)) {
            _ = try await delivery.deliverDue()
            try await postgres.query("UPDATE notification_outbox SET next_attempt_at = now() WHERE channel_id = \(channelID) AND delivered_at IS NULL AND failed_at IS NULL")
            return flaky.deliveries.contains { $0["status"] as? Int == 204 }
        }
        let got = flaky.deliveries
        #expect(got.map { $0["status"] as? Int } == [500, 500, 500, 204])
        #expect(Set(got.compactMap { $0["id"] as? String }) == ["an3-r1"] && got.allSatisfy { $0["valid"] as? Bool == true })
        let row = try await postgres.query("SELECT attempts, last_status, delivered_at IS NOT NULL AS ok FROM notification_outbox WHERE channel_id = \(channelID)")[0]
        #expect(try row.decode("attempts", as: Int32.self) == 4 && row.decode("last_status", as: Int32.self) == 204 && row.decode("ok", as: Bool.self))

        let gone = try await WebhookReceiver(secret: secret, extra: ["--status", "410"])
        let goneChannel = try await self.channel(postgres, tenant: tenant, port: gone.port, secret: secret)
        try await projector.process([self.anomaly(tenant: tenant, id: "an4", revision: 1)])
        try await self.deliver(delivery, until: "the 410 recorded") { gone.deliveries.count >= 1 }
        for _ in 0..<3 { _ = try await delivery.deliverDue() }
        let failed = try await postgres.query("SELECT attempts, last_status, failed_at IS NOT NULL AS failed FROM notification_outbox WHERE channel_id = \(goneChannel)")[0]
        #expect(try failed.decode("attempts", as: Int32.self) == 1 && failed.decode("last_status", as: Int32.self) == 410 && failed.decode("failed", as: Bool.self))
        #expect(gone.deliveries.count == 1)
        flaky.process.stop()
        gone.process.stop()
        await postgres.close()
    }

    @Test("a claim whose deliverer died (its lease) is taken again when the lease runs out: delivered once, never in parallel")
    func lease() async throws {
        let w = try await self.world()
        let (postgres, projector, delivery, _, receiver, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.secret, w.receiver, w.tenant, w.channelID)
        try await projector.process([self.anomaly(tenant: tenant, id: "an5", revision: 1)])
        // Another replica claimed the row and was SIGKILLed before answering: its lease holds the row for a minute.
        try await postgres.query("UPDATE notification_outbox SET attempts = 1, next_attempt_at = now() + interval '60 seconds' WHERE channel_id = \(channelID)")
        for _ in 0..<5 { _ = try await delivery.deliverDue() }
        #expect(receiver.deliveries.isEmpty, "not while another holds the lease")
        // The minute passes (moved, not waited for): the next pass takes the row.
        try await postgres.query("UPDATE notification_outbox SET next_attempt_at = now() WHERE channel_id = \(channelID)")
        try await self.deliver(delivery, until: "delivered after the lease") { receiver.deliveries.count >= 1 }
        for _ in 0..<3 { _ = try await delivery.deliverDue() }
        #expect(receiver.deliveries.count == 1 && receiver.deliveries[0]["valid"] as? Bool == true)
        receiver.process.stop()
        await postgres.close()
    }
}

extension NotificationTests {
    @Test("over HTTPS to a name: the receiver's certificate is verified (trusted through TW_WEBHOOK_CA_FILE); an untrusted one is not delivered to")
    func https() async throws {
        let (postgres, projector, _) = try self.setUp()
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let ca = try TestEnvironment.require("TW_TEST_TLS_CA_FILE")
        let secret = StandardWebhooks.newSecret()
        let receiver = try await WebhookReceiver(secret: secret, extra: ["--tls", try TestEnvironment.require("TW_TEST_TLS_CERT_FILE"), try TestEnvironment.require("TW_TEST_TLS_KEY_FILE")])
        let tenant = TestEnvironment.unique("nt")
        let channelID = try await self.channel(postgres, tenant: tenant, port: receiver.port, secret: secret)
        try await postgres.query("UPDATE notification_channels SET url = \("https://localhost:\(receiver.port)/hooks/tokenwatch") WHERE channel_id = \(channelID)")
        try await projector.process([self.anomaly(tenant: tenant, id: "an6", revision: 1)])
        let policy = EgressPolicy(allowedNetworks: [Network("127.0.0.0/8")!, Network("::1/128")!])

        // Without the CA: the handshake fails and nothing reaches the receiver.
        let target = try policy.parse("https://localhost:\(receiver.port)/hooks/tokenwatch")
        await #expect(throws: WebhookClient.Failure.self) {
            _ = try await WebhookClient(timeout: .seconds(5)).post(target, addresses: try await policy.resolve(target), headers: [], body: Array("{}".utf8))
        }
        #expect(receiver.deliveries.isEmpty)

        let trusting = NotificationDelivery(postgres: postgres, policy: policy, client: try WebhookClient(extraCA: ca, timeout: .seconds(5)), logger: self.logger)
        try await self.deliver(trusting, until: "delivered over TLS") { receiver.deliveries.count >= 1 }
        #expect(receiver.deliveries[0]["valid"] as? Bool == true && (receiver.deliveries[0]["host"] as? String)?.hasPrefix("localhost:") == true)
        receiver.process.stop()
        await postgres.close()
    }
}
