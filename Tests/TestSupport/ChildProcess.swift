import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A spawned helper (a browser session, a proxy, a private server) whose exit can be polled from concurrent
/// closures; killed when dropped if still running.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `code` is guarded by `lock`.
    public let pid: pid_t
    private let lock = NSLock()
    private var code: Int32?

    public init(pid: pid_t) { self.pid = pid }

    /// Spawns `arguments` with the test runner's environment, output to `outputPath`.
    public convenience init(_ arguments: [String], outputPath: String? = nil) throws {
        self.init(pid: try Subprocess.spawn(arguments, environment: ProcessInfo.processInfo.environment, outputPath: outputPath))
    }

    deinit {
        if self.poll() == nil {
            kill(self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
        }
    }

    public var exitCode: Int32? { self.lock.withLock { self.code } }

    /// The exit code once the process has ended (reaped once), else nil.
    public func poll() -> Int32? {
        self.lock.withLock {
            if let code { return code }
            var status: Int32 = 0
            guard waitpid(self.pid, &status, WNOHANG) == self.pid else { return nil }
            self.code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            return self.code
        }
    }

    /// Sends `signal` and waits for the exit (at most `timeout`); the exit code, or nil if it did not end.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) -> Int32? {
        if let code = self.poll() { return code }
        kill(self.pid, signal)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = self.poll() { return code }
            usleep(20_000)
        }
        return nil
    }
}
