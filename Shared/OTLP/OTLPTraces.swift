import Events

/// An OTLP attribute value. Arrays, key-value lists and bytes are never needed for the mapping and are not kept.
public enum OTLPValue: Sendable, Hashable {
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
}

/// The attributes of a span or resource that the decoder was asked to keep (`OTLPKeep`), in order; a repeated key's
/// last value wins, as in the SDKs.
public struct OTLPAttributes: Sendable, Hashable {
    public private(set) var entries: [(key: String, value: OTLPValue)] = []

    public init(_ entries: [(String, OTLPValue)] = []) {
        for (key, value) in entries { self.set(key, value) }
    }

    public subscript(_ key: String) -> OTLPValue? {
        self.entries.last(where: { $0.key == key })?.value
    }

    public mutating func set(_ key: String, _ value: OTLPValue) {
        self.entries.append((key, value))
    }

    public var isEmpty: Bool { self.entries.isEmpty }

    public static func == (a: OTLPAttributes, b: OTLPAttributes) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in self.entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }
}

/// One span, reduced to what the GenAI mapping reads.
public struct OTLPSpan: Sendable, Hashable {
    public var traceID: [UInt8] = []
    public var spanID: [UInt8] = []
    public var name: String = ""
    /// SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    public var kind: Int32 = 0
    public var startTimeUnixNano: UInt64 = 0
    public var endTimeUnixNano: UInt64 = 0
    public var attributes = OTLPAttributes()
    /// Status code: 0 unset, 1 ok, 2 error.
    public var statusCode: Int32 = 0
    public var statusMessage: String = ""
    /// The instrumentation scope that reported the span (`InstrumentationScope.name`, at most 256 bytes): which
    /// library made it, so two instrumentations of one call can be told apart.
    public var scope: String = ""
    /// Time of the span's first streamed-chunk event (`gen_ai.content.completion.chunk`, as OpenLLMetry records one
    /// per chunk of a stream without a time-to-first-token attribute), if it has any.
    public var firstChunkUnixNano: UInt64?

    public init() {}

    /// Event names that mark a streamed chunk's arrival.
    static let chunkEventNames: [[UInt8]] = [Array("gen_ai.content.completion.chunk".utf8), Array("llm.content.completion.chunk".utf8)]
    static let maxScopeBytes = 256

    mutating func noteEvent(name: some Collection<UInt8>, time: UInt64) {
        guard time > 0, Self.chunkEventNames.contains(where: { $0.elementsEqual(name) }) else { return }
        self.firstChunkUnixNano = min(self.firstChunkUnixNano ?? .max, time)
    }

    /// At most `maxScopeBytes`, cut at a code point (so the name re-encodes to itself).
    static func boundedScope(_ name: String) -> String {
        guard name.utf8.count > maxScopeBytes else { return name }
        var bytes = 0
        var kept = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            bytes += String(scalar).utf8.count
            guard bytes <= maxScopeBytes else { break }
            kept.append(scalar)
        }
        return String(kept)
    }
}

/// The spans of one resource (all its instrumentation scopes together).
public struct OTLPResourceSpans: Sendable, Hashable {
    public var resource = OTLPAttributes()
    public var spans: [OTLPSpan] = []

    public init(resource: OTLPAttributes = OTLPAttributes(), spans: [OTLPSpan] = []) {
        self.resource = resource
        self.spans = spans
    }
}

/// An `ExportTraceServiceRequest` (opentelemetry/proto/collector/trace/v1/trace_service.proto).
public struct OTLPTraceRequest: Sendable, Hashable {
    public var resourceSpans: [OTLPResourceSpans] = []
    /// Elements the decoder worked through (resource spans, scope spans, spans, attributes and events at every level,
    /// kept or not): what the request cost, charged to its tenant (`OTLPLimits.maxElements`).
    public var elements = 0

    public init(resourceSpans: [OTLPResourceSpans] = []) {
        self.resourceSpans = resourceSpans
    }

    public var spanCount: Int { self.resourceSpans.reduce(0) { $0 + $1.spans.count } }

    /// The content: two requests holding the same spans are equal however much decoding each cost.
    public static func == (a: Self, b: Self) -> Bool { a.resourceSpans == b.resourceSpans }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.resourceSpans) }
}

/// Which attribute keys the decoder keeps; everything else (prompts, completions, HTTP details) is skipped unread.
/// Keys are matched by a hash of their bytes and then compared, so a skipped key costs no allocation and a kept one
/// reuses the stored String.
public struct OTLPKeep: Sendable {
    private let table: [UInt64: [(key: String, bytes: [UInt8], resource: Bool)]]

    public init(spanKeys: Set<String>, resourceKeys: Set<String>) {
        var table: [UInt64: [(key: String, bytes: [UInt8], resource: Bool)]] = [:]
        for (keys, resource) in [(spanKeys, false), (resourceKeys, true)] {
            for key in keys {
                let bytes = Array(key.utf8)
                table[bytes.withUnsafeBytes(Self.hash), default: []].append((key, bytes, resource))
            }
        }
        self.table = table
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    func wants(_ key: UnsafeRawBufferPointer, resource: Bool) -> String? {
        guard let candidates = self.table[Self.hash(key)] else { return nil }
        for c in candidates where c.resource == resource && c.bytes.count == key.count {
            if c.bytes.withUnsafeBytes({ $0.elementsEqual(key) }) { return c.key }
        }
        return nil
    }

    func wants(_ key: String, resource: Bool) -> String? {
        var key = key
        return key.withUTF8 { self.wants(UnsafeRawBufferPointer($0), resource: resource) }
    }
}

/// Why a body could not be decoded: where (`resourceSpans[0].scopeSpans[1].spans[2].traceId`) and why.
public struct OTLPDecodingError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case malformed, tooManySpans, tooManyElements }
    public var kind: Kind
    public var path: String
    public var reason: String

    public init(_ kind: Kind = .malformed, path: String, reason: String) {
        self.kind = kind
        self.path = path
        self.reason = reason
    }

    public var description: String { self.path.isEmpty ? self.reason : "\(self.path): \(self.reason)" }
}

/// Decoding bounds for untrusted bodies (the body size itself is bounded before decoding).
public struct OTLPLimits: Sendable {
    /// Spans in one request, across all resources and scopes.
    public var maxSpans: Int
    /// JSON nesting depth (arrays and key-value lists in attribute values are skipped, but only this deep).
    public var maxJSONDepth: Int

    /// Elements in one request (`OTLPTraceRequest.elements`): bounds the work of a small body that holds millions of
    /// empty messages (19 KB of gzip inflating to 10 million empty `resourceSpans` took 6.6 s of CPU).
    public var maxElements: Int

    public init(maxSpans: Int = 10_000, maxJSONDepth: Int = 32, maxElements: Int = 1_000_000) {
        self.maxSpans = maxSpans
        self.maxJSONDepth = maxJSONDepth
        self.maxElements = maxElements
    }

    var tooManyElements: OTLPDecodingError {
        OTLPDecodingError(.tooManyElements, path: "", reason: "more than \(self.maxElements) elements (resource spans, scope spans, spans, attributes, events) in one request")
    }
}

/// Where a decoder is in the document, formatted only when an error names it (formatting `spans[12]` for every
/// element was most of the cost of a body of empty messages).
struct DecodePath {
    enum Part {
        case key(String)
        case item(String, Int)
    }

    var parts: [Part] = []

    mutating func append(_ key: String) { self.parts.append(.key(key)) }
    mutating func append(_ name: String, _ index: Int) { self.parts.append(.item(name, index)) }
    mutating func removeLast() { self.parts.removeLast() }

    var description: String {
        self.parts.map { part in
            switch part {
            case .key(let key): return key
            case .item(let name, let index): return "\(name)[\(index)]"
            }
        }.joined(separator: ".")
    }
}

// MARK: - Protobuf

extension OTLPTraceRequest {
    /// Decodes an `ExportTraceServiceRequest` in the protobuf encoding.
    public init(protobuf body: UnsafeRawBufferPointer, keep: OTLPKeep, limits: OTLPLimits = OTLPLimits()) throws(OTLPDecodingError) {
        var decoder = ProtobufTraceDecoder(keep: keep, limits: limits)
        self = try decoder.request(ProtobufReader(body))
    }
}

private struct ProtobufTraceDecoder {
    let keep: OTLPKeep
    let limits: OTLPLimits
    var spanCount = 0
    var elements = 0
    var path = DecodePath()

    init(keep: OTLPKeep, limits: OTLPLimits) {
        self.keep = keep
        self.limits = limits
    }

    func fail(_ reason: String) -> OTLPDecodingError {
        OTLPDecodingError(path: self.path.description, reason: reason)
    }

    /// Counts one element against `maxElements`.
    mutating func element() throws(OTLPDecodingError) {
        self.elements += 1
        guard self.elements <= self.limits.maxElements else {
            throw self.limits.tooManyElements
        }
    }

    /// Runs `body`, turning wire errors into errors that name the field being read (`component`, item `index`).
    mutating func at<T>(_ component: String, index: Int = -1, _ body: (inout Self) throws(ProtobufReader.Malformed) -> T) throws(OTLPDecodingError) -> T {
        if !component.isEmpty { if index >= 0 { self.path.append(component, index) } else { self.path.append(component) } }
        defer { if !component.isEmpty { self.path.removeLast() } }
        do {
            return try body(&self)
        } catch {
            if error.reason == Self.tooManyElements {
                throw self.limits.tooManyElements
            }
            throw self.fail(error.reason)
        }
    }

    mutating func request(_ reader: ProtobufReader) throws(OTLPDecodingError) -> OTLPTraceRequest {
        var r = reader
        var out = OTLPTraceRequest()
        while let field = try self.at("", { _ throws(ProtobufReader.Malformed) in try r.nextField() }) {
            if field.number == 1 {
                try self.element()
                let index = out.resourceSpans.count
                let sub = try self.at("resourceSpans", index: index) { _ throws(ProtobufReader.Malformed) in
                    try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "resourceSpans")
                    return try r.message()
                }
                self.path.append("resourceSpans", index)
                let item = try self.resourceSpans(sub)
                self.path.removeLast()
                // A resource without spans adds nothing (its attributes describe only its spans): not kept, so a
                // body of millions of empty ones costs no memory beyond its bytes.
                if !item.spans.isEmpty { out.resourceSpans.append(item) }
            } else {
                try self.at("") { _ throws(ProtobufReader.Malformed) in try r.skip(field.wireType) }
            }
        }
        out.elements = self.elements
        return out
    }

    mutating func resourceSpans(_ reader: ProtobufReader) throws(OTLPDecodingError) -> OTLPResourceSpans {
        var r = reader
        var out = OTLPResourceSpans()
        var scopes = 0
        while let field = try self.at("", { _ throws(ProtobufReader.Malformed) in try r.nextField() }) {
            switch field.number {
            case 1:
                out.resource = try self.at("resource") { d throws(ProtobufReader.Malformed) in
                    try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "resource")
                    var res = try r.message()
                    var attributes = OTLPAttributes()
                    while let f = try res.nextField() {
                        if f.number == 1 {
                            try d.countElement()
                            try ProtobufReader.expect(f.wireType, .lengthDelimited, field: "attributes")
                            var kv = try res.message()
                            try d.keyValue(&kv, resource: true, into: &attributes)
                        } else {
                            try res.skip(f.wireType)
                        }
                    }
                    return attributes
                }
            case 2:
                try self.element()
                let sub = try self.at("scopeSpans", index: scopes) { _ throws(ProtobufReader.Malformed) in
                    try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "scopeSpans")
                    return try r.message()
                }
                self.path.append("scopeSpans", scopes)
                try self.scopeSpans(sub, into: &out.spans)
                self.path.removeLast()
                scopes += 1
            default:
                try self.at("") { _ throws(ProtobufReader.Malformed) in try r.skip(field.wireType) }
            }
        }
        return out
    }

    mutating func scopeSpans(_ reader: ProtobufReader, into spans: inout [OTLPSpan]) throws(OTLPDecodingError) {
        var r = reader
        var index = 0
        let first = spans.count
        var scope = ""
        defer { if !scope.isEmpty { for i in first..<spans.count { spans[i].scope = scope } } }
        while let field = try self.at("", { _ throws(ProtobufReader.Malformed) in try r.nextField() }) {
            if field.number == 1 {
                scope = try self.at("scope") { _ throws(ProtobufReader.Malformed) in
                    try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "scope")
                    var message = try r.message()
                    var name = ""
                    while let f = try message.nextField() {
                        if f.number == 1 {
                            try ProtobufReader.expect(f.wireType, .lengthDelimited, field: "scope.name")
                            name = OTLPSpan.boundedScope(try message.string())
                        } else {
                            try message.skip(f.wireType)
                        }
                    }
                    return name
                }
                continue
            }
            guard field.number == 2 else {
                try self.at("") { _ throws(ProtobufReader.Malformed) in try r.skip(field.wireType) }
                continue
            }
            self.spanCount += 1
            guard self.spanCount <= self.limits.maxSpans else {
                throw OTLPDecodingError(.tooManySpans, path: "", reason: "more than \(self.limits.maxSpans) spans in one request")
            }
            try self.element()
            let span = try self.at("spans", index: index) { d throws(ProtobufReader.Malformed) in
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "spans")
                var s = try r.message()
                return try d.span(&s)
            }
            spans.append(span)
            index += 1
        }
    }

    mutating func span(_ r: inout ProtobufReader) throws(ProtobufReader.Malformed) -> OTLPSpan {
        var span = OTLPSpan()
        while let field = try r.nextField() {
            switch field.number {
            case 1:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "traceId")
                span.traceID = try r.bytesField()
            case 2:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "spanId")
                span.spanID = try r.bytesField()
            case 5:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "name")
                span.name = try r.string()
            case 6:
                try ProtobufReader.expect(field.wireType, .varint, field: "kind")
                span.kind = Int32(truncatingIfNeeded: try r.varint())
            case 7:
                try ProtobufReader.expect(field.wireType, .fixed64, field: "startTimeUnixNano")
                span.startTimeUnixNano = try r.fixed64()
            case 8:
                try ProtobufReader.expect(field.wireType, .fixed64, field: "endTimeUnixNano")
                span.endTimeUnixNano = try r.fixed64()
            case 9:
                try self.countElement()
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "attributes")
                var kv = try r.message()
                try self.keyValue(&kv, resource: false, into: &span.attributes)
            case 11:
                try self.countElement()
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "events")
                var event = try r.message()
                var time: UInt64 = 0
                var name: Range<Int>?
                while let f = try event.nextField() {
                    switch f.number {
                    case 1:
                        try ProtobufReader.expect(f.wireType, .fixed64, field: "events.timeUnixNano")
                        time = try event.fixed64()
                    case 2:
                        try ProtobufReader.expect(f.wireType, .lengthDelimited, field: "events.name")
                        name = try event.lengthDelimited()
                    default: try event.skip(f.wireType)
                    }
                }
                if let name { span.noteEvent(name: event.bytes[name], time: time) }
            case 15:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "status")
                var status = try r.message()
                while let f = try status.nextField() {
                    switch f.number {
                    case 2:
                        try ProtobufReader.expect(f.wireType, .lengthDelimited, field: "status.message")
                        span.statusMessage = try status.string()
                    case 3:
                        try ProtobufReader.expect(f.wireType, .varint, field: "status.code")
                        span.statusCode = Int32(truncatingIfNeeded: try status.varint())
                    default: try status.skip(f.wireType)
                    }
                }
            default:
                try r.skip(field.wireType)
            }
        }
        return span
    }

    /// `element()` inside a wire-level reader (the limit reported as a wire error names where it was reached).
    mutating func countElement() throws(ProtobufReader.Malformed) {
        self.elements += 1
        guard self.elements <= self.limits.maxElements else { throw ProtobufReader.Malformed(reason: Self.tooManyElements) }
    }

    static let tooManyElements = "more than the elements allowed in one request (resource spans, scope spans, spans, attributes, events)"

    /// A `KeyValue`; kept only if its key is wanted and its value is a scalar.
    func keyValue(_ r: inout ProtobufReader, resource: Bool, into attributes: inout OTLPAttributes) throws(ProtobufReader.Malformed) {
        var key: String?
        var keySeen = false
        var value: OTLPValue?
        while let field = try r.nextField() {
            switch field.number {
            case 1:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "key")
                let range = try r.lengthDelimited()
                key = self.keep.wants(UnsafeRawBufferPointer(rebasing: r.bytes[range]), resource: resource)
                keySeen = true
            case 2:
                try ProtobufReader.expect(field.wireType, .lengthDelimited, field: "value")
                var any = try r.message()
                // SDKs write the key first: the value of a key nobody reads (a prompt, say) is not even decoded.
                if keySeen && key == nil { continue }
                while let f = try any.nextField() {
                    switch (f.number, f.wireType) {
                    case (1, .lengthDelimited): value = .string(try any.string())
                    case (2, .varint): value = .bool(try any.varint() != 0)
                    case (3, .varint): value = .int(Int64(bitPattern: try any.varint()))
                    case (4, .fixed64): value = .double(Double(bitPattern: try any.fixed64()))
                    case (1...4, _): throw ProtobufReader.Malformed(reason: "attribute value has wire type \(f.wireType.rawValue) for field \(f.number)")
                    default:
                        value = nil
                        try any.skip(f.wireType)
                    }
                }
            default:
                try r.skip(field.wireType)
            }
        }
        if let key, let value { attributes.set(key, value) }
    }
}

// MARK: - JSON

extension OTLPTraceRequest {
    /// Decodes an `ExportTraceServiceRequest` in the OTLP/JSON encoding: lowerCamelCase names, trace and span ids in
    /// hex, enums as integers (their names are accepted too), 64-bit integers as strings or numbers, unknown fields
    /// ignored (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).
    public init(json body: UnsafeRawBufferPointer, keep: OTLPKeep, limits: OTLPLimits = OTLPLimits()) throws(OTLPDecodingError) {
        var decoder = JSONTraceDecoder(scanner: JSONScanner(body, maxDepth: limits.maxJSONDepth), keep: keep, limits: limits)
        self = try decoder.document()
    }
}

private struct JSONTraceDecoder {
    var scanner: JSONScanner
    let keep: OTLPKeep
    let limits: OTLPLimits
    var spanCount = 0
    var elements = 0
    var path = DecodePath()
    var depth = 0

    init(scanner: JSONScanner, keep: OTLPKeep, limits: OTLPLimits) {
        self.scanner = scanner
        self.keep = keep
        self.limits = limits
    }

    func fail(_ reason: String) -> OTLPDecodingError {
        OTLPDecodingError(path: self.path.description, reason: reason)
    }

    mutating func scan<T>(_ body: (inout JSONScanner) throws(JSONScanner.SyntaxError) -> T) throws(OTLPDecodingError) -> T {
        do {
            return try body(&self.scanner)
        } catch {
            throw self.fail("\(error.reason) at byte \(error.offset)")
        }
    }

    mutating func document() throws(OTLPDecodingError) -> OTLPTraceRequest {
        var out = OTLPTraceRequest()
        // The request itself must be an object (a `null` inside it is an absent message; at the top it is no request).
        let startsWithObject = try self.scan { s throws(JSONScanner.SyntaxError) -> Bool in
            s.skipWhitespace()
            return s.peek() == UInt8(ascii: "{")
        }
        guard startsWithObject else { throw self.fail("the body must be a JSON object (an ExportTraceServiceRequest)") }
        try self.object { d, key throws(OTLPDecodingError) in
            guard key == "resourceSpans" else { return false }
            try d.array(key) { d, index throws(OTLPDecodingError) in
                let item = try d.resourceSpans()
                if !item.spans.isEmpty { out.resourceSpans.append(item) }
            }
            return true
        }
        try self.scan { s throws(JSONScanner.SyntaxError) in
            s.skipWhitespace()
            guard s.isAtEnd else { throw s.fail("trailing characters after the document") }
        }
        out.elements = self.elements
        return out
    }

    /// Walks an object; `member` returns false for keys it does not read, which are skipped. `null` is an absent
    /// object (proto3 JSON).
    mutating func object(_ member: (inout Self, String) throws(OTLPDecodingError) -> Bool) throws(OTLPDecodingError) {
        if try self.scan({ s throws(JSONScanner.SyntaxError) in try s.consumeNull() }) { return }
        self.depth += 1
        defer { self.depth -= 1 }
        guard self.depth <= self.limits.maxJSONDepth else { throw self.fail("nesting deeper than \(self.limits.maxJSONDepth) levels") }
        try self.scan { s throws(JSONScanner.SyntaxError) in try s.expect(UInt8(ascii: "{"), "an object") }
        if try self.scan({ s throws(JSONScanner.SyntaxError) in s.consume(UInt8(ascii: "}")) }) { return }
        repeat {
            let key = try self.scan { s throws(JSONScanner.SyntaxError) in
                let k = try s.readString(maxLength: 1024)
                try s.expect(UInt8(ascii: ":"), "':'")
                return k
            }
            if try !member(&self, key) {
                let depth = self.depth
                try self.scan { s throws(JSONScanner.SyntaxError) in try s.skipValue(depth: depth) }
            }
        } while try self.scan({ s throws(JSONScanner.SyntaxError) in s.consume(UInt8(ascii: ",")) })
        try self.scan { s throws(JSONScanner.SyntaxError) in try s.expect(UInt8(ascii: "}"), "',' or '}'") }
    }

    mutating func array(_ name: String, _ element: (inout Self, Int) throws(OTLPDecodingError) -> Void) throws(OTLPDecodingError) {
        if try self.scan({ s throws(JSONScanner.SyntaxError) in try s.consumeNull() }) { return }
        self.depth += 1
        defer { self.depth -= 1 }
        guard self.depth <= self.limits.maxJSONDepth else { throw self.fail("nesting deeper than \(self.limits.maxJSONDepth) levels") }
        try self.scan { s throws(JSONScanner.SyntaxError) in try s.expect(UInt8(ascii: "["), "an array for \(name)") }
        if try self.scan({ s throws(JSONScanner.SyntaxError) in s.consume(UInt8(ascii: "]")) }) { return }
        var index = 0
        repeat {
            // Every item of every array the decoder reads is an element (`OTLPLimits.maxElements`).
            self.elements += 1
            guard self.elements <= self.limits.maxElements else {
                throw self.limits.tooManyElements
            }
            self.path.append(name, index)
            try element(&self, index)
            self.path.removeLast()
            index += 1
        } while try self.scan({ s throws(JSONScanner.SyntaxError) in s.consume(UInt8(ascii: ",")) })
        try self.scan { s throws(JSONScanner.SyntaxError) in try s.expect(UInt8(ascii: "]"), "',' or ']'") }
    }

    mutating func resourceSpans() throws(OTLPDecodingError) -> OTLPResourceSpans {
        var out = OTLPResourceSpans()
        try self.object { d, key throws(OTLPDecodingError) in
            switch key {
            case "resource":
                try d.object { d, key throws(OTLPDecodingError) in
                    guard key == "attributes" else { return false }
                    out.resource = try d.attributes(resource: true)
                    return true
                }
            case "scopeSpans":
                try d.array(key) { d, _ throws(OTLPDecodingError) in
                    let first = out.spans.count
                    var scope = ""
                    try d.object { d, key throws(OTLPDecodingError) in
                        switch key {
                        case "scope":
                            try d.object { d, key throws(OTLPDecodingError) in
                                guard key == "name" else { return false }
                                scope = OTLPSpan.boundedScope(try d.string() ?? "")
                                return true
                            }
                        case "spans":
                            try d.array(key) { d, _ throws(OTLPDecodingError) in
                                d.spanCount += 1
                                guard d.spanCount <= d.limits.maxSpans else {
                                    throw OTLPDecodingError(.tooManySpans, path: "", reason: "more than \(d.limits.maxSpans) spans in one request")
                                }
                                out.spans.append(try d.span())
                            }
                        default: return false
                        }
                        return true
                    }
                    if !scope.isEmpty { for i in first..<out.spans.count { out.spans[i].scope = scope } }
                }
            default: return false
            }
            return true
        }
        return out
    }

    mutating func span() throws(OTLPDecodingError) -> OTLPSpan {
        var span = OTLPSpan()
        try self.object { d, key throws(OTLPDecodingError) in
            d.path.append(key)
            defer { d.path.removeLast() }
            switch key {
            case "traceId": span.traceID = try d.hexID(bytes: 16)
            case "spanId": span.spanID = try d.hexID(bytes: 8)
            case "name": span.name = try d.string() ?? ""
            case "kind": span.kind = try d.enumValue(names: ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"])
            case "startTimeUnixNano": span.startTimeUnixNano = try d.uint64()
            case "endTimeUnixNano": span.endTimeUnixNano = try d.uint64()
            case "attributes": span.attributes = try d.attributes(resource: false)
            case "events":
                try d.array(key) { d, _ throws(OTLPDecodingError) in
                    var time: UInt64 = 0
                    var name: String?
                    try d.object { d, key throws(OTLPDecodingError) in
                        switch key {
                        case "timeUnixNano": time = try d.uint64()
                        case "name": name = try d.string()
                        default: return false
                        }
                        return true
                    }
                    if let name { span.noteEvent(name: name.utf8, time: time) }
                }
            case "status":
                try d.object { d, key throws(OTLPDecodingError) in
                    d.path.append(key)
                    defer { d.path.removeLast() }
                    switch key {
                    case "code": span.statusCode = try d.enumValue(names: ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"])
                    case "message": span.statusMessage = try d.string() ?? ""
                    default: return false
                    }
                    return true
                }
            default: return false
            }
            return true
        }
        return span
    }

    mutating func attributes(resource: Bool) throws(OTLPDecodingError) -> OTLPAttributes {
        var out = OTLPAttributes()
        try self.array("attributes") { d, _ throws(OTLPDecodingError) in
            var key: String?
            var keySeen = false
            var value: OTLPValue?
            try d.object { d, member throws(OTLPDecodingError) in
                switch member {
                case "key":
                    if let k = try d.string() { key = d.keep.wants(k, resource: resource) }
                    keySeen = true
                case "value":
                    // Encoders write the key first: the value of a key nobody reads is skipped, not built.
                    if keySeen && key == nil { return false }
                    d.path.append("value")
                    defer { d.path.removeLast() }
                    try d.object { d, kind throws(OTLPDecodingError) in
                        d.path.append(kind)
                        defer { d.path.removeLast() }
                        switch kind {
                        case "stringValue": value = try d.string().map(OTLPValue.string)
                        case "boolValue": value = try d.bool().map(OTLPValue.bool)
                        case "intValue": value = .int(try d.int64())
                        case "doubleValue": value = .double(try d.double())
                        default: return false
                        }
                        return true
                    }
                default: return false
                }
                return true
            }
            if let key, let value { out.set(key, value) }
        }
        return out
    }

    // MARK: Scalars

    mutating func string() throws(OTLPDecodingError) -> String? {
        try self.scan { s throws(JSONScanner.SyntaxError) in
            if try s.consumeNull() { return nil }
            guard s.peek() == UInt8(ascii: "\"") else { throw s.fail("expected a string") }
            return try s.readString(maxLength: Int.max)
        }
    }

    mutating func bool() throws(OTLPDecodingError) -> Bool? {
        try self.scan { s throws(JSONScanner.SyntaxError) in
            switch s.peek() {
            case UInt8(ascii: "t"): try s.literal("true"); return true
            case UInt8(ascii: "f"): try s.literal("false"); return false
            case UInt8(ascii: "n"): try s.literal("null"); return nil
            default: throw s.fail("expected true or false")
            }
        }
    }

    /// A 64-bit integer: proto3 JSON writes them as decimal strings; numbers are accepted too.
    mutating func int64() throws(OTLPDecodingError) -> Int64 {
        try self.integer("a 64-bit integer", null: nil)
    }

    /// Times: `null` is an absent (zero) time.
    mutating func uint64() throws(OTLPDecodingError) -> UInt64 {
        try self.integer("an unsigned 64-bit integer", null: 0)
    }

    /// An integer written as a decimal string or a number; `null` is `absent`, or refused when that is nil.
    mutating func integer<T: FixedWidthInteger>(_ what: String, null absent: T?) throws(OTLPDecodingError) -> T {
        let text: String
        if try self.scan({ s throws(JSONScanner.SyntaxError) in s.peek() == UInt8(ascii: "\"") }) {
            text = try self.string() ?? ""
        } else if try self.scan({ s throws(JSONScanner.SyntaxError) in try s.consumeNull() }) {
            guard let absent else { throw self.fail("expected \(what), got null") }
            return absent
        } else {
            let number = try self.scan { s throws(JSONScanner.SyntaxError) in try s.readNumber() }
            text = String(self.scanner.text(of: number))
        }
        guard let value = T(text) else { throw self.fail("expected \(what), got '\(text.prefix(40))'") }
        return value
    }

    /// A double: a number, or "NaN", "Infinity", "-Infinity" as proto3 JSON writes them.
    mutating func double() throws(OTLPDecodingError) -> Double {
        if try self.scan({ s throws(JSONScanner.SyntaxError) in s.peek() == UInt8(ascii: "\"") }) {
            switch try self.string() {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            case let other?: guard let v = Double(other) else { throw self.fail("expected a number") }; return v
            case nil: return 0
            }
        }
        let number = try self.scan { s throws(JSONScanner.SyntaxError) in try s.readNumber() }
        guard let value = self.scanner.double(of: number) else { throw self.fail("expected a number") }
        return value
    }

    mutating func enumValue(names: [String]) throws(OTLPDecodingError) -> Int32 {
        if try self.scan({ s throws(JSONScanner.SyntaxError) in s.peek() == UInt8(ascii: "\"") }) {
            let name = try self.string() ?? ""
            guard let index = names.firstIndex(of: name) else { throw self.fail("unknown value '\(name.prefix(40))'") }
            return Int32(index)
        }
        let value = try self.int64()
        guard let v = Int32(exactly: value) else { throw self.fail("enum value out of range") }
        return v
    }

    /// Trace and span ids: hex in OTLP/JSON (not base64, unlike proto3 JSON); empty means absent.
    mutating func hexID(bytes count: Int) throws(OTLPDecodingError) -> [UInt8] {
        guard let text = try self.string(), !text.isEmpty else { return [] }
        let utf8 = Array(text.utf8)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        if utf8.count == 2 * count {
            for i in stride(from: 0, to: utf8.count, by: 2) {
                guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { out = []; break }
                out.append(hi << 4 | lo)
            }
        }
        guard out.count == count else {
            throw self.fail("must be \(2 * count) hex digits (OTLP/JSON encodes ids in hex, not base64)")
        }
        return out
    }
}
