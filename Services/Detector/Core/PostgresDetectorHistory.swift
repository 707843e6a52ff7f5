import Events
import Foundation
import Postgres
import Rollups

/// Rebuild history from the aggregator's rollups: hourly requests for the hour-of-day profile, 1-minute windows for
/// the replay. One statement per kind for all the series of a batch.
public struct PostgresDetectorHistory: DetectorHistory {
    let postgres: PostgresClient

    public init(postgres: PostgresClient) { self.postgres = postgres }

    public func load(_ requests: [HistoryRequest]) async throws -> [SeriesKey: SeriesHistory] {
        var out: [SeriesKey: SeriesHistory] = [:]
        let targets = Self.json(requests)
        let hours = try await self.postgres.query("""
            SELECT x.tenant_id, x.provider, x.model, (extract(epoch FROM x.window_start) * 1000000)::bigint AS window_us, x.requests
            FROM json_to_recordset(\(targets)::json) AS s(t text, p text, m text, a bigint, b bigint)
            CROSS JOIN LATERAL (
                SELECT * FROM rollups_1h r WHERE r.tenant_id = s.t AND r.provider = s.p AND r.model = s.m
                AND r.window_start >= to_timestamp(s.a / 1e6) AND r.window_start < to_timestamp(s.b / 1e6)) x
            ORDER BY x.window_start
            """)
        for row in hours {
            let series = SeriesKey(tenant: try row.decode("tenant_id"), provider: try row.decode("provider"), model: try row.decode("model"))
            out[series, default: SeriesHistory()].hours.append((try row.decode("window_us"), Double(try row.decode("requests", as: Int64.self))))
        }
        let minuteTargets = Self.json(requests.map { HistoryRequest(series: $0.series, before: $0.before, replayStart: $0.replayStart, seasonalStart: $0.replayStart) })
        let minutes = try await self.postgres.query("""
            SELECT \(unescaped: RollupStore.selectColumns)
            FROM json_to_recordset(\(minuteTargets)::json) AS s(t text, p text, m text, a bigint, b bigint)
            CROSS JOIN LATERAL (
                SELECT * FROM rollups_1m r WHERE r.tenant_id = s.t AND r.provider = s.p AND r.model = s.m
                AND r.window_start >= to_timestamp(s.a / 1e6) AND r.window_start < to_timestamp(s.b / 1e6)) x
            ORDER BY x.window_start
            """)
        for row in minutes {
            let record = try RollupStore.record(row, granularity: .minute)
            out[record.key.series, default: SeriesHistory()].minutes.append(WindowObservation(record))
        }
        return out
    }

    /// `[{"t": tenant, "p": provider, "m": model, "a": from, "b": to}]`: hours from the seasonal start to the replay
    /// start (for minutes, callers pass replay start to `before`).
    static func json(_ requests: [HistoryRequest]) -> String {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (i, r) in requests.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            let (from, to) = r.seasonalStart == r.replayStart ? (r.replayStart, r.before) : (r.seasonalStart, r.replayStart)
            out += Array("{\"t\":".utf8) + Array(jsonStringLiteral(r.series.tenant).utf8) + Array(",\"p\":".utf8) + Array(jsonStringLiteral(r.series.provider).utf8)
            out += Array(",\"m\":".utf8) + Array(jsonStringLiteral(r.series.model).utf8) + Array(",\"a\":\(from),\"b\":\(to)}".utf8)
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
