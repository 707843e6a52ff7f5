import Events
import Foundation
import Testing

let now = EventTimestamp(rfc3339: "2026-11-23T12:00:00Z")!

let validJSON = """
    {"event_id":"01JD5Z8J6Y3X9K2M4N7P8Q1R2S","tenant_id":"acme","timestamp":"2026-11-23T11:59:30.250Z",
     "provider":"openai","model":"gpt-4o","operation":"chat","input_tokens":1200,"output_tokens":350,
     "cached_input_tokens":200,"reasoning_tokens":0,"latency_ms":812.5,"time_to_first_token_ms":95,
     "status":"error","error_type":"rate_limit","cost_usd":0.0123,"user_id":"u-1","session_id":"s-1",
     "app":"support-bot","environment":"prod","tags":{"team":"search","region":"eu"}}
    """

func decode(_ text: String, limits: EventLimits = .default) throws(EventValidationError) -> LLMEvent {
    try EventDecoder(limits: limits).decode(Array(text.utf8), now: now)
}

/// The valid event with one field replaced (or removed, with `nil`).
func variant(_ field: String, _ rawJSON: String?) -> String {
    var object = try! JSONSerialization.jsonObject(with: Data(validJSON.utf8)) as! [String: Any]
    object.removeValue(forKey: field)
    var text = String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    if let rawJSON {
        text.removeLast()
        text += ",\"\(field)\":\(rawJSON)}"
    }
    return text
}

func rejection(_ text: String, limits: EventLimits = .default) -> EventValidationError? {
    do {
        _ = try decode(text, limits: limits)
        return nil
    } catch {
        return error
    }
}

@Suite("Event decoding and validation")
struct EventDecoderTests {
    @Test("a complete event decodes to every field")
    func complete() throws {
        let e = try decode(validJSON)
        #expect(e.eventID == "01JD5Z8J6Y3X9K2M4N7P8Q1R2S")
        #expect(e.tenantID == "acme")
        #expect(e.timestamp.rfc3339 == "2026-11-23T11:59:30.250000Z")
        #expect(e.provider == "openai" && e.model == "gpt-4o" && e.operation == "chat")
        #expect(e.inputTokens == 1200 && e.outputTokens == 350 && e.cachedInputTokens == 200 && e.reasoningTokens == 0)
        #expect(e.latencyMs == 812.5 && e.timeToFirstTokenMs == 95)
        #expect(e.status == .error && e.errorType == "rate_limit")
        #expect(e.costNanos == 12_300_000)
        #expect(e.userID == "u-1" && e.sessionID == "s-1" && e.app == "support-bot" && e.environment == "prod")
        #expect(e.tags == ["team": "search", "region": "eu"])
    }

    @Test("the minimal event takes defaults", arguments: [
        #"{"event_id":"a","timestamp":"2026-11-23T11:00:00Z","provider":"anthropic","model":"claude","input_tokens":1,"output_tokens":2,"latency_ms":3,"status":"ok"}"#
    ])
    func minimal(json: String) throws {
        let e = try decode(json)
        #expect(e.operation == "chat")
        #expect(e.tenantID == nil && e.costNanos == nil && e.tags.isEmpty && e.errorType == nil)
    }

    @Test("each required field is named when missing", arguments: [
        "event_id", "timestamp", "provider", "model", "input_tokens", "output_tokens", "latency_ms", "status",
    ])
    func requiredFields(field: String) {
        #expect(rejection(variant(field, nil)) == EventValidationError(field: field, reason: "required"))
        #expect(rejection(variant(field, "null")) == EventValidationError(field: field, reason: "required"))
    }

    @Test("wrong types name the field and the expected type", arguments: [
        ("input_tokens", "\"12\"", "must be an integer, got a string"),
        ("output_tokens", "1.5", "must be an integer, got 1.5"),
        ("output_tokens", "1.25e1", "must be an integer, got 1.25e1"),
        ("latency_ms", "true", "must be a number, got a boolean"),
        ("cost_usd", "[1]", "must be a number, got an array"),
        ("provider", "7", "must be a string, got a number"),
        ("tags", "[]", "must be an object of strings, got an array"),
        ("tags", "{\"a\":1}", "must be a string, got a number"),
        ("status", "\"failed\"", "must be \"ok\" or \"error\", got \"failed\""),
        ("timestamp", "\"yesterday\"", "must be an RFC 3339 date-time such as 2026-01-02T03:04:05.678Z"),
        ("timestamp", "\"2026-02-30T00:00:00Z\"", "must be an RFC 3339 date-time such as 2026-01-02T03:04:05.678Z"),
    ])
    func wrongTypes(field: String, json: String, reason: String) {
        let error = rejection(variant(field, json))
        #expect(error?.field == field || error?.field == "\(field).a")
        #expect(error?.reason == reason)
    }

    @Test("a whole number is an integer however it is written (JSON Schema's integer)", arguments: [("371", 371), ("371.0", 371), ("3.71e2", 371), ("1e3", 1000), ("0.0", 0), ("1000000000.000", 1_000_000_000)])
    func integralForms(json: String, value: Int64) throws {
        #expect(try decode(variant("output_tokens", json)).outputTokens == value)
    }

    @Test("numeric rules", arguments: [
        ("output_tokens", "1e10", "must be <= 1000000000, got 1e10"),
        ("output_tokens", "1e400", "must be <= 1000000000, got 1e400"),
        ("input_tokens", "-1", "must be >= 0, got -1"),
        ("reasoning_tokens", "1000000001", "must be <= 1000000000, got 1000000001"),
        ("output_tokens", "99999999999999999999999", "must be <= 1000000000, got 99999999999999999999999"),
        ("latency_ms", "-0.5", "must be >= 0, got -0.5"),
        ("latency_ms", "1e400", "must be <= 86400000, got 1e400"),
        ("cost_usd", "-0.01", "must be >= 0, got -0.01"),
        ("cost_usd", "100000.000001", "must be <= 100000, got 100000.000001"),
        ("cost_usd", "1e20", "must be <= 100000, got 1e20"),
        ("cost_usd", "1.00000000000000000001", "must have at most 19 significant digits, got 1.00000000000000000001"),
        ("cached_input_tokens", "1201", "must be <= input_tokens (1200), got 1201"),
        ("time_to_first_token_ms", "900", "must be <= latency_ms (812.5), got 900.0"),
    ])
    func numericRules(field: String, json: String, reason: String) {
        #expect(rejection(variant(field, json)) == EventValidationError(field: field, reason: reason))
    }

    @Test("NaN and Infinity are not JSON")
    func nonFiniteLiterals() {
        for literal in ["NaN", "Infinity", "-Infinity"] {
            let error = rejection(variant("latency_ms", literal))
            #expect(error?.field == "latency_ms", "\(literal)")
        }
    }

    @Test("cost is converted to exact nano-dollars from its decimal text", arguments: [
        ("0.1", Int64(100_000_000)), ("0.0123", 12_300_000), ("1", 1_000_000_000), ("2.5e-3", 2_500_000), ("0.0000000004", 0),
        ("0.0000000005", 1), ("1234.567891234", 1_234_567_891_234), ("0", 0), ("1E2", 100_000_000_000), ("1e-30", 0),
        ("0.0000000014999", 1), ("0.00000000150", 2), ("12.30000000000000000000", 12_300_000_000), ("0.00000024", 240),
        ("100000", 100_000_000_000_000),
    ])
    func exactCost(json: String, nanos: Int64) throws {
        let event = try decode(variant("cost_usd", json))
        #expect(event.costNanos == nanos)
        // and written back as the same exact decimal
        #expect(LLMEvent.decimalUSD(nanos: nanos) == (Decimal(string: json)!.isZero ? "0" : LLMEvent.decimalUSD(nanos: event.costNanos!)))
    }

    @Test("string rules")
    func stringRules() {
        #expect(rejection(variant("event_id", "\"\"")) == EventValidationError(field: "event_id", reason: "must not be empty"))
        #expect(rejection(variant("event_id", "\"a b\"")) == EventValidationError(field: "event_id", reason: "may contain only letters, digits and -_.:"))
        #expect(rejection(variant("tenant_id", "\"a:b\"")) == EventValidationError(field: "tenant_id", reason: "may contain only letters, digits and -_."))
        #expect(rejection(variant("model", "\"" + String(repeating: "m", count: 257) + "\"")) == EventValidationError(field: "model", reason: "longer than 256 characters"))
        #expect(rejection(variant("app", "\"a\\u0000b\"")) == EventValidationError(field: "app", reason: "must not contain control characters"))
        #expect(rejection(variant("error_type", "\"x\"").replacingOccurrences(of: "\"status\":\"error\"", with: "\"status\":\"ok\"")) == EventValidationError(field: "error_type", reason: "only allowed when status is \"error\""))
        #expect(try! decode(variant("model", "\"caf\\u00e9 \\ud83d\\ude00\"")).model == "café 😀")
        #expect(rejection(variant("model", "\"\\ud83d\""))?.field == "model")
        // Lengths count characters, as OpenAPI's maxLength does: 64 four-byte characters are a valid operation (256
        // bytes), 65 are not, written raw or escaped.
        let sixtyFour = String(repeating: "😀", count: 64)
        #expect(try! decode(variant("operation", "\"" + sixtyFour + "\"")).operation == sixtyFour)
        #expect(try! decode(variant("operation", "\"" + String(repeating: "\\ud83d\\ude00", count: 64) + "\"")).operation == sixtyFour)
        #expect(rejection(variant("operation", "\"" + sixtyFour + "é\"")) == EventValidationError(field: "operation", reason: "longer than 64 characters"))
    }

    @Test("tags are bounded")
    func tagLimits() {
        let many = "{" + (0..<33).map { "\"k\($0)\":\"v\"" }.joined(separator: ",") + "}"
        #expect(rejection(variant("tags", many)) == EventValidationError(field: "tags", reason: "more than 32 tags"))
        #expect(rejection(variant("tags", "{\"\(String(repeating: "k", count: 65))\":\"v\"}")) == EventValidationError(field: "tags", reason: "tag name longer than 64 characters"))
        #expect(rejection(variant("tags", "{\"k\":\"\(String(repeating: "v", count: 257))\"}")) == EventValidationError(field: "tags.k", reason: "longer than 256 characters"))
        #expect(rejection(variant("tags", "{\"k\":\"a\",\"k\":\"b\"}")) == EventValidationError(field: "tags.k", reason: "duplicate tag"))
    }

    @Test("a decoder that skips tags reads every other field, and still refuses tags that are not JSON")
    func skippedTags() throws {
        let skipping = EventDecoder(skipsTags: true)
        let e = try skipping.decode(Array(validJSON.utf8), now: now)
        var full = try decode(validJSON)
        #expect(e.tags.isEmpty && !full.tags.isEmpty)
        full.tags = [:]
        #expect(e == full)
        // Tags it does not read are not validated, but the document still must be JSON, and bounded.
        #expect((try? skipping.decode(Array(variant("tags", "{\"k\":5}").utf8), now: now)) != nil)
        #expect(throws: EventValidationError.self) { try skipping.decode(Array(variant("tags", "{\"k\":}").utf8), now: now) }
        #expect(throws: EventValidationError.self) { try skipping.decode(Array(variant("tags", String(repeating: "[", count: 200) + String(repeating: "]", count: 200)).utf8), now: now) }
    }

    @Test("timestamps outside the allowed skew are rejected")
    func skew() {
        #expect(rejection(variant("timestamp", "\"2026-11-23T12:05:01Z\"")) == EventValidationError(field: "timestamp", reason: "more than 300 s in the future"))
        #expect(rejection(variant("timestamp", "\"2026-11-16T11:59:59Z\"")) == EventValidationError(field: "timestamp", reason: "older than 604800 s"))
        #expect((try? decode(variant("timestamp", "\"2026-11-23T13:04:00+01:00\""))) != nil, "offsets are honoured")
    }

    @Test("document-level errors")
    func documentErrors() {
        #expect(rejection(variant("model", "\"a\"") .replacingOccurrences(of: "}", with: ",\"model\":\"b\"}")) == EventValidationError(field: "model", reason: "duplicate field"))
        #expect(rejection("[1,2]")?.field == "body")
        #expect(rejection(validJSON + " {}") == EventValidationError(field: "body", reason: "unexpected data after the event object"))
        #expect(rejection(String(validJSON.dropLast(5)))?.field != nil)
        var deep = String(repeating: "[", count: 20) + String(repeating: "]", count: 20)
        #expect(rejection(variant("extra", deep))?.reason.contains("nesting deeper than 8 levels") == true)
        deep = "{\"a\":{\"b\":1}}"
        #expect((try? decode(variant("extra", deep))) != nil, "unknown fields are ignored")
        var small = EventLimits()
        small.maxEventBytes = 100
        #expect(rejection(validJSON, limits: small) == EventValidationError(field: "body", reason: "event larger than 100 bytes"))
        let invalidUTF8: [UInt8] = Array(variant("app", "\"ab\"").utf8).map { $0 == UInt8(ascii: "b") ? 0xFF : $0 }
        #expect(throws: EventValidationError.self) { try EventDecoder().decode(invalidUTF8, now: now) }
    }

    @Test("encode then decode gives the same event, and Codable agrees with the fast path")
    func roundTrip() throws {
        // Codable validates against the real clock, so this event is from a minute ago.
        var event = try decode(validJSON)
        event.timestamp = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch / 1000 * 1000 - 60_000_000)
        let bytes = event.jsonBytes()
        #expect(try EventDecoder().decode(bytes) == event)
        let viaCodable = try JSONDecoder().decode(LLMEvent.self, from: Data(bytes))
        #expect(viaCodable == event)
        let reencoded = try JSONEncoder().encode(event)
        #expect(try EventDecoder().decode(Array(reencoded)) == event)
        var weird = event
        weird.model = "quote\" backslash\\ slash/ é"
        weird.tags = [:]
        #expect(try EventDecoder().decode(weird.jsonBytes()).model == weird.model)
    }

    @Test("cost in dollars is the exact decimal of the nano-dollars, shortest form, at every magnitude")
    func decimalDollars() {
        var rng = SystemRandomNumberGenerator()
        let fixed: [Int64] = [0, 1, 5, 10, 999_999_999, 1_000_000_000, 1_500_000_000, 240_000_000, 123_456_789_012, .max]
        for nanos in fixed + (0..<500).map({ _ in Int64.random(in: 0 ... .max, using: &rng) >> Int64.random(in: 0...60, using: &rng) }) {
            let expected = (Decimal(nanos) / Decimal(1_000_000_000)).description
            #expect(LLMEvent.decimalUSD(nanos: nanos) == expected, "\(nanos)")
        }
    }

    @Test("RFC 3339 parsing and formatting", arguments: [
        ("1970-01-01T00:00:00Z", Int64(0)), ("2026-11-23T06:37:02.123456789Z", 1_795_415_822_123_456),
        ("2024-02-29T23:59:59.5-01:30", 1_709_256_599_500_000), ("2016-12-31T23:59:60Z", 1_483_228_799_999_999),
    ])
    func timestamps(text: String, micros: Int64) throws {
        let t = try #require(EventTimestamp(rfc3339: text))
        #expect(t.microsecondsSinceEpoch == micros)
        #expect(EventTimestamp(rfc3339: t.rfc3339) == t)
    }
}
