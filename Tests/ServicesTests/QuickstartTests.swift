import Foundation
import Testing
import TestSupport

/// Issue 13 §4: the README's quickstart works when pasted. `make run` starts its own stack (.state/run, gateway on
/// :8080), the commands run as written, and `make stop` stops what it started.
@Suite("README quickstart", .serialized, .timeLimit(.minutes(15)))
struct QuickstartTests {
    @Test("the quickstart's commands, run as written: start, create a tenant, send an event, see it in the breakdown, series and anomalies")
    func quickstart() async throws {
        let root = Subprocess.projectRoot
        let gatewayPID = root + "/.state/run/pids/gateway.pid"
        if let pid = (try? String(contentsOfFile: gatewayPID, encoding: .utf8)).flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }), kill(pid, 0) == 0 {
            Issue.record("a `make run` is already running (pid \(pid)); stop it with `make stop` so the quickstart can start its own")
            return
        }
        let output = root + "/.state/quickstart.log"
        // The test stack's addresses must not leak into `make run`, which starts its own.
        // `swift test` holds SwiftPM's build lock, so `make run` uses the build that is there (TW_SKIP_BUILD).
        let child = try ChildProcess(["env", "-u", "TW_STATE_DIR", "-u", "TW_KAFKA_BROKERS", "-u", "TW_POSTGRES_URL", "-u", "TW_REDIS_URL", "TW_SKIP_BUILD=1",
                                      "python3", root + "/Tests/Tools/quickstart.py", root + "/README.md"], outputPath: output)
        defer {
            _ = try? Subprocess.run(["make", "-C", root, "--no-print-directory", "stop"])
            try? FileManager.default.removeItem(atPath: root + "/acme.json")
        }
        try await eventually(.seconds(840), "the quickstart to finish", interval: .milliseconds(500)) { child.poll() != nil }
        let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(child.exitCode == 0, "the quickstart failed:\n\(log.suffix(3000))")
        // What the reader is told they will see.
        #expect(log.contains(#"{"accepted":1,"rejected":0,"errors":[]}"#), "step 3 answer")
        #expect(log.contains(#""totals":{"requests":1,"#), "step 4 breakdown")
        #expect(log.contains(#""metric":"requests","unit":"count","step":"1m""#), "step 4 series")
        #expect(log.contains(#"{"items":[]}"#), "step 4 anomalies")

        // The demo client takes the admin token from its environment, not its command line (which `ps` shows).
        let adminToken = try String(contentsOfFile: root + "/.state/run/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let demoPID = try String(contentsOfFile: root + "/.state/run/pids/demo.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let commandLine = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(demoPID)/cmdline")), as: UTF8.self)
        #expect(commandLine.contains("demo") && !commandLine.contains(adminToken), "the demo's command line: \(commandLine.replacingOccurrences(of: "\u{0}", with: " "))")

        // `make run` keeps its services up as Kubernetes would: a gateway killed with SIGKILL is started again
        // (with backoff) and the restart is logged.
        let supervisor = try #require(Int32((try String(contentsOfFile: gatewayPID, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        let childrenFile = root + "/.state/quickstart.children"
        @Sendable func gatewayChild() async throws -> Int32? {
            let probe = try ChildProcess(["bash", "-c", "pgrep -P \(supervisor) || true"], outputPath: childrenFile)
            try await eventually(.seconds(10), "pgrep") { probe.poll() != nil }
            return (try? String(contentsOfFile: childrenFile, encoding: .utf8))?.split(separator: "\n").compactMap { Int32($0) }.first
        }
        let first = try #require(try await gatewayChild())
        kill(first, SIGKILL)
        try await eventually(.seconds(30), "the gateway restarted by make run's supervisor", interval: .milliseconds(250)) {
            guard let next = try await gatewayChild(), next != first else { return false }
            let health = try? ChildProcess(["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=1)"])
            guard let health else { return false }
            try await eventually(.seconds(5), "health probe") { health.poll() != nil }
            return health.exitCode == 0
        }
        let serviceLog = (try? String(contentsOfFile: root + "/.state/run/logs/gateway.log", encoding: .utf8)) ?? ""
        #expect(serviceLog.contains("supervise: gateway exited with status 137; restart #1"), "\(serviceLog.suffix(500))")
        #expect(kill(supervisor, 0) == 0, "the supervisor itself keeps running")
    }
}
