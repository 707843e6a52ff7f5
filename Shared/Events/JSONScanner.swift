/// A strict, allocation-light JSON reader over a byte buffer (RFC 8259).
///
/// Foundation's JSONDecoder builds a whole value tree and accepts duplicate keys silently; events arrive at 100k+/s
/// and must be rejected with the field and the reason, so the event decoder walks the bytes itself with this.
/// It never reads past `bytes`, bounds nesting, and rejects invalid UTF-8, control characters in strings, lone
/// surrogates, leading zeros, NaN/Infinity and trailing garbage.
package struct JSONScanner {
    package struct SyntaxError: Error {
        package let offset: Int
        package let reason: String
        package var isTooLong: Bool { self.reason.hasPrefix("string longer") }
    }

    package let bytes: UnsafeRawBufferPointer
    package var index: Int
    package let maxDepth: Int

    package init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 16) {
        self.bytes = bytes
        self.index = 0
        self.maxDepth = maxDepth
    }

    package var isAtEnd: Bool { self.index >= self.bytes.count }

    package func fail(_ reason: String) -> SyntaxError { SyntaxError(offset: self.index, reason: reason) }

    package mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    /// The next non-whitespace byte, without consuming it.
    package mutating func peek() -> UInt8? {
        self.skipWhitespace()
        return self.index < self.bytes.count ? self.bytes[self.index] : nil
    }

    package mutating func expect(_ byte: UInt8, _ what: String) throws(SyntaxError) {
        guard self.peek() == byte else { throw self.fail(self.isAtEnd ? "unexpected end, expected \(what)" : "expected \(what)") }
        self.index += 1
    }

    /// Consumes `byte` if it is next.
    package mutating func consume(_ byte: UInt8) -> Bool {
        if self.peek() == byte {
            self.index += 1
            return true
        }
        return false
    }

    // MARK: - Strings

    /// Reads a string (the cursor at its opening quote). Fails if it has more than `maxLength` UTF-8 bytes.
    package mutating func readString(maxLength: Int) throws(SyntaxError) -> String {
        try self.expect(UInt8(ascii: "\""), "a string")
        let start = self.index
        // Fast path: no escapes.
        while self.index < self.bytes.count {
            let b = self.bytes[self.index]
            if b == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index])
                if slice.count > maxLength { throw SyntaxError(offset: start, reason: "string longer than \(maxLength) bytes") }
                guard let s = utf8String(slice) else {
                    throw SyntaxError(offset: start, reason: "string is not valid UTF-8")
                }
                self.index += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw self.fail("control character in string") }
            self.index += 1
        }
        self.index = start
        return try self.readEscapedString(maxLength: maxLength)
    }

    private mutating func readEscapedString(maxLength: Int) throws(SyntaxError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        while true {
            guard self.index < self.bytes.count else { throw self.fail("unterminated string") }
            let b = self.bytes[self.index]
            self.index += 1
            switch b {
            case UInt8(ascii: "\""):
                guard let s = out.withUnsafeBytes({ utf8String($0) }) else { throw self.fail("string is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                guard self.index < self.bytes.count else { throw self.fail("unterminated escape") }
                let e = self.bytes[self.index]
                self.index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try self.readHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard self.index + 1 < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        else { throw self.fail("lone surrogate in \\u escape") }
                        self.index += 2
                        let low = try self.readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw self.fail("invalid surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw self.fail("lone surrogate in \\u escape")
                    }
                    out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
                default: throw self.fail("invalid escape")
                }
            default:
                if b < 0x20 { throw self.fail("control character in string") }
                out.append(b)
            }
            if out.count > maxLength { throw self.fail("string longer than \(maxLength) bytes") }
        }
    }

    private mutating func readHex4() throws(SyntaxError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = self.bytes[self.index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw self.fail("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            self.index += 1
        }
        return value
    }

    // MARK: - Numbers

    /// A JSON number as written, kept exact: value = mantissa * 10^exponent, with the significant digits counted,
    /// so callers can convert to integers and micro-dollars without binary floating point.
    package struct Number {
        package var negative: Bool
        package var mantissa: UInt64
        /// Significant digits in `mantissa` (leading zeros not counted).
        package var digitCount: Int
        package var exponent: Int
        /// More than 19 significant digits: `mantissa` holds the first 19 only.
        package var truncated: Bool
        package var isIntegerLiteral: Bool
        package var start: Int
        package var end: Int

        package var isZero: Bool { self.mantissa == 0 && !self.truncated }
    }

    /// The text of `number`, for messages and the slow Double path.
    package func text(of number: Number) -> Substring {
        Substring(String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[number.start..<number.end]), as: UTF8.self))
    }

    /// `number` as a Double: exact and fast for up to 15 digits and small exponents (both operands are exactly
    /// representable, so one IEEE operation rounds correctly); otherwise parsed from the text.
    package func double(of number: Number) -> Double? {
        if !number.truncated, number.digitCount <= 15, abs(number.exponent) <= 22 {
            var value = Double(number.mantissa)
            if number.exponent >= 0 { value *= powersOfTen[number.exponent] } else { value /= powersOfTen[-number.exponent] }
            return number.negative ? -value : value
        }
        return Double(self.text(of: number))
    }

    package mutating func readNumber() throws(SyntaxError) -> Number {
        _ = self.peek()
        let start = self.index
        var n = Number(negative: false, mantissa: 0, digitCount: 0, exponent: 0, truncated: false, isIntegerLiteral: true, start: start, end: start)
        func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
        func add(_ digit: UInt8, fraction: Bool, _ n: inout Number) {
            if n.mantissa == 0 && digit == 0 && !n.truncated {
                if fraction { n.exponent -= 1 }
                return
            }
            if n.digitCount < 19 {
                n.mantissa = n.mantissa &* 10 &+ UInt64(digit)
                n.digitCount += 1
                if fraction { n.exponent -= 1 }
            } else {
                // Past 19 digits: a dropped zero loses nothing (an integer digit still scales the value).
                if digit != 0 { n.truncated = true }
                if !fraction { n.exponent += 1 }
            }
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") {
            n.negative = true
            self.index += 1
        }
        guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else { throw self.fail("expected a number") }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
            if self.index < self.bytes.count, isDigit(self.bytes[self.index]) { throw self.fail("leading zero in number") }
        } else {
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) {
                add(self.bytes[self.index] - UInt8(ascii: "0"), fraction: false, &n)
                self.index += 1
            }
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            n.isIntegerLiteral = false
            self.index += 1
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else { throw self.fail("expected digits after decimal point") }
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) {
                add(self.bytes[self.index] - UInt8(ascii: "0"), fraction: true, &n)
                self.index += 1
            }
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E") {
            n.isIntegerLiteral = false
            self.index += 1
            var expNegative = false
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-") {
                expNegative = self.bytes[self.index] == UInt8(ascii: "-")
                self.index += 1
            }
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else { throw self.fail("expected exponent digits") }
            var e = 0
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) {
                e = Swift.min(e * 10 + Int(self.bytes[self.index] - UInt8(ascii: "0")), 100_000)
                self.index += 1
            }
            n.exponent += expNegative ? -e : e
        }
        if self.index - start > 64 { throw SyntaxError(offset: start, reason: "number longer than 64 characters") }
        n.end = self.index
        return n
    }

    /// Reads an object key without making a String when it has no escapes: the byte range of its text.
    package mutating func readKeyRange(maxLength: Int) throws(SyntaxError) -> Range<Int>? {
        try self.expect(UInt8(ascii: "\""), "a string")
        let start = self.index
        while self.index < self.bytes.count {
            let b = self.bytes[self.index]
            if b == UInt8(ascii: "\"") {
                if self.index - start > maxLength { throw SyntaxError(offset: start, reason: "string longer than \(maxLength) bytes") }
                self.index += 1
                return start..<(self.index - 1)
            }
            if b == UInt8(ascii: "\\") || b >= 0x80 { break }
            if b < 0x20 { throw self.fail("control character in string") }
            self.index += 1
        }
        // Escapes or non-ASCII: the caller takes the general path.
        self.index = start - 1
        return nil
    }

    // MARK: - Skipping

    /// Skips one value of any type, checking its syntax; `depth` is the nesting level it sits at.
    package mutating func skipValue(depth: Int) throws(SyntaxError) {
        guard depth <= self.maxDepth else { throw self.fail("nesting deeper than \(self.maxDepth) levels") }
        switch self.peek() {
        case UInt8(ascii: "\""): _ = try self.readString(maxLength: Int.max)
        case UInt8(ascii: "{"):
            self.index += 1
            if self.consume(UInt8(ascii: "}")) { return }
            repeat {
                _ = try self.readString(maxLength: Int.max)
                try self.expect(UInt8(ascii: ":"), "':'")
                try self.skipValue(depth: depth + 1)
            } while self.consume(UInt8(ascii: ","))
            try self.expect(UInt8(ascii: "}"), "',' or '}'")
        case UInt8(ascii: "["):
            self.index += 1
            if self.consume(UInt8(ascii: "]")) { return }
            repeat { try self.skipValue(depth: depth + 1) } while self.consume(UInt8(ascii: ","))
            try self.expect(UInt8(ascii: "]"), "',' or ']'")
        case UInt8(ascii: "t"): try self.literal("true")
        case UInt8(ascii: "f"): try self.literal("false")
        case UInt8(ascii: "n"): try self.literal("null")
        case .none: throw self.fail("unexpected end of input")
        default: _ = try self.readNumber()
        }
    }

    package mutating func literal(_ word: StaticString) throws(SyntaxError) {
        _ = self.peek()
        let count = word.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.fail("invalid literal") }
        let matches = word.withUTF8Buffer { w in
            (0..<count).allSatisfy { self.bytes[self.index + $0] == w[$0] }
        }
        guard matches else { throw self.fail("invalid literal") }
        self.index += count
    }

    /// Reads `null` if it is next.
    package mutating func consumeNull() throws(SyntaxError) -> Bool {
        guard self.peek() == UInt8(ascii: "n") else { return false }
        try self.literal("null")
        return true
    }
}

/// 10^0 ... 10^22, all exactly representable as Doubles.
let powersOfTen: [Double] = (0...22).map { e in (0..<e).reduce(1.0) { r, _ in r * 10 } }

/// `bytes` as a String, nil unless valid UTF-8. ASCII (nearly every key and value) is checked with one pass over the
/// bytes and decoded without a second validation: `String(validating:as:)` runs unspecialized generic code and was
/// a tenth of the aggregator's CPU (`make bench`).
package func utf8String(_ bytes: UnsafeRawBufferPointer) -> String? {
    var ascii: UInt8 = 0
    for b in bytes { ascii |= b }
    if ascii < 0x80 { return String(decoding: bytes, as: UTF8.self) }
    return String(validating: bytes, as: UTF8.self)
}
