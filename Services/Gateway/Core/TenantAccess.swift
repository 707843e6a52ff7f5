import Foundation
import NIOCore
import HTTPTypes
import Hummingbird
import Postgres

/// The one place a request becomes a tenant's request. Every tenant route is registered through `route`, which
/// authenticates the key, checks its scope, refuses any attempt to name another tenant, takes the request from the
/// tenant's rate budget, and hands the handler a `TenantRequest`: the tenant's identity and a database handle that
/// can only read that tenant's rows. Handlers never see a key, a raw connection pool or a tenant id from the request.
public struct TenantAccess: Sendable {
    let keys: ApiKeyStore
    let limiter: RateLimiter?
    let postgres: PostgresClient
    /// Where bodies are inflated and decoded, fairly between tenants.
    public let work: TenantWork
    /// Turns for the heavier queries (series, breakdowns, users), fairly between tenants.
    public let queries: TenantWork

    public init(keys: ApiKeyStore, limiter: RateLimiter?, postgres: PostgresClient, work: TenantWork = TenantWork(),
                queries: TenantWork = TenantWork(workers: 2 * System.coreCount, maxWaiting: 32, threads: false)) {
        self.keys = keys
        self.limiter = limiter
        self.postgres = postgres
        self.work = work
        self.queries = queries
    }

    /// Takes `count` more units from the tenant's request budget for a request that costs more than one (a series
    /// of 10,000 points costs 11); nothing when `count` is not positive.
    func chargeRequests(_ count: Int, caller: Caller) async throws {
        guard let limiter = self.limiter, count > 0 else { return }
        let decision = await limiter.checkRequest(tenant: caller.tenantID, limits: caller.limits, cost: count)
        if decision.outcome != .allowed { throw Problem.rateLimited(decision) }
    }

    /// Query parameters and headers by which a client might try to pick a tenant. Present and naming another tenant
    /// is refused (403), so a crafted request fails loudly instead of being quietly answered for the key's tenant.
    static let tenantParameters = ["tenant_id", "tenant"]
    static let tenantHeader = HTTPField.Name("X-Tenant-ID")!

    /// Registers `handler` for `method path`, reachable only with a key holding `scope`.
    public func route<Context: RequestContext>(
        _ router: Router<Context>, _ method: HTTPRequest.Method, _ path: RouterPath, scope: Scope,
        handler: @escaping @Sendable (Request, TenantRequest, Context) async throws -> Response
    ) {
        router.on(path, method: method) { request, context in
            let tenant = try await self.authorize(request, scope: scope)
            var response = try await handler(request, tenant, context)
            if let decision = tenant.requestDecision { RateLimitHeaders.apply(decision, to: &response.headers) }
            return response
        }
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    /// Whether `token` still authenticates as `tenant` with `scope` (for long-lived streams); nil when the stores
    /// cannot tell right now.
    func stillAuthorized(token: String, tenant: String, scope: Scope) async -> Bool? {
        do {
            guard let caller = try await self.keys.authenticate(token) else { return false }
            return caller.tenantID == tenant && caller.scopes.contains(scope)
        } catch {
            return nil
        }
    }

    func authorize(_ request: Request, scope: Scope) async throws -> TenantRequest {
        guard let token = Self.bearerToken(request) else {
            throw Problem.unauthorized("send the API key as 'Authorization: Bearer <key>'")
        }
        guard let caller = try await self.keys.authenticate(token) else {
            throw Problem.unauthorized("the API key is not valid, has expired or was revoked, or its tenant is disabled")
        }
        AccessLog.note(tenant: caller.tenantID)
        guard caller.scopes.contains(scope) else {
            throw Problem(.forbidden, code: "forbidden", title: "Missing scope", detail: "this key lacks the '\(scope.rawValue)' scope")
        }
        // Every occurrence counts: `tenant_id=mine&tenant_id=other` is refused like `tenant_id=other`.
        let named = request.uri.queryParameters.filter { Self.tenantParameters.contains(String($0.key)) }.map { String($0.value) }
            + request.headers[values: Self.tenantHeader]
        if named.contains(where: { $0 != caller.tenantID }) {
            throw Problem(.forbidden, code: "tenant_mismatch", title: "Another tenant", detail: "this key belongs to one tenant and cannot act for another; leave out tenant_id")
        }
        var decision: RateLimiter.Decision?
        if let limiter {
            let d = await limiter.checkRequest(tenant: caller.tenantID, limits: caller.limits)
            if d.outcome != .allowed { throw Problem.rateLimited(d) }
            decision = d
        }
        return TenantRequest(caller: caller, database: TenantDatabase(postgres: self.postgres, tenantID: caller.tenantID), requestDecision: decision)
    }
}

/// A request acting for one tenant.
public struct TenantRequest: Sendable {
    public let caller: Caller
    /// Reads of tenant data, confined to this tenant by row-level security.
    public let database: TenantDatabase
    let requestDecision: RateLimiter.Decision?

    public var tenantID: String { self.caller.tenantID }
}

/// Tenant data reads, each in a transaction running as the `tokenwatch_tenant` role with `tokenwatch.tenant_id` set
/// (the schema's row-level security policies): a statement sees that tenant's rows whatever its WHERE clause says.
/// Statements still name the tenant themselves, which lets Postgres use the indexes; the policy is the second wall.
public struct TenantDatabase: Sendable {
    let postgres: PostgresClient
    public let tenantID: String

    public init(postgres: PostgresClient, tenantID: String) {
        self.postgres = postgres
        self.tenantID = tenantID
    }

    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        let tenant = self.tenantID
        return try await self.postgres.withTransaction { conn in
            try conn.query("SELECT set_config('role', 'tokenwatch_tenant', true), set_config('tokenwatch.tenant_id', \(tenant), true)")
            return try conn.query(query)
        }
    }

    /// A limit on how many of something a tenant may have: `count` (a query answering a column `n`) and, when `n` is
    /// below `limit`, `insert`, in one transaction holding the tenant's lock on `resource` (an advisory lock for the
    /// transaction), so concurrent creations cannot each see room for one more (40 at once made 39 channels of 20).
    /// Returns the insert's rows, or nil when the limit was reached.
    public func insert(_ insert: PostgresQuery, whileCount count: PostgresQuery, isBelow limit: Int64, resource: String) async throws -> PostgresRows? {
        let tenant = self.tenantID
        return try await self.postgres.withTransaction { conn in
            try conn.query("SELECT set_config('role', 'tokenwatch_tenant', true), set_config('tokenwatch.tenant_id', \(tenant), true)")
            try conn.query("SELECT pg_advisory_xact_lock(hashtextextended(\(resource + "/" + tenant), 0))")
            let n: Int64 = try conn.query(count)[0].decode("n")
            guard n < limit else { return nil }
            return try conn.query(insert)
        }
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): the budget and what is left of it.
enum RateLimitHeaders {
    static let policy = HTTPField.Name("RateLimit-Policy")!
    static let state = HTTPField.Name("RateLimit")!

    static func apply(_ d: RateLimiter.Decision, to headers: inout HTTPFields) {
        guard let limit = d.limit else { return }
        headers.append(HTTPField(name: Self.policy, value: "\"\(d.policy)\";q=\(limit);w=\(d.windowSeconds)"))
        headers.append(HTTPField(name: Self.state, value: "\"\(d.policy)\";r=\(d.remaining);t=\(d.resetSeconds)"))
    }
}

extension Problem {
    static func rateLimited(_ d: RateLimiter.Decision) -> Problem {
        var problem: Problem
        switch d.outcome {
        case .exceedsBurst:
            problem = Problem(.contentTooLarge, code: "batch_exceeds_rate_limit", title: "Batch larger than the rate limit allows",
                detail: "the batch holds more \(d.policy) than the tenant's burst of \(d.limit ?? 0); send smaller batches")
        case .quotaExceeded:
            problem = Problem(.tooManyRequests, code: "quota_exceeded", title: "Monthly event quota exceeded",
                detail: "the tenant's monthly event quota is used up (\(d.remaining) events left this month); it resets at the start of the next month (UTC)",
                retryAfterSeconds: d.retryAfterSeconds)
        default:
            problem = Problem(.tooManyRequests, code: "rate_limited", title: "Rate limit exceeded",
                detail: "the tenant's \(d.policy) rate limit (\(d.limit ?? 0) \(d.policy) per \(d.windowSeconds) s burst) is exceeded; retry after \(d.retryAfterSeconds) s",
                retryAfterSeconds: d.retryAfterSeconds)
        }
        problem.headers = [:]
        RateLimitHeaders.apply(d, to: &problem.headers)
        return problem
    }
}
