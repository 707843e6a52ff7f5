import Events
import Postgres


/// The SQL of rollups: additive upserts of deltas, and reads of whole windows.
public enum RollupStore {
    static let columns = ["tenant_id"] + SeriesDimension.allCases.map(\.rawValue) + ["window_start"] + UsageCounters.fields.map(\.column)
        + ["errors_by_type", "latency_sketch", "ttft_sketch", "users_hll", "sessions_hll"]

    /// Multi-row upserts adding `deltas` to their windows: counters add, sketches and error maps merge
    /// (`tw_jsonb_add`, `tw_jsonb_max`), `version` grows. Each key appears once per statement (deltas are grouped), as
    /// ON CONFLICT DO UPDATE requires. Rows of the multiplying levels (the cross product, tags) carry counters only
    /// (`SeriesKey.keepsDistributions`), so their upserts skip the jsonb merges that dominate the cost of a row;
    /// at most 2,000 rows a statement (21 parameters a row, below Postgres's 65,535).
    public static func upserts(_ deltas: RollupDeltas) -> [PostgresQuery] {
        // Sorted keys: concurrent writers (a zombie and its successor) lock rows in the same order, never deadlock.
        let sorted = deltas.windows.sorted { ($0.key.series, $0.key.windowStart) < ($1.key.series, $1.key.windowStart) }
        var out: [PostgresQuery] = []
        for distributions in [true, false] {
            let rows = sorted.filter { $0.key.series.keepsDistributions == distributions }
            var start = 0
            while start < rows.count {
                let chunk = rows[start..<min(start + 2_000, rows.count)]
                start += chunk.count
                out.append(Self.statement(chunk, table: deltas.granularity.table, distributions: distributions))
            }
        }
        return out
    }

    static func statement(_ rows: ArraySlice<(key: RollupKey, value: RollupValues)>, table: String, distributions: Bool) -> PostgresQuery {
        var parameters: [String?] = []
        var values: [String] = []
        for (key, v) in rows {
            let row: [String] = [
                key.series.tenant] + key.series.values + [EventTimestamp(microsecondsSinceEpoch: key.windowStart).rfc3339]
                + UsageCounters.fields.map { String(v.counters[keyPath: $0.keyPath]) }
                + [v.errorsByTypeJSON, v.latency.json, v.timeToFirstToken.json, v.users.json, v.sessions.json]
            let base = parameters.count
            parameters.append(contentsOf: row.map { Optional($0) })
            values.append("(" + (1...row.count).map { "$\(base + $0)" }.joined(separator: ",") + ")")
        }
        let add = UsageCounters.fields.map { "\($0.column) = r.\($0.column) + EXCLUDED.\($0.column)" }
        let merge = distributions
            ? ["errors_by_type", "latency_sketch", "ttft_sketch"].map { "\($0) = tw_jsonb_add(r.\($0), EXCLUDED.\($0))" }
                + ["users_hll", "sessions_hll"].map { "\($0) = tw_jsonb_max(r.\($0), EXCLUDED.\($0))" }
            : []
        let sql = """
            INSERT INTO \(table) AS r (\(columns.joined(separator: ", "))) VALUES \(values.joined(separator: ", "))
            ON CONFLICT (\(Self.primaryKey)) DO UPDATE SET
            \((add + merge).joined(separator: ", ")), version = r.version + 1, updated_at = now()
            """
        return PostgresQuery(sql: sql, parameters: parameters)
    }

    /// The rollup tables' primary key (migration 16).
    public static let primaryKey = "tenant_id, window_start, \(SeriesKey.columns)"

    public static let selectColumns = """
        tenant_id, \(SeriesKey.columns), (extract(epoch FROM window_start) * 1000000)::bigint AS window_us, \(UsageCounters.fields.map(\.column).joined(separator: ", ")),
        errors_by_type::text AS errors_by_type, latency_sketch::text AS latency_sketch, ttft_sketch::text AS ttft_sketch, users_hll::text AS users_hll, sessions_hll::text AS sessions_hll, version
        """

    /// A row of a rollups table as a record.
    public static func record(_ row: PostgresRow, granularity: Granularity) throws -> RollupRecord {
        var v = RollupValues()
        v.counters = try UsageCounters(row: row)
        v.errorsByType = try JSONSerializationBridge.object(try row.decode("errors_by_type", as: String.self)) ?? [:]
        v.latency = try QuantileSketch(json: try row.decode("latency_sketch", as: String.self))
        v.timeToFirstToken = try QuantileSketch(json: try row.decode("ttft_sketch", as: String.self))
        v.users = try DistinctSketch(json: try row.decode("users_hll", as: String.self))
        v.sessions = try DistinctSketch(json: try row.decode("sessions_hll", as: String.self))
        return RollupRecord(key: RollupKey(series: try self.series(row), windowStart: try row.decode("window_us")), granularity: granularity, version: try row.decode("version"), values: v)
    }

    /// The series of a row selected with `tenant_id` and `SeriesKey.columns`.
    public static func series(_ row: PostgresRow) throws -> SeriesKey {
        var key = SeriesKey.total(try row.decode("tenant_id"))
        for d in SeriesDimension.allCases { key[d] = try row.decode(d.rawValue) }
        return key
    }
}
