import Events
import Foundation
import Postgres


/// The SQL of rollups: additive upserts of deltas, and reads of whole windows.
public enum RollupStore {
    /// The columns an upsert writes: the key and the counters (the sketches are written by `sketchUpdate`).
    static let keyColumns = ["tenant_id"] + SeriesDimension.allCases.map(\.rawValue) + ["window_start"]
    static let columns = Self.keyColumns + UsageCounters.fields.map(\.column)

    /// The rows keeping distributions (the watched levels) and those keeping counters only.
    static func split(_ deltas: RollupDeltas) -> (watched: [(key: RollupKey, value: RollupValues)], counted: [(key: RollupKey, value: RollupValues)]) {
        var watched: [(key: RollupKey, value: RollupValues)] = [], counted: [(key: RollupKey, value: RollupValues)] = []
        for (key, value) in deltas.windows {
            if key.series.keepsDistributions { watched.append((key, value)) } else { counted.append((key, value)) }
        }
        return (watched, counted)
    }

    /// The sketches of a row selected or returned with each sketch column as text.
    static func storedSketches(_ row: PostgresRow, into values: inout RollupValues) throws {
        for sketch in RollupValues.sketches { try sketch.readStored(&values, try row.decode(sketch.column), sketch.column) }
    }

    static let columnTypes = ["text[]"] + SeriesDimension.allCases.map { _ in "text[]" } + ["timestamptz[]"] + UsageCounters.fields.map { _ in "bigint[]" }

    /// Writes `deltas` within the caller's transaction: counters add, sketches and error maps merge, `version` grows.
    /// One multi-row upsert adds the counters (inserting new rows with empty sketches) and returns the stored
    /// sketches of the watched rows that existed, now locked by this transaction; Swift merges the deltas into them;
    /// a second statement writes every watched row's sketches. Rows of the multiplying levels (the cross product,
    /// tags) carry counters only (`SeriesKey.keepsDistributions`). Merging in SQL (migrations 3, 16, 19) was half of
    /// Postgres's time in the realistic `make bench` workload, and sending the deltas' sketches with the first
    /// statement had Postgres parse the JSON of most rows twice (most watched rows of a batch exist already). A row
    /// inserted by another transaction after this one's statement began still merges correctly: its conflict is a
    /// row that existed.
    ///
    /// Each key appears once per statement (deltas are grouped), as ON CONFLICT DO UPDATE requires. Rows travel as
    /// one array per column, unnested in the select list (`PostgresQuery.zippedRows`; 21 array parameters bind and
    /// parse far faster than 21 parameters a row), in the order of a stable hash of their keys
    /// (`RollupKey.lockOrder`), so concurrent writers of one row (two partitions holding one tenant's events after
    /// partitions were added) lock rows in the same order and do not deadlock (a zombie and its successor never
    /// reach the rows together: the offset's compare-and-set locks their partition's row first). Sorting by the key
    /// itself cost more: Postgres's sort by collation was a tenth of its time, and Swift comparing strings added a
    /// third to the aggregator's. A deadlock all the same (a release sending another order) is a transient fault:
    /// the batch is applied again.
    public static func write(_ deltas: RollupDeltas, _ conn: isolated PostgresConnection) throws {
        let table = deltas.granularity.table
        let (watched, counted) = Self.split(deltas)
        if !watched.isEmpty {
            var merged: [(key: RollupKey, value: RollupValues)] = []
            for row in try conn.query(Self.statement(watched, table: table, returningStored: true)) {
                let key = RollupKey(series: try self.series(row), windowStart: try row.decode("window_us"))
                guard let delta = deltas.windows[key] else { continue }
                guard try row.decode("existed", as: Bool.self) else {
                    merged.append((key, delta))
                    continue
                }
                var stored = RollupValues()
                try Self.storedSketches(row, into: &stored)
                for sketch in RollupValues.sketches { sketch.merge(&stored, delta) }
                merged.append((key, stored))
            }
            if !merged.isEmpty { try conn.query(Self.sketchUpdate(merged, table: table)) }
        }
        if !counted.isEmpty { try conn.query(Self.statement(counted, table: table)) }
    }

    /// Writes `deltas` in one transaction of its own (a backfill, a test's fixture).
    public static func write(_ deltas: RollupDeltas..., to postgres: PostgresClient) async throws {
        try await postgres.withTransaction { conn in
            for d in deltas { try Self.write(d, conn) }
        }
    }

    /// Sets the sketches of rows this transaction has locked.
    static func sketchUpdate(_ rows: [(key: RollupKey, value: RollupValues)], table: String) -> PostgresQuery {
        var parameters = Self.keyArrays(rows)
        for sketch in RollupValues.sketches { parameters.append(binary: PostgresBinaryArray.jsonb(rows.map { sketch.stored($0.value) })) }
        let types = Self.columnTypes.prefix(Self.keyColumns.count) + RollupValues.sketches.map { _ in "jsonb[]" }
        let names = Self.keyColumns + RollupValues.sketches.map(\.column)
        return PostgresQuery(
            sql: """
                UPDATE \(table) AS r SET \(RollupValues.sketches.map { "\($0.column) = u.\($0.column)" }.joined(separator: ", "))
                FROM (\(PostgresQuery.zippedRows(Array(zip(names, types))))) AS u
                WHERE \(Self.keyColumns.map { "r.\($0) = u.\($0)" }.joined(separator: " AND "))
                """,
            parameters: parameters)
    }

    /// The key columns' arrays (binary, `PostgresBinaryArray`): tenant, each dimension, window start.
    static func keyArrays(_ rows: [(key: RollupKey, value: RollupValues)]) -> PostgresParameters {
        var parameters = PostgresParameters()
        parameters.append(binary: PostgresBinaryArray.text(rows.map(\.key.series.tenant)))
        for d in SeriesDimension.allCases { parameters.append(binary: PostgresBinaryArray.text(rows.map { $0.key.series[d] })) }
        parameters.append(binary: PostgresBinaryArray.timestamptz(microsecondsSinceEpoch: rows.map(\.key.windowStart)))
        return parameters
    }

    /// Adds the rows' counters; new rows get empty sketches and stored ones are kept, which with `returningStored`
    /// the statement returns for `write` to merge.
    static func statement(_ rows: [(key: RollupKey, value: RollupValues)], table: String, returningStored: Bool = false) -> PostgresQuery {
        let rows = inLockOrder(rows, \.lockOrder)
        var parameters = Self.keyArrays(rows)
        UsageCounters.appendColumnArrays(rows.map(\.value.counters), to: &parameters)
        // The sketch columns start as their defaults, the empty object (migration 21).
        let add = UsageCounters.fields.map { "\($0.column) = r.\($0.column) + EXCLUDED.\($0.column)" }
        let sql = """
            INSERT INTO \(table) AS r (\(Self.columns.joined(separator: ", ")))
            \(PostgresQuery.zippedRows(Array(zip(Self.columns, Self.columnTypes))))
            ON CONFLICT (\(Self.primaryKey)) DO UPDATE SET
            \(add.joined(separator: ", ")), version = r.version + 1, updated_at = now()
            """ + (returningStored ? "\n" + Self.returningStored : "")
        return PostgresQuery(sql: sql, parameters: parameters)
    }

    /// The key of each upserted row, whether it existed (`xmax` is 0 on a row the statement inserted), and, if it
    /// did, its stored sketches.
    static let returningStored = """
        RETURNING r.tenant_id, \(SeriesDimension.allCases.map { "r.\($0.rawValue)" }.joined(separator: ", ")),
        (extract(epoch FROM r.window_start) * 1000000)::bigint AS window_us, r.xmax <> 0 AS existed,
        \(RollupValues.sketches.map { "CASE WHEN r.xmax = 0 THEN NULL ELSE r.\($0.column)::text END AS \($0.column)" }.joined(separator: ", "))
        """

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
        try Self.storedSketches(row, into: &v)
        return RollupRecord(key: RollupKey(series: try self.series(row), windowStart: try row.decode("window_us")), granularity: granularity, version: try row.decode("version"), values: v)
    }

    /// The series of a row selected with `tenant_id` and `SeriesKey.columns`.
    public static func series(_ row: PostgresRow) throws -> SeriesKey {
        var key = SeriesKey.total(try row.decode("tenant_id"))
        for d in SeriesDimension.allCases { key[d] = try row.decode(d.rawValue) }
        return key
    }
}
