import Synchronization

/// An in-process token bucket: `rate` tokens a second, at most `burst` saved. For bounds that protect this replica
/// (the per-tenant budgets shared by all replicas live in Redis, `RateLimiter`).
final class TokenBucket: Sendable {
    private struct State {
        var tokens: Double
        var last: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let state: Mutex<State>

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(burst, 1)
        self.state = Mutex(State(tokens: max(burst, 1), last: .now))
    }

    /// Takes one token; false when none is left.
    func take() -> Bool {
        let now = ContinuousClock.now
        return self.state.withLock { s in
            let elapsed = now - s.last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            s.tokens = min(self.burst, s.tokens + seconds * self.rate)
            s.last = now
            guard s.tokens >= 1 else { return false }
            s.tokens -= 1
            return true
        }
    }
}
