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
                                            // The production deadline (10 s) and more: on a loaded machine a late answer would
                                            // be a retry, and these tests count deliveries.
                                            client: try WebhookClient(timeout: .seconds(30)), logger: self.logger)
        return (postgres, projector, delivery)
    }

    func anomaly(tenant: String, id: String, revision: Int, status: String = "ongoing", severity: String = "warning",
                 provider: String = "openai", model: String = "gpt-4o") -> KafkaMessage {
        let json = """
            {"tenant_id":"\(tenant)","anomaly_id":"\(id)","provider":"\(provider)","model":"\(model)","metric":"error_rate","window_start":"2026-11-29T10:00:00Z",\
            "window_end":"2026-11-29T10:05:00Z","status":"\(status)","severity":"\(severity)","score":2.5,"observed":0.368,"expected":0.007,\
            "expected_low":0.001,"expected_high":0.02,"unit":"share","revision":\(revision),"explanation":"36.8% of calls failed (usually 0.7%)."}
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

    /// A channel of any kind with routing columns; `path` tells channels on one receiver apart.
    func addChannel(_ postgres: PostgresClient, tenant: String, port: Int, secret: String, kind: String = "webhook", path: String,
                    minSeverity: String = "warning", providers: String = "{}", models: String = "{}", cap: Int32 = 20) async throws -> String {
        let id = "ch_" + TestEnvironment.unique("c").replacingOccurrences(of: "-", with: "_")
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'T') ON CONFLICT DO NOTHING")
        try await postgres.query("""
            INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity, providers, models, max_per_hour)
            VALUES (\(id), \(tenant), 'ops', \(kind), \("http://127.0.0.1:\(port)\(path)"), \(secret), \(minSeverity), \(providers)::text[], \(models)::text[], \(cap))
            """)
        return id
    }

    struct World {
        let postgres: PostgresClient, projector: QueryProjector
        var delivery: NotificationDelivery
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

    @Test("a channel hears an anomaly open, escalate and resolve: extent-only revisions, replays and older revisions send nothing; a stricter channel first hears it when it escalates")
    func lifecycle() async throws {
        let w = try await self.world()
        let (postgres, projector, delivery, receiver, tenant) = (w.postgres, w.projector, w.delivery, w.receiver, w.tenant)
        _ = try await self.addChannel(postgres, tenant: tenant, port: receiver.port, secret: w.secret, path: "/critical", minSeverity: "critical")
        let revisions = [self.anomaly(tenant: tenant, id: "lc", revision: 1), self.anomaly(tenant: tenant, id: "lc", revision: 2),
                         self.anomaly(tenant: tenant, id: "lc", revision: 3, severity: "critical"), self.anomaly(tenant: tenant, id: "lc", revision: 4, severity: "critical"),
                         self.anomaly(tenant: tenant, id: "lc", revision: 5, status: "resolved", severity: "critical")]
        for r in revisions { try await projector.process([r]) }
        try await projector.process([revisions[1], revisions[3]])  // replayed, and older than what was sent
        // At least once: a delivery whose answer came too late is sent again with the same id, so ids are compared
        // as sets (a loaded machine does that); which revisions a channel hears is the point.
        @Sendable func heard(_ path: String) -> Set<String> { Set(receiver.deliveries.filter { $0["path"] as? String == path }.compactMap { $0["id"] as? String }) }
        try await self.deliver(delivery, until: "the five messages") { heard("/hooks/tokenwatch").count + heard("/critical").count >= 5 }
        for _ in 0..<5 { _ = try await delivery.deliverDue() }
        #expect(heard("/hooks/tokenwatch") == ["lc-r1", "lc-r3", "lc-r5"], "opened, escalated, resolved: \(receiver.deliveries)")
        #expect(heard("/critical") == ["lc-r3", "lc-r5"], "opened when it became critical, then resolved")
        let events = try await postgres.query("SELECT event FROM notification_outbox WHERE tenant_id = \(tenant) ORDER BY channel_id = \(w.channelID) DESC, revision")
        #expect(try events.map { try $0.decode("event", as: String.self) } == ["opened", "escalated", "resolved", "opened", "resolved"])
        receiver.process.stop()
        await postgres.close()
    }

    @Test("one anomaly's revisions reach a channel in order: a revision queued behind an undelivered one waits for it")
    func inOrder() async throws {
        // The receiver refuses the first delivery, so the opening stays undelivered for its backoff; the resolution,
        // queued behind it, must not be sent meanwhile by this deliverer or any other (tests run side by side and every
        // deliverer claims every tenant's due rows, so the check is on what the receiver saw, not on a pass's count).
        let w = try await self.world(["--fail-first", "1"])
        let (postgres, projector, delivery, receiver, tenant) = (w.postgres, w.projector, w.delivery, w.receiver, w.tenant)
        // Opened and resolved queued together, as a detector that caught up publishes them.
        try await projector.process([self.anomaly(tenant: tenant, id: "ord", revision: 1), self.anomaly(tenant: tenant, id: "ord", revision: 2, status: "resolved")])
        try await self.deliver(delivery, until: "the resolution") { receiver.deliveries.contains { $0["id"] as? String == "ord-r2" } }
        let got = receiver.deliveries.map { ($0["id"] as? String ?? "", $0["status"] as? Int ?? 0) }
        let firstResolution = try #require(got.firstIndex { $0.0 == "ord-r2" })
        #expect(got.first.map { $0 == ("ord-r1", 500) } == true, "the opening was sent first and refused: \(got)")
        #expect(got[..<firstResolution].contains { $0 == ("ord-r1", 204) },
                "the resolution only after the opening was accepted (repeats of the opening allowed: at least once): \(got)")
        receiver.process.stop()
        await postgres.close()
    }

    @Test("channels filter by provider and model; a Slack channel gets a Block Kit message Slack accepts, with the expected range and a link")
    func routingAndSlack() async throws {
        var w = try await self.world(["--slack"])
        w.delivery.publicURL = "https://tokenwatch.example.com/"
        let (postgres, projector, delivery, receiver, tenant) = (w.postgres, w.projector, w.delivery, w.receiver, w.tenant)
        try await postgres.query("DELETE FROM notification_channels WHERE channel_id = \(w.channelID)")
        _ = try await self.addChannel(postgres, tenant: tenant, port: receiver.port, secret: w.secret, kind: "slack", path: "/anthropic", providers: "{anthropic}")
        _ = try await self.addChannel(postgres, tenant: tenant, port: receiver.port, secret: w.secret, kind: "slack", path: "/mini", models: "{gpt-4o-mini}")
        _ = try await self.addChannel(postgres, tenant: tenant, port: receiver.port, secret: w.secret, kind: "slack", path: "/openai", providers: "{openai}")
        try await projector.process([self.anomaly(tenant: tenant, id: "s1", revision: 1), self.anomaly(tenant: tenant, id: "s2", revision: 1, model: "gpt-4o-mini")])
        @Sendable func heard(_ path: String) -> Set<String> { Set(receiver.deliveries.filter { $0["path"] as? String == path }.compactMap { $0["id"] as? String }) }
        try await self.deliver(delivery, until: "three messages") { heard("/mini").count + heard("/openai").count >= 3 }
        for _ in 0..<5 { _ = try await delivery.deliverDue() }
        let got = receiver.deliveries
        #expect(heard("/anthropic").isEmpty && heard("/mini") == ["s2-r1"] && heard("/openai") == ["s1-r1", "s2-r1"], "\(got)")
        #expect(got.allSatisfy { $0["slack_error"] is NSNull && $0["status"] as? Int == 204 }, "Slack's rules hold: \(got.map { $0["slack_error"] ?? "" })")
        let message = try #require(got.first { $0["id"] as? String == "s1-r1" }?["body"] as? [String: Any])
        let text = String(decoding: try JSONSerialization.data(withJSONObject: message, options: [.withoutEscapingSlashes]), as: UTF8.self)
        #expect(message["text"] as? String == "Warning: error_rate of openai/gpt-4o")
        #expect(text.contains("*Expected range*\\n0.001–0.02 share"), "the expected range: \(text)")
        #expect(text.contains("2026-11-29T10:00:00Z") && text.contains("https://tokenwatch.example.com/#anomaly/s1"), "since when and the link: \(text)")
        receiver.process.stop()
        await postgres.close()
    }

    @Test("beyond a channel's cap the messages of the cap window are held back and counted in one summary sent when the window ends; a resolution always goes through")
    func cap() async throws {
        let w = try await self.world()
        let (postgres, projector, delivery, receiver, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.receiver, w.tenant, w.channelID)
        try await postgres.query("UPDATE notification_channels SET max_per_hour = 2 WHERE channel_id = \(channelID)")
        // The count is per cap window (an hour): start well inside one.
        let window = NotificationOutbox.capWindowSeconds
        let intoWindow = Int64(Date().timeIntervalSince1970) % window
        if window - intoWindow < 20 { try await Task.sleep(for: .seconds(window - intoWindow + 1)) }
        try await projector.process((1...4).map { self.anomaly(tenant: tenant, id: "cap\($0)", revision: 1) })
        try await projector.process([self.anomaly(tenant: tenant, id: "cap1", revision: 2, status: "resolved")])
        @Sendable func ids() -> Set<String> { Set(receiver.deliveries.compactMap { $0["id"] as? String }) }
        try await self.deliver(delivery, until: "the messages within the cap") { ids().count >= 3 }
        for _ in 0..<5 { _ = try await delivery.deliverDue() }
        #expect(ids() == ["cap1-r1", "cap1-r2", "cap2-r1"], "\(receiver.deliveries)")
        let held = try await postgres.query("SELECT count(*)::bigint AS n FROM notification_outbox WHERE channel_id = \(channelID) AND suppressed_at IS NOT NULL")
        #expect(try held[0].decode("n", as: Int64.self) == 2)
        let summary = try #require(try await postgres.query("""
            SELECT (body #>> '{data,suppressed}')::bigint AS n, extract(epoch FROM next_attempt_at)::bigint AS due FROM notification_outbox
            WHERE channel_id = \(channelID) AND event = 'summary'
            """).first)
        #expect(try summary.decode("n", as: Int64.self) == 2)
        #expect(try summary.decode("due", as: Int64.self) % window == 0, "due when the cap window ends")
        // The window's end, brought forward rather than waited for.
        try await postgres.query("UPDATE notification_outbox SET next_attempt_at = now() WHERE channel_id = \(channelID) AND event = 'summary'")
        try await self.deliver(delivery, until: "the summary") { ids().count >= 4 }
        let last = try #require(receiver.deliveries.first { ($0["id"] as? String)?.hasPrefix("summary-") == true }?["body"] as? [String: Any])
        #expect(last["type"] as? String == "summary" && (last["data"] as? [String: Any])?["suppressed"] as? Int == 2)
        receiver.process.stop()
        await postgres.close()
    }

    @Test("during a secret rotation's overlap each delivery carries a signature for each secret; a receiver with either verifies it")
    func rotation() async throws {
        let newSecret = StandardWebhooks.newSecret()
        let w = try await self.world(["--also-secret", newSecret])
        let (postgres, projector, delivery, receiver, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.receiver, w.tenant, w.channelID)
        try await postgres.query("""
            UPDATE notification_channels SET previous_secret = secret, previous_secret_until = now() + interval '1 hour', secret = \(newSecret) WHERE channel_id = \(channelID)
            """)
        try await projector.process([self.anomaly(tenant: tenant, id: "rot", revision: 1)])
        try await self.deliver(delivery, until: "delivered") { receiver.deliveries.count >= 1 }
        let got = try #require(receiver.deliveries.first)
        #expect(got["valid"] as? Bool == true && got["valid_also"] as? Bool == true, "a receiver holding the old secret, or the new one, verifies it")
        let signatures = (got["signature"] as? String ?? "").split(separator: " ")
        #expect(signatures.count == 2 && signatures.allSatisfy { $0.hasPrefix("v1,") })
        // After the overlap only the new secret signs.
        try await postgres.query("UPDATE notification_channels SET previous_secret_until = now() - interval '1 second' WHERE channel_id = \(channelID)")
        try await projector.process([self.anomaly(tenant: tenant, id: "rot2", revision: 1)])
        try await self.deliver(delivery, until: "delivered again") { receiver.deliveries.count >= 2 }
        let after = try #require(receiver.deliveries.last)
        #expect((after["signature"] as? String ?? "").split(separator: " ").count == 1)
        #expect(after["valid"] as? Bool == false && after["valid_also"] as? Bool == true, "the old secret no longer verifies; the new one does")
        receiver.process.stop()
        await postgres.close()
    }

    @Test("a receiver failing three times gets the message on the fourth attempt, same webhook-id; a 4xx and a redirect fail for good; the log says so")
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
        // A redirect is an answer, not a new address to try: failed for good, the log says why.
        let moved = try await WebhookReceiver(secret: secret, extra: ["--status", "302"])
        let movedChannel = try await self.channel(postgres, tenant: tenant, port: moved.port, secret: secret)
        try await projector.process([self.anomaly(tenant: tenant, id: "an5", revision: 1)])
        try await self.deliver(delivery, until: "the 302 recorded") { moved.deliveries.count >= 1 }
        for _ in 0..<3 { _ = try await delivery.deliverDue() }
        let redirected = try await postgres.query("SELECT attempts, last_error, failed_at IS NOT NULL AS failed FROM notification_outbox WHERE channel_id = \(movedChannel) AND message_id = 'an5-r1'")[0]
        #expect(try redirected.decode("attempts", as: Int32.self) == 1 && redirected.decode("failed", as: Bool.self)
                && (try redirected.decode("last_error", as: String.self)).contains("redirects are not followed"))
        #expect(moved.deliveries.count == 1)
        flaky.process.stop()
        gone.process.stop()
        moved.process.stop()
        await postgres.close()
    }

    @Test("Retry-After is read as delay-seconds or an HTTP date; inf, 1e400, hex floats, fractions and negatives are ignored; nothing exceeds a year")
    func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(NotificationDelivery.retryAfter("120", now: now) == 120)
        #expect(NotificationDelivery.retryAfter(" 0 ", now: now) == 0)
        for bogus in ["inf", "1e400", "0x1p80", "-5", "2.5", "", "soon", nil] {
            #expect(NotificationDelivery.retryAfter(bogus, now: now) == nil, "\(bogus ?? "nil")")
        }
        let year: Double = 366 * 86_400
        #expect(NotificationDelivery.retryAfter("10000000000000", now: now) == year)
        #expect(NotificationDelivery.retryAfter("99999999999", now: now) == year)
        // 2027-01-15T08:00:30Z is 30 s after now; a date in the past is now.
        #expect(NotificationDelivery.retryAfter("Fri, 15 Jan 2027 08:00:30 GMT", now: now) == 30)
        #expect(NotificationDelivery.retryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == 0)
    }

    @Test("a receiver's absurd Retry-After schedules the retry within the retry window, and another tenant's delivery in the same pass is recorded")
    func absurdRetryAfter() async throws {
        let w = try await self.world(["--status", "429", "--retry-after", "10000000000000"])
        let (postgres, projector, delivery, secret, tenant, channelID) = (w.postgres, w.projector, w.delivery, w.secret, w.tenant, w.channelID)
        let good = try await WebhookReceiver(secret: secret)
        let other = TestEnvironment.unique("nt")
        let goodChannel = try await self.channel(postgres, tenant: other, port: good.port, secret: secret)
        try await projector.process([self.anomaly(tenant: tenant, id: "ra1", revision: 1), self.anomaly(tenant: other, id: "ra2", revision: 1)])
        try await self.deliver(delivery, until: "both receivers were posted to") { w.receiver.deliveries.count >= 1 && good.deliveries.count >= 1 }
        let limited = try await postgres.query("""
            SELECT last_status, extract(epoch FROM next_attempt_at - now())::float8 AS wait, failed_at IS NULL AS pending
            FROM notification_outbox WHERE channel_id = \(channelID)
            """)[0]
        #expect(try limited.decode("last_status", as: Int32.self) == 429 && limited.decode("pending", as: Bool.self))
        let wait = try limited.decode("wait", as: Double.self)
        #expect(wait > 0 && wait <= 24 * 3600, "the retry is due within the 24-hour window, not in the year 318,000: \(wait) s")
        let delivered = try await postgres.query("SELECT delivered_at IS NOT NULL AS ok FROM notification_outbox WHERE channel_id = \(goodChannel)")[0]
        #expect(try delivered.decode("ok", as: Bool.self))
        #expect(good.deliveries.count == 1, "delivered once: its outcome was recorded, so it was not sent again")
        w.receiver.process.stop()
        good.process.stop()
        await postgres.close()
    }

    @Test("a tenant's receiver that never answers, with a backlog of messages, does not delay another tenant's message: it is delivered while the first tenant's are still in flight, and delivery error logs say nothing of the receiver's answer or the port's state")
    func fairDelivery() async throws {
        let (postgres, projector, _) = try self.setUp()
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let secret = StandardWebhooks.newSecret()
        let silent = try await WebhookReceiver(secret: secret, extra: ["--hang", "30"])
        let good = try await WebhookReceiver(secret: secret)
        let noisy = TestEnvironment.unique("nt"), quiet = TestEnvironment.unique("nt")
        let silentChannel = try await self.channel(postgres, tenant: noisy, port: silent.port, secret: secret)
        let goodChannel = try await self.channel(postgres, tenant: quiet, port: good.port, secret: secret)
        // The noisy tenant's 30 messages are older than the quiet one's, so first-in-first-out would serve them first.
        try await projector.process((0..<30).map { self.anomaly(tenant: noisy, id: "fa\($0)", revision: 1) })
        try await projector.process([self.anomaly(tenant: quiet, id: "fq", revision: 1)])
        var delivery = NotificationDelivery(postgres: postgres, policy: EgressPolicy(allowHTTP: true, allowedNetworks: [Network("127.0.0.0/8")!]),
                                            client: try WebhookClient(timeout: .seconds(20)), logger: self.logger)
        delivery.maxInFlight = 8
        delivery.perTenantInFlight = 2
        let running = Task { [delivery] in try await delivery.run() }
        try await eventually(.seconds(15), "the quiet tenant's message is delivered", interval: .milliseconds(50)) { good.deliveries.count == 1 }
        // At that moment none of the noisy tenant's deliveries has an outcome (each waits for its 20 s deadline), and
        // at most its share was taken.
        let noisyRows = try await postgres.query("""
            SELECT count(*) FILTER (WHERE attempts > 0)::bigint AS taken, count(*) FILTER (WHERE last_status IS NOT NULL OR last_error IS NOT NULL)::bigint AS finished
            FROM notification_outbox WHERE channel_id = \(silentChannel)
            """)[0]
        #expect(try noisyRows.decode("finished", as: Int64.self) == 0)
        #expect(try noisyRows.decode("taken", as: Int64.self) <= 2, "one tenant holds at most its share of the deliveries in flight")
        let quietRow = try await postgres.query("SELECT attempts FROM notification_outbox WHERE channel_id = \(goodChannel)")[0]
        #expect(try quietRow.decode("attempts", as: Int32.self) == 1)
        running.cancel()
        silent.process.stop()
        good.process.stop()
        // The backlog is this test's alone: later tests' delivery passes must not take it.
        try await postgres.query("DELETE FROM notification_outbox WHERE channel_id = \(silentChannel)")

        // Error texts: a closed port and a silent one read the same; a receiver's body is not repeated.
        let refused = await #expect(throws: WebhookClient.Failure.self) {
            let target = EgressPolicy.Target(tls: false, host: "127.0.0.1", port: 9, path: "/")
            let addresses = try await EgressPolicy(allowHTTP: true, allowedNetworks: [Network("127.0.0.0/8")!]).resolve(target)
            _ = try await WebhookClient(timeout: .seconds(2)).post(target, addresses: addresses, headers: [], body: [])
        }
        #expect(refused?.description == "cannot connect to 127.0.0.1:9 (refused, unreachable or no answer)")
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
