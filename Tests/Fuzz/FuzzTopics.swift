// libFuzzer entry point for what every consumer decodes from a topic (`make fuzz`): any producer can write to the
// topics, so each decoder must refuse bad input without trapping. One input is tried as each message kind:
// - llm.events.raw.v1 (ingestor) and llm.events.v1 (aggregator, whose decoder accepts any age): EventDecoder, then
//   the rollup arithmetic the aggregator applies to an accepted event;
// - llm.rollups.v1 (detector, query): RollupRecord(json:), then the merges, quantiles and re-encoding its readers do;
// - llm.anomalies.v1 (query, gateway stream): AnomalyMessage(json:), then its canonical form;
// - the tw-tags header of llm.events.v1 (aggregator): PromotedTags.parse, then its re-encoding.
// Built by swiftc with Shared/Events/*.swift and the Foundation-only files of Shared/Rollups as one module, outside
// SwiftPM, with -sanitize=fuzzer,address. Properties: re-encoded rollups and anomalies decode to themselves; merged
// counters never wrap below zero; canonical anomaly JSON is one line.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    let now = EventTimestamp(microsecondsSinceEpoch: 1_795_000_000_000_000)
    var anyAge = EventLimits()
    anyAge.maxAgeSeconds = 100 * 365 * 86400
    anyAge.maxFutureSkewSeconds = 100 * 365 * 86400
    for decoder in [EventDecoder(), EventDecoder(limits: anyAge), EventDecoder(limits: anyAge, skipsTags: true)] {
        guard let event = try? decoder.decode(bytes, now: now) else { continue }
        var deltas = RollupDeltas(granularity: .minute)
        deltas.add(event)
        deltas.add(event)
        for (key, values) in deltas.windows {
            precondition(values.requests == 2 && values.inputTokens >= 0 && values.costNanos >= 0, "event arithmetic wrapped")
            precondition(key.windowStart <= event.timestamp.microsecondsSinceEpoch, "window after its event")
        }
    }
    // A stored sketch as Postgres returns it (the aggregator reads these back to merge into): every reader refuses
    // or builds a sketch whose merge and JSON round-trip hold.
    if let entries = try? StoredSketch.entries(String(decoding: bytes, as: UTF8.self), column: "fuzz") {
        if var q = try? QuantileSketch(entries: entries) {
            let once = q
            q.merge(once)
            precondition(q.count >= once.count, "stored sketch merge wrapped")
            precondition((try? QuantileSketch(json: once.json)) == once, "stored sketch round trip")
        }
        if let d = try? DistinctSketch(entries: entries) {
            precondition((try? DistinctSketch(json: d.json)) == d && d.estimate >= 0, "stored registers round trip")
        }
    }
    // Either stored form of distinct-id registers and of quantile sketches, the dense and packed strings included.
    if let d = try? DistinctSketch(stored: String(decoding: bytes, as: UTF8.self), column: "fuzz") {
        precondition((try? DistinctSketch(stored: d.storedJSON, column: "fuzz")) == d && d.estimate >= 0, "dense registers round trip")
    }
    if var q = try? QuantileSketch(stored: String(decoding: bytes, as: UTF8.self), column: "fuzz") {
        precondition((try? QuantileSketch(stored: q.storedJSON, column: "fuzz")) == q, "packed sketch round trip")
        for p in [0.0, 0.5, 0.99, 1.0] { _ = q.quantile(p) }
        let once = q
        q.merge(once)
        precondition(q.count >= once.count && (try? QuantileSketch(stored: q.storedJSON, column: "fuzz")) == q, "merged packed sketch round trip")
    }
    if let record = try? RollupRecord(json: bytes) {
        var merged = record.values
        merged.merge(record.values)
        merged.merge(record.values)
        for v in [merged.requests, merged.errors, merged.inputTokens, merged.outputTokens, merged.costNanos, merged.latency.count] {
            precondition(v >= 0, "merged counter wrapped")
        }
        for q in [0.0, 0.5, 0.99, 1.0] { _ = merged.latency.quantile(q); _ = merged.timeToFirstToken.quantile(q) }
        _ = record.windowEnd
        _ = merged.users.estimate
        _ = merged.sessions.estimate
        let again = try? RollupRecord(json: record.jsonBytes())
        precondition(again == record, "re-encoded rollup does not decode to itself")
    }
    // The tw-tags header of llm.events.v1 (the aggregator reads it for the promoted tags).
    if let tags = try? PromotedTags.parse(bytes) {
        precondition((try? PromotedTags.parse(Array(PromotedTags.header(tags).utf8))) == tags, "re-encoded tags do not decode to themselves")
    }
    if let anomaly = try? AnomalyMessage(json: bytes) {
        let canonical = anomaly.canonicalJSON
        precondition(!canonical.contains("\n") && !canonical.contains("\r"), "canonical anomaly spans lines")
        let again = try? AnomalyMessage(json: Array(canonical.utf8))
        precondition(again == anomaly, "canonical anomaly does not decode to itself")
        _ = anomaly.windowStartMicros
    }
    return 0
}
