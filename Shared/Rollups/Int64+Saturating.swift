extension Int64 {
    /// `self + other`, clamped to Int64's range instead of trapping. Rollup counters are sums of bounded event
    /// fields and stay far below the bound in practice; a message from a hostile producer on a rollup topic must
    /// still not be able to crash the service that merges it, so every merge adds this way.
    @inlinable
    public func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = self.addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }

    @inlinable
    public static func +|= (lhs: inout Int64, rhs: Int64) { lhs = lhs.saturatingAdd(rhs) }
}

infix operator +|= : AssignmentPrecedence
