import Events
import Metrics
import Postgres
import Rollups
import Synchronization

/// The per-tenant cardinality cap on the series dimensions that events name freely (`app`, `environment`, and the
/// value of each promoted tag): each
/// becomes a rollup row per window and level, so a client sending a request id as its app would multiply a
/// tenant's rows without bound. The first `cap` distinct values of a dimension a tenant sends are admitted
/// (Postgres `dimension_values`, shared by every ingestor replica and kept across restarts, so a replay maps each
/// event the same way); later values are counted as `other` (the event itself says so on llm.events.v1) and
/// counted in `tw_ingest_dimension_overflow_total{dimension="app"|"environment"|"tag"}`.
public final class DimensionRegistry: Sendable {
    public static let other = "other"

    let postgres: PostgresClient?
    public let cap: Int
    /// `postgres` nil: values are admitted in memory only (unit tests).
    public init(postgres: PostgresClient?, cap: Int) {
        self.postgres = postgres
        self.cap = cap
    }

    /// One capped dimension of one tenant.
    struct Slot: Hashable, Comparable {
        let tenant: String
        let name: String
        static func < (a: Slot, b: Slot) -> Bool { (a.tenant, a.name) < (b.tenant, b.name) }
    }

    /// A tenant's admitted values, by dimension: the tenant's id is hashed once an event (once a run of its events),
    /// not once a dimension, and no slot name is built for a value already admitted (nearly all of them).
    struct TenantValues {
        var app: Set<String> = []
        var environment: Set<String> = []
        var tags: [String: Set<String>] = [:]

        subscript(name: String) -> Set<String> {
            get {
                switch name {
                case SeriesDimension.app.rawValue: self.app
                case SeriesDimension.environment.rawValue: self.environment
                default: self.tags[DimensionRegistry.tagKey(name)] ?? []
                }
            }
            set {
                switch name {
                case SeriesDimension.app.rawValue: self.app = newValue
                case SeriesDimension.environment.rawValue: self.environment = newValue
                default: self.tags[DimensionRegistry.tagKey(name)] = newValue
                }
            }
        }
    }

    /// A promoted tag's slot name is this and its key.
    static let tagPrefix = "tag:"
    static func tagKey(_ slotName: String) -> String { String(slotName.dropFirst(Self.tagPrefix.count)) }

    /// Admitted values per tenant. Values are never removed, so what is here stays true.
    private let admitted = Mutex<[String: TenantValues]>([:])

    /// `events` with every value beyond its tenant's cap replaced by `other`: their app and environment, and the
    /// values of their promoted tags (`promoted`, one map per event, key -> value; capped per key as `tag:<key>`).
    /// Values not seen yet are admitted in one transaction per batch (`admit`), under advisory locks so concurrent
    /// replicas cannot exceed the cap.
    public func apply(_ events: [LLMEvent], promoted: [[String: String]]? = nil) async throws -> (events: [LLMEvent], promoted: [[String: String]]) {
        var promoted = promoted ?? Array(repeating: [:], count: events.count)
        // One look per value at full ingest rate: values already admitted (nearly all) are done with; the others are
        // kept to be looked at again once this batch's new values are admitted.
        var pending: [(event: Int, slot: Slot, value: String)] = []
        // In the order the batch holds them: the first values sent are the ones admitted.
        var unseen: [Slot: [String]] = [:]
        self.admitted.withLock { admitted in
            var tenant: String? = nil
            var known = TenantValues()
            func check(_ i: Int, _ have: Set<String>, _ name: @autoclosure () -> String, _ value: String) {
                if have.contains(value) { return }
                let slot = Slot(tenant: tenant!, name: name())
                pending.append((i, slot, value))
                if have.count < self.cap && unseen[slot]?.contains(value) != true { unseen[slot, default: []].append(value) }
            }
            for i in events.indices {
                guard let t = events[i].tenantID else { continue }
                if t != tenant {
                    tenant = t
                    known = admitted[t] ?? TenantValues()
                }
                if let app = events[i].app, app != Self.other { check(i, known.app, SeriesDimension.app.rawValue, app) }
                if let environment = events[i].environment, environment != Self.other {
                    check(i, known.environment, SeriesDimension.environment.rawValue, environment)
                }
                for (key, value) in promoted[i] where value != Self.other { check(i, known.tags[key] ?? [], Self.tagPrefix + key, value) }
            }
        }
        guard !pending.isEmpty else { return (events, promoted) }
        let admittedNow = try await self.admit(unseen.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) })
        var out = events
        self.admitted.withLock { admitted in
            for (slot, values) in admittedNow { admitted[slot.tenant, default: TenantValues()][slot.name].formUnion(values) }
            for (i, slot, value) in pending where admitted[slot.tenant]?[slot.name].contains(value) != true {
                switch slot.name {
                case SeriesDimension.app.rawValue: out[i].app = Self.other
                case SeriesDimension.environment.rawValue: out[i].environment = Self.other
                default: promoted[i][Self.tagKey(slot.name)] = Self.other
                }
                self.overflow(slot.name).increment()
            }
        }
        return (out, promoted)
    }

    func overflow(_ name: String) -> Counter {
        Counter(label: "tw_ingest_dimension_overflow_total", dimensions: [("dimension", name.hasPrefix(Self.tagPrefix) ? "tag" : name)])
    }

    /// Admits what the cap allows of each slot's new values (in the order given: the first sent are admitted) and
    /// returns every admitted value of those slots, in one transaction: the slots' advisory locks in one statement
    /// (slots in order, so two replicas admitting overlapping slots lock in the same order), then one statement a
    /// slot. A new tenant's first batch names a few hundred values (apps, environments, tag values); a statement a
    /// value made that batch wait a round trip each, which the aggregator downstream saw as a pause.
    func admit(_ slots: [(slot: Slot, values: [String])]) async throws -> [Slot: Set<String>] {
        guard let postgres = self.postgres else { return Dictionary(uniqueKeysWithValues: slots.map { ($0.slot, Set($0.values.prefix(self.cap))) }) }
        let cap = self.cap
        return try await postgres.withTransaction { conn in
            var locks = PostgresParameters()
            locks.append(binary: PostgresBinaryArray.text(slots.map(\.slot.tenant)))
            locks.append(binary: PostgresBinaryArray.text(slots.map(\.slot.name)))
            try conn.query(PostgresQuery(
                sql: "SELECT count(pg_advisory_xact_lock(hashtext(t), hashtext(d))) FROM unnest($1::text[], $2::text[]) AS s(t, d)",
                parameters: locks))
            var out: [Slot: Set<String>] = [:]
            for (slot, values) in slots {
                var parameters = PostgresParameters()
                parameters.append(slot.tenant)
                parameters.append(slot.name)
                parameters.append(binary: PostgresBinaryArray.text(values))
                parameters.append(String(cap))
                // What is stored, and as many of the new values, in order, as the cap leaves room for.
                let rows = try conn.query(PostgresQuery(
                    sql: """
                        WITH have AS (SELECT value FROM dimension_values WHERE tenant_id = $1 AND dimension = $2),
                        added AS (
                            INSERT INTO dimension_values (tenant_id, dimension, value)
                            SELECT $1, $2, u.v FROM unnest($3::text[]) WITH ORDINALITY AS u(v, i)
                            WHERE u.v NOT IN (SELECT value FROM have)
                            ORDER BY u.i LIMIT GREATEST($4::bigint - (SELECT count(*) FROM have), 0)
                            ON CONFLICT DO NOTHING RETURNING value)
                        SELECT value FROM have UNION ALL SELECT value FROM added
                        """,
                    parameters: parameters))
                out[slot] = Set(try rows.map { try $0.decode("value", as: String.self) })
            }
            return out
        }
    }
}
