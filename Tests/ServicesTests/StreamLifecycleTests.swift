import Foundation
import Testing
import TestSupport

/// Issue 18 §1 and §7: open live streams follow their key, and their slots follow their connections.
@Suite("Live anomaly streams: revocation and slots", .serialized, .timeLimit(.minutes(3)))
struct StreamLifecycleTests {
    func openStream(port: Int, key: String) throws -> RawConnection {
        let connection = try RawConnection(port: port)
        connection.send("GET /v1/anomalies/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nAccept: text/event-stream\r\n\r\n")
        return connection
    }

    @Test("revoking a key or disabling its tenant ends its open streams within seconds; a closed connection frees its slot within seconds")
    func followsKeysAndConnections() async throws {
        let run = TestEnvironment.unique("stream")
        let token = "stream-lifecycle-admin-token"
        let (gateway, http, tenant) = try await gatewayWithTenant(run: run, adminToken: token)
        func queryKey() async throws -> (id: String, key: String) {
            let reply = try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: token, body: #"{"name":"viewer","scopes":["query"]}"#)
            return (reply.json["key_id"] as? String ?? "", reply.json["api_key"] as? String ?? "")
        }

        // Revocation: the open stream gets an `end` event and its response ends.
        let revoked = try await queryKey()
        let stream = try self.openStream(port: gateway.port, key: revoked.key)
        #expect(await stream.read(until: ": connected", timeout: .seconds(10)).contains("200 OK"))
        #expect(try await http.call("DELETE", "/v1/admin/tenants/\(tenant)/keys/\(revoked.id)", token: token).status == 204)
        let ending = await stream.read(until: "0\r\n\r\n", timeout: .seconds(20))
        #expect(ending.contains("event: end") && ending.contains("0\r\n\r\n"), "the stream of a revoked key ended: \(ending.suffix(300))")

        // Disabling the tenant ends the streams of its still-valid keys too.
        let viewer = try await queryKey()
        let second = try self.openStream(port: gateway.port, key: viewer.key)
        #expect(await second.read(until: ": connected", timeout: .seconds(10)).contains("200 OK"))
        #expect(try await http.call("PATCH", "/v1/admin/tenants/\(tenant)", token: token, body: #"{"disabled":true}"#).status == 200)
        let disabledEnding = await second.read(until: "0\r\n\r\n", timeout: .seconds(20))
        #expect(disabledEnding.contains("event: end"), "the stream of a disabled tenant ended: \(disabledEnding.suffix(300))")
        #expect(try await http.call("PATCH", "/v1/admin/tenants/\(tenant)", token: token, body: #"{"disabled":false}"#).status == 200)

        // Slots: 20 streams per tenant; the 21st is refused; closing the connections frees the slots within seconds.
        let key = try await queryKey().key
        var open: [RawConnection] = []
        for _ in 0..<20 {
            let c = try self.openStream(port: gateway.port, key: key)
            #expect(await c.read(until: ": connected", timeout: .seconds(10)).contains("200 OK"))
            open.append(c)
        }
        let refused = try self.openStream(port: gateway.port, key: key)
        #expect(await refused.read(until: "\r\n\r\n", timeout: .seconds(10)).hasPrefix("HTTP/1.1 429"))
        let closedAt = ContinuousClock.now
        for c in open { c.shutdown() }
        try await eventually(.seconds(30), "a slot freed after the clients closed their connections", interval: .milliseconds(250)) {
            let probe = try self.openStream(port: gateway.port, key: key)
            defer { probe.shutdown() }
            return await probe.read(until: "\r\n\r\n", timeout: .seconds(5)).hasPrefix("HTTP/1.1 200")
        }
        print("stream slots freed \(ContinuousClock.now - closedAt) after the clients closed")

        // RFC 9112 §3.2: a request without a Host, or with two, is 400.
        for head in ["GET /openapi.json HTTP/1.1\r\n\r\n", "GET /openapi.json HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"] {
            let raw = try RawConnection(port: gateway.port)
            raw.send(head)
            let answer = await raw.read(until: "\r\n\r\n", timeout: .seconds(5))
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(head.debugDescription): \(answer.prefix(200))")
            raw.shutdown()
        }
        #expect(try gateway.stop() == 0)
    }
}
