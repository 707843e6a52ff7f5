import Synchronization

/// A connection that a `ConnectionPool` can lend.
public protocol PooledConnection: AnyObject, Sendable {
    /// True once the connection can no longer be used (the server went away, a protocol error); the pool then
    /// closes it instead of lending it again, and opens a fresh one on demand.
    var isBroken: Bool { get }
    func close() async
}

public struct PoolError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case timeout, closed }
    public let code: Code
    public let message: String
    public var description: String { self.message }
}

/// A bounded pool of connections, opened lazily and lent one caller at a time.
///
/// Callers beyond `maxConnections` wait in FIFO order up to `leaseTimeout`. A broken connection is dropped when it
/// comes back, so a restarted server is reconnected to on the next lease.
public final class ConnectionPool<Connection: PooledConnection>: Sendable {
    public typealias Connect = @Sendable () async throws -> Connection

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Lease, any Error>
    }

    private enum Lease: Sendable {
        case existing(Connection)
        case openNew
    }

    private struct State {
        var idle: [Connection] = []
        var open = 0
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
    }

    private let state = Mutex(State())
    private let connect: Connect
    public let maxConnections: Int
    public let leaseTimeout: Duration
    public let name: String

    public init(name: String, maxConnections: Int, leaseTimeout: Duration = .seconds(10), connect: @escaping Connect) {
        precondition(maxConnections > 0, "maxConnections must be positive")
        self.name = name
        self.maxConnections = maxConnections
        self.leaseTimeout = leaseTimeout
        self.connect = connect
    }

    /// Lends a connection to `body` and takes it back when `body` returns or throws.
    public func withConnection<R: Sendable>(_ body: (Connection) async throws -> R) async throws -> R {
        let connection = try await self.lease()
        do {
            let result = try await body(connection)
            await self.release(connection)
            return result
        } catch {
            await self.release(connection)
            throw error
        }
    }

    /// Closes idle connections and fails waiting callers; connections still lent are closed when they return.
    public func close() async {
        let (idle, waiters) = self.state.withLock { state in
            state.closed = true
            defer { state.idle = []; state.waiters = [] }
            return (state.idle, state.waiters)
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: PoolError(code: .closed, message: "\(self.name) pool is closed"))
        }
        for connection in idle { await connection.close() }
    }

    /// Number of open connections (idle and lent); for metrics and tests.
    public var openConnections: Int { self.state.withLock { $0.open } }

    // MARK: - Leasing

    private enum LeaseDecision { case use(Connection), open, wait, closed }
    private enum ReleaseDecision { case handOver(Waiter), openForWaiter(Waiter), keep, close }

    private func lease() async throws -> Connection {
        let decision: LeaseDecision = self.state.withLock { state in
            if state.closed { return .closed }
            while let connection = state.idle.popLast() {
                if !connection.isBroken { return .use(connection) }
                state.open -= 1
            }
            if state.open < self.maxConnections {
                state.open += 1
                return .open
            }
            return .wait
        }
        switch decision {
        case .use(let connection): return connection
        case .open: return try await self.openCounted()
        case .closed: throw PoolError(code: .closed, message: "\(self.name) pool is closed")
        case .wait:
            switch try await self.waitForLease() {
            case .existing(let connection): return connection
            case .openNew: return try await self.openCounted()
            }
        }
    }

    /// Opens a connection for a slot already counted in `open`; gives the slot back if connecting fails.
    private func openCounted() async throws -> Connection {
        do {
            return try await self.connect()
        } catch {
            self.slotFreed()
            throw error
        }
    }

    private func waitForLease() async throws -> Lease {
        let id = self.state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let timeout = self.leaseTimeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.failWaiter(id, PoolError(code: .timeout, message: "no \(self?.name ?? "") connection free within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate: Lease? = self.state.withLock { state in
                    // A connection may have come back between deciding to wait and getting here.
                    if let connection = state.idle.popLast() { return .existing(connection) }
                    if state.open < self.maxConnections {
                        state.open += 1
                        return .openNew
                    }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            self.failWaiter(id, CancellationError())
        }
    }

    private func failWaiter(_ id: UInt64, _ error: any Error) {
        let waiter = self.state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: error)
    }

    private func release(_ connection: Connection) async {
        let broken = connection.isBroken
        let decision: ReleaseDecision = self.state.withLock { state in
            if state.closed || broken {
                state.open -= 1
                if !state.closed, !state.waiters.isEmpty {
                    state.open += 1
                    return .openForWaiter(state.waiters.removeFirst())
                }
                return .close
            }
            if !state.waiters.isEmpty { return .handOver(state.waiters.removeFirst()) }
            state.idle.append(connection)
            return .keep
        }
        switch decision {
        case .handOver(let waiter): waiter.continuation.resume(returning: Lease.existing(connection))
        case .openForWaiter(let waiter):
            waiter.continuation.resume(returning: Lease.openNew)
            await connection.close()
        case .keep: break
        case .close: await connection.close()
        }
    }

    private func slotFreed() {
        let waiter = self.state.withLock { state -> Waiter? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.open -= 1
            return nil
        }
        // The slot passes straight to the next waiter, which opens its own connection.
        waiter?.continuation.resume(returning: .openNew)
    }
}
