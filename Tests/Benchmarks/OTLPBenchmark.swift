import Events
import Foundation
import OTLP

/// The same model calls as OTLP spans (what OpenLLMetry exports: GenAI attributes plus the prompt and completion
/// as attributes, which the decoder skips) and as Tokenwatch events.
func sampleCalls(_ count: Int, now: EventTimestamp) -> (spans: OTLPTraceRequest, events: [LLMEvent]) {
    let models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"), ("aws.bedrock", "anthropic.claude-3-haiku")]
    var rng = SystemRandomNumberGenerator()
    var spans: [OTLPSpan] = []
    var events: [LLMEvent] = []
    let prompt = "[{\"role\": \"user\", \"parts\": [{\"content\": \"" + String(repeating: "Summarize the ticket. ", count: 12) + "\", \"type\": \"text\"}]}]"
    for i in 0..<count {
        let (provider, model) = models[i % models.count]
        let input = Int64.random(in: 10...8000, using: &rng), output = Int64.random(in: 1...2000, using: &rng)
        let startMicros = now.microsecondsSinceEpoch - Int64(i % 300) * 1_000_000
        let latencyMicros = Int64.random(in: 50_000...9_000_000, using: &rng)
        var span = OTLPSpan()
        span.traceID = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        span.spanID = (0..<8).map { _ in UInt8.random(in: 1...255, using: &rng) }
        span.name = "openai.chat"
        span.kind = 3
        span.startTimeUnixNano = UInt64(startMicros) * 1000
        span.endTimeUnixNano = UInt64(startMicros + latencyMicros) * 1000
        span.attributes = OTLPAttributes([
            ("gen_ai.operation.name", .string("chat")), ("gen_ai.provider.name", .string(provider)), ("gen_ai.request.model", .string(model)),
            ("gen_ai.is_streaming", .bool(false)), ("gen_ai.input.messages", .string(prompt)), ("gen_ai.response.model", .string(model)),
            ("gen_ai.response.id", .string("chatcmpl-\(i)")), ("gen_ai.usage.input_tokens", .int(input)), ("gen_ai.usage.output_tokens", .int(output)),
            ("gen_ai.usage.total_tokens", .int(input + output)), ("gen_ai.output.messages", .string("[{\"role\": \"assistant\", \"parts\": [{\"content\": \"Done.\"}]}]")),
        ])
        spans.append(span)
        let event = LLMEvent(
            eventID: GenAISpanMapping.eventID(traceID: span.traceID, spanID: span.spanID), timestamp: EventTimestamp(microsecondsSinceEpoch: startMicros),
            provider: provider, model: model, inputTokens: input, outputTokens: output, latencyMs: Double(latencyMicros) / 1000, status: .ok,
            app: "support-bot", environment: "prod")
        events.append(event)
    }
    let resource = OTLPAttributes([("service.name", .string("support-bot")), ("deployment.environment.name", .string("prod")), ("telemetry.sdk.language", .string("python"))])
    return (OTLPTraceRequest(resourceSpans: [OTLPResourceSpans(resource: resource, spans: spans)]), events)
}

/// `tokenwatch-bench otlp [DIR]`: decode + map spans/s on one core (protobuf and JSON) against decode + validate
/// of the same calls as event JSON; with DIR, writes traces512.pb and events512.json (the same 512 calls) for the
/// HTTP benchmark in deploy/bench/pipeline.sh.
func otlpBenchmark(directory: String?) throws {
    let now = EventTimestamp.now()
    let batches = 200
    let calls = (0..<batches).map { _ in sampleCalls(512, now: now) }
    let pbBodies = calls.map { $0.spans.protobuf() }
    let jsonBodies = calls.map { $0.spans.json() }
    let eventBodies = calls.map { $0.events.map { $0.jsonBytes() } }
    let decoder = EventDecoder()
    var checksum: Int64 = 0

    func best(_ pass: () throws -> Void) rethrows -> Double {
        try pass()
        var seconds = Double.infinity
        for _ in 0..<3 {
            let start = ContinuousClock.now
            try pass()
            seconds = min(seconds, (ContinuousClock.now - start).seconds)
        }
        return seconds
    }
    func mapAll(_ request: OTLPTraceRequest) {
        for rs in request.resourceSpans {
            for span in rs.spans {
                if case .event(let e) = GenAISpanMapping.map(span, resource: rs.resource, now: now) { checksum &+= e.inputTokens }
            }
        }
    }
    let spans = Double(batches * 512)
    let pb = try best { for body in pbBodies { mapAll(try body.withUnsafeBytes { try OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep) }) } }
    let js = try best { for body in jsonBodies { mapAll(try body.withUnsafeBytes { try OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep) }) } }
    let ev = try best { for batch in eventBodies { for event in batch { checksum &+= try decoder.decode(event, now: now).inputTokens } } }
    let pbBytes = Double(pbBodies.reduce(0) { $0 + $1.count }) / spans, jsonBytes = Double(jsonBodies.reduce(0) { $0 + $1.count }) / spans
    print("OTLP decode + map, protobuf: \(Int(spans / pb)) spans/s on one core (\(Int(pbBytes)) bytes/span, \(String(format: "%.0f", pbBytes * spans / pb / 1e6)) MB/s)")
    print("OTLP decode + map, JSON: \(Int(spans / js)) spans/s on one core (\(Int(jsonBytes)) bytes/span)")
    print("event decode + validate, same calls: \(Int(spans / ev)) events/s on one core")
    print("ratio OTLP protobuf spans/s / events/s: \(String(format: "%.2f", ev / pb)); JSON: \(String(format: "%.2f", ev / js))  (checksum \(checksum))")
    if let directory {
        let one = calls[0]
        try Data(one.spans.protobuf()).write(to: URL(fileURLWithPath: directory + "/traces512.pb"))
        let array = "[" + one.events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]"
        try Data(array.utf8).write(to: URL(fileURLWithPath: directory + "/events512.json"))
    }
}
