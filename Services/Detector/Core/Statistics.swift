import Foundation

/// The error rate's baseline for the burst test: exponentially weighted error and request counts, with a weak
/// prior so a new series starts from a plausible 2% rather than from nothing.
struct ErrorBaseline: Sendable, Equatable {
    var errors: Float = 0
    var requests: Float = 0

    static let priorRequests = 50.0
    static let priorRate = 0.02
    /// Per-window decay (memory about 200 windows: error rates change slowly).
    static let decay = 0.995

    var rate: Double {
        (Double(self.errors) + Self.priorRate * Self.priorRequests) / (Double(self.requests) + Self.priorRequests)
    }

    /// Signed sqrt(2 x log-likelihood ratio) of `errors` in `requests` against the baseline rate (binomial): large
    /// only when both the excess and the evidence are; 0 when the rate is not above the baseline.
    func burstZ(errors k: Double, requests n: Double) -> Double {
        guard n > 0, k > 0 else { return 0 }
        let p0 = min(max(self.rate, 1e-6), 1 - 1e-6)
        let p = k / n
        guard p > p0 else { return 0 }
        var llr = k * log(p / p0)
        if n > k { llr += (n - k) * log((1 - p) / (1 - p0)) }
        return (2 * max(llr, 0)).squareRoot()
    }

    /// Folds a window in, with its errors capped near the baseline so a burst does not become the new normal.
    mutating func update(errors k: Double, requests n: Double) {
        let capped = min(k, n * min(1, self.rate * 2 + 0.02))
        self.errors = Float(Double(self.errors) * Self.decay + capped)
        self.requests = Float(Double(self.requests) * Self.decay + n)
    }
}
