extension LLMEvent {
    /// Checks every rule of the v1 schema that the type itself cannot express. The decoders call it; code that
    /// builds events by hand (tests, the OTLP mapping) should too.
    public func validate(limits: EventLimits = .default, now: EventTimestamp = .now()) throws(EventValidationError) {
        try Self.checkIdentifier(self.eventID, field: "event_id", max: limits.maxEventIDLength, extra: ":")
        if let tenantID { try Self.checkIdentifier(tenantID, field: "tenant_id", max: limits.maxTenantIDLength, extra: "") }
        try Self.checkText(self.provider, field: "provider", max: limits.maxNameLength)
        try Self.checkText(self.model, field: "model", max: limits.maxModelLength)
        try Self.checkText(self.operation, field: "operation", max: limits.maxNameLength)
        // Field by field, not a loop over an array literal: this runs for every event in three services, and the
        // literal is a heap allocation each time.
        try Self.checkCount(self.inputTokens, field: "input_tokens", limits: limits)
        try Self.checkCount(self.outputTokens, field: "output_tokens", limits: limits)
        try Self.checkCount(self.cachedInputTokens, field: "cached_input_tokens", limits: limits)
        try Self.checkCount(self.reasoningTokens, field: "reasoning_tokens", limits: limits)
        if let cached = self.cachedInputTokens, cached > self.inputTokens {
            throw EventValidationError(field: "cached_input_tokens", reason: "must be <= input_tokens (\(self.inputTokens)), got \(cached)")
        }
        try Self.checkMilliseconds(self.latencyMs, field: "latency_ms", limits: limits)
        try Self.checkMilliseconds(self.timeToFirstTokenMs, field: "time_to_first_token_ms", limits: limits)
        if let ttft = self.timeToFirstTokenMs, ttft > self.latencyMs {
            throw EventValidationError(field: "time_to_first_token_ms", reason: "must be <= latency_ms (\(self.latencyMs)), got \(ttft)")
        }
        if let errorType {
            guard self.status == .error else { throw EventValidationError(field: "error_type", reason: "only allowed when status is \"error\"") }
            try Self.checkText(errorType, field: "error_type", max: limits.maxErrorTypeLength)
        }
        if let cost = self.costNanos {
            guard cost >= 0 else { throw EventValidationError(field: "cost_usd", reason: "must be >= 0") }
            guard cost <= limits.maxCostNanos else { throw EventValidationError(field: "cost_usd", reason: "must be <= \(limits.maxCostNanos / LLMEvent.nanosPerUSD)") }
        }
        if let userID { try Self.checkText(userID, field: "user_id", max: limits.maxDimensionLength) }
        if let sessionID { try Self.checkText(sessionID, field: "session_id", max: limits.maxDimensionLength) }
        if let app { try Self.checkText(app, field: "app", max: limits.maxDimensionLength) }
        if let environment { try Self.checkText(environment, field: "environment", max: limits.maxDimensionLength) }
        try Self.checkHex(self.traceID, field: "trace_id", digits: 32)
        try Self.checkHex(self.spanID, field: "span_id", digits: 16)
        guard self.tags.count <= limits.maxTags else { throw EventValidationError(field: "tags", reason: "more than \(limits.maxTags) tags") }
        for (key, value) in self.tags {
            guard !key.isEmpty else { throw EventValidationError(field: "tags", reason: "tag name must not be empty") }
            if key.utf8.count > limits.maxTagKeyLength && key.unicodeScalars.count > limits.maxTagKeyLength {
                throw EventValidationError(field: "tags", reason: "tag name longer than \(limits.maxTagKeyLength) characters")
            }
            try Self.checkText(key, field: "tags", max: limits.maxTagKeyLength)
            // The field's name is made only for the error: an interpolation a tag an event is measurable.
            do { try Self.checkText(value, field: "", max: limits.maxTagValueLength, allowEmpty: true) } catch {
                throw EventValidationError(field: "tags.\(key)", reason: error.reason)
            }
        }
        let micros = self.timestamp.microsecondsSinceEpoch
        if micros > now.microsecondsSinceEpoch + limits.maxFutureSkewSeconds * 1_000_000 {
            throw EventValidationError(field: "timestamp", reason: "more than \(limits.maxFutureSkewSeconds) s in the future")
        }
        if micros < now.microsecondsSinceEpoch - limits.maxAgeSeconds * 1_000_000 {
            throw EventValidationError(field: "timestamp", reason: "older than \(limits.maxAgeSeconds) s\(limits.ageLimitName.map { " (\($0)); it would not be counted" } ?? "")")
        }
    }

    /// Ids go into Kafka keys, Redis keys and URLs: letters, digits and `-_.` (plus `extra`) only.
    public static func checkIdentifier(_ value: String, field: String, max: Int, extra: String) throws(EventValidationError) {
        guard !value.isEmpty else { throw EventValidationError(field: field, reason: "must not be empty") }
        guard value.utf8.count <= max else { throw EventValidationError(field: field, reason: "longer than \(max) bytes") }
        for b in value.utf8 {
            let ok = (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == UInt8(ascii: "-")
                || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || extra.utf8.contains(b)
            guard ok else { throw EventValidationError(field: field, reason: "may contain only letters, digits and -_.\(extra)") }
        }
    }

    private static func checkCount(_ value: Int64?, field: String, limits: EventLimits) throws(EventValidationError) {
        guard let value else { return }
        guard value >= 0 else { throw EventValidationError(field: field, reason: "must be >= 0, got \(value)") }
        guard value <= limits.maxTokens else { throw EventValidationError(field: field, reason: "must be <= \(limits.maxTokens), got \(value)") }
    }

    private static func checkMilliseconds(_ value: Double?, field: String, limits: EventLimits) throws(EventValidationError) {
        guard let value else { return }
        guard value.isFinite, value >= 0 else { throw EventValidationError(field: field, reason: "must be a finite number >= 0") }
        guard value <= limits.maxLatencyMs else { throw EventValidationError(field: field, reason: "must be <= \(Int64(limits.maxLatencyMs))") }
    }

    /// All zeros (W3C's "invalid") is accepted and linked to nothing.
    private static func checkHex(_ value: String?, field: String, digits: Int) throws(EventValidationError) {
        guard let value else { return }
        guard value.utf8.count == digits, value.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw EventValidationError(field: field, reason: "must be \(digits) lowercase hex digits (W3C Trace Context)")
        }
    }

    /// Free text: non-empty, bounded, no control characters and no bidirectional formatting characters.
    /// Lengths count characters (Unicode scalars), as the OpenAPI document's `maxLength` does; so the bytes are at
    /// most four times the limit.
    static func checkText(_ value: String, field: String, max: Int, allowEmpty: Bool = false) throws(EventValidationError) {
        guard allowEmpty || !value.isEmpty else { throw EventValidationError(field: field, reason: "must not be empty") }
        guard value.utf8.count <= max || value.unicodeScalars.count <= max else { throw EventValidationError(field: field, reason: "longer than \(max) characters") }
        // ASCII (nearly every name): one pass over the bytes, and no bidirectional character can occur.
        var ascii = true
        for b in value.utf8 {
            if b < 0x20 || b == 0x7F { throw EventValidationError(field: field, reason: "must not contain control characters") }
            if b >= 0x80 { ascii = false }
        }
        if ascii { return }
        for scalar in value.unicodeScalars where scalar.value < 0x20 || scalar.value == 0x7F {
            throw EventValidationError(field: field, reason: "must not contain control characters")
        }
        if Self.containsBidiControl(value) {
            throw EventValidationError(field: field, reason: "must not contain bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069, ...)")
        }
    }

    /// Characters that reorder the text around them (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069): a
    /// name holding one can display as another name in the dashboard or a terminal ("Trojan Source").
    public static func containsBidiControl(_ value: String) -> Bool {
        value.unicodeScalars.contains { s in
            let v = s.value
            return v == 0x061C || v == 0x200E || v == 0x200F || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
        }
    }
}

extension LLMEvent {
    /// Checks a tenant id by the rule events use (letters, digits, `-_.`, at most `maxTenantIDLength` bytes), for
    /// code that takes tenant ids from elsewhere (the admin API).
    public static func validateTenantID(_ id: String, limits: EventLimits = .default) throws(EventValidationError) {
        try checkIdentifier(id, field: "tenant_id", max: limits.maxTenantIDLength, extra: "")
    }
}
