import Events
import Foundation
import OTLP
import Testing

/// Bodies exported by the real OpenTelemetry Python SDK with real GenAI instrumentations of the openai client
/// (`deploy/otel/llm_client.py fixtures`, see the Makefile's `otel-fixtures`), and what the SDK and the OpenAI stub
/// recorded while producing them.
struct Fixture {
    struct Call: Decodable {
        let name: String
        let model: String
        let served_model: String?
        let input: Int64?
        let output: Int64?
        let cached: Int64?
        let reasoning: Int64?
        let status: Int?
        let stream: Bool?
        let embedding: Bool?
        let delay: Double?
        /// The id the stub answered with (`gen_ai.response.id` in the spans).
        let response_id: String?
    }

    struct Span: Decodable {
        let name: String
        let trace_id: String
        let span_id: String
        let start_unix_nano: UInt64
        let end_unix_nano: UInt64
        let status: String
        let llm: Bool
        let scope: String?
    }

    struct Expected: Decodable {
        let label: String
        let `protocol`: String
        let service: String
        let environment: String
        let calls: [Call]
        let spans: [Span]
        let content_type: String
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/otlp").standardized
    static let names = ["openllmetry.pb", "openllmetry.json", "otel.pb", "otel.json", "openllmetry-legacy.pb"]

    /// When the fixture was made: its timestamps are judged from then.
    var madeAt: EventTimestamp { EventTimestamp(microsecondsSinceEpoch: Int64(self.expected.spans.map(\.end_unix_nano).max()! / 1000)) }

    let name: String
    let body: [UInt8]
    let expected: Expected

    init(_ name: String) throws {
        self.name = name
        self.body = Array(try Data(contentsOf: Self.directory.appendingPathComponent(name)))
        self.expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.directory.appendingPathComponent(name + ".expected.json")))
    }

    func decode(limits: OTLPLimits = OTLPLimits()) throws -> OTLPTraceRequest {
        try self.body.withUnsafeBytes { buffer in
            self.expected.protocol == "protobuf"
                ? try OTLPTraceRequest(protobuf: buffer, keep: GenAISpanMapping.keep, limits: limits)
                : try OTLPTraceRequest(json: buffer, keep: GenAISpanMapping.keep, limits: limits)
        }
    }
}

/// Maps every span of a request the way the gateway does.
func mapAll(_ request: OTLPTraceRequest, now: EventTimestamp) -> (events: [LLMEvent], skipped: Int, rejected: [String]) {
    var events: [LLMEvent] = []
    var skipped = 0
    var rejected: [String] = []
    for rs in request.resourceSpans {
        for span in rs.spans {
            switch GenAISpanMapping.map(span, resource: rs.resource, now: now) {
            case .event(let e): events.append(e)
            case .skipped: skipped += 1
            case .rejected(let why): rejected.append(why)
            }
        }
    }
    return (events, skipped, rejected)
}

@Suite("OTLP golden fixtures from the OpenTelemetry Python SDK")
struct OTLPFixtureTests {
    @Test("every mapped field of every span", arguments: Fixture.names)
    func fixture(name: String) throws {
        let fixture = try Fixture(name)
        let expected = fixture.expected
        #expect(OTLPEncoding(contentType: expected.content_type) == (expected.protocol == "protobuf" ? .protobuf : .json))
        let request = try fixture.decode()
        #expect(request.spanCount == expected.spans.count)
        // The fixtures are kept in the repo: judge their timestamps from when they were made.
        let now = EventTimestamp(microsecondsSinceEpoch: Int64(expected.spans.map(\.end_unix_nano).max()! / 1000))
        let (events, skipped, rejected) = mapAll(request, now: now)
        #expect(rejected.isEmpty, "\(rejected)")
        #expect(skipped == expected.spans.filter { !$0.llm }.count)
        let llmSpans = expected.spans.filter(\.llm)
        try #require(events.count == llmSpans.count)
        try #require(llmSpans.count == expected.calls.count)

        // What each instrumentation reports (read off its output): OpenLLMetry today reports cache and reasoning
        // tokens and the OpenAI `user`; the OpenTelemetry instrumentation reports neither; OpenLLMetry 0.38 reports
        // no usage for streams and no error.type.
        let label = expected.label
        let reportsDetails = label == "openllmetry"
        let reportsUser = label != "otel"
        let byID = Dictionary(uniqueKeysWithValues: events.map { ($0.eventID, $0) })
        for (span, call) in zip(llmSpans, expected.calls) {
            // A call the provider answered is identified by its response id, so a second instrumentation of it
            // makes the same event; others (failures, embeddings: no response id) by their span.
            let byResponse = call.response_id.map { "otlp-r-openai:" + $0 }
            let event = try #require(byID["otlp-\(span.trace_id)-\(span.span_id)"] ?? byResponse.flatMap { byID[$0] },
                                     "\(label): no event for span \(span.name) (\(call.name))")
            if call.status == nil && call.embedding != true && label != "openllmetry-legacy" {
                #expect(event.eventID == byResponse, "\(label) \(call.name)")
            }
            // Time to first token of a stream: OpenLLMetry records an event per chunk (its TTFT is only a metric);
            // the first is ahead of the stub's pause after its first chunk. The OTel instrumentation records none.
            if call.stream == true && label.hasPrefix("openllmetry") {
                let ttft = try #require(event.timeToFirstTokenMs, "\(label): no TTFT for the stream")
                #expect(ttft > 0 && ttft + (call.delay ?? 0) * 1000 * 0.5 <= event.latencyMs, "\(label): TTFT \(ttft) of \(event.latencyMs)")
            } else {
                #expect(event.timeToFirstTokenMs == nil, "\(label) \(call.name)")
            }
            #expect(event.timestamp.microsecondsSinceEpoch == Int64(span.start_unix_nano / 1000))
            #expect(event.latencyMs == Double(span.end_unix_nano - span.start_unix_nano) / 1e6)
            #expect(event.provider == "openai")
            #expect(event.model == call.model)
            #expect(event.operation == (call.embedding == true ? "embeddings" : "chat"))
            #expect(event.app == expected.service)
            #expect(event.environment == expected.environment)
            #expect(event.userID == (reportsUser ? "\(call.name)-fixture" : nil), "\(label) \(call.name)")
            if let served = call.served_model, served != call.model {
                #expect(event.tags["response_model"] == served)
            } else {
                #expect(event.tags["response_model"] == nil)
            }
            if let status = call.status {
                #expect(event.status == .error)
                #expect(span.status == "ERROR")
                #expect(event.errorType == (status == 429 ? "rate_limit" : "server_error"), "\(label) \(call.name)")
                #expect(event.inputTokens == 0 && event.outputTokens == 0)
                continue
            }
            #expect(event.status == .ok)
            #expect(event.errorType == nil)
            if label == "openllmetry-legacy" && call.stream == true {
                #expect(event.inputTokens == 0 && event.outputTokens == 0)
            } else {
                #expect(event.inputTokens == call.input, "\(label) \(call.name)")
                #expect(event.outputTokens == call.output, "\(label) \(call.name)")
            }
            if reportsDetails {
                #expect((event.cachedInputTokens ?? 0) == (call.cached ?? 0), "\(label) \(call.name)")
                #expect((event.reasoningTokens ?? 0) == (call.reasoning ?? 0), "\(label) \(call.name)")
            } else {
                #expect(event.cachedInputTokens == nil && event.reasoningTokens == nil)
            }
            #expect(event.costNanos == nil)
        }
    }

    @Test("the protobuf and JSON exports of the same calls map to the same events, ids and times aside")
    func encodingsAgree() throws {
        for label in ["openllmetry", "otel"] {
            let pb = try Fixture("\(label).pb")
            let json = try Fixture("\(label).json")
            func shape(_ f: Fixture) throws -> [String] {
                let now = EventTimestamp(microsecondsSinceEpoch: Int64(f.expected.spans.map(\.end_unix_nano).max()! / 1000))
                return mapAll(try f.decode(), now: now).events.map {
                    "\($0.provider) \($0.model) \($0.operation) \($0.inputTokens) \($0.outputTokens) \($0.cachedInputTokens ?? -1) \($0.reasoningTokens ?? -1) \($0.status) \($0.errorType ?? "") \($0.app ?? "") \($0.environment ?? "") \($0.userID ?? "")"
                }.sorted()
            }
            #expect(try shape(pb) == shape(json), "\(label)")
        }
    }
}

@Suite("OTLP decoding")
struct OTLPDecodingTests {
    static func span(_ n: UInt8, attributes: [(String, OTLPValue)], status: Int32 = 0, start: UInt64 = 1_795_000_000_000_000_000, duration: UInt64 = 250_000_000) -> OTLPSpan {
        var s = OTLPSpan()
        s.traceID = Array(repeating: n, count: 16)
        s.spanID = Array(repeating: n &+ 1, count: 8)
        s.name = "chat \(n)"
        s.kind = 3
        s.startTimeUnixNano = start
        s.endTimeUnixNano = start + duration
        s.attributes = OTLPAttributes(attributes)
        s.statusCode = status
        return s
    }

    static let sample = OTLPTraceRequest(resourceSpans: [
        OTLPResourceSpans(resource: OTLPAttributes([("service.name", .string("checkout")), ("deployment.environment", .string("prod"))]), spans: [
            span(1, attributes: [("gen_ai.provider.name", .string("anthropic")), ("gen_ai.request.model", .string("claude-sonnet-4")),
                                 ("gen_ai.usage.input_tokens", .int(1000)), ("gen_ai.usage.output_tokens", .int(200)),
                                 ("gen_ai.usage.cost", .double(0.0123)), ("gen_ai.response.time_to_first_chunk", .double(0.125)),
                                 ("gen_ai.conversation.id", .string("conv-7")), ("gen_ai.openai.api_base", .string("http://llm"))]),
            span(2, attributes: [("http.method", .string("GET"))]),
        ].enumerated().map { n, span in
            // Scopes and a streamed-chunk event round-trip too (two scopes: two ScopeSpans).
            var span = span
            span.scope = n == 0 ? "opentelemetry.instrumentation.anthropic" : ""
            if n == 0 { span.firstChunkUnixNano = span.startTimeUnixNano + 5_000_000 }
            return span
        }),
    ])

    static func decodeBoth(_ request: OTLPTraceRequest, limits: OTLPLimits = OTLPLimits()) throws -> (OTLPTraceRequest, OTLPTraceRequest) {
        let pb = try request.protobuf().withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep, limits: limits) }
        let json = try request.json().withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep, limits: limits) }
        return (pb, json)
    }

    @Test("both encodings round-trip; attributes the mapping does not read are not kept")
    func roundTrip() throws {
        let (pb, json) = try Self.decodeBoth(Self.sample)
        var expected = Self.sample
        expected.resourceSpans[0].spans[0].attributes = OTLPAttributes(Self.sample.resourceSpans[0].spans[0].attributes.entries.filter { $0.key != "gen_ai.openai.api_base" }.map { ($0.key, $0.value) })
        expected.resourceSpans[0].spans[1].attributes = OTLPAttributes()
        #expect(pb == expected)
        #expect(json == expected)
    }

    @Test("a truncated protobuf body is refused wherever it is cut, naming the place")
    func truncated() throws {
        let body = try Fixture("openllmetry.pb").body
        var refused = 0
        for cut in stride(from: 1, to: body.count, by: 7) {
            do {
                _ = try Array(body[..<cut]).withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }
            } catch {
                refused += 1
                #expect(!"\(error)".isEmpty)
            }
        }
        // A cut can land exactly between two top-level fields; almost every other cut is refused.
        #expect(refused >= (body.count / 7) - 2)
        let error = try #require(throws: OTLPDecodingError.self) {
            _ = try Array(body[..<(body.count / 2)]).withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }
        }
        #expect(error.kind == .malformed)
        #expect(error.path.hasPrefix("resourceSpans[0]"))
        #expect(error.reason.contains("past the end") || error.reason.contains("truncated"))
    }

    @Test("JSON ids in base64 (proto3's mapping, not OTLP's) are refused, naming the field")
    func base64IDs() throws {
        var json = String(decoding: Self.sample.json(), as: UTF8.self)
        json = json.replacingOccurrences(of: "\"traceId\":\"01010101010101010101010101010101\"", with: "\"traceId\":\"AQEBAQEBAQEBAQEBAQEBAQ==\"")
        let error = try #require(throws: OTLPDecodingError.self) {
            _ = try Array(json.utf8).withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep) }
        }
        #expect(error.path == "resourceSpans[0].scopeSpans[0].spans[0].traceId")
        #expect(error.reason.contains("hex"))
    }

    @Test("a body of millions of empty messages (every level: resource spans, scope spans, attributes, events) stops at the element limit, in both encodings; an ordinary request reports the elements it cost")
    func elementBound() throws {
        let limits = OTLPLimits(maxSpans: 10, maxElements: 1000)
        // 10,000 empty resourceSpans, as the 19 KB gzip bomb (10 million of them) was.
        let protobufBodies: [[UInt8]] = [
            Array(repeating: [0x0a, 0x00], count: 10_000).flatMap { $0 },
            // one resourceSpans holding 10,000 empty scopeSpans
            [0x0a, 0xa0, 0x9c, 0x01] + Array(repeating: [0x12, 0x00], count: 10_000).flatMap { $0 },
        ]
        let jsonBodies = [
            "{\"resourceSpans\":[" + Array(repeating: "{}", count: 10_000).joined(separator: ",") + "]}",
            "{\"resourceSpans\":[{\"resource\":{\"attributes\":[" + Array(repeating: "{}", count: 10_000).joined(separator: ",") + "]}}]}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"events\":[" + Array(repeating: "{}", count: 10_000).joined(separator: ",") + "]}]}]}]}",
        ]
        for body in protobufBodies {
            let error = try #require(throws: OTLPDecodingError.self) {
                _ = try body.withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep, limits: limits) }
            }
            #expect(error.kind == .tooManyElements)
            #expect(error.reason.contains("more than 1000 elements"))
        }
        for body in jsonBodies {
            let error = try #require(throws: OTLPDecodingError.self) {
                _ = try Array(body.utf8).withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep, limits: limits) }
            }
            #expect(error.kind == .tooManyElements)
        }
        // Within the limit the count is what the request held: 1 resource, 1 scope, 2 spans with 3 attributes each.
        var ordinary = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans()])
        ordinary.resourceSpans[0].spans = (0..<2).map { Self.span(UInt8($0 + 1), attributes: [("a", .int(1)), ("b", .int(2)), ("c", .string("x"))]) }
        let (pb, json) = try Self.decodeBoth(ordinary, limits: limits)
        #expect(pb.elements == 1 + 1 + 2 + 6)
        #expect(json.elements == 1 + 1 + 2 + 6)
    }

    @Test("bounds: span count, JSON depth, wire types, UTF-8, trailing bytes")
    func bounds() throws {
        var many = OTLPTraceRequest(resourceSpans: [OTLPResourceSpans()])
        many.resourceSpans[0].spans = (0..<11).map { Self.span(UInt8($0 + 1), attributes: []) }
        for body in [many.protobuf(), many.json()] {
            let error = try #require(throws: OTLPDecodingError.self) {
                _ = try body.withUnsafeBytes { b in
                    body.first == UInt8(ascii: "{")
                        ? try OTLPTraceRequest(json: b, keep: GenAISpanMapping.keep, limits: OTLPLimits(maxSpans: 10))
                        : try OTLPTraceRequest(protobuf: b, keep: GenAISpanMapping.keep, limits: OTLPLimits(maxSpans: 10))
                }
            }
            #expect(error.kind == .tooManySpans)
        }
        _ = try Self.decodeBoth(many, limits: OTLPLimits(maxSpans: 11))

        let deep = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":\"x\",\"value\":{\"arrayValue\":" + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "}}]}]}]}]}"
        let deepError = try #require(throws: OTLPDecodingError.self) {
            _ = try Array(deep.utf8).withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep) }
        }
        #expect(deepError.reason.contains("nesting"))

        // resourceSpans (field 1) sent as a varint.
        let wrongWire: [UInt8] = [0x08, 0x01]
        let wireError = try #require(throws: OTLPDecodingError.self) {
            _ = try wrongWire.withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }
        }
        #expect(wireError.reason.contains("wire type"))

        var badName = ProtobufWriter()
        badName.messageField(1) { rs in rs.messageField(2) { ss in ss.messageField(2) { s in s.bytesField(5, [0xC3, 0x28]) } } }
        let utf8Error = try #require(throws: OTLPDecodingError.self) {
            _ = try badName.bytes.withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }
        }
        #expect(utf8Error.path == "resourceSpans[0].scopeSpans[0].spans[0]")
        #expect(utf8Error.reason.contains("UTF-8"))

        #expect(throws: OTLPDecodingError.self) {
            _ = try Array("{\"resourceSpans\":[]} x".utf8).withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep) }
        }
        // Unknown fields and nulls are ignored; an empty body is an empty request.
        let lenient = try Array("{\"resourceSpans\":[{\"schemaUrl\":\"x\",\"resource\":null,\"scopeSpans\":[{\"spans\":[{\"traceId\":\"\",\"links\":[{\"a\":1}],\"attributes\":null}]}]}],\"extra\":{\"b\":[1,2]}}".utf8)
            .withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep) }
        #expect(lenient.spanCount == 1)
        #expect(try [UInt8]().withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }.spanCount == 0)
    }
}

@Suite("GenAI span mapping")
struct GenAIMappingTests {
    let now = EventTimestamp(microsecondsSinceEpoch: 1_795_000_100_000_000)

    func map(_ attributes: [(String, OTLPValue)], status: Int32 = 0, message: String = "", duration: UInt64 = 250_000_000) -> GenAISpanMapping.Outcome {
        var span = OTLPDecodingTests.span(9, attributes: attributes, status: status, duration: duration)
        span.statusMessage = message
        return GenAISpanMapping.map(span, resource: OTLPAttributes([("service.name", .string("svc")), ("deployment.environment", .string("dev"))]), now: self.now)
    }

    @Test("current names: cost, time to first chunk, conversation id, provider and timing")
    func current() throws {
        let (pb, _) = try OTLPDecodingTests.decodeBoth(OTLPDecodingTests.sample)
        guard case .event(let e) = GenAISpanMapping.map(pb.resourceSpans[0].spans[0], resource: pb.resourceSpans[0].resource, now: self.now) else {
            Issue.record("not mapped")
            return
        }
        #expect(e.eventID == "otlp-" + String(repeating: "01", count: 16) + "-" + String(repeating: "02", count: 8))
        #expect(e.provider == "anthropic" && e.model == "claude-sonnet-4" && e.operation == "chat")
        #expect(e.inputTokens == 1000 && e.outputTokens == 200)
        #expect(e.costNanos == 12_300_000)
        #expect(e.timeToFirstTokenMs == 125)
        #expect(e.latencyMs == 250)
        #expect(e.timestamp.microsecondsSinceEpoch == 1_795_000_000_000_000)
        #expect(e.sessionID == "conv-7")
        #expect(e.app == "checkout" && e.environment == "prod")
        #expect(GenAISpanMapping.map(pb.resourceSpans[0].spans[1], resource: pb.resourceSpans[0].resource, now: self.now) == .skipped)
    }

    @Test("older names: gen_ai.system, prompt/completion tokens, llm.usage.total_tokens, llm.request.type")
    func legacy() throws {
        guard case .event(let e) = self.map([("gen_ai.system", .string("Bedrock")), ("gen_ai.request.model", .string("amazon.nova-pro")),
                                             ("llm.request.type", .string("completion")), ("gen_ai.usage.prompt_tokens", .int(40)),
                                             ("llm.usage.total_tokens", .int(100))]) else {
            Issue.record("not mapped")
            return
        }
        #expect(e.provider == "aws.bedrock")
        #expect(e.operation == "text_completion")
        #expect(e.inputTokens == 40 && e.outputTokens == 60)
        guard case .event(let e2) = self.map([("gen_ai.system", .string("OpenAI")), ("gen_ai.request.model", .string("gpt-4o")),
                                              ("gen_ai.usage.prompt_tokens", .double(7)), ("gen_ai.usage.completion_tokens", .string("9"))]) else {
            Issue.record("not mapped")
            return
        }
        #expect(e2.provider == "openai" && e2.inputTokens == 7 && e2.outputTokens == 9)
    }

    @Test("errors from span status and error.type are classified")
    func errors() {
        for (raw, expected) in [("RateLimitError", "rate_limit"), ("<class 'openai.RateLimitError'>", "rate_limit"), ("429", "rate_limit"),
                                ("Error code: 429 - stubbed", "rate_limit"), ("APITimeoutError", "timeout"), ("504", "timeout"),
                                ("InternalServerError", "server_error"), ("503", "server_error"), ("overloaded_error", "server_error"),
                                ("BadRequestError", "invalid_request"), ("AuthenticationError", "auth_error"), ("APIConnectionError", "connection_error"),
                                ("_OTHER", "other"), ("ContentFilterFinishReasonError", "content_filter"), ("my.custom_Error", "my.custom_error")] {
            #expect(GenAISpanMapping.classifyError(raw) == expected, "\(raw)")
        }
        guard case .event(let e) = self.map([("gen_ai.provider.name", .string("openai")), ("gen_ai.request.model", .string("gpt-4o"))], status: 2, message: "Error code: 500") else {
            Issue.record("not mapped")
            return
        }
        #expect(e.status == .error && e.errorType == "server_error" && e.inputTokens == 0)
    }

    @Test("token arithmetic on hostile counts is refused, never trapped (the gateway crash of issue 13)")
    func hostileCounts() {
        let base: [(String, OTLPValue)] = [("gen_ai.provider.name", .string("openai")), ("gen_ai.operation.name", .string("chat")), ("gen_ai.request.model", .string("gpt-4o"))]
        // The reported request: input -1, total Int64.max, no output. `total - input` overflowed and killed the gateway.
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .int(-1)), ("gen_ai.usage.total_tokens", .int(.max))])
            == .rejected("gen_ai.usage.input_tokens: must be >= 0, got -1"))
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .int(.min)), ("gen_ai.usage.total_tokens", .int(.max))])
            == .rejected("gen_ai.usage.input_tokens: must be >= 0, got -9223372036854775808"))
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .int(0)), ("gen_ai.usage.total_tokens", .int(.max))])
            == .rejected("gen_ai.usage.output_tokens: must be <= 1000000000, got 9223372036854775807"))
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .int(5)), ("gen_ai.usage.total_tokens", .int(-1))])
            == .rejected("gen_ai.usage.total_tokens: must be >= 0, got -1"))
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .string("-1")), ("llm.usage.total_tokens", .double(9.2e18))])
            == .rejected("gen_ai.usage.input_tokens: must be >= 0, got -1"))
        #expect(self.map(base + [("gen_ai.response.time_to_first_chunk", .double(1e308))])
            == .rejected("gen_ai.response.time_to_first_chunk: must be a finite number >= 0"))
        #expect(self.map(base + [("gen_ai.usage.cost", .double(1e308))]) == .rejected("gen_ai.usage.cost: must be a finite number of USD between 0 and 100000"))
        var late = OTLPDecodingTests.span(5, attributes: base)
        late.startTimeUnixNano = .max - 1
        late.endTimeUnixNano = .max
        #expect(GenAISpanMapping.map(late, resource: OTLPAttributes(), now: self.now) == .rejected("startTimeUnixNano: out of range"))
    }

    @Test("spans that are not model calls are skipped; unusable LLM spans are rejected with the attribute and reason")
    func skipAndReject() {
        #expect(self.map([("http.method", .string("POST"))]) == .skipped)
        #expect(self.map([("gen_ai.operation.name", .string("execute_tool")), ("gen_ai.provider.name", .string("openai"))]) == .skipped)
        #expect(self.map([("gen_ai.operation.name", .string("invoke_agent")), ("gen_ai.request.model", .string("gpt-4o"))]) == .skipped)
        let base: [(String, OTLPValue)] = [("gen_ai.provider.name", .string("openai")), ("gen_ai.request.model", .string("gpt-4o"))]
        #expect(self.map([("gen_ai.request.model", .string("gpt-4o"))]) == .rejected("gen_ai.provider.name: missing (and no gen_ai.system)"))
        #expect(self.map([("gen_ai.provider.name", .string("openai"))]) == .rejected("gen_ai.request.model: missing (and no gen_ai.response.model)"))
        #expect(self.map(base + [("gen_ai.usage.input_tokens", .int(-5))]) == .rejected("gen_ai.usage.input_tokens: must be >= 0, got -5"))
        #expect(self.map(base + [("gen_ai.usage.output_tokens", .double(1.5))]) == .rejected("gen_ai.usage.output_tokens: must be a whole number, got 1.5"))
        #expect(self.map(base + [("gen_ai.usage.cost", .double(-1))]) == .rejected("gen_ai.usage.cost: must be a finite number of USD between 0 and 100000"))
        #expect(self.map(base + [("gen_ai.response.time_to_first_chunk", .double(1.0))], duration: 500_000_000)
            == .rejected("gen_ai.response.time_to_first_chunk: must be <= latency_ms (500.0), got 1000.0"))
        #expect(self.map(base + [("gen_ai.request.model", .string(String(repeating: "m", count: 300)))]) == .rejected("gen_ai.request.model: longer than 256 characters"))
        var backwards = OTLPDecodingTests.span(3, attributes: base)
        backwards.endTimeUnixNano = backwards.startTimeUnixNano - 1
        #expect(GenAISpanMapping.map(backwards, resource: OTLPAttributes(), now: self.now) == .rejected("endTimeUnixNano: before startTimeUnixNano"))
        var noID = OTLPDecodingTests.span(4, attributes: base)
        noID.traceID = []
        #expect(GenAISpanMapping.map(noID, resource: OTLPAttributes(), now: self.now) == .rejected("traceId: must be 16 bytes, not all zero"))
    }
}

@Suite("Golden fixtures of instrumentations that report one call twice, or price it themselves")
struct OverlappingInstrumentationFixtureTests {
    @Test("the Anthropic SDK's own span and OpenLLMetry's for one call: each call counted once, with the SDK's numbers")
    func anthropicSDKAndOpenLLMetry() throws {
        let fixture = try Fixture("anthropic-sdk+openllmetry.pb")
        let request = try fixture.decode()
        let sdkScope = "com.anthropic.sdk.python", openllmetryScope = "opentelemetry.instrumentation.anthropic"
        #expect(Set(fixture.expected.spans.compactMap(\.scope)) == [sdkScope, openllmetryScope])
        // Each span is a root span of a trace of its own, as in the report: nothing but the call links them.
        #expect(Set(fixture.expected.spans.map(\.trace_id)).count == fixture.expected.spans.count)
        // Counted span by span, as before: every call twice.
        #expect(mapAll(request, now: fixture.madeAt).events.count == 2 * fixture.expected.calls.count)

        let export = GenAIExport(request, now: fixture.madeAt)
        #expect(export.rejected.isEmpty)
        #expect(export.events.count == fixture.expected.calls.count)
        #expect(export.duplicates == fixture.expected.calls.count)
        for call in fixture.expected.calls {
            if call.status != nil {
                let failed = export.events.filter { $0.status == .error }
                try #require(failed.count == 1)
                #expect(failed[0].errorType == "rate_limit" && failed[0].model == call.model)
                let sdkSpan = try #require(fixture.expected.spans.first { $0.scope == sdkScope && $0.status == "ERROR" })
                #expect(failed[0].latencyMs == Double(sdkSpan.end_unix_nano - sdkSpan.start_unix_nano) / 1e6, "the SDK's report is kept")
                continue
            }
            let event = try #require(export.events.first { $0.eventID == "otlp-r-anthropic:" + call.response_id! }, "\(call.name)")
            #expect(event.provider == "anthropic" && event.model == call.model && event.status == .ok)
            // The SDK counts a stream's output as the API does (cumulative); OpenLLMetry adds message_start's 1 to it.
            #expect(event.inputTokens == call.input && event.outputTokens == call.output && (event.cachedInputTokens ?? 0) == call.cached, "\(call.name)")
            #expect(event.tags["response_model"] == call.served_model)
            if call.stream == true {
                let ttft = try #require(event.timeToFirstTokenMs, "gen_ai.response.time_to_first_chunk of the SDK")
                #expect(ttft > 0 && ttft + call.delay! * 1000 * 0.5 <= event.latencyMs, "TTFT \(ttft) of \(event.latencyMs)")
            } else {
                #expect(event.timeToFirstTokenMs == nil)
            }
        }

        // A tenant that counts only OpenLLMetry: its three spans, nothing merged, the SDK's left out.
        let chosen = GenAIExport(request, ignoredScopes: [sdkScope], now: fixture.madeAt)
        #expect(chosen.events.count == fixture.expected.calls.count && chosen.ignored == fixture.expected.calls.count && chosen.duplicates == 0)
        let stream = fixture.expected.calls.first { $0.stream == true }!
        #expect(chosen.events.first { $0.eventID == "otlp-r-anthropic:" + stream.response_id! }?.outputTokens == stream.output! + 1,
                "OpenLLMetry's own count, when the tenant chooses it")
    }

    @Test("openlit: a cost of 0 for a model missing from its price file does not win, a real cost is kept exactly, TTFT of streams only")
    func openlit() throws {
        let fixture = try Fixture("openlit.pb")
        let export = GenAIExport(try fixture.decode(), now: fixture.madeAt)
        #expect(export.rejected.isEmpty && export.duplicates == 0)
        try #require(export.events.count == fixture.expected.calls.count)
        for call in fixture.expected.calls {
            let event = try #require(export.events.first { $0.eventID == "otlp-r-openai:" + call.response_id! }, "\(call.name)")
            #expect(event.inputTokens == call.input && event.outputTokens == call.output)
            #expect(event.app == "support-bot" && event.environment == "staging")
            #expect(event.userID == "\(call.name)-fixture", "gen_ai.request.user")
            switch call.name {
            case "unpriced":
                // openlit says 0; the default policy prices the call from the table instead, and says so.
                #expect(event.costNanos == 0)
                let table = event.inputTokens * 2_500 + event.outputTokens * 10_000 // gpt-4o at $2.50/$10.00 per Mtok
                let (cost, source) = CostPolicy.default.resolve(clientCost: event.costNanos, tablePrice: table, usedTokens: true)
                #expect(cost == table && cost > 0 && source == .priceTableOverClientZero)
            default:
                // 1000 x $0.15/Mtok + 200 x $0.60/Mtok = $0.00027 (openlit's float: 0.00026999999999999995).
                let expected = (call.input! * 150 + call.output! * 600)
                #expect(event.costNanos == expected, "\(call.name): \(event.costNanos ?? -1)")
            }
            if call.stream == true {
                let ttft = try #require(event.timeToFirstTokenMs, "gen_ai.server.time_to_first_token")
                #expect(ttft > 0 && ttft + call.delay! * 1000 * 0.5 <= event.latencyMs)
            } else {
                #expect(event.timeToFirstTokenMs == nil, "openlit's TTFT of a call that did not stream is its whole latency: not kept")
            }
        }
    }
}
