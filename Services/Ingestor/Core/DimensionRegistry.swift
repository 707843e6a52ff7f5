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

    /// Admitted values per slot. Values are never removed, so what is here stays true.
    private let admitted = Mutex<[Slot: Set<String>]>([:])

    /// `events` with every value beyond its tenant's cap replaced by `other`: their app and environment, and the
    /// values of their promoted tags (`promoted`, one map per event, key -> value; capped per key as `tag:<key>`).
    /// Values not seen yet are admitted in one transaction per (tenant, dimension), under an advisory lock so
    /// concurrent replicas cannot exceed the cap.
    public func apply(_ events: [LLMEvent], promoted: [[String: String]]? = nil) async throws -> (events: [LLMEvent], promoted: [[String: String]]) {
        var promoted = promoted ?? Array(repeating: [:], count: events.count)
        // One look per value at full ingest rate: values already admitted (nearly all) are done with; the others are
        // kept to be looked at again once this batch's new values are admitted.
        var pending: [(event: Int, slot: Slot, value: String)] = []
        // In the order the batch holds them: the first values sent are the ones admitted.
        var unseen: [Slot: [String]] = [:]
        self.admitted.withLock { admitted in
            func check(_ i: Int, _ slot: Slot, _ value: String) {
                let known = admitted[slot]
                if known?.contains(value) == true { return }
                pending.append((i, slot, value))
                if (known?.count ?? 0) < self.cap && unseen[slot]?.contains(value) != true { unseen[slot, default: []].append(value) }
            }
            for i in events.indices {
                guard let tenant = events[i].tenantID else { continue }
                if let app = events[i].app, app != Self.other { check(i, Slot(tenant: tenant, name: SeriesDimension.app.rawValue), app) }
                if let environment = events[i].environment, environment != Self.other {
                    check(i, Slot(tenant: tenant, name: SeriesDimension.environment.rawValue), environment)
                }
                for (key, value) in promoted[i] where value != Self.other { check(i, Slot(tenant: tenant, name: "tag:" + key), value) }
            }
        }
        guard !pending.isEmpty else { return (events, promoted) }
        for (slot, values) in unseen.sorted(by: { $0.key < $1.key }) {
            let admitted = try await self.admit(values, tenant: slot.tenant, dimension: slot.name)
            self.admitted.withLock { $0[slot, default: []].formUnion(admitted) }
        }
        var out = events
        self.admitted.withLock { admitted in
            for (i, slot, value) in pending where admitted[slot]?.contains(value) != true {
                switch slot.name {
                case SeriesDimension.app.rawValue: out[i].app = Self.other
                case SeriesDimension.environment.rawValue: out[i].environment = Self.other
                default: promoted[i][String(slot.name.dropFirst(4))] = Self.other
                }
                self.overflow(slot.name).increment()
            }
        }
        return (out, promoted)
    }

    func overflow(_ name: String) -> Counter {
        Counter(label: "tw_ingest_dimension_overflow_total", dimensions: [("dimension", name.hasPrefix("tag:") ? "tag" : name)])
    }

    /// Admits what the cap allows of `values` and returns every admitted value of the slot.
    func admit(_ values: [String], tenant: String, dimension: String) async throws -> Set<String> {
        guard let postgres = self.postgres else { return Set(values.prefix(self.cap)) }
        let cap = Int64(self.cap)
        return try await postgres.withTransaction { conn in
            try conn.query("SELECT pg_advisory_xact_lock(hashtext(\(tenant)), hashtext(\(dimension)))")
            var have = Set(try conn.query("SELECT value FROM dimension_values WHERE tenant_id = \(tenant) AND dimension = \(dimension)").map { try $0.decode("value", as: String.self) })
            for value in values where !have.contains(value) && Int64(have.count) < cap {
                try conn.query("INSERT INTO dimension_values (tenant_id, dimension, value) VALUES (\(tenant), \(dimension), \(value)) ON CONFLICT DO NOTHING")
                have.insert(value)
            }
            return have
        }
    }
}
