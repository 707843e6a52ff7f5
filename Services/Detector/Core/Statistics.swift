import Foundation

/// A robust, exponentially weighted baseline of one metric: level and scale (both updated with residuals clipped at
/// `clip` scales, so an outlier barely moves them), and a two-sided CUSUM of clipped z-scores for level shifts.
/// One pass, 20 bytes. Floats, not doubles: the state is per series and metric, and z-scores need no more.
struct RobustBaseline: Sendable, Equatable {
    var level: Float = 0
    var scale: Float = 0
    var cusumUp: Float = 0
    var cusumDown: Float = 0
    var count: Int32 = 0

    /// z of `x` against the baseline as it is (before `x` updates it). `noise` scales the learned scale for this
    /// window (residuals are learned in units of it; 1 when the noise does not vary).
    func z(_ x: Double, floor: Double, noise: Double = 1) -> Double {
        (x - Double(self.level)) / (max(Double(self.scale), floor) * noise)
    }

    /// Folds `x` in. Early on the weight is 1/count (a plain mean), later `alpha`.
    mutating func update(_ x: Double, z: Double, floor: Double, p: DetectorParameters, noise: Double = 1) {
        self.count &+= 1
        if self.count == 1 {
            self.level = Float(x)
            self.scale = Float(floor)
            return
        }
        let weight = max(p.alpha, 1 / Double(self.count))
        let s = max(Double(self.scale), floor) * noise
        let residual = x - Double(self.level)
        let bound = p.clip * s
        self.level = Float(Double(self.level) + weight * min(max(residual, -bound), bound))
        // Mean absolute deviation x 1.2533 estimates a normal standard deviation (in units of `noise`). The scale
        // learns three times slower than the level and from residuals clipped at two scales, so a deviation in
        // progress does not widen the band that would reveal it.
        let scaleWeight = max(p.alpha / 3, 1 / Double(self.count))
        self.scale = Float(Double(self.scale) + scaleWeight * (min(abs(residual), 2 * s) / noise * 1.2533 - Double(self.scale)))
        let clipped = min(max(z, -p.shiftClip), p.shiftClip)
        self.cusumUp = Float(max(0, Double(self.cusumUp) + clipped - p.shiftDrift))
        self.cusumDown = Float(max(0, Double(self.cusumDown) - clipped - p.shiftDrift))
    }

    /// After a shift has been reported, the new level is the normal one: start the evidence over.
    mutating func resetShift() {
        self.cusumUp = 0
        self.cusumDown = 0
    }
}

/// The request rate's hour-of-day profile: for each of the 24 hours, the mean requests per window of that hour on
/// each of the last `days` days (a ring), learned one completed hour at a time. 24 x days floats.
struct SeasonalProfile: Sendable, Equatable {
    var ring: [Float]
    var filled: [UInt8]
    /// The hour being accumulated (hours since the epoch) and its sum so far.
    var currentHour: Int64 = -1
    var currentSum: Float = 0

    init(days: Int) {
        self.ring = [Float](repeating: 0, count: 24 * days)
        self.filled = [UInt8](repeating: 0, count: 24)
    }

    var days: Int { self.ring.count / 24 }

    static func hour(of windowStart: Int64) -> Int64 {
        windowStart >= 0 ? windowStart / 3_600_000_000 : (windowStart - 3_599_999_999) / 3_600_000_000
    }

    /// Expected requests per window for the hour of `windowStart` and the spread across days; nil until the slot
    /// has `minDays` days.
    func expected(at windowStart: Int64, minDays: Int) -> (mean: Double, spread: Double)? {
        let hourOfDay = Int(((Self.hour(of: windowStart) % 24) + 24) % 24)
        let n = Int(self.filled[hourOfDay])
        guard n >= minDays else { return nil }
        var sum = 0.0, sumSquares = 0.0
        let base = hourOfDay * self.days
        for i in 0..<n {
            let v = Double(self.ring[base + i])
            sum += v
            sumSquares += v * v
        }
        let mean = sum / Double(n)
        return (mean, (max(0, sumSquares / Double(n) - mean * mean)).squareRoot())
    }

    /// Adds one window's requests; an hour is committed when the next one starts. `windowsPerHour` turns the hour's
    /// sum into a per-window mean (windows without traffic count as zero).
    mutating func add(windowStart: Int64, requests: Double, windowsPerHour: Double) {
        let hour = Self.hour(of: windowStart)
        if hour != self.currentHour {
            if self.currentHour >= 0 { self.commit(hour: self.currentHour, mean: Double(self.currentSum) / windowsPerHour) }
            self.currentHour = hour
            self.currentSum = 0
        }
        self.currentSum += Float(requests)
    }

    /// Records a whole hour's mean requests per window (live, or from the hourly rollups when rebuilding).
    mutating func commit(hour: Int64, mean: Double) {
        let hourOfDay = Int(((hour % 24) + 24) % 24)
        let day = Int(((hour / 24) % Int64(self.days) + Int64(self.days)) % Int64(self.days))
        self.ring[hourOfDay * self.days + day] = Float(mean)
        if Int(self.filled[hourOfDay]) < self.days { self.filled[hourOfDay] += 1 }
    }
}

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
