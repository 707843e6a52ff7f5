/// An error from the Postgres client, with the server's SQLSTATE where there is one.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate let value: String
        public var description: String { self.value }
        /// Could not connect, or the connection broke.
        public static let connection = Code(value: "connection")
        /// The server rejected the statement (see `sqlState`).
        public static let server = Code(value: "server")
        /// A value could not be decoded into the requested Swift type.
        public static let decoding = Code(value: "decoding")
        /// A migration could not be applied, or the applied history does not match the code's.
        public static let migration = Code(value: "migration")
        /// The client was misused (bad URL, bad query).
        public static let client = Code(value: "client")
    }

    public let code: Code
    public let message: String
    /// Five-character SQLSTATE from the server (`23505` unique violation, `40001` serialization failure, ...).
    public let sqlState: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    /// True when the same work may succeed if tried again: connection failures, serialization failures and
    /// deadlocks (class 40), the server shutting down or out of resources (57P, 53).
    public var isRetriable: Bool {
        if self.code == .connection { return true }
        guard let state = self.sqlState else { return false }
        return state.hasPrefix("40") || state.hasPrefix("08") || state.hasPrefix("53") || state == "57P01"
            || state == "57P02" || state == "57P03"
    }

    public var description: String {
        if let sqlState { return "Postgres \(self.code) [\(sqlState)]: \(self.message)" }
        return "Postgres \(self.code): \(self.message)"
    }

    /// The same error with context in front of its message.
    public func context(_ text: String) -> PostgresError {
        PostgresError(self.code, "\(text): \(self.message)", sqlState: self.sqlState)
    }
}
