import Events
import Foundation
import NIOCore
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
    /// `TW_OTLP_MAX_SPANS`: most spans in one `POST /v1/traces` request (the OpenTelemetry Collector's default batch
    /// is 8192; SDKs send 512). Default: 10000.
    public var otlpMaxSpans = 10_000
    /// `TW_OTLP_MAX_ELEMENTS`: most elements (resource spans, scope spans, spans, attributes, events at every level)
    /// in one `POST /v1/traces` request; every 64 are charged as an event. Default: 1000000.
    public var otlpMaxElements = 1_000_000
    /// `TW_DECODE_WORKERS`: threads that inflate and decode request bodies, shared fairly by tenants
    /// (`TenantWork`); `TW_TENANT_MAX_WAITING`: a tenant's requests waiting for one, beyond which it gets 429.
    /// Default: the number of cores (cores less one halved a tenant's ingest on two cores, 300,000 -> 210,000
    /// events/s in batches of 1,000); 64.
    public var decodeWorkers = System.coreCount
    public var tenantMaxWaiting = 64
    /// `TW_KEY_CACHE_TTL`: how long API-key lookups are cached in Redis (a revoked key works at most this long).
    /// Default: 30s.
    public var keyCacheTTL: Duration = .seconds(30)
    /// `TW_RATE_LIMIT_EVENTS_PER_SECOND`, `TW_RATE_LIMIT_REQUESTS_PER_SECOND`: each tenant's default budget (a
    /// tenant's own limits override it; 0 is unlimited). `TW_RATE_LIMIT_BURST_SECONDS`: seconds of rate that may be
    /// spent at once. `TW_MONTHLY_EVENT_QUOTA`: default monthly event cap (0: none).
    /// Default: 50000 events/s, 1000 requests/s, 2 s burst, no quota.
    public var rateLimits = RateLimiter.Configuration()
    /// `TW_MAX_HEADER_BYTES`: largest request head (all header fields) answered normally; larger is 431.
    /// Default: 16384.
    public var maxHeaderBytes = 16 * 1024
    /// `TW_MAX_URL_BYTES`: longest request target (path and query); longer is 414. Default: 8192.
    public var maxURLBytes = 8 * 1024
    /// `TW_TLS_CERT_FILE`, `TW_TLS_KEY_FILE` (PEM): serve HTTPS. `TW_HTTP_HEADER_TIMEOUT`, `TW_HTTP_BODY_TIMEOUT`,
    /// `TW_HTTP_IDLE_TIMEOUT`: deadlines for slow clients. Default: plain HTTP; 10s, 60s, 75s.
    public var http = HTTPServerOptions()
    /// `TW_ACCESS_LOG`: log one line per request (method, route, status, duration, tenant; never a key or the
    /// query string). Default: false.
    public var accessLog = false
    /// `TW_AUTH_LOOKUPS_PER_SECOND`: API-key lookups that miss every cache (unknown or new keys) one gateway replica
    /// makes in Postgres per second, burst of two seconds; past it 429 `too_many_key_lookups`. Bounds what
    /// unauthenticated requests with made-up keys cost. Default: 200.
    public var authLookupsPerSecond = 200
    /// `TW_ALLOWED_LATENESS`: events older than this are refused at the gateway, per event, naming the limit (set it
    /// to the aggregator's value, whose windows would not count them). Default: 600s.
    public var allowedLateness: Duration = .seconds(600)

    /// The limits events are held to at the gateway: the schema's, with the age bounded by the allowed lateness.
    public var eventLimits: EventLimits {
        var limits = EventLimits()
        limits.maxAgeSeconds = min(limits.maxAgeSeconds, self.allowedLateness.components.seconds)
        limits.ageLimitName = "the allowed lateness, TW_ALLOWED_LATENESS"
        return limits
    }

    public init() {}

    public init(environment: Environment) throws(ConfigurationError) {
        self.adminToken = environment.raw("TW_ADMIN_TOKEN")
        if let token = self.adminToken, token.utf8.count < 16 {
            throw ConfigurationError(key: "TW_ADMIN_TOKEN", reason: "must be at least 16 characters")
        }
        self.maxBodyBytes = try environment.int("TW_MAX_BODY_BYTES", default: self.maxBodyBytes, in: 1024...(256 * 1024 * 1024))
        self.maxDecompressedBytes = try environment.int("TW_MAX_DECOMPRESSED_BYTES", default: self.maxDecompressedBytes, in: 1024...(1024 * 1024 * 1024))
        self.maxBatchEvents = try environment.int("TW_MAX_BATCH_EVENTS", default: self.maxBatchEvents, in: 1...100_000)
        self.otlpMaxSpans = try environment.int("TW_OTLP_MAX_SPANS", default: self.otlpMaxSpans, in: 1...100_000)
        self.otlpMaxElements = try environment.int("TW_OTLP_MAX_ELEMENTS", default: self.otlpMaxElements, in: 1000...100_000_000)
        self.decodeWorkers = try environment.int("TW_DECODE_WORKERS", default: self.decodeWorkers, in: 1...256)
        self.tenantMaxWaiting = try environment.int("TW_TENANT_MAX_WAITING", default: self.tenantMaxWaiting, in: 1...10_000)
        self.keyCacheTTL = try environment.duration("TW_KEY_CACHE_TTL", default: self.keyCacheTTL, in: .seconds(1) ... .seconds(3600))
        self.rateLimits.eventsPerSecond = try environment.int("TW_RATE_LIMIT_EVENTS_PER_SECOND", default: self.rateLimits.eventsPerSecond, in: 0...10_000_000)
        self.rateLimits.requestsPerSecond = try environment.int("TW_RATE_LIMIT_REQUESTS_PER_SECOND", default: self.rateLimits.requestsPerSecond, in: 0...1_000_000)
        self.rateLimits.burstSeconds = Double(try environment.int("TW_RATE_LIMIT_BURST_SECONDS", default: Int(self.rateLimits.burstSeconds), in: 1...60))
        self.rateLimits.monthlyEventQuota = Int64(try environment.int("TW_MONTHLY_EVENT_QUOTA", default: 0, in: 0...Int.max))
        self.accessLog = try environment.bool("TW_ACCESS_LOG", default: false)
        self.authLookupsPerSecond = try environment.int("TW_AUTH_LOOKUPS_PER_SECOND", default: self.authLookupsPerSecond, in: 1...1_000_000)
        self.allowedLateness = try environment.duration("TW_ALLOWED_LATENESS", default: self.allowedLateness, in: .seconds(0) ... .seconds(7 * 86400))
        self.maxHeaderBytes = try environment.int("TW_MAX_HEADER_BYTES", default: self.maxHeaderBytes, in: 1024...(64 * 1024))
        self.maxURLBytes = try environment.int("TW_MAX_URL_BYTES", default: self.maxURLBytes, in: 256...(64 * 1024))
        self.http.tlsCertificateFile = environment.raw("TW_TLS_CERT_FILE")
        self.http.tlsKeyFile = environment.raw("TW_TLS_KEY_FILE")
        guard (self.http.tlsCertificateFile == nil) == (self.http.tlsKeyFile == nil) else {
            throw ConfigurationError(key: self.http.tlsCertificateFile == nil ? "TW_TLS_CERT_FILE" : "TW_TLS_KEY_FILE", reason: "set both TW_TLS_CERT_FILE and TW_TLS_KEY_FILE, or neither")
        }
        for key in ["TW_TLS_CERT_FILE", "TW_TLS_KEY_FILE"] {
            if let path = environment.raw(key), !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigurationError(key: key, reason: "cannot read \(path)")
            }
        }
        self.http.headerTimeout = try environment.duration("TW_HTTP_HEADER_TIMEOUT", default: self.http.headerTimeout, in: .seconds(1) ... .seconds(300))
        self.http.bodyTimeout = try environment.duration("TW_HTTP_BODY_TIMEOUT", default: self.http.bodyTimeout, in: .seconds(1) ... .seconds(3600))
        self.http.idleTimeout = try environment.duration("TW_HTTP_IDLE_TIMEOUT", default: self.http.idleTimeout, in: .seconds(1) ... .seconds(3600))
    }
}
