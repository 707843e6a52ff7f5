import Foundation
import HTTPTypes
import NIOCore
import NIOPosix
import Synchronization

/// Where request bodies are inflated and decoded: on threads of their own (`workers` of them), so a heavy body never
/// holds a thread that serves other requests (Swift's cooperative pool has one a core: two 6-second decodes once left
/// `/healthz` unanswered), and shared fairly between tenants.
///
/// Fair and work-conserving: a tenant alone may use every worker; when workers are busy, a freed one goes to the
/// waiting tenant with the fewest running, and among equals to the one served least recently (round robin, however
/// many requests each has queued). So a tenant's flood of batches
/// delays another tenant's request by at most one decode, which the per-request limits (bytes, events, spans,
/// elements) keep short. A tenant with `maxWaiting` requests already waiting is refused at once (429): waiting bodies
/// are held in memory.
public final class TenantWork: Sendable {
    struct State {
        var running: [String: Int] = [:]
        var busy = 0
        /// Per tenant, its waiting requests in arrival order.
        var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]
        /// Per tenant with work running or waiting, when it was last given a worker (a sequence number).
        var admitted: [String: Int] = [:]
        var sequence = 0

        /// Gives `tenant` a worker now if one is free and nobody waits for one.
        mutating func admitIfFree(_ tenant: String, workers: Int) -> Bool {
            guard self.busy < workers && self.waiting.isEmpty else { return false }
            self.busy += 1
            self.admit(tenant)
            return true
        }

        mutating func admit(_ tenant: String) {
            self.running[tenant, default: 0] += 1
            self.sequence += 1
            self.admitted[tenant] = self.sequence
        }
    }

    /// The workers' threads; nil when the turns are for async work (`turn`), which runs where it was called.
    let pool: NIOThreadPool?
    public let workers: Int
    public let maxWaiting: Int
    private let state = Mutex(State())

    /// `threads`: run `run`'s bodies on threads of their own (decoding); false for `turn` alone (queries).
    public init(workers: Int = System.coreCount, maxWaiting: Int = 64, threads: Bool = true) {
        self.workers = max(1, workers)
        self.maxWaiting = max(1, maxWaiting)
        self.pool = threads ? NIOThreadPool(numberOfThreads: self.workers) : nil
        self.pool?.start()
    }

    deinit {
        self.pool?.shutdownGracefully { _ in }
    }

    /// Runs `body` on a worker in `tenant`'s turn.
    public func run<T: Sendable>(tenant: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard let pool = self.pool else { preconditionFailure("TenantWork.run needs threads") }
        try await self.enter(tenant)
        defer { self.leave(tenant) }
        return try await pool.runIfActive(body)
    }

    /// Runs async `body` in `tenant`'s turn: at most `workers` at once, taken fairly as `run`'s are.
    public func turn<T: Sendable>(tenant: String, _ body: () async throws -> T) async throws -> T {
        try await self.enter(tenant)
        defer { self.leave(tenant) }
        return try await body()
    }

    /// Requests of `tenant` running or waiting (tests, metrics).
    public func load(_ tenant: String) -> (running: Int, waiting: Int) {
        self.state.withLock { ($0.running[tenant] ?? 0, $0.waiting[tenant]?.count ?? 0) }
    }

    private func enter(_ tenant: String) async throws {
        enum Admission { case now, wait, refuse }
        // Decided under the lock; a waiter's continuation is registered in the same critical section, so a worker
        // freed in between cannot be missed.
        let admission: Admission = self.state.withLock { s in
            if s.admitIfFree(tenant, workers: self.workers) { return .now }
            return (s.waiting[tenant]?.count ?? 0) >= self.maxWaiting ? .refuse : .wait
        }
        switch admission {
        case .now: return
        case .refuse:
            throw Problem(.tooManyRequests, code: "too_many_concurrent_requests", title: "Too many requests at once",
                          detail: "the tenant already has \(self.maxWaiting) requests waiting for a worker on this gateway; send fewer at once (TW_TENANT_MAX_WAITING)",
                          retryAfterSeconds: 1)
        case .wait:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = self.state.withLock { s in
                    // A worker may have been freed since the decision: take it rather than wait for the next one.
                    if s.admitIfFree(tenant, workers: self.workers) { return true }
                    s.waiting[tenant, default: []].append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    private func leave(_ tenant: String) {
        let next: CheckedContinuation<Void, Never>? = self.state.withLock { s in
            s.running[tenant, default: 1] -= 1
            if s.running[tenant] == 0 {
                s.running[tenant] = nil
                if s.waiting[tenant] == nil { s.admitted[tenant] = nil }
            }
            // The freed worker passes to the waiting tenant with the fewest running, the least recently served among
            // equals.
            var chosen: String?
            var best = (Int.max, Int.max)
            for t in s.waiting.keys {
                let key = (s.running[t] ?? 0, s.admitted[t] ?? 0)
                if key < best {
                    best = key
                    chosen = t
                }
            }
            guard let t = chosen else {
                s.busy -= 1
                return nil
            }
            let continuation = s.waiting[t]!.removeFirst()
            if s.waiting[t]!.isEmpty { s.waiting[t] = nil }
            s.admit(t)
            return continuation
        }
        next?.resume()
    }
}
