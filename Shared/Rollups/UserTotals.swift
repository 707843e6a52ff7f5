import Events
import Foundation
import Postgres

/// Exact per-user totals per UTC day, for chargeback and top-N users over any range (issue 16).
///
/// Written by the aggregator in the same transaction as the rollups and the consumed offset, from the same events, so
/// they are exact like the rollups: a replay or a crash adds nothing twice, and an event too late for the rollups is
/// too late here. Events without a `user_id` are kept under the empty user, so a day's users add up to the tenant's
/// total. One row per (tenant, day, active user): about 230 bytes with its index entry, 230 MB per million active
/// users a day (`make bench`; README, "Users").
public struct UserDayKey: Hashable, Sendable {
    public var tenant: String
    /// The UTC day's start, microseconds since the epoch.
    public var day: Int64
    /// `""` for events without a user.
    public var user: String

    public init(tenant: String, day: Int64, user: String) {
        self.tenant = tenant
        self.day = day
        self.user = user
    }
}

extension UsageCounters {
    /// Reads the counters of a row whose columns are named as in `fields` (sums included).
    public init(row: PostgresRow) throws {
        self.init()
        for field in Self.fields { self[keyPath: field.keyPath] = try row.decode(field.column) }
    }

    /// One `bigint[]` literal per counter, in `fields` order, over `rows`: the counter columns of an unnested upsert.
    static func columnArrays(_ rows: [UsageCounters]) -> [String?] {
        // Byte by byte: one string a counter a row, joined, was a tenth of the aggregator's time.
        Self.fields.indices.map { field in
            var out: [UInt8] = [UInt8(ascii: "{")]
            out.reserveCapacity(rows.count * 8 + 2)
            for (i, row) in rows.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.appendDecimal(row.value(at: field))
            }
            out.append(UInt8(ascii: "}"))
            return String(decoding: out, as: UTF8.self)
        }
    }
}

/// What one batch of events adds to the per-user totals.
public struct UserTotalDeltas: Sendable {
    public private(set) var rows: [UserDayKey: UsageCounters] = [:]

    public init() {}

    public mutating func add(_ event: LLMEvent) {
        let key = UserDayKey(tenant: event.tenantID ?? "", day: Granularity.day.windowStart(event.timestamp), user: event.userID ?? "")
        self.rows[key, default: UsageCounters()].add(event)
    }

    public var isEmpty: Bool { self.rows.isEmpty }
}

public enum UserTotalsStore {
    /// Multi-row additive upserts in key order (Postgres sorts them), so that concurrent writers (a zombie and its
    /// successor) lock rows in the same order and never deadlock.
    public static func upserts(_ deltas: UserTotalDeltas) -> [PostgresQuery] {
        guard !deltas.isEmpty else { return [] }
        let rows = Array(deltas.rows)
        // A batch spans a day or two: each day's date text is made once, not once a row.
        var dates: [Int64: String] = [:]
        for day in Set(rows.map(\.key.day)) { dates[day] = String(EventTimestamp(microsecondsSinceEpoch: day).rfc3339.prefix(10)) }
        let columns = ["tenant_id", "day", "user_id"] + UsageCounters.fields.map(\.column)
        let add = UsageCounters.fields.map { "\($0.column) = u.\($0.column) + EXCLUDED.\($0.column)" }.joined(separator: ", ")
        // One array per column, unnested into rows: a batch holds about one row per event (a day's users rarely
        // repeat within it), and 10 array parameters bind and parse far faster than 10 parameters a row.
        var parameters: [String?] = [
            PostgresQuery.textArray(rows.map(\.key.tenant)),
            PostgresQuery.textArray(rows.map { dates[$0.key.day]! }),
            PostgresQuery.textArray(rows.map(\.key.user)),
        ]
        parameters += UsageCounters.columnArrays(rows.map(\.value))
        let types = ["text[]", "date[]", "text[]"] + UsageCounters.fields.map { _ in "bigint[]" }
        let arrays = types.enumerated().map { "$\($0.offset + 1)::\($0.element)" }.joined(separator: ", ")
        return [PostgresQuery(
            sql: """
                INSERT INTO user_totals_1d AS u (\(columns.joined(separator: ", ")))
                SELECT * FROM unnest(\(arrays)) AS r(\(columns.joined(separator: ", "))) ORDER BY tenant_id, day, user_id
                ON CONFLICT (tenant_id, day, user_id) DO UPDATE SET \(add)
                """,
            parameters: parameters)]
    }

    /// `sum(requests) AS requests, ...` over the counters.
    public static var sums: String { UsageCounters.fields.map { "sum(\($0.column))::bigint AS \($0.column)" }.joined(separator: ", ") }
}
