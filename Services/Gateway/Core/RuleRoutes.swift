import Codecs
import Events
import Foundation
import HTTPTypes
import Hummingbird
import Rollups
import Postgres

/// A tenant's threshold rules (admin scope), evaluated by the query service (README, "Threshold rules"):
/// - `POST /v1/rules` `{"name", "metric": "request_rate" | "error_rate" | "latency_p95" | "ttft_p95" | "cost_per_request" |
///   "output_tokens_per_request" | "cost_per_hour",
///   "provider"?, "model"? (absent: the tenant's total), "above" | "below": number, "for_minutes"?: 5,
///   "severity"?: "warning"}` -> 201 with the rule.
/// - `GET /v1/rules`: the rules with their state (`firing`, the open alert's id, since when, the last value).
/// - `DELETE /v1/rules/{id}` -> 204; an open alert of the rule is resolved by the evaluator's next pass.
/// - `POST /v1/budgets` `{"name", "period": "day" | "month", "amount_usd", "notify_at"?: [50, 80, 100],
///   "forecast"?: true}`, `GET /v1/budgets` (with this period's spend), `DELETE /v1/budgets/{id}`.
struct RuleRoutes: Sendable {
    let access: TenantAccess
    static let maxRules = 50
    static let metrics = Vocabulary.ruleMetrics

    struct Rule: Encodable {
        var rule_id: String
        var name: String
        var metric: String
        var provider: String?
        var model: String?
        var above: Double?
        var below: Double?
        var for_minutes: Int32
        var severity: String
        var created_at: String
        var firing: Bool
        var alert_id: String?
        var since: String?
        var last_value: Double?
    }

    struct Rules: Encodable { var items: [Rule] }

    static let select = """
        SELECT r.rule_id, r.name, r.metric, r.provider, r.model, r.comparison, r.threshold, r.for_minutes, r.severity,
               to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at, a.alert_id,
               to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since, a.last_value
        FROM alert_rules r LEFT JOIN rule_alerts a ON a.rule_id = r.rule_id
        """

    static func rule(_ row: PostgresRow) throws -> Rule {
        let above = try row.decode("comparison", as: String.self) == "above"
        let threshold: Double = try row.decode("threshold")
        let alertID: String? = try row.decodeIfPresent("alert_id")
        return Rule(rule_id: try row.decode("rule_id"), name: try row.decode("name"), metric: try row.decode("metric"), provider: try row.decodeIfPresent("provider"),
                    model: try row.decodeIfPresent("model"), above: above ? threshold : nil, below: above ? nil : threshold,
                    for_minutes: try row.decode("for_minutes"), severity: try row.decode("severity"), created_at: try row.decode("created_at"),
                    firing: alertID != nil, alert_id: alertID, since: try row.decodeIfPresent("since"), last_value: try row.decodeIfPresent("last_value"))
    }

    func add<Context: RequestContext>(to router: Router<Context>) {
        self.addBudgets(to: router)
        self.access.route(router, .post, "/v1/rules", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["name", "metric", "provider", "model", "above", "below", "for_minutes", "severity"])
            guard let name = try input.string("name", maxLength: 100) else { throw JSONInput.invalid("name", "required") }
            guard let metric = try input.string("metric", maxLength: 32), Self.metrics.contains(metric) else {
                throw JSONInput.invalid("metric", "required, one of \(Self.metrics.joined(separator: ", "))")
            }
            let provider = try input.string("provider", maxLength: 64)
            let model = try input.string("model", maxLength: 256)
            let above = try Self.number(input, "above"), below = try Self.number(input, "below")
            guard (above == nil) != (below == nil), let threshold = above ?? below else {
                throw JSONInput.invalid(above == nil ? "above" : "below", "exactly one of above and below is required")
            }
            let minutes = try input.integer("for_minutes", in: 1...1440, absent: 5)
            let severity = try input.string("severity", maxLength: 16) ?? "warning"
            guard ["info", "warning", "critical"].contains(severity) else { throw JSONInput.invalid("severity", "must be info, warning or critical") }
            let id = "rl_" + Digest.hex(Digest.randomBytes(8))
            guard try await tenant.database.insert("""
                INSERT INTO alert_rules (rule_id, tenant_id, name, metric, provider, model, comparison, threshold, for_minutes, severity)
                VALUES (\(id), \(tenant.tenantID), \(name), \(metric), \(provider), \(model), \(above == nil ? "below" : "above"), \(threshold), \(Int32(minutes)), \(severity))
                """, whileCount: "SELECT count(*)::bigint AS n FROM alert_rules WHERE tenant_id = \(tenant.tenantID) AND deleted_at IS NULL",
                isBelow: Int64(Self.maxRules), resource: "rules") != nil
            else { throw Problem(.conflict, code: "too_many_rules", title: "Too many rules", detail: "a tenant has at most \(Self.maxRules) rules") }
            let rows = try await tenant.database.query("\(unescaped: Self.select) WHERE r.tenant_id = \(tenant.tenantID) AND r.rule_id = \(id)")
            return try AdminRoutes.json(.created, try Self.rule(rows[0]))
        }
        self.access.route(router, .get, "/v1/rules", scope: .admin) { _, tenant, _ in
            let rows = try await tenant.database.query("\(unescaped: Self.select) WHERE r.tenant_id = \(tenant.tenantID) AND r.deleted_at IS NULL ORDER BY r.created_at, r.rule_id")
            return try AdminRoutes.json(.ok, Rules(items: try rows.map(Self.rule)))
        }
        self.access.route(router, .delete, "/v1/rules/{rule_id}", scope: .admin) { _, tenant, context in
            let id = try ChannelRoutes.pathID(context, "rule_id", noun: "rule")
            let rows = try await tenant.database.query("""
                UPDATE alert_rules SET deleted_at = now() WHERE tenant_id = \(tenant.tenantID) AND rule_id = \(id) AND deleted_at IS NULL RETURNING rule_id
                """)
            guard !rows.isEmpty else { throw ChannelRoutes.notFound(id, "rule_id", noun: "rule") }
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
    }

    struct BudgetItem: Encodable {
        var budget_id: String, name: String, period: String, amount_usd: Double, notify_at: [Int], forecast: Bool, created_at: String
        var spent_usd: Double, percent: Double
    }

    struct Budgets: Encodable { var items: [BudgetItem] }

    /// Each budget with this UTC period's spend so far (the tenant's total hourly rollups).
    static let budgetSelect = """
        SELECT b.budget_id, b.name, b.period, b.amount_nanos, array_to_string(b.notify_percentages, ',') AS notify_at, b.forecast,
               to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
               coalesce((SELECT sum(r.cost_nanos) FROM rollups_1h r WHERE r.tenant_id = b.tenant_id AND r.app = '' AND r.environment = '' AND r.provider = '' AND r.model = ''
                         AND r.window_start >= date_trunc(CASE WHEN b.period = 'day' THEN 'day' ELSE 'month' END, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)::bigint AS spent
        FROM budgets b
        """

    static func budget(_ row: PostgresRow) throws -> BudgetItem {
        let amount = Double(try row.decode("amount_nanos", as: Int64.self)), spent = Double(try row.decode("spent", as: Int64.self))
        return BudgetItem(budget_id: try row.decode("budget_id"), name: try row.decode("name"), period: try row.decode("period"), amount_usd: amount / 1e9,
                          notify_at: (try row.decode("notify_at", as: String.self)).split(separator: ",").compactMap { Int($0) },
                          forecast: try row.decode("forecast"), created_at: try row.decode("created_at"), spent_usd: spent / 1e9, percent: (spent * 1000 / amount).rounded() / 10)
    }

    func addBudgets<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .post, "/v1/budgets", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["name", "period", "amount_usd", "notify_at", "forecast"])
            guard let name = try input.string("name", maxLength: 100) else { throw JSONInput.invalid("name", "required") }
            guard let period = try input.string("period", maxLength: 8), ["day", "month"].contains(period) else { throw JSONInput.invalid("period", "required, day or month") }
            guard let amount = try Self.number(input, "amount_usd"), amount >= 0.000001, amount <= 1_000_000_000 else {
                throw JSONInput.invalid("amount_usd", "required, a number from 0.000001 to 1000000000")
            }
            var percentages = [50, 80, 100]
            if let value = input.members["notify_at"] {
                guard case .array(let items) = value, (1...10).contains(items.count) else { throw JSONInput.invalid("notify_at", "must be an array of 1 to 10 percentages") }
                percentages = try items.map { item in
                    guard case .integer(let p) = item, (1...1000).contains(p) else { throw JSONInput.invalid("notify_at", "each must be an integer percentage from 1 to 1000") }
                    return Int(p)
                }
                percentages = Array(Set(percentages)).sorted()
            }
            let forecast = try input.bool("forecast") ?? true
            let id = "bg_" + Digest.hex(Digest.randomBytes(8))
            guard try await tenant.database.insert("""
                INSERT INTO budgets (budget_id, tenant_id, name, period, amount_nanos, notify_percentages, forecast)
                VALUES (\(id), \(tenant.tenantID), \(name), \(period), \(Int64((amount * 1e9).rounded())), \("{" + percentages.map(String.init).joined(separator: ",") + "}")::integer[], \(forecast))
                """, whileCount: "SELECT count(*)::bigint AS n FROM budgets WHERE tenant_id = \(tenant.tenantID) AND deleted_at IS NULL", isBelow: 20, resource: "budgets") != nil
            else { throw Problem(.conflict, code: "too_many_budgets", title: "Too many budgets", detail: "a tenant has at most 20 budgets") }
            let rows = try await tenant.database.query("\(unescaped: Self.budgetSelect) WHERE b.tenant_id = \(tenant.tenantID) AND b.budget_id = \(id)")
            return try AdminRoutes.json(.created, try Self.budget(rows[0]))
        }
        self.access.route(router, .get, "/v1/budgets", scope: .admin) { _, tenant, _ in
            let rows = try await tenant.database.query("\(unescaped: Self.budgetSelect) WHERE b.tenant_id = \(tenant.tenantID) AND b.deleted_at IS NULL ORDER BY b.created_at, b.budget_id")
            return try AdminRoutes.json(.ok, Budgets(items: try rows.map(Self.budget)))
        }
        self.access.route(router, .delete, "/v1/budgets/{budget_id}", scope: .admin) { _, tenant, context in
            let id = try ChannelRoutes.pathID(context, "budget_id", noun: "budget")
            let rows = try await tenant.database.query("""
                UPDATE budgets SET deleted_at = now() WHERE tenant_id = \(tenant.tenantID) AND budget_id = \(id) AND deleted_at IS NULL RETURNING budget_id
                """)
            guard !rows.isEmpty else { throw ChannelRoutes.notFound(id, "budget_id", noun: "budget") }
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
    }

    /// A finite number member (integer or not), or nil when absent.
    static func number(_ input: JSONInput, _ name: String) throws -> Double? {
        switch input.members[name] {
        case nil: return nil
        case .integer(let i)? where abs(Double(i)) <= 1e15: return Double(i)
        case .number(let d)? where d.isFinite && abs(d) <= 1e15: return d
        default: throw JSONInput.invalid(name, "must be a number between -1e15 and 1e15")
        }
    }
}
