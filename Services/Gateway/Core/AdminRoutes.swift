import Codecs
import Events
import Foundation
import HTTPTypes
import Hummingbird
import Postgres

/// Tenant and key management.
///
/// The operator API, under `/v1/admin`, is guarded by `TW_ADMIN_TOKEN` (from a Kubernetes Secret) and manages every
/// tenant; without the token it answers 404. A tenant manages its own keys under `/v1/keys` with a key holding the
/// `admin` scope, and reads its own settings and usage at `/v1/tenant`. Keys are shown once, when created or rotated;
/// listings show only their prefix `tw_<key id>_`.
public struct AdminRoutes: Sendable {
    let keys: ApiKeyStore
    let access: TenantAccess
    let adminToken: String?

    /// Most tenants in one listing page.
    static let maxPage = 500
    /// Longest grace period of a rotated key.
    static let maxGraceSeconds: Int64 = 7 * 86_400

    public init(keys: ApiKeyStore, access: TenantAccess, adminToken: String?) {
        self.keys = keys
        self.access = access
        self.adminToken = adminToken
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        let admin = router.group("/v1/admin")
        admin.post("tenants") { request, _ in try await self.operator(request) { try await self.createTenant(request) } }
        admin.get("tenants") { request, _ in try await self.operator(request) { try await self.listTenants(request) } }
        admin.get("tenants/:tenant") { request, context in
            try await self.operator(request) { try await self.showTenant(try Self.tenantID(context)) }
        }
        admin.patch("tenants/:tenant") { request, context in
            try await self.operator(request) { try await self.updateTenant(try Self.tenantID(context), request) }
        }
        admin.get("tenants/:tenant/keys") { request, context in
            try await self.operator(request) { try await self.listKeys(try Self.tenantID(context)) }
        }
        admin.post("tenants/:tenant/keys") { request, context in
            try await self.operator(request) { try await self.createKey(try Self.tenantID(context), request) }
        }
        admin.post("tenants/:tenant/keys/:key/rotate") { request, context in
            try await self.operator(request) { try await self.rotateKey(try Self.tenantID(context), try Self.keyID(context), request) }
        }
        admin.delete("tenants/:tenant/keys/:key") { request, context in
            try await self.operator(request) { try await self.revokeKey(try Self.tenantID(context), try Self.keyID(context)) }
        }

        // A tenant's own keys, with an admin-scoped key of that tenant.
        self.access.route(router, .get, "/v1/keys", scope: .admin) { _, tenant, _ in try await self.listKeys(tenant.tenantID) }
        self.access.route(router, .post, "/v1/keys", scope: .admin) { request, tenant, _ in try await self.createKey(tenant.tenantID, request) }
        self.access.route(router, .post, "/v1/keys/:key/rotate", scope: .admin) { request, tenant, context in
            try await self.rotateKey(tenant.tenantID, try Self.keyID(context), request)
        }
        self.access.route(router, .delete, "/v1/keys/:key", scope: .admin) { _, tenant, context in
            try await self.revokeKey(tenant.tenantID, try Self.keyID(context))
        }
        self.access.route(router, .get, "/v1/tenant", scope: .query) { _, tenant, _ in try await self.showOwnTenant(tenant.tenantID) }
        // A tenant's own attribution settings (admin scope): which tag keys become breakdown dimensions.
        self.access.route(router, .patch, "/v1/tenant", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["promoted_tags", "trace_url_template"])
            var update = ApiKeyStore.TenantUpdate()
            update.promotedTags = try input.tagKeys("promoted_tags", max: Self.maxPromotedTags)
            update.traceURLTemplate = try Self.traceURLTemplate(input)
            guard try await self.keys.updateTenant(tenant.tenantID, update) != nil else { throw Self.noTenant(tenant.tenantID) }
            return try await self.showOwnTenant(tenant.tenantID)
        }
    }

    /// Runs `body` for the operator, whose bearer token must equal `TW_ADMIN_TOKEN` (compared in constant time).
    func `operator`(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        guard let adminToken else { throw Problem(.notFound, code: "not_found", title: "Not found", detail: "the admin API is disabled (TW_ADMIN_TOKEN is not set)") }
        let header = request.headers[.authorization] ?? ""
        let presented = header.prefix(7).lowercased() == "bearer " ? String(header.dropFirst(7)) : ""
        guard Digest.constantTimeEquals(Digest.sha256(presented), Digest.sha256(adminToken)) else {
            throw Problem.unauthorized("the admin API needs 'Authorization: Bearer <TW_ADMIN_TOKEN>'")
        }
        return try await body()
    }

    // MARK: - Tenants

    static let limitMembers: Set<String> = ["events_per_second", "requests_per_second", "monthly_event_quota"]

    func createTenant(_ request: Request) async throws -> Response {
        let input = try await JSONInput.read(request, allowed: ["tenant_id", "name", "limits"])
        guard let id = try input.string("tenant_id", maxLength: EventLimits.default.maxTenantIDLength) else { throw JSONInput.invalid("tenant_id", "required") }
        do {
            try LLMEvent.validateTenantID(id)
        } catch {
            throw Problem(.badRequest, code: "invalid_tenant_id", title: "Invalid tenant_id", detail: error.description)
        }
        var limits = TenantLimits()
        if let l = try input.object("limits", allowed: Self.limitMembers) {
            let update = try Self.limitsUpdate(l)
            limits = TenantLimits(eventsPerSecond: update.eventsPerSecond ?? nil, requestsPerSecond: update.requestsPerSecond ?? nil, monthlyEventQuota: update.monthlyEventQuota ?? nil)
        }
        let issued: ApiKeyStore.IssuedKey
        do {
            issued = try await self.keys.createTenant(id: id, name: try input.string("name") ?? id, limits: limits)
        } catch let error as PostgresError where error.sqlState == "23505" {
            throw Problem(.conflict, code: "tenant_exists", title: "Tenant exists", detail: "tenant '\(id)' already exists")
        }
        let tenant = try await self.keys.tenant(id)
        return try Self.json(.created, IssuedKeyBody(issued, tenant: tenant))
    }

    func listTenants(_ request: Request) async throws -> Response {
        let q = request.uri.queryParameters
        for (name, _) in q where name != "after" && name != "limit" {
            throw QueryRoutes.bad(String(name.prefix(64)), "unknown parameter; expected after or limit")
        }
        let limit = try QueryRoutes.limit(q, max: Self.maxPage, default: 100)
        let after = q["after"].map { String($0.prefix(EventLimits.default.maxTenantIDLength + 1)) }
        let tenants = try await self.keys.listTenants(after: after, limit: limit)
        struct Page: Encodable {
            var items: [ApiKeyStore.Tenant]
            var next_after: String?
        }
        return try Self.json(.ok, Page(items: tenants, next_after: tenants.count == limit ? tenants.last?.tenantID : nil))
    }

    /// `trace_url_template`: absent (unchanged), null or "" (cleared), or an http(s) URL of at most 512 characters
    /// holding `{trace_id}` (Jaeger `https://jaeger.example.com/trace/{trace_id}`, Tempo through Grafana, Langfuse).
    static func traceURLTemplate(_ input: JSONInput) throws -> String?? {
        guard input.has("trace_url_template") else { return nil }
        guard let text = try input.nullableString("trace_url_template", maxLength: 512), !text.isEmpty else { return .some(nil) }
        // ASCII only before the pattern: its `$` also matches before a U+2028 line separator.
        guard text.unicodeScalars.allSatisfy(\.isASCII), text.range(of: Self.traceURLPattern, options: .regularExpression) != nil else {
            throw JSONInput.invalid("trace_url_template", "must be an http(s) URL holding {trace_id}, e.g. https://jaeger.example.com/trace/{trace_id}")
        }
        return .some(text)
    }

    /// The shape the OpenAPI document states: scheme, host, optional port, a path and query of URL characters
    /// holding `{trace_id}` (and `{span_id}` at will).
    static let traceURLPattern = "^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?/[A-Za-z0-9._~/?&=%-]*[{]trace_id[}][A-Za-z0-9._~/?&=%{}-]*$"

    /// Most tag keys a tenant promotes: each adds a rollup row per event and window that carries it.
    static let maxPromotedTags = 5

    func showTenant(_ id: String) async throws -> Response {
        guard let tenant = try await self.keys.tenant(id) else { throw Self.noTenant(id) }
        return try Self.json(.ok, tenant)
    }

    /// The caller's own tenant, with the quota used this month.
    func showOwnTenant(_ id: String) async throws -> Response {
        guard let tenant = try await self.keys.tenant(id) else { throw Self.noTenant(id) }
        struct Own: Encodable {
            var tenant: ApiKeyStore.Tenant
            var events_this_month: Int64?
        }
        return try Self.json(.ok, Own(tenant: tenant, events_this_month: try? await self.access.limiter?.quotaUsed(tenant: id)))
    }

    func updateTenant(_ id: String, _ request: Request) async throws -> Response {
        let input = try await JSONInput.read(request, allowed: ["name", "disabled", "limits", "cost_policy", "otlp_ignored_scopes", "promoted_tags"])
        var update = ApiKeyStore.TenantUpdate()
        update.name = try input.string("name")
        update.disabled = try input.bool("disabled")
        if let policy = try input.string("cost_policy", maxLength: 32) {
            guard let value = CostPolicy(rawValue: policy) else {
                throw JSONInput.invalid("cost_policy", "must be one of \(CostPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            update.costPolicy = value
        }
        update.otlpIgnoredScopes = try input.scopeNames("otlp_ignored_scopes", max: 20)
        update.promotedTags = try input.tagKeys("promoted_tags", max: Self.maxPromotedTags)
        if let l = try input.object("limits", allowed: Self.limitMembers) {
            let limits = try Self.limitsUpdate(l)
            update.eventsPerSecond = limits.eventsPerSecond
            update.requestsPerSecond = limits.requestsPerSecond
            update.monthlyEventQuota = limits.monthlyEventQuota
        }
        guard let tenant = try await self.keys.updateTenant(id, update) else { throw Self.noTenant(id) }
        return try Self.json(.ok, tenant)
    }

    static func limitsUpdate(_ l: JSONInput) throws -> ApiKeyStore.TenantUpdate {
        var update = ApiKeyStore.TenantUpdate()
        update.eventsPerSecond = try l.integer("events_per_second", in: 0...10_000_000).map { $0.map { Int($0) } }
        update.requestsPerSecond = try l.integer("requests_per_second", in: 0...1_000_000).map { $0.map { Int($0) } }
        update.monthlyEventQuota = try l.integer("monthly_event_quota", in: 0...1_000_000_000_000)
        return update
    }

    // MARK: - Keys

    func listKeys(_ tenant: String) async throws -> Response {
        struct Keys: Encodable { var items: [ApiKeyStore.KeyInfo] }
        return try Self.json(.ok, Keys(items: try await self.keys.listKeys(tenant: tenant)))
    }

    func createKey(_ tenant: String, _ request: Request) async throws -> Response {
        let input = try await JSONInput.read(request, allowed: ["name", "scopes"])
        guard let scopes = try input.scopes("scopes") else { throw JSONInput.invalid("scopes", "required, e.g. [\"ingest\"]") }
        guard let issued = try await self.keys.createKey(tenant: tenant, name: try input.string("name") ?? "", scopes: scopes) else {
            throw Self.noTenant(tenant)
        }
        return try Self.json(.created, IssuedKeyBody(issued, tenant: nil))
    }

    func rotateKey(_ tenant: String, _ keyID: String, _ request: Request) async throws -> Response {
        let input = try await JSONInput.read(request, allowed: ["grace_seconds"], optionalBody: true)
        if input.members["grace_seconds"] == .null { throw JSONInput.invalid("grace_seconds", "must be an integer in 0...\(Self.maxGraceSeconds), or left out for 0") }
        let grace = try input.integer("grace_seconds", in: 0...Self.maxGraceSeconds).flatMap { $0 } ?? 0
        guard let issued = try await self.keys.rotateKey(tenant: tenant, keyID: keyID, graceSeconds: Int(grace)) else { throw Self.noKey(keyID) }
        return try Self.json(.created, IssuedKeyBody(issued, tenant: nil))
    }

    func revokeKey(_ tenant: String, _ keyID: String) async throws -> Response {
        guard try await self.keys.revokeKey(tenant: tenant, keyID: keyID) else { throw Self.noKey(keyID) }
        return Response(status: .noContent)
    }

    // MARK: - Helpers

    /// A new key: the only answer that ever holds the secret.
    struct IssuedKeyBody: Encodable {
        var tenant_id: String
        var key_id: String
        var api_key: String
        var name: String
        var scopes: [Scope]
        var tenant: ApiKeyStore.Tenant?

        init(_ issued: ApiKeyStore.IssuedKey, tenant: ApiKeyStore.Tenant?) {
            self.tenant_id = issued.tenantID
            self.key_id = issued.keyID
            self.api_key = issued.key
            self.name = issued.name
            self.scopes = issued.scopes
            self.tenant = tenant
        }
    }

    static func tenantID(_ context: some RequestContext) throws -> String {
        let id = context.parameters.get("tenant") ?? ""
        do {
            try LLMEvent.validateTenantID(id)
        } catch {
            throw Problem(.badRequest, code: "invalid_tenant_id", title: "Invalid tenant_id", detail: error.description)
        }
        return id
    }

    static func keyID(_ context: some RequestContext) throws -> String {
        let id = context.parameters.get("key") ?? ""
        guard id.utf8.count == 16, id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw Problem(.badRequest, code: "invalid_key_id", title: "Invalid key id", detail: "key_id: must be 16 lowercase hex digits (the part after tw_ in the key's prefix)")
        }
        return id
    }

    static func noTenant(_ id: String) -> Problem {
        Problem(.notFound, code: "tenant_not_found", title: "No such tenant", detail: "tenant '\(id)' does not exist")
    }

    static func noKey(_ id: String) -> Problem {
        Problem(.notFound, code: "key_not_found", title: "No such key", detail: "the tenant has no active key '\(id)'")
    }

    /// Admin answers are never stored by a cache: some carry a key's secret (creation, rotation), all carry
    /// tenant configuration.
    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
