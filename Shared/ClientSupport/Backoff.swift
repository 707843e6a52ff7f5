/// Exponential backoff with full jitter, for reconnect and retry loops.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    private var attempt = 0

    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before the next attempt; grows with each call.
    public mutating func next() -> Duration {
        defer { self.attempt += 1 }
        return self.delay(afterFailures: self.attempt)
    }

    /// The delay after `failures` earlier failures (0: the first retry), for callers that keep the count themselves.
    public func delay(afterFailures failures: Int) -> Duration {
        let factor = 1 << min(max(failures, 0), 16)
        let ceiling = min(self.initial * factor, self.maximum)
        let ms = Double(ceiling.components.seconds) * 1000 + Double(ceiling.components.attoseconds) / 1e15
        return .milliseconds(Int64(Double.random(in: 0...1) * ms) + 1)
    }

    public mutating func reset() { self.attempt = 0 }
}
