import Events
import Foundation
import Postgres
import Synchronization

/// Which tenants exist, which are disabled and their cost policy, as the ingestor sees them: events of an unknown or disabled tenant
/// go to the dead-letter topic (direct producers are not trusted to name a real tenant).
///
/// The whole table is reloaded periodically (`reload`); a tenant not in the snapshot is looked up in Postgres once
/// (`resolve`), so a tenant created a moment ago is not refused, and the answer "unknown" is kept for
/// `negativeTTL` so a producer spraying made-up tenant ids costs one lookup per id per TTL, not one per event.
public final class TenantRegistry: Sendable {
    public enum Status: Sendable, Equatable {
        case active, disabled, unknown
    }

    struct Tenant: Sendable, Equatable {
        var disabled: Bool
        var costPolicy: CostPolicy
        var promotedTags: [String] = []
    }

    struct State {
        var known: [String: Tenant] = [:]
        var misses: [String: ContinuousClock.Instant] = [:]
    }

    let postgres: PostgresClient?
    let negativeTTL: Duration
    /// Bound on remembered misses; beyond it the oldest half is forgotten.
    static let maxMisses = 100_000
    private let state = Mutex(State())

    /// `postgres` nil: only what `set` puts in is known (unit tests).
    public init(postgres: PostgresClient?, negativeTTL: Duration = .seconds(5)) {
        self.postgres = postgres
        self.negativeTTL = negativeTTL
    }

    public func set(_ tenant: String, disabled: Bool = false, costPolicy: CostPolicy = .default, promotedTags: [String] = []) {
        self.state.withLock { $0.known[tenant] = Tenant(disabled: disabled, costPolicy: costPolicy, promotedTags: promotedTags) }
    }

    /// What a batch needs of each of its tenants, read under one lock: whether it may send, the tag keys it
    /// aggregates (`promoted_tags`), and its cost policy (the default for a tenant not known).
    public struct Info: Sendable {
        public var status: Status
        public var promotedTags: Set<String>
        public var costPolicy: CostPolicy
    }

    public func infos(_ tenants: Set<String>) -> [String: Info] {
        self.state.withLock { state in
            var out: [String: Info] = [:]
            for tenant in tenants {
                let known = state.known[tenant]
                out[tenant] = Info(status: known.map { $0.disabled ? .disabled : .active } ?? .unknown,
                                   promotedTags: Set(known?.promotedTags ?? []), costPolicy: known?.costPolicy ?? .default)
            }
            return out
        }
    }

    static let columns = "tenant_id, disabled, cost_policy, array_to_string(promoted_tags, chr(31)) AS promoted_tags"

    static func tenant(_ row: PostgresRow) throws -> (String, Tenant) {
        let policy = CostPolicy(rawValue: try row.decode("cost_policy")) ?? .default
        let promoted = (try row.decode("promoted_tags", as: String.self)).split(separator: "\u{1F}").map(String.init)
        return (try row.decode("tenant_id"), Tenant(disabled: try row.decode("disabled"), costPolicy: policy, promotedTags: promoted))
    }

    /// Reads the whole tenants table.
    public func reload() async throws {
        guard let postgres else { return }
        var known: [String: Tenant] = [:]
        for row in try await postgres.query("SELECT \(unescaped: Self.columns) FROM tenants") {
            let (id, tenant) = try Self.tenant(row)
            known[id] = tenant
        }
        self.state.withLock { state in
            state.known = known
            state.misses.removeAll()
        }
    }

    /// Looks up tenants the snapshot does not hold (skipping those that missed within the negative TTL).
    public func resolve(_ tenants: Set<String>) async throws {
        guard let postgres else { return }
        let now = ContinuousClock.now
        let ask = self.state.withLock { state in
            tenants.filter { state.known[$0] == nil && (state.misses[$0].map { now - $0 >= self.negativeTTL } ?? true) }
        }
        guard !ask.isEmpty else { return }
        let list = ask.sorted().joined(separator: ",")
        let rows = try await postgres.query("SELECT \(unescaped: Self.columns) FROM tenants WHERE tenant_id = ANY(string_to_array(\(list), ','))")
        var found: [String: Tenant] = [:]
        for row in rows {
            let (id, tenant) = try Self.tenant(row)
            found[id] = tenant
        }
        self.state.withLock { state in
            for tenant in ask {
                if let info = found[tenant] {
                    state.known[tenant] = info
                } else {
                    if state.misses.count >= Self.maxMisses {
                        let keep = state.misses.sorted { $0.value > $1.value }.prefix(Self.maxMisses / 2)
                        state.misses = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
                    }
                    state.misses[tenant] = now
                }
            }
        }
    }
}
