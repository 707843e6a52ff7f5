import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One of the package's executables, started as a real process against the test stack.
public final class ServiceProcess: @unchecked Sendable {
    // @unchecked: `exitStatus` is only touched by the test that owns the process.
    public let name: String
    public let port: Int
    /// `TW_MANAGEMENT_PORT` when started with `management: true`: health and metrics answer there, not on `port`.
    public let managementPort: Int?
    public let logPath: String
    public let pid: pid_t
    private var exitStatus: Int32?

    /// The folder holding the built executables (next to the test bundle).
    public static var binaryFolder: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }

    /// Starts `name` with the stack's environment plus `environment`, logging to a temporary file; `launcher` goes
    /// before the executable (e.g. `setpriv` to run it as the image's user).
    public init(_ name: String, port: Int? = nil, management: Bool = false, environment: [String: String] = [:], launcher: [String] = []) throws {
        self.name = name
        self.port = try port ?? Self.freePort()
        self.managementPort = management ? try Self.freePort() : nil
        self.logPath = NSTemporaryDirectory() + "tw-\(name)-\(UUID().uuidString.prefix(8)).log"
        var env = ProcessInfo.processInfo.environment
        env["TW_HTTP_PORT"] = String(self.port)
        env["TW_HTTP_HOST"] = "127.0.0.1"
        if let managementPort = self.managementPort { env["TW_MANAGEMENT_PORT"] = String(managementPort) }
        // Every service of the test run shares the stack's notification outbox: only a test about delivery turns it
        // on (another would deliver, or fail for good, the rows of the notification tests running beside it).
        env["TW_NOTIFICATION_DELIVERY"] = "false"
        // The five services run on their own roles (TokenwatchSchema.servicePrivileges: no DDL, only the tables they
        // use) unless the test names a database URL itself, so that every test of theirs also proves the grants
        // suffice. The migrations (and grants) are applied first, once, as the schema's owner would (the Job).
        if environment["TW_POSTGRES_URL"] == nil, Self.services.contains(name), let url = env["TW_POSTGRES_URL"], url.contains("://tokenwatch@") {
            try Self.migrateOnce(env)
            env["TW_POSTGRES_URL"] = url.replacingOccurrences(of: "://tokenwatch@", with: "://tokenwatch_\(name)@")
            if environment["TW_MIGRATIONS"] == nil { env["TW_MIGRATIONS"] = "wait" }
        }
        env.merge(environment) { _, new in new }
        self.pid = try Subprocess.spawn(launcher + [Self.binaryFolder + "/" + name], environment: env, outputPath: self.logPath)
    }

    static let services: Set<String> = ["gateway", "ingestor", "aggregator", "detector", "query"]
    private static let migrated = Mutex(false)

    /// Applies the migrations and the services' grants to the stack's database with the owner's credential
    /// (`TW_MIGRATIONS=only`, as the migration Job does), once per test process.
    private static func migrateOnce(_ env: [String: String]) throws {
        try Self.migrated.withLock { done in
            guard !done else { return }
            var job = env
            job["TW_MIGRATIONS"] = "only"
            job["TW_HTTP_PORT"] = String(try Self.freePort())
            let log = NSTemporaryDirectory() + "tw-migrate-\(UUID().uuidString.prefix(8)).log"
            let pid = try Subprocess.spawn([Self.binaryFolder + "/query"], environment: job, outputPath: log)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: log)
            guard status == 0 else { throw Subprocess.Failed(description: "migrating the stack's database failed (status \(status)):\n\(output.suffix(3000))") }
            done = true
        }
    }

    deinit {
        if self.exitStatus == nil { kill(self.pid, SIGKILL); _ = self.reap(timeout: .seconds(5)) }
        try? FileManager.default.removeItem(atPath: self.logPath)
    }

    public var log: String { (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? "" }

    /// The log's last lines before a crash report and the report's head (the reason and the crashing thread),
    /// which a plain suffix cuts off when the report lists every thread; the log's tail when there is no report.
    public var crashReport: String {
        let log = self.log
        guard let start = log.range(of: "Program crashed") ?? log.range(of: "Fatal error") else { return String(log.suffix(3000)) }
        let before = log[..<start.lowerBound].suffix(1500)
        return String(before + log[start.lowerBound...].prefix(5000))
    }

    /// GETs `path` on the service (on `port`, the API's, unless told); nil when it does not answer.
    public func get(_ path: String, port: Int? = nil) async -> (status: Int, body: String)? {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port ?? self.port)\(path)")!)
        request.timeoutInterval = 5
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, String(decoding: data, as: UTF8.self))
    }

    /// Waits until `/readyz` answers `ready` (serving, and its first probe found every dependency), or throws with the
    /// log when the process exits or `timeout` passes.
    public func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = self.reap(timeout: .zero) { throw Subprocess.Failed(description: "\(self.name) exited with \(status):\n\(self.log)") }
            if let ready = await self.get("/readyz", port: self.managementPort), ready.status == 200, ready.body.contains("\"status\":\"ready\"") { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Subprocess.Failed(description: "\(self.name) not ready within \(timeout):\n\(self.log)")
    }

    /// Sends `signal` and waits for the exit; returns the exit code (128 + signal when killed by one).
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(30)) throws -> Int32 {
        kill(self.pid, signal)
        guard let status = self.reap(timeout: timeout) else {
            kill(self.pid, SIGKILL)
            _ = self.reap(timeout: .seconds(5))
            throw Subprocess.Failed(description: "\(self.name) did not exit within \(timeout) of signal \(signal)")
        }
        return status
    }

    /// Waits for the exit; returns the exit code or nil when still running after `timeout`.
    public func waitForExit(timeout: Duration = .seconds(30)) -> Int32? { self.reap(timeout: timeout) }

    private func reap(timeout: Duration) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = ContinuousClock.now + timeout
        repeat {
            var status: Int32 = 0
            let r = waitpid(self.pid, &status, WNOHANG)
            if r == self.pid {
                let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                self.exitStatus = code
                return code
            }
            if timeout == .zero { return nil }
            usleep(20_000)
        } while ContinuousClock.now < deadline
        return nil
    }

    /// A port for a service to listen on, below the kernel's ephemeral range (32768-60999 here): a port taken from
    /// that range and released could be handed to any outgoing connection or `bind(0)` (a webhook receiver, a
    /// client's source port) before the service binds it, and the test would then talk to someone else.
    public static func freePort() throws -> Int {
        for _ in 0..<2000 {
            let port = nextPort.withLock { next -> Int in
                defer { next = next >= 29_999 ? 20_000 : next + 1 }
                return next
            }
            if canBind(port) { return port }
        }
        throw Subprocess.Failed(description: "no free port in 20000-29999")
    }

    /// Where the next port search starts: spread by process, so consecutive runs do not reuse ports in TIME_WAIT.
    static let nextPort = Mutex(20_000 + Int(getpid() % 9_000))

    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let len = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 } }
    }
}
