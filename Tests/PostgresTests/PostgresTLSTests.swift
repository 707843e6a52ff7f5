import Foundation
import Logging
import Postgres
import Testing
import TestSupport

@Suite("Postgres over TLS against the local server", .serialized, .timeLimit(.minutes(2)))
struct PostgresTLSTests {
    /// The stack's URL with host `localhost` (the name in its certificate) and libpq's TLS parameters.
    func url(_ parameters: String) throws -> String {
        let plain = try TestEnvironment.postgresURL()
        return plain.replacingOccurrences(of: "@127.0.0.1:", with: "@localhost:") + "?" + parameters
    }

    @Test("sslmode=verify-full with the server's CA: the session is encrypted; an untrusted CA is refused")
    func verifyFull() async throws {
        let ca = try TestEnvironment.require("TW_TEST_TLS_CA_FILE")
        let pg = PostgresClient(configuration: PostgresConfiguration(url: try self.url("sslmode=verify-full&sslrootcert=\(ca)")), logger: Logger(label: "pg-tls"))
        let rows = try await pg.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        #expect(try rows[0].decode("ssl", as: Bool.self))
        #expect(try rows[0].decode("version", as: String.self).hasPrefix("TLS"))
        await pg.close()

        // A CA that did not sign the server's certificate (the server's own leaf is not a CA).
        let wrong = try TestEnvironment.require("TW_TEST_TLS_CERT_FILE")
        let refused = PostgresClient(configuration: PostgresConfiguration(url: try self.url("sslmode=verify-full&sslrootcert=\(wrong)")), logger: Logger(label: "pg-tls"))
        await #expect { try await refused.query("SELECT 1") } throws: { error in
            String(describing: error).contains("certificate verify failed")
        }
        await refused.close()
    }
}
