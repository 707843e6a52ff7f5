import Events
import Metrics
import Postgres
import Rollups
import Synchronization

/// The per-tenant cardinality cap on the series dimensions that events name freely (`app`, `environment`): each
/// becomes a rollup row per window and level, so a client sending a request id as its app would multiply a
/// tenant's rows without bound. The first `cap` distinct values of a dimension a tenant sends are admitted
/// (Postgres `dimension_values`, shared by every ingestor replica and kept across restarts, so a replay maps each
/// event the same way); later values are counted as `other` (the event itself says so on llm.events.v1) and
/// counted in `tw_ingest_dimension_overflow_total{dimension}`.
public final class DimensionRegistry: Sendable {
    public static let other = "other"
    public static let capped: [SeriesDimension] = [.app, .environment]

    let postgres: PostgresClient?
    public let cap: Int
    /// Admitted values per "tenant\0dimension". Values are never removed, so what is here stays true.
    private let admitted = Mutex<[String: Set<String>]>([:])
    private let overflow = Dictionary(uniqueKeysWithValues: DimensionRegistry.capped.map {
        ($0, Counter(label: "tw_ingest_dimension_overflow_total", dimensions: [("dimension", $0.rawValue)]))
    })

    /// `postgres` nil: values are admitted in memory only (unit tests).
    public init(postgres: PostgresClient?, cap: Int) {
        self.postgres = postgres
        self.cap = cap
    }

    static func slot(_ tenant: String, _ d: SeriesDimension) -> String { "\(tenant)\u{0}\(d.rawValue)" }

    /// `events` with every value beyond its tenant's cap replaced by `other`. Values not seen yet are admitted in one
    /// transaction per (tenant, dimension), under an advisory lock so concurrent replicas cannot exceed the cap.
    public func apply(_ events: [LLMEvent]) async throws -> [LLMEvent] {
        // In the order the batch holds them: the first values sent are the ones admitted.
        var unseen: [String: (tenant: String, dimension: SeriesDimension, values: [String])] = [:]
        self.admitted.withLock { admitted in
            for event in events {
                guard let tenant = event.tenantID else { continue }
                for d in Self.capped {
                    guard let value = Self.value(event, d), value != Self.other else { continue }
                    let slot = Self.slot(tenant, d)
                    let known = admitted[slot] ?? []
                    if !known.contains(value) && known.count < self.cap && unseen[slot]?.values.contains(value) != true { unseen[slot, default: (tenant, d, [])].values.append(value) }
                }
            }
        }
        for (slot, pending) in unseen.sorted(by: { $0.key < $1.key }) {
            let values = try await self.admit(pending.values, tenant: pending.tenant, dimension: pending.dimension)
            self.admitted.withLock { $0[slot, default: []].formUnion(values) }
        }
        return self.admitted.withLock { admitted in
            events.map { event in
                guard let tenant = event.tenantID else { return event }
                var out = event
                for d in Self.capped {
                    guard let value = Self.value(event, d), value != Self.other, admitted[Self.slot(tenant, d)]?.contains(value) != true else { continue }
                    Self.set(&out, d, Self.other)
                    self.overflow[d]?.increment()
                }
                return out
            }
        }
    }

    /// Admits what the cap allows of `values` and returns every admitted value of the slot.
    func admit(_ values: [String], tenant: String, dimension: SeriesDimension) async throws -> Set<String> {
        guard let postgres = self.postgres else { return Set(values.prefix(self.cap)) }
        let cap = Int64(self.cap)
        return try await postgres.withTransaction { conn in
            try conn.query("SELECT pg_advisory_xact_lock(hashtext(\(tenant)), hashtext(\(dimension.rawValue)))")
            var have = Set(try conn.query("SELECT value FROM dimension_values WHERE tenant_id = \(tenant) AND dimension = \(dimension.rawValue)").map { try $0.decode("value", as: String.self) })
            for value in values where !have.contains(value) && Int64(have.count) < cap {
                try conn.query("INSERT INTO dimension_values (tenant_id, dimension, value) VALUES (\(tenant), \(dimension.rawValue), \(value)) ON CONFLICT DO NOTHING")
                have.insert(value)
            }
            return have
        }
    }

    static func value(_ event: LLMEvent, _ d: SeriesDimension) -> String? {
        switch d {
        case .app: return event.app
        case .environment: return event.environment
        default: return nil
        }
    }

    static func set(_ event: inout LLMEvent, _ d: SeriesDimension, _ value: String) {
        switch d {
        case .app: event.app = value
        case .environment: event.environment = value
        default: break
        }
    }
}
