/// One model call, schema v1 (DESIGN.md, "The event"). Field names on the wire follow the OpenTelemetry GenAI
/// conventions; see `CodingKeys`.
///
/// Values of this type are valid: the decoders build one only after every rule of `EventLimits` held.
public struct LLMEvent: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable, Codable {
        case ok
        case error
    }

    /// Client-made unique id (UUID or ULID); the idempotency key.
    public var eventID: String
    /// Set by the gateway from the API key; required on events produced to Kafka directly.
    public var tenantID: String?
    /// When the call started; event time for all windows.
    public var timestamp: EventTimestamp
    /// `gen_ai.provider.name` (openai, anthropic, aws.bedrock, ...).
    public var provider: String
    /// The requested model.
    public var model: String
    /// `gen_ai.operation.name`; `chat` when absent.
    public var operation: String
    public var inputTokens: Int64
    public var outputTokens: Int64
    public var cachedInputTokens: Int64?
    public var reasoningTokens: Int64?
    public var latencyMs: Double
    public var timeToFirstTokenMs: Double?
    public var status: Status
    /// Only with `status == .error`: rate_limit, timeout, server_error, invalid_request, ...
    public var errorType: String?
    /// `cost_usd` in integer nano-dollars, so sums are exact; nil when the client sent none.
    public var costNanos: Int64?
    public var userID: String?
    public var sessionID: String?
    public var app: String?
    public var environment: String?
    public var tags: [String: String]
    /// The W3C trace and span of the call (32 and 16 lowercase hex digits), set from OTLP spans or by the client:
    /// an anomaly's evidence links to the trace in the tenant's tracing tool.
    public var traceID: String?
    public var spanID: String?

    public init(
        eventID: String, tenantID: String? = nil, timestamp: EventTimestamp, provider: String, model: String,
        operation: String = "chat", inputTokens: Int64, outputTokens: Int64, cachedInputTokens: Int64? = nil,
        reasoningTokens: Int64? = nil, latencyMs: Double, timeToFirstTokenMs: Double? = nil, status: Status,
        errorType: String? = nil, costNanos: Int64? = nil, userID: String? = nil, sessionID: String? = nil,
        app: String? = nil, environment: String? = nil, tags: [String: String] = [:], traceID: String? = nil, spanID: String? = nil
    ) {
        self.eventID = eventID
        self.tenantID = tenantID
        self.timestamp = timestamp
        self.provider = provider
        self.model = model
        self.operation = operation
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cachedInputTokens = cachedInputTokens
        self.reasoningTokens = reasoningTokens
        self.latencyMs = latencyMs
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.status = status
        self.errorType = errorType
        self.costNanos = costNanos
        self.userID = userID
        self.sessionID = sessionID
        self.app = app
        self.environment = environment
        self.tags = tags
        self.traceID = traceID
        self.spanID = spanID
    }

    /// The wire names, in the order the encoder writes them.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case eventID = "event_id"
        case tenantID = "tenant_id"
        case timestamp
        case provider
        case model
        case operation
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case cachedInputTokens = "cached_input_tokens"
        case reasoningTokens = "reasoning_tokens"
        case latencyMs = "latency_ms"
        case timeToFirstTokenMs = "time_to_first_token_ms"
        case status
        case errorType = "error_type"
        case costUSD = "cost_usd"
        case userID = "user_id"
        case sessionID = "session_id"
        case app
        case environment
        case tags
        case traceID = "trace_id"
        case spanID = "span_id"
    }
}

/// Why an event was rejected: the field (wire name, or `body` for the document as a whole) and the reason.
public struct EventValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(self.field): \(self.reason)" }
}
