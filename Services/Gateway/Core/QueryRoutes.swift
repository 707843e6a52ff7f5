import Events
import Foundation
import Hummingbird
import HTTPTypes
import Metrics
import Postgres
import Rollups

/// The query API, every answer scoped to the caller's tenant (the tenant id comes from the key and is bound into
/// every statement; no parameter can name another tenant):
///
/// - `GET /v1/series?metric=&from=&to=&step=&provider=&model=`: one metric over time.
/// - `GET /v1/breakdown?from=&to=&by=model|provider&order=cost|requests|tokens|errors&limit=`: totals and top-N.
/// - `GET /v1/anomalies?from=&to=`: anomalies of the range.
///
/// Answers are computed from the Postgres rollups; percentiles merge the stored sketches exactly (1% relative error).
public struct QueryRoutes: Sendable {
    let access: TenantAccess
    let readModel: ReadModel?
    private let readModelHits = Counter(label: "tw_gateway_query_source_total", dimensions: [("source", "read_model")])
    private let postgresReads = Counter(label: "tw_gateway_query_source_total", dimensions: [("source", "postgres")])
    /// Most points in one series answer (range / step).
    public static let maxPoints = 10_000
    /// Series points that cost one unit of the request budget.
    static let pointsPerRequest = 1000
    /// Longest range of a breakdown or anomaly query.
    public static let maxRangeDays: Int64 = 400
    /// Most rollup rows one answer may merge (a range x series bound): more is refused with advice to narrow it,
    /// so no query can make the gateway or Postgres hold an unbounded result.
    public static let maxRows = 200_000

    public init(access: TenantAccess, readModel: ReadModel?) {
        self.access = access
        self.readModel = readModel
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        // Series and breakdowns take turns fairly between tenants (`TenantAccess.queries`): one tenant's flood of
        // heavy queries waits for its own turns, not in front of everyone's.
        self.access.route(router, .get, "/v1/series", scope: .query) { request, tenant, _ in
            try Self.allowOnly(Set(["metric", "from", "to", "step", "error_type", "user", "tag."] + Self.filterParameters), in: request)
            return try await self.access.queries.turn(tenant: tenant.tenantID) { try await self.series(request, tenant: tenant) }
        }
        self.access.route(router, .get, "/v1/breakdown", scope: .query) { request, tenant, _ in
            try Self.allowOnly(Set(["from", "to", "by", "order", "limit", "tag."] + Self.filterParameters), in: request)
            return try await self.access.queries.turn(tenant: tenant.tenantID) { try await self.breakdown(request, tenant: tenant) }
        }
        self.access.route(router, .get, "/v1/anomalies", scope: .query) { request, tenant, _ in
            try Self.allowOnly(["from", "to", "severity", "metric", "status", "provider", "model", "app", "environment", "limit"], in: request)
            return try await self.anomalies(request, tenant: tenant)
        }
        self.access.route(router, .get, "/v1/anomalies/{anomaly_id}/evidence", scope: .query) { request, tenant, context in
            try Self.allowOnly(["limit"], in: request)
            let id = context.parameters.get("anomaly_id") ?? ""
            return try await self.evidence(id, limit: try Self.limit(request.uri.queryParameters, max: 100, default: 30), tenant: tenant)
        }
        UserRoutes(access: self.access).add(to: router)
    }

    // MARK: - Evidence

    /// One call of an anomaly's evidence, as answered.
    struct EvidenceItem: Encodable {
        var kind: String
        var event_id: String
        var at: String
        var provider: String
        var model: String
        var app: String?
        var environment: String?
        var user_id: String?
        var trace_id: String?
        var span_id: String?
        var trace_url: String?
        var latency_ms: Double
        var cost_usd: Decimal?
        var error_type: String?
    }

    struct Evidence: Encodable {
        var anomaly_id: String
        var metric: String
        var kind: String?
        var items: [EvidenceItem]
    }

    /// `GET /v1/anomalies/{id}/evidence`: the sampled calls of the anomaly's series and windows, the kind that
    /// explains its metric first (latency: the slowest; errors: the failed; cost: the most expensive), each with a
    /// link into the tenant's tracing tool when its `trace_url_template` is set.
    func evidence(_ id: String, limit: Int, tenant: TenantRequest) async throws -> Response {
        guard (1...128).contains(id.utf8.count) else { throw Self.bad("anomaly_id", "must be 1 to 128 characters") }
        let rows = try await tenant.database.query("SELECT body::text AS body FROM anomalies WHERE tenant_id = \(tenant.tenantID) AND anomaly_id = \(id)")
        guard let body = try rows.first?.decode("body", as: String.self), let anomaly = try? AnomalyMessage(json: Array(body.utf8)) else {
            throw Problem(.notFound, code: "not_found", title: "Not found", detail: "anomaly_id: no anomaly '\(id.prefix(128))' of this tenant")
        }
        let primary: EvidenceKind? = switch anomaly.metric {
        case "latency_p95", "ttft_p95": .slowest
        case "error_rate": .failed
        case "cost_per_request", "cost_per_hour", "spend", "spend_forecast", "output_tokens_per_request": .costliest
        default: nil
        }
        let end = (EventTimestamp(rfc3339: anomaly.windowEnd)?.microsecondsSinceEpoch ?? anomaly.windowStartMicros) + 60_000_000
        var query = PostgresQuery(
            sql: """
                SELECT kind, event_id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, provider, model, app, environment, user_id,
                       trace_id, span_id, latency_ms, cost_nanos, error_type
                FROM evidence_samples WHERE tenant_id = $1 AND window_start >= $2::timestamptz AND window_start < $3::timestamptz
                """,
            parameters: [tenant.tenantID, anomaly.windowStart, EventTimestamp(microsecondsSinceEpoch: end).rfc3339])
        // The anomaly's series: its provider and model when set; its app or environment when set (`default` is the
        // calls that named none).
        for (column, value) in [("provider", anomaly.provider), ("model", anomaly.model), ("app", anomaly.app ?? ""), ("environment", anomaly.environment ?? "")] where !value.isEmpty {
            query.parameters.append(value)
            query.sql += value == SeriesDimension.defaultValue && (column == "app" || column == "environment")
                ? " AND (\(column) IS NULL OR \(column) = $\(query.parameters.count))" : " AND \(column) = $\(query.parameters.count)"
        }
        query.parameters.append(primary?.rawValue ?? "")
        query.sql += " ORDER BY (kind = $\(query.parameters.count)) DESC, kind, value DESC, event_id LIMIT \(limit)"
        let template = try await self.access.postgres.query("SELECT trace_url_template FROM tenants WHERE tenant_id = \(tenant.tenantID)").first?
            .decodeIfPresent("trace_url_template", as: String.self)
        var items: [EvidenceItem] = []
        for row in try await tenant.database.query(query) {
            let traceID: String? = try row.decodeIfPresent("trace_id")
            let spanID: String? = try row.decodeIfPresent("span_id")
            let linkable = traceID.map { $0.contains { $0 != "0" } } ?? false
            items.append(EvidenceItem(
                kind: try row.decode("kind"), event_id: try row.decode("event_id"), at: try row.decode("at"), provider: try row.decode("provider"),
                model: try row.decode("model"), app: try row.decodeIfPresent("app"), environment: try row.decodeIfPresent("environment"),
                user_id: try row.decodeIfPresent("user_id"), trace_id: traceID, span_id: spanID,
                trace_url: linkable ? template.map { $0.replacingOccurrences(of: "{trace_id}", with: traceID!).replacingOccurrences(of: "{span_id}", with: spanID ?? "") } : nil,
                latency_ms: try row.decode("latency_ms"), cost_usd: try row.decodeIfPresent("cost_nanos", as: Int64.self).map { Decimal(string: LLMEvent.decimalUSD(nanos: $0))! },
                error_type: try row.decodeIfPresent("error_type")))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Self.json(Array(try encoder.encode(Evidence(anomaly_id: anomaly.anomalyID, metric: anomaly.metric, kind: primary?.rawValue, items: items))))
    }

    /// Refuses unknown query parameters (a typo like `modle=` would otherwise silently widen the answer) and
    /// repeated ones (which of two values applies would be a guess; every filter takes one value).
    static func allowOnly(_ names: Set<String>, in request: Request) throws {
        var seen: Set<String> = []
        for (name, _) in request.uri.queryParameters {
            let key = String(name)
            guard names.contains(key) || TenantAccess.tenantParameters.contains(key) || (names.contains("tag.") && key.hasPrefix("tag.")) else {
                throw bad(String(key.prefix(64)), "unknown parameter; expected one of \(names.sorted().joined(separator: ", "))")
            }
            guard seen.insert(key).inserted || TenantAccess.tenantParameters.contains(key) else { throw bad(key, "given more than once; give it once") }
        }
    }

    // MARK: - Series

    func series(_ request: Request, tenant: TenantRequest) async throws -> Response {
        let q = request.uri.queryParameters
        guard let metricName = q["metric"].map(String.init), let metric = Metric(rawValue: metricName) else {
            throw Self.bad("metric", "must be one of \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let (from, to) = try Self.range(q)
        let step = try Self.step(q["step"].map(String.init) ?? "1m")
        let points = (to - from + step.microseconds - 1) / step.microseconds
        guard points <= Self.maxPoints else { throw Self.bad("from", "the range holds \(points) steps of \(step.rawValue); at most \(Self.maxPoints)") }
        // A series costs a request per `pointsPerRequest` points beyond the first request (10,000 points: 11).
        try await self.access.chargeRequests(Int(points) / Self.pointsPerRequest, caller: tenant.caller)
        let start = step.windowStart(EventTimestamp(microsecondsSinceEpoch: from))
        if let user = q["user"].map(String.init) { return try await self.userSeries(user, metric: metric, q, tenant: tenant, from: start, to: to, step: step) }
        let selection = SeriesSelection(filters: try Self.seriesFilters(q))
        try Self.answerable(selection)
        if metric.isDistinct, !selection.filters.isEmpty {
            throw Self.bad("metric", "distinct users and sessions are counted for the tenant's total; leave out the filters")
        }
        // One error type's share of the errors: `errors` and `error_rate` count only the failures of that type.
        let errorType = q["error_type"].map(String.init)
        if let errorType {
            guard metric == .errors || metric == .errorRate else { throw Self.bad("error_type", "applies to metric=errors and metric=error_rate only") }
            guard !errorType.isEmpty, errorType.utf8.count <= EventLimits.default.maxErrorTypeLength else {
                throw Self.bad("error_type", "must be 1 to \(EventLimits.default.maxErrorTypeLength) bytes")
            }
        }
        let (rows, source) = try await self.seriesRecords(tenant.database, step: step, from: start, to: to, selection: selection, readModel: !metric.isDistinct)
        var byWindow: [Int64: RollupValues] = [:]
        for record in rows { byWindow[record.key.windowStart, default: RollupValues()].merge(record.values) }
        var out: [UInt8] = []
        out.append(contentsOf: Array("{\"metric\":\"\(metric.rawValue)\",\"unit\":\"\(metric.unit)\",\"step\":\"\(step.rawValue)\",\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: start).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\",\"points\":[".utf8))
        var t = start
        var first = true
        while t < to {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            var values = byWindow[t] ?? RollupValues()
            if let errorType { values.errors = values.errorsByType[errorType] ?? 0 }
            let value = metric.json(values)
            out.append(contentsOf: Array("{\"t\":\"\(EventTimestamp(microsecondsSinceEpoch: t).rfc3339)\",\"value\":\(value)}".utf8))
            t += step.microseconds
        }
        out.append(contentsOf: Array("]}".utf8))
        var response = Self.json(out)
        response.headers[Self.sourceHeader] = source
        return response
    }

    /// One user's series, from the per-user daily totals: whole days (`step=1d`), the counter metrics and the error
    /// rate, no other filter (per-user totals are not broken down by series).
    func userSeries(_ user: String, metric: Metric, _ q: Hummingbird.Parameters, tenant: TenantRequest, from: Int64, to: Int64, step: Granularity) async throws -> Response {
        let maxLength = EventLimits.default.maxDimensionLength
        guard !user.isEmpty, user.unicodeScalars.count <= maxLength else { throw Self.bad("user", "must be a user id of 1 to \(maxLength) characters") }
        guard step == .day else { throw Self.bad("step", "a user's series is kept per UTC day: step=1d") }
        guard [.requests, .errors, .errorRate, .inputTokens, .outputTokens, .costUSD].contains(metric) else {
            throw Self.bad("metric", "a user's series holds requests, errors, error_rate, input_tokens, output_tokens and cost_usd")
        }
        if let other = (Self.filterParameters + ["error_type"]).first(where: { q[Substring($0)] != nil }) ?? q.first(where: { $0.key.hasPrefix("tag.") }).map({ String($0.key.prefix(70)) }) {
            throw Self.bad(other, "per-user totals are not broken down by series; leave it out with user=")
        }
        let rows = try await tenant.database.query(PostgresQuery(
            sql: """
                SELECT (extract(epoch FROM day::timestamp AT TIME ZONE 'UTC') * 1000000)::bigint AS day_us, \(UsageCounters.fields.map(\.column).joined(separator: ", "))
                FROM user_totals_1d_tenant WHERE tenant_id = $1 AND user_id = $2 AND day >= $3::timestamptz::date AND day < $4::timestamptz::date
                """,
            parameters: [tenant.tenantID, user, EventTimestamp(microsecondsSinceEpoch: from).rfc3339, EventTimestamp(microsecondsSinceEpoch: to).rfc3339]))
        var byDay: [Int64: RollupValues] = [:]
        for row in rows {
            let c = try UsageCounters(row: row)
            var v = RollupValues()
            (v.requests, v.errors, v.inputTokens, v.outputTokens, v.costNanos) = (c.requests, c.errors, c.inputTokens, c.outputTokens, c.costNanos)
            byDay[try row.decode("day_us")] = v
        }
        var out = "{\"metric\":\"\(metric.rawValue)\",\"unit\":\"\(metric.unit)\",\"step\":\"1d\",\"user_id\":\(jsonStringLiteral(user)),\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: from).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\",\"points\":["
        var t = from
        var points: [String] = []
        while t < to {
            points.append("{\"t\":\"\(EventTimestamp(microsecondsSinceEpoch: t).rfc3339)\",\"value\":\(metric.json(byDay[t] ?? RollupValues()))}")
            t += step.microseconds
        }
        out += points.joined(separator: ",") + "]}"
        var response = Self.json(Array(out.utf8))
        response.headers[Self.sourceHeader] = "postgres"
        return response
    }

    /// Which store answered a series or breakdown: `read_model`, `read_model+postgres` or `postgres`.
    public static let sourceHeader = HTTPField.Name("X-Tokenwatch-Source")!

    /// 1-minute windows of the last 24 hours come from the Redis read model below the tenant's horizon (the windows
    /// the query service has complete), the rest from Postgres. Any Redis failure falls back to Postgres.
    func seriesRecords(_ db: TenantDatabase, step: Granularity, from: Int64, to: Int64, selection: SeriesSelection, readModel useReadModel: Bool = true) async throws -> ([RollupRecord], String) {
        // The read model holds the published levels only (`SeriesKey.keepsDistributions`).
        if step == .minute, useReadModel, let readModel = self.readModel, selection.storedLevel.map(SeriesKey.watchedLevels.contains) == true, from >= EventTimestamp.now().microsecondsSinceEpoch - 24 * 3_600_000_000,
            let horizon = try? await readModel.horizon(tenant: db.tenantID), horizon > from,
            let selected = try? await readModel.windows(tenant: db.tenantID, from: from, to: min(to, horizon), include: selection.matches)
        {
            self.readModelHits.increment()
            guard horizon < to else { return (selected, "read_model") }
            let rest = try await self.records(db, granularity: step, from: horizon, to: to, selection: selection)
            return (selected + rest, "read_model+postgres")
        }
        self.postgresReads.increment()
        return (try await self.records(db, granularity: step, from: from, to: to, selection: selection), "postgres")
    }

    // MARK: - Breakdown

    func breakdown(_ request: Request, tenant: TenantRequest) async throws -> Response {
        let q = request.uri.queryParameters
        let by = q["by"].map(String.init) ?? "model"
        let tagKey = by.hasPrefix("tag:") ? String(by.dropFirst(4)) : nil
        guard Self.breakdownDimensions[by] != nil || by == "user" || tagKey.map(Self.isTagKey) == true else {
            throw Self.bad("by", "must be model, provider, app, environment, error_type, user or tag:<promoted tag key>")
        }
        let order = q["order"].map(String.init) ?? (by == "error_type" ? "errors" : "cost")
        guard ["cost", "requests", "tokens", "errors"].contains(order) else { throw Self.bad("order", "must be cost, requests, tokens or errors") }
        if by == "error_type", order != "errors" { throw Self.bad("order", "by=error_type is ordered by errors") }
        let limit = try Self.limit(q, max: 1000, default: 10)
        if by == "user" {
            if let filter = Self.filterParameters.first(where: { q[Substring($0)] != nil }) ?? q.first(where: { $0.key.hasPrefix("tag.") }).map({ String($0.key.prefix(70)) }) {
                throw Self.bad(filter, "per-user totals are not broken down by series; leave it out with by=user")
            }
            // Per-user totals are kept per UTC day: the range is whole days, the last 7 by default (as /v1/users).
            let (from, to) = try UserRoutes.dayRange(q)
            guard let orderSQL = UserRoutes.orders[order] else { throw Self.bad("order", "must be cost, requests, tokens or errors") }
            return try await UserRoutes(access: self.access).top(tenant: tenant, from: from, to: to, orderName: order, order: orderSQL, limit: limit, cursor: nil, csv: false, by: "user")
        }
        let (from, to) = try Self.range(q)
        guard to - from <= Self.maxRangeDays * Granularity.day.microseconds else { throw Self.bad("from", "the range is longer than \(Self.maxRangeDays) days") }
        let groupBy = tagKey == nil ? Self.breakdownDimensions[by] ?? [] : [.tagValue]
        var selection = SeriesSelection(filters: try Self.seriesFilters(q), groupBy: Set(groupBy))
        if let tagKey {
            guard selection.filters[.tagKey] == nil || selection.filters[.tagKey] == tagKey else { throw Self.bad("by", "a tag breakdown takes no filter on another tag") }
            selection.filters[.tagKey] = tagKey
        }
        try Self.answerable(selection)
        let (records, source) = try await self.breakdownRecords(tenant.database, from: from, to: to, selection: selection)
        if by == "error_type" { return Self.errorTypes(records, from: from, to: to, limit: limit, source: source) }
        var total = RollupValues()
        var groups: [[String]: RollupValues] = [:]
        for record in records {
            total.merge(record.values)
            groups[groupBy.map { record.key.series[$0] }, default: RollupValues()].merge(record.values)
        }
        let sortKey: (RollupValues) -> Int64 = {
            switch order {
            case "requests": return $0.requests
            case "tokens": return $0.inputTokens.saturatingAdd($0.outputTokens)
            case "errors": return $0.errors
            default: return $0.costNanos
            }
        }
        // Most first; ties in name order, so pages and tests are stable.
        let items = groups.sorted { a, b in
            let (ka, kb) = (sortKey(a.value), sortKey(b.value))
            return ka != kb ? ka > kb : a.key.lexicographicallyPrecedes(b.key)
        }.prefix(limit)
        var out: [UInt8] = Array("{\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: from).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\",\"by\":\"\(by)\",\"order\":\"\(order)\",\"totals\":".utf8)
        out.append(contentsOf: Self.summary(total).utf8)
        out.append(contentsOf: Array(",\"items\":[".utf8))
        for (i, item) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "{"))
            for (d, value) in zip(groupBy, item.key) {
                writeJSONString(d.rawValue, into: &out)
                out.append(UInt8(ascii: ":"))
                writeJSONString(value, into: &out)
                out.append(UInt8(ascii: ","))
            }
            out.append(contentsOf: Array("\"values\":".utf8))
            out.append(contentsOf: Self.summary(item.value).utf8)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: Array("]}".utf8))
        var response = Self.json(out)
        response.headers[Self.sourceHeader] = source
        return response
    }

    /// What each `by` groups by: each filter dimension by itself, except that a model is named with its provider
    /// (`error_type` and `user` are not series dimensions; tags are `tag:<key>`).
    static let breakdownDimensions: [String: [SeriesDimension]] = {
        var out = Dictionary(uniqueKeysWithValues: filterDimensions.map { ($0.rawValue, [$0]) })
        out["model"] = [.provider, .model]
        out["error_type"] = []
        return out
    }()

    /// Failures by error type (`unknown` for errors reported without one) of the selected series, most first.
    static func errorTypes(_ records: [RollupRecord], from: Int64, to: Int64, limit: Int, source: String) -> Response {
        var total = RollupValues()
        for record in records { total.merge(record.values) }
        let items = total.errorsByType.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(limit)
        var out = "{\"from\":\"\(EventTimestamp(microsecondsSinceEpoch: from).rfc3339)\",\"to\":\"\(EventTimestamp(microsecondsSinceEpoch: to).rfc3339)\",\"by\":\"error_type\",\"order\":\"errors\",\"totals\":"
        out += Self.summary(total) + ",\"items\":["
        out += items.map { type, count in
            let share = total.errors > 0 ? Self.number(Double(count) / Double(total.errors)) : "null"
            let rate = total.requests > 0 ? Self.number(Double(count) / Double(total.requests)) : "null"
            return "{\"error_type\":\(jsonStringLiteral(type)),\"values\":{\"errors\":\(count),\"share_of_errors\":\(share),\"error_rate\":\(rate)}}"
        }.joined(separator: ",")
        out += "]}"
        var response = Self.json(Array(out.utf8))
        response.headers[Self.sourceHeader] = source
        return response
    }

    /// From the coarsest rollup table whose windows tile the range exactly: exact, and cheap for long ranges.
    /// (Not from the read model: a breakdown needs every series, and decoding them all from Redis measured slower
    /// than one indexed Postgres query.)
    func breakdownRecords(_ db: TenantDatabase, from: Int64, to: Int64, selection: SeriesSelection) async throws -> ([RollupRecord], String) {
        let granularity: Granularity = [Granularity.day, .hour, .minute].first(where: { from % $0.microseconds == 0 && to % $0.microseconds == 0 }) ?? Granularity.minute
        return (try await self.records(db, granularity: granularity, from: granularity.windowStart(EventTimestamp(microsecondsSinceEpoch: from)), to: to, selection: selection), "postgres")
    }

    // MARK: - Anomalies

    /// Filters: `severity` (the least: info, warning, critical), `metric`, `status` (ongoing, resolved), `provider`,
    /// `model`, `limit` (1...1000, default 100). Anomalies are listed when they overlap the range, newest first.
    func anomalies(_ request: Request, tenant: TenantRequest) async throws -> Response {
        let q = request.uri.queryParameters
        let (from, to) = try Self.range(q)
        var query = PostgresQuery(
            sql: """
                SELECT coalesce(json_agg(a.body ORDER BY a.window_start DESC), '[]'::json)::text AS items FROM (
                    SELECT body, window_start FROM anomalies WHERE tenant_id = $1
                    AND window_start < $3::timestamptz AND coalesce((body->>'window_end')::timestamptz, window_start) >= $2::timestamptz
                """,
            parameters: [tenant.tenantID, EventTimestamp(microsecondsSinceEpoch: from).rfc3339, EventTimestamp(microsecondsSinceEpoch: to).rfc3339])
        func filter(_ name: String, _ condition: String, allowed: [String]? = nil, value given: String? = nil) throws {
            guard let value = given ?? q[Substring(name)].map(String.init) else { return }
            if let allowed, !allowed.contains(value) { throw Self.bad(name, "must be one of \(allowed.joined(separator: ", "))") }
            guard value.utf8.count <= 256 else { throw Self.bad(name, "longer than 256 bytes") }
            query.parameters.append(value)
            query.sql += " AND " + condition.replacingOccurrences(of: "$?", with: "$\(query.parameters.count)")
        }
        let severities = ["info", "warning", "critical"]
        try filter("severity", "array_position(ARRAY['info','warning','critical'], body->>'severity') >= array_position(ARRAY['info','warning','critical'], $?)", allowed: severities)
        try filter("metric", "body->>'metric' = $?", allowed: Vocabulary.anomalyMetrics)
        try filter("status", "body->>'status' = $?", allowed: ["ongoing", "resolved"])
        let (provider, model) = Self.seriesFilter(q)
        try filter("provider", "body->>'provider' = $?", value: provider)
        try filter("model", "body->>'model' = $?", value: model)
        try filter("app", "coalesce(body->>'app', '') = $?")
        try filter("environment", "coalesce(body->>'environment', '') = $?")
        let limit = try Self.limit(q, max: 1000, default: 100)
        query.sql += " ORDER BY window_start DESC LIMIT \(limit)) a"
        let rows = try await tenant.database.query(query)
        let items: String = try rows[0].decode("items")
        return Self.json(Array("{\"items\":\(items)}".utf8))
    }

    // MARK: - Helpers

    static let normalizer = EventNormalizer()

    /// The `provider` and `model` filters in the canonical form ingest stores (`claude-3-5-haiku-latest` finds
    /// `claude-3-5-haiku`, `OpenAI` finds `openai`).
    static func seriesFilter(_ q: Hummingbird.Parameters) -> (provider: String?, model: String?) {
        let provider = q["provider"].map { Self.normalizer.provider(String($0)) }
        let model = q["model"].map { Self.normalizer.model(String($0), provider: q["provider"].map(String.init)) }
        return (provider, model)
    }

    /// The dimensions filtered by a parameter of their name (tags are filtered as `tag.<key>=`).
    static let filterDimensions = SeriesDimension.allCases.filter { !SeriesKey.tagLevel.contains($0) }
    static let filterParameters = filterDimensions.map(\.rawValue)

    static func isTagKey(_ key: String) -> Bool {
        !key.isEmpty && key.unicodeScalars.count <= SeriesDimension.tagKey.maxLength && !key.unicodeScalars.contains { $0.value < 0x20 }
    }

    /// Refuses a query no stored level answers: a promoted tag filtered or broken down with another dimension.
    static func answerable(_ selection: SeriesSelection) throws {
        guard selection.storedLevel == nil else { return }
        throw Self.bad("tag.", "a promoted tag is rolled up on its own: filter or break down by one tag without app, environment, provider or model")
    }

    /// Every dimension filter of a query: provider and model normalized as ingest does, app and environment as sent,
    /// one promoted tag as `tag.<key>=<value>`.
    static func seriesFilters(_ q: Hummingbird.Parameters) throws -> [SeriesDimension: String] {
        let (provider, model) = Self.seriesFilter(q)
        var filters: [SeriesDimension: String] = [:]
        for (name, value) in q where name.hasPrefix("tag.") {
            let key = String(name.dropFirst(4))
            guard Self.isTagKey(key) else { throw Self.bad("tag.", "tag.<key>: the key must be 1 to \(SeriesDimension.tagKey.maxLength) characters") }
            guard filters[.tagKey] == nil || filters[.tagKey] == key else { throw Self.bad(String(name.prefix(70)), "one tag filter at a time (tags are not crossed with each other)") }
            guard !value.isEmpty, value.unicodeScalars.count <= SeriesDimension.tagValue.maxLength else {
                throw Self.bad(String(name.prefix(70)), "must be 1 to \(SeriesDimension.tagValue.maxLength) characters")
            }
            filters[.tagKey] = key
            filters[.tagValue] = String(value)
        }
        for d in Self.filterDimensions {
            guard let raw = q[Substring(d.rawValue)].map(String.init) else { continue }
            let value = d == .provider ? provider ?? raw : d == .model ? model ?? raw : raw
            guard !value.isEmpty, value.unicodeScalars.count <= d.maxLength else { throw Self.bad(d.rawValue, "must be 1 to \(d.maxLength) characters") }
            filters[d] = value
        }
        return filters
    }

    /// The tenant's rows of windows starting in [from, to): the series `selection` picks, or all of them (totals
    /// included) when it is nil.
    func records(_ db: TenantDatabase, granularity: Granularity, from: Int64, to: Int64, selection: SeriesSelection?) async throws -> [RollupRecord] {
        var query = PostgresQuery(
            sql: "SELECT \(RollupStore.selectColumns) FROM \(granularity.table) WHERE tenant_id = $1 AND window_start >= $2::timestamptz AND window_start < $3::timestamptz",
            parameters: [db.tenantID, EventTimestamp(microsecondsSinceEpoch: from).rfc3339, EventTimestamp(microsecondsSinceEpoch: to).rfc3339])
        if let selection {
            let (condition, parameters) = selection.sqlCondition(firstParameter: 4)
            query.sql += " AND " + condition
            query.parameters += parameters.map { Optional($0) }
        }
        query.sql += " LIMIT \(Self.maxRows + 1)"
        let rows = try await db.query(query)
        guard rows.count <= Self.maxRows else {
            throw Problem(.unprocessableContent, code: "result_too_large", title: "Result too large",
                detail: "the answer would merge more than \(Self.maxRows) rollup rows; narrow the range, use a coarser step or filter by provider or model")
        }
        return try rows.map { try RollupStore.record($0, granularity: granularity) }
    }

    static func summary(_ v: RollupValues) -> String {
        let rate = v.requests > 0 ? number(Double(v.errors) / Double(v.requests)) : "null"
        func q(_ s: QuantileSketch, _ p: Double) -> String { s.quantile(p).map(number) ?? "null" }
        return "{\"requests\":\(v.requests),\"errors\":\(v.errors),\"error_rate\":\(rate),\"input_tokens\":\(v.inputTokens),\"output_tokens\":\(v.outputTokens),\"cost_usd\":\(LLMEvent.decimalUSD(nanos: v.costNanos)),\"latency_ms\":{\"p50\":\(q(v.latency, 0.5)),\"p90\":\(q(v.latency, 0.9)),\"p95\":\(q(v.latency, 0.95)),\"p99\":\(q(v.latency, 0.99))}}"
    }

    /// A ratio or a latency as JSON: integral values as integers, others in the shortest text that reads back as
    /// the same double (never rounded to a fixed number of places). Money never comes here: it is exact decimal text.
    static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
    }

    static func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func bad(_ parameter: String, _ reason: String) -> Problem {
        Problem(.badRequest, code: "invalid_parameter", title: "Invalid query parameter", detail: "\(parameter): \(reason)")
    }


    /// `from` and `to` (RFC 3339); `to` defaults to now, `from` to an hour before `to`.
    static func range(_ q: Hummingbird.Parameters) throws -> (Int64, Int64) {
        func parse(_ name: String) throws -> Int64? {
            guard let text = q[Substring(name)] else { return nil }
            guard let t = EventTimestamp(rfc3339: text) else { throw bad(name, "must be an RFC 3339 date-time") }
            guard EventTimestamp.acceptedRange.contains(t.microsecondsSinceEpoch) else {
                throw bad(name, "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
            }
            return t.microsecondsSinceEpoch
        }
        let to = try parse("to") ?? EventTimestamp.now().microsecondsSinceEpoch
        let from = try parse("from") ?? to - 3_600_000_000
        guard from < to else { throw bad("from", "must be before to") }
        return (from, to)
    }

    /// The `limit` parameter: an integer in 1...max, `default` when absent.
    static func limit(_ q: Hummingbird.Parameters, max: Int, default value: Int) throws -> Int {
        guard let text = q["limit"] else { return value }
        guard let n = Int(text), (1...max).contains(n) else { throw bad("limit", "must be an integer in 1...\(max)") }
        return n
    }

    static func step(_ text: String) throws -> Granularity {
        guard let g = Granularity(rawValue: text) else { throw bad("step", "must be 1m, 1h or 1d") }
        return g
    }
}

/// The metrics a series can show.
enum Metric: String, CaseIterable {
    case requests, errors
    case errorRate = "error_rate"
    case inputTokens = "input_tokens"
    case outputTokens = "output_tokens"
    case costUSD = "cost_usd"
    case latencyP50 = "latency_p50", latencyP90 = "latency_p90", latencyP95 = "latency_p95", latencyP99 = "latency_p99"
    case ttftP50 = "ttft_p50", ttftP90 = "ttft_p90", ttftP95 = "ttft_p95", ttftP99 = "ttft_p99"
    /// Distinct users and sessions (estimates, `DistinctSketch.standardError`), of the tenant's total only.
    case users, sessions

    var isDistinct: Bool { self == .users || self == .sessions }

    var unit: String {
        switch self {
        case .requests, .errors, .users, .sessions: return "count"
        case .errorRate: return "ratio"
        case .inputTokens, .outputTokens: return "tokens"
        case .costUSD: return "usd"
        default: return "ms"
        }
    }

    /// The metric of one window as JSON: counts and money exact (cost as decimal text of its nano-dollars, so a
    /// series sums to what `/v1/breakdown` says), `null` where undefined (a rate or percentile of no requests).
    func json(_ v: RollupValues) -> String {
        switch self {
        case .requests: return String(v.requests)
        case .errors: return String(v.errors)
        case .inputTokens: return String(v.inputTokens)
        case .outputTokens: return String(v.outputTokens)
        case .costUSD: return LLMEvent.decimalUSD(nanos: v.costNanos)
        case .users: return String(v.users.estimate)
        case .sessions: return String(v.sessions.estimate)
        default: return self.value(v).map(QueryRoutes.number) ?? "null"
        }
    }

    private func value(_ v: RollupValues) -> Double? {
        switch self {
        case .requests, .errors, .inputTokens, .outputTokens, .costUSD, .users, .sessions: return nil
        case .errorRate: return v.requests > 0 ? Double(v.errors) / Double(v.requests) : nil
        case .latencyP50: return v.latency.quantile(0.5)
        case .latencyP90: return v.latency.quantile(0.9)
        case .latencyP95: return v.latency.quantile(0.95)
        case .latencyP99: return v.latency.quantile(0.99)
        case .ttftP50: return v.timeToFirstToken.quantile(0.5)
        case .ttftP90: return v.timeToFirstToken.quantile(0.9)
        case .ttftP95: return v.timeToFirstToken.quantile(0.95)
        case .ttftP99: return v.timeToFirstToken.quantile(0.99)
        }
    }
}

