import Codecs
import Logging
import Postgres
import Redis

/// A caller identified by its API key.
public struct Caller: Sendable, Equatable {
    public var tenantID: String
    public var keyID: String
    public var scopes: Set<String>
}

/// Tenants and API keys. A key is `tw_<key id>_<secret>`: the key id (64 random bits, hex) finds the row, the
/// secret (256 random bits) proves possession; only the SHA-256 of the whole key is stored, and compared in
/// constant time. Lookups go through a Redis cache with a short TTL (negative answers too, so random keys cannot
/// hammer Postgres); a revoked key or disabled tenant stops working within that TTL.
public final class ApiKeyStore: Sendable {
    let postgres: PostgresClient
    let redis: RedisClient
    let cacheTTLSeconds: Int

    public init(postgres: PostgresClient, redis: RedisClient, cacheTTLSeconds: Int) {
        self.postgres = postgres
        self.redis = redis
        self.cacheTTLSeconds = cacheTTLSeconds
    }

    /// Creates a tenant and its first key (scopes ingest and query); returns the key, which is shown only now.
    public func createTenant(id: String, name: String) async throws -> String {
        let keyID = Digest.hex(Digest.randomBytes(8))
        let key = "tw_\(keyID)_\(Digest.hex(Digest.randomBytes(32)))"
        let hash = Digest.sha256(key)
        try await self.postgres.withTransaction { conn in
            try conn.query("INSERT INTO tenants (tenant_id, name) VALUES (\(id), \(name))")
            try conn.query("INSERT INTO api_keys (key_id, tenant_id, key_hash) VALUES (\(keyID), \(id), \(hash))")
        }
        return key
    }

    /// The caller a bearer token identifies, or nil when it is not a valid, active key.
    public func authenticate(_ token: String) async throws -> Caller? {
        let parts = token.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "tw", parts[1].count == 16, parts[2].count == 64,
            parts[1].allSatisfy(\.isHexDigit), parts[2].allSatisfy(\.isHexDigit)
        else { return nil }
        let keyID = String(parts[1])
        guard let record = try await self.record(keyID) else { return nil }
        guard Digest.constantTimeEquals(Digest.sha256(token), record.hash), record.active else { return nil }
        return Caller(tenantID: record.tenant, keyID: keyID, scopes: record.scopes)
    }

    struct Record {
        var tenant: String
        var hash: [UInt8]
        var scopes: Set<String>
        var active: Bool
    }

    private func record(_ keyID: String) async throws -> Record? {
        let cacheKey = RedisArgument("tw:apikey:v1:\(keyID)")
        if let cached = try? await self.redis.command(["GET", cacheKey]), let text = cached.string {
            return Self.decode(text)
        }
        let rows = try await self.postgres.query("""
            SELECT k.tenant_id, encode(k.key_hash, 'hex') AS hash, array_to_string(k.scopes, ',') AS scopes,
                   (k.revoked_at IS NULL AND NOT t.disabled) AS active
            FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id WHERE k.key_id = \(keyID)
            """)
        let record: Record? = try rows.first.map { row in
            Record(tenant: try row.decode("tenant_id"), hash: Self.unhex(try row.decode("hash")), scopes: Set((try row.decode("scopes", as: String.self)).split(separator: ",").map(String.init)), active: try row.decode("active"))
        }
        // Redis is only a cache: if it is down, answer from Postgres.
        _ = try? await self.redis.command(["SET", cacheKey, RedisArgument(Self.encode(record)), "EX", RedisArgument(self.cacheTTLSeconds)])
        return record
    }

    static func encode(_ r: Record?) -> String {
        guard let r else { return "-" }
        return "\(r.tenant)|\(Digest.hex(r.hash))|\(r.scopes.sorted().joined(separator: ","))|\(r.active ? 1 : 0)"
    }

    static func decode(_ text: String) -> Record? {
        let f = text.split(separator: "|", omittingEmptySubsequences: false)
        guard f.count == 4 else { return nil }
        return Record(tenant: String(f[0]), hash: unhex(String(f[1])), scopes: Set(f[2].split(separator: ",").map(String.init)), active: f[3] == "1")
    }

    static func unhex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            out.append(UInt8(Character(Unicode.Scalar(a)).hexDigitValue! << 4 | Character(Unicode.Scalar(b)).hexDigitValue!))
        }
        return out
    }
}
