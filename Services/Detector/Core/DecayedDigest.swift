/// What a detector channel needs of a sketch of its recent values: add one, read a quantile.
protocol RangeSketch: Sendable {
    init(memory: Int)
    /// Adds `x` with `weight` (1 for an ordinary value); `decay` (0 < decay <= 1) is how much every earlier value's
    /// weight keeps.
    mutating func add(_ x: Float, decay: Float, weight: Float)
    /// The q-quantile of the values held; nil while empty.
    func quantile(_ q: Float) -> Float?
    /// Two quantiles, `a` <= `b` (one pass where the sketch can).
    func quantiles(_ a: Float, _ b: Float) -> (Float, Float)?
}

extension RangeSketch {
    func quantiles(_ a: Float, _ b: Float) -> (Float, Float)? {
        guard let x = self.quantile(a), let y = self.quantile(b) else { return nil }
        return (x, y)
    }
}

/// A quantile sketch of the last values of a stream in fixed memory: at most `capacity` centroids (a mean and a
/// weight), sorted by mean, which forget exponentially (each value's weight keeps `decay` per later value, so the
/// sketch describes about the last `1 / (1 - decay)` values, as a sliding window of that length would).
///
/// Why this shape: the detectors test a value against the extreme quantiles (0.1% to 99.9%) of thousands of past
/// values, which an exact window holds in 32 KB per test. A merging digest (Dunning's t-digest) keeps its
/// resolution where it is needed: when a value arrives and the centroids are full, the adjacent pair whose merged
/// weight is smallest relative to q(1 - q) at their boundary is merged, so the tails stay in small centroids (often
/// single values) and the middle in large ones. `make eval` measures what it costs against the exact window.
///
/// Forgetting without touching every weight on each value: a new value gets weight `unit`, which grows by
/// `1 / decay` per value, so older weights shrink relative to it; every weight is rescaled when `unit` grows large.
struct DecayedDigest<let capacity: Int>: RangeSketch, Equatable {
    private var means: InlineArray<capacity, Float>
    private var weights: InlineArray<capacity, Float>
    private var used: Int32 = 0
    private var unit: Float = 1

    init(memory: Int = 0) {
        self.means = .init(repeating: 0)
        self.weights = .init(repeating: 0)
    }

    static func == (a: Self, b: Self) -> Bool {
        guard a.used == b.used, a.unit == b.unit else { return false }
        for i in 0..<Int(a.used) where a.means[i] != b.means[i] || a.weights[i] != b.weights[i] { return false }
        return true
    }

    var isEmpty: Bool { self.used == 0 }

    /// The weights' sum (summed when needed: 4 bytes a sketch matter at 2 KB a series).
    private var total: Float {
        var sum: Float = 0
        for i in 0..<Int(self.used) { sum += self.weights[i] }
        return sum
    }

    mutating func add(_ x: Float, decay: Float, weight: Float = 1) {
        guard x.isFinite else { return }
        self.unit /= decay
        if self.unit > 65_536 {
            // Float keeps 24 bits: rescaling at 2^16 leaves the smallest weights far above its resolution.
            for i in 0..<Int(self.used) { self.weights[i] /= self.unit }
            self.unit = 1
        }
        let n = Int(self.used)
        // Where `x` goes (the first mean not below it), and the weights' sum, in one pass.
        var at = n
        var sum: Float = 0
        for i in 0..<n {
            if at == n && !(self.means[i] < x) { at = i }
            sum += self.weights[i]
        }
        if n < capacity {
            var i = n
            while i > at {
                self.means[i] = self.means[i - 1]
                self.weights[i] = self.weights[i - 1]
                i -= 1
            }
            self.means[at] = x
            self.weights[at] = self.unit * weight
            self.used += 1
            return
        }
        let w = self.unit * weight
        let total = sum + w
        // The cheapest adjacent pair of the capacity + 1 centroids, the new one at `at` ("virtual" indexes), is merged;
        // the arrays are then moved only between the pair and `at` (usually the pair is the new value and a neighbour).
        var best = 0
        var bestCost = Float.infinity
        var cumulative: Float = 0
        @inline(__always) func consider(_ v: Int, _ left: Float, _ right: Float) {
            let q = (cumulative + left) / total
            let cost = (left + right) / max(q * (1 - q), 1e-9)
            if cost < bestCost {
                bestCost = cost
                best = v
            }
            cumulative += left
        }
        for i in 0..<at { consider(i, self.weights[i], i + 1 < at ? self.weights[i + 1] : w) }
        if at < capacity { consider(at, w, self.weights[at]) }
        if at + 1 < capacity {
            for i in at..<(capacity - 1) { consider(i + 1, self.weights[i], self.weights[i + 1]) }
        }
        @inline(__always) func merge(into k: Int, _ m: Float, _ mw: Float) {
            let merged = self.weights[k] + mw
            self.means[k] = (self.means[k] * self.weights[k] + m * mw) / merged
            self.weights[k] = merged
        }
        if best == at - 1 {
            merge(into: at - 1, x, w)
        } else if best == at {
            // (The new value is the pair's left one: the same sum, in the virtual order.)
            let merged = w + self.weights[at]
            self.means[at] = (x * w + self.means[at] * self.weights[at]) / merged
            self.weights[at] = merged
        } else if best < at {
            // old[best] + old[best + 1]; old[best + 2 ..< at] one to the left; the new value at at - 1.
            merge(into: best, self.means[best + 1], self.weights[best + 1])
            var k = best + 1
            while k < at - 1 {
                self.means[k] = self.means[k + 1]
                self.weights[k] = self.weights[k + 1]
                k += 1
            }
            self.means[at - 1] = x
            self.weights[at - 1] = w
        } else {
            // old[best - 1] + old[best] at best; old[at ..< best - 1] one to the right; the new value at at.
            let merged = self.weights[best - 1] + self.weights[best]
            self.means[best] = (self.means[best - 1] * self.weights[best - 1] + self.means[best] * self.weights[best]) / merged
            self.weights[best] = merged
            var k = best - 1
            while k > at {
                self.means[k] = self.means[k - 1]
                self.weights[k] = self.weights[k - 1]
                k -= 1
            }
            self.means[at] = x
            self.weights[at] = w
        }
    }

    /// Interpolated between centroid means, each taken to sit at the middle of its weight.
    func quantile(_ q: Float) -> Float? {
        self.quantiles(q, q).map(\.0)
    }

    /// Both in one pass over the centroids (the detectors ask for a range's two ends at once).
    func quantiles(_ a: Float, _ b: Float) -> (Float, Float)? {
        let n = Int(self.used)
        guard n > 0 else { return nil }
        let total = self.total
        let targets = (a * total, b * total)
        var found: (Float?, Float?) = (nil, nil)
        var cumulative: Float = 0
        var previousMiddle: Float = 0
        for i in 0..<n {
            let middle = cumulative + self.weights[i] / 2
            while found.1 == nil && (found.0 == nil ? targets.0 : targets.1) <= middle {
                let target = found.0 == nil ? targets.0 : targets.1
                let value: Float
                if i > 0, middle > previousMiddle {
                    value = self.means[i - 1] + (self.means[i] - self.means[i - 1]) * ((target - previousMiddle) / (middle - previousMiddle))
                } else {
                    value = self.means[i]
                }
                if found.0 == nil { found.0 = value } else { found.1 = value }
            }
            if found.1 != nil { break }
            previousMiddle = middle
            cumulative += self.weights[i]
        }
        let last = self.means[n - 1]
        return (found.0 ?? last, found.1 ?? last)
    }
}

/// The exact sketch a `DecayedDigest` stands in for: the last `memory` values, in arrival order (a ring) and
/// sorted. 16 bytes a value: `make eval` runs it as the reference the digest's loss is measured against. Every value
/// counts fully (a window has no weights).
struct SlidingQuantiles: RangeSketch, Equatable {
    let capacity: Int
    private var ring: [Float] = []
    private var head = 0
    private var sorted: [Float] = []

    init(memory: Int) {
        self.capacity = max(memory, 1)
    }

    var count: Int { self.sorted.count }

    func quantile(_ q: Float) -> Float? {
        guard !self.sorted.isEmpty else { return nil }
        return self.sorted[Int(q * Float(self.sorted.count - 1))]
    }

    mutating func add(_ x: Float, decay: Float, weight: Float = 1) {
        guard x.isFinite else { return }
        if self.ring.count < self.capacity {
            self.ring.append(x)
        } else {
            let old = self.ring[self.head]
            self.ring[self.head] = x
            self.head = (self.head + 1) % self.capacity
            self.sorted.remove(at: Self.insertionIndex(old, in: self.sorted))
        }
        self.sorted.insert(x, at: Self.insertionIndex(x, in: self.sorted))
    }

    /// First index whose value is not below `x` (binary search).
    static func insertionIndex(_ x: Float, in a: [Float]) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
