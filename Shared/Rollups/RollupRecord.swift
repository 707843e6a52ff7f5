import Events
import Foundation

/// One window of one series as published on llm.rollups.v1 (and read back from Postgres): the window's full
/// values, not a delta. `version` grows with every update of the window, so a consumer keeps the highest it saw;
/// a late event's correction arrives as a higher version of the same window.
public struct RollupRecord: Sendable, Hashable {
    public var key: RollupKey
    public var granularity: Granularity
    public var version: Int64
    public var values: RollupValues

    public init(key: RollupKey, granularity: Granularity, version: Int64, values: RollupValues) {
        self.key = key
        self.granularity = granularity
        self.version = version
        self.values = values
    }

    public var windowEnd: Int64 { self.key.windowStart + self.granularity.microseconds }

    /// Compact JSON with percentiles precomputed for readers that only display, and the sketches for readers that
    /// merge windows.
    public func jsonBytes() -> [UInt8] {
        let v = self.values
        var out: [UInt8] = []
        out.reserveCapacity(512)
        func field(_ name: String, _ raw: String, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            writeJSONString(name, into: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: raw.utf8)
        }
        out.append(UInt8(ascii: "{"))
        field("tenant_id", jsonStringLiteral(self.key.series.tenant), first: true)
        out.append(UInt8(ascii: ","))
        out.append(contentsOf: self.key.series.jsonFields.utf8)
        field("granularity", jsonStringLiteral(self.granularity.rawValue))
        field("window_start", jsonStringLiteral(EventTimestamp(microsecondsSinceEpoch: self.key.windowStart).rfc3339))
        field("window_end", jsonStringLiteral(EventTimestamp(microsecondsSinceEpoch: self.windowEnd).rfc3339))
        field("version", String(self.version))
        for counter in UsageCounters.fields { field(counter.column, String(v.counters[keyPath: counter.keyPath])) }
        field("cost_usd", LLMEvent.decimalUSD(nanos: v.costNanos))
        for sketch in RollupValues.sketches { if let payload = sketch.payload(v) { field(sketch.payloadField, payload) } }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Reads a record written by `jsonBytes()`. The topic is open to any producer, so every field is checked before
    /// it is used: counters are exact integers in 0...2^53, the window is aligned to its granularity, names are
    /// bounded text; anything else throws a `SketchError` naming the field (the message is then skipped and counted).
    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxJSONBytes else { throw SketchError(message: "rollup larger than \(Self.maxJSONBytes) bytes") }
        guard let o = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw SketchError(message: "rollup must be an object") }
        func str(_ k: String, max: Int) throws -> String {
            guard let s = o[k] as? String, s.utf8.count <= max else { throw SketchError(message: "rollup field \(k): must be a string of at most \(max) bytes") }
            return s
        }
        func int(_ k: String) throws -> Int64 {
            guard let n = exactCount(o[k]) else { throw SketchError(message: "rollup field \(k): must be an integer in 0...2^53") }
            return n
        }
        guard let granularity = Granularity(rawValue: try str("granularity", max: 2)), let start = EventTimestamp(rfc3339: try str("window_start", max: 40)),
            start.microsecondsSinceEpoch % granularity.microseconds == 0
        else {
            throw SketchError(message: "rollup field window_start: must be an RFC 3339 time aligned to the granularity")
        }
        let limits = EventLimits.default
        let tenant = try str("tenant_id", max: limits.maxTenantIDLength)
        do { try LLMEvent.validateTenantID(tenant) } catch { throw SketchError(message: "rollup field tenant_id: \(error.reason)") }
        var values = RollupValues()
        for counter in UsageCounters.fields where counter.column != "cost_nanos" { values.counters[keyPath: counter.keyPath] = try int(counter.column) }
        // Records from before costs were carried in nano-dollars (a rolling upgrade, a Redis read model written by
        // an older query service) hold micro-dollars; they still read right.
        if o["cost_nanos"] == nil, o["cost_micros"] != nil {
            values.costNanos = try int("cost_micros").multipliedReportingOverflow(by: 1_000).partialValue
        } else {
            values.costNanos = try int("cost_nanos")
        }
        for sketch in RollupValues.sketches { try sketch.readPayload(&values, o[sketch.payloadField]) }
        self.init(
            key: RollupKey(series: try SeriesKey(tenant: tenant, jsonObject: o, what: "rollup"), windowStart: start.microsecondsSinceEpoch),
            granularity: granularity, version: try int("version"), values: values)
    }

    /// Largest rollup message read (a window's sketches have at most a few hundred buckets each).
    public static let maxJSONBytes = 1 << 20
}

extension SeriesKey {
    /// The dimensions of a payload read from a topic (any producer can write there): each a string of at most its
    /// bound without control characters; all but `provider` and `model` may be absent (written before they existed:
    /// "all").
    public init(tenant: String, jsonObject o: [String: Any], what: String) throws {
        self = .total(tenant)
        for d in SeriesDimension.allCases {
            guard let raw = o[d.rawValue] else {
                if ![.provider, .model].contains(d) { continue }
                throw SketchError(message: "\(what) field \(d.rawValue): must be a string")
            }
            guard let value = raw as? String, value.utf8.count <= d.maxLength || value.unicodeScalars.count <= d.maxLength,
                !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            else { throw SketchError(message: "\(what) field \(d.rawValue): must be a string of at most \(d.maxLength) characters without control characters") }
            self[d] = value
        }
    }
}
