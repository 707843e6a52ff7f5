import Foundation
import Logging
import Postgres
import Testing
import TestSupport

func makePostgres(maxConnections: Int = 4) throws -> PostgresClient {
    var config = PostgresConfiguration(url: try TestEnvironment.postgresURL())
    config.maxConnections = maxConnections
    return PostgresClient(configuration: config, logger: Logger(label: "postgres-tests"))
}

@Suite("Postgres against the local server", .serialized, .timeLimit(.minutes(2)))
struct PostgresIntegrationTests {
    @Test("parameterized queries and typed decoding")
    func queries() async throws {
        let pg = try makePostgres()
        let table = TestEnvironment.unique("q")
        try await pg.query("CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY, name text, score double precision, ok boolean, blob bytea, at timestamptz, n integer)")
        let hostile = "x'); DROP TABLE \"\(table)\"; --"
        let at = Date(timeIntervalSince1970: 1_795_415_822.123456)
        let blob: [UInt8] = [0, 1, 254, 255]
        try await pg.query("INSERT INTO \(identifier: table) VALUES (\(Int64(1)), \(hostile), \(2.5), \(true), \(blob), \(at), \(Int?.none))")
        try await pg.query("INSERT INTO \(identifier: table) (id, name) VALUES (\(Int64(2)), \("é😀"))")
        let rows = try await pg.query("SELECT * FROM \(identifier: table) WHERE id >= \(1) ORDER BY id")
        #expect(rows.count == 2)
        let first = try #require(rows.first)
        #expect(try first.decode("id", as: Int64.self) == 1)
        #expect(try first.decode("name", as: String.self) == hostile, "the value went in as a parameter, not SQL")
        #expect(try first.decode("score", as: Double.self) == 2.5)
        #expect(try first.decode("ok", as: Bool.self))
        #expect(try first.decode("blob", as: [UInt8].self) == blob)
        #expect(abs(try first.decode("at", as: Date.self).timeIntervalSince(at)) < 0.000_001)
        #expect(try first.decodeIfPresent("n", as: Int.self) == nil)
        #expect(throws: PostgresError.self) { try first.decode("n", as: Int.self) }
        #expect(throws: PostgresError.self) { try first.decode("name", as: Int.self) }
        #expect(try rows[1].decode("name", as: String.self) == "é😀")
        let deleted = try await pg.query("DELETE FROM \(identifier: table) WHERE id = \(2)")
        #expect(deleted.affectedRows == 1)
        await pg.close()
    }

    @Test("server errors carry SQLSTATE and say whether a retry helps")
    func serverErrors() async throws {
        let pg = try makePostgres()
        let table = TestEnvironment.unique("e")
        try await pg.query("CREATE TABLE \(identifier: table) (id int PRIMARY KEY)")
        try await pg.query("INSERT INTO \(identifier: table) VALUES (\(1))")
        do {
            try await pg.query("INSERT INTO \(identifier: table) VALUES (\(1))")
            Issue.record("expected a unique violation")
        } catch let error as PostgresError {
            #expect(error.code == .server && error.sqlState == "23505" && !error.isRetriable)
        }
        do {
            try await pg.query("SELEC 1")
            Issue.record("expected a syntax error")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42601")
        }
        #expect(await pg.ping(), "the connection survives statement errors")
        await pg.close()
    }

    @Test("a transaction commits on return and rolls back on throw")
    func transactions() async throws {
        struct Abort: Error {}
        let pg = try makePostgres()
        let table = TestEnvironment.unique("t")
        try await pg.query("CREATE TABLE \(identifier: table) (id int)")
        try await pg.withTransaction { conn in
            try conn.query("INSERT INTO \(identifier: table) VALUES (\(1))")
            try conn.query("INSERT INTO \(identifier: table) VALUES (\(2))")
        }
        await #expect(throws: Abort.self) {
            try await pg.withTransaction { conn in
                try conn.query("INSERT INTO \(identifier: table) VALUES (\(3))")
                throw Abort()
            }
        }
        await #expect(throws: PostgresError.self) {
            try await pg.withTransaction { conn in
                try conn.query("INSERT INTO \(identifier: table) VALUES (\(4))")
                try conn.query("INSERT INTO no_such_table VALUES (1)")
            }
        }
        let ids = try await pg.query("SELECT id FROM \(identifier: table) ORDER BY id").map { try $0.decode("id", as: Int.self) }
        #expect(ids == [1, 2])
        await pg.close()
    }

    @Test("COPY bulk-loads rows, escaping what COPY's text format needs")
    func bulkCopy() async throws {
        let pg = try makePostgres()
        let table = TestEnvironment.unique("c")
        try await pg.query("CREATE TABLE \(identifier: table) (id bigint, label text, amount bigint)")
        var rows: [[any PostgresEncodable]] = []
        for i in 0..<50_000 {
            let label: String = i % 1000 == 0 ? "tab\there\nnew\\line" : "row \(i)"
            let row: [any PostgresEncodable] = [Int64(i), label, Int64(i) * 3]
            rows.append(row)
        }
        let copied = try await pg.withConnection { try await $0.copy(into: table, columns: ["id", "label", "amount"], rows: rows) }
        #expect(copied == 50_000)
        let sums = try #require(try await pg.query("SELECT count(*) AS n, sum(amount) AS s FROM \(identifier: table)").first)
        #expect(try sums.decode("n", as: Int.self) == 50_000)
        let expected: Int64 = 3 * (49_999 * 50_000 / 2)
        #expect(try sums.decode("s", as: Int64.self) == expected)
        let odd = try await pg.query("SELECT label FROM \(identifier: table) WHERE id = \(Int64(1000))")
        #expect(try odd[0].decode("label", as: String.self) == "tab\there\nnew\\line")
        await #expect(throws: PostgresError.self) {
            try await pg.withConnection { try await $0.copy(into: table, columns: ["id", "label", "amount"], rows: [["not a number", "x", Int64(1)]]) }
        }
        #expect(await pg.ping(), "a failed COPY leaves the pool usable")
        await pg.close()
    }

    @Test("binary array parameters read back equal to their values, whatever text they hold, and empty arrays are empty")
    func binaryArrays() async throws {
        let pg = try makePostgres()
        let texts = ["", "plain", "a,b", "{brace}", "quote\"d", "back\\slash", "NULL", "tab\tnew\nline", "é😀", String(repeating: "x", count: 3000)]
        let numbers: [Int64] = [0, 1, -1, .max, .min, 1_234_567_890_123]
        // 2000-01-01 (Postgres's epoch) and instants either side of it, and days either side too.
        let instants: [Int64] = [946_684_800_000_000, 946_684_799_999_999, 0, 1_796_000_000_123_456]
        let days: [Int64] = [946_684_800_000_000, 0, 1_796_256_000_000_000, 946_598_400_000_000]
        let documents = [#"{"a":[1,2.5,"x\"y"]}"#, "{}", #""dense""#]
        var parameters = PostgresParameters()
        parameters.append(binary: PostgresBinaryArray.text(texts))
        parameters.append(binary: PostgresBinaryArray.int8(numbers))
        parameters.append(binary: PostgresBinaryArray.timestamptz(microsecondsSinceEpoch: instants))
        parameters.append(binary: PostgresBinaryArray.date(dayStartMicroseconds: days))
        parameters.append(binary: PostgresBinaryArray.jsonb(documents))
        parameters.append("text in between")
        parameters.append(binary: PostgresBinaryArray.text([]))
        let rows = try await pg.query(PostgresQuery(sql: """
            SELECT (SELECT array_agg(t ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)) = $1::text[] AS same,
                   (SELECT string_agg(n::text, ',' ORDER BY i) FROM unnest($2::bigint[]) WITH ORDINALITY AS u(n, i)) AS numbers,
                   (SELECT string_agg(((extract(epoch FROM t) * 1000000)::bigint)::text, ',' ORDER BY i) FROM unnest($3::timestamptz[]) WITH ORDINALITY AS u(t, i)) AS instants,
                   (SELECT string_agg(to_char(d, 'YYYY-MM-DD'), ',' ORDER BY i) FROM unnest($4::date[]) WITH ORDINALITY AS u(d, i)) AS days,
                   (SELECT string_agg(j::text, '|' ORDER BY i) FROM unnest($5::jsonb[]) WITH ORDINALITY AS u(j, i)) AS documents,
                   $6 AS between, cardinality($7::text[]) AS empty,
                   (SELECT string_agg(t, '|' ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)) AS texts
            """, parameters: parameters))
        let row = try #require(rows.first)
        #expect(try row.decode("same", as: Bool.self))
        #expect(try row.decode("texts", as: String.self) == texts.joined(separator: "|"))
        #expect(try row.decode("numbers", as: String.self) == numbers.map(String.init).joined(separator: ","))
        #expect(try row.decode("instants", as: String.self) == instants.map(String.init).joined(separator: ","))
        #expect(try row.decode("days", as: String.self) == "2000-01-01,1970-01-01,2026-12-03,1999-12-31")
        #expect(try row.decode("documents", as: String.self) == #"{"a": [1, 2.5, "x\"y"]}|{}|"dense""#)
        #expect(try row.decode("between", as: String.self) == "text in between")
        #expect(try row.decode("empty", as: Int64.self) == 0)
        // An element type other than the parameter's is refused by the server, not misread.
        var wrong = PostgresParameters()
        wrong.append(binary: PostgresBinaryArray.int8([1]))
        await #expect(throws: PostgresError.self) { try await pg.query(PostgresQuery(sql: "SELECT cardinality($1::text[])", parameters: wrong)) }
    }

    @Test("migrations run twice concurrently apply each version exactly once")
    func concurrentMigrations() async throws {
        let history = TestEnvironment.unique("mig").replacingOccurrences(of: "-", with: "_")
        let target = "\(history)_data"
        let migrator = PostgresMigrator(migrations: [
            PostgresMigration(version: 1, name: "create", sql: "CREATE TABLE \(target) (id int); SELECT pg_sleep(0.3);"),
            PostgresMigration(version: 2, name: "seed", sql: "INSERT INTO \(target) VALUES (1); INSERT INTO \(target) VALUES (2);"),
        ])
        let a = try makePostgres()
        let b = try makePostgres()
        async let first = migrator.migrate(a, table: history)
        async let second = migrator.migrate(b, table: history)
        let (appliedA, appliedB) = try await (first, second)
        #expect((appliedA + appliedB).sorted() == [1, 2], "each version applied by exactly one replica")
        #expect(try await a.query("SELECT count(*) AS n FROM \(identifier: target)")[0].decode("n", as: Int.self) == 2)
        #expect(try await migrator.migrate(a, table: history).isEmpty, "a third run finds nothing to do")

        let renamed = PostgresMigrator(migrations: [PostgresMigration(version: 1, name: "other", sql: "SELECT 1")])
        await #expect(throws: PostgresError.self) { try await renamed.migrate(a, table: history) }
        let failing = PostgresMigrator(migrations: migrator.migrations + [PostgresMigration(version: 3, name: "bad", sql: "INSERT INTO \(target) VALUES (3); SELECT * FROM missing_table;")])
        await #expect(throws: PostgresError.self) { try await failing.migrate(a, table: history) }
        #expect(try await a.query("SELECT count(*) AS n FROM \(identifier: target)")[0].decode("n", as: Int.self) == 2, "a failed migration leaves nothing behind")
        await a.close()
        await b.close()
    }

    @Test("a connection killed by the server is replaced")
    func reconnect() async throws {
        let pg = try makePostgres(maxConnections: 1)
        let pid = try await pg.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
        let killer = try makePostgres(maxConnections: 1)
        try await killer.query("SELECT pg_terminate_backend(\(pid))")
        await killer.close()
        do {
            try await pg.query("SELECT 1")
            Issue.record("the terminated connection should fail once")
        } catch let error as PostgresError {
            #expect(error.isRetriable)
        }
        let newPID = try await pg.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
        #expect(newPID != pid)
        await pg.close()
    }
}
