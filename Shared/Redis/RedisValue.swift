/// A Redis reply.
public enum RedisValue: Sendable, Hashable {
    case bulkString([UInt8])
    case simpleString(String)
    case integer(Int64)
    case array([RedisValue])
    case null
    /// An error reply (`-ERR ...`). `command` throws it; `pipeline` returns it in place, so one failed command does
    /// not hide the replies of the others.
    case error(String)

    /// The reply as text, for bulk and simple strings.
    public var string: String? {
        switch self {
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .simpleString(let s): return s
        default: return nil
        }
    }

    /// The reply as an integer: integer replies, and bulk strings that hold one (what GET returns for counters).
    public var int: Int64? {
        switch self {
        case .integer(let v): return v
        case .bulkString, .simpleString: return self.string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RedisValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool { self == .null }
}

/// One argument of a command: text or raw bytes.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init(_ value: Int) { self.bytes = Array(String(value).utf8) }
    public init(_ value: Int64) { self.bytes = Array(String(value).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
}

/// An error from the Redis client.
public struct RedisError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate let value: String
        public var description: String { self.value }
        /// Could not connect, or the connection broke (I/O error, EOF, timeout).
        public static let connection = Code(value: "connection")
        /// The server answered with an error reply.
        public static let server = Code(value: "server")
        /// The reply could not be parsed.
        public static let protocolError = Code(value: "protocol")
        /// A bad URL or option.
        public static let configuration = Code(value: "configuration")
    }

    public let code: Code
    public let message: String
    /// hiredis's `REDIS_ERR_*` code, when the failure came from it.
    public let hiredisCode: Int32?

    public init(_ code: Code, _ message: String, hiredisCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.hiredisCode = hiredisCode
    }

    /// Connection failures can succeed on a new connection; server error replies will not change on retry.
    public var isRetriable: Bool { self.code == .connection }

    public var description: String { "Redis \(self.code): \(self.message)" }
}
