extension Severity {
    /// How bad an anomaly is for the people it touches, not how sure the detector is (that is the score; every
    /// anomaly has passed the detector's test already). Two numbers, per minute of the window:
    ///
    /// - **impact**: the requests the deviation touches: extra failed calls, `n (observed - expected)`, for the
    ///   error rate; the calls beyond the usual p95 (`slowShare`: 5% of them when only the p95 rose, half when the
    ///   median is beyond the usual p95 too, as when every call got slower), weighted by how many times slower
    ///   they were (`slowShare n (ratio - 1)`) for latency and time to first token; `n (ratio - 1)` for cost and output
    ///   tokens per request; the requests missing or extra, `|observed - expected|`, for the request rate.
    /// - **magnitude**: the size of the deviation: 10 percentage points of errors = 1; a latency, cost or token
    ///   ratio of 2 = 1 (`ratio - 1`); half the usual request rate missing or extra = 0.5.
    ///
    /// Critical: impact >= 30 requests a minute and magnitude >= 1. Warning: impact >= 3 a minute and magnitude
    /// >= 0.25. Info otherwise. So 36.8% of a busy model's calls failing (usual 0.7%, 200 calls a minute: impact
    /// 72, magnitude 3.6) is critical, and a p95 going from 1 to 3 s in a minute of 25 calls (impact 2.5) is info.
    /// Ratios are capped at 11 so one absurd window cannot make a quiet series critical.
    public static func assess(metric: DetectorMetric, observed: Double, expected: Double, requests: Double, interval: Int64, slowShare: Double = 0.05) -> Severity {
        let (perMinute, magnitude) = Self.impact(metric: metric, observed: observed, expected: expected, requests: requests, interval: interval, slowShare: slowShare)
        if perMinute >= 30 && magnitude >= 1 { return .critical }
        if perMinute >= 3 && magnitude >= 0.25 { return .warning }
        return .info
    }

    /// The share of a window's calls a latency anomaly touches: half when its median is beyond the usual p95 (every
    /// call got slower), else 5% (the p95 alone); `impact` weighs other metrics' calls whole.
    static func slowShare(_ metric: DetectorMetric, window o: WindowObservation, expected: Double) -> Double {
        metric == .latencyP95 && o.latencyP50 >= expected ? 0.5 : 0.05
    }

    /// The impact in requests a minute and the magnitude, as above (0 and 0 for what cannot be judged).
    static func impact(metric: DetectorMetric, observed: Double, expected: Double, requests: Double, interval: Int64, slowShare: Double = 0.05)
        -> (perMinute: Double, magnitude: Double) {
        guard observed.isFinite, expected.isFinite, requests.isFinite else { return (0, 0) }
        let minutes = max(Double(interval) / 60_000_000, 1e-9)
        let n = max(requests, 0)
        let ratio = expected > 0 ? min(observed / expected, 11) : (observed > 0 ? 11 : 1)
        let impact: Double
        let magnitude: Double
        switch metric {
        case .errorRate:
            impact = n * max(observed - expected, 0)
            magnitude = max(observed - expected, 0) / 0.1
        case .latencyP95, .timeToFirstTokenP95:
            impact = min(max(slowShare, 0.05), 1) * n * max(ratio - 1, 0)
            magnitude = max(ratio - 1, 0)
        case .costPerRequest, .outputTokensPerRequest:
            impact = n * max(ratio - 1, 0)
            magnitude = max(ratio - 1, 0)
        case .requestRate:
            impact = abs(observed - expected)
            magnitude = abs(observed - expected) / max(expected, 1)
        }
        return (impact / minutes, magnitude)
    }
}
