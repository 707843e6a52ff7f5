import Events
import Foundation
import Postgres
import Synchronization

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

extension UserDayKey {
    /// `StableHash` of the key: the order in which statements send their rows.
    var lockOrder: UInt64 {
        var h = StableHash()
        h.add(self.tenant)
        h.add(self.day)
        h.add(self.user)
        return h.value
    }
}

extension UsageCounters {
    /// Reads the counters of a row whose columns are named as in `fields` (sums included).
    public init(row: PostgresRow) throws {
        self.init()
        for field in Self.fields { self[keyPath: field.keyPath] = try row.decode(field.column) }
    }

    /// Appends one binary `bigint[]` per counter, in `fields` order, over `rows`: the counter columns of an unnested
    /// upsert.
    static func appendColumnArrays(_ rows: [UsageCounters], to parameters: inout PostgresParameters) {
        for field in Self.fields.indices { parameters.append(binary: PostgresBinaryArray.int8(rows.map { $0.value(at: field) })) }
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
    static let columns = ["tenant_id", "day", "user_id"] + UsageCounters.fields.map(\.column)

    /// Multi-row additive upserts, their rows in one order for every writer (`UserDayKey.lockOrder`).
    public static func upserts(_ deltas: UserTotalDeltas) -> [PostgresQuery] {
        deltas.isEmpty ? [] : [Self.statement(Array(deltas.rows), .upsert)]
    }

    /// Writes `deltas` within the caller's transaction. With `known`, a batch's users not in the table yet are
    /// inserted plainly and the others added to with an UPDATE: an upsert probes the index for a conflict before it
    /// inserts, which made a new row cost nearly twice a plain insert, and most rows of a batch are new users. What
    /// `known` holds may be out of date (see `KnownUsers`): then a statement fails (`KnownUsers.isStale`) and the
    /// caller writes the batch again without it. Returns the rows inserted, for `KnownUsers.inserted` once the
    /// transaction has committed.
    public static func write(_ deltas: UserTotalDeltas, known: KnownUsers?, _ conn: isolated PostgresConnection) throws -> [UserDayKey] {
        guard !deltas.isEmpty else { return [] }
        guard let known else {
            for query in Self.upserts(deltas) { try conn.query(query) }
            return []
        }
        for day in known.untracked(deltas) {
            let users = try conn.query("SELECT user_id FROM user_totals_1d WHERE tenant_id = \(day.tenant) AND day = \(Self.dateText(day.day))::date")
            known.load(day, users: Set(try users.map { try $0.decode("user_id", as: String.self) }))
        }
        let (new, existing, untracked) = known.split(deltas)
        if !new.isEmpty { try conn.copy(into: "user_totals_1d", columns: Self.columns, Self.copyText(new)) }
        if !existing.isEmpty {
            let updated = try conn.query(Self.statement(existing, .update))
            guard updated.affectedRows == existing.count else { throw KnownUsers.Stale() }
        }
        if !untracked.isEmpty { try conn.query(Self.statement(untracked, .upsert)) }
        return new.map(\.key)
    }

    enum Form { case upsert, update }

    /// New rows for `COPY`, in lock order: a batch's new users are most of its rows (about one per event), and COPY
    /// inserts them for about half of Postgres's time for an INSERT of the same rows from arrays (which parses every
    /// array and runs a row through the executor's projection for each). It cannot update, so rows known to exist go
    /// by `statement(_:.update)`.
    static func copyText(_ rows: [(key: UserDayKey, value: UsageCounters)]) -> PostgresCopyText {
        var text = PostgresCopyText(capacity: rows.count * 96)
        var dates: [Int64: String] = [:]
        for day in Set(rows.map(\.key.day)) { dates[day] = Self.dateText(day) }
        for row in inLockOrder(rows, \.lockOrder) {
            text.append(row.key.tenant)
            text.append(dates[row.key.day]!)
            text.append(row.key.user)
            for field in UsageCounters.fields.indices {
                text.appendUnescaped { $0.appendDecimal(row.value.value(at: field)) }
            }
            text.endRow()
        }
        return text
    }

    static func statement(_ rows: [(key: UserDayKey, value: UsageCounters)], _ form: Form) -> PostgresQuery {
        let rows = inLockOrder(rows, \.lockOrder)
        let columns = Self.columns
        // One array per column, unnested into rows: 10 array parameters bind and parse far faster than 10 parameters
        // a row.
        var parameters = PostgresParameters()
        parameters.append(binary: PostgresBinaryArray.text(rows.map(\.key.tenant)))
        parameters.append(binary: PostgresBinaryArray.date(dayStartMicroseconds: rows.map(\.key.day)))
        parameters.append(binary: PostgresBinaryArray.text(rows.map(\.key.user)))
        UsageCounters.appendColumnArrays(rows.map(\.value), to: &parameters)
        let types = ["text[]", "date[]", "text[]"] + UsageCounters.fields.map { _ in "bigint[]" }
        let rowsSQL = PostgresQuery.zippedRows(Array(zip(columns, types)))
        let sql: String
        switch form {
        case .upsert:
            let add = UsageCounters.fields.map { "\($0.column) = u.\($0.column) + EXCLUDED.\($0.column)" }.joined(separator: ", ")
            sql = """
                INSERT INTO user_totals_1d AS u (\(columns.joined(separator: ", ")))
                \(rowsSQL)
                ON CONFLICT (tenant_id, day, user_id) DO UPDATE SET \(add)
                """
        case .update:
            let add = UsageCounters.fields.map { "\($0.column) = u.\($0.column) + r.\($0.column)" }.joined(separator: ", ")
            sql = """
                UPDATE user_totals_1d AS u SET \(add) FROM (\(rowsSQL)) AS r
                WHERE u.tenant_id = r.tenant_id AND u.day = r.day AND u.user_id = r.user_id
                """
        }
        return PostgresQuery(sql: sql, parameters: parameters)
    }

    static func dateText(_ day: Int64) -> String { String(EventTimestamp(microsecondsSinceEpoch: day).rfc3339.prefix(10)) }

    /// `sum(requests) AS requests, ...` over the counters.
    public static var sums: String { UsageCounters.fields.map { "sum(\($0.column))::bigint AS \($0.column)" }.joined(separator: ", ") }
}

/// One tenant's day of per-user rows.
public struct TenantDay: Hashable, Sendable {
    public var tenant: String
    /// The UTC day's start, microseconds since the epoch.
    public var day: Int64
}

/// The per-user rows (tenant, day, user) an aggregator knows to exist, so that `UserTotalsStore.write` can insert a
/// batch's new users plainly and add to the others. A tenant's events are on one partition of llm.events.v1 (the
/// ingestor keys them by tenant), so the member that owns it is their only writer and what it knows stays true. When
/// it does not (a zombie member, partitions added to the topic, rows removed by hand), an insert meets a row or an
/// update misses one, the statement fails, and the aggregator forgets everything and writes that batch with upserts:
/// the table's key, not this, keeps the totals exact. A tenant's day is read once (its user ids) when a batch first
/// needs it; at most `capacity` ids are held (about 25 bytes each up to 15 bytes long, 100 for a UUID), beyond which
/// further days are upserted. Days more than two before the newest seen are let go.
public final class KnownUsers: Sendable {
    public let capacity: Int
    private let state = Mutex<(days: [TenantDay: Set<String>], count: Int, newest: Int64)>(([:], 0, .min))

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// Thrown when a statement finds the table not as this knew it.
    public struct Stale: Error, CustomStringConvertible {
        public var description: String { "the per-user rows are not as this aggregator knew them (another writer): written again with upserts" }
    }

    /// A unique violation (an insert met a row) or `Stale` (an update missed one).
    public static func isStale(_ error: any Error) -> Bool {
        error is Stale || (error as? PostgresError)?.sqlState == "23505"
    }

    /// The days of `deltas` not known yet that there is room for: `load` them.
    func untracked(_ deltas: UserTotalDeltas) -> [TenantDay] {
        let days = Set(deltas.rows.keys.map { TenantDay(tenant: $0.tenant, day: $0.day) })
        return self.state.withLock { state in
            let newest = max(state.newest, days.map(\.day).max() ?? .min)
            if newest > state.newest {
                state.newest = newest
                // Two days back: a day's late events still find it; older days are let go.
                for (day, users) in state.days where day.day < newest - 2 * 86_400_000_000 {
                    state.days[day] = nil
                    state.count -= users.count
                }
            }
            return days.filter { state.days[$0] == nil && state.count < self.capacity }.sorted { ($0.tenant, $0.day) < ($1.tenant, $1.day) }
        }
    }

    func load(_ day: TenantDay, users: Set<String>) {
        self.state.withLock { state in
            guard state.days[day] == nil, state.count + users.count <= self.capacity else { return }
            state.days[day] = users
            state.count += users.count
        }
    }

    /// The rows of users not in the table, those in it, and those of days not tracked.
    func split(_ deltas: UserTotalDeltas) -> (new: [(key: UserDayKey, value: UsageCounters)], existing: [(key: UserDayKey, value: UsageCounters)], untracked: [(key: UserDayKey, value: UsageCounters)]) {
        var new: [(key: UserDayKey, value: UsageCounters)] = [], existing: [(key: UserDayKey, value: UsageCounters)] = [], untracked: [(key: UserDayKey, value: UsageCounters)] = []
        self.state.withLock { state in
            for row in deltas.rows {
                guard let users = state.days[TenantDay(tenant: row.key.tenant, day: row.key.day)] else {
                    untracked.append(row)
                    continue
                }
                if users.contains(row.key.user) { existing.append(row) } else { new.append(row) }
            }
        }
        return (new, existing, untracked)
    }

    /// Rows a committed transaction inserted.
    public func inserted(_ keys: [UserDayKey]) {
        guard !keys.isEmpty else { return }
        self.state.withLock { state in
            for key in keys {
                let day = TenantDay(tenant: key.tenant, day: key.day)
                if state.days[day]?.insert(key.user).inserted == true { state.count += 1 }
            }
        }
    }

    public func forgetAll() {
        self.state.withLock { $0 = ([:], 0, $0.newest) }
    }
}
