import Codecs
import Events
import Foundation
import Hummingbird
import Postgres

/// The bootstrap admin API, guarded by `TW_ADMIN_TOKEN`:
/// `POST /v1/admin/tenants` with `{"tenant_id": "acme", "name": "Acme"}` creates the tenant and answers 201 with
/// its first API key (shown only here). Without `TW_ADMIN_TOKEN` the admin API answers 404.
public struct AdminRoutes: Sendable {
    let keys: ApiKeyStore
    let adminToken: String?

    public init(keys: ApiKeyStore, adminToken: String?) {
        self.keys = keys
        self.adminToken = adminToken
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        router.post("/v1/admin/tenants") { request, _ in try await self.createTenant(request) }
    }

    func createTenant(_ request: Request) async throws -> Response {
        guard let adminToken else { throw Problem(.notFound, code: "not_found", title: "Not found", detail: "the admin API is disabled (TW_ADMIN_TOKEN is not set)") }
        let presented = request.headers[.authorization].flatMap { $0.lowercased().hasPrefix("bearer ") ? String($0.dropFirst(7)) : nil } ?? ""
        guard Digest.constantTimeEquals(Digest.sha256(presented), Digest.sha256(adminToken)) else {
            throw Problem.unauthorized("the admin API needs 'Authorization: Bearer <TW_ADMIN_TOKEN>'")
        }
        let body = Array(buffer: try await request.body.collect(upTo: 64 * 1024))
        struct NewTenant: Decodable {
            var tenant_id: String
            var name: String?
        }
        let input: NewTenant
        do {
            input = try JSONDecoder().decode(NewTenant.self, from: Data(body))
        } catch {
            throw Problem(.badRequest, code: "invalid_body", title: "Invalid tenant", detail: "expected {\"tenant_id\": \"...\", \"name\": \"...\"}")
        }
        do {
            try LLMEvent(eventID: "x", tenantID: input.tenant_id, timestamp: .now(), provider: "p", model: "m", inputTokens: 0, outputTokens: 0, latencyMs: 0, status: .ok).validate()
        } catch {
            throw Problem(.badRequest, code: "invalid_tenant_id", title: "Invalid tenant_id", detail: error.description)
        }
        let key: String
        do {
            key = try await self.keys.createTenant(id: input.tenant_id, name: input.name ?? input.tenant_id)
        } catch let error as PostgresError where error.sqlState == "23505" {
            throw Problem(.conflict, code: "tenant_exists", title: "Tenant exists", detail: "tenant '\(input.tenant_id)' already exists")
        }
        var out: [UInt8] = Array("{\"tenant_id\":".utf8)
        writeJSONString(input.tenant_id, into: &out)
        out.append(contentsOf: Array(",\"api_key\":".utf8))
        writeJSONString(key, into: &out)
        out.append(UInt8(ascii: "}"))
        return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }
}
