import NIOCore
import Notify
import Testing

@Suite("Standard Webhooks signatures and the egress policy")
struct NotifyTests {
    @Test("signatures match the Standard Webhooks example and verify, also during a secret rotation; a changed byte fails")
    func signatures() throws {
        // The specification's own example (secret, id, timestamp, body -> signature).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let body = Array(#"{"test": 2432232314}"#.utf8)
        let signature = try StandardWebhooks.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secret: secret)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(StandardWebhooks.verify(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secrets: [secret], header: signature))
        let next = StandardWebhooks.newSecret()
        #expect(next.hasPrefix("whsec_") && next != StandardWebhooks.newSecret())
        #expect(StandardWebhooks.verify(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secrets: [next, secret], header: "v1,bogus " + signature))
        #expect(!StandardWebhooks.verify(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_331, body: body, secrets: [secret], header: signature))
        #expect(throws: StandardWebhooks.InvalidSecret.self) { try StandardWebhooks.signature(id: "x", timestamp: 1, body: [], secret: "not-a-secret") }
    }

    @Test("URL forms: https only unless allowed, no credentials, ports and IPv6 literals read, junk refused")
    func urls() throws {
        let strict = EgressPolicy()
        #expect(try strict.parse("https://hooks.example.com/tw?x=1") == .init(tls: true, host: "hooks.example.com", port: 443, path: "/tw?x=1"))
        #expect(try strict.parse("https://[2001:db8::1]:8443") == .init(tls: true, host: "2001:db8::1", port: 8443, path: "/"))
        for bad in ["http://hooks.example.com/", "ftp://x/", "https://user:pw@hooks.example.com/", "https://", "https://a b/", "https://host:99999/", "https://hö.example/"] {
            #expect(throws: EgressPolicy.Refused.self, "\(bad)") { try strict.parse(bad) }
        }
        #expect(try EgressPolicy(allowHTTP: true).parse("http://127.0.0.1:9/x").tls == false)
    }

    @Test("addresses inside the cluster are refused: loopback, private, link-local (metadata), CGNAT, unique-local, IPv4-mapped and every IPv6 form of local space; public ones pass; an allowlist opens a network")
    func addresses() async throws {
        let strict = EgressPolicy()
        for host in ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fc00::1", "fe80::1", "::ffff:10.0.0.1", "localhost",
                     // IPv6 forms that reach IPv4 or local space: IPv4-compatible, local-use NAT64, 6to4, site-local,
                     // IPv4-translated, Teredo, documentation.
                     "::127.0.0.1", "64:ff9b:1::7f00:1", "2002:7f00:1::", "fec0::1", "::ffff:0:127.0.0.1", "2001:0:4136:e378::1", "2001:db8::1"] {
            await #expect(throws: EgressPolicy.Refused.self, "\(host)") {
                _ = try await strict.resolve(.init(tls: true, host: host, port: 443, path: "/"))
            }
        }
        let addresses = try await strict.resolve(.init(tls: true, host: "93.184.216.34", port: 443, path: "/"))
        #expect(addresses.map(\.ipAddress) == ["93.184.216.34"])
        // Public IPv6, and a 6to4 address of a public IPv4 one, pass.
        #expect(try await strict.resolve(.init(tls: true, host: "2606:2800:220:1:248:1893:25c8:1946", port: 443, path: "/")).count == 1)
        #expect(try await strict.resolve(.init(tls: true, host: "2002:5db8:d822::1", port: 443, path: "/")).count == 1)
        let opened = EgressPolicy(allowedNetworks: [Network("127.0.0.0/8")!])
        #expect(try await opened.resolve(.init(tls: true, host: "127.0.0.1", port: 443, path: "/")).map(\.ipAddress) == ["127.0.0.1"])
        await #expect(throws: EgressPolicy.Refused.self) { _ = try await opened.resolve(.init(tls: true, host: "10.0.0.1", port: 443, path: "/")) }
        #expect(Network("10.0.0.0/33") == nil && Network("nonsense") == nil)
        #expect(throws: EgressPolicy.Refused.self) { try EgressPolicy(environment: ["TW_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,bogus"]) }
    }
}
