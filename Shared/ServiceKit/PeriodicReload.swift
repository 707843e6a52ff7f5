import Logging
import ServiceLifecycle

/// Runs `reload` every `interval` until graceful shutdown (which ends the wait at once rather than holding the
/// service group up for a whole interval). A failed reload keeps what the caller had and is retried at the next
/// tick; `what` names it in the warning.
public struct PeriodicReload: Service {
    let interval: Duration
    let what: String
    let logger: Logger
    let reload: @Sendable () async throws -> Void

    public init(every interval: Duration, what: String, logger: Logger, reload: @escaping @Sendable () async throws -> Void) {
        self.interval = interval
        self.what = what
        self.logger = logger
        self.reload = reload
    }

    public func run() async throws {
        while true {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                return
            }
            do {
                try await self.reload()
            } catch {
                self.logger.warning("\(self.what) reload failed; keeping the previous one", metadata: ["error": "\(error)"])
            }
        }
    }
}
