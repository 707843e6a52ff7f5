import Events
import Foundation
import GatewayCore
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Kafka
import Logging
import Redis
import Testing
import TestSupport

/// Issue 18: what a careless or hostile client found, each answered as the contract says.
@Suite("Hostile-client findings", .serialized, .timeLimit(.minutes(3)))
struct HostileClientTests {
    @Test("years 0000 and 0001, 10000 and other out-of-range instants in from/to are 400 invalid_parameter naming the field, on every range route")
    func outOfRangeYears() async throws {
        let gateway = try await Gateway.make()
        let key = try await gateway.keys.createTenant(id: TestEnvironment.unique("years"), name: "y").key
        try await gateway.app.test(.router) { client in
            for path in ["/v1/series?metric=requests&", "/v1/breakdown?", "/v1/anomalies?"] {
                for (field, query) in [("from", "from=0000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"), ("from", "from=0001-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
                                       ("to", "to=0001-01-02T00:00:00Z"), ("from", "from=1969-12-31T23:59:59Z&to=1970-01-01T01:00:00Z")] {
                    let reply = try await client.call(.get, path + query, token: key)
                    #expect(reply.status == .badRequest && reply.type == "invalid_parameter", "\(path)\(query): \(reply.status) \(reply.text)")
                    #expect(reply.body["detail"] as? String == "\(field): must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z", "\(path)\(query)")
                }
                let edge = try await client.call(.get, path + "from=9999-12-31T22:00:00Z&to=9999-12-31T23:59:59Z", token: key)
                #expect(edge.status == .ok, "\(path): \(edge.text)")
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("a repeated tenant parameter naming another tenant is 403 in either order; other repeated parameters are 400")
    func repeatedParameters() async throws {
        let gateway = try await Gateway.make()
        let a = TestEnvironment.unique("rep-a"), b = TestEnvironment.unique("rep-b")
        let key = try await gateway.keys.createTenant(id: a, name: "A").key
        _ = try await gateway.keys.createTenant(id: b, name: "B")
        try await gateway.app.test(.router) { client in
            for query in ["tenant_id=\(a)&tenant_id=\(b)", "tenant_id=\(b)&tenant_id=\(a)", "tenant=\(a)&tenant_id=\(b)"] {
                let reply = try await client.call(.get, "/v1/breakdown?\(query)", token: key)
                #expect(reply.status == .forbidden && reply.type == "tenant_mismatch", "\(query)")
            }
            #expect(try await client.call(.get, "/v1/breakdown?tenant_id=\(a)&tenant_id=\(a)", token: key).status == .ok)
            let twice = try await client.call(.get, "/v1/series?metric=requests&model=gpt-4o&model=o3", token: key)
            #expect(twice.status == .badRequest && twice.body["detail"] as? String == "model: given more than once; give it once")
        }
        await gateway.producer.shutdown()
    }

    @Test("PUT detector settings with an empty body and rotate with a null grace period are 400 naming the member; secrets are never cached")
    func strictBodies() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("strict")
        _ = try await gateway.keys.createTenant(id: tenant, name: "s")
        let admin = try #require(try await gateway.keys.createKey(tenant: tenant, name: "ops", scopes: [.admin, .query]))
        try await gateway.app.test(.router) { client in
            #expect(try await client.call(.put, "/v1/detector/settings", token: admin.key, body: #"{"sensitivity":2}"#).status == .ok)
            let empty = try await client.call(.put, "/v1/detector/settings", token: admin.key, body: "")
            #expect(empty.status == .badRequest && empty.body["detail"] as? String == "a JSON object body is required", "\(empty.text)")
            for body in ["{}", #"{"muted":[]}"#] {
                let reply = try await client.call(.put, "/v1/detector/settings", token: admin.key, body: body)
                #expect(reply.status == .badRequest && (reply.body["detail"] as? String)?.hasPrefix("sensitivity: required") == true, "'\(body)': \(reply.text)")
            }
            let kept = try await client.call(.get, "/v1/detector/settings", token: admin.key)
            #expect(kept.body["sensitivity"] as? Double == 2, "a refused PUT leaves the settings as they were")

            let null = try await client.call(.post, "/v1/keys/\(admin.keyID)/rotate", token: admin.key, body: #"{"grace_seconds":null}"#)
            #expect(null.status == .badRequest && (null.body["detail"] as? String)?.hasPrefix("grace_seconds:") == true, "\(null.text)")
            let created = try await client.call(.post, "/v1/keys", token: admin.key, body: #"{"name":"ci","scopes":["ingest"]}"#)
            #expect(created.status == .created && created.body["api_key"] != nil)
            #expect(created.headers[.cacheControl] == "no-store")
            let rotated = try await client.call(.post, "/v1/keys/\(admin.keyID)/rotate", token: admin.key, body: #"{"grace_seconds":60}"#)
            #expect(rotated.status == .created && rotated.headers[.cacheControl] == "no-store")
        }
        await gateway.producer.shutdown()
    }

    @Test("unknown paths are 404 problem+json; other methods on a route are 405 with Allow; Transfer-Encoding other than chunked is 501")
    func routingAnswers() async throws {
        let gateway = try await Gateway.make()
        try await gateway.app.test(.router) { client in
            let missing = try await client.call(.get, "/v1/nope")
            #expect(missing.status == .notFound && missing.type == "not_found" && missing.headers[.contentType] == "application/problem+json")
            for (method, path, allow) in [(HTTPRequest.Method.delete, "/v1/events", "POST"), (.put, "/v1/series", "GET"), (.get, "/v1/traces", "POST"),
                                          (.patch, "/v1/detector/settings", "GET, PUT"), (.get, "/v1/keys/0123456789abcdef", "DELETE")] {
                let reply = try await client.call(method, path)
                #expect(reply.status == .methodNotAllowed && reply.type == "method_not_allowed", "\(method) \(path): \(reply.status)")
                #expect(reply.headers[.allow] == allow, "\(method) \(path)")
            }
            let te = try await client.call(.post, "/v1/events", body: "[]", headers: [.transferEncoding: "gzip, chunked"])
            #expect(te.status == .notImplemented && te.type == "unsupported_transfer_encoding")
        }
        await gateway.producer.shutdown()
    }

    @Test("OTLP: credentials are checked before the media type; metrics and logs exports are acknowledged as not stored, checked and bounded")
    func otlpSignals() async throws {
        let gateway = try await Gateway.make()
        let key = try await gateway.keys.createTenant(id: TestEnvironment.unique("sig"), name: "s").key
        try await gateway.app.test(.router) { client in
            for path in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
                let anonymous = try await client.call(.post, path, body: "x", headers: [.contentType: "text/plain"])
                #expect(anonymous.status == .unauthorized, "\(path) without credentials: \(anonymous.status)")
                let wrongType = try await client.call(.post, path, token: key, body: "x", headers: [.contentType: "text/plain"])
                #expect(wrongType.status == .unsupportedMediaType, "\(path)")
            }
            for (signal, member, rejected) in [("metrics", "resourceMetrics", "rejectedDataPoints"), ("logs", "resourceLogs", "rejectedLogRecords")] {
                let json = try await client.call(.post, "/v1/\(signal)", token: key, body: "{\"\(member)\":[{\"resource\":{}}]}")
                let partial = json.body["partialSuccess"] as? [String: Any]
                #expect(json.status == .ok && partial?[rejected] as? String == "0", "\(signal): \(json.text)")
                #expect((partial?["errorMessage"] as? String)?.contains("not stored") == true)
                // Protobuf: one resource entry (field 1, an empty message) and the answer's partial_success message.
                try await client.execute(uri: "/v1/\(signal)", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"],
                                         body: ByteBuffer(bytes: [0x0a, 0x00])) { response in
                    #expect(response.status == .ok)
                    #expect(String(decoding: Array(buffer: response.body), as: UTF8.self).contains("not stored"))
                }
                for bad in ["[1]", "{\"\(member)\":5}", "{\"\(member)\":[1]}"] {
                    #expect(try await client.call(.post, "/v1/\(signal)", token: key, body: bad).status == .badRequest, "\(signal): \(bad)")
                }
                try await client.execute(uri: "/v1/\(signal)", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"],
                                         body: ByteBuffer(bytes: [0x0a, 0x05, 0x01])) { response in
                    #expect(response.status == .badRequest, "a truncated entry is refused")
                }
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("bidirectional formatting characters are refused in event names, tags and admin names")
    func bidiCharacters() async throws {
        let gateway = try await Gateway.make()
        let key = try await gateway.keys.createTenant(id: TestEnvironment.unique("bidi"), name: "b").key
        try await gateway.app.test(.router) { client in
            let now = EventTimestamp.now().rfc3339
            for (field, json) in [("model", "\"model\":\"gpt-\u{202E}o4\""), ("provider", "\"provider\":\"open\u{2066}ai\""), ("tags.team", "\"tags\":{\"team\":\"a\u{200F}b\"}")] {
                var members = ["\"event_id\":\"bidi-\(field)\"", "\"timestamp\":\"\(now)\"", "\"provider\":\"openai\"", "\"model\":\"gpt-4o\"",
                               "\"input_tokens\":1", "\"output_tokens\":1", "\"latency_ms\":5", "\"status\":\"ok\""]
                members.removeAll { $0.hasPrefix("\"\(field.split(separator: ".")[0])\"") }
                members.append(json)
                let reply = try await client.call(.post, "/v1/events", token: key, body: "[{" + members.joined(separator: ",") + "}]")
                let error = (reply.body["errors"] as? [[String: Any]])?.first
                #expect(reply.status == .badRequest && error?["field"] as? String == field, "\(field): \(reply.text)")
                #expect((error?["reason"] as? String)?.contains("bidirectional") == true)
            }
            let tenant = try await client.call(.post, "/v1/admin/tenants", token: adminToken, body: "{\"tenant_id\":\"\(TestEnvironment.unique("bidi"))\",\"name\":\"evil\u{202E}cod.exe\"}")
            #expect(tenant.status == .badRequest && tenant.text.contains("name: must not contain bidirectional"))
        }
        await gateway.producer.shutdown()
    }

    @Test("made-up keys cost a bounded number of Postgres lookups per replica and no Redis entries; past the budget 429 with Retry-After")
    func preAuthenticationCost() async throws {
        let gateway = try await Gateway.make(keyLookupsPerSecond: 5)
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: Logger(label: "pre-auth-test"))
        @Sendable func randomKey() -> (id: String, key: String) {
            let hex = "0123456789abcdef"
            let id = String((0..<16).map { _ in hex.randomElement()! }), secret = String((0..<64).map { _ in hex.randomElement()! })
            return (id, "tw_\(id)_\(secret)")
        }
        try await gateway.app.test(.router) { client in
            var statuses: [HTTPResponse.Status] = []
            var first: (id: String, key: String)?
            let started = ContinuousClock.now
            for _ in 0..<30 {
                let made = randomKey()
                if first == nil { first = made }
                let reply = try await client.call(.get, "/v1/tenant", token: made.key)
                statuses.append(reply.status)
                if reply.status == .tooManyRequests {
                    #expect(reply.type == "too_many_key_lookups" && reply.headers[.retryAfter] == "1")
                }
            }
            let looked = statuses.filter { $0 == .unauthorized }.count
            // A burst of two seconds (10 lookups), plus what refills while the loop runs (5 a second).
            let elapsed = ContinuousClock.now - started
            let refill = Int((Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * 5) + 1
            #expect(looked >= 10 && looked <= 10 + refill && looked < 30, "\(looked) lookups of 30 made-up keys in \(elapsed)")
            #expect(statuses.contains(.tooManyRequests))
            // An unknown key seen before is answered from memory, whatever the budget; and leaves nothing in Redis.
            let again = try await client.call(.get, "/v1/tenant", token: first!.key)
            #expect(again.status == .unauthorized)
            #expect(try await redis.command(["GET", RedisArgument("tw:apikey:v2:\(first!.id)")]).string == nil)
        }
        await redis.close()
        await gateway.producer.shutdown()
    }

    @Test("a body's tenant_id is ignored whatever it holds (empty, invalid, a number, an object): the key's tenant is used")
    func bodyTenantIgnored() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("body-tenant")
        let key = try await gateway.keys.createTenant(id: tenant, name: "t").key
        let now = EventTimestamp.now().rfc3339
        let values = [#""""#, #""bad tenant!""#, "5", #"{"x":1}"#, "null", "[1,2]"]
        let body = "[" + values.enumerated().map { i, value in
            "{\"event_id\":\"bt-\(i)\",\"tenant_id\":\(value),\"timestamp\":\"\(now)\",\"provider\":\"openai\",\"model\":\"gpt-4o\",\"input_tokens\":1,\"output_tokens\":1,\"latency_ms\":5,\"status\":\"ok\"}"
        }.joined(separator: ",") + "]"
        try await gateway.app.test(.router) { client in
            let reply = try await client.call(.post, "/v1/events", token: key, body: body)
            #expect(reply.status == .accepted && reply.body["accepted"] as? Int == values.count, "\(reply.text)")
        }
        let produced = try await readTopic(gateway.topics.raw, count: values.count)
        #expect(produced.count == values.count)
        #expect(try produced.allSatisfy { try EventDecoder().decode($0.value).tenantID == tenant })
        await gateway.producer.shutdown()
    }
}
