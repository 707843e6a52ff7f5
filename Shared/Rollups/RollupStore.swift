import Events
import Postgres


/// The SQL of rollups: additive upserts of deltas, and reads of whole windows.
public enum RollupStore {
    static let columns = ["tenant_id"] + SeriesDimension.allCases.map(\.rawValue) + ["window_start", "requests", "errors", "errors_by_type", "input_tokens",
                          "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost_nanos", "latency_sketch", "ttft_sketch"]

    /// One multi-row upsert adding `deltas` to their windows: counters add, sketches and error maps merge
    /// (`tw_jsonb_add`), `version` grows. Each key appears once per statement (deltas are grouped), as
    /// ON CONFLICT DO UPDATE requires.
    public static func upsert(_ deltas: RollupDeltas) -> PostgresQuery {
        let table = deltas.granularity.table
        var parameters: [String?] = []
        var rows: [String] = []
        let sorted = deltas.windows.sorted { ($0.key.series, $0.key.windowStart) < ($1.key.series, $1.key.windowStart) }
        for (key, v) in sorted {
            let values: [String] = [
                key.series.tenant] + key.series.values + [EventTimestamp(microsecondsSinceEpoch: key.windowStart).rfc3339,
                String(v.requests), String(v.errors), v.errorsByTypeJSON, String(v.inputTokens), String(v.outputTokens),
                String(v.cachedInputTokens), String(v.reasoningTokens), String(v.costNanos), v.latency.json, v.timeToFirstToken.json,
            ]
            let base = parameters.count
            parameters.append(contentsOf: values.map { Optional($0) })
            rows.append("(" + (1...values.count).map { "$\(base + $0)" }.joined(separator: ",") + ")")
        }
        // Sorted keys: concurrent writers (a zombie and its successor) lock rows in the same order, never deadlock.
        let add = ["requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost_nanos"]
            .map { "\($0) = r.\($0) + EXCLUDED.\($0)" }
        let merge = ["errors_by_type", "latency_sketch", "ttft_sketch"].map { "\($0) = tw_jsonb_add(r.\($0), EXCLUDED.\($0))" }
        let sql = """
            INSERT INTO \(table) AS r (\(columns.joined(separator: ", "))) VALUES \(rows.joined(separator: ", "))
            ON CONFLICT (\(Self.primaryKey)) DO UPDATE SET
            \((add + merge).joined(separator: ", ")), version = r.version + 1, updated_at = now()
            """
        return PostgresQuery(sql: sql, parameters: parameters)
    }

    /// The rollup tables' primary key (migration 16).
    public static let primaryKey = "tenant_id, window_start, \(SeriesKey.columns)"

    public static let selectColumns = """
        tenant_id, \(SeriesKey.columns), (extract(epoch FROM window_start) * 1000000)::bigint AS window_us, requests, errors,
        errors_by_type::text AS errors_by_type, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost_nanos,
        latency_sketch::text AS latency_sketch, ttft_sketch::text AS ttft_sketch, version
        """

    /// A row of a rollups table as a record.
    public static func record(_ row: PostgresRow, granularity: Granularity) throws -> RollupRecord {
        var v = RollupValues()
        v.requests = try row.decode("requests")
        v.errors = try row.decode("errors")
        v.errorsByType = try JSONSerializationBridge.object(try row.decode("errors_by_type", as: String.self)) ?? [:]
        v.inputTokens = try row.decode("input_tokens")
        v.outputTokens = try row.decode("output_tokens")
        v.cachedInputTokens = try row.decode("cached_input_tokens")
        v.reasoningTokens = try row.decode("reasoning_tokens")
        v.costNanos = try row.decode("cost_nanos")
        v.latency = try QuantileSketch(json: try row.decode("latency_sketch", as: String.self))
        v.timeToFirstToken = try QuantileSketch(json: try row.decode("ttft_sketch", as: String.self))
        return RollupRecord(key: RollupKey(series: try self.series(row), windowStart: try row.decode("window_us")), granularity: granularity, version: try row.decode("version"), values: v)
    }

    /// The series of a row selected with `tenant_id` and `SeriesKey.columns`.
    public static func series(_ row: PostgresRow) throws -> SeriesKey {
        var key = SeriesKey.total(try row.decode("tenant_id"))
        for d in SeriesDimension.allCases { key[d] = try row.decode(d.rawValue) }
        return key
    }
}
