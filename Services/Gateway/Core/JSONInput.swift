import Events
import Foundation
import Hummingbird

/// A small JSON request body (the admin API's), read strictly: an object, only the expected members, each of the
/// expected type and within its bounds; anything else is a 400 naming the member and the reason.
struct JSONInput {
    /// Largest admin request body.
    static let maxBytes = 64 * 1024

    enum Value: Decodable, Equatable {
        case null
        case bool(Bool)
        case integer(Int64)
        case number(Double)
        case string(String)
        case array([Value])
        case object([String: Value])

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null }
            else if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let i = try? c.decode(Int64.self) { self = .integer(i) }
            else if let d = try? c.decode(Double.self) { self = .number(d) }
            else if let s = try? c.decode(String.self) { self = .string(s) }
            else if let a = try? c.decode([Value].self) { self = .array(a) }
            else { self = .object(try c.decode([String: Value].self)) }
        }
    }

    let members: [String: Value]

    init(members: [String: Value]) { self.members = members }

    /// Reads `request`'s body: a JSON object. An empty body is an empty object only where the route's body is
    /// optional (`optionalBody`); elsewhere it is refused, so a request that lost its body changes nothing.
    static func read(_ request: Request, allowed: Set<String>, optionalBody: Bool = false) async throws -> JSONInput {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxBytes)
        } catch {
            throw Problem(.contentTooLarge, code: "payload_too_large", title: "Request body too large", detail: "the body is larger than \(Self.maxBytes) bytes")
        }
        guard buffer.readableBytes > 0 else {
            guard optionalBody else { throw Problem(.badRequest, code: "invalid_body", title: "Invalid body", detail: "a JSON object body is required") }
            return JSONInput(members: [:])
        }
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type", title: "Unsupported Content-Type", detail: "send application/json")
        }
        guard case .object(let members)? = try? JSONDecoder().decode(Value.self, from: Data(buffer.readableBytesView)) else {
            throw Problem(.badRequest, code: "invalid_body", title: "Invalid body", detail: "the body must be a JSON object")
        }
        if let unknown = members.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw invalid(String(unknown.prefix(64)), "unknown member; expected one of \(allowed.sorted().joined(separator: ", "))")
        }
        return JSONInput(members: members)
    }

    static func invalid(_ member: String, _ reason: String) -> Problem {
        Problem(.badRequest, code: "invalid_body", title: "Invalid body", detail: "\(member): \(reason)")
    }

    /// A string of 1...maxLength printable characters (code points), or nil when absent.
    func string(_ name: String, maxLength: Int = 200) throws -> String? {
        switch self.members[name] {
        case nil: return nil
        case .string(let s)?:
            // Characters (Unicode code points), as JSON Schema's maxLength counts them in the OpenAPI document.
            guard !s.isEmpty, s.unicodeScalars.count <= maxLength else { throw Self.invalid(name, "must be 1 to \(maxLength) characters") }
            guard !s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { throw Self.invalid(name, "must not contain control characters") }
            guard !LLMEvent.containsBidiControl(s) else { throw Self.invalid(name, "must not contain bidirectional formatting characters") }
            return s
        default: throw Self.invalid(name, "must be a string")
        }
    }

    func has(_ name: String) -> Bool { self.members[name] != nil }

    /// C0 and C1 controls and the Unicode line and paragraph separators (U+2028, U+2029), which end a line in
    /// JavaScript, regular expressions and logs as a newline does (refused in query parameters; the OpenAPI
    /// document's `noControls` pattern says the same).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}"
    }

    /// A string as `string` reads it; nil for JSON null or "" (a setting being cleared).
    func nullableString(_ name: String, maxLength: Int) throws -> String? {
        switch self.members[name] {
        case .null?: return nil
        case .string(let s)? where s.isEmpty: return nil
        default: return try self.string(name, maxLength: maxLength)
        }
    }

    func bool(_ name: String) throws -> Bool? {
        switch self.members[name] {
        case nil: return nil
        case .bool(let b)?: return b
        default: throw Self.invalid(name, "must be true or false")
        }
    }

    /// An integer in `range`: `.none` when absent, `.some(nil)` for an explicit null (reset to default).
    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64?? {
        switch self.members[name] {
        case nil: return .none
        case .null?: return .some(nil)
        case .integer(let i)?:
            guard range.contains(i) else { throw Self.invalid(name, "must be an integer in \(range.lowerBound)...\(range.upperBound)") }
            return .some(i)
        default: throw Self.invalid(name, "must be an integer or null")
        }
    }

    /// An integer in `range`, or `fallback` when absent; null is refused (where nothing is being reset, a null is a
    /// client's mistake, not a default).
    func integer(_ name: String, in range: ClosedRange<Int64>, absent fallback: Int64) throws -> Int64 {
        switch try self.integer(name, in: range) {
        case .none: return fallback
        case .some(nil): throw Self.invalid(name, "must be an integer in \(range.lowerBound)...\(range.upperBound), not null")
        case .some(let value?): return value
        }
    }

    /// A nested object, read with the same rules.
    func object(_ name: String, allowed: Set<String>) throws -> JSONInput? {
        switch self.members[name] {
        case nil: return nil
        case .object(let members)?:
            if let unknown = members.keys.sorted().first(where: { !allowed.contains($0) }) {
                throw Self.invalid("\(name).\(unknown.prefix(64))", "unknown member; expected one of \(allowed.sorted().joined(separator: ", "))")
            }
            return JSONInput(members: members)
        default: throw Self.invalid(name, "must be an object")
        }
    }

    /// Instrumentation scope names (`InstrumentationScope.name`): at most `max`, each 1...256 bytes of letters,
    /// digits and `._-/:@` (no commas or spaces, so a list is unambiguous wherever it is written); an empty list clears.
    /// An array of distinct tag keys, each as the event schema allows a tag key (1 to 64 characters, no control or
    /// bidirectional formatting characters).
    func tagKeys(_ name: String, max: Int) throws -> [String]? {
        switch self.members[name] {
        case nil: return nil
        case .array(let items)?:
            guard items.count <= max else { throw Self.invalid(name, "must list at most \(max) tag keys") }
            var keys: [String] = []
            for item in items {
                let limit = EventLimits.default.maxTagKeyLength
                guard case .string(let s) = item, !s.isEmpty, s.unicodeScalars.count <= limit,
                    !s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }), !LLMEvent.containsBidiControl(s)
                else { throw Self.invalid(name, "each must be a tag key of 1 to \(limit) characters without control characters") }
                if !keys.contains(s) { keys.append(s) }
            }
            return keys
        default: throw Self.invalid(name, "must be an array of tag keys")
        }
    }

    func scopeNames(_ name: String, max: Int) throws -> [String]? {
        switch self.members[name] {
        case nil: return nil
        case .array(let items)?:
            guard items.count <= max else { throw Self.invalid(name, "must list at most \(max) scope names") }
            var names: [String] = []
            for item in items {
                guard case .string(let s) = item, Self.isScopeName(s) else {
                    throw Self.invalid(name, "each must be an instrumentation scope name: 1 to 256 letters, digits and ._-/:@")
                }
                if !names.contains(s) { names.append(s) }
            }
            return names
        default: throw Self.invalid(name, "must be an array of instrumentation scope names")
        }
    }

    static func isScopeName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 256 && s.utf8.allSatisfy { b in
            (48...57).contains(b) || (65...90).contains(b) || (97...122).contains(b) || Array("._-/:@".utf8).contains(b)
        }
    }

    func scopes(_ name: String) throws -> [Scope]? {
        switch self.members[name] {
        case nil: return nil
        case .array(let items)?:
            var scopes: Set<Scope> = []
            for item in items.prefix(Scope.allCases.count + 1) {
                guard case .string(let s) = item, let scope = Scope(rawValue: s) else {
                    throw Self.invalid(name, "each scope must be one of \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                scopes.insert(scope)
            }
            guard !scopes.isEmpty, items.count <= Scope.allCases.count else { throw Self.invalid(name, "must list 1 to \(Scope.allCases.count) distinct scopes") }
            return scopes.sorted()
        default: throw Self.invalid(name, "must be an array of scopes")
        }
    }
}
