import Events
import Foundation
import Postgres
import Rollups

/// Rebuild history from the aggregator's rollups: hourly requests for the daily profile, 1-minute windows for
/// the replay. One statement per kind for all the series of a batch.
public struct PostgresDetectorHistory: DetectorHistory {
    let postgres: PostgresClient

    public init(postgres: PostgresClient) { self.postgres = postgres }

    public func load(_ requests: [HistoryRequest]) async throws -> [SeriesKey: SeriesHistory] {
        var out: [SeriesKey: SeriesHistory] = [:]
        let targets = Self.json(requests)
        let hours = try await self.postgres.query("""
            SELECT x.tenant_id, \(unescaped: Self.xColumns), (extract(epoch FROM x.window_start) * 1000000)::bigint AS window_us, x.requests
            FROM json_to_recordset(\(targets)::json) AS s(\(unescaped: Self.recordColumns))
            CROSS JOIN LATERAL (
                SELECT * FROM rollups_1h r WHERE \(unescaped: Self.match)
                AND r.window_start >= to_timestamp(s.a / 1e6) AND r.window_start < to_timestamp(s.b / 1e6)) x
            ORDER BY x.window_start
            """)
        for row in hours {
            let series = try RollupStore.series(row)
            out[series, default: SeriesHistory()].hours.append((try row.decode("window_us"), Double(try row.decode("requests", as: Int64.self))))
        }
        let minuteTargets = Self.json(requests.map { HistoryRequest(series: $0.series, before: $0.before, replayStart: $0.replayStart, seasonalStart: $0.replayStart) })
        let minutes = try await self.postgres.query("""
            SELECT \(unescaped: RollupStore.selectColumns) FROM (
                SELECT x.* FROM json_to_recordset(\(minuteTargets)::json) AS s(\(unescaped: Self.recordColumns))
                CROSS JOIN LATERAL (
                    SELECT * FROM rollups_1m r WHERE \(unescaped: Self.match)
                    AND r.window_start >= to_timestamp(s.a / 1e6) AND r.window_start < to_timestamp(s.b / 1e6)) x) y
            ORDER BY window_start
            """)
        for row in minutes {
            let record = try RollupStore.record(row, granularity: .minute)
            out[record.key.series, default: SeriesHistory()].minutes.append(WindowObservation(record))
        }
        return out
    }

    /// The targets' record type, the row match and the selected series columns, from the declared dimensions.
    static let recordColumns = "t text, " + SeriesDimension.allCases.map { "\($0.rawValue) text" }.joined(separator: ", ") + ", a bigint, b bigint"
    static let match = "r.tenant_id = s.t AND " + SeriesDimension.allCases.map { "r.\($0.rawValue) = s.\($0.rawValue)" }.joined(separator: " AND ")
    static let xColumns = SeriesDimension.allCases.map { "x.\($0.rawValue)" }.joined(separator: ", ")

    /// `[{"t": tenant, "app": …, "environment": …, "provider": …, "model": …, "a": from, "b": to}]`: hours from the
    /// seasonal start to the replay start (for minutes, callers pass replay start to `before`).
    static func json(_ requests: [HistoryRequest]) -> String {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (i, r) in requests.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            let (from, to) = r.seasonalStart == r.replayStart ? (r.replayStart, r.before) : (r.seasonalStart, r.replayStart)
            out += Array("{\"t\":".utf8) + Array(jsonStringLiteral(r.series.tenant).utf8) + Array(",".utf8) + Array(r.series.jsonFields.utf8)
            out += Array(",\"a\":\(from),\"b\":\(to)}".utf8)
        }
        out.append(UInt8(ascii: "]"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// Every tenant's detector settings, read whole (the table holds one small row per tenant that changed anything).
public enum DetectorSettingsStore {
    public static func load(from postgres: PostgresClient) async throws -> [String: TenantDetectorSettings] {
        var out: [String: TenantDetectorSettings] = [:]
        for row in try await postgres.query("SELECT tenant_id, sensitivity, muted::text AS muted FROM detector_settings") {
            let muted = (try? JSONDecoder().decode([TenantDetectorSettings.MuteRule].self, from: Data((try row.decode("muted", as: String.self)).utf8))) ?? []
            out[try row.decode("tenant_id")] = TenantDetectorSettings(sensitivity: try row.decode("sensitivity"), muted: muted)
        }
        return out
    }
}
