import Events
import Foundation
import Kafka
import Logging
import Postgres
import ServiceKit
import Testing
import TestSupport

@Suite("Notifications end to end", .serialized, .timeLimit(.minutes(3)))
struct NotificationEndToEndTests {
    @Test("an anomaly on llm.anomalies.v1 reaches a webhook through the query service; SIGKILLed mid-delivery, the next replica delivers it again once, same webhook-id")
    func killedMidDelivery() async throws {
        let run = TestEnvironment.unique("ntf")
        // A database of its own: the outbox is shared by every deliverer of a database, and the in-process
        // notification tests running beside this one must neither take its rows nor have theirs taken.
        let url = try TestEnvironment.postgresURL()
        let database = run.replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: "notification-e2e"))
        try await admin.query("CREATE DATABASE \(identifier: database)")
        let ownURL = "\(url[..<url.lastIndex(of: "/")!])/\(database)"
        let env = try TestEnvironment.pipelineEnvironment(run: run, extra: [
            "TW_POSTGRES_URL": ownURL,
            "TW_WEBHOOK_ALLOW_HTTP": "true", "TW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "TW_NOTIFICATION_LEASE": "3s", "TW_NOTIFICATION_DELIVERY": "true",
            // Like the in-process notification tests beside it, so any of their rows it takes is delivered right.
            "TW_WEBHOOK_CA_FILE": try TestEnvironment.require("TW_TEST_TLS_CA_FILE"),
        ])
        let logger = Logger(label: "notification-e2e")
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: ownURL), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        // The receiver holds its first answer long enough for the query service to be killed while waiting for it.
        let secret = "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let receiver = try await WebhookReceiver(secret: secret, extra: ["--hang-first", "30"])
        let tenant = "\(run)-t"
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'T')")
        try await postgres.query("""
            INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity)
            VALUES (\("ch_" + run.replacingOccurrences(of: "-", with: "_")), \(tenant), 'ops', 'webhook', \("http://127.0.0.1:\(receiver.port)/hook"), \(secret), 'warning')
            """)

        var query = try ServiceProcess("query", environment: env)
        try await query.waitUntilReady()
        let anomaly = """
            {"tenant_id":"\(tenant)","anomaly_id":"e2e1","provider":"openai","model":"gpt-4o","metric":"latency_p95","window_start":"2026-11-29T10:00:00Z",\
            "window_end":"2026-11-29T10:03:00Z","status":"ongoing","severity":"critical","score":3.2,"revision":1,"explanation":"The p95 latency of openai/gpt-4o was 3,100 ms."}
            """
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
        try await producer.sendAll([KafkaProducerMessage(topic: "\(run)-anomalies", key: Array(tenant.utf8), value: Array(anomaly.utf8))])
        let sent = ContinuousClock.now

        try await eventually(.seconds(30), "the first delivery reaches the receiver") { receiver.deliveries.count >= 1 }
        print("first delivery \(ContinuousClock.now - sent) after the anomaly was published")
        kill(query.pid, SIGKILL)
        _ = query.waitForExit()

        query = try ServiceProcess("query", environment: env)
        try await query.waitUntilReady()
        try await eventually(.seconds(60), "delivered again after the lease") { receiver.deliveries.count >= 2 }
        let got = receiver.deliveries
        #expect(got.count == 2, "one delivery before the kill, one after: \(got)")
        #expect(Set(got.compactMap { $0["id"] as? String }) == ["e2e1-r1"] && got.allSatisfy { $0["valid"] as? Bool == true })
        try await eventually(.seconds(10), "the outbox says delivered") {
            let row = try await postgres.query("SELECT delivered_at IS NOT NULL AS ok, attempts FROM notification_outbox WHERE tenant_id = \(tenant)")
            return try row.first?.decode("ok", as: Bool.self) == true
        }
        let status = try query.stop()
        #expect(status == 0, "the query service exits cleanly on SIGTERM:\n\(query.crashReport)")
        receiver.process.stop()
        await producer.shutdown()
        await postgres.close()
        try await admin.query("DROP DATABASE \(identifier: database) WITH (FORCE)")
        await admin.close()
    }
}
