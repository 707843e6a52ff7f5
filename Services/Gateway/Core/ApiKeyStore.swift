import Codecs
import Events
import Foundation
import HTTPTypes
import Metrics
import Synchronization
import Logging
import Postgres
import Redis

/// What a key may do. A key holds one or more.
public enum Scope: String, Sendable, Codable, CaseIterable, Comparable {
    /// POST events.
    case ingest
    /// Read series, breakdowns and anomalies.
    case query
    /// Manage the tenant's own keys.
    case admin

    public static func < (a: Scope, b: Scope) -> Bool { a.rawValue < b.rawValue }
}

/// A tenant's own limits; nil means the deployment's default, 0 means unlimited.
public struct TenantLimits: Sendable, Codable, Equatable {
    public var eventsPerSecond: Int?
    public var requestsPerSecond: Int?
    public var monthlyEventQuota: Int64?

    public init(eventsPerSecond: Int? = nil, requestsPerSecond: Int? = nil, monthlyEventQuota: Int64? = nil) {
        self.eventsPerSecond = eventsPerSecond
        self.requestsPerSecond = requestsPerSecond
        self.monthlyEventQuota = monthlyEventQuota
    }

    /// From a row with the `tenants` limit columns.
    init(_ row: PostgresRow) throws {
        self.init(
            eventsPerSecond: (try row.decodeIfPresent("events_per_second", as: Int32.self)).map(Int.init),
            requestsPerSecond: (try row.decodeIfPresent("requests_per_second", as: Int32.self)).map(Int.init),
            monthlyEventQuota: try row.decodeIfPresent("monthly_event_quota", as: Int64.self))
    }

    enum CodingKeys: String, CodingKey {
        case eventsPerSecond = "events_per_second", requestsPerSecond = "requests_per_second", monthlyEventQuota = "monthly_event_quota"
    }

    /// Unset limits are written as `null`, so an answer always shows every limit.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.eventsPerSecond, forKey: .eventsPerSecond)
        try c.encode(self.requestsPerSecond, forKey: .requestsPerSecond)
        try c.encode(self.monthlyEventQuota, forKey: .monthlyEventQuota)
    }
}

/// A caller identified by its API key.
public struct Caller: Sendable, Equatable {
    public var tenantID: String
    public var keyID: String
    public var scopes: Set<Scope>
    public var limits: TenantLimits
    /// Instrumentation scopes whose GenAI spans this tenant does not count (`otlp_ignored_scopes`).
    public var ignoredOTLPScopes: Set<String> = []
}

/// Tenants and API keys. A key is `tw_<key id>_<secret>`: the key id (64 random bits, hex) finds the row, the
/// secret (256 random bits) proves possession; only the SHA-256 of the whole key is stored, and compared in
/// constant time. Lookups go through a Redis cache with a short TTL. Changes made through this type drop the cached
/// entries at once; a change made in Postgres directly (or while Redis is unreachable) takes effect within the TTL.
///
/// Before authentication every request is a stranger's, so what an unknown key costs is bounded: a key id that
/// Postgres does not know is remembered in this process for the TTL (not in Redis, which a stream of random ids
/// would fill), and lookups that miss every cache draw from a per-replica budget (`lookupsPerSecond`, burst of
/// two seconds); past it the answer is 429 `too_many_key_lookups` with Retry-After, without touching Postgres.
public final class ApiKeyStore: Sendable {
    let postgres: PostgresClient
    let redis: RedisClient
    let cacheTTLSeconds: Int
    private let unknown = Mutex(UnknownKeys())
    private let lookups: TokenBucket
    private let refusedLookups = Counter(label: "tw_gateway_key_lookups_refused_total")
    private let postgresLookups = Counter(label: "tw_gateway_key_lookups_total")

    public init(postgres: PostgresClient, redis: RedisClient, cacheTTLSeconds: Int, lookupsPerSecond: Int = 200) {
        self.postgres = postgres
        self.redis = redis
        self.cacheTTLSeconds = cacheTTLSeconds
        self.lookups = TokenBucket(rate: Double(lookupsPerSecond), burst: Double(lookupsPerSecond * 2))
    }

    /// Key ids Postgres did not know, until their TTL; at most `capacity`, the oldest half dropped beyond it.
    struct UnknownKeys {
        static let capacity = 100_000
        var expiry: [String: ContinuousClock.Instant] = [:]

        mutating func contains(_ id: String, now: ContinuousClock.Instant) -> Bool {
            guard let until = self.expiry[id] else { return false }
            if until > now { return true }
            self.expiry[id] = nil
            return false
        }

        mutating func insert(_ id: String, until: ContinuousClock.Instant, now: ContinuousClock.Instant) {
            if self.expiry.count >= Self.capacity {
                self.expiry = self.expiry.filter { $0.value > now }
                if self.expiry.count >= Self.capacity {
                    let cutoff = self.expiry.values.sorted()[self.expiry.count / 2]
                    self.expiry = self.expiry.filter { $0.value > cutoff }
                }
            }
            self.expiry[id] = until
        }
    }

    // MARK: - Authentication

    /// The caller a bearer token identifies, or nil when it is not a valid, active key of an enabled tenant.
    public func authenticate(_ token: String) async throws -> Caller? {
        guard let keyID = Self.keyID(of: token) else { return nil }
        guard let record = try await self.record(keyID) else { return nil }
        guard Digest.constantTimeEquals(Digest.sha256(token), Self.unhex(record.hash)) else { return nil }
        if let expires = record.expiresAt, expires <= Date().timeIntervalSince1970 { return nil }
        guard record.active else { return nil }
        return Caller(tenantID: record.tenant, keyID: keyID, scopes: Set(record.scopes), limits: record.limits,
                      ignoredOTLPScopes: Set(record.ignoredOTLPScopes ?? []))
    }

    /// The key id of a well-formed key, or nil: the shape is checked before any lookup.
    static func keyID(of token: String) -> String? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 3 + 16 + 1 + 64, token.hasPrefix("tw_"), utf8[19] == UInt8(ascii: "_") else { return nil }
        let isHex: (UInt8) -> Bool = { (48...57).contains($0) || (97...102).contains($0) }
        guard utf8[3..<19].allSatisfy(isHex), utf8[20...].allSatisfy(isHex) else { return nil }
        return String(decoding: utf8[3..<19], as: UTF8.self)
    }

    /// The cached form of a key's row (JSON in Redis under `tw:apikey:v2:<key id>`; "-" caches "no such key").
    struct Record: Codable {
        var tenant: String
        var hash: String
        var scopes: [Scope]
        var active: Bool
        var expiresAt: Double?
        var limits: TenantLimits
        /// Optional so entries cached before the setting existed still decode.
        var ignoredOTLPScopes: [String]?
    }

    static func cacheKey(_ keyID: String) -> String { "tw:apikey:v2:\(keyID)" }

    private func record(_ keyID: String) async throws -> Record? {
        let cacheKey = RedisArgument(Self.cacheKey(keyID))
        if let cached = try? await self.redis.command(["GET", cacheKey]), let text = cached.string {
            return text == "-" ? nil : try? JSONDecoder().decode(Record.self, from: Data(text.utf8))
        }
        let now = ContinuousClock.now
        if self.unknown.withLock({ $0.contains(keyID, now: now) }) { return nil }
        guard self.lookups.take() else {
            self.refusedLookups.increment()
            throw Problem(.tooManyRequests, code: "too_many_key_lookups", title: "Too many unknown keys",
                detail: "this gateway is looking up too many keys it has not seen; retry after the delay", retryAfterSeconds: 1)
        }
        self.postgresLookups.increment()
        let rows = try await self.postgres.query("""
            SELECT k.tenant_id, encode(k.key_hash, 'hex') AS hash, array_to_string(k.scopes, ',') AS scopes,
                   (k.revoked_at IS NULL AND NOT t.disabled) AS active,
                   extract(epoch FROM k.expires_at)::float8 AS expires_at,
                   t.events_per_second, t.requests_per_second, t.monthly_event_quota,
                   array_to_string(t.otlp_ignored_scopes, ',') AS ignored_scopes
            FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id WHERE k.key_id = \(keyID)
            """)
        let record: Record? = try rows.first.map { row in
            Record(
                tenant: try row.decode("tenant_id"), hash: try row.decode("hash"),
                scopes: (try row.decode("scopes", as: String.self)).split(separator: ",").compactMap { Scope(rawValue: String($0)) },
                active: try row.decode("active"), expiresAt: try row.decodeIfPresent("expires_at", as: Double.self),
                limits: try TenantLimits(row),
                ignoredOTLPScopes: (try row.decode("ignored_scopes", as: String.self)).split(separator: ",").map(String.init))
        }
        guard let record else {
            self.unknown.withLock { $0.insert(keyID, until: now + .seconds(self.cacheTTLSeconds), now: now) }
            return nil
        }
        // Redis is only a cache: if it is down, answer from Postgres.
        let text = String(decoding: try JSONEncoder().encode(record), as: UTF8.self)
        _ = try? await self.redis.command(["SET", cacheKey, RedisArgument(text), "EX", RedisArgument(self.cacheTTLSeconds)])
        return record
    }

    /// Drops cached lookups so a change applies on every gateway at once (they share the Redis cache).
    func invalidate(keyIDs: [String]) async {
        guard !keyIDs.isEmpty else { return }
        _ = try? await self.redis.command([RedisArgument("DEL")] + keyIDs.map { RedisArgument(Self.cacheKey($0)) })
    }

    func invalidate(tenant: String) async throws {
        let rows = try await self.postgres.query("SELECT key_id FROM api_keys WHERE tenant_id = \(tenant)")
        await self.invalidate(keyIDs: try rows.map { try $0.decode("key_id") })
    }

    // MARK: - Tenants

    public struct Tenant: Sendable, Codable, Equatable {
        public var tenantID: String
        public var name: String
        public var disabled: Bool
        public var limits: TenantLimits
        /// Which cost an event keeps when its client sent one (`CostPolicy`).
        public var costPolicy: String
        /// Instrumentation scopes whose GenAI spans are not counted (README, "One call, two instrumentations").
        public var otlpIgnoredScopes: [String]
        /// Tag keys aggregated as breakdown dimensions (README, "Tags").
        public var promotedTags: [String]
        /// Where the tenant's traces open (`{trace_id}`, `{span_id}` replaced), linked from an anomaly's evidence.
        public var traceURLTemplate: String?
        public var createdAt: String

        enum CodingKeys: String, CodingKey {
            case tenantID = "tenant_id", name, disabled, limits, costPolicy = "cost_policy", otlpIgnoredScopes = "otlp_ignored_scopes", promotedTags = "promoted_tags", traceURLTemplate = "trace_url_template", createdAt = "created_at"
        }
    }

    static let tenantColumns = """
        tenant_id, name, disabled, events_per_second, requests_per_second, monthly_event_quota, cost_policy,
        array_to_string(otlp_ignored_scopes, ',') AS otlp_ignored_scopes, array_to_string(promoted_tags, chr(31)) AS promoted_tags, trace_url_template,
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at
        """

    static func tenant(_ row: PostgresRow) throws -> Tenant {
        Tenant(
            tenantID: try row.decode("tenant_id"), name: try row.decode("name"), disabled: try row.decode("disabled"),
            limits: try TenantLimits(row), costPolicy: try row.decode("cost_policy"),
            otlpIgnoredScopes: (try row.decode("otlp_ignored_scopes", as: String.self)).split(separator: ",").map(String.init),
            promotedTags: (try row.decode("promoted_tags", as: String.self)).split(separator: "\u{1F}").map(String.init),
            traceURLTemplate: try row.decodeIfPresent("trace_url_template"),
            createdAt: try row.decode("created_at"))
    }

    /// Creates a tenant and its first key (scopes ingest and query); returns the key, which is shown only now.
    /// Throws `PostgresError` with SQLSTATE 23505 when the tenant exists.
    public func createTenant(id: String, name: String, limits: TenantLimits = TenantLimits()) async throws -> IssuedKey {
        let issued = Self.newKey(tenant: id, name: "default", scopes: [.ingest, .query])
        try await self.postgres.withTransaction { conn in
            try conn.query("""
                INSERT INTO tenants (tenant_id, name, events_per_second, requests_per_second, monthly_event_quota)
                VALUES (\(id), \(name), \(limits.eventsPerSecond.map(Int32.init)), \(limits.requestsPerSecond.map(Int32.init)), \(limits.monthlyEventQuota))
                """)
            try Self.insert(issued, into: conn)
        }
        return issued
    }

    /// Tenants in id order, after `after` (keyset pagination).
    public func listTenants(after: String?, limit: Int) async throws -> [Tenant] {
        try await self.postgres.query("""
            SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE tenant_id > \(after ?? "") ORDER BY tenant_id LIMIT \(Int64(limit))
            """).map(Self.tenant)
    }

    public func tenant(_ id: String) async throws -> Tenant? {
        try await self.postgres.query("SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE tenant_id = \(id)").first.map(Self.tenant)
    }

    /// What an update sets: each non-nil member; a limit of `.some(nil)` returns it to the default.
    public struct TenantUpdate: Sendable {
        public var name: String?
        public var disabled: Bool?
        public var eventsPerSecond: Int??
        public var requestsPerSecond: Int??
        public var monthlyEventQuota: Int64??
        public var costPolicy: CostPolicy?
        /// Scope names, already checked by `JSONInput.isScopeName` (so they need no quoting in an array literal).
        public var otlpIgnoredScopes: [String]?
        public var promotedTags: [String]?
        /// `.some(nil)` clears it.
        public var traceURLTemplate: String??

        public init() {}
    }

    /// Applies `update`; returns the tenant as it now is, or nil when there is no such tenant. Cached keys of the
    /// tenant are dropped, so disabling or new limits apply at once.
    public func updateTenant(_ id: String, _ update: TenantUpdate) async throws -> Tenant? {
        var query = PostgresQuery(sql: "UPDATE tenants SET updated_at = now()", parameters: [])
        func set(_ column: String, _ value: String?) {
            query.parameters.append(value)
            query.sql += ", \(column) = $\(query.parameters.count)"
        }
        if let name = update.name { set("name", name) }
        if let disabled = update.disabled { set("disabled", disabled ? "t" : "f") }
        if let eps = update.eventsPerSecond { set("events_per_second", eps.map { String($0) }) }
        if let rps = update.requestsPerSecond { set("requests_per_second", rps.map { String($0) }) }
        if let quota = update.monthlyEventQuota { set("monthly_event_quota", quota.map { String($0) }) }
        if let policy = update.costPolicy { set("cost_policy", policy.rawValue) }
        if let scopes = update.otlpIgnoredScopes {
            precondition(scopes.allSatisfy(JSONInput.isScopeName))
            set("otlp_ignored_scopes", "{" + scopes.joined(separator: ",") + "}")
        }
        if let template = update.traceURLTemplate { set("trace_url_template", template) }
        if let tags = update.promotedTags {
            set("promoted_tags", PostgresQuery.textArray(tags))
        }
        query.parameters.append(id)
        query.sql += " WHERE tenant_id = $\(query.parameters.count) RETURNING \(Self.tenantColumns)"
        guard let tenant = try await self.postgres.query(query).first.map(Self.tenant) else { return nil }
        try await self.invalidate(tenant: id)
        return tenant
    }

    // MARK: - Keys

    /// A key as created: `key` is shown to the caller once and never stored.
    public struct IssuedKey: Sendable {
        public var tenantID: String
        public var keyID: String
        public var key: String
        public var hash: [UInt8]
        public var name: String
        public var scopes: [Scope]
    }

    /// A key as listed: never the secret, only its recognizable prefix.
    public struct KeyInfo: Sendable, Codable, Equatable {
        public var keyID: String
        public var prefix: String
        public var name: String
        public var scopes: [Scope]
        public var createdAt: String
        public var expiresAt: String?
        public var revokedAt: String?

        enum CodingKeys: String, CodingKey {
            case keyID = "key_id", prefix, name, scopes, createdAt = "created_at", expiresAt = "expires_at", revokedAt = "revoked_at"
        }
    }

    static func newKey(tenant: String, name: String, scopes: [Scope]) -> IssuedKey {
        let keyID = Digest.hex(Digest.randomBytes(8))
        let key = "tw_\(keyID)_\(Digest.hex(Digest.randomBytes(32)))"
        return IssuedKey(tenantID: tenant, keyID: keyID, key: key, hash: Digest.sha256(key), name: name, scopes: scopes.sorted())
    }

    static func insert(_ key: IssuedKey, into conn: isolated PostgresConnection) throws {
        try conn.query("""
            INSERT INTO api_keys (key_id, tenant_id, key_hash, scopes, name)
            VALUES (\(key.keyID), \(key.tenantID), \(key.hash), string_to_array(\(key.scopes.map(\.rawValue).joined(separator: ",")), ','), \(key.name))
            """)
    }

    /// Creates a key for an existing tenant; nil when there is no such tenant.
    public func createKey(tenant: String, name: String, scopes: [Scope]) async throws -> IssuedKey? {
        let issued = Self.newKey(tenant: tenant, name: name, scopes: scopes)
        return try await self.postgres.withTransaction { conn -> IssuedKey? in
            guard try !conn.query("SELECT 1 FROM tenants WHERE tenant_id = \(tenant) FOR SHARE").isEmpty else { return nil }
            try Self.insert(issued, into: conn)
            return issued
        }
    }

    static let keyColumns = """
        key_id, name, array_to_string(scopes, ',') AS scopes,
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
        to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS expires_at,
        to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS revoked_at
        """

    static func keyInfo(_ row: PostgresRow) throws -> KeyInfo {
        let keyID: String = try row.decode("key_id")
        return KeyInfo(
            keyID: keyID, prefix: "tw_\(keyID)_", name: try row.decode("name"),
            scopes: (try row.decode("scopes", as: String.self)).split(separator: ",").compactMap { Scope(rawValue: String($0)) },
            createdAt: try row.decode("created_at"), expiresAt: try row.decodeIfPresent("expires_at", as: String.self), revokedAt: try row.decodeIfPresent("revoked_at", as: String.self))
    }

    /// The tenant's keys, newest first, bounded.
    public func listKeys(tenant: String, limit: Int = 1000) async throws -> [KeyInfo] {
        try await self.postgres.query("""
            SELECT \(unescaped: Self.keyColumns) FROM api_keys WHERE tenant_id = \(tenant) ORDER BY created_at DESC, key_id LIMIT \(Int64(limit))
            """).map(Self.keyInfo)
    }

    /// Revokes a key of `tenant`; false when the tenant has no such active key.
    public func revokeKey(tenant: String, keyID: String) async throws -> Bool {
        let rows = try await self.postgres.query("""
            UPDATE api_keys SET revoked_at = now() WHERE tenant_id = \(tenant) AND key_id = \(keyID) AND revoked_at IS NULL RETURNING key_id
            """)
        await self.invalidate(keyIDs: [keyID])
        return !rows.isEmpty
    }

    /// Replaces a key by a new one with the same name and scopes. The old key stops working after `grace` seconds
    /// (0: at once), so clients can switch without an outage. Nil when the tenant has no such active key.
    public func rotateKey(tenant: String, keyID: String, graceSeconds: Int) async throws -> IssuedKey? {
        let result = try await self.postgres.withTransaction { conn -> IssuedKey? in
            let rows = try conn.query("""
                UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => \(Int64(graceSeconds))))
                WHERE tenant_id = \(tenant) AND key_id = \(keyID) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                RETURNING name, array_to_string(scopes, ',') AS scopes
                """)
            guard let row = rows.first else { return nil }
            let scopes = (try row.decode("scopes", as: String.self)).split(separator: ",").compactMap { Scope(rawValue: String($0)) }
            let issued = Self.newKey(tenant: tenant, name: try row.decode("name"), scopes: scopes)
            try Self.insert(issued, into: conn)
            return issued
        }
        await self.invalidate(keyIDs: [keyID])
        return result
    }

    static func unhex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var it = s.utf8.makeIterator()
        func value(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
        while let a = it.next(), let b = it.next() { out.append(value(a) << 4 | value(b)) }
        return out
    }
}
