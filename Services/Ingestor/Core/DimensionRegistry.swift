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
    /// Admitted values per "tenant\0dimension". Values are never removed, so what is here stays true.
    private let admitted = Mutex<[String: Set<String>]>([:])
    /// `postgres` nil: values are admitted in memory only (unit tests).
    public init(postgres: PostgresClient?, cap: Int) {
        self.postgres = postgres
        self.cap = cap
    }

    static func slot(_ tenant: String, _ name: String) -> String { "\(tenant)\u{0}\(name)" }

    /// `events` with every value beyond its tenant's cap replaced by `other`: their app and environment, and the
    /// values of their promoted tags (`promoted`, one map per event, key -> value; capped per key as `tag:<key>`).
    /// Values not seen yet are admitted in one transaction per (tenant, dimension), under an advisory lock so
    /// concurrent replicas cannot exceed the cap.
    public func apply(_ events: [LLMEvent], promoted: [[String: String]]? = nil) async throws -> (events: [LLMEvent], promoted: [[String: String]]) {
        var promoted = promoted ?? Array(repeating: [:], count: events.count)
        func items(_ i: Int) -> [(name: String, value: String)] {
            var out: [(String, String)] = []
            if let app = events[i].app { out.append((SeriesDimension.app.rawValue, app)) }
            if let environment = events[i].environment { out.append((SeriesDimension.environment.rawValue, environment)) }
            for (key, value) in promoted[i].sorted(by: { $0.key < $1.key }) { out.append(("tag:\(key)", value)) }
            return out
        }
        // In the order the batch holds them: the first values sent are the ones admitted.
        var unseen: [String: (tenant: String, name: String, values: [String])] = [:]
        self.admitted.withLock { admitted in
            for i in events.indices {
                guard let tenant = events[i].tenantID else { continue }
                for (name, value) in items(i) where value != Self.other {
                    let slot = Self.slot(tenant, name)
                    let known = admitted[slot] ?? []
                    if !known.contains(value) && known.count < self.cap && unseen[slot]?.values.contains(value) != true {
                        unseen[slot, default: (tenant, name, [])].values.append(value)
                    }
                }
            }
        }
        for (slot, pending) in unseen.sorted(by: { $0.key < $1.key }) {
            let values = try await self.admit(pending.values, tenant: pending.tenant, dimension: pending.name)
            self.admitted.withLock { $0[slot, default: []].formUnion(values) }
        }
        var out = events
        self.admitted.withLock { admitted in
            for i in events.indices {
                guard let tenant = events[i].tenantID else { continue }
                for (name, value) in items(i) where value != Self.other && admitted[Self.slot(tenant, name)]?.contains(value) != true {
                    switch name {
                    case SeriesDimension.app.rawValue: out[i].app = Self.other
                    case SeriesDimension.environment.rawValue: out[i].environment = Self.other
                    default: promoted[i][String(name.dropFirst(4))] = Self.other
                    }
                    self.overflow(name).increment()
                }
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
