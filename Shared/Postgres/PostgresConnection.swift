import CLibPQ
import ClientSupport
import Foundation
import Synchronization

/// One libpq connection, pinned to its own thread: a `PGconn` is not thread-safe, and its blocking calls must stay
/// off the cooperative pool. Every statement is parameterized (`PQexecParams`); values never become SQL text.
public actor PostgresConnection: PooledConnection {
    private let executor: ThreadExecutor
    private let conn: LibPQConnection
    private let broken = Atomic<Bool>(false)

    public nonisolated var unownedExecutor: UnownedSerialExecutor { self.executor.asUnownedSerialExecutor() }
    public nonisolated var isBroken: Bool { self.broken.load(ordering: .relaxed) }

    /// Connects to `url` (a libpq connection URI or key=value string) and sets UTC and ISO dates for the session.
    public static func connect(url: String, applicationName: String = "tokenwatch") async throws(PostgresError) -> PostgresConnection {
        let executor = ThreadExecutor(name: "postgres-connection")
        let opened: Result<LibPQConnection, PostgresError>
        do {
            opened = try await executor.run { Result { () throws(PostgresError) in try LibPQConnection(url: url, applicationName: applicationName) } }
        } catch {
            opened = .failure(PostgresError(.connection, "\(error)"))
        }
        switch opened {
        case .success(let conn): return PostgresConnection(executor: executor, conn: conn)
        case .failure(let error):
            executor.shutdown()
            throw error
        }
    }

    private init(executor: ThreadExecutor, conn: LibPQConnection) {
        self.executor = executor
        self.conn = conn
    }

    deinit { self.executor.shutdown() }

    /// Runs one parameterized statement.
    @discardableResult
    public func query(_ query: PostgresQuery) throws(PostgresError) -> PostgresRows {
        try self.checked { () throws(PostgresError) in try self.conn.execute(query) }
    }

    /// Runs SQL text with no parameters, possibly several statements (migrations). Returns the last result.
    @discardableResult
    public func execute(script: String) throws(PostgresError) -> PostgresRows {
        try self.checked { () throws(PostgresError) in try self.conn.executeScript(script) }
    }

    /// Bulk-loads rows with `COPY ... FROM STDIN` (text format): far faster than row-by-row inserts.
    /// Returns the number of rows copied.
    @discardableResult
    public func copy(into table: String, columns: [String], rows: [[any PostgresEncodable]]) throws(PostgresError) -> Int {
        var text = PostgresCopyText()
        for row in rows {
            guard row.count == columns.count else { throw PostgresError(.client, "COPY into \(table): a row has \(row.count) values for \(columns.count) columns") }
            for value in row {
                if let field = value.postgresText { text.append(field) } else { text.appendNull() }
            }
            text.endRow()
        }
        return try self.copy(into: table, columns: columns, text)
    }

    /// Bulk-loads rows already in COPY's text format (`PostgresCopyText`). Returns the number of rows copied.
    @discardableResult
    public func copy(into table: String, columns: [String], _ text: PostgresCopyText) throws(PostgresError) -> Int {
        try self.checked { () throws(PostgresError) in try self.conn.copyIn(table: table, columns: columns, data: text.bytes) }
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws.
    public func withTransaction<R: Sendable>(_ body: @Sendable (isolated PostgresConnection) async throws -> R) async throws -> R {
        try self.query("BEGIN")
        do {
            let result = try await body(self)
            try self.query("COMMIT")
            return result
        } catch {
            if !self.isBroken { _ = try? self.query("ROLLBACK") }
            throw error
        }
    }

    public func close() async {
        self.broken.store(true, ordering: .relaxed)
        self.conn.finish()
    }

    private func checked<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        guard !self.isBroken else { throw PostgresError(.connection, "connection is closed") }
        do {
            return try body()
        } catch {
            if !self.conn.isHealthy { self.broken.store(true, ordering: .relaxed) }
            throw error
        }
    }
}

/// Owns one `PGconn`.
final class LibPQConnection: @unchecked Sendable {
    // @unchecked: used only from its connection's thread (the actor's executor).
    private var pointer: OpaquePointer?

    init(url: String, applicationName: String) throws(PostgresError) {
        // Keywords and values are passed separately, so nothing in the URL can inject further options.
        let keywords = ["dbname", "application_name", "connect_timeout", "options"]
        let values = [url, applicationName, "5", "-c TimeZone=UTC -c DateStyle=ISO"]
        var keywordPointers: [UnsafePointer<CChar>?] = keywords.map { UnsafePointer(strdup($0)) } + [nil]
        var valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer(strdup($0)) } + [nil]
        defer {
            keywordPointers.forEach { free(UnsafeMutablePointer(mutating: $0)) }
            valuePointers.forEach { free(UnsafeMutablePointer(mutating: $0)) }
        }
        // expand_dbname=1: the dbname value may be a full URI whose parts override the other keywords.
        guard let conn = PQconnectdbParams(&keywordPointers, &valuePointers, 1) else {
            throw PostgresError(.connection, "out of memory")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(conn))
            PQfinish(conn)
            throw PostgresError(.connection, "connect: \(message)")
        }
        // Notices (e.g. "relation already exists, skipping") would go to stderr; the services log what matters.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        self.pointer = conn
    }

    deinit { self.finish() }

    func finish() {
        if let pointer { PQfinish(pointer) }
        self.pointer = nil
    }

    var isHealthy: Bool { self.pointer.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func execute(_ query: PostgresQuery) throws(PostgresError) -> PostgresRows {
        guard let conn = self.pointer else { throw PostgresError(.connection, "connection is closed") }
        var params: [UnsafeMutablePointer<CChar>?] = query.parameters.map { $0.flatMap { strdup($0) } }
        var lengths = [Int32](repeating: 0, count: params.count), formats = [Int32](repeating: 0, count: params.count)
        // Binary values are copied to malloc'd memory like the strdup'd text ones, so one free releases either.
        for (index, bytes) in query.binaryParameters where index < params.count {
            let copy = malloc(Swift.max(bytes.count, 1))!.assumingMemoryBound(to: CChar.self)
            bytes.withUnsafeBytes { raw in if let base = raw.baseAddress { memcpy(copy, base, bytes.count) } }
            free(params[index])
            params[index] = copy
            lengths[index] = Int32(bytes.count)
            formats[index] = 1
        }
        defer { params.forEach { free($0) } }
        var values: [UnsafePointer<CChar>?] = params.map { $0.map { UnsafePointer($0) } }
        let result = values.withUnsafeMutableBufferPointer { buffer in
            lengths.withUnsafeBufferPointer { lengths in
                formats.withUnsafeBufferPointer { formats in
                    PQexecParams(conn, query.sql, Int32(params.count), nil, buffer.baseAddress, lengths.baseAddress, formats.baseAddress, 0)
                }
            }
        }
        return try self.consume(result, context: query.sql)
    }

    func executeScript(_ sql: String) throws(PostgresError) -> PostgresRows {
        guard let conn = self.pointer else { throw PostgresError(.connection, "connection is closed") }
        return try self.consume(PQexec(conn, sql), context: "script")
    }

    func copyIn(table: String, columns: [String], data: [UInt8]) throws(PostgresError) -> Int {
        guard let conn = self.pointer else { throw PostgresError(.connection, "connection is closed") }
        let quote = { (name: String) in "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        let qualified = table.split(separator: ".").map { quote(String($0)) }.joined(separator: ".")
        let sql = "COPY \(qualified) (\(columns.map(quote).joined(separator: ", "))) FROM STDIN"
        guard let start = PQexec(conn, sql) else { throw PostgresError(.connection, Self.trimmed(PQerrorMessage(conn))) }
        guard PQresultStatus(start) == PGRES_COPY_IN else { _ = try self.consume(start, context: sql); return 0 }
        PQclear(start)
        var failure: String?
        // In pieces of 64 kB: libpq buffers what it is given, and a piece is sent while the next is copied.
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count, failure == nil {
                let count = min(64 * 1024, bytes.count - offset)
                if PQputCopyData(conn, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self), Int32(count)) != 1 {
                    failure = Self.trimmed(PQerrorMessage(conn))
                }
                offset += count
            }
        }
        if PQputCopyEnd(conn, failure) != 1 { failure = failure ?? Self.trimmed(PQerrorMessage(conn)) }
        var copied = 0
        var serverError: PostgresError?
        while let result = PQgetResult(conn) {
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                copied = Int(String(cString: PQcmdTuples(result))) ?? 0
                PQclear(result)
            } else {
                do { _ = try self.consume(result, context: sql) } catch { serverError = serverError ?? error }
            }
        }
        if let failure, serverError == nil { throw PostgresError(.client, "COPY into \(table): \(failure)") }
        if let serverError { throw serverError }
        return copied
    }

    /// Copies a result out of libpq and frees it; turns error results into `PostgresError`.
    private func consume(_ result: OpaquePointer?, context: String) throws(PostgresError) -> PostgresRows {
        guard let result else {
            throw PostgresError(.connection, self.pointer.map { Self.trimmed(PQerrorMessage($0)) } ?? "no connection")
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgresRows(columns: [], cells: [], affectedRows: Int(String(cString: PQcmdTuples(result))) ?? 0)
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            let rowCount = Int(PQntuples(result))
            let columnCount = Int(PQnfields(result))
            let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
            var cells: [[String?]] = []
            cells.reserveCapacity(rowCount)
            for r in 0..<rowCount {
                var row: [String?] = []
                row.reserveCapacity(columnCount)
                for c in 0..<columnCount {
                    if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                        row.append(nil)
                    } else {
                        let length = Int(PQgetlength(result, Int32(r), Int32(c)))
                        let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, Int32(r), Int32(c)), count: length)
                        row.append(String(decoding: bytes, as: UTF8.self))
                    }
                }
                cells.append(row)
            }
            return PostgresRows(columns: columns, cells: cells, affectedRows: rowCount)
        default:
            let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
            let message = primary ?? Self.trimmed(PQresultErrorMessage(result))
            let code: PostgresError.Code = (self.isHealthy && sqlState != nil) ? .server : .connection
            throw PostgresError(code, message, sqlState: sqlState)
        }
    }

    static func trimmed(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
