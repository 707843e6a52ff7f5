import Events
import Foundation
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Alertmanager end to end", .serialized, .timeLimit(.minutes(4)))
struct AlertmanagerEndToEndTests {
    @Test("an outage raised by the detector from traffic sent through the gateway appears in a real Alertmanager with its labels, and is resolved there when traffic returns")
    func outageReachesAlertmanager() async throws {
        let alertmanager = try await Alertmanager()
        // A database of its own: this query service delivers, and the in-process notification tests' rows are theirs.
        let url = try TestEnvironment.postgresURL()
        let logger = Logger(label: "alertmanager-e2e")
        let database = TestEnvironment.unique("am").replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
        try await admin.query("CREATE DATABASE \(identifier: database)")
        let ownURL = "\(url[..<url.lastIndex(of: "/")!])/\(database)"
        let (_, processes, http, tenant, key) = try await DetectorEndToEndTests.pipeline("am", services: ["gateway", "ingestor", "aggregator", "detector", "query"], extra: [
            // Events from half an hour ago are accepted and counted (the default lateness is 10 minutes).
            "TW_POSTGRES_URL": ownURL, "TW_DETECTOR_SILENCE_AFTER": "30s", "TW_ALLOWED_LATENESS": "1h",
            "TW_WEBHOOK_ALLOW_HTTP": "true", "TW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "TW_NOTIFICATION_DELIVERY": "true",
            "TW_PUBLIC_URL": "https://tokenwatch.example.com",
        ])
        let adminKey = try #require(try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: "detector-e2e-admin-token-am", body: #"{"scopes":["admin"]}"#).json["api_key"] as? String)
        let channel = try await http.call("POST", "/v1/channels", token: adminKey,
                                          body: #"{"name":"alertmanager","kind":"alertmanager","url":"http://127.0.0.1:\#(alertmanager.port)","min_severity":"warning"}"#)
        #expect(channel.status == 201, "\(channel.json)")

        // Four hours of history (the detector's warm-up is 200 windows) for two models (60 and 30 requests a minute), half
        // an hour ago.
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: ownURL), logger: logger)
        let now = EventTimestamp.now().microsecondsSinceEpoch / 60_000_000 * 60_000_000
        let live = now - 30 * 60_000_000
        func event(_ id: String, model: String, at t: Int64) -> LLMEvent {
            LLMEvent(eventID: id, tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: t), provider: "openai", model: model,
                     inputTokens: 300, outputTokens: 100, latencyMs: 700, status: .ok, costNanos: 2000)
        }
        let models = [("gpt-4o", 60), ("gpt-4o-mini", 30)]
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        for m in 0..<240 {
            for (model, rate) in models {
                for i in 0..<rate {
                    let e = event("h\(model)-\(m)-\(i)", model: model, at: live - Int64(240 - m) * 60_000_000 + Int64(i) * 60_000_000 / Int64(rate))
                    minutes.add(e)
                    hours.add(e)
                }
            }
        }
        try await RollupStore.write(minutes, hours, to: postgres)
        func post(minutes range: Range<Int>, silent: Set<String>) async throws {
            var events: [LLMEvent] = []
            for m in range {
                for (model, rate) in models where !silent.contains(model) {
                    for i in 0..<rate { events.append(event("l\(model)-\(m)-\(i)", model: model, at: live + Int64(m) * 60_000_000 + Int64(i) * 60_000_000 / Int64(rate))) }
                }
            }
            for start in stride(from: 0, to: events.count, by: 500) {
                let chunk = events[start..<min(start + 500, events.count)]
                let posted = try await http.call("POST", "/v1/events", token: key, body: "[" + chunk.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]")
                #expect(posted.status == 202 && posted.json["accepted"] as? Int == chunk.count, "\(posted.status) \(posted.json)")
            }
        }

        // gpt-4o sends for three minutes and stops while gpt-4o-mini goes on: an outage, raised as silence.
        try await post(minutes: 0..<3, silent: [])
        try await post(minutes: 3..<10, silent: ["gpt-4o"])
        let sent = ContinuousClock.now
        @Sendable func outageAlert() async -> [String: Any]? {
            await alertmanager.alerts()?.first { (($0["labels"] as? [String: String])?["model"]) == "gpt-4o" }
        }
        try await eventually(.seconds(150), "the outage in Alertmanager", interval: .milliseconds(250)) { await outageAlert() != nil }
        print("outage in Alertmanager \(ContinuousClock.now - sent) after the events were posted")
        let alert = try #require(await outageAlert())
        let labels = alert["labels"] as? [String: String] ?? [:]
        #expect(labels["alertname"] == "TokenwatchAnomaly" && labels["tenant"] == tenant && labels["provider"] == "openai"
                && labels["metric"] == "request_rate" && labels["severity"] == "critical" && labels["anomaly_id"]?.isEmpty == false, "\(labels)")
        let annotations = alert["annotations"] as? [String: String] ?? [:]
        #expect(annotations["link"]?.hasPrefix("https://tokenwatch.example.com/#anomaly/") == true && annotations["description"]?.contains("gpt-4o") == true)
        let startsAt = (alert["startsAt"] as? String).flatMap { EventTimestamp(rfc3339: $0) }?.microsecondsSinceEpoch
        #expect(startsAt == live + 3 * 60_000_000, "starts where gpt-4o stopped: \(alert["startsAt"] ?? "")")

        // Traffic returns: after the detector's run of normal windows the anomaly resolves, and so does its alert
        // (any other alert the detector may raise meanwhile is another anomaly's).
        let anomalyID = labels["anomaly_id"] ?? ""
        try await post(minutes: 10..<26, silent: [])
        do {
            try await eventually(.seconds(150), "the alert resolved in Alertmanager", interval: .milliseconds(250)) {
                await alertmanager.alerts()?.contains { ($0["labels"] as? [String: String])?["anomaly_id"] == anomalyID } == false
            }
        } catch {
            let stored = try await postgres.query("SELECT anomaly_id, body::text AS body FROM anomalies WHERE tenant_id = \(tenant) ORDER BY updated_at")
            Issue.record("not resolved; alerts: \(await alertmanager.alerts() ?? []); anomalies: \(try stored.map { try $0.decode("body", as: String.self) })")
            throw error
        }
        // The outage's own notifications, in revision order: opened first, resolved last, each delivered. Alertmanager
        // drops the alert on receiving the resolution, a moment before the deliverer records the 200: wait for it.
        @Sendable func outageLog() async throws -> [String] {
            try await postgres.query("""
                SELECT event, delivered_at IS NOT NULL AS delivered FROM notification_outbox WHERE tenant_id = \(tenant) AND anomaly_id = \(anomalyID) ORDER BY revision
                """).map { "\(try $0.decode("event", as: String.self)):\(try $0.decode("delivered", as: Bool.self))" }
        }
        try? await eventually(.seconds(30), "the resolution recorded as delivered", interval: .milliseconds(250)) { (try? await outageLog().last) == "resolved:true" }
        let log = try await outageLog()
        #expect(log.first == "opened:true" && log.last == "resolved:true", "\(log)")

        for process in processes { #expect(try process.stop() == 0, "\(process.name) exits cleanly") }
        alertmanager.stop()
        await postgres.close()
        try await admin.query("DROP DATABASE \(identifier: database) WITH (FORCE)")
        await admin.close()
    }
}

@Suite("Threshold rules end to end", .serialized, .timeLimit(.minutes(4)))
struct RuleEndToEndTests {
    @Test("a threshold rule on traffic sent through the gateway fires to a webhook when its minute closes, and resolves when the next one does not break it; a day's budget used up is notified, and resolved when deleted")
    func ruleFiresAndResolves() async throws {
        let url = try TestEnvironment.postgresURL()
        let logger = Logger(label: "rule-e2e")
        let database = TestEnvironment.unique("rule").replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
        try await admin.query("CREATE DATABASE \(identifier: database)")
        let ownURL = "\(url[..<url.lastIndex(of: "/")!])/\(database)"
        let receiver = try await WebhookReceiver(secret: StandardWebhooksTestSecret.value)
        let (_, processes, http, tenant, key) = try await DetectorEndToEndTests.pipeline("rul", services: ["gateway", "ingestor", "aggregator", "query"], extra: [
            "TW_POSTGRES_URL": ownURL, "TW_RULES_INTERVAL": "1s", "TW_RULES_GRACE": "5s",
            "TW_WEBHOOK_ALLOW_HTTP": "true", "TW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "TW_NOTIFICATION_DELIVERY": "true",
        ])
        let adminKey = try #require(try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: "detector-e2e-admin-token-rul", body: #"{"scopes":["admin"]}"#).json["api_key"] as? String)
        #expect(try await http.call("POST", "/v1/channels", token: adminKey, body: #"{"name":"hook","url":"http://127.0.0.1:\#(receiver.port)/rules"}"#).status == 201)
        let rule = try await http.call("POST", "/v1/rules", token: adminKey, body: #"{"name":"gpt-4o errors","metric":"error_rate","model":"gpt-4o","above":0.3,"for_minutes":1}"#)
        #expect(rule.status == 201)
        // A day's budget of a tenth of a cent, notified when it is used up.
        #expect(try await http.call("POST", "/v1/budgets", token: adminKey, body: #"{"name":"tiny","period":"day","amount_usd":0.001,"notify_at":[100],"forecast":false}"#).status == 201)

        // Half of gpt-4o's calls in the minute before this one fail.
        let now = EventTimestamp.now().microsecondsSinceEpoch
        let previous = now / 60_000_000 * 60_000_000 - 60_000_000
        var events: [LLMEvent] = []
        for i in 0..<20 {
            let failed = i % 2 == 0
            let at = EventTimestamp(microsecondsSinceEpoch: previous + Int64(i) * 2_000_000)
            events.append(LLMEvent(eventID: "e\(i)", timestamp: at, provider: "openai", model: "gpt-4o", inputTokens: 100, outputTokens: 50, latencyMs: 800,
                                   status: failed ? .error : .ok, errorType: failed ? "rate_limit" : nil, costNanos: 100_000))
        }
        let posted = try await http.call("POST", "/v1/events", token: key, body: "[" + events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]")
        #expect(posted.status == 202)
        @Sendable func bodies() -> [[String: Any]] { receiver.deliveries.compactMap { $0["body"] as? [String: Any] } }
        @Sendable func from(_ detector: String) -> [[String: Any]] { bodies().filter { ($0["data"] as? [String: Any])?["detector"] as? String == detector } }
        try await eventually(.seconds(100), "the rule's alert delivered") { from("rule").contains { $0["type"] as? String == "anomaly.ongoing" } }
        let opened = try #require(from("rule").first { $0["type"] as? String == "anomaly.ongoing" }?["data"] as? [String: Any])
        #expect(opened["detector"] as? String == "rule" && opened["metric"] as? String == "error_rate" && opened["model"] as? String == "gpt-4o" && opened["observed"] as? Double == 0.5)
        #expect((opened["explanation"] as? String)?.contains("gpt-4o errors") == true)

        // The next minute has no failures (nor, here, any calls): the alert resolves when it closes.
        try await eventually(.seconds(100), "the rule's alert resolved") { from("rule").contains { $0["type"] as? String == "anomaly.resolved" } }
        let resolved = try #require(from("rule").first { $0["type"] as? String == "anomaly.resolved" }?["data"] as? [String: Any])
        // 20 calls of $0.0001: $0.002 spent, twice the day's budget.
        try await eventually(.seconds(60), "the budget's alert delivered") { !from("budget").isEmpty }
        let spent = try #require(from("budget").first?["data"] as? [String: Any])
        #expect(spent["metric"] as? String == "spend" && spent["severity"] as? String == "critical" && spent["observed"] as? Double == 0.002, "\(spent)")
        // A budget's alerts end with its period, or when it is deleted: the channel hears that one.
        let budgets = try await http.call("GET", "/v1/budgets", token: adminKey)
        let budgetID = try #require(((budgets.json["items"] as? [[String: Any]])?.first)?["budget_id"] as? String)
        #expect(budgets.json.description.contains("0.002"), "this period's spend listed: \(budgets.json)")
        #expect(try await http.call("DELETE", "/v1/budgets/\(budgetID)", token: adminKey).status == 204)
        try await eventually(.seconds(60), "the budget's alert resolved") { from("budget").contains { $0["type"] as? String == "anomaly.resolved" } }
        #expect(resolved["anomaly_id"] as? String == opened["anomaly_id"] as? String)
        let listed = try await http.call("GET", "/v1/anomalies", token: key)
        #expect("\(listed.json)".contains(opened["anomaly_id"] as? String ?? "-"), "the rule's alert is listed with the anomalies")

        for process in processes { #expect(try process.stop() == 0, "\(process.name) exits cleanly") }
        receiver.process.stop()
        try await admin.query("DROP DATABASE \(identifier: database) WITH (FORCE)")
        await admin.close()
    }
}

enum StandardWebhooksTestSecret {
    /// Any secret: signatures are checked by the notification tests; this one is about when the rule fires.
    static let value = "whsec_" + Data(repeating: 7, count: 32).base64EncodedString()
}
