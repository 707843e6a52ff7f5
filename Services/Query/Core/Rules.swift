import Events
import Foundation
import Logging
import Metrics
import Postgres
import Rollups
import ServiceLifecycle

/// A threshold rule (`alert_rules`): a metric of one series, or of the tenant's total, above or below a value in
/// every one of the last `forMinutes` closed minutes. The tenant's total is its own rollup row (provider and model
/// empty); a provider or a model alone sums the series that match.
public struct ThresholdRule: Sendable, Equatable {
    public enum Metric: String, Sendable, CaseIterable {
        case requestRate = "request_rate", errorRate = "error_rate", latencyP95 = "latency_p95", ttftP95 = "ttft_p95"
        case costPerRequest = "cost_per_request", outputTokensPerRequest = "output_tokens_per_request", costPerHour = "cost_per_hour"

        var unit: String {
            switch self {
            case .requestRate: "requests/min"
            case .errorRate: "share"
            case .latencyP95, .ttftP95: "ms"
            case .costPerRequest: "USD"
            case .outputTokensPerRequest: "tokens"
            case .costPerHour: "USD/hour"
            }
        }

        var label: String {
            switch self {
            case .requestRate: "request rate"
            case .errorRate: "error rate"
            case .latencyP95: "p95 latency"
            case .ttftP95: "p95 time to first token"
            case .costPerRequest: "cost per call"
            case .outputTokensPerRequest: "output tokens per call"
            case .costPerHour: "cost over the last hour"
            }
        }

        func format(_ value: Double) -> String {
            switch self {
            case .errorRate: String(format: "%.1f%%", value * 100)
            case .costPerHour: String(format: "$%.2f/hour", value)
            case .requestRate: String(format: "%.0f/min", value)
            case .latencyP95, .ttftP95: String(format: "%.0f ms", value)
            case .costPerRequest: String(format: "$%.4f", value)
            case .outputTokensPerRequest: String(format: "%.0f tokens", value)
            }
        }
    }

    public var id: String
    public var tenant: String
    public var name: String
    public var metric: Metric
    public var provider: String?
    public var model: String?
    public var above: Bool
    public var threshold: Double
    public var forMinutes: Int
    public var severity: String

    public init(id: String, tenant: String, name: String, metric: Metric, provider: String? = nil, model: String? = nil,
                above: Bool, threshold: Double, forMinutes: Int, severity: String) {
        (self.id, self.tenant, self.name, self.metric, self.provider, self.model) = (id, tenant, name, metric, provider, model)
        (self.above, self.threshold, self.forMinutes, self.severity) = (above, threshold, forMinutes, severity)
    }

    /// The metric of one minute; nil where it is undefined (a ratio or a quantile of a minute without requests),
    /// which never satisfies a rule: no traffic is no evidence of errors or slowness. `lastHourCost`: the cost of
    /// the 60 minutes ending with this one, in nano-dollars.
    func value(_ v: RollupValues, lastHourCost: Int64) -> Double? {
        switch self.metric {
        case .requestRate: return Double(v.requests)
        case .errorRate: return v.requests > 0 ? Double(v.errors) / Double(v.requests) : nil
        case .latencyP95: return v.requests > 0 ? v.latency.quantile(0.95) : nil
        case .ttftP95: return v.timeToFirstToken.quantile(0.95)
        case .costPerRequest: return v.requests > 0 ? Double(v.costNanos) / Double(v.requests) / Double(LLMEvent.nanosPerUSD) : nil
        case .outputTokensPerRequest: return v.requests > 0 ? Double(v.outputTokens) / Double(v.requests) : nil
        case .costPerHour: return Double(lastHourCost) / Double(LLMEvent.nanosPerUSD)
        }
    }

    func holds(_ value: Double?) -> Bool {
        guard let value else { return false }
        return self.above ? value > self.threshold : value < self.threshold
    }

    var seriesName: String {
        switch (self.provider, self.model) {
        case (nil, nil): "all traffic"
        case (let p?, nil): "\(p)/*"
        case (nil, let m?): "*/\(m)"
        case (let p?, let m?): "\(p)/\(m)"
        }
    }
}

/// Evaluates the threshold rules every `interval` in the query service, from the minute rollups in Postgres (the
/// exact totals the API answers with), over closed minutes only: a minute counts once `grace` has passed since it
/// ended, time for the aggregator to have written it. A rule that holds in each of its last `forMinutes` minutes
/// opens an alert; the first minute that breaks it resolves the alert. Alerts are anomalies (`detector: "rule"`,
/// one id from open to resolve, revisions as it lasts, at 2, 4, 8, ... minutes), stored and queued for the
/// tenant's channels in the transaction that records the rule's state, so each transition is notified exactly once.
/// Replicas share the rules: each pass locks the rules it evaluates (`FOR UPDATE SKIP LOCKED`). The same pass
/// evaluates the spend budgets (`Budgets.swift`).
public struct RuleEvaluator: Service {
    let postgres: PostgresClient
    let logger: Logger
    public var interval: Duration = .seconds(15)
    public var grace: Duration = .seconds(30)
    private let evaluated = Counter(label: "tw_rules_evaluated_total")
    private let transitions = Counter(label: "tw_rule_alerts_total")

    public init(postgres: PostgresClient, logger: Logger) {
        self.postgres = postgres
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                _ = try await self.evaluate(now: EventTimestamp.now().microsecondsSinceEpoch)
            } catch {
                self.logger.error("Rule evaluation failed; retrying", metadata: ["error": "\(error)"])
            }
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) } } catch { return }
        }
    }

    static func rule(_ row: PostgresRow) throws -> ThresholdRule? {
        guard let metric = ThresholdRule.Metric(rawValue: try row.decode("metric")) else { return nil }
        return ThresholdRule(id: try row.decode("rule_id"), tenant: try row.decode("tenant_id"), name: try row.decode("name"), metric: metric,
                             provider: try row.decodeIfPresent("provider"), model: try row.decodeIfPresent("model"),
                             above: try row.decode("comparison", as: String.self) == "above", threshold: try row.decode("threshold"),
                             forMinutes: Int(try row.decode("for_minutes", as: Int32.self)), severity: try row.decode("severity"))
    }

    /// One pass over every rule at `now` (microseconds); returns the alerts it published (opened, extended, resolved).
    @discardableResult
    public func evaluate(now: Int64) async throws -> [AnomalyMessage] {
        let minute: Int64 = 60_000_000
        let graceMicros = self.grace.components.seconds * 1_000_000 + self.grace.components.attoseconds / 1_000_000_000_000
        let end = (now - graceMicros) / minute * minute
        let ids = try await self.postgres.query("SELECT rule_id FROM alert_rules ORDER BY rule_id").map { try $0.decode("rule_id", as: String.self) }
        var published: [AnomalyMessage] = []
        for id in ids {
            let out: AnomalyMessage? = try await self.postgres.withTransaction { connection in
                guard let row = try connection.query("SELECT *, deleted_at IS NOT NULL AS deleted FROM alert_rules WHERE rule_id = \(id) FOR UPDATE SKIP LOCKED").first,
                      let rule = try Self.rule(row) else { return nil }
                if try row.decode("deleted", as: Bool.self) {
                    // A deleted rule's open alert is resolved (its channels hear it end), then the rule goes.
                    let message = try Self.resolveOpen(rule, end: end, reason: "the rule was deleted", on: connection)
                    try connection.query("DELETE FROM alert_rules WHERE rule_id = \(id)")
                    return message
                }
                return try Self.evaluate(rule, end: end, on: connection)
            }
            self.evaluated.increment()
            if let out {
                self.transitions.increment()
                published.append(out)
            }
        }
        let budgets = try await self.postgres.query("SELECT budget_id FROM budgets ORDER BY budget_id").map { try $0.decode("budget_id", as: String.self) }
        for id in budgets {
            let out: [AnomalyMessage] = try await self.postgres.withTransaction { connection in
                guard let row = try connection.query("""
                    SELECT budget_id, tenant_id, name, period, amount_nanos, array_to_string(notify_percentages, ',') AS percentages, forecast,
                           deleted_at IS NOT NULL AS deleted
                    FROM budgets WHERE budget_id = \(id) FOR UPDATE SKIP LOCKED
                    """).first else { return [] }
                let deleted: Bool = try row.decode("deleted")
                let messages = try Self.evaluate(try Budget.from(row), now: now, deleted: deleted, on: connection)
                if deleted { try connection.query("DELETE FROM budgets WHERE budget_id = \(id)") }
                return messages
            }
            self.evaluated.increment()
            self.transitions.increment(by: out.count)
            published += out
        }
        return published
    }

    static func resolveOpen(_ rule: ThresholdRule, end: Int64, reason: String, on connection: isolated PostgresConnection) throws -> AnomalyMessage? {
        guard let state = try connection.query("SELECT alert_id, revision, (extract(epoch FROM started_at) * 1000000)::bigint AS started, last_value FROM rule_alerts WHERE rule_id = \(rule.id)").first else { return nil }
        var message = try Self.message(rule, id: try state.decode("alert_id"), revision: try state.decode("revision", as: Int64.self) + 1, status: "resolved",
                                       start: try state.decode("started"), end: max(end, try state.decode("started", as: Int64.self)), value: try state.decodeIfPresent("last_value"))
        message.explanation = "Rule “\(rule.name)”: resolved because \(reason)."
        try connection.query("DELETE FROM rule_alerts WHERE rule_id = \(rule.id)")
        try QueryProjector.store(message, on: connection)
        return message
    }

    /// The rule over the minutes before `end`, its state moved on and any alert revision stored and queued.
    static func evaluate(_ rule: ThresholdRule, end: Int64, on connection: isolated PostgresConnection) throws -> AnomalyMessage? {
        let minute: Int64 = 60_000_000
        let start = end - Int64(rule.forMinutes) * minute
        let from = rule.metric == .costPerHour ? start - 59 * minute : start
        var filters: [SeriesDimension: String] = [:]
        filters[.provider] = rule.provider
        filters[.model] = rule.model
        let (condition, selected) = SeriesSelection(filters: filters).sqlCondition(firstParameter: 4)
        let rows = try connection.query(PostgresQuery(
            sql: """
                SELECT \(RollupStore.selectColumns) FROM \(Granularity.minute.table)
                WHERE tenant_id = $1 AND window_start >= to_timestamp($2::double precision) AND window_start < to_timestamp($3::double precision) AND \(condition)
                """,
            parameters: [rule.tenant, String(Double(from) / 1e6), String(Double(end) / 1e6)] + selected.map { Optional($0) }))
        var byMinute: [Int64: RollupValues] = [:]
        for row in rows {
            let record = try RollupStore.record(row, granularity: .minute)
            byMinute[record.key.windowStart, default: RollupValues()].merge(record.values)
        }
        var values: [Double?] = []
        for m in stride(from: start, to: end, by: Int64.Stride(minute)) {
            var hourCost: Int64 = 0
            if rule.metric == .costPerHour {
                for back in 0..<60 { hourCost +|= byMinute[m - Int64(back) * minute]?.costNanos ?? 0 }
            }
            values.append(rule.value(byMinute[m] ?? RollupValues(), lastHourCost: hourCost))
        }
        let firing = !values.isEmpty && values.allSatisfy { rule.holds($0) }
        let latest = values.last ?? nil
        let state = try connection.query("SELECT alert_id, revision, (extract(epoch FROM started_at) * 1000000)::bigint AS started FROM rule_alerts WHERE rule_id = \(rule.id)").first
        var message: AnomalyMessage?
        if let state {
            let alertID: String = try state.decode("alert_id")
            let revision: Int64 = try state.decode("revision")
            let started: Int64 = try state.decode("started")
            if !rule.holds(latest) {
                message = try Self.message(rule, id: alertID, revision: revision + 1, status: "resolved", start: started, end: max(end, started), value: latest)
                try connection.query("DELETE FROM rule_alerts WHERE rule_id = \(rule.id)")
            } else if (end - started) / minute >= Int64(rule.forMinutes) << min(revision, 20) {
                // Republished as it lasts (2, 4, 8, ... times its first length): lists and Alertmanager see its extent.
                message = try Self.message(rule, id: alertID, revision: revision + 1, status: "ongoing", start: started, end: end, value: latest)
                try connection.query("UPDATE rule_alerts SET revision = \(revision + 1), last_value = \(latest) WHERE rule_id = \(rule.id)")
            } else {
                try connection.query("UPDATE rule_alerts SET last_value = \(latest) WHERE rule_id = \(rule.id)")
            }
        } else if firing {
            let alertID = "rule-\(rule.id)-\(start / minute)"
            message = try Self.message(rule, id: alertID, revision: 1, status: "ongoing", start: start, end: end, value: latest)
            try connection.query("""
                INSERT INTO rule_alerts (rule_id, tenant_id, alert_id, revision, started_at, last_value)
                VALUES (\(rule.id), \(rule.tenant), \(alertID), 1, to_timestamp(\(Double(start) / 1e6)), \(latest))
                """)
        }
        if let message { try QueryProjector.store(message, on: connection) }
        return message
    }

    /// The alert as an anomaly message (validated like any read from llm.anomalies.v1).
    static func message(_ rule: ThresholdRule, id: String, revision: Int64, status: String, start: Int64, end: Int64, value: Double?) throws -> AnomalyMessage {
        let comparison = rule.above ? "above" : "below"
        let shown = value.map(rule.metric.format) ?? "no traffic"
        let explanation = status == "resolved"
            ? "Rule “\(rule.name)”: the \(rule.metric.label) of \(rule.seriesName) is back (\(shown)); it was \(comparison) \(rule.metric.format(rule.threshold))."
            : "Rule “\(rule.name)”: the \(rule.metric.label) of \(rule.seriesName) is \(shown), \(comparison) \(rule.metric.format(rule.threshold)) for \(rule.forMinutes) minute\(rule.forMinutes == 1 ? "" : "s") or more."
        let message = AnomalyMessage(
            anomalyID: id, tenantID: rule.tenant, provider: rule.provider ?? "", model: rule.model ?? "", metric: rule.metric.rawValue,
            windowStart: EventTimestamp(microsecondsSinceEpoch: start).rfc3339, windowEnd: EventTimestamp(microsecondsSinceEpoch: end).rfc3339,
            status: status, severity: rule.severity, detector: "rule", observed: value, expectedLow: rule.above ? nil : rule.threshold,
            expectedHigh: rule.above ? rule.threshold : nil, unit: rule.metric.unit, explanation: explanation, revision: revision)
        try message.validate()
        return message
    }
}
