import Codecs
import Events
import Foundation
import GatewayCore
import Hummingbird
import HummingbirdTesting
import Kafka
import OTLP
import Testing
import TestSupport

/// A tiny reader for the gateway's protobuf answers (`ExportTraceServiceResponse`, `google.rpc.Status`): the field
/// numbers and values, independent of the module's own reader.
func protobufFields(_ bytes: [UInt8]) -> [(field: Int, varint: UInt64?, bytes: [UInt8]?)] {
    var out: [(Int, UInt64?, [UInt8]?)] = []
    var i = 0
    func varint() -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while i < bytes.count {
            let b = bytes[i]; i += 1
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        return v
    }
    while i < bytes.count {
        let tag = varint()
        switch tag & 7 {
        case 0: out.append((Int(tag >> 3), varint(), nil))
        case 2:
            let n = Int(varint())
            out.append((Int(tag >> 3), nil, Array(bytes[i..<min(i + n, bytes.count)])))
            i += n
        default: return out
        }
    }
    return out
}

@Suite("Gateway OTLP/HTTP traces", .serialized, .timeLimit(.minutes(3)))
struct OTLPGatewayTests {
    static func llmSpan(_ n: Int, run: Int, model: String = "gpt-4o", input: Int64 = 100, extra: [(String, OTLPValue)] = []) -> OTLPSpan {
        var s = OTLPSpan()
        s.traceID = (0..<16).map { UInt8(truncatingIfNeeded: run &* 31 &+ n &+ $0 &+ 1) }
        s.spanID = (0..<8).map { UInt8(truncatingIfNeeded: n &* 7 &+ $0 &+ 1) }
        s.name = "chat \(model)"
        s.kind = 3
        let start = UInt64(EventTimestamp.now().microsecondsSinceEpoch - 5_000_000) * 1000
        s.startTimeUnixNano = start
        s.endTimeUnixNano = start + 420_000_000
        s.attributes = OTLPAttributes([("gen_ai.provider.name", .string("openai")), ("gen_ai.request.model", .string(model)),
                                       ("gen_ai.usage.input_tokens", .int(input)), ("gen_ai.usage.output_tokens", .int(7))] + extra)
        return s
    }

    static func plainSpan(_ n: Int) -> OTLPSpan {
        var s = llmSpan(n, run: 999)
        s.name = "GET /health"
        s.attributes = OTLPAttributes([("http.request.method", .string("GET"))])
        return s
    }

    func withGateway(settings: GatewaySettings = GatewaySettings(), brokers: String? = nil, rateLimits: RateLimiter.Configuration? = nil,
                     _ body: @Sendable (Gateway, any TestClientProtocol, String, String) async throws -> Void) async throws {
        let gateway = try await Gateway.make(settings: settings, brokers: brokers, rateLimits: rateLimits)
        let tenant = TestEnvironment.unique("otlp")
        try await gateway.app.test(.router) { client in
            let key = try await client.execute(uri: "/v1/admin/tenants", method: .post, headers: [.authorization: "Bearer \(adminToken)"], body: ByteBuffer(string: "{\"tenant_id\":\"\(tenant)\"}")) { response in
                json(response.body)["api_key"] as? String ?? ""
            }
            try await body(gateway, client, key, tenant)
        }
    }

    @Test("protobuf and JSON exports become events for the key's tenant; other spans are skipped; retries keep the event ids")
    func accepted() async throws {
        try await self.withGateway { gateway, client, key, tenant in
            // Non-LLM spans only: accepted (200), nothing produced; the first message on the topic is the next export's.
            let plain = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [Self.plainSpan(1), Self.plainSpan(2)])])
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"], body: ByteBuffer(bytes: plain.protobuf())) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/x-protobuf")
                #expect(response.body.readableBytes == 0, "a full success is an empty ExportTraceServiceResponse")
            }
            let resource = OTLPAttributes([("service.name", .string("bot")), ("deployment.environment.name", .string("prod"))])
            let pb = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(resource: resource, spans: [Self.llmSpan(1, run: 1), Self.plainSpan(3), Self.llmSpan(2, run: 1, model: "gpt-4o-mini", input: 55)])])
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf", .contentEncoding: "gzip"], body: ByteBuffer(bytes: Gzip.compress(pb.protobuf()))) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.init("RateLimit-Policy")!] == nil, "no limiter configured in this gateway")
            }
            let js = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(resource: resource, spans: [Self.llmSpan(3, run: 1, model: "o3-mini", input: 9)])])
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json; charset=utf-8"], body: ByteBuffer(bytes: js.json())) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                #expect(String(buffer: response.body) == "{}")
            }
            // The same protobuf export again, as an exporter retry: same event ids (the ingestor deduplicates them).
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"], body: ByteBuffer(bytes: pb.protobuf())) { response in
                #expect(response.status == .ok)
            }
            let produced = try await readTopic(gateway.topics.raw, count: 5)
            let events = try produced.map { message -> LLMEvent in
                #expect(message.key.map { String(decoding: $0, as: UTF8.self) } == tenant)
                return try JSONDecoder().decode(LLMEvent.self, from: Data(message.value))
            }
            #expect(events.allSatisfy { $0.tenantID == tenant && $0.app == "bot" && $0.environment == "prod" && $0.latencyMs == 420 })
            #expect(Set(events.map(\.model)) == ["gpt-4o", "gpt-4o-mini", "o3-mini"])
            let inputTokens: Int64 = events.map(\.inputTokens).reduce(0, +)
            let expectedInput: Int64 = 2 * (100 + 55) + 9
            #expect(inputTokens == expectedInput)
            let ids = events.map(\.eventID)
            #expect(Set(ids).count == 3, "the retried export carries the same ids")
            #expect(ids.allSatisfy { $0.hasPrefix("otlp-") })
        }
    }

    @Test("one call reported by the Anthropic SDK and by OpenLLMetry is one event; a tenant can choose which scope counts")
    func overlappingInstrumentations() async throws {
        // The golden export, moved to now (the gateway refuses events older than the allowed lateness).
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/otlp/anthropic-sdk+openllmetry.pb")
        var request = try Array(try Data(contentsOf: url)).withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }
        let latest = request.resourceSpans.flatMap(\.spans).map(\.endTimeUnixNano).max()!
        let shift = UInt64(EventTimestamp.now().microsecondsSinceEpoch) * 1000 - latest - 1_000_000_000
        for r in request.resourceSpans.indices {
            for s in request.resourceSpans[r].spans.indices {
                request.resourceSpans[r].spans[s].startTimeUnixNano += shift
                request.resourceSpans[r].spans[s].endTimeUnixNano += shift
                request.resourceSpans[r].spans[s].firstChunkUnixNano? += shift
            }
        }
        let body = request.protobuf()
        try await self.withGateway { gateway, client, key, tenant in
            func export() async throws {
                try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"], body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == .ok && response.body.readableBytes == 0)
                }
            }
            try await export()
            let first = try await readTopic(gateway.topics.raw, count: 3).map { try JSONDecoder().decode(LLMEvent.self, from: Data($0.value)) }
            #expect(first.filter { $0.eventID.hasPrefix("otlp-r-anthropic:msg_") }.count == 2 && first.filter { $0.status == .error }.count == 1)
            #expect(first.first { $0.model == "claude-sonnet-4" }?.outputTokens == 64, "the SDK's count of the stream")

            let admin: HTTPFields = [.authorization: "Bearer \(adminToken)", .contentType: "application/json"]
            try await client.execute(uri: "/v1/admin/tenants/\(tenant)", method: .patch, headers: admin, body: ByteBuffer(string: #"{"otlp_ignored_scopes":["com.anthropic.sdk.python"]}"#)) { response in
                #expect(response.status == .ok)
                #expect(json(response.body)["otlp_ignored_scopes"] as? [String] == ["com.anthropic.sdk.python"])
            }
            try await client.execute(uri: "/v1/admin/tenants/\(tenant)", method: .patch, headers: admin, body: ByteBuffer(string: #"{"otlp_ignored_scopes":["not a scope"]}"#)) { response in
                #expect(response.status == .badRequest && String(buffer: response.body).contains("otlp_ignored_scopes"))
            }
            try await client.execute(uri: "/v1/tenant", method: .get, headers: [.authorization: "Bearer \(key)"]) { response in
                #expect((json(response.body)["tenant"] as? [String: Any])?["otlp_ignored_scopes"] as? [String] == ["com.anthropic.sdk.python"])
            }
            try await export()
            let all = try await readTopic(gateway.topics.raw, count: 6).map { try JSONDecoder().decode(LLMEvent.self, from: Data($0.value)) }
            let second = Array(all.suffix(3))
            #expect(second.count == 3 && second.first { $0.model == "claude-sonnet-4" }?.outputTokens == 65, "OpenLLMetry's own count, now the one that counts")
            #expect(all.count == 6)
        }
    }

    @Test("unusable GenAI spans: partial success with the count and the reason, in the request's encoding")
    func partialSuccess() async throws {
        try await self.withGateway { gateway, client, key, _ in
            var bad = Self.llmSpan(2, run: 2, extra: [("gen_ai.usage.output_tokens", .int(-3))])
            bad.name = "chat broken"
            let request = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [Self.llmSpan(1, run: 2), bad, Self.plainSpan(4)])])
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"], body: ByteBuffer(bytes: request.protobuf())) { response in
                #expect(response.status == .ok)
                let top = protobufFields(Array(buffer: response.body))
                #expect(top.count == 1 && top.first?.field == 1)
                let partial = protobufFields(top.first?.bytes ?? [])
                #expect(partial.first { $0.field == 1 }?.varint == 1, "rejectedSpans")
                let message = String(decoding: partial.first { $0.field == 2 }?.bytes ?? [], as: UTF8.self)
                #expect(message.contains("chat broken") && message.contains("gen_ai.usage.output_tokens: must be >= 0, got -3"), "\(message)")
            }
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: ByteBuffer(bytes: request.json())) { response in
                #expect(response.status == .ok)
                let partial = json(response.body)["partialSuccess"] as? [String: Any]
                #expect(partial?["rejectedSpans"] as? String == "1")
                #expect((partial?["errorMessage"] as? String)?.contains("gen_ai.usage.output_tokens") == true)
            }
            let produced = try await readTopic(gateway.topics.raw, count: 2)
            #expect(produced.count == 2)
        }
    }

    @Test("the span that crashed the gateway (input -1, total Int64.max) is a partial success, and the gateway goes on serving")
    func crashRegression() async throws {
        try await self.withGateway { gateway, client, key, _ in
            var crash = Self.llmSpan(1, run: 13)
            crash.attributes = OTLPAttributes([("gen_ai.provider.name", .string("openai")), ("gen_ai.operation.name", .string("chat")), ("gen_ai.request.model", .string("gpt-4o")),
                                               ("gen_ai.usage.input_tokens", .int(-1)), ("gen_ai.usage.total_tokens", .int(.max))])
            for (type, body) in [("application/x-protobuf", OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [crash])]).protobuf()),
                                 ("application/json", OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [crash])]).json())] {
                try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: type], body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == .ok)
                    #expect(String(decoding: Array(buffer: response.body), as: UTF8.self).contains("gen_ai.usage.input_tokens: must be >= 0, got -1"))
                }
            }
            let good = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [Self.llmSpan(2, run: 13)])])
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"], body: ByteBuffer(bytes: good.protobuf())) { response in
                #expect(response.status == .ok)
                #expect(response.body.readableBytes == 0)
            }
            let produced = try await readTopic(gateway.topics.raw, count: 1)
            #expect(produced.count == 1)
        }
    }

    @Test("bad input answered per the OTLP spec: status code, google.rpc.Status in the request's encoding, Retry-After where a retry helps")
    func badInput() async throws {
        var settings = GatewaySettings()
        settings.maxBodyBytes = 64 * 1024
        settings.otlpMaxSpans = 50
        try await self.withGateway(settings: settings, rateLimits: RateLimiter.Configuration(eventsPerSecond: 5, requestsPerSecond: 1000, burstSeconds: 2)) { _, client, key, _ in
            let auth: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/x-protobuf"]
            let good = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [Self.llmSpan(1, run: 3)])]).protobuf()
            func status(_ buffer: ByteBuffer) -> (code: UInt64?, message: String) {
                let fields = protobufFields(Array(buffer: buffer))
                return (fields.first { $0.field == 1 }?.varint, String(decoding: fields.first { $0.field == 2 }?.bytes ?? [], as: UTF8.self))
            }
            // Truncated protobuf.
            try await client.execute(uri: "/v1/traces", method: .post, headers: auth, body: ByteBuffer(bytes: good.prefix(good.count - 9))) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.contentType] == "application/x-protobuf")
                let s = status(response.body)
                #expect(s.code == 3 && s.message.contains("resourceSpans[0]"), "\(s)")
            }
            // Wrong content type.
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "text/plain"], body: ByteBuffer(bytes: good)) { response in
                #expect(response.status == .unsupportedMediaType)
                #expect(json(response.body)["message"] as? String == "Content-Type must be application/x-protobuf or application/json")
            }
            // JSON with base64 ids.
            let b64 = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"W1JzZmCe6iVSBwwUNDS5hA==","spanId":"AAECAwQFBgc=","name":"x"}]}]}]}"#
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: ByteBuffer(string: b64)) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.contentType] == "application/json")
                let body = json(response.body)
                #expect(body["code"] as? Int == 3)
                #expect((body["message"] as? String)?.contains("spans[0].traceId: must be 32 hex digits") == true, "\(body)")
            }
            // Oversized body, and too many spans.
            try await client.execute(uri: "/v1/traces", method: .post, headers: auth, body: ByteBuffer(bytes: [UInt8](repeating: 0, count: 65 * 1024))) { response in
                #expect(response.status == .contentTooLarge)
                #expect(status(response.body).message.contains("TW_MAX_BODY_BYTES"))
            }
            let many = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: (0..<51).map { Self.plainSpan($0) })])
            try await client.execute(uri: "/v1/traces", method: .post, headers: auth, body: ByteBuffer(bytes: many.protobuf())) { response in
                #expect(response.status == .contentTooLarge)
                #expect(status(response.body).message.contains("TW_OTLP_MAX_SPANS"))
            }
            // No key, a wrong key.
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.contentType: "application/x-protobuf"], body: ByteBuffer(bytes: good)) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] == "Bearer")
                #expect(status(response.body).code == 16)
            }
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer tw_nope_nope", .contentType: "application/json"], body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .unauthorized)
                #expect(json(response.body)["code"] as? Int == 16)
            }
            // Over the tenant's event budget (5/s, burst 10): 429 with Retry-After, which exporters honour.
            let twelve = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: (0..<8).map { Self.llmSpan($0, run: 4) })]).protobuf()
            try await client.execute(uri: "/v1/traces", method: .post, headers: auth, body: ByteBuffer(bytes: twelve)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/traces", method: .post, headers: auth, body: ByteBuffer(bytes: twelve)) { response in
                #expect(response.status == .tooManyRequests)
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
                #expect(status(response.body).code == 8)
            }
        }
    }

    @Test("the broker down: 503 with Retry-After, in the request's encoding")
    func brokerDown() async throws {
        try await self.withGateway(brokers: "127.0.0.1:1") { _, client, key, _ in
            let body = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(spans: [Self.llmSpan(1, run: 5)])]).json()
            try await client.execute(uri: "/v1/traces", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] == "5")
                #expect(json(response.body)["code"] as? Int == 14)
            }
        }
    }
}
