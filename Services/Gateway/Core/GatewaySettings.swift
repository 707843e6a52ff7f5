import ServiceKit

/// The gateway's own settings (beyond `ServiceConfiguration`).
public struct GatewaySettings: Sendable {
    /// `TW_ADMIN_TOKEN`: bearer token of the admin API; unset disables it. Never logged. Default: unset.
    public var adminToken: String?
    /// `TW_MAX_BODY_BYTES`: largest request body as sent (compressed or not). Default: 5242880 (5 MiB).
    public var maxBodyBytes = 5 * 1024 * 1024
    /// `TW_MAX_DECOMPRESSED_BYTES`: largest body after gzip decompression. Default: 20971520 (20 MiB).
    public var maxDecompressedBytes = 20 * 1024 * 1024
    /// `TW_MAX_BATCH_EVENTS`: most events in one request. Default: 5000.
    public var maxBatchEvents = 5000
    /// `TW_KEY_CACHE_TTL`: how long API-key lookups are cached in Redis (a revoked key works at most this long).
    /// Default: 30s.
    public var keyCacheTTL: Duration = .seconds(30)

    public init() {}

    public init(environment: Environment) throws(ConfigurationError) {
        self.adminToken = environment.raw("TW_ADMIN_TOKEN")
        if let token = self.adminToken, token.utf8.count < 16 {
            throw ConfigurationError(key: "TW_ADMIN_TOKEN", reason: "must be at least 16 characters")
        }
        self.maxBodyBytes = try environment.int("TW_MAX_BODY_BYTES", default: self.maxBodyBytes, in: 1024...(256 * 1024 * 1024))
        self.maxDecompressedBytes = try environment.int("TW_MAX_DECOMPRESSED_BYTES", default: self.maxDecompressedBytes, in: 1024...(1024 * 1024 * 1024))
        self.maxBatchEvents = try environment.int("TW_MAX_BATCH_EVENTS", default: self.maxBatchEvents, in: 1...100_000)
        self.keyCacheTTL = try environment.duration("TW_KEY_CACHE_TTL", default: self.keyCacheTTL, in: .seconds(1) ... .seconds(3600))
    }
}
