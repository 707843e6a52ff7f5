import Events
import Foundation
import Logging
import Notify
import Postgres
import QueryCore
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Threshold rules", .serialized, .timeLimit(.minutes(2)))
struct RuleTests {
    let logger = Logger(label: "rule-tests")
    let minute: Int64 = 60_000_000
    /// A minute boundary well in the past (rules read closed minutes relative to the `now` they are given).
    let t0: Int64 = 1_795_000_000_000_000 / 60_000_000 * 60_000_000

    struct World {
        let postgres: PostgresClient, evaluator: RuleEvaluator, tenant: String, channelID: String
    }

    /// A database of its own: the query services other suites start evaluate every rule of their database by the
    /// real clock, which would take these rules (set in the past) for silent.
    func world() async throws -> World {
        let url = try TestEnvironment.postgresURL()
        let database = TestEnvironment.unique("rules").replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: self.logger)
        try await admin.query("CREATE DATABASE \(identifier: database)")
        await admin.close()
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: "\(url[..<url.lastIndex(of: "/")!])/\(database)"), logger: self.logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let tenant = TestEnvironment.unique("rules")
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'R')")
        let channelID = "ch_" + TestEnvironment.unique("r").replacingOccurrences(of: "-", with: "_")
        // A channel that is never delivered to here (nothing runs delivery): its outbox shows what would be sent.
        try await postgres.query("""
            INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity)
            VALUES (\(channelID), \(tenant), 'ops', 'webhook', 'https://hooks.example.com/x', \(StandardWebhooks.newSecret()), 'info')
            """)
        return World(postgres: postgres, evaluator: RuleEvaluator(postgres: postgres, logger: self.logger), tenant: tenant, channelID: channelID)
    }

    /// `requests` calls of openai/gpt-4o in minute `m` (from t0), `errors` of them failed, each taking `latency` ms and
    /// costing `cost` nano-dollars; written as the aggregator writes them (the series and the tenant's total).
    func traffic(_ w: World, minute m: Int, requests: Int, errors: Int = 0, latency: Double = 500, cost: Int64 = 1_000_000, model: String = "gpt-4o") async throws {
        var deltas = RollupDeltas(granularity: .minute)
        for i in 0..<requests {
            deltas.add(LLMEvent(eventID: "\(m)-\(i)", tenantID: w.tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: self.t0 + Int64(m) * self.minute + Int64(i) * 1000),
                                provider: "openai", model: model, inputTokens: 10, outputTokens: 10, latencyMs: latency, status: i < errors ? .error : .ok,
                                errorType: i < errors ? "rate_limit" : nil, costNanos: cost))
        }
        try await RollupStore.write(deltas, to: w.postgres)
    }

    func rule(_ w: World, metric: String, provider: String? = "openai", model: String? = "gpt-4o", comparison: String = "above", threshold: Double, minutes: Int32 = 3) async throws -> String {
        let id = "rl_" + TestEnvironment.unique("x").replacingOccurrences(of: "-", with: "_")
        try await w.postgres.query("""
            INSERT INTO alert_rules (rule_id, tenant_id, name, metric, provider, model, comparison, threshold, for_minutes, severity)
            VALUES (\(id), \(w.tenant), 'r', \(metric), \(provider), \(model), \(comparison), \(threshold), \(minutes), 'critical')
            """)
        return id
    }

    /// Evaluates as of 31 s after minute `m` (from t0) ended: the minutes before `m + 1` are closed.
    func evaluate(_ w: World, after m: Int) async throws -> [AnomalyMessage] {
        try await w.evaluator.evaluate(now: self.t0 + Int64(m + 1) * self.minute + 31_000_000).filter { $0.tenantID == w.tenant }
    }

    func outbox(_ w: World) async throws -> [String] {
        try await w.postgres.query("SELECT event || ':' || message_id AS e FROM notification_outbox WHERE channel_id = \(w.channelID) ORDER BY created_at, revision").map { try $0.decode("e") }
    }

    @Test("an error rate above the threshold in each of the last 3 closed minutes opens one alert (stored as an anomaly, queued for the channels); the first minute below resolves it, same id")
    func errorRate() async throws {
        let w = try await self.world()
        let id = try await self.rule(w, metric: "error_rate", threshold: 0.05)
        for m in 0..<3 { try await self.traffic(w, minute: m, requests: 100, errors: 1) }
        for m in 3..<6 { try await self.traffic(w, minute: m, requests: 100, errors: 20) }
        #expect(try await self.evaluate(w, after: 4).isEmpty, "two minutes above are not three")
        let opened = try #require(try await self.evaluate(w, after: 5).first)
        #expect(opened.status == "ongoing" && opened.severity == "critical" && opened.detector == "rule" && opened.metric == "error_rate")
        #expect(opened.windowStart == EventTimestamp(microsecondsSinceEpoch: self.t0 + 3 * self.minute).rfc3339 && opened.observed == 0.2 && opened.expectedHigh == 0.05)
        #expect(opened.explanation?.contains("20.0%, above 5.0% for 3 minutes") == true, "\(opened.explanation ?? "")")
        #expect(opened.anomalyID == "rule-\(id)-\((self.t0 + 3 * self.minute) / self.minute)")
        #expect(try await self.evaluate(w, after: 5).isEmpty, "evaluated again: nothing new")
        let stored = try await w.postgres.query("SELECT body->>'status' AS s FROM anomalies WHERE tenant_id = \(w.tenant) AND anomaly_id = \(opened.anomalyID)")
        #expect(try stored.first?.decode("s", as: String.self) == "ongoing")

        try await self.traffic(w, minute: 6, requests: 100, errors: 2)
        let resolved = try #require(try await self.evaluate(w, after: 6).first)
        #expect(resolved.anomalyID == opened.anomalyID && resolved.status == "resolved" && resolved.revision == 2 && resolved.observed == 0.02)
        #expect(try await self.outbox(w) == ["opened:\(opened.anomalyID)-r1", "resolved:\(opened.anomalyID)-r2"])
        await w.postgres.close()
    }

    @Test("the tenant's total, a model alone, latency, cost over the last hour and a traffic floor: each rule reads what its name says")
    func metrics() async throws {
        let w = try await self.world()
        // gpt-4o: 60 calls a minute at 500 ms, $0.001 each; gpt-4o-mini: 40 at 2,000 ms.
        for m in 0..<70 {
            try await self.traffic(w, minute: m, requests: 60)
            try await self.traffic(w, minute: m, requests: 40, latency: 2000, model: "gpt-4o-mini")
        }
        let total = try await self.rule(w, metric: "request_rate", provider: nil, model: nil, threshold: 90)  // 100 a minute in total
        let mini = try await self.rule(w, metric: "latency_p95", provider: nil, model: "gpt-4o-mini", threshold: 1500)
        let fast = try await self.rule(w, metric: "latency_p95", threshold: 1500)  // gpt-4o: never
        let cost = try await self.rule(w, metric: "cost_per_hour", provider: nil, model: nil, threshold: 5.9)  // $6.00 an hour in total
        let floor = try await self.rule(w, metric: "request_rate", comparison: "below", threshold: 10)
        let perCall = try await self.rule(w, metric: "cost_per_request", threshold: 0.0009)  // $0.001 a call
        let tokens = try await self.rule(w, metric: "output_tokens_per_request", threshold: 10)  // 10 a call: not above
        let fired = Set(try await self.evaluate(w, after: 69).map(\.anomalyID))
        for (rule, expected) in [(total, true), (mini, true), (fast, false), (cost, true), (floor, false), (perCall, true), (tokens, false)] {
            #expect(fired.contains { $0.hasPrefix("rule-\(rule)-") } == expected, "\(rule)")
        }
        // gpt-4o stops: its floor rule fires after 3 silent minutes; an error rate rule says nothing of no traffic.
        let errors = try await self.rule(w, metric: "error_rate", threshold: 0.01)
        let quiet = Set(try await self.evaluate(w, after: 72).map(\.anomalyID))
        #expect(quiet.contains { $0.hasPrefix("rule-\(floor)-") } && !quiet.contains { $0.hasPrefix("rule-\(errors)-") })
        await w.postgres.close()
    }

    @Test("two replicas evaluating at once make one transition; a deleted rule's open alert is resolved before the rule goes")
    func replicasAndDeletion() async throws {
        let w = try await self.world()
        let id = try await self.rule(w, metric: "error_rate", threshold: 0.05, minutes: 1)
        try await self.traffic(w, minute: 0, requests: 10, errors: 5)
        let other = RuleEvaluator(postgres: w.postgres, logger: self.logger)
        let now = self.t0 + self.minute + 31_000_000
        async let a = w.evaluator.evaluate(now: now)
        async let b = other.evaluate(now: now)
        let both = (try await a) + (try await b)
        #expect(both.filter { $0.tenantID == w.tenant }.count == 1)
        try await w.postgres.query("UPDATE alert_rules SET deleted_at = now() WHERE rule_id = \(id)")
        let gone = try #require(try await self.evaluate(w, after: 0).first)
        #expect(gone.status == "resolved" && gone.explanation?.contains("deleted") == true)
        #expect(try await w.postgres.query("SELECT 1 FROM alert_rules WHERE rule_id = \(id)").isEmpty)
        #expect(try await self.outbox(w).map { $0.split(separator: ":")[0] } == ["opened", "resolved"])
        await w.postgres.close()
    }
}
