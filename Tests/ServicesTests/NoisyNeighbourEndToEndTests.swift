import Foundation
import Logging
import Postgres
import ServiceKit
import Testing
import TestSupport

/// The noisy-neighbour harness (`deploy/bench/neighbours.py`) against the real gateway and query service: tenant A
/// runs each attack of issue 30 at its default limits while tenant B works. Timings are `make bench`'s to print;
/// this asserts what must hold whatever the machine: every attack answered (2xx, 409, 413 or 429: no 5xx, no
/// dropped connection), every request of B served, B's test notification delivered in every phase.
@Suite("Noisy neighbours end to end", .serialized, .timeLimit(.minutes(5)))
struct NoisyNeighbourEndToEndTests {
    @Test("tenant A's attacks (gzip and element bombs, 5,000-event batches, 10,000-point series, test sends to a receiver that never answers, mass creations) are answered 2xx, 409, 413 or 429, while every request of tenant B is served and its test notifications arrive")
    func attacks() async throws {
        let run = TestEnvironment.unique("nb")
        let token = "neighbours-admin-token-0123456789"
        // A database of its own, so this query service may deliver (the stack's outbox belongs to the notification
        // tests running beside it).
        let url = try TestEnvironment.postgresURL()
        let database = run.replacingOccurrences(of: "-", with: "_")
        let admin = PostgresClient(configuration: PostgresConfiguration(url: url), logger: Logger(label: "neighbours-e2e"))
        try await admin.query("CREATE DATABASE \(identifier: database)")
        let ownURL = "\(url[..<url.lastIndex(of: "/")!])/\(database)"
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: ownURL), logger: Logger(label: "neighbours-e2e"))
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        await postgres.close()
        let env = try TestEnvironment.pipelineEnvironment(run: run, extra: [
            "TW_ADMIN_TOKEN": token, "TW_WEBHOOK_ALLOW_HTTP": "true", "TW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "TW_LOG_LEVEL": "warning",
            "TW_POSTGRES_URL": ownURL, "TW_NOTIFICATION_DELIVERY": "true",
        ])
        let gateway = try ServiceProcess("gateway", environment: env)
        let query = try ServiceProcess("query", environment: env)
        try await gateway.waitUntilReady()
        try await query.waitUntilReady()
        let out = NSTemporaryDirectory() + run + ".json"
        let status = await Self.runOffPool(["python3", Subprocess.projectRoot + "/deploy/bench/neighbours.py", "http://127.0.0.1:\(gateway.port)", "--seconds", "1", "--threads", "2", "--scale", "0.1", "--json", out],
                                           environment: ["TW_ADMIN_TOKEN": token])
        #expect(status == 0, "the harness ran to its end")
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        let phases = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        #expect(phases.count == 7)
        let allowed: Set<String> = ["200", "201", "202", "409", "413", "429"]
        for phase in phases {
            let name = phase["attack"] as? String ?? "?"
            let answers = phase["a_answers"] as? [String: Int] ?? [:]
            #expect(Set(answers.keys).isSubset(of: allowed), "\(name): A's answers \(answers)")
            #expect(name == "alone" || answers.values.reduce(0, +) > 0, "\(name): the attack ran")
            #expect(phase["b_failures"] as? Int == 0, "\(name): every request of B was served")
            #expect((phase["b_requests"] as? Int ?? 0) > 0, "\(name): B was measured")
            #expect(phase["notification_ms"] is Double, "\(name): B's test notification arrived")
        }
        #expect(try gateway.stop() == 0, "the gateway exits cleanly:\n\(gateway.crashReport)")
        #expect(try query.stop() == 0, "the query service exits cleanly:\n\(query.crashReport)")
        try await admin.query("DROP DATABASE \(identifier: database) WITH (FORCE)")
        await admin.close()
    }

    @Test("a declared body over the limit is answered 413 before it is sent: a client that waits for 100 Continue gets its answer")
    func declaredLength() async throws {
        let run = TestEnvironment.unique("nbl")
        let (gateway, _, _) = try await gatewayWithTenant(run: run, adminToken: "neighbours-admin-token-0123456789")
        let connection = try RawConnection(port: gateway.port)
        connection.send("POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tw_none\r\nContent-Type: application/json\r\nContent-Length: 6291456\r\nExpect: 100-continue\r\n\r\n")
        let answer = await connection.read(until: "\r\n\r\n", timeout: .seconds(10))
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
        #expect(answer.lowercased().contains("connection: close"))
        connection.shutdown()
        #expect(try gateway.stop() == 0)
    }

    /// Runs a child process on a thread of its own (the harness takes tens of seconds; a blocked cooperative
    /// thread would hold up the tests running beside this one); its exit status.
    static func runOffPool(_ arguments: [String], environment: [String: String]) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do {
                    continuation.resume(returning: try Subprocess.run(arguments, environment: environment))
                } catch {
                    print("\(error)")
                    continuation.resume(returning: -1)
                }
            }
        }
    }
}
