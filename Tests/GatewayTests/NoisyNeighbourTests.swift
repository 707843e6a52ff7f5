import Codecs
import Foundation
@testable import GatewayCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Kafka
import Synchronization
import Testing
import TestSupport

/// What one tenant can do to the gateway and to other tenants (issue 30): limits that hold under concurrency, work
/// charged before it is done, bodies decoded in the tenants' turns.
@Suite("Noisy neighbours at the gateway", .serialized, .timeLimit(.minutes(3)))
struct NoisyNeighbourTests {
    /// Two tenants' ingest keys: the attacker's and the victim's.
    static func attackerAndVictim(_ gateway: Gateway) async throws -> (String, String) {
        var keys: [String] = []
        for name in ["atk", "vic"] {
            let id = TestEnvironment.unique(name)
            _ = try await gateway.keys.createTenant(id: id, name: name)
            keys.append(try #require(try await gateway.keys.createKey(tenant: id, name: "ingest", scopes: [.ingest])).key)
        }
        return (keys[0], keys[1])
    }

    @Test("per-tenant limits hold under concurrent creations: 40 channels at once make 20, 60 rules 50, 30 budgets 20; test sends are capped per channel with 429 and Retry-After")
    func atomicLimits() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("lim")
        _ = try await gateway.keys.createTenant(id: tenant, name: "L")
        let admin = try #require(try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.admin])).key
        try await gateway.app.test(.router) { client in
            func burst(_ n: Int, _ path: String, _ body: @escaping @Sendable (Int) -> String) async throws -> [HTTPResponse.Status] {
                try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                    for i in 0..<n { group.addTask { try await client.call(.post, path, token: admin, body: body(i)).status } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            let channels = try await burst(40, "/v1/channels") { #"{"name":"c\#($0)","url":"http://127.0.0.1:9/hook"}"# }
            #expect(channels.filter { $0 == .created }.count == 20 && channels.filter { $0 == .conflict }.count == 20)
            let rules = try await burst(60, "/v1/rules") { #"{"name":"r\#($0)","metric":"error_rate","above":0.5}"# }
            #expect(rules.filter { $0 == .created }.count == 50 && rules.filter { $0 == .conflict }.count == 10)
            let budgets = try await burst(30, "/v1/budgets") { #"{"name":"b\#($0)","period":"day","amount_usd":5}"# }
            #expect(budgets.filter { $0 == .created }.count == 20 && budgets.filter { $0 == .conflict }.count == 10)

            let listed = try await client.call(.get, "/v1/channels", token: admin)
            let id = try #require((listed.body["items"] as? [[String: Any]])?.first?["channel_id"] as? String)
            let tests = try await burst(14, "/v1/channels/\(id)/test") { _ in "" }
            #expect(tests.filter { $0 == .accepted }.count == 10 && tests.filter { $0 == .tooManyRequests }.count == 4)
            let refused = try await client.call(.post, "/v1/channels/\(id)/test", token: admin)
            #expect(refused.type == "too_many_tests" && refused.headers[.retryAfter] != nil)

            // Numbers out of the documented bounds are refused naming the field, however they are written.
            for (body, field) in [(#"{"name":"x","metric":"error_rate","above":9223372036854775807}"#, "above: "),
                                  (#"{"name":"x","metric":"error_rate","below":-9223372036854775808}"#, "below: "),
                                  (#"{"name":"x","metric":"error_rate","above":1,"for_minutes":null}"#, "for_minutes: ")] {
                let answer = try await client.call(.post, "/v1/rules", token: admin, body: body)
                #expect(answer.status == .badRequest && answer.text.contains(field), "\(body): \(answer.text)")
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("a 19 KB gzip body of 10 million empty resourceSpans is refused at the element limit (413), and costs its tenant its inflated bytes: with a small budget it is refused before any decoding; another tenant's events are accepted meanwhile")
    func otlpBomb() async throws {
        var limits = RateLimiter.Configuration()
        limits.eventsPerSecond = 1000
        let gateway = try await Gateway.make(rateLimits: limits)
        let (a, b) = try await Self.attackerAndVictim(gateway)
        let bomb = Gzip.compress(Array(repeating: [UInt8]([0x0a, 0x00]), count: 10_000_000).flatMap { $0 })
        #expect(bomb.count < 40_000)
        try await gateway.app.test(.router) { client in
            // 20 MB inflated is 4,883 units against a burst of 2,000: refused as larger than the budget, undecoded.
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(a)", .contentType: "application/x-protobuf", .contentEncoding: "gzip"],
                                     body: ByteBuffer(bytes: bomb)) { response in
                #expect(response.status == .contentTooLarge)
                #expect(String(buffer: response.body).contains("burst"))
            }
            let batch = "[" + (0..<10).map { _ in event(TestEnvironment.unique("e")) }.joined(separator: ",") + "]"
            let accepted = try await client.call(.post, "/v1/events", token: b, body: batch)
            #expect(accepted.status == .accepted && accepted.body["accepted"] as? Int == 10)
        }
        // With the default budget the body is inflated and its decoding stops at the element limit.
        let open = try await Gateway.make(rateLimits: RateLimiter.Configuration())
        let (key, _) = try await Self.attackerAndVictim(open)
        try await open.app.test(.router) { client in
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf", .contentEncoding: "gzip"],
                                     body: ByteBuffer(bytes: bomb)) { response in
                #expect(response.status == .contentTooLarge)
                #expect(String(buffer: response.body).contains("elements"))
            }
        }
        await gateway.producer.shutdown()
        await open.producer.shutdown()
    }

    @Test("inflated bytes are charged: gzip bodies of whitespace spend the tenant's event budget until it is refused with 429, while another tenant's budget is untouched")
    func inflatedBytesCharged() async throws {
        // A budget of 7,000 events that refills at 100 a second: the test's own duration cannot refill a body's worth.
        var limits = RateLimiter.Configuration()
        limits.eventsPerSecond = 100
        limits.burstSeconds = 70
        let gateway = try await Gateway.make(rateLimits: limits)
        let (a, b) = try await Self.attackerAndVictim(gateway)
        // 12 MB of spaces before one event: 3,072 units each, so the third is refused.
        let padded = Gzip.compress(Array(repeating: UInt8(ascii: " "), count: 12 * 1024 * 1024) + Array(("[" + event(TestEnvironment.unique("e")) + "]").utf8))
        try await gateway.app.test(.router) { client in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<3 {
                try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(a)", .contentType: "application/json", .contentEncoding: "gzip"],
                                         body: ByteBuffer(bytes: padded)) { statuses.append($0.status) }
            }
            #expect(statuses == [.accepted, .accepted, .tooManyRequests], "\(statuses)")
            let accepted = try await client.call(.post, "/v1/events", token: b, body: "[" + event(TestEnvironment.unique("e")) + "]")
            #expect(accepted.status == .accepted)
        }
        await gateway.producer.shutdown()
    }
}

/// Smaller findings of the hostile-tenant review (issue 30, point 7).
@Suite("Hostile-tenant findings", .serialized, .timeLimit(.minutes(2)))
struct HostileTenantFindingsTests {
    @Test("control characters in query parameters are 400 naming the parameter; U+2028 in a trace URL template is refused")
    func inputs() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("hos")
        _ = try await gateway.keys.createTenant(id: tenant, name: "H")
        let key = try #require(try await gateway.keys.createKey(tenant: tenant, name: "all", scopes: [.admin, .query, .ingest])).key
        try await gateway.app.test(.router) { client in
            for uri in ["/v1/users/a%00b", "/v1/users?user=a%00b", "/v1/breakdown?by=model&model=x%E2%80%A8y", "/v1/anomalies?provider=%1B"] {
                let answer = try await client.call(.get, uri, token: key)
                #expect(answer.status == .badRequest || answer.status == .notFound, "\(uri): \(answer.text)")
                if uri.contains("?") { #expect(answer.type == "invalid_parameter" && answer.text.contains("control characters"), "\(uri): \(answer.text)") }
            }
            let template = try await client.call(.patch, "/v1/tenant", token: key, body: #"{"trace_url_template":"https://jaeger.example.com/trace/{trace_id} <script>"}"#)
            #expect(template.status == .badRequest && template.text.contains("trace_url_template"), "\(template.text)")
        }
        await gateway.producer.shutdown()
    }

    @Test("CSV cells a spreadsheet could run as a formula are quoted as text, also behind blanks, invisible characters and fullwidth operators")
    func csvCells() {
        for dangerous in ["=1+1", "+1", "-1", "@SUM(A1)", " =1", "\u{00A0}=1", "\u{200B}=1", "\u{FEFF}=1", "\u{FF1D}1", "|calc", "\t=1", "%0A"] {
            #expect(UserRoutes.csvCell(dangerous).hasPrefix("'") || UserRoutes.csvCell(dangerous).hasPrefix("\"'"), "\(dangerous.unicodeScalars.map { String($0.value, radix: 16) })")
        }
        #expect(UserRoutes.csvCell("user-42") == "user-42" && UserRoutes.csvCell("a,b") == "\"a,b\"")
    }
}

/// `TenantWork` on its own: the order in which waiting tenants get a worker, and the refusal past `maxWaiting`.
@Suite("Fair decode workers")
struct TenantWorkTests {
    /// A job that runs until released, recording when it started.
    final class Gate: Sendable {
        let started = Mutex<[String]>([])
        let release = DispatchSemaphore(value: 0)
    }

    @Test("with one worker busy, a tenant that queued five jobs does not go before a tenant that queued one later: the freed worker goes to the tenant with the fewest running")
    func fairOrder() async throws {
        let work = TenantWork(workers: 1, maxWaiting: 8)
        let gate = Gate()
        @Sendable func job(_ name: String) -> @Sendable () -> Void {
            { gate.started.withLock { $0.append(name) }; gate.release.wait() }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await work.run(tenant: "a", job("a0")) }
            try await eventually(.seconds(10), "a0 runs") { gate.started.withLock { $0 == ["a0"] } }
            for i in 1...5 {
                group.addTask { try await work.run(tenant: "a", job("a\(i)")) }
                try await eventually(.seconds(10), "a\(i) waits") { work.load("a").waiting == i }
            }
            group.addTask { try await work.run(tenant: "b", job("b0")) }
            try await eventually(.seconds(10), "b0 waits") { work.load("b").waiting == 1 }
            for n in 1...7 {
                gate.release.signal()
                if n < 7 { try await eventually(.seconds(10), "job \(n + 1) runs") { gate.started.withLock { $0.count == n + 1 } } }
            }
            try await group.waitForAll()
        }
        let order = gate.started.withLock { $0 }
        #expect(order.count == 7 && order[1] == "b0", "\(order)")
    }

    @Test("a tenant with maxWaiting requests waiting is refused at once with 429 too_many_concurrent_requests; another tenant still waits its turn")
    func refusal() async throws {
        let work = TenantWork(workers: 1, maxWaiting: 2)
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<3 {
                group.addTask { try await work.run(tenant: "a") { gate.started.withLock { $0.append("a\(i)") }; gate.release.wait() } }
                try await eventually(.seconds(10), "a\(i) admitted") { work.load("a").running + work.load("a").waiting == i + 1 }
            }
            let refused = await #expect(throws: Problem.self) { try await work.run(tenant: "a") {} }
            #expect(refused?.code == "too_many_concurrent_requests" && refused?.retryAfterSeconds == 1)
            group.addTask { try await work.run(tenant: "b") { gate.started.withLock { $0.append("b") } } }
            try await eventually(.seconds(10), "b waits") { work.load("b").waiting == 1 }
            for _ in 0..<3 { gate.release.signal() }
            try await group.waitForAll()
        }
        #expect(gate.started.withLock { $0.count } == 4)
    }
}
