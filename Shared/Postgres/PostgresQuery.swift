import Foundation

/// A statement with its parameters. Interpolated values become `$n` parameters, never SQL text:
///
///     let q: PostgresQuery = "SELECT * FROM rollups WHERE tenant_id = \(tenant) AND minute >= \(from)"
///
/// Identifiers that cannot be parameters (a table name in a test) go through `\(identifier: name)`, which quotes
/// them; raw SQL text through `\(unescaped: text)`, for trusted constants only.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public var sql: String
    public var parameters: [String?]
    /// Parameters sent in Postgres's binary format (`PostgresBinaryArray`), by index into `parameters`, whose entry
    /// is nil for them.
    public var binaryParameters: [Int: [UInt8]] = [:]

    public init(sql: String, parameters: [String?] = []) {
        self.sql = sql
        self.parameters = parameters
    }

    public init(sql: String, parameters: PostgresParameters) {
        self.sql = sql
        self.parameters = parameters.text
        self.binaryParameters = parameters.binary
    }

    public init(stringLiteral value: String) {
        self.init(sql: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(sql: stringInterpolation.sql, parameters: stringInterpolation.parameters)
    }

    /// The SQL only: parameter values may be secrets or personal data and stay out of logs and errors.
    public var description: String { self.sql }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            self.sql.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) {
            self.sql += literal
        }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            self.parameters.append(value.postgresText)
            self.sql += "$\(self.parameters.count)"
        }

        /// An optional value: NULL when nil.
        public mutating func appendInterpolation<T: PostgresEncodable>(_ value: T?) {
            self.parameters.append(value.flatMap(\.postgresText))
            self.sql += "$\(self.parameters.count)"
        }

        public mutating func appendInterpolation(identifier: String) {
            self.sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }

        public mutating func appendInterpolation(unescaped text: String) {
            self.sql += text
        }
    }
}

/// The rows of a result, copied out of libpq.
public struct PostgresRows: Sendable, Sequence {
    public let columns: [String]
    let cells: [[String?]]
    /// Rows affected, for INSERT/UPDATE/DELETE (`PQcmdTuples`).
    public let affectedRows: Int

    public var count: Int { self.cells.count }
    public var isEmpty: Bool { self.cells.isEmpty }
    public subscript(index: Int) -> PostgresRow { PostgresRow(columns: self.columns, cells: self.cells[index]) }
    public var first: PostgresRow? { self.cells.isEmpty ? nil : self[0] }

    public func makeIterator() -> some IteratorProtocol<PostgresRow> {
        self.cells.lazy.map { PostgresRow(columns: self.columns, cells: $0) }.makeIterator()
    }
}

/// One row; values are decoded on access into the requested type.
public struct PostgresRow: Sendable {
    public let columns: [String]
    let cells: [String?]

    /// The value of `column` as `T`; throws for NULL unless `T` is optional (use `decode(_:_:)` with `T?`).
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard let value = try self.decodeIfPresent(column, as: type) else {
            throw PostgresError(.decoding, "column \(column) is NULL")
        }
        return value
    }

    public func decodeIfPresent<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws(PostgresError) -> T? {
        guard let index = self.columns.firstIndex(of: column) else { throw PostgresError(.decoding, "no column \(column)") }
        return try self.decodeIfPresent(index, as: type)
    }

    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard let value = try self.decodeIfPresent(index, as: type) else { throw PostgresError(.decoding, "column \(index) is NULL") }
        return value
    }

    public func decodeIfPresent<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T? {
        guard index < self.cells.count else { throw PostgresError(.decoding, "no column \(index)") }
        guard let text = self.cells[index] else { return nil }
        do {
            return try T(postgresText: text)
        } catch {
            throw error.context("column \(index < self.columns.count ? self.columns[index] : "\(index)")")
        }
    }
}

extension PostgresQuery {
    /// A text array literal for a `$n::text[]` parameter, every element quoted (values may hold commas, quotes,
    /// braces and backslashes).
    public static func textArray(_ items: [String]) -> String {
        // Byte by byte (the aggregator writes a literal of one element per event): Foundation's
        // replacingOccurrences cost more than the rest of the batch's SQL together.
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(items.reduce(2) { $0 + $1.utf8.count + 3 })
        for (i, item) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            for byte in item.utf8 {
                if byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

extension PostgresQuery {
    /// `SELECT unnest($1::text[]) AS a, unnest($2::bigint[]) AS b, ...`: one row per index of the array parameters
    /// (one per column, all of one length), from `$firstParameter` on. Set-returning functions in the select list
    /// advance in lockstep (Postgres 10 and later); `FROM unnest($1, $2, ...)` first copies every row into a
    /// tuplestore, which made an insert of 95,000 rows a third slower.
    public static func zippedRows(_ columns: [(name: String, type: String)], firstParameter: Int = 1) -> String {
        "SELECT " + columns.enumerated().map { "unnest($\($0.offset + firstParameter)::\($0.element.type)) AS \($0.element.name)" }.joined(separator: ", ")
    }
}

/// Rows in the text format of `COPY ... FROM STDIN`, built byte by byte: fields separated by tabs, rows ended by a
/// newline, `\N` for NULL, and backslash, tab, newline and carriage return escaped within a field.
public struct PostgresCopyText: Sendable {
    public private(set) var bytes: [UInt8] = []
    private var rowStarted = false

    public init(capacity: Int = 0) {
        self.bytes.reserveCapacity(capacity)
    }

    private mutating func separate() {
        if self.rowStarted { self.bytes.append(0x09) }
        self.rowStarted = true
    }

    public mutating func append(_ text: String) {
        self.separate()
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): self.bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x09: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x0A: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            default: self.bytes.append(byte)
            }
        }
    }

    /// A field written by the caller as plain bytes that need no escaping (digits, a date).
    public mutating func appendUnescaped(_ write: (inout [UInt8]) -> Void) {
        self.separate()
        write(&self.bytes)
    }

    public mutating func appendNull() {
        self.separate()
        self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "N")])
    }

    public mutating func endRow() {
        self.bytes.append(0x0A)
        self.rowStarted = false
    }
}

/// Parameters gathered for a statement, text or binary (`PostgresBinaryArray`); `$n` is the nth appended.
public struct PostgresParameters: Sendable, Equatable {
    public private(set) var text: [String?] = []
    public private(set) var binary: [Int: [UInt8]] = [:]

    public init() {}

    public mutating func append(_ value: String?) {
        self.text.append(value)
    }

    public mutating func append(binary bytes: [UInt8]) {
        self.binary[self.text.count] = bytes
        self.text.append(nil)
    }
}

/// One-dimensional arrays in Postgres's binary format (`array_send`), for `$n::<type>[]` parameters. Postgres reads
/// each element with its type's receive function instead of scanning a text literal for quotes and escapes: the
/// aggregator sends a few arrays of thousands of elements a statement, and `array_in` was a tenth of Postgres's time.
public enum PostgresBinaryArray {
    /// Element type oids (`pg_type`), which Postgres checks against the parameter's declared element type.
    static let int8: UInt32 = 20, text: UInt32 = 25, date: UInt32 = 1082, timestamptz: UInt32 = 1184, jsonb: UInt32 = 3802
    /// 2000-01-01T00:00:00Z, Postgres's epoch, in microseconds and days since 1970-01-01.
    static let epochMicroseconds: Int64 = 946_684_800_000_000, epochDays: Int64 = 10_957

    private static func header(_ count: Int, _ oid: UInt32, capacity: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20 + capacity)
        // An empty array has no dimensions.
        out.appendBigEndian(UInt32(count == 0 ? 0 : 1))
        out.appendBigEndian(UInt32(0))  // no NULL element
        out.appendBigEndian(oid)
        if count > 0 {
            out.appendBigEndian(UInt32(truncatingIfNeeded: count))
            out.appendBigEndian(UInt32(1))  // lower bound
        }
        return out
    }

    public static func int8(_ values: [Int64]) -> [UInt8] {
        var out = Self.header(values.count, Self.int8, capacity: values.count * 12)
        for value in values {
            out.appendBigEndian(UInt32(8))
            out.appendBigEndian(UInt64(bitPattern: value))
        }
        return out
    }

    public static func text(_ values: [String]) -> [UInt8] {
        Self.strings(values, Self.text, version: nil)
    }

    /// JSON documents as `jsonb` (version 1, then the text).
    public static func jsonb(_ values: [String]) -> [UInt8] {
        Self.strings(values, Self.jsonb, version: 1)
    }

    private static func strings(_ values: [String], _ oid: UInt32, version: UInt8?) -> [UInt8] {
        let extra = version == nil ? 0 : 1
        var out = Self.header(values.count, oid, capacity: values.reduce(0) { $0 + $1.utf8.count + 4 + extra })
        for value in values {
            out.appendBigEndian(UInt32(truncatingIfNeeded: value.utf8.count + extra))
            if let version { out.append(version) }
            out.append(contentsOf: value.utf8)
        }
        return out
    }

    public static func timestamptz(microsecondsSinceEpoch values: [Int64]) -> [UInt8] {
        var out = Self.header(values.count, Self.timestamptz, capacity: values.count * 12)
        for value in values {
            out.appendBigEndian(UInt32(8))
            out.appendBigEndian(UInt64(bitPattern: value &- Self.epochMicroseconds))
        }
        return out
    }

    /// Days given by their start, microseconds since the epoch (a UTC midnight).
    public static func date(dayStartMicroseconds values: [Int64]) -> [UInt8] {
        var out = Self.header(values.count, Self.date, capacity: values.count * 8)
        for value in values {
            out.appendBigEndian(UInt32(4))
            let days = (value / 86_400_000_000) &- Self.epochDays
            out.appendBigEndian(UInt32(truncatingIfNeeded: days))
        }
        return out
    }
}

extension [UInt8] {
    @inline(__always) mutating func appendBigEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.bigEndian) { self.append(contentsOf: $0) }
    }

    @inline(__always) mutating func appendBigEndian(_ value: UInt64) {
        Swift.withUnsafeBytes(of: value.bigEndian) { self.append(contentsOf: $0) }
    }
}
