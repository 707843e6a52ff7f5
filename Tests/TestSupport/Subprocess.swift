import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a command to completion with posix_spawn + waitpid. (Foundation's Process.waitUntilExit can hang inside
/// the test runner on Linux.)
public enum Subprocess {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Int32 {
        let pid = try self.spawn(arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new }, outputPath: nil)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status >> 8) & 0xFF
        guard status & 0x7F == 0, exit == 0 else { throw Failed(description: "\(arguments.joined(separator: " ")) exited with status \(status)") }
        return exit
    }

    /// Starts a process with exactly `environment`; stdout and stderr go to `outputPath` when given.
    public static func spawn(_ arguments: [String], environment: [String: String], outputPath: String?) throws -> pid_t {
        let env = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The child must not inherit the test runner's blocked signals (its threads block most of them), or a
        // server started through it would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let outputPath {
            posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        let rc = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard rc == 0 else { throw Failed(description: "spawn \(arguments[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The project's root folder (where Package.swift is).
    public static var projectRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

extension Subprocess {
    /// Runs a command to completion and returns its exit status and combined output (for curl, openssl, ...).
    public static func output(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let path = NSTemporaryDirectory() + "tw-out-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let pid = try self.spawn(arguments, environment: ProcessInfo.processInfo.environment, outputPath: path)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return (status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F), text)
    }
}
