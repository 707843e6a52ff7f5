/// Decodes and validates one v1 event from JSON bytes: the hot path of the gateway and the ingestor.
///
/// Every rule of DESIGN.md and every bound of `EventLimits` is checked; the first violation is thrown as an
/// `EventValidationError` naming the field and the reason. Unknown fields are ignored (forward compatibility) but
/// still parsed strictly and bounded in depth and count; a duplicated field is an error, since which of two values
/// a reader takes is not defined by JSON.
public struct EventDecoder: Sendable {
    public var limits: EventLimits

    public init(limits: EventLimits = .default) {
        self.limits = limits
    }

    /// Decodes `bytes`; `now` bounds the timestamp skew.
    public func decode(_ bytes: [UInt8], now: EventTimestamp = .now()) throws(EventValidationError) -> LLMEvent {
        let result: Result<LLMEvent, EventValidationError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(EventValidationError) -> LLMEvent in try self.decode(buffer, now: now) }
        }
        return try result.get()
    }

    public func decode(_ bytes: UnsafeRawBufferPointer, now: EventTimestamp = .now()) throws(EventValidationError) -> LLMEvent {
        guard bytes.count <= self.limits.maxEventBytes else {
            throw EventValidationError(field: "body", reason: "event larger than \(self.limits.maxEventBytes) bytes")
        }
        var fields = RawFields()
        var scanner = JSONScanner(bytes, maxDepth: self.limits.maxNestingDepth)
        var current = "body"
        do {
            try scanner.expect(UInt8(ascii: "{"), "an object")
            var seen = Set<String>()
            if !scanner.consume(UInt8(ascii: "}")) {
                repeat {
                    current = "body"
                    let key = try scanner.readString(maxLength: 128)
                    current = key
                    guard seen.insert(key).inserted else { throw EventValidationError(field: key, reason: "duplicate field") }
                    guard seen.count <= self.limits.maxFields else {
                        throw EventValidationError(field: "body", reason: "more than \(self.limits.maxFields) fields")
                    }
                    try scanner.expect(UInt8(ascii: ":"), "':'")
                    try self.readField(key, into: &fields, scanner: &scanner)
                } while scanner.consume(UInt8(ascii: ","))
                current = "body"
                try scanner.expect(UInt8(ascii: "}"), "',' or '}'")
            }
            scanner.skipWhitespace()
            guard scanner.isAtEnd else { throw EventValidationError(field: "body", reason: "unexpected data after the event object") }
        } catch let error as EventValidationError {
            throw error
        } catch let error as JSONScanner.SyntaxError {
            throw EventValidationError(field: current, reason: "invalid JSON at byte \(error.offset): \(error.reason)")
        } catch {
            throw EventValidationError(field: current, reason: "\(error)")
        }
        return try fields.build(limits: self.limits, now: now)
    }

    // MARK: - Fields

    private func readField(_ key: String, into f: inout RawFields, scanner: inout JSONScanner) throws -> Void {
        let l = self.limits
        switch key {
        case "event_id": f.eventID = try readString(key, &scanner, max: l.maxEventIDLength)
        case "tenant_id": f.tenantID = try readString(key, &scanner, max: l.maxTenantIDLength)
        case "timestamp": f.timestamp = try readString(key, &scanner, max: 64)
        case "provider": f.provider = try readString(key, &scanner, max: l.maxNameLength)
        case "model": f.model = try readString(key, &scanner, max: l.maxModelLength)
        case "operation": f.operation = try readString(key, &scanner, max: l.maxNameLength)
        case "input_tokens": f.inputTokens = try readCount(key, &scanner)
        case "output_tokens": f.outputTokens = try readCount(key, &scanner)
        case "cached_input_tokens": f.cachedInputTokens = try readCount(key, &scanner)
        case "reasoning_tokens": f.reasoningTokens = try readCount(key, &scanner)
        case "latency_ms": f.latencyMs = try readMilliseconds(key, &scanner)
        case "time_to_first_token_ms": f.timeToFirstTokenMs = try readMilliseconds(key, &scanner)
        case "status": f.status = try readString(key, &scanner, max: 16)
        case "error_type": f.errorType = try readString(key, &scanner, max: l.maxErrorTypeLength)
        case "cost_usd": f.costMicros = try readMicros(key, &scanner)
        case "user_id": f.userID = try readString(key, &scanner, max: l.maxDimensionLength)
        case "session_id": f.sessionID = try readString(key, &scanner, max: l.maxDimensionLength)
        case "app": f.app = try readString(key, &scanner, max: l.maxDimensionLength)
        case "environment": f.environment = try readString(key, &scanner, max: l.maxDimensionLength)
        case "tags": f.tags = try readTags(&scanner)
        default: try scanner.skipValue(depth: 1)
        }
    }

    private func readString(_ field: String, _ s: inout JSONScanner, max: Int) throws -> String? {
        if try s.consumeNull() { return nil }
        guard s.peek() == UInt8(ascii: "\"") else { throw EventValidationError(field: field, reason: "must be a string, got \(kind(s.peek()))") }
        let result = Result { () throws(JSONScanner.SyntaxError) -> String in try s.readString(maxLength: max) }
        switch result {
        case .success(let value): return value
        case .failure(let error) where error.isTooLong: throw EventValidationError(field: field, reason: "longer than \(max) bytes")
        case .failure(let error): throw error
        }
    }

    private func readCount(_ field: String, _ s: inout JSONScanner) throws -> Int64? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be an integer, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        guard n.isIntegerLiteral else { throw EventValidationError(field: field, reason: "must be an integer, got \(n.text)") }
        if n.negative && !n.digits.isEmpty { throw EventValidationError(field: field, reason: "must be >= 0, got \(n.text)") }
        guard n.digits.count <= 18 else { throw EventValidationError(field: field, reason: "must be <= \(self.limits.maxTokens), got \(n.text)") }
        let value = n.digits.reduce(Int64(0)) { $0 * 10 + Int64($1) }
        guard value <= self.limits.maxTokens else { throw EventValidationError(field: field, reason: "must be <= \(self.limits.maxTokens), got \(n.text)") }
        return value
    }

    private func readMilliseconds(_ field: String, _ s: inout JSONScanner) throws -> Double? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be a number, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        if n.negative && !n.digits.isEmpty { throw EventValidationError(field: field, reason: "must be >= 0, got \(n.text)") }
        guard let value = Double(n.text), value.isFinite, value <= self.limits.maxLatencyMs else {
            throw EventValidationError(field: field, reason: "must be <= \(Int64(self.limits.maxLatencyMs)), got \(n.text)")
        }
        return value == 0 ? 0 : value
    }

    /// Converts the decimal text itself to micro-dollars, so "0.1" is exactly 100000 (no binary floating point).
    /// Digits past the sixth decimal are rounded half up.
    private func readMicros(_ field: String, _ s: inout JSONScanner) throws -> Int64? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be a number, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        if n.negative && !n.digits.isEmpty { throw EventValidationError(field: field, reason: "must be >= 0, got \(n.text)") }
        let tooLarge = EventValidationError(field: field, reason: "must be <= \(self.limits.maxCostMicros / 1_000_000), got \(n.text)")
        let shift = n.exponent + 6
        var micros: Int64 = 0
        if shift >= 0 {
            guard n.digits.count + shift <= 18 else { if n.digits.isEmpty { return 0 }; throw tooLarge }
            for d in n.digits { micros = micros * 10 + Int64(d) }
            for _ in 0..<shift { micros *= 10 }
        } else {
            let keep = n.digits.count + shift
            if keep > 18 { throw tooLarge }
            if keep >= 0 {
                for d in n.digits[..<keep] { micros = micros * 10 + Int64(d) }
                if n.digits[keep] >= 5 { micros += 1 }
            }
        }
        guard micros <= self.limits.maxCostMicros else { throw tooLarge }
        return micros
    }

    private func readTags(_ s: inout JSONScanner) throws -> [String: String]? {
        if try s.consumeNull() { return nil }
        guard s.peek() == UInt8(ascii: "{") else { throw EventValidationError(field: "tags", reason: "must be an object of strings, got \(kind(s.peek()))") }
        try s.expect(UInt8(ascii: "{"), "an object")
        var tags: [String: String] = [:]
        if s.consume(UInt8(ascii: "}")) { return tags }
        repeat {
            guard s.peek() == UInt8(ascii: "\"") else { throw EventValidationError(field: "tags", reason: "expected a tag name") }
            let read = Result { () throws(JSONScanner.SyntaxError) -> String in try s.readString(maxLength: self.limits.maxTagKeyLength) }
            let key: String
            switch read {
            case .success(let value): key = value
            case .failure(let error) where error.isTooLong:
                throw EventValidationError(field: "tags", reason: "tag name longer than \(self.limits.maxTagKeyLength) bytes")
            case .failure(let error): throw error
            }
            let field = "tags.\(key)"
            guard !key.isEmpty else { throw EventValidationError(field: "tags", reason: "tag name must not be empty") }
            guard tags[key] == nil else { throw EventValidationError(field: field, reason: "duplicate tag") }
            guard tags.count < self.limits.maxTags else { throw EventValidationError(field: "tags", reason: "more than \(self.limits.maxTags) tags") }
            try s.expect(UInt8(ascii: ":"), "':'")
            guard let value = try self.readString(field, &s, max: self.limits.maxTagValueLength) else {
                throw EventValidationError(field: field, reason: "must be a string, got null")
            }
            tags[key] = value
        } while s.consume(UInt8(ascii: ","))
        try s.expect(UInt8(ascii: "}"), "',' or '}'")
        return tags
    }
}

private func kind(_ byte: UInt8?) -> String {
    switch byte {
    case UInt8(ascii: "\""): return "a string"
    case UInt8(ascii: "{"): return "an object"
    case UInt8(ascii: "["): return "an array"
    case UInt8(ascii: "t"), UInt8(ascii: "f"): return "a boolean"
    case UInt8(ascii: "n"): return "null"
    case .none: return "end of input"
    case .some(let b) where b == UInt8(ascii: "-") || (b >= 48 && b <= 57): return "a number"
    default: return "invalid JSON"
    }
}

private func required<T>(_ value: T?, _ field: String) throws(EventValidationError) -> T {
    guard let value else { throw EventValidationError(field: field, reason: "required") }
    return value
}

/// Field values as read, before the rules that span fields are checked.
struct RawFields {
    var eventID: String?
    var tenantID: String?
    var timestamp: String?
    var provider: String?
    var model: String?
    var operation: String?
    var inputTokens: Int64?
    var outputTokens: Int64?
    var cachedInputTokens: Int64?
    var reasoningTokens: Int64?
    var latencyMs: Double?
    var timeToFirstTokenMs: Double?
    var status: String?
    var errorType: String?
    var costMicros: Int64?
    var userID: String?
    var sessionID: String?
    var app: String?
    var environment: String?
    var tags: [String: String]?

    func build(limits: EventLimits, now: EventTimestamp) throws(EventValidationError) -> LLMEvent {
        let eventID = try required(self.eventID, "event_id")
        let timestampText = try required(self.timestamp, "timestamp")
        let statusText = try required(self.status, "status")
        guard let status = LLMEvent.Status(rawValue: statusText) else {
            throw EventValidationError(field: "status", reason: "must be \"ok\" or \"error\", got \"\(statusText)\"")
        }
        guard let timestamp = EventTimestamp(rfc3339: timestampText) else {
            throw EventValidationError(field: "timestamp", reason: "must be an RFC 3339 date-time such as 2026-01-02T03:04:05.678Z")
        }
        let event = LLMEvent(
            eventID: eventID, tenantID: self.tenantID, timestamp: timestamp,
            provider: try required(self.provider, "provider"), model: try required(self.model, "model"),
            operation: self.operation ?? "chat",
            inputTokens: try required(self.inputTokens, "input_tokens"),
            outputTokens: try required(self.outputTokens, "output_tokens"),
            cachedInputTokens: self.cachedInputTokens, reasoningTokens: self.reasoningTokens,
            latencyMs: try required(self.latencyMs, "latency_ms"), timeToFirstTokenMs: self.timeToFirstTokenMs,
            status: status, errorType: self.errorType, costMicros: self.costMicros, userID: self.userID,
            sessionID: self.sessionID, app: self.app, environment: self.environment, tags: self.tags ?? [:])
        try event.validate(limits: limits, now: now)
        return event
    }
}
