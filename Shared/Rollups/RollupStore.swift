import Events
import Foundation
import Postgres


/// The SQL of rollups: additive upserts of deltas, and reads of whole windows.
public enum RollupStore {
    static let columns = ["tenant_id"] + SeriesDimension.allCases.map(\.rawValue) + ["window_start"] + UsageCounters.fields.map(\.column)
        + RollupValues.sketches.map(\.column)

    /// Multi-row upserts adding `deltas` to their windows: counters add, sketches and error maps merge
    /// (`tw_jsonb_add`, `tw_jsonb_max`), `version` grows. Each key appears once per statement (deltas are grouped), as
    /// ON CONFLICT DO UPDATE requires. Rows of the multiplying levels (the cross product, tags) carry counters only
    /// (`SeriesKey.keepsDistributions`), so their upserts skip the jsonb merges that dominate the cost of a row.
    /// Rows travel as one array per column, unnested (21 array parameters bind and parse far faster than 21
    /// parameters a row: `make bench`, realistic workload), and are inserted in primary-key order, so concurrent
    /// writers (a zombie and its successor, two partitions of one tenant) lock rows in the same order and never
    /// deadlock. Postgres sorts them: comparing keys of Swift strings cost more than building the statement.
    public static func upserts(_ deltas: RollupDeltas) -> [PostgresQuery] {
        return [true, false].compactMap { distributions in
            let rows = deltas.windows.filter { $0.key.series.keepsDistributions == distributions }.map { (key: $0.key, value: $0.value) }
            return rows.isEmpty ? nil : Self.statement(rows, table: deltas.granularity.table, distributions: distributions)
        }
    }

    static let columnTypes = ["text[]"] + SeriesDimension.allCases.map { _ in "text[]" } + ["timestamptz[]"] + UsageCounters.fields.map { _ in "bigint[]" }
        + RollupValues.sketches.map { _ in "jsonb[]" }

    static func statement(_ rows: [(key: RollupKey, value: RollupValues)], table: String, distributions: Bool) -> PostgresQuery {
        var parameters: [String?] = [PostgresQuery.textArray(rows.map(\.key.series.tenant))]
        for d in SeriesDimension.allCases { parameters.append(PostgresQuery.textArray(rows.map { $0.key.series[d] })) }
        var instants: [Int64: String] = [:]  // a batch spans a few windows: each one's text is made once
        for start in Set(rows.map(\.key.windowStart)) { instants[start] = EventTimestamp(microsecondsSinceEpoch: start).rfc3339 }
        parameters.append(PostgresQuery.textArray(rows.map { instants[$0.key.windowStart]! }))
        parameters += UsageCounters.columnArrays(rows.map(\.value.counters))
        if distributions {
            for sketch in RollupValues.sketches { parameters.append(PostgresQuery.textArray(rows.map { sketch.stored($0.value) })) }
        } else {
            // Counter rows keep empty sketches: one empty object per row.
            let empty = "{" + Array(repeating: "\"{}\"", count: rows.count).joined(separator: ",") + "}"
            parameters.append(contentsOf: RollupValues.sketches.map { _ in empty })
        }
        let arrays = Self.columnTypes.enumerated().map { "$\($0.offset + 1)::\($0.element)" }.joined(separator: ", ")
        let add = UsageCounters.fields.map { "\($0.column) = r.\($0.column) + EXCLUDED.\($0.column)" }
        let merge = distributions ? RollupValues.sketches.map { "\($0.column) = \($0.sqlMerge)(r.\($0.column), EXCLUDED.\($0.column))" } : []
        let sql = """
            INSERT INTO \(table) AS r (\(columns.joined(separator: ", ")))
            SELECT * FROM unnest(\(arrays)) AS u(\(columns.joined(separator: ", "))) ORDER BY \(Self.primaryKey)
            ON CONFLICT (\(Self.primaryKey)) DO UPDATE SET
            \((add + merge).joined(separator: ", ")), version = r.version + 1, updated_at = now()
            """
        return PostgresQuery(sql: sql, parameters: parameters)
    }

    /// The rollup tables' primary key (migration 16).
    public static let primaryKey = "tenant_id, window_start, \(SeriesKey.columns)"

    public static let selectColumns = """
        tenant_id, \(SeriesKey.columns), (extract(epoch FROM window_start) * 1000000)::bigint AS window_us, \(UsageCounters.fields.map(\.column).joined(separator: ", ")),
        \(RollupValues.sketches.map { "\($0.column)::text AS \($0.column)" }.joined(separator: ", ")), version
        """

    /// A row of a rollups table as a record.
    public static func record(_ row: PostgresRow, granularity: Granularity) throws -> RollupRecord {
        var v = RollupValues()
        v.counters = try UsageCounters(row: row)
        for sketch in RollupValues.sketches {
            guard let object = try JSONSerialization.jsonObject(with: Data(try row.decode(sketch.column, as: String.self).utf8)) as? [String: Any] else {
                throw SketchError(message: "column \(sketch.column): must be an object")
            }
            try sketch.readStored(&v, object)
        }
        return RollupRecord(key: RollupKey(series: try self.series(row), windowStart: try row.decode("window_us")), granularity: granularity, version: try row.decode("version"), values: v)
    }

    /// The series of a row selected with `tenant_id` and `SeriesKey.columns`.
    public static func series(_ row: PostgresRow) throws -> SeriesKey {
        var key = SeriesKey.total(try row.decode("tenant_id"))
        for d in SeriesDimension.allCases { key[d] = try row.decode(d.rawValue) }
        return key
    }
}
