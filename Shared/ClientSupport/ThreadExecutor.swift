import Foundation

/// A serial executor backed by one dedicated OS thread.
///
/// Blocking C calls (libpq, hiredis, librdkafka polls) must never run on Swift's cooperative pool. An actor that owns a
/// non-thread-safe C connection uses one of these as its executor, so every method of that actor runs on the same
/// thread and may block it freely.
public final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked: `queue` and `stopped` are only touched with `condition` locked.
    private enum Work {
        case job(UnownedJob)
        case block(() -> Void)
    }

    private let condition = NSCondition()
    private var queue: [Work] = []
    private var stopped = false
    public let name: String

    public init(name: String) {
        self.name = name
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        self.submit(.job(UnownedJob(job)))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Runs `body` on this executor's thread and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            self.submit(.block { continuation.resume(with: Result { try body() }) })
        }
    }

    /// Lets the thread finish the work already queued, then exit. Work submitted afterwards runs anyway (the thread
    /// is only released once the queue is empty), so nothing waiting on it can hang.
    public func shutdown() {
        self.condition.lock()
        self.stopped = true
        self.condition.signal()
        self.condition.unlock()
    }

    private func submit(_ work: Work) {
        self.condition.lock()
        self.queue.append(work)
        self.condition.signal()
        self.condition.unlock()
    }

    private func loop() {
        while true {
            self.condition.lock()
            while self.queue.isEmpty && !self.stopped {
                self.condition.wait()
            }
            if self.queue.isEmpty && self.stopped {
                self.condition.unlock()
                return
            }
            let batch = self.queue
            self.queue.removeAll(keepingCapacity: true)
            self.condition.unlock()
            for work in batch {
                switch work {
                case .job(let job): job.runSynchronously(on: self.asUnownedSerialExecutor())
                case .block(let body): body()
                }
            }
        }
    }
}
