import Events
import Postgres
@testable import Rollups
import Testing
import TestSupport

/// Two transactions writing the same rows must take their locks in one order or they can deadlock: every statement
/// sends its rows in an order that depends on the keys alone, whatever order a batch's dictionary held them in.
@Suite("Rollups: rows in one lock order")
struct LockOrderTests {
    static func events(_ n: Int) -> [LLMEvent] {
        (0..<n).map { i in
            LLMEvent(eventID: "e\(i)", tenantID: "t\(i % 3)", timestamp: EventTimestamp(microsecondsSinceEpoch: 1_780_000_000_000_000 + Int64(i) * 7_000_000),
                     provider: "p", model: "m\(i % 4)", inputTokens: Int64(i), outputTokens: 1, latencyMs: 10, status: .ok,
                     userID: "u\(i % 50)", app: "a\(i % 5)", environment: i % 2 == 0 ? "prod" : "dev")
        }
    }

    @Test("a rollup statement's rows are in the same order however they were gathered")
    func rollupRows() {
        var deltas = RollupDeltas(granularity: .minute)
        for e in Self.events(300) { deltas.add(e, promoted: ["team": "x\(e.inputTokens % 7)"]) }
        let rows = Array(deltas.windows)
        #expect(rows.count > 100)
        var rng = SeededRandom(seed: 3)
        let reference = RollupStore.statement(rows, table: "rollups_1m")
        for _ in 0..<5 {
            let shuffled = rows.shuffled(using: &rng)
            #expect(shuffled.map(\.key) != rows.map(\.key))
            #expect(RollupStore.statement(shuffled, table: "rollups_1m").binaryParameters == reference.binaryParameters)
        }
    }

    @Test("a per-user statement's rows are in the same order however they were gathered")
    func userRows() {
        var deltas = UserTotalDeltas()
        for e in Self.events(300) { deltas.add(e) }
        let rows = Array(deltas.rows)
        var rng = SeededRandom(seed: 4)
        for form in [UserTotalsStore.Form.upsert, .update] {
            let reference = UserTotalsStore.statement(rows, form)
            let shuffled = rows.shuffled(using: &rng)
            #expect(shuffled.map(\.key) != rows.map(\.key))
            #expect(UserTotalsStore.statement(shuffled, form).binaryParameters == reference.binaryParameters)
        }
        // New users go by COPY, in the same order.
        let copied = UserTotalsStore.copyText(rows)
        #expect(UserTotalsStore.copyText(rows.shuffled(using: &rng)).bytes == copied.bytes)
        let keys = String(decoding: copied.bytes, as: UTF8.self).split(separator: "\n").map { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            return "\(fields[0])/\(fields[2])"
        }
        #expect(keys == inLockOrder(rows, \.lockOrder).map { "\($0.key.tenant)/\($0.key.user)" })
    }

    @Test("the order is a function of the key: equal keys hash equal, and strings cannot run into each other")
    func stableHash() {
        let key = RollupKey(series: SeriesKey(tenant: "t", app: "ab", provider: "p", model: "m"), windowStart: 60_000_000)
        #expect(key.lockOrder == RollupKey(series: SeriesKey(tenant: "t", app: "ab", provider: "p", model: "m"), windowStart: 60_000_000).lockOrder)
        // The same bytes split differently between two fields.
        #expect(key.lockOrder != RollupKey(series: SeriesKey(tenant: "t", app: "a", environment: "b", provider: "p", model: "m"), windowStart: 60_000_000).lockOrder)
        #expect(UserDayKey(tenant: "ab", day: 0, user: "c").lockOrder != UserDayKey(tenant: "a", day: 0, user: "bc").lockOrder)
    }
}
