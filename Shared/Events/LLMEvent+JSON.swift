extension LLMEvent {
    /// The event as compact JSON with the wire names; what the ingestor writes to llm.events.v1. Decoding the
    /// result with `EventDecoder` gives back an equal event.
    public func jsonBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(384)
        self.writeJSON(into: &out)
        return out
    }

    public func writeJSON(into out: inout [UInt8]) {
        // Every event passes here in the gateway and the ingestor: names are copied as they are (they need no
        // escape) and numbers written digit by digit, with no string made on the way.
        var first = true
        func key(_ name: StaticString) {
            out.append(first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            first = false
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
        }
        func string(_ name: StaticString, _ value: String?) {
            guard let value else { return }
            key(name)
            writeJSONString(value, into: &out)
        }
        func integer(_ name: StaticString, _ value: Int64?) {
            guard let value else { return }
            key(name)
            out.appendDecimal(value)
        }
        func number(_ name: StaticString, _ value: Double?) {
            guard let value else { return }
            key(name)
            if value == value.rounded() && abs(value) < 1e15 { out.appendDecimal(Int64(value)) } else { out.append(contentsOf: String(value).utf8) }
        }
        string("event_id", self.eventID)
        string("tenant_id", self.tenantID)
        key("timestamp")
        out.append(UInt8(ascii: "\""))
        self.timestamp.write(into: &out)
        out.append(UInt8(ascii: "\""))
        string("provider", self.provider)
        string("model", self.model)
        string("operation", self.operation)
        integer("input_tokens", self.inputTokens)
        integer("output_tokens", self.outputTokens)
        integer("cached_input_tokens", self.cachedInputTokens)
        integer("reasoning_tokens", self.reasoningTokens)
        number("latency_ms", self.latencyMs)
        number("time_to_first_token_ms", self.timeToFirstTokenMs)
        string("status", self.status.rawValue)
        string("error_type", self.errorType)
        if let cost = self.costNanos {
            key("cost_usd")
            Self.writeDecimalUSD(nanos: cost, into: &out)
        }
        string("user_id", self.userID)
        string("session_id", self.sessionID)
        string("app", self.app)
        string("environment", self.environment)
        if !self.tags.isEmpty {
            key("tags")
            var firstTag = true
            for (k, v) in self.tags.sorted(by: { $0.key < $1.key }) {
                out.append(firstTag ? UInt8(ascii: "{") : UInt8(ascii: ","))
                firstTag = false
                writeJSONString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                writeJSONString(v, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        string("trace_id", self.traceID)
        string("span_id", self.spanID)
        out.append(UInt8(ascii: "}"))
    }

    /// Nano-dollars (1e-9 USD) per dollar: the unit every cost is carried and summed in, fine enough that a
    /// 12-token embedding at $0.02 per million tokens (240 nano-dollars) is not rounded away.
    public static let nanosPerUSD: Int64 = 1_000_000_000

    /// Exact decimal text of a nano-dollar amount ("0.00000024"), never through binary floating point.
    public static func decimalUSD(nanos: Int64) -> String {
        var out: [UInt8] = []
        Self.writeDecimalUSD(nanos: nanos, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `decimalUSD` appended to `out`.
    public static func writeDecimalUSD(nanos: Int64, into out: inout [UInt8]) {
        if nanos < 0 { out.append(UInt8(ascii: "-")) }
        // Magnitudes: the most negative value has no positive counterpart.
        let magnitude = nanos.magnitude, per = UInt64(nanosPerUSD)
        out.appendDecimal(magnitude / per)
        var fraction = magnitude % per
        guard fraction != 0 else { return }
        var width = 9
        while fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        out.append(UInt8(ascii: "."))
        out.appendDecimal(fraction, width: width)
    }
}

/// `value` as a JSON string literal (with its quotes).
public func jsonStringLiteral(_ value: String) -> String {
    var out: [UInt8] = []
    writeJSONString(value, into: &out)
    return String(decoding: out, as: UTF8.self)
}

/// Writes `value` as a JSON string literal, escaping what RFC 8259 requires.
public func writeJSONString(_ value: String, into out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    // Most strings need no escape: copied whole (byte-by-byte appends were a tenth of the ingestor's time).
    let copied = value.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
        guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
        out.append(contentsOf: bytes)
        return true
    }
    if copied == true {
        out.append(UInt8(ascii: "\""))
        return
    }
    for b in value.utf8 {
        switch b {
        case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
        default: out.append(b)
        }
    }
    out.append(UInt8(ascii: "\""))
}

extension [UInt8] {
    /// Appends the decimal digits of `value`. Inlinable: other modules' hot loops (the aggregator's statements and
    /// stored sketches) get it specialized to their integer type rather than through the generic witness table.
    @inlinable
    public mutating func appendDecimal<T: BinaryInteger>(_ value: T) {
        if value < 0 {
            self.append(UInt8(ascii: "-"))
            // Magnitude first: the most negative value has no positive counterpart.
            return self.appendDecimal(value.magnitude)
        }
        if value >= 10 { self.appendDecimal(value / 10) }
        self.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10))
    }

    /// Appends the last `width` (at most 18) decimal digits of `value`, zero-padded: timestamp fields, cost
    /// fractions. A negative value writes other bytes but never traps (the digit is added before truncating).
    @inlinable
    public mutating func appendDecimal<T: BinaryInteger>(_ value: T, width: Int) {
        var divisor: T = 1
        for _ in 1..<Swift.min(Swift.max(width, 1), 18) { divisor *= 10 }
        while divisor > 0 {
            self.append(UInt8(truncatingIfNeeded: value / divisor % 10 + 48))
            divisor /= 10
        }
    }
}
