import Events
import Foundation
import Hummingbird
import HTTPTypes
import Postgres
import Rollups

/// `GET /v1/users`: exact per-user totals for chargeback, from the daily per-user totals the aggregator keeps
/// (`user_totals_1d`, written with the rollups, so they add up to the same totals).
///
/// - Top users over whole UTC days `[from, to)`, ordered by cost, requests, tokens or errors, paged with an opaque
///   `cursor` (keyset: stable while the totals grow, no offset scans), as JSON or CSV (`format=csv`).
/// - `user=<id>`: that user's totals per day of the range.
///
/// Events without a `user_id` are answered apart as `unattributed`, so `totals` = the users' sums + `unattributed`.
struct UserRoutes: Sendable {
    let access: TenantAccess

    static let parameters: Set<String> = ["from", "to", "order", "limit", "cursor", "user", "format"]
    static let orders = ["cost": "sum(cost_nanos)", "requests": "sum(requests)", "tokens": "sum(input_tokens) + sum(output_tokens)", "errors": "sum(errors)"]

    func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .get, "/v1/users", scope: .query) { request, tenant, _ in
            try QueryRoutes.allowOnly(Self.parameters, in: request)
            return try await self.users(request, tenant: tenant)
        }
    }

    func users(_ request: Request, tenant: TenantRequest) async throws -> Response {
        let q = request.uri.queryParameters
        let (from, to) = try Self.dayRange(q)
        let csv: Bool
        switch q["format"].map(String.init) ?? "json" {
        case "json": csv = false
        case "csv": csv = true
        default: throw QueryRoutes.bad("format", "must be json or csv")
        }
        if let user = q["user"].map(String.init) {
            let maxLength = EventLimits.default.maxDimensionLength
            guard !user.isEmpty, user.utf8.count <= maxLength else { throw QueryRoutes.bad("user", "must be a user id of 1 to \(maxLength) bytes") }
            for name in ["order", "limit", "cursor"] where q[Substring(name)] != nil { throw QueryRoutes.bad(name, "does not apply with user=") }
            return try await self.oneUser(user, tenant: tenant, from: from, to: to, csv: csv)
        }
        let orderName = q["order"].map(String.init) ?? "cost"
        guard let order = Self.orders[orderName] else { throw QueryRoutes.bad("order", "must be cost, requests, tokens or errors") }
        let limit = try QueryRoutes.limit(q, max: csv ? 100_000 : 1000, default: csv ? 10_000 : 50)
        let cursor = try q["cursor"].map { try Cursor(String($0)) }
        return try await self.top(tenant: tenant, from: from, to: to, orderName: orderName, order: order, limit: limit, cursor: cursor, csv: csv, by: nil)
    }

    /// The top list. Ties on the ordering value are broken by user id, which the cursor also carries.
    /// `by` is set when `/v1/breakdown?by=user` answers (its answer names the dimension like the other breakdowns).
    func top(tenant: TenantRequest, from: Int64, to: Int64, orderName: String, order: String, limit: Int, cursor: Cursor?, csv: Bool, by: String?) async throws -> Response {
        let range: [String?] = [tenant.tenantID, Self.date(from), Self.date(to)]
        var query = PostgresQuery(
            sql: "SELECT user_id, \(UserTotalsStore.sums), \(order) AS sort_value FROM user_totals_1d_tenant WHERE tenant_id = $1 AND day >= $2::date AND day < $3::date AND user_id <> '' GROUP BY user_id",
            parameters: range)
        if let cursor {
            query.parameters += [String(cursor.value), cursor.user]
            query.sql += " HAVING \(order) < $4::bigint OR (\(order) = $4::bigint AND user_id > $5)"
        }
        query.sql += " ORDER BY sort_value DESC, user_id ASC LIMIT \(limit + 1)"
        let rows = try await tenant.database.query(query)
        var items: [(user: String, counters: UsageCounters, sort: Int64)] = []
        for row in rows.prefix(limit) {
            items.append((try row.decode("user_id"), try UsageCounters(row: row), try row.decode("sort_value")))
        }
        let next = rows.count > limit ? items.last.map { Cursor(value: $0.sort, user: $0.user).text } : nil
        if csv {
            var response = Self.csv(header: "user_id", rows: items.map { ($0.user, $0.counters) })
            if let next { response.headers[Self.nextCursorHeader] = next }
            return response
        }
        // Totals of the whole range (first page only would be cheaper, but every page answering the same totals is
        // what a client paging through expects).
        let totals = try await tenant.database.query(PostgresQuery(
            sql: """
                SELECT (user_id = '') AS unattributed, count(DISTINCT user_id)::bigint AS users, \(UserTotalsStore.sums)
                FROM user_totals_1d_tenant WHERE tenant_id = $1 AND day >= $2::date AND day < $3::date GROUP BY (user_id = '')
                """,
            parameters: range))
        var all = UsageCounters()
        var unattributed = UsageCounters()
        var users: Int64 = 0
        for row in totals {
            let counters = try UsageCounters(row: row)
            all.merge(counters)
            if try row.decode("unattributed", as: Bool.self) { unattributed = counters } else { users = try row.decode("users") }
        }
        var out = "{\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: from).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\"" + (by.map { ",\"by\":\"\($0)\"" } ?? "") + ",\"order\":\"\(orderName)\""
        out += ",\"users\":\(users),\"totals\":\(all.json),\"unattributed\":\(unattributed.json),\"items\":["
        out += items.map { "{\"user_id\":\(jsonStringLiteral($0.user)),\"values\":\($0.counters.json)}" }.joined(separator: ",")
        out += "],\"next_cursor\":" + (next.map(jsonStringLiteral) ?? "null") + "}"
        return QueryRoutes.json(Array(out.utf8))
    }

    func oneUser(_ user: String, tenant: TenantRequest, from: Int64, to: Int64, csv: Bool) async throws -> Response {
        let rows = try await tenant.database.query(PostgresQuery(
            sql: """
                SELECT to_char(day, 'YYYY-MM-DD') AS day, \(UsageCounters.fields.map(\.column).joined(separator: ", "))
                FROM user_totals_1d_tenant WHERE tenant_id = $1 AND day >= $2::date AND day < $3::date AND user_id = $4 ORDER BY day
                """,
            parameters: [tenant.tenantID, Self.date(from), Self.date(to), user]))
        var days: [(day: String, counters: UsageCounters)] = []
        var total = UsageCounters()
        for row in rows {
            let counters = try UsageCounters(row: row)
            total.merge(counters)
            days.append((try row.decode("day"), counters))
        }
        if csv { return Self.csv(header: "day", rows: days.map { ($0.day, $0.counters) }) }
        var out = "{\"user_id\":\(jsonStringLiteral(user)),\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: from).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\""
        out += ",\"totals\":\(total.json),\"days\":["
        out += days.map { "{\"day\":\"\($0.day)\",\"values\":\($0.counters.json)}" }.joined(separator: ",")
        out += "]}"
        return QueryRoutes.json(Array(out.utf8))
    }

    // MARK: - Helpers

    static let nextCursorHeader = HTTPField.Name("X-Next-Cursor")!

    /// RFC 4180 CSV with a header row; cost in exact decimal dollars. A cell a spreadsheet would run as a formula
    /// (starting with =, +, -, @, tab or CR) is prefixed with a single quote (OWASP, "CSV injection").
    static func csv(header: String, rows: [(String, UsageCounters)]) -> Response {
        let columns = UsageCounters.fields.map { $0.column == "cost_nanos" ? "cost_usd" : $0.column }
        var out = ([header] + columns).joined(separator: ",") + "\r\n"
        for (key, counters) in rows {
            out += Self.csvCell(key)
            for field in UsageCounters.fields {
                let n = counters[keyPath: field.keyPath]
                out += "," + (field.column == "cost_nanos" ? LLMEvent.decimalUSD(nanos: n) : String(n))
            }
            out += "\r\n"
        }
        return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"users.csv\""],
                         body: .init(byteBuffer: ByteBuffer(string: out)))
    }

    /// A cell a spreadsheet shows as text: a value a spreadsheet could read as a formula gets a leading `'` (OWASP's
    /// CSV injection advice), including ones that start with blanks or invisible characters a spreadsheet skips
    /// (space, no-break space, zero-width space, BOM) or with a fullwidth or pipe form of an operator.
    static func csvCell(_ text: String) -> String {
        var cell = text
        if let first = cell.unicodeScalars.first, Self.formulaStart.contains(first) || first.properties.isWhitespace || Self.invisible.contains(first) {
            cell = "'" + cell
        }
        guard cell.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return cell }
        return "\"" + cell.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static let formulaStart = Set("=+-@|%\t\r\u{FF1D}\u{FF0B}\u{FF0D}\u{FF20}\u{FE62}\u{FE63}\u{FE66}".unicodeScalars)
    static let invisible = Set("\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}".unicodeScalars)

    /// `from` and `to` as whole UTC days: `YYYY-MM-DD` or an RFC 3339 time at midnight UTC. Default: the last 7 days,
    /// today included; at most `QueryRoutes.maxRangeDays`.
    static func dayRange(_ q: Hummingbird.Parameters) throws -> (Int64, Int64) {
        let day = Granularity.day.microseconds
        func parse(_ name: String) throws -> Int64? {
            guard let text = q[Substring(name)] else { return nil }
            let t = EventTimestamp(rfc3339: text) ?? (text.utf8.count == 10 ? EventTimestamp(rfc3339: text + "T00:00:00Z") : nil)
            guard let t, EventTimestamp.acceptedRange.contains(t.microsecondsSinceEpoch) else {
                throw QueryRoutes.bad(name, "must be a date (YYYY-MM-DD) or an RFC 3339 date-time from 1970 on")
            }
            guard t.microsecondsSinceEpoch % day == 0 else { throw QueryRoutes.bad(name, "per-user totals are kept per UTC day; give a date or a time at 00:00:00Z") }
            return t.microsecondsSinceEpoch
        }
        let to = try parse("to") ?? Granularity.day.windowStart(EventTimestamp.now()) + day
        let from = try parse("from") ?? to - 7 * day
        guard from < to else { throw QueryRoutes.bad("from", "must be before to") }
        guard to - from <= QueryRoutes.maxRangeDays * day else { throw QueryRoutes.bad("from", "the range is longer than \(QueryRoutes.maxRangeDays) days") }
        return (from, to)
    }

    static func date(_ us: Int64) -> String { String(EventTimestamp(microsecondsSinceEpoch: us).rfc3339.prefix(10)) }

    /// Where the last page ended: its ordering value and user id, as base64url text.
    struct Cursor {
        let value: Int64
        let user: String

        init(value: Int64, user: String) {
            self.value = value
            self.user = user
        }

        init(_ text: String) throws {
            var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while b64.count % 4 != 0 { b64 += "=" }
            guard text.utf8.count <= 1024, let data = Data(base64Encoded: b64), let decoded = String(data: data, encoding: .utf8),
                let colon = decoded.firstIndex(of: ":"), let value = Int64(decoded[..<colon]), value >= 0
            else { throw QueryRoutes.bad("cursor", "not a cursor this API returned; start again without it") }
            self.value = value
            self.user = String(decoded[decoded.index(after: colon)...])
        }

        var text: String {
            Data("\(self.value):\(self.user)".utf8).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
    }
}
