import Events
import Foundation
import Postgres
import Rollups

/// How a period's spend is expected to end: the spend so far, plus the rest of the period as the tenant usually
/// spends it, scaled by how this period compares so far with that usual shape.
public enum BudgetForecast {
    /// `usual[i]`: the usual spend of slot i of the period (an hour of the day, a day of the month); `elapsed`: how
    /// many slots have passed, fractional within the current one. Returns the projected spend at the period's end,
    /// or nil when there is no basis yet (no usual shape and less than 5% of the period gone).
    public static func project(spent: Double, usual: [Double], elapsed: Double) -> Double? {
        guard !usual.isEmpty else { return nil }
        let whole = min(Int(elapsed), usual.count)
        let part = elapsed - Double(whole)
        var before = usual.prefix(whole).reduce(0, +)
        var after = usual.dropFirst(whole).reduce(0, +)
        if whole < usual.count {
            before += usual[whole] * part
            after -= usual[whole] * part
        }
        if before + after > 0, before > 0 {
            // This period against its usual shape so far (at most ten times: an incident, not a new normal).
            let scale = min(spent / before, 10)
            return spent + after * scale
        }
        // No usual shape: the spend so far, extrapolated linearly, once there is something to extrapolate.
        let share = elapsed / Double(usual.count)
        guard share >= 0.05 else { return nil }
        return spent / share
    }
}

/// A spend budget (`budgets`): per tenant and UTC day or month.
struct Budget: Sendable {
    var id: String
    var tenant: String
    var name: String
    var monthly: Bool
    var amountNanos: Int64
    var percentages: [Int]
    var forecast: Bool

    static func from(_ row: PostgresRow) throws -> Budget {
        let percentages = (try row.decode("percentages", as: String.self)).split(separator: ",").compactMap { Int($0) }.sorted()
        return Budget(id: try row.decode("budget_id"), tenant: try row.decode("tenant_id"), name: try row.decode("name"),
                      monthly: try row.decode("period", as: String.self) == "month", amountNanos: try row.decode("amount_nanos"),
                      percentages: percentages, forecast: try row.decode("forecast"))
    }

    static func usd(_ nanos: Double) -> String { String(format: "$%.2f", nanos / Double(LLMEvent.nanosPerUSD)) }
}

extension RuleEvaluator {
    static let day: Int64 = 86_400_000_000
    static let hour: Int64 = 3_600_000_000

    /// The UTC period holding `now`: its start and end (microseconds).
    static func period(monthly: Bool, now: Int64) -> (start: Int64, end: Int64) {
        let dayStart = now / Self.day * Self.day
        guard monthly else { return (dayStart, dayStart + Self.day) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let date = Date(timeIntervalSince1970: Double(dayStart) / 1e6)
        let first = calendar.date(from: calendar.dateComponents([.year, .month], from: date))!
        let next = calendar.date(byAdding: .month, value: 1, to: first)!
        return (Int64(first.timeIntervalSince1970) * 1_000_000, Int64(next.timeIntervalSince1970) * 1_000_000)
    }

    /// The tenant's total cost per window of `granularity` in [from, to), by window start.
    static func costs(_ tenant: String, _ granularity: Granularity, from: Int64, to: Int64, on connection: isolated PostgresConnection) throws -> [Int64: Double] {
        var out: [Int64: Double] = [:]
        for row in try connection.query("""
            SELECT (extract(epoch FROM window_start) * 1000000)::bigint AS w, cost_nanos FROM \(unescaped: granularity.table)
            WHERE tenant_id = \(tenant) AND \(unescaped: SeriesSelection.totalSQL) AND window_start >= to_timestamp(\(Double(from) / 1e6)) AND window_start < to_timestamp(\(Double(to) / 1e6))
            """) {
            out[try row.decode("w", as: Int64.self)] = Double(try row.decode("cost_nanos", as: Int64.self))
        }
        return out
    }

    /// The usual spend of each slot of the period: for a day, each hour at its average over the previous 7 days; for
    /// a month, each day at the average of its weekday over the 28 days before today. Averages are over the days
    /// that had any spend, so a tenant with two days of history is not taken for one that spends a seventh as much.
    static func usualShape(_ budget: Budget, period: (start: Int64, end: Int64), now: Int64, on connection: isolated PostgresConnection) throws -> [Double] {
        if !budget.monthly {
            let history = try Self.costs(budget.tenant, .hour, from: period.start - 7 * Self.day, to: period.start, on: connection)
            let days = Set(history.keys.map { $0 / Self.day }).count
            guard days > 0 else { return [Double](repeating: 0, count: 24) }
            return (0..<24).map { h in (0..<7).reduce(0.0) { $0 + (history[period.start - Int64($1 + 1) * Self.day + Int64(h) * Self.hour] ?? 0) } / Double(days) }
        }
        let today = now / Self.day * Self.day
        let history = try Self.costs(budget.tenant, .day, from: today - 28 * Self.day, to: today, on: connection)
        var sums = [Double](repeating: 0, count: 7), counts = [Double](repeating: 0, count: 7)
        for (start, cost) in history {
            let weekday = Int((start / Self.day + 4) % 7)  // 1970-01-01 was a Thursday
            sums[weekday] += cost
            counts[weekday] += 1
        }
        return stride(from: period.start, to: period.end, by: Int64.Stride(Self.day)).map { start in
            let weekday = Int((start / Self.day + 4) % 7)
            return counts[weekday] > 0 ? sums[weekday] / counts[weekday] : 0
        }
    }

    /// One budget at `now`: alerts for the percentages reached and the forecast (each once a period), the alerts of
    /// earlier periods resolved.
    static func evaluate(_ budget: Budget, now: Int64, deleted: Bool, on connection: isolated PostgresConnection) throws -> [AnomalyMessage] {
        var out: [AnomalyMessage] = []
        let period = Self.period(monthly: budget.monthly, now: now)
        let minute: Int64 = 60_000_000
        // Alerts of earlier periods (or of every period, once the budget is deleted) end.
        for row in try connection.query("""
            SELECT alert_id, level, (extract(epoch FROM period_start) * 1000000)::bigint AS start FROM budget_alerts
            WHERE budget_id = \(budget.id) AND NOT resolved AND (\(deleted) OR period_start < to_timestamp(\(Double(period.start) / 1e6)))
            """) {
            let start: Int64 = try row.decode("start")
            let end = max(Self.period(monthly: budget.monthly, now: start).end, start)
            let message = try Self.budgetMessage(budget, id: try row.decode("alert_id"), level: Int(try row.decode("level", as: Int32.self)), revision: 2,
                                                 status: "resolved", start: start, end: min(end, max(now / minute * minute, start)), spent: nil, projected: nil,
                                                 note: deleted ? "the budget was deleted" : "its period ended")
            try connection.query("UPDATE budget_alerts SET resolved = true WHERE budget_id = \(budget.id) AND alert_id = \(message.anomalyID)")
            try QueryProjector.store(message, on: connection)
            out.append(message)
        }
        guard !deleted else { return out }
        let spent = try Self.costs(budget.tenant, .hour, from: period.start, to: period.end, on: connection).values.reduce(0, +)
        let raised = Set(try connection.query("""
            SELECT level FROM budget_alerts WHERE budget_id = \(budget.id) AND period_start = to_timestamp(\(Double(period.start) / 1e6))
            """).map { Int(try $0.decode("level", as: Int32.self)) })
        var levels = budget.percentages.filter { !raised.contains($0) && spent * 100 >= Double($0) * Double(budget.amountNanos) }
        var projected: Double?
        if budget.forecast, !raised.contains(-1) {
            let slot = budget.monthly ? Self.day : Self.hour
            let elapsed = Double(now - period.start) / Double(slot)
            projected = BudgetForecast.project(spent: spent, usual: try Self.usualShape(budget, period: period, now: now, on: connection), elapsed: elapsed)
            if let projected, projected > Double(budget.amountNanos), spent < Double(budget.amountNanos) { levels.append(-1) }
        }
        for level in levels {
            let id = "budget-\(budget.id)-\(period.start / Self.day)-\(level < 0 ? "forecast" : String(level))"
            let message = try Self.budgetMessage(budget, id: id, level: level, revision: 1, status: "ongoing", start: period.start,
                                                 end: max(now / minute * minute, period.start), spent: spent, projected: projected, note: nil)
            try connection.query("""
                INSERT INTO budget_alerts (budget_id, tenant_id, period_start, level, alert_id)
                VALUES (\(budget.id), \(budget.tenant), to_timestamp(\(Double(period.start) / 1e6)), \(Int32(level)), \(id))
                """)
            try QueryProjector.store(message, on: connection)
            out.append(message)
        }
        return out
    }

    static func budgetMessage(_ budget: Budget, id: String, level: Int, revision: Int64, status: String, start: Int64, end: Int64,
                              spent: Double?, projected: Double?, note: String?) throws -> AnomalyMessage {
        let periodName = budget.monthly ? "month" : "day"
        let amount = Double(budget.amountNanos)
        let explanation: String
        if let note {
            explanation = "Budget “\(budget.name)”: resolved because \(note)."
        } else if level < 0, let projected, let spent {
            explanation = "Budget “\(budget.name)”: at this pace the \(periodName) ends at about \(Budget.usd(projected)), over its \(Budget.usd(amount)) (\(Budget.usd(spent)) spent so far)."
        } else {
            explanation = "Budget “\(budget.name)”: \(Budget.usd(spent ?? 0)) spent this \(periodName), \(Int((spent ?? 0) * 100 / amount))% of \(Budget.usd(amount)) (notified at \(level)%)."
        }
        let message = AnomalyMessage(
            anomalyID: id, tenantID: budget.tenant, provider: "", model: "", metric: level < 0 ? "spend_forecast" : "spend",
            windowStart: EventTimestamp(microsecondsSinceEpoch: start).rfc3339, windowEnd: EventTimestamp(microsecondsSinceEpoch: end).rfc3339,
            status: status, severity: level >= 100 ? "critical" : level >= 80 || level < 0 ? "warning" : "info", detector: "budget",
            observed: (level < 0 ? projected : spent).map { $0 / Double(LLMEvent.nanosPerUSD) }, expectedHigh: amount / Double(LLMEvent.nanosPerUSD),
            unit: "USD", explanation: explanation, revision: revision)
        try message.validate()
        return message
    }
}
