import Events
import Foundation
import GatewayCore
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Kafka
import Postgres
import Rollups
import Testing
import TestSupport

/// One HTTP exchange's outcome, for terse assertions.
struct Reply {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: [String: Any]
    var text: String

    var type: String? { (self.body["type"] as? String).map { String($0.dropFirst(Problem.typeBase.count)) } }
}

extension TestClientProtocol {
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String? = nil, body: String? = nil, headers extra: HTTPFields = [:]) async throws -> Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil, headers[.contentType] == nil { headers[.contentType] = "application/json" }
        return try await self.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { response in
            Reply(status: response.status, headers: response.headers, body: json(response.body), text: String(buffer: response.body))
        }
    }
}

@Suite("Tenants, keys and isolation", .serialized, .timeLimit(.minutes(3)))
struct TenancyTests {
    @Test("two tenants with the same model names: every query endpoint answers only the key's tenant; row-level security is a second wall")
    func isolation() async throws {
        let gateway = try await Gateway.make()
        let a = TestEnvironment.unique("iso-a"), b = TestEnvironment.unique("iso-b")
        let keyA = try await gateway.keys.createTenant(id: a, name: "A").key
        let keyB = try await gateway.keys.createTenant(id: b, name: "B").key
        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 7_200_000_000) / 3_600_000_000 * 3_600_000_000
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        var users = UserTotalDeltas()
        for (tenant, count, cost) in [(a, 7, Int64(100)), (b, 5, Int64(10_000))] {
            for i in 0..<count {
                let e = LLMEvent(eventID: "\(tenant)-\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 1_000_000),
                                 provider: "openai", model: i % 2 == 0 ? "gpt-4o" : "gpt-4o-mini", inputTokens: 10, outputTokens: 1, latencyMs: 50, status: .ok, costNanos: cost)
                minutes.add(e)
                hours.add(e)
                users.add(e)
            }
            try await gateway.postgres.query("""
                INSERT INTO anomalies (tenant_id, anomaly_id, window_start, body) VALUES
                (\(tenant), \(tenant + "-x"), \(EventTimestamp(microsecondsSinceEpoch: origin).rfc3339)::timestamptz, jsonb_build_object('tenant_id', \(tenant)::text))
                """)
        }
        try await RollupStore.write(minutes, hours, to: gateway.postgres)
        for q in UserTotalsStore.upserts(users) { try await gateway.postgres.query(q) }
        let range = "from=\(EventTimestamp(microsecondsSinceEpoch: origin).rfc3339)&to=\(EventTimestamp(microsecondsSinceEpoch: origin + 3_600_000_000).rfc3339)"

        try await gateway.app.test(.router) { client in
            for (tenant, key, count) in [(a, keyA, 7), (b, keyB, 5)] {
                let series = try await client.call(.get, "/v1/series?metric=requests&step=1h&\(range)", token: key)
                #expect((series.body["points"] as? [[String: Any]])?.first?["value"] as? Int == count)
                let model = try await client.call(.get, "/v1/series?metric=requests&step=1h&model=gpt-4o&\(range)", token: key)
                #expect((model.body["points"] as? [[String: Any]])?.first?["value"] as? Int == (count + 1) / 2)
                let breakdown = try await client.call(.get, "/v1/breakdown?\(range)", token: key)
                #expect((breakdown.body["totals"] as? [String: Any])?["requests"] as? Int == count)
                let anomalies = try await client.call(.get, "/v1/anomalies?\(range)", token: key)
                #expect((anomalies.body["items"] as? [[String: Any]])?.map { $0["tenant_id"] as? String } == [tenant])
            }
            // A's key naming B, by parameter or header, is refused on every endpoint.
            for path in ["/v1/series?metric=requests&\(range)", "/v1/breakdown?\(range)", "/v1/anomalies?\(range)", "/v1/tenant"] {
                for variant in ["&tenant_id=\(b)", "&tenant=\(b)"] {
                    let uri = path.contains("?") ? path + variant : path + "?" + variant.dropFirst()
                    let reply = try await client.call(.get, uri, token: keyA)
                    #expect(reply.status == .forbidden && reply.type == "tenant_mismatch", "\(uri)")
                }
                let reply = try await client.call(.get, path, token: keyA, headers: [HTTPField.Name("X-Tenant-ID")!: b])
                #expect(reply.status == .forbidden && reply.type == "tenant_mismatch", "\(path)")
            }
            let typo = try await client.call(.get, "/v1/series?metric=requests&modle=gpt-4o", token: keyA)
            #expect(typo.status == .badRequest && typo.text.contains("modle: unknown parameter"))
        }

        // The second wall: as tenant A, a statement with no tenant condition still sees only A's rows, and without
        // the tenant setting the role sees no row at all (an error on a fresh session, nothing after one set it).
        let rows = try await TenantDatabase(postgres: gateway.postgres, tenantID: a).query("SELECT DISTINCT tenant_id FROM rollups_1m WHERE tenant_id IN (\(a), \(b))")
        #expect(try rows.map { try $0.decode("tenant_id", as: String.self) } == [a])
        let anomalies = try await TenantDatabase(postgres: gateway.postgres, tenantID: b).query("SELECT count(*)::bigint AS n FROM anomalies")
        #expect(try anomalies[0].decode("n", as: Int64.self) == 1)
        // Per-user totals (inserted by COPY, so not under row-level security): the role reads them only through the
        // view, which shows its tenant's rows alone; the table itself is refused.
        let userRows = try await TenantDatabase(postgres: gateway.postgres, tenantID: a).query("SELECT DISTINCT tenant_id FROM user_totals_1d_tenant WHERE tenant_id IN (\(a), \(b))")
        #expect(try userRows.map { try $0.decode("tenant_id", as: String.self) } == [a])
        await #expect(throws: PostgresError.self, "the tenant role may not read the per-user table") {
            try await TenantDatabase(postgres: gateway.postgres, tenantID: a).query("SELECT count(*) FROM user_totals_1d")
        }
        let unset = try? await gateway.postgres.withTransaction { conn in
            try conn.query("SET LOCAL ROLE tokenwatch_tenant")
            return try conn.query("SELECT count(*)::bigint AS n FROM rollups_1m")[0].decode("n", as: Int64.self)
        }
        #expect(unset == nil || unset == 0)
        let unsetUsers = try? await gateway.postgres.withTransaction { conn in
            try conn.query("SET LOCAL ROLE tokenwatch_tenant")
            return try conn.query("SELECT count(*)::bigint AS n FROM user_totals_1d_tenant")[0].decode("n", as: Int64.self)
        }
        #expect(unsetUsers == nil || unsetUsers == 0)
        await gateway.producer.shutdown()
    }

    @Test("admin API: tenants created, listed, limited and disabled; keys created with scopes, listed by prefix, rotated and revoked, at once")
    func keysLifecycle() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("adm"), other = TestEnvironment.unique("adm-other")
        try await gateway.app.test(.router) { client in
            let created = try await client.call(.post, "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(tenant)","name":"Acme","limits":{"events_per_second":500}}"#)
            #expect(created.status == .created)
            let first = try #require(created.body["api_key"] as? String)
            let limits = (created.body["tenant"] as? [String: Any])?["limits"] as? [String: Any]
            #expect(limits?["events_per_second"] as? Int == 500 && limits?["requests_per_second"] is NSNull && limits?["monthly_event_quota"] is NSNull)
            _ = try await client.call(.post, "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(other)"}"#)

            // Bad admin input names the member and the reason.
            for (body, fragment) in [(#"{"tenant_id":"a b"}"#, "tenant_id: "), (#"{"tenant_id":"x","extra":1}"#, "extra: unknown member"),
                                     (#"{"tenant_id":"x","limits":{"events_per_second":-1}}"#, "events_per_second: must be an integer in"),
                                     (#"{"tenant_id":7}"#, "tenant_id: must be a string"), ("[1]", "a JSON object")] {
                let reply = try await client.call(.post, "/v1/admin/tenants", token: adminToken, body: body)
                #expect(reply.status == .badRequest && reply.text.contains(fragment), "\(body): \(reply.text)")
            }
            #expect(try await client.call(.get, "/v1/admin/tenants", token: "wrong-token-wrong-token").status == .unauthorized)
            #expect(try await client.call(.get, "/v1/admin/tenants", token: first).status == .unauthorized, "a tenant key is not the operator token")

            let page = try await client.call(.get, "/v1/admin/tenants?after=\(tenant.dropLast())&limit=500", token: adminToken)
            #expect((page.body["items"] as? [[String: Any]])?.contains { $0["tenant_id"] as? String == tenant } == true)

            // A key with only the query scope cannot ingest; an admin key manages the tenant's keys.
            let reader = try await client.call(.post, "/v1/admin/tenants/\(tenant)/keys", token: adminToken, body: #"{"name":"reader","scopes":["query"]}"#)
            let readerKey = try #require(reader.body["api_key"] as? String)
            let ingest = try await client.call(.post, "/v1/events", token: readerKey, body: "[\(event("s1"))]")
            #expect(ingest.status == .forbidden && ingest.text.contains("'ingest' scope"))
            #expect(try await client.call(.get, "/v1/tenant", token: readerKey).status == .ok)
            #expect(try await client.call(.get, "/v1/keys", token: readerKey).status == .forbidden)
            let admin = try await client.call(.post, "/v1/admin/tenants/\(tenant)/keys", token: adminToken, body: #"{"name":"ops","scopes":["admin","query"]}"#)
            let adminKey = try #require(admin.body["api_key"] as? String)

            let listed = try await client.call(.get, "/v1/keys", token: adminKey)
            let items = listed.body["items"] as? [[String: Any]] ?? []
            #expect(items.count == 3)
            #expect(Set(items.compactMap { $0["name"] as? String }) == ["default", "reader", "ops"])
            for secret in [first, readerKey, adminKey] { #expect(!listed.text.contains(secret.suffix(64)), "listings never show a secret") }
            #expect(items.allSatisfy { ($0["prefix"] as? String)?.count == 20 })

            // Rotation without grace: the old key stops at once (on every gateway: the shared cache entry is dropped).
            let readerID = try #require(reader.body["key_id"] as? String)
            #expect(try await client.call(.get, "/v1/tenant", token: readerKey).status == .ok, "cached now")
            let rotated = try await client.call(.post, "/v1/keys/\(readerID)/rotate", token: adminKey, body: "{}")
            #expect(rotated.status == .created && rotated.body["scopes"] as? [String] == ["query"] && rotated.body["name"] as? String == "reader")
            let newReader = try #require(rotated.body["api_key"] as? String)
            #expect(try await client.call(.get, "/v1/tenant", token: readerKey).status == .unauthorized)
            #expect(try await client.call(.get, "/v1/tenant", token: newReader).status == .ok)
            // With a grace period the old key keeps working.
            let newID = try #require(rotated.body["key_id"] as? String)
            let graced = try await client.call(.post, "/v1/keys/\(newID)/rotate", token: adminKey, body: #"{"grace_seconds":3600}"#)
            #expect(graced.status == .created)
            #expect(try await client.call(.get, "/v1/tenant", token: newReader).status == .ok)
            #expect(try await client.call(.get, "/v1/keys", token: adminKey).body["items"].map { ($0 as? [[String: Any]])?.contains { $0["key_id"] as? String == newID && $0["expires_at"] is String } } == true)

            // Revocation, and a tenant admin cannot reach another tenant's keys.
            let firstID = String(first.dropFirst(3).prefix(16))
            let otherKeys = try await client.call(.get, "/v1/admin/tenants/\(other)/keys", token: adminToken)
            let otherID = try #require((otherKeys.body["items"] as? [[String: Any]])?.first?["key_id"] as? String)
            #expect(try await client.call(.delete, "/v1/keys/\(otherID)", token: adminKey).status == .notFound)
            #expect(try await client.call(.delete, "/v1/keys/\(firstID)", token: adminKey).status == .noContent)
            #expect(try await client.call(.post, "/v1/events", token: first, body: "[\(event("s2"))]").status == .unauthorized)
            #expect(try await client.call(.delete, "/v1/keys/\(firstID)", token: adminKey).status == .notFound, "already revoked")

            // Disabling the tenant stops all its keys at once; enabling brings them back.
            let disabled = try await client.call(.patch, "/v1/admin/tenants/\(tenant)", token: adminToken, body: #"{"disabled":true}"#)
            #expect(disabled.status == .ok && disabled.body["disabled"] as? Bool == true)
            #expect(try await client.call(.get, "/v1/tenant", token: adminKey).status == .unauthorized)
            _ = try await client.call(.patch, "/v1/admin/tenants/\(tenant)", token: adminToken, body: #"{"disabled":false,"limits":{"events_per_second":null}}"#)
            let own = try await client.call(.get, "/v1/tenant", token: adminKey)
            #expect(own.status == .ok)
            #expect(((own.body["tenant"] as? [String: Any])?["limits"] as? [String: Any])?["events_per_second"] is NSNull)
            #expect(try await client.call(.get, "/v1/admin/tenants/nobody-\(tenant)", token: adminToken).status == .notFound)
        }
        await gateway.producer.shutdown()
    }

    @Test("the cost policy is a tenant setting: shown, changed by the operator, refused when unknown")
    func costPolicySetting() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("policy")
        let key = try await gateway.keys.createTenant(id: tenant, name: "p").key
        try await gateway.app.test(.router) { client in
            #expect((try await client.call(.get, "/v1/tenant", token: key).body["tenant"] as? [String: Any])?["cost_policy"] as? String == "client_unless_zero")
            let changed = try await client.call(.patch, "/v1/admin/tenants/\(tenant)", token: adminToken, body: #"{"cost_policy":"price_table"}"#)
            #expect(changed.status == .ok && changed.body["cost_policy"] as? String == "price_table")
            let wrong = try await client.call(.patch, "/v1/admin/tenants/\(tenant)", token: adminToken, body: #"{"cost_policy":"cheapest"}"#)
            #expect(wrong.status == .badRequest && wrong.text.contains("cost_policy: must be one of client_unless_zero, client, price_table"))
        }
        await gateway.producer.shutdown()
    }

    @Test("a key revoked in Postgres directly (no cache invalidation) is refused once the cache TTL has passed")
    func revokedAfterTTL() async throws {
        let gateway = try await Gateway.make(keyCacheTTL: 1)
        let tenant = TestEnvironment.unique("ttl")
        let issued = try await gateway.keys.createTenant(id: tenant, name: "T")
        try await gateway.app.test(.router) { client in
            #expect(try await client.call(.get, "/v1/tenant", token: issued.key).status == .ok)
            try await gateway.postgres.query("UPDATE api_keys SET revoked_at = now() WHERE key_id = \(issued.keyID)")
            // The TTL is 1 s; give it a few before calling the cache stuck.
            try await eventually(.seconds(15), "revoked key refused") {
                try await client.call(.get, "/v1/tenant", token: issued.key).status == .unauthorized
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("detector settings: defaults, set by an admin key, refused to a query key or with bad values, invisible to another tenant")
    func detectorSettings() async throws {
        let gateway = try await Gateway.make()
        let a = TestEnvironment.unique("det-a"), b = TestEnvironment.unique("det-b")
        let keyA = try await gateway.keys.createTenant(id: a, name: "A").key
        let keyB = try await gateway.keys.createTenant(id: b, name: "B").key
        let adminA = try #require(try await gateway.keys.createKey(tenant: a, name: "ops", scopes: [.admin, .query])).key
        try await gateway.app.test(.router) { client in
            let initial = try await client.call(.get, "/v1/detector/settings", token: keyA)
            #expect(initial.status == .ok && initial.body["sensitivity"] as? Double == 1 && (initial.body["muted"] as? [Any])?.isEmpty == true)
            #expect(try await client.call(.put, "/v1/detector/settings", token: keyA, body: #"{"sensitivity":2}"#).status == .forbidden)
            let set = try await client.call(.put, "/v1/detector/settings", token: adminA, body: #"{"sensitivity":2.5,"muted":[{"provider":"openai","metric":"latency_p95"}]}"#)
            #expect(set.status == .ok && set.body["sensitivity"] as? Double == 2.5)
            #expect((set.body["muted"] as? [[String: String]]) == [["metric": "latency_p95", "provider": "openai"]])
            for (body, fragment) in [(#"{"sensitivity":9}"#, "sensitivity: must be within"), (#"{"sensitivity":1,"muted":[{"metric":"nope"}]}"#, "muted[0].metric"),
                                     (#"{"sensitivity":1,"muted":[{"x":1}]}"#, "muted[0].x: unknown member"), (#"{"sensitivity":"high"}"#, "sensitivity: must be a number")] {
                let reply = try await client.call(.put, "/v1/detector/settings", token: adminA, body: body)
                #expect(reply.status == .badRequest && reply.text.contains(fragment), "\(body): \(reply.text)")
            }
            let other = try await client.call(.get, "/v1/detector/settings", token: keyB)
            #expect(other.body["sensitivity"] as? Double == 1, "tenant B still has the defaults")
        }
        await gateway.producer.shutdown()
    }
}
