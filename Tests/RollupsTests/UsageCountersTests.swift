import Rollups
import Testing

/// `UsageCounters.merge` and `value(at:)` are written field by field for speed; these tie them to `fields`, the
/// declaration everything else reads, so a counter added there and forgotten here fails.
@Suite("Rollups: usage counters")
struct UsageCountersTests {
    /// Distinct values per field, so a field read or added in another's place shows.
    static func sample(_ base: Int64) -> UsageCounters {
        var c = UsageCounters()
        for (i, field) in UsageCounters.fields.enumerated() { c[keyPath: field.keyPath] = base * 100 + Int64(i + 1) }
        return c
    }

    @Test("merge adds every declared counter to its own field")
    func mergeCoversEveryField() {
        var a = Self.sample(1)
        a.merge(Self.sample(2))
        for (i, field) in UsageCounters.fields.enumerated() {
            #expect(a[keyPath: field.keyPath] == 300 + 2 * Int64(i + 1), "\(field.column)")
        }
    }

    @Test("merge saturates instead of overflowing")
    func mergeSaturates() {
        var a = UsageCounters()
        a.costNanos = .max - 1
        var b = UsageCounters()
        b.costNanos = 5
        a.merge(b)
        #expect(a.costNanos == .max)
    }

    @Test("value(at:) reads the field declared at that index")
    func valueAtIndex() {
        let c = Self.sample(7)
        for (i, field) in UsageCounters.fields.enumerated() { #expect(c.value(at: i) == c[keyPath: field.keyPath], "\(field.column)") }
    }
}
