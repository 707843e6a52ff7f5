import Events
import Foundation
import Rollups
import Testing
import TestSupport

/// The exact q-quantile by the sketch's rank rule: the value at rank floor(q * (n - 1)) of the sorted values.
func exactQuantile(_ sorted: [Double], _ q: Double) -> Double { sorted[max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1)] }

@Suite("Rollups: sketches and windows")
struct RollupsTests {
    @Test("every quantile is within the stated 1% relative error", arguments: [1, 2, 3])
    func accuracy(seed: Int) {
        var rng = SeededRandom(seed: UInt64(seed))
        // Latency-like: log-normal-ish mix of fast and slow calls, 0.05 ms ... 60 s.
        let values = (0..<20_000).map { _ in Foundation.exp(Double.random(in: Foundation.log(0.05)...Foundation.log(60_000), using: &rng)) }
        var sketch = QuantileSketch()
        for v in values { sketch.add(v) }
        let sorted = values.sorted()
        for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = exactQuantile(sorted, q)
            let estimate = sketch.quantile(q)!
            #expect(abs(estimate - exact) <= QuantileSketch.relativeAccuracy * exact * (1 + 1e-9), "q=\(q): \(estimate) vs \(exact)")
        }
    }

    @Test("percentiles of a few calls are nearest-rank: the p99 of 148 ms and 284 ms is the slow one")
    func fewSamples() {
        var sketch = QuantileSketch()
        sketch.add(148)
        sketch.add(284)
        for (q, exact) in [(0.99, 284.0), (0.95, 284), (0.5, 148), (0.0, 148), (1.0, 284)] {
            let got = sketch.quantile(q) ?? -1
            #expect(abs(got - exact) <= QuantileSketch.relativeAccuracy * exact, "p\(q): \(got)")
        }
        var one = QuantileSketch()
        one.add(7)
        #expect(abs((one.quantile(0.99) ?? 0) - 7) <= 0.07)
    }

    @Test("hostile rollup and sketch messages are refused with the field named, and merges saturate instead of trapping")
    func hostileRollups() throws {
        func record(_ replace: [String: String]) -> [UInt8] {
            var fields: [String: String] = [
                "tenant_id": "\"acme\"", "provider": "\"openai\"", "model": "\"gpt-4o\"", "granularity": "\"1m\"", "window_start": "\"2026-11-19T08:00:00Z\"",
                "version": "1", "requests": "2", "errors": "0", "input_tokens": "1", "output_tokens": "1", "cached_input_tokens": "0", "reasoning_tokens": "0",
                "cost_nanos": "5", "latency_ms": #"{"sketch":{"233":2}}"#, "time_to_first_token_ms": #"{"sketch":{}}"#,
            ]
            fields.merge(replace) { _, new in new }
            return Array(("{" + fields.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}").utf8)
        }
        let good = try RollupRecord(json: record([:]))
        #expect(good.values.requests == 2 && good.values.latency.count == 2 && good.values.costNanos == 5)
        // A record from before nano-dollars (a rolling upgrade, an older read model) holds micro-dollars.
        var old = String(decoding: record([:]), as: UTF8.self)
        old = old.replacingOccurrences(of: "\"cost_nanos\":5", with: "\"cost_micros\":5")
        #expect(try RollupRecord(json: Array(old.utf8)).values.costNanos == 5_000)
        for (field, value, fragment) in [("requests", "-1", "requests"), ("requests", "1e30", "requests"), ("cost_nanos", "1.5", "cost_nanos"),
                                         ("version", "\"7\"", "version"), ("window_start", "\"2026-11-19T08:00:30Z\"", "window_start"),
                                         ("tenant_id", "\"bad tenant!\"", "tenant_id"), ("latency_ms", #"{"sketch":{"99999999":1}}"#, "sketch bucket"), ("latency_ms", #"{"sketch":{"35500":1}}"#, "sketch bucket"),
                                         ("latency_ms", #"{"sketch":{"z":-3}}"#, "sketch bucket z"), ("errors_by_type", "[1]", "errors_by_type")] {
            #expect(throws: SketchError.self, "\(field)=\(value)") { try RollupRecord(json: record([field: value])) }
            do { _ = try RollupRecord(json: record([field: value])) } catch { #expect("\(error)".contains(fragment), "\(field): \(error)") }
        }
        // The largest counters a record may carry, merged many times: clamped at Int64.max, never wrapped or trapped.
        let huge = try RollupRecord(json: record(["requests": "9007199254740992", "latency_ms": #"{"sketch":{"z":9007199254740992}}"#]))
        var merged = RollupValues()
        for _ in 0..<2000 { merged.merge(huge.values) }
        #expect(merged.requests == .max && merged.latency.count == .max)
        #expect(merged.latency.quantile(0.99) == 0)
    }

    @Test("merging sketches equals sketching the union; JSON round-trips exactly")
    func merge() throws {
        var a = QuantileSketch(), b = QuantileSketch(), all = QuantileSketch()
        for i in 0..<1000 {
            let v = Double(i % 97) * 3.7 + 0.0001 * Double(i % 3)
            if i % 2 == 0 { a.add(v) } else { b.add(v) }
            all.add(v)
        }
        var merged = a
        merged.merge(b)
        #expect(merged == all)
        #expect(try QuantileSketch(json: merged.json) == merged)
        #expect(merged.count == 1000)
        #expect(QuantileSketch().quantile(0.5) == nil)
        #expect(throws: (any Error).self) { try QuantileSketch(json: "{\"x\":1}") }
    }

    @Test("stored sketches are packed: round trips with the zero bucket, sub-millisecond and saturated counts; the object form is still read; hostile strings are refused naming the column")
    func packedSketch() throws {
        var rng = SeededRandom(seed: 7)
        var busy = QuantileSketch()
        for _ in 0..<5_000 { busy.add(Double(rng.next() % 9_000) + 50) }
        busy.add(0)
        busy.add(0.002)
        busy.add(86_400_000)
        let packed = busy.storedJSON
        #expect(packed.first == "\"" && packed.utf8.count * 3 < busy.json.utf8.count, "\(packed.utf8.count) against \(busy.json.utf8.count) bytes")
        #expect(try QuantileSketch(stored: packed, column: "latency_sketch") == busy)
        #expect(try QuantileSketch(stored: busy.json, column: "latency_sketch") == busy, "rows written before the packed form")
        #expect(QuantileSketch().storedJSON == "{}")
        let withEmptyBucket = try QuantileSketch(stored: #"{"8":0,"9":2}"#, column: "latency_sketch")
        #expect(try QuantileSketch(stored: withEmptyBucket.storedJSON, column: "latency_sketch") == withEmptyBucket, "an empty bucket is no bucket in either form")
        #expect(try QuantileSketch(stored: "{}", column: "latency_sketch").isEmpty)
        var saturated = QuantileSketch()
        saturated.add(5, count: .max)
        saturated.add(5, count: 3)
        saturated.add(0, count: 1 << 60)
        #expect(try QuantileSketch(stored: saturated.storedJSON, column: "ttft_sketch") == saturated, "a saturated count is read back, not refused")

        func packedString(_ bytes: [UInt8]) -> String { "\"" + Data(bytes).base64EncodedString() + "\"" }
        #expect(try QuantileSketch(stored: packedString([1, 3, 2, 0xAE, 0x03, 4, 2, 1]), column: "c") == QuantileSketch(stored: #"{"z":3,"215":4,"216":1}"#, column: "c"),
                "the zero bucket 3, then buckets 215 (zigzag 430) and 216 (delta 1)")
        let hostile: [(String, String)] = [
            ("\"not base64!\"", "alphabet"), ("\"" + packed.dropFirst(2), "cut base64"), (String(packed.dropLast()), "unterminated"),
            (packedString([2, 0, 0]), "format 2"), (packedString([1, 0, 1, 2]), "count missing"), (packedString([1, 0, 0, 9]), "a byte left over"),
            (packedString([1, 0, 1, 0xD0, 0x5D, 1]), "bucket 5,992, past the range"), (packedString([1, 0, 2, 4, 1, 0, 1]), "the same bucket twice"),
            (packedString([1, 0, 2, 4, 1, 1, 1]), "descending"), (packedString([1] + [UInt8](repeating: 0xFF, count: 10) + [1, 0]), "an 11-byte varint"),
            (packedString([1, 0, 0xFF, 0xFF, 0x03]), "more buckets than the range"), (packedString([1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0]), "a count past Int64"),
            ("\"\"", "empty"), ("[1]", "an array"),
        ]
        for (bad, why) in hostile {
            #expect(throws: SketchError.self, "\(why)") { try QuantileSketch(stored: bad, column: "latency_sketch") }
            do { _ = try QuantileSketch(stored: bad, column: "latency_sketch") } catch { #expect("\(error)".contains("latency_sketch"), "\(why): \(error)") }
        }
    }

    @Test("windows align to UTC minutes, hours and days, also before 1970")
    func windows() {
        let t = EventTimestamp(rfc3339: "2026-11-23T06:37:02.5Z")!
        #expect(EventTimestamp(microsecondsSinceEpoch: Granularity.minute.windowStart(t)).rfc3339 == "2026-11-23T06:37:00Z")
        #expect(EventTimestamp(microsecondsSinceEpoch: Granularity.hour.windowStart(t)).rfc3339 == "2026-11-23T06:00:00Z")
        #expect(EventTimestamp(microsecondsSinceEpoch: Granularity.day.windowStart(t)).rfc3339 == "2026-11-23T00:00:00Z")
        let old = EventTimestamp(rfc3339: "1969-12-31T23:59:30Z")!
        #expect(EventTimestamp(microsecondsSinceEpoch: Granularity.minute.windowStart(old)).rfc3339 == "1969-12-31T23:59:00Z")
    }

    @Test("a batch built from full keys and minutes derives every level, hour and day exactly as adding each event at each of them", arguments: [1, 2, 3])
    func batchEqualsReference(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var batch = RollupBatch()
        var reference = Granularity.allCases.map { RollupDeltas(granularity: $0) }
        for i in 0..<3_000 {
            let apps: [String?] = [nil, "search", "chat", "a\"b,c"]
            let status: LLMEvent.Status = rng.next() % 7 == 0 ? .error : .ok
            let event = LLMEvent(
                eventID: "e\(i)", tenantID: ["t1", "t2"][Int(rng.next() % 2)],
                timestamp: EventTimestamp(microsecondsSinceEpoch: 1_795_000_000_000_000 + Int64(rng.next() % (2 * 86_400_000_000))),
                provider: ["openai", "anthropic"][Int(rng.next() % 2)], model: ["m1", "m2", "m3"][Int(rng.next() % 3)],
                inputTokens: Int64(rng.next() % 5000), outputTokens: Int64(rng.next() % 900), cachedInputTokens: rng.next() % 2 == 0 ? nil : Int64(rng.next() % 100),
                latencyMs: Double(rng.next() % 9000) + 0.5, timeToFirstTokenMs: rng.next() % 3 == 0 ? nil : Double(rng.next() % 500),
                status: status, errorType: status == .error ? ["timeout", "rate_limit"][Int(rng.next() % 2)] : nil, costNanos: Int64(rng.next() % 1_000_000),
                userID: rng.next() % 4 == 0 ? nil : "u\(rng.next() % 300)", sessionID: rng.next() % 2 == 0 ? nil : "s\(rng.next() % 50)",
                app: apps[Int(rng.next() % 4)], environment: rng.next() % 3 == 0 ? nil : ["prod", "dev"][Int(rng.next() % 2)])
            var promoted: [String: String] = [:]
            if rng.next() % 2 == 0 { promoted["feature"] = "f\(rng.next() % 5)" }
            if rng.next() % 3 == 0 { promoted["team"] = "t\(rng.next() % 3)" }
            batch.add(event, promoted: promoted)
            for g in reference.indices { reference[g].add(event, promoted: promoted) }
        }
        for (g, expected) in zip(Granularity.allCases, reference) {
            let derived = batch.deltas(g)
            #expect(derived.windows.count == expected.windows.count, "\(g): \(derived.windows.count) rows, \(expected.windows.count) expected")
            #expect(derived.windows == expected.windows, "\(g): the derived rows equal the per-event ones")
        }
        #expect(reference[2].windows.keys.contains { $0.series.tagKey == "feature" } && reference[2].windows.values.contains { $0.users.estimate > 100 }, "the case holds tags and distinct users")
    }

    @Test("the promoted-tags header round-trips; anything but an object of bounded text is refused")
    func promotedTagsHeader() throws {
        let tags = ["feature": "search \"beta\"", "team": "é😀", "customer": "c\\1"]
        #expect(try PromotedTags.parse(Array(PromotedTags.header(tags).utf8)) == tags)
        #expect(try PromotedTags.parse(Array(#" { "a" : "b" } "#.utf8)) == ["a": "b"] && PromotedTags.parse(nil) == [:] && PromotedTags.parse(Array("{}".utf8)) == [:])
        let limits = EventLimits.default
        let tooMany = "{" + (0...limits.maxTags).map { "\"k\($0)\":\"v\"" }.joined(separator: ",") + "}"
        for bad in ["[]", "\"x\"", "{\"a\":1}", "{\"a\":null}", "{\"\":\"v\"}", "{\"a\":\"\"}", #"{"a":"x\u0001"}"#, "{\"a\":\"b\"} x", "{\"a\":\"b\",}",
                    "{\"a\":\"b\",\"a\":\"c\"}", "{\"a\":\"" + String(repeating: "v", count: limits.maxTagValueLength + 1) + "\"}", tooMany, "{", "{\"a\""] {
            #expect(throws: SketchError.self, "\(bad.prefix(60))") { try PromotedTags.parse(Array(bad.utf8)) }
        }
    }

    @Test("a row keeps distributions exactly at the watched levels")
    func distributionsAtWatchedLevels() {
        let full = SeriesKey(tenant: "t", app: "a", environment: "e", provider: "p", model: "m")
        for level in SeriesKey.levels {
            let key = level == SeriesKey.tagLevel ? SeriesKey(tenant: "t", provider: "", model: "", tagKey: "k", tagValue: "v") : full.projected(onto: level)
            #expect(key.keepsDistributions == SeriesKey.watchedLevels.contains(level), "\(level)")
        }
    }

    @Test("deltas count each event once at every level: its series, its tenant's total, its app, its environment and the full key")
    func deltas() {
        func event(_ model: String, status: LLMEvent.Status, minute: Int, cost: Int64) -> LLMEvent {
            LLMEvent(eventID: "e", tenantID: "acme", timestamp: EventTimestamp(microsecondsSinceEpoch: Int64(minute) * 60_000_000 + 1),
                     provider: "openai", model: model, inputTokens: 10, outputTokens: 5, cachedInputTokens: 2, latencyMs: 100,
                     status: status, errorType: status == .error ? "timeout" : nil, costNanos: cost)
        }
        var d = RollupDeltas(granularity: .minute)
        d.add(event("a", status: .ok, minute: 0, cost: 7))
        d.add(event("a", status: .error, minute: 0, cost: 3))
        d.add(event("b", status: .ok, minute: 1, cost: 1))
        let total0 = d.windows[RollupKey(series: .total("acme"), windowStart: 0)]!
        #expect(total0.requests == 2 && total0.errors == 1 && total0.errorsByType == ["timeout": 1] && total0.costNanos == 10)
        #expect(total0.inputTokens == 20 && total0.cachedInputTokens == 4 && total0.latency.count == 2)
        #expect(d.windows[RollupKey(series: SeriesKey(tenant: "acme", provider: "openai", model: "b"), windowStart: 60_000_000)]?.requests == 1)
        // Each minute at every level: the total, the model, the app and environment totals (events without them are
        // counted under "default") and the full key.
        #expect(d.windows.count == 2 * SeriesKey.eventLevels.count)
        let leaf = SeriesKey(tenant: "acme", app: "default", environment: "default", provider: "openai", model: "a")
        #expect(d.windows[RollupKey(series: leaf, windowStart: 0)]?.requests == 2)
        #expect(d.windows[RollupKey(series: SeriesKey(tenant: "acme", app: "default", provider: "", model: ""), windowStart: 0)]?.costNanos == 10)
        #expect(d.windows[RollupKey(series: SeriesKey(tenant: "acme", environment: "default", provider: "", model: ""), windowStart: 60_000_000)]?.requests == 1)
        #expect(total0.errorsByTypeJSON == "{\"timeout\":1}")
    }

    @Test("distinct users: within 3 standard errors (4.9%) from 10 to 200,000 ids, exact-ish when few; merging two windows counts the union once; JSON round-trips")
    func distinctSketch() throws {
        for n in [10, 1_000, 20_000, 200_000] {
            var sketch = DistinctSketch()
            for i in 0..<n { sketch.add("user-\(i)") }
            let error = abs(Double(sketch.estimate - Int64(n))) / Double(n)
            #expect(error <= 3 * DistinctSketch.standardError, "\(n) ids estimated \(sketch.estimate)")
        }
        // Two windows sharing half their users: the merge counts 15,000, not 20,000.
        var a = DistinctSketch(), b = DistinctSketch()
        for i in 0..<10_000 { a.add("u\(i)") }
        for i in 5_000..<15_000 { b.add("u\(i)") }
        var merged = a
        merged.merge(b)
        merged.merge(b)
        #expect(abs(Double(merged.estimate) - 15_000) / 15_000 <= 3 * DistinctSketch.standardError, "union estimated \(merged.estimate)")
        #expect(try DistinctSketch(json: merged.json) == merged)
        #expect(throws: SketchError.self) { try DistinctSketch(json: #"{"4096":1}"#) }
        #expect(throws: SketchError.self) { try DistinctSketch(json: #"{"7":60}"#) }
        // Stored: a few registers as the sparse object, many as one dense string a seventh of the object's size.
        #expect(a.storedJSON.first == "\"" && a.storedJSON.utf8.count < a.json.utf8.count / 5)
        #expect(try DistinctSketch(stored: a.storedJSON, column: "users_hll") == a)
        var few = DistinctSketch()
        for i in 0..<50 { few.add("u\(i)") }
        #expect(few.storedJSON == few.json)
        #expect(try DistinctSketch(stored: few.storedJSON, column: "users_hll") == few)
        let dense = a.storedJSON
        for bad in ["\"" + dense.dropFirst(5), String(dense.dropLast()), "\"" + String(repeating: "!", count: dense.utf8.count - 2) + "\"",
                    "\"" + Data(repeating: 60, count: DistinctSketch.registerCount).base64EncodedString() + "\""] {
            #expect { try DistinctSketch(stored: bad, column: "users_hll") } throws: { "\($0)".contains("users_hll") }
        }
        var d = RollupDeltas(granularity: .minute)
        d.add(LLMEvent(eventID: "e", tenantID: "t", timestamp: EventTimestamp(microsecondsSinceEpoch: 0), provider: "openai", model: "m", inputTokens: 1, outputTokens: 1,
                       latencyMs: 1, status: .ok, userID: "alice", sessionID: "s1"))
        #expect(d.windows[RollupKey(series: .total("t"), windowStart: 0)]?.users.estimate == 1)
        #expect(d.windows.filter { !$0.key.series.isTotal }.allSatisfy { $0.value.users.isEmpty })
    }
}

