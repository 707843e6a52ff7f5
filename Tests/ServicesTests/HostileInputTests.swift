import Events
import Foundation
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

/// A gateway, ingestor and aggregator on topics of their own, and an admin-created tenant.
struct HostileStack {
    let run: String
    let env: [String: String]
    let gateway: ServiceProcess
    let services: [ServiceProcess]
    let http: HTTPClient
    let tenant: String
    let key: String
    static let adminToken = "hostile-admin-token-0123456789"

    static func start(_ prefix: String, extra: [String: String] = [:]) async throws -> HostileStack {
        let run = TestEnvironment.unique(prefix)
        let env = try TestEnvironment.pipelineEnvironment(
            run: run, topics: ["raw", "events", "dlq", "rollups"], extra: ["TW_ADMIN_TOKEN": Self.adminToken].merging(extra) { _, new in new })
        let services = try ["gateway", "ingestor", "aggregator"].map { try ServiceProcess($0, environment: env) }
        for service in services { try await service.waitUntilReady() }
        let http = HTTPClient(port: services[0].port)
        let tenant = "\(run)-t"
        let created = try await http.call("POST", "/v1/admin/tenants", token: Self.adminToken, body: #"{"tenant_id":"\#(tenant)"}"#)
        guard created.status == 201, let key = created.json["api_key"] as? String else { throw Subprocess.Failed(description: "tenant not created: \(created.body)") }
        return HostileStack(run: run, env: env, gateway: services[0], services: services, http: http, tenant: tenant, key: key)
    }

    /// Requests counted in the tenant's committed 1-minute rollups (its total series).
    func counted(_ postgres: PostgresClient) async throws -> Int64 {
        try await postgres.query("SELECT COALESCE(sum(requests), 0)::bigint AS n FROM rollups_1m WHERE tenant_id = \(self.tenant) AND \(unescaped: SeriesSelection.totalSQL)")[0].decode("n")
    }
}

func validEvent(_ id: String, secondsAgo: Int64 = 90) -> String {
    let ts = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch - secondsAgo * 1_000_000).rfc3339
    return #"{"event_id":"\#(id)","timestamp":"\#(ts)","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":2,"latency_ms":100,"status":"ok"}"#
}

@Suite("Hostile input against running services", .serialized, .timeLimit(.minutes(5)))
struct HostileInputTests {
    @Test("malformed, oversized, deep, mistyped and unauthenticated requests each get the right status and message; the services keep running and every accepted event is counted")
    func hostileRequests() async throws {
        let stack = try await HostileStack.start("hostile", extra: ["TW_HTTP_HEADER_TIMEOUT": "2s", "TW_MAX_HEADER_BYTES": "8192"])
        let http = stack.http, key = stack.key, run = stack.run
        let logger = Logger(label: "hostile-test")
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        var accepted = 0

        let before = "[" + (0..<300).map { validEvent("\(run)-a\($0)") }.joined(separator: ",") + "]"
        let first = try await http.call("POST", "/v1/events", token: key, body: before)
        #expect(first.status == 202)
        accepted += first.json["accepted"] as? Int ?? 0

        let ts = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch - 60_000_000).rfc3339
        func event(_ fields: String) -> String {
            #"{"event_id":"\#(run)-x","timestamp":"\#(ts)","provider":"openai","model":"gpt-4o","output_tokens":2,"latency_ms":100,"status":"ok",\#(fields)}"#
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        // (body, expected status, problem type, a fragment the message must hold)
        let cases: [(String, Data, Int, String, String)] = [
            ("malformed JSON", Data(#"[{"event_id": "#.utf8), 400, "invalid_body", "unexpected end of input"),
            ("wrong type", Data("[\(event(#""input_tokens":"ten""#))]".utf8), 400, "invalid_events", "input_tokens"),
            ("huge number", Data("[\(event(#""input_tokens":123456789012345678901234567890"#))]".utf8), 400, "invalid_events", "input_tokens"),
            ("exponent overflow", Data("[\(event(#""input_tokens":1e400"#))]".utf8), 400, "invalid_events", "input_tokens"),
            ("negative tokens", Data("[\(event(#""input_tokens":-5"#))]".utf8), 400, "invalid_events", "must be >= 0"),
            ("NaN", Data("[\(event(#""input_tokens":1,"cost_usd":NaN"#))]".utf8), 400, "invalid_body", "expected a number"),
            ("Infinity", Data("[\(event(#""input_tokens":1,"latency_ms":Infinity"#))]".utf8), 400, "invalid_body", "expected a number"),
            ("invalid UTF-8", Data("[\(event(#""input_tokens":1,"app":"@@""#))]".utf8.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false).joined(separator: [0xC3, 0x28])), 400, "invalid_body", "not valid UTF-8"),
            ("deep nesting", Data("[\(event(#""input_tokens":1,"extra":\#(deep)"#))]".utf8), 400, "invalid_body", "nesting deeper than"),
            ("1 MB string", Data("[\(event(#""input_tokens":1,"model":"\#(String(repeating: "m", count: 1_000_000))""#))]".utf8), 400, "invalid_events", "event larger than 32768 bytes"),
            ("long app", Data("[\(event(#""input_tokens":1,"app":"\#(String(repeating: "m", count: 300))""#))]".utf8), 400, "invalid_events", "longer than 256"),
            ("10 MB string", Data("[\(event(#""input_tokens":1,"app":"\#(String(repeating: "x", count: 10_000_000))""#))]".utf8), 413, "payload_too_large", "TW_MAX_BODY_BYTES"),
            ("duplicate keys", Data("[\(event(#""input_tokens":1,"input_tokens":2"#))]".utf8), 400, "invalid_events", "duplicate"),
            ("empty batch", Data("[]".utf8), 400, "empty_batch", "no events"),
            ("not a batch", Data(#"{"event_id":"x"}"#.utf8), 400, "invalid_body", "expected a JSON array"),
        ]
        for (name, body, status, type, fragment) in cases {
            let reply = try await http.call("POST", "/v1/events", token: key, body: body)
            #expect(reply.status == status, "\(name): \(reply.body.prefix(300))")
            #expect(reply.type == type, "\(name): \(reply.body.prefix(300))")
            #expect(reply.header("Content-Type") == "application/problem+json", "\(name)")
            #expect(reply.body.contains(fragment), "\(name): \(reply.body.prefix(300))")
        }
        // Unknown fields are ignored (bounded), the event accepted.
        let unknown = try await http.call("POST", "/v1/events", token: key, body: "[\(event(#""input_tokens":1,"vendor_extension":{"a":[1,2,{"b":null}]}"#).replacingOccurrences(of: "\(run)-x", with: "\(run)-u"))]")
        #expect(unknown.status == 202)
        accepted += unknown.json["accepted"] as? Int ?? 0
        // A gzip bomb: 50 MB of spaces in about 50 KB.
        let bomb = try await http.call("POST", "/v1/events", token: key, body: Data(gzipOfSpaces(50 * 1024 * 1024)), headers: ["Content-Encoding": "gzip"])
        #expect(bomb.status == 413 && bomb.type == "payload_too_large" && bomb.body.contains("TW_MAX_DECOMPRESSED_BYTES"))

        // Authentication, content type, head limits.
        let noAuth = try await http.call("POST", "/v1/events", body: before)
        #expect(noAuth.status == 401 && noAuth.type == "unauthorized" && noAuth.header("WWW-Authenticate") == "Bearer")
        let badKey = try await http.call("POST", "/v1/events", token: "tw_0123456789abcdef_" + String(repeating: "ab", count: 32), body: before)
        #expect(badKey.status == 401)
        let wrongType = try await http.call("POST", "/v1/events", token: key, body: before, contentType: "text/plain")
        #expect(wrongType.status == 415 && wrongType.type == "unsupported_media_type")
        let bigHeader = try await http.call("GET", "/v1/tenant", token: key, headers: ["X-Padding": String(repeating: "p", count: 10_000)])
        #expect(bigHeader.status == 431 && bigHeader.type == "headers_too_large" && bigHeader.body.contains("TW_MAX_HEADER_BYTES"))
        let longURL = try await http.call("GET", "/v1/series?metric=requests&model=" + String(repeating: "m", count: 9000), token: key)
        #expect(longURL.status == 414 && longURL.type == "uri_too_long")
        let wideRange = try await http.call("GET", "/v1/series?metric=requests&step=1m&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", token: key)
        #expect(wideRange.status == 400 && wideRange.body.contains("at most"))

        // A slow client trickling its headers is disconnected after TW_HTTP_HEADER_TIMEOUT; others are served meanwhile.
        let slow = try RawConnection(port: stack.gateway.port)
        slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        #expect(try await http.call("GET", "/v1/tenant", token: key).status == 200)
        #expect(await slow.waitForClose(timeout: .seconds(15)), "the slow connection was closed")

        // Direct producers: hostile messages on the raw topic go to the DLQ; the ingestor keeps running.
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
        let direct: [[UInt8]] = [
            [0xFF, 0xFE, 0x00, 0x7B], Array(deep.utf8), Array(String(repeating: "x", count: 900_000).utf8), Array("{\"event_id\":1}".utf8),
            Array(event(#""input_tokens":1,"tenant_id":"\#(run)-nobody""#).utf8), Array("".utf8),
        ]
        try await producer.sendAll(direct.map { KafkaProducerMessage(topic: "\(run)-raw", key: Array(stack.tenant.utf8), value: $0) })
        let dead = try await readTopic("\(run)-dlq", count: direct.count)
        #expect(dead.count == direct.count)
        let reasons = dead.map { String(decoding: $0.header(EventHeaders.reason) ?? [], as: UTF8.self) }.sorted()
        #expect(reasons == ["invalid_event", "invalid_event", "invalid_event", "invalid_event", "invalid_event", "unknown_tenant"])
        await producer.shutdown()

        let after = "[" + (0..<100).map { validEvent("\(run)-b\($0)") }.joined(separator: ",") + "]"
        let last = try await http.call("POST", "/v1/events", token: key, body: after)
        #expect(last.status == 202)
        accepted += last.json["accepted"] as? Int ?? 0
        #expect(accepted == 401)

        let expected = Int64(accepted)
        try await eventually(.seconds(60), "every accepted event counted") { try await stack.counted(postgres) == expected }
        #expect(try await stack.counted(postgres) == expected)
        for service in stack.services {
            #expect(await service.get("/healthz")?.status == 200, "\(service.name) still running")
            #expect(try service.stop() == 0, "\(service.name) exits cleanly")
        }
        await postgres.close()
    }
}

/// `count` spaces, gzipped (a bomb: tiny on the wire, huge inflated).
func gzipOfSpaces(_ count: Int) -> [UInt8] {
    let path = NSTemporaryDirectory() + "tw-bomb-\(UUID().uuidString.prefix(8))"
    FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x20, count: count))
    defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: path + ".gz") }
    _ = try? Subprocess.run(["/bin/gzip", "-f", path])
    return Array((try? Data(contentsOf: URL(fileURLWithPath: path + ".gz"))) ?? Data())
}
