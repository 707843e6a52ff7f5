import Events

/// Turns OpenTelemetry GenAI spans into Tokenwatch events (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
///
/// Reads the current attribute names and the older ones that deployed instrumentations still emit (OpenLLMetry
/// before its rename, the first OpenTelemetry GenAI instrumentations): for each event field the first attribute of
/// its list that is present wins. A span is an LLM call when it has GenAI attributes and its operation is a model
/// call; other spans (HTTP, database, the application's own, agent and tool spans) are skipped, not errors.
public enum GenAISpanMapping {
    public enum Outcome: Sendable, Hashable {
        case event(LLMEvent)
        /// Not an LLM call.
        case skipped
        /// An LLM call that cannot become a valid event: the attribute or field, and why.
        case rejected(String)
    }

    // Attribute names, most current first.
    static let provider = ["gen_ai.provider.name", "gen_ai.system"]
    static let requestModel = ["gen_ai.request.model"]
    static let responseModel = ["gen_ai.response.model"]
    static let operation = ["gen_ai.operation.name", "llm.request.type"]
    static let inputTokens = ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"]
    static let outputTokens = ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"]
    static let totalTokens = ["gen_ai.usage.total_tokens", "llm.usage.total_tokens"]
    static let cachedTokens = ["gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"]
    static let reasoningTokens = ["gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"]
    /// Seconds to the first streamed chunk: the GenAI conventions' name (also the Anthropic SDK's own spans),
    /// openlit's server-side name.
    static let timeToFirstChunk = ["gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token"]
    static let cost = ["gen_ai.usage.cost"]
    /// The provider's id of its answer: the same in every instrumentation's span of one call.
    static let responseID = ["gen_ai.response.id"]
    static let errorType = ["error.type"]
    static let user = ["user.id", "enduser.id", "gen_ai.user", "gen_ai.request.user", "llm.user"]
    /// Whether the call streamed (the Anthropic SDK and openlit; OpenLLMetry): openlit also sets a time to first
    /// token on calls that did not stream (the whole answer's time), which is not kept.
    static let streamFlag = ["gen_ai.request.stream", "gen_ai.is_streaming"]
    static let session = ["gen_ai.conversation.id", "session.id"]
    static let serviceName = ["service.name"]
    static let environment = ["deployment.environment.name", "deployment.environment"]

    /// The attributes the decoder keeps.
    public static let keep: OTLPKeep = {
        let span = [provider, requestModel, responseModel, operation, inputTokens, outputTokens, totalTokens, cachedTokens,
                    reasoningTokens, timeToFirstChunk, cost, responseID, streamFlag, errorType, user, session].flatMap { $0 }
        return OTLPKeep(spanKeys: Set(span), resourceKeys: Set(serviceName + environment))
    }()

    /// Operations that are one model call. Agent and tool operations (invoke_agent, execute_tool, ...) wrap model
    /// calls that have their own spans, so counting them would count tokens twice.
    static let modelCalls: Set<String> = ["chat", "text_completion", "generate_content", "embeddings", "completion", "embedding", "rerank"]
    /// Older `llm.request.type` values and their current operation names.
    static let legacyOperations = ["completion": "text_completion", "embedding": "embeddings"]
    /// Older `gen_ai.system` values and their `gen_ai.provider.name` equivalents.
    static let legacyProviders = [
        "az.ai.inference": "azure.ai.inference", "az.ai.openai": "azure.ai.openai", "azure_openai": "azure.ai.openai",
        "vertex_ai": "gcp.vertex_ai", "vertexai": "gcp.vertex_ai", "gemini": "gcp.gemini", "bedrock": "aws.bedrock",
        "aws": "aws.bedrock", "mistralai": "mistral_ai", "watsonx": "ibm.watsonx.ai", "xai": "x_ai",
    ]

    /// The event id of a span: the same for every export of it, so an exporter's retry is deduplicated.
    public static func eventID(traceID: [UInt8], spanID: [UInt8]) -> String {
        "otlp-" + hex(traceID) + "-" + hex(spanID)
    }

    /// The event id of a call the provider answered: from its response id (`gen_ai.response.id`), which every
    /// instrumentation of the call reports, so two instrumentations of one call (the Anthropic SDK's own span and
    /// OpenLLMetry's, each in a trace of its own) make one event and the ingestor drops the second as a duplicate.
    /// Nil when the id cannot be part of an event id (then the span's ids are used).
    public static func eventID(provider: String, responseID: String) -> String? {
        let id = "otlp-r-" + provider + ":" + responseID
        guard !responseID.isEmpty, id.utf8.count <= EventLimits.default.maxEventIDLength,
              (try? LLMEvent.checkIdentifier(id, field: "event_id", max: EventLimits.default.maxEventIDLength, extra: ":")) != nil
        else { return nil }
        return id
    }

    public static func isResponseEventID(_ id: String) -> Bool { id.hasPrefix("otlp-r-") }

    public static func map(_ span: OTLPSpan, resource: OTLPAttributes, limits: EventLimits = .default, now: EventTimestamp = .now()) -> Outcome {
        let a = span.attributes
        guard a.contains(any: provider + requestModel + responseModel + operation) else { return .skipped }
        let operation = (a.string(operation)?.lowercased()).map { legacyOperations[$0] ?? $0 } ?? "chat"
        guard modelCalls.contains(operation) else { return .skipped }

        guard span.traceID.count == 16, span.traceID.contains(where: { $0 != 0 }) else { return .rejected("traceId: must be 16 bytes, not all zero") }
        guard span.spanID.count == 8, span.spanID.contains(where: { $0 != 0 }) else { return .rejected("spanId: must be 8 bytes, not all zero") }
        guard let providerValue = a.string(provider), !providerValue.isEmpty else { return .rejected("gen_ai.provider.name: missing (and no gen_ai.system)") }
        guard let model = a.string(requestModel) ?? a.string(responseModel), !model.isEmpty else { return .rejected("gen_ai.request.model: missing (and no gen_ai.response.model)") }
        guard span.startTimeUnixNano > 0 else { return .rejected("startTimeUnixNano: missing") }
        guard span.endTimeUnixNano >= span.startTimeUnixNano else { return .rejected("endTimeUnixNano: before startTimeUnixNano") }
        guard span.startTimeUnixNano <= UInt64(Int64.max) else { return .rejected("startTimeUnixNano: out of range") }

        do {
            let input = try a.count(inputTokens)
            var output = try a.count(outputTokens)
            // Both counts are >= 0 here (count() refuses negatives), so the difference cannot overflow.
            if output == nil, let input, let total = try a.count(totalTokens), total >= input { output = total - input }
            var ttftSeconds = a.bool(streamFlag) == false ? nil : try a.number(timeToFirstChunk)
            // OpenLLMetry reports time to first token only as a metric, but records an event per streamed chunk.
            if ttftSeconds == nil, let first = span.firstChunkUnixNano, first >= span.startTimeUnixNano, first <= span.endTimeUnixNano {
                ttftSeconds = Double(first - span.startTimeUnixNano) / 1e9
            }
            let costUSD = try a.number(cost)
            var costNanos: Int64?
            if let costUSD {
                guard costUSD.isFinite, costUSD >= 0, costUSD <= Double(limits.maxCostNanos / LLMEvent.nanosPerUSD) else {
                    return .rejected("gen_ai.usage.cost: must be a finite number of USD between 0 and \(limits.maxCostNanos / LLMEvent.nanosPerUSD)")
                }
                costNanos = Int64((costUSD * Double(LLMEvent.nanosPerUSD)).rounded())
            }
            let errorTypeValue = a.string(errorType)
            let failed = span.statusCode == 2 || errorTypeValue != nil
            let providerName = legacyProviders[providerValue.lowercased()] ?? providerValue.lowercased()
            var event = LLMEvent(
                eventID: a.string(responseID).flatMap { eventID(provider: providerName, responseID: $0) } ?? eventID(traceID: span.traceID, spanID: span.spanID),
                timestamp: EventTimestamp(microsecondsSinceEpoch: Int64(span.startTimeUnixNano / 1000)),
                provider: providerName,
                model: model,
                operation: operation,
                // A call without usage (failed, or a stream whose instrumentation could not count) is recorded with
                // zero tokens: its request, latency and status still count.
                inputTokens: input ?? 0,
                outputTokens: output ?? 0,
                cachedInputTokens: try a.count(cachedTokens),
                reasoningTokens: try a.count(reasoningTokens),
                latencyMs: Double(span.endTimeUnixNano - span.startTimeUnixNano) / 1e6,
                timeToFirstTokenMs: ttftSeconds.map { $0 * 1000 },
                status: failed ? .error : .ok,
                errorType: failed ? classifyError(errorTypeValue ?? span.statusMessage) : nil,
                costNanos: costNanos,
                userID: a.string(user),
                sessionID: a.string(session),
                app: resource.string(serviceName),
                environment: resource.string(environment))
            if let served = a.string(responseModel), served != model { event.tags["response_model"] = served }
            // The span itself, for an anomaly's evidence to link to (traceID is checked above).
            event.traceID = hex(span.traceID)
            event.spanID = span.spanID.count == 8 && span.spanID.contains(where: { $0 != 0 }) ? hex(span.spanID) : nil
            try event.validate(limits: limits, now: now)
            return .event(event)
        } catch let error as MappingError {
            return .rejected("\(error.attribute): \(error.reason)")
        } catch let error as EventValidationError {
            return .rejected(Self.wireName(error.field) + ": " + error.reason)
        } catch {
            return .rejected("\(error)")
        }
    }

    /// Event fields in a rejection are named by the span attribute they came from, which is what the user controls.
    static func wireName(_ field: String) -> String {
        switch field {
        case "provider": "gen_ai.provider.name"
        case "model": "gen_ai.request.model"
        case "operation": "gen_ai.operation.name"
        case "input_tokens": "gen_ai.usage.input_tokens"
        case "output_tokens": "gen_ai.usage.output_tokens"
        case "cached_input_tokens": "gen_ai.usage.cache_read.input_tokens"
        case "reasoning_tokens": "gen_ai.usage.reasoning_tokens"
        case "latency_ms": "span duration"
        case "time_to_first_token_ms": "gen_ai.response.time_to_first_chunk"
        case "timestamp": "startTimeUnixNano"
        case "error_type": "error.type"
        case "user_id": "user.id"
        case "session_id": "gen_ai.conversation.id"
        case "app": "service.name"
        case "environment": "deployment.environment.name"
        case "tags": "gen_ai.response.model"
        default: field
        }
    }

    /// `error.type` is an exception class (`RateLimitError`, `<class 'openai.RateLimitError'>`), an HTTP status
    /// (`429`) or a provider code; without one, the span's status message (`Error code: 429 - ...`). Mapped onto
    /// the event's error types, so errors from every SDK line up; anything else is kept, normalized.
    public static func classifyError(_ raw: String) -> String {
        let lower = raw.lowercased()
        let compact = String(lower.unicodeScalars.filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") }.map(Character.init))
        func has(_ words: String...) -> Bool { words.contains { compact.contains($0) } }
        let status = lower.split(whereSeparator: { !$0.isNumber }).first { $0.count == 3 }.map(String.init)
        if has("ratelimit", "toomanyrequests", "quota", "throttl") || status == "429" { return "rate_limit" }
        if has("timeout", "timedout", "deadline") || status == "408" || status == "504" { return "timeout" }
        if has("authentication", "unauthorized", "permissiondenied", "forbidden") || status == "401" || status == "403" { return "auth_error" }
        if has("contentfilter", "contentpolicy", "safety") { return "content_filter" }
        if has("internalserver", "serviceunavailable", "badgateway", "overloaded", "servererror") || (status.map { $0.hasPrefix("5") } ?? false) {
            return "server_error"
        }
        if has("badrequest", "invalidrequest", "unprocessable", "notfound", "conflict", "validation") || (status.map { $0.hasPrefix("4") } ?? false) {
            return "invalid_request"
        }
        if has("connection", "apiconnection") { return "connection_error" }
        var name = String(lower.unicodeScalars.filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "." }.map(Character.init).prefix(64))
        if name.isEmpty || name == "_other" { name = "other" }
        return name
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

struct MappingError: Error {
    let attribute: String
    let reason: String
}

extension OTLPAttributes {
    func contains(any keys: [String]) -> Bool {
        self.entries.contains { keys.contains($0.key) }
    }

    func first(_ keys: [String]) -> (String, OTLPValue)? {
        for key in keys { if let v = self[key] { return (key, v) } }
        return nil
    }

    func string(_ keys: [String]) -> String? {
        guard let (_, value) = self.first(keys) else { return nil }
        switch value {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bool(let b): return String(b)
        case .double(let d): return String(d)
        }
    }

    /// A flag: a boolean, or the strings "true"/"false" (nil when absent or anything else).
    func bool(_ keys: [String]) -> Bool? {
        guard let (_, value) = self.first(keys) else { return nil }
        switch value {
        case .bool(let b): return b
        case .string(let s): return s.lowercased() == "true" ? true : s.lowercased() == "false" ? false : nil
        default: return nil
        }
    }

    /// A token count: an integer, an integral double, or a decimal string (some SDKs send each); never negative, so
    /// arithmetic on counts (output = total - input) cannot overflow.
    func count(_ keys: [String]) throws(MappingError) -> Int64? {
        guard let (key, value) = self.first(keys) else { return nil }
        let i: Int64
        switch value {
        case .int(let v): i = v
        case .double(let d):
            guard d.isFinite, d.rounded() == d, let v = Int64(exactly: d) else { throw MappingError(attribute: key, reason: "must be a whole number, got \(d)") }
            i = v
        case .string(let s):
            guard let v = Int64(s) else { throw MappingError(attribute: key, reason: "must be a whole number, got '\(s.prefix(40))'") }
            i = v
        case .bool: throw MappingError(attribute: key, reason: "must be a whole number, got a boolean")
        }
        guard i >= 0 else { throw MappingError(attribute: key, reason: "must be >= 0, got \(i)") }
        return i
    }

    func number(_ keys: [String]) throws(MappingError) -> Double? {
        guard let (key, value) = self.first(keys) else { return nil }
        switch value {
        case .int(let i): return Double(i)
        case .double(let d):
            guard d.isFinite else { throw MappingError(attribute: key, reason: "must be a finite number") }
            return d
        case .string(let s):
            guard let d = Double(s), d.isFinite else { throw MappingError(attribute: key, reason: "must be a number, got '\(s.prefix(40))'") }
            return d
        case .bool: throw MappingError(attribute: key, reason: "must be a number, got a boolean")
        }
    }
}
