#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decodes and validates one v1 event from JSON bytes: the hot path of the gateway and the ingestor.
///
/// Every rule of DESIGN.md and every bound of `EventLimits` is checked; the first violation is thrown as an
/// `EventValidationError` naming the field and the reason. Unknown fields are ignored (forward compatibility) but
/// still parsed strictly and bounded in depth and count; a duplicated field is an error, since which of two values
/// a reader takes is not defined by JSON.
public struct EventDecoder: Sendable {
    public var limits: EventLimits
    /// True where the tenant comes from elsewhere (the gateway: the API key): a body's `tenant_id`, whatever its
    /// value or type, is skipped unread, as the README promises, instead of rejecting the event. Default: false.
    public var ignoresTenantID: Bool
    /// True where an event's tags are not used (the aggregator: the promoted ones travel in a header): `tags` is
    /// skipped like an unknown field (strict JSON, bounded depth) and the event has none (`[:]`). Default: false.
    public var skipsTags: Bool

    public init(limits: EventLimits = .default, ignoresTenantID: Bool = false, skipsTags: Bool = false) {
        self.limits = limits
        self.ignoresTenantID = ignoresTenantID
        self.skipsTags = skipsTags
    }

    /// Decodes `bytes`; `now` bounds the timestamp skew.
    public func decode(_ bytes: [UInt8], now: EventTimestamp = .now()) throws(EventValidationError) -> LLMEvent {
        let result: Result<LLMEvent, EventValidationError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(EventValidationError) -> LLMEvent in try self.decode(buffer, now: now) }
        }
        return try result.get()
    }

    public func decode(_ bytes: UnsafeRawBufferPointer, now: EventTimestamp = .now()) throws(EventValidationError) -> LLMEvent {
        guard bytes.count <= self.limits.maxEventBytes else { throw self.tooLarge }
        var scanner = JSONScanner(bytes, maxDepth: self.limits.maxNestingDepth)
        let fields = try self.readObject(&scanner)
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw EventValidationError(field: "body", reason: "unexpected data after the event object") }
        return try fields.build(limits: self.limits, now: now)
    }

    var tooLarge: EventValidationError { EventValidationError(field: "body", reason: "event larger than \(self.limits.maxEventBytes) bytes") }

    /// Reads the event object at `scanner.index` (whitespace before it skipped) and leaves the scanner just past
    /// its `}`: `decode` for a whole buffer, `EventBatchReader.decode` for each element of a batch's array in place.
    /// Syntax errors give their offset from `origin`, the event's first byte.
    func readObject(_ scanner: inout JSONScanner, origin: Int = 0) throws(EventValidationError) -> RawFields {
        let bytes = scanner.bytes
        var fields = RawFields()
        var current = "body"
        do {
            try scanner.expect(UInt8(ascii: "{"), "an object")
            var seenKnown: UInt32 = 0
            var seenUnknown = Set<String>()
            var fieldCount = 0
            if !scanner.consume(UInt8(ascii: "}")) {
                repeat {
                    current = "body"
                    let field: Field?
                    var unknownKey: String?
                    if let range = try scanner.readKeyRange(maxLength: 128) {
                        field = Field.match(UnsafeRawBufferPointer(rebasing: bytes[range]))
                        if field == nil { unknownKey = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
                    } else {
                        let key = try scanner.readString(maxLength: 128)
                        field = Field.allCases.first { $0.name == key }
                        if field == nil { unknownKey = key }
                    }
                    current = field?.name ?? unknownKey!
                    if let field {
                        guard seenKnown & field.bit == 0 else { throw EventValidationError(field: field.name, reason: "duplicate field") }
                        seenKnown |= field.bit
                    } else if let unknownKey {
                        guard seenUnknown.insert(unknownKey).inserted else { throw EventValidationError(field: unknownKey, reason: "duplicate field") }
                    }
                    fieldCount += 1
                    guard fieldCount <= self.limits.maxFields else {
                        throw EventValidationError(field: "body", reason: "more than \(self.limits.maxFields) fields")
                    }
                    try scanner.expect(UInt8(ascii: ":"), "':'")
                    if let field, !(field == .tenantID && self.ignoresTenantID), !(field == .tags && self.skipsTags) {
                        try self.readField(field, into: &fields, scanner: &scanner)
                    } else {
                        try scanner.skipValue(depth: 1)
                    }
                } while scanner.consume(UInt8(ascii: ","))
                current = "body"
                try scanner.expect(UInt8(ascii: "}"), "',' or '}'")
            }
        } catch let error as EventValidationError {
            throw error
        } catch let error as JSONScanner.SyntaxError {
            throw EventValidationError(field: current, reason: "invalid JSON at byte \(error.offset - origin): \(error.reason)")
        } catch {
            throw EventValidationError(field: current, reason: "\(error)")
        }
        return fields
    }

    // MARK: - Fields

    private func readField(_ field: Field, into f: inout RawFields, scanner: inout JSONScanner) throws -> Void {
        let l = self.limits
        let key = field.name
        switch field {
        case .eventID: f.eventID = try readString(key, &scanner, max: l.maxEventIDLength)
        case .tenantID: f.tenantID = try readString(key, &scanner, max: l.maxTenantIDLength)
        case .timestamp: f.timestamp = try readString(key, &scanner, max: 64)
        case .provider: f.provider = try readString(key, &scanner, max: l.maxNameLength)
        case .model: f.model = try readString(key, &scanner, max: l.maxModelLength)
        case .operation: f.operation = try readString(key, &scanner, max: l.maxNameLength)
        case .inputTokens: f.inputTokens = try readCount(key, &scanner)
        case .outputTokens: f.outputTokens = try readCount(key, &scanner)
        case .cachedInputTokens: f.cachedInputTokens = try readCount(key, &scanner)
        case .reasoningTokens: f.reasoningTokens = try readCount(key, &scanner)
        case .latencyMs: f.latencyMs = try readMilliseconds(key, &scanner)
        case .timeToFirstTokenMs: f.timeToFirstTokenMs = try readMilliseconds(key, &scanner)
        case .status: f.status = try readString(key, &scanner, max: 16)
        case .errorType: f.errorType = try readString(key, &scanner, max: l.maxErrorTypeLength)
        case .costUSD: f.costNanos = try readNanos(key, &scanner)
        case .userID: f.userID = try readString(key, &scanner, max: l.maxDimensionLength)
        case .sessionID: f.sessionID = try readString(key, &scanner, max: l.maxDimensionLength)
        case .app: f.app = try readString(key, &scanner, max: l.maxDimensionLength)
        case .environment: f.environment = try readString(key, &scanner, max: l.maxDimensionLength)
        case .tags: f.tags = try readTags(&scanner)
        case .traceID: f.traceID = try readString(key, &scanner, max: 32)
        case .spanID: f.spanID = try readString(key, &scanner, max: 16)
        }
    }

    private func readString(_ field: String, _ s: inout JSONScanner, max: Int) throws -> String? {
        if try s.consumeNull() { return nil }
        guard s.peek() == UInt8(ascii: "\"") else { throw EventValidationError(field: field, reason: "must be a string, got \(kind(s.peek()))") }
        // The limit counts characters (checked with the rest of the event); a character is at most 4 bytes.
        let result = Result { () throws(JSONScanner.SyntaxError) -> String in try s.readString(maxLength: max * 4) }
        switch result {
        case .success(let value): return value
        case .failure(let error) where error.isTooLong: throw EventValidationError(field: field, reason: "longer than \(max) characters")
        case .failure(let error): throw error
        }
    }

    private func readCount(_ field: String, _ s: inout JSONScanner) throws -> Int64? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be an integer, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        if n.negative && !n.isZero { throw EventValidationError(field: field, reason: "must be >= 0, got \(s.text(of: n))") }
        // A whole number however it is written (JSON Schema's integer: 371, 371.0, 3.71e2); every step is bounded.
        var mantissa = n.mantissa, exponent = n.exponent
        while exponent < 0, mantissa != 0, mantissa % 10 == 0 {
            mantissa /= 10
            exponent += 1
        }
        if mantissa == 0 { exponent = 0 }
        guard exponent >= 0 else { throw EventValidationError(field: field, reason: "must be an integer, got \(s.text(of: n))") }
        let limit = UInt64(self.limits.maxTokens)
        while exponent > 0, mantissa <= limit {
            mantissa *= 10
            exponent -= 1
        }
        guard !n.truncated, exponent == 0, mantissa <= limit else {
            throw EventValidationError(field: field, reason: "must be <= \(self.limits.maxTokens), got \(s.text(of: n))")
        }
        return Int64(mantissa)
    }

    private func readMilliseconds(_ field: String, _ s: inout JSONScanner) throws -> Double? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be a number, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        if n.negative && !n.isZero { throw EventValidationError(field: field, reason: "must be >= 0, got \(s.text(of: n))") }
        guard let value = s.double(of: n), value.isFinite, value <= self.limits.maxLatencyMs else {
            throw EventValidationError(field: field, reason: "must be <= \(Int64(self.limits.maxLatencyMs)), got \(s.text(of: n))")
        }
        return value == 0 ? 0 : value
    }

    /// Converts the decimal text itself to nano-dollars, so "0.1" is exactly 100000000 (no binary floating point).
    /// Digits past the ninth decimal are rounded half up.
    private func readNanos(_ field: String, _ s: inout JSONScanner) throws -> Int64? {
        if try s.consumeNull() { return nil }
        guard let b = s.peek(), b == UInt8(ascii: "-") || (b >= 48 && b <= 57) else {
            throw EventValidationError(field: field, reason: "must be a number, got \(kind(s.peek()))")
        }
        let n = try s.readNumber()
        let scanner = s
        let text = { scanner.text(of: n) }
        if n.negative && !n.isZero { throw EventValidationError(field: field, reason: "must be >= 0, got \(text())") }
        let maxUSD = self.limits.maxCostNanos / LLMEvent.nanosPerUSD
        func tooLarge() -> EventValidationError { EventValidationError(field: field, reason: "must be <= \(maxUSD), got \(text())") }
        if n.isZero { return 0 }
        guard !n.truncated else { throw EventValidationError(field: field, reason: "must have at most 19 significant digits, got \(text())") }
        let shift = n.exponent + 9
        var nanos: Int64
        if shift >= 0 {
            guard n.digitCount + shift <= 18 else { throw tooLarge() }
            nanos = Int64(n.mantissa) * Int64(pow10(shift))
        } else if -shift > 19 {
            nanos = 0
        } else {
            let divisor = pow10(-shift)
            let (quotient, remainder) = n.mantissa.quotientAndRemainder(dividingBy: divisor)
            guard quotient <= UInt64(Int64.max) else { throw tooLarge() }
            nanos = Int64(quotient) + (remainder >= divisor - remainder ? 1 : 0)
        }
        guard nanos <= self.limits.maxCostNanos else { throw tooLarge() }
        return nanos
    }

    private func readTags(_ s: inout JSONScanner) throws -> [String: String]? {
        if try s.consumeNull() { return nil }
        guard s.peek() == UInt8(ascii: "{") else { throw EventValidationError(field: "tags", reason: "must be an object of strings, got \(kind(s.peek()))") }
        try s.expect(UInt8(ascii: "{"), "an object")
        var tags: [String: String] = [:]
        if s.consume(UInt8(ascii: "}")) { return tags }
        repeat {
            guard s.peek() == UInt8(ascii: "\"") else { throw EventValidationError(field: "tags", reason: "expected a tag name") }
            let read = Result { () throws(JSONScanner.SyntaxError) -> String in try s.readString(maxLength: self.limits.maxTagKeyLength * 4) }
            let key: String
            switch read {
            case .success(let value): key = value
            case .failure(let error) where error.isTooLong:
                throw EventValidationError(field: "tags", reason: "tag name longer than \(self.limits.maxTagKeyLength) characters")
            case .failure(let error): throw error
            }
            guard !key.isEmpty else { throw EventValidationError(field: "tags", reason: "tag name must not be empty") }
            guard tags.count < self.limits.maxTags else { throw EventValidationError(field: "tags", reason: "more than \(self.limits.maxTags) tags") }
            try s.expect(UInt8(ascii: ":"), "':'")
            // The field's name ("tags.<key>") is made only for an error.
            let value: String?
            do { value = try self.readString("", &s, max: self.limits.maxTagValueLength) } catch let error as EventValidationError {
                throw EventValidationError(field: "tags.\(key)", reason: error.reason)
            }
            guard let value else { throw EventValidationError(field: "tags.\(key)", reason: "must be a string, got null") }
            guard tags.updateValue(value, forKey: key) == nil else { throw EventValidationError(field: "tags.\(key)", reason: "duplicate tag") }
        } while s.consume(UInt8(ascii: ","))
        try s.expect(UInt8(ascii: "}"), "',' or '}'")
        return tags
    }
}

private func pow10(_ e: Int) -> UInt64 {
    var v: UInt64 = 1
    for _ in 0..<e { v = v &* 10 }
    return v
}

/// The known fields, matched on raw key bytes so the hot path makes no String per key.
enum Field: Int, CaseIterable {
    case eventID, tenantID, timestamp, provider, model, operation, inputTokens, outputTokens, cachedInputTokens
    case reasoningTokens, latencyMs, timeToFirstTokenMs, status, errorType, costUSD, userID, sessionID, app
    case environment, tags, traceID, spanID

    var bit: UInt32 { 1 << UInt32(self.rawValue) }
    var name: String { Self.names[self.rawValue] }

    static let names = ["event_id", "tenant_id", "timestamp", "provider", "model", "operation", "input_tokens", "output_tokens",
                        "cached_input_tokens", "reasoning_tokens", "latency_ms", "time_to_first_token_ms", "status", "error_type",
                        "cost_usd", "user_id", "session_id", "app", "environment", "tags", "trace_id", "span_id"]
    private static let utf8Names: [[UInt8]] = names.map { Array($0.utf8) }

    static func match(_ key: UnsafeRawBufferPointer) -> Field? {
        for (i, name) in self.utf8Names.enumerated() where name.count == key.count {
            if name.withUnsafeBytes({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) { return Field(rawValue: i) }
        }
        return nil
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
    var costNanos: Int64?
    var userID: String?
    var sessionID: String?
    var app: String?
    var environment: String?
    var tags: [String: String]?
    var traceID: String?
    var spanID: String?

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
            status: status, errorType: self.errorType, costNanos: self.costNanos, userID: self.userID,
            sessionID: self.sessionID, app: self.app, environment: self.environment, tags: self.tags ?? [:],
            traceID: self.traceID, spanID: self.spanID)
        try event.validate(limits: limits, now: now)
        return event
    }
}
