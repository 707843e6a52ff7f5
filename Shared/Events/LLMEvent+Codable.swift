import Foundation

/// Codable for Swift clients and tests; the services use `EventDecoder` and `jsonBytes()`, which agree with it.
/// Decoding validates with the default limits, like `EventDecoder`.
extension LLMEvent: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let timestampText = try c.decode(String.self, forKey: .timestamp)
        guard let timestamp = EventTimestamp(rfc3339: timestampText) else {
            throw EventValidationError(field: "timestamp", reason: "must be an RFC 3339 date-time such as 2026-01-02T03:04:05.678Z")
        }
        let statusText = try c.decode(String.self, forKey: .status)
        guard let status = Status(rawValue: statusText) else {
            throw EventValidationError(field: "status", reason: "must be \"ok\" or \"error\", got \"\(statusText)\"")
        }
        var costNanos: Int64?
        if let cost = try c.decodeIfPresent(Decimal.self, forKey: .costUSD) {
            var scaled = cost * Decimal(LLMEvent.nanosPerUSD)
            var rounded = Decimal()
            NSDecimalRound(&rounded, &scaled, 0, .plain)
            guard rounded >= 0, rounded <= Decimal(EventLimits.default.maxCostNanos) else {
                throw EventValidationError(field: "cost_usd", reason: "must be between 0 and \(EventLimits.default.maxCostNanos / LLMEvent.nanosPerUSD)")
            }
            costNanos = NSDecimalNumber(decimal: rounded).int64Value
        }
        self.init(
            eventID: try c.decode(String.self, forKey: .eventID),
            tenantID: try c.decodeIfPresent(String.self, forKey: .tenantID),
            timestamp: timestamp,
            provider: try c.decode(String.self, forKey: .provider),
            model: try c.decode(String.self, forKey: .model),
            operation: try c.decodeIfPresent(String.self, forKey: .operation) ?? "chat",
            inputTokens: try c.decode(Int64.self, forKey: .inputTokens),
            outputTokens: try c.decode(Int64.self, forKey: .outputTokens),
            cachedInputTokens: try c.decodeIfPresent(Int64.self, forKey: .cachedInputTokens),
            reasoningTokens: try c.decodeIfPresent(Int64.self, forKey: .reasoningTokens),
            latencyMs: try c.decode(Double.self, forKey: .latencyMs),
            timeToFirstTokenMs: try c.decodeIfPresent(Double.self, forKey: .timeToFirstTokenMs),
            status: status,
            errorType: try c.decodeIfPresent(String.self, forKey: .errorType),
            costNanos: costNanos,
            userID: try c.decodeIfPresent(String.self, forKey: .userID),
            sessionID: try c.decodeIfPresent(String.self, forKey: .sessionID),
            app: try c.decodeIfPresent(String.self, forKey: .app),
            environment: try c.decodeIfPresent(String.self, forKey: .environment),
            tags: try c.decodeIfPresent([String: String].self, forKey: .tags) ?? [:],
            traceID: try c.decodeIfPresent(String.self, forKey: .traceID),
            spanID: try c.decodeIfPresent(String.self, forKey: .spanID))
        try self.validate()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.eventID, forKey: .eventID)
        try c.encodeIfPresent(self.tenantID, forKey: .tenantID)
        try c.encode(self.timestamp.rfc3339, forKey: .timestamp)
        try c.encode(self.provider, forKey: .provider)
        try c.encode(self.model, forKey: .model)
        try c.encode(self.operation, forKey: .operation)
        try c.encode(self.inputTokens, forKey: .inputTokens)
        try c.encode(self.outputTokens, forKey: .outputTokens)
        try c.encodeIfPresent(self.cachedInputTokens, forKey: .cachedInputTokens)
        try c.encodeIfPresent(self.reasoningTokens, forKey: .reasoningTokens)
        try c.encode(self.latencyMs, forKey: .latencyMs)
        try c.encodeIfPresent(self.timeToFirstTokenMs, forKey: .timeToFirstTokenMs)
        try c.encode(self.status, forKey: .status)
        try c.encodeIfPresent(self.errorType, forKey: .errorType)
        if let cost = self.costNanos {
            try c.encode(Decimal(string: Self.decimalUSD(nanos: cost))!, forKey: .costUSD)
        }
        try c.encodeIfPresent(self.userID, forKey: .userID)
        try c.encodeIfPresent(self.sessionID, forKey: .sessionID)
        try c.encodeIfPresent(self.app, forKey: .app)
        try c.encodeIfPresent(self.environment, forKey: .environment)
        if !self.tags.isEmpty { try c.encode(self.tags, forKey: .tags) }
        try c.encodeIfPresent(self.traceID, forKey: .traceID)
        try c.encodeIfPresent(self.spanID, forKey: .spanID)
    }
}
