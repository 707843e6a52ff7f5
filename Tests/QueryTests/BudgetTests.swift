import Events
import Foundation
import Logging
import Postgres
@testable import QueryCore
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Spend budgets", .serialized, .timeLimit(.minutes(2)))
struct BudgetTests {
    let logger = Logger(label: "budget-tests")
    let hour: Int64 = 3_600_000_000
    let day: Int64 = 86_400_000_000
    /// 2026-11-18 00:00 UTC, a Wednesday.
    let today: Int64 = 1_794_960_000_000_000

    @Test("the forecast follows the usual shape of the period, scaled by how this one compares so far; without history it extrapolates, and not too early")
    func forecast() {
        let flat = [Double](repeating: 1, count: 24)
        #expect(BudgetForecast.project(spent: 12, usual: flat, elapsed: 12) == 24)
        #expect(BudgetForecast.project(spent: 24, usual: flat, elapsed: 12) == 48, "twice the usual so far: twice the usual for the rest")
        let busyAfternoon = [Double](repeating: 0.5, count: 12) + [Double](repeating: 2, count: 12)
        #expect(BudgetForecast.project(spent: 6, usual: busyAfternoon, elapsed: 12) == 30, "a linear guess would say 12")
        #expect(BudgetForecast.project(spent: 6, usual: [Double](repeating: 0, count: 24), elapsed: 12) == 12, "no history: linear")
        #expect(BudgetForecast.project(spent: 1, usual: [Double](repeating: 0, count: 24), elapsed: 0.5) == nil, "2% of a day is no basis")
        #expect(BudgetForecast.project(spent: 1.5, usual: flat, elapsed: 0.5) == 1.5 + 23.5 * 3, "within the current hour, prorated")
    }

    @Test("UTC periods: a day, and a calendar month (February, December into January)")
    func periods() {
        let feb15 = Int64(1_802_649_600) * 1_000_000  // 2027-02-15 00:00 UTC
        let (start, end) = RuleEvaluator.period(monthly: true, now: feb15 + 5 * self.hour)
        #expect(EventTimestamp(microsecondsSinceEpoch: start).rfc3339.hasPrefix("2027-02-01T00:00:00") && EventTimestamp(microsecondsSinceEpoch: end).rfc3339.hasPrefix("2027-03-01T00:00:00"))
        let dec31 = self.today + 43 * self.day
        let (s2, e2) = RuleEvaluator.period(monthly: true, now: dec31)
        #expect(EventTimestamp(microsecondsSinceEpoch: s2).rfc3339.hasPrefix("2026-12-01") && EventTimestamp(microsecondsSinceEpoch: e2).rfc3339.hasPrefix("2027-01-01"))
        #expect(RuleEvaluator.period(monthly: false, now: self.today + 5 * self.hour) == (self.today, self.today + self.day))
    }

    func database() async throws -> PostgresClient {
        let url = try TestEnvironment.postgresURL()
        let name = TestEnvironment.unique("budget").replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: self.logger)
        try await admin.query("CREATE DATABASE \(identifier: name)")
        await admin.close()
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: "\(url[..<url.lastIndex(of: "/")!])/\(name)"), logger: self.logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        return postgres
    }

    /// One call costing `usd` at `t`, written as the aggregator writes it (series and total, hour and day).
    func spend(_ postgres: PostgresClient, tenant: String, usd: Double, at t: Int64) async throws {
        let event = LLMEvent(eventID: "\(t)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: t), provider: "openai", model: "gpt-4o",
                             inputTokens: 1, outputTokens: 1, latencyMs: 100, status: .ok, costNanos: Int64(usd * 1e9))
        for granularity in [Granularity.hour, .day] {
            var deltas = RollupDeltas(granularity: granularity)
            deltas.add(event)
            try await RollupStore.write(deltas, to: postgres)
        }
    }

    @Test("a day budget: notified at 50% and when the forecast from the usual day passes the amount, at 100% (critical), each once; all resolved when the day ends; a deleted budget's alerts resolved")
    func dayBudget() async throws {
        let postgres = try await self.database()
        let evaluator = RuleEvaluator(postgres: postgres, logger: self.logger)
        let tenant = TestEnvironment.unique("bt")
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'B')")
        try await postgres.query("""
            INSERT INTO budgets (budget_id, tenant_id, name, period, amount_nanos, notify_percentages, forecast)
            VALUES ('bg_day', \(tenant), 'daily', 'day', 10000000000, '{50,100}', true)
            """)
        // The previous week and this morning: $0.50 an hour.
        for h in -7 * 24..<12 { try await self.spend(postgres, tenant: tenant, usd: 0.5, at: self.today + Int64(h) * self.hour + 60_000_000) }
        let noon = self.today + 12 * self.hour + 30 * 60_000_000
        let first = try await evaluator.evaluate(now: noon)
        #expect(Set(first.map(\.anomalyID)) == ["budget-bg_day-\(self.today / self.day)-50", "budget-bg_day-\(self.today / self.day)-forecast"], "\(first.map(\.anomalyID))")
        let forecast = try #require(first.first { $0.metric == "spend_forecast" })
        #expect(forecast.severity == "warning" && forecast.detector == "budget" && (forecast.observed ?? 0) > 10 && (forecast.observed ?? 0) < 13, "about $11.5: \(forecast.explanation ?? "")")
        #expect(first.first { $0.metric == "spend" }?.severity == "info" && first.first { $0.metric == "spend" }?.observed == 6)
        #expect(try await evaluator.evaluate(now: noon + 60_000_000).isEmpty, "each once")

        try await self.spend(postgres, tenant: tenant, usd: 5, at: self.today + 12 * self.hour + 40 * 60_000_000)
        let full = try await evaluator.evaluate(now: noon + 20 * 60_000_000)
        #expect(full.map(\.anomalyID) == ["budget-bg_day-\(self.today / self.day)-100"] && full.first?.severity == "critical" && full.first?.observed == 11)

        let tomorrow = try await evaluator.evaluate(now: self.today + self.day + 30 * 60_000_000)
        #expect(tomorrow.count == 3 && tomorrow.allSatisfy { $0.status == "resolved" && $0.revision == 2 }, "\(tomorrow.map { "\($0.anomalyID) \($0.status)" })")
        let stored = try await postgres.query("SELECT count(*)::bigint AS n FROM anomalies WHERE tenant_id = \(tenant) AND body->>'status' = 'resolved'")
        #expect(try stored[0].decode("n", as: Int64.self) == 3)

        // A new day that starts fast ($6 by 02:00, six times the usual): 50% and a forecast far over; deleting the
        // budget ends both.
        try await self.spend(postgres, tenant: tenant, usd: 6, at: self.today + self.day + 60_000_000)
        let early = try await evaluator.evaluate(now: self.today + self.day + 2 * self.hour)
        #expect(Set(early.map(\.metric)) == ["spend", "spend_forecast"], "\(early.map(\.explanation))")
        try await postgres.query("UPDATE budgets SET deleted_at = now() WHERE budget_id = 'bg_day'")
        let gone = try await evaluator.evaluate(now: self.today + self.day + 3 * self.hour)
        #expect(gone.allSatisfy { $0.status == "resolved" } && !gone.isEmpty)
        #expect(try await postgres.query("SELECT 1 FROM budgets WHERE budget_id = 'bg_day'").isEmpty)
        await postgres.close()
    }
}
