import Events
import Foundation

/// A series dimension, declared once: its SQL column and JSON field (`rawValue`), its bound, and where it sits in a
/// `SeriesKey`. Every codec of a series (SQL columns, values and predicates, the Redis field, the rollup and anomaly
/// payloads, the query parameters) iterates over `SeriesDimension.allCases`; adding a dimension is a case here, its
/// property in `SeriesKey` (and subscript), a migration adding the column, and its documentation.
public enum SeriesDimension: String, CaseIterable, Sendable, Comparable {
    case app, environment, provider, model
    /// A promoted tag: its key and value (the tenant's `promoted_tags`; README, "Tags").
    case tagKey = "tag_key", tagValue = "tag_value"

    /// Longest value (as the event schema bounds the field).
    public var maxLength: Int {
        switch self {
        case .app, .environment: return EventLimits.default.maxDimensionLength
        case .provider: return EventLimits.default.maxNameLength
        case .model: return EventLimits.default.maxModelLength
        case .tagKey: return EventLimits.default.maxTagKeyLength
        case .tagValue: return EventLimits.default.maxTagValueLength
        }
    }

    public static func < (a: SeriesDimension, b: SeriesDimension) -> Bool { a.index < b.index }
    var index: Int { Self.allCases.firstIndex(of: self)! }

    /// What an event without `app` or `environment` is counted under (OpenLIT's and Langfuse's convention).
    public static let defaultValue = "default"
}

/// A series: the rollup row of one tenant at one *level*. A level is the set of dimensions the row is broken down
/// by; the other dimensions are `""` ("all"). Each event adds to one row per level (`SeriesKey.levels`):
///
/// - `{}`: the tenant's total;
/// - `{provider, model}`: one model, across apps and environments (the series of DESIGN.md);
/// - `{app}`, `{environment}`: per-app and per-environment totals;
/// - `{app, environment, provider, model}`: the full cross product, for any combination of filters;
/// - `{tag_key, tag_value}`: one row per promoted tag of the event (a tag is a breakdown of its own; it is not
///   crossed with the other dimensions, which would multiply the rows by every tag value).
///
/// A query needing dimensions D (filtered or broken down by) reads the smallest level holding D
/// (`SeriesSelection`), so no event is counted twice and the common questions read few rows.
public struct SeriesKey: Hashable, Sendable, Comparable {
    public var tenant: String
    public var app: String
    public var environment: String
    public var provider: String
    public var model: String
    public var tagKey: String
    public var tagValue: String

    public init(tenant: String, app: String = "", environment: String = "", provider: String, model: String, tagKey: String = "", tagValue: String = "") {
        self.tenant = tenant
        self.app = app
        self.environment = environment
        self.provider = provider
        self.model = model
        self.tagKey = tagKey
        self.tagValue = tagValue
    }

    public static func total(_ tenant: String) -> SeriesKey { SeriesKey(tenant: tenant, provider: "", model: "") }
    public var isTotal: Bool { self.level.isEmpty }

    public subscript(dimension: SeriesDimension) -> String {
        get {
            switch dimension {
            case .app: return self.app
            case .environment: return self.environment
            case .provider: return self.provider
            case .model: return self.model
            case .tagKey: return self.tagKey
            case .tagValue: return self.tagValue
            }
        }
        set {
            switch dimension {
            case .app: self.app = newValue
            case .environment: self.environment = newValue
            case .provider: self.provider = newValue
            case .model: self.model = newValue
            case .tagKey: self.tagKey = newValue
            case .tagValue: self.tagValue = newValue
            }
        }
    }

    /// The dimensions this row is broken down by (its non-empty ones).
    public var level: Set<SeriesDimension> { Set(SeriesDimension.allCases.filter { !self[$0].isEmpty }) }

    /// The levels stored, coarsest first. `provider` and `model` always go together (a model name is only unique
    /// within its provider).
    public static let levels: [Set<SeriesDimension>] = [[], [.provider, .model], [.app], [.environment], Self.fullLevel, Self.tagLevel]
    /// Every dimension but the tags: the cross product.
    public static let fullLevel: Set<SeriesDimension> = [.app, .environment, .provider, .model]
    public static let tagLevel: Set<SeriesDimension> = [.tagKey, .tagValue]
    /// The levels every event is added at (tags only when promoted).
    public static let eventLevels = Self.levels.filter { $0 != Self.tagLevel }

    /// The levels the detector watches: the tenant's total, each model, each app and each environment (the full
    /// cross product would multiply the series watched, each too sparse to learn from).
    public static let watchedLevels: [Set<SeriesDimension>] = [[], [.provider, .model], [.app], [.environment]]

    /// Whether the detector watches this series: a watched level, and not the per-app or per-environment total of
    /// events that named none (`default`), which for most tenants is the tenant's total again and would raise
    /// every anomaly twice.
    public var isWatched: Bool {
        let level = self.level
        guard Self.watchedLevels.contains(level) else { return false }
        return !(level == [.app] && self.app == SeriesDimension.defaultValue) && !(level == [.environment] && self.environment == SeriesDimension.defaultValue)
    }

    /// Whether rows of this series keep latency and TTFT sketches and errors by type (and, for the total, distinct
    /// users): the watched levels do; the multiplying ones (app x environment x model, tags) keep counters, tokens
    /// and cost only, which keeps their upserts cheap (`make bench`, realistic workload). Percentiles asked of them
    /// are null.
    public var keepsDistributions: Bool {
        // Without building `level` (a set): this is asked for every row of every batch. Watched levels are those
        // without tags where app, environment and the model are each either alone or absent.
        guard self.tagKey.isEmpty else { return false }
        let dimensions = (self.app.isEmpty ? 0 : 1) + (self.environment.isEmpty ? 0 : 1) + (self.model.isEmpty && self.provider.isEmpty ? 0 : 1)
        return dimensions <= 1
    }

    /// This key with the dimensions outside `level` emptied.
    public func projected(onto level: Set<SeriesDimension>) -> SeriesKey {
        var key = self
        for d in SeriesDimension.allCases where !level.contains(d) { key[d] = "" }
        return key
    }

    /// The full key of an event (missing app or environment counted under `SeriesDimension.defaultValue`).
    public init(event: LLMEvent) {
        self.init(tenant: event.tenantID ?? "", app: event.app ?? SeriesDimension.defaultValue, environment: event.environment ?? SeriesDimension.defaultValue,
                  provider: event.provider, model: event.model)
    }

    /// How the series is named to people: `openai/gpt-4o`, `app=search env=prod`, or `all traffic`.
    public var displayName: String {
        var parts: [String] = []
        if !self.app.isEmpty { parts.append("app=\(self.app)") }
        if !self.environment.isEmpty { parts.append("env=\(self.environment)") }
        if !self.provider.isEmpty || !self.model.isEmpty { parts.append("\(self.provider)/\(self.model)") }
        if !self.tagKey.isEmpty { parts.append("\(self.tagKey)=\(self.tagValue)") }
        return parts.isEmpty ? "all traffic" : parts.joined(separator: " ")
    }

    // MARK: Codec

    /// `app, environment, provider, model`: the SQL columns (after tenant_id) and JSON fields, in key order.
    public static let columns = SeriesDimension.allCases.map(\.rawValue).joined(separator: ", ")
    public var values: [String] { SeriesDimension.allCases.map { self[$0] } }

    /// The Redis field part: values joined by U+001F, which no value can hold (control characters are refused).
    public var fieldText: String { self.values.joined(separator: "\u{1F}") }
    public init?(tenant: String, fieldText: Substring) {
        let parts = fieldText.split(separator: "\u{1F}", omittingEmptySubsequences: false)
        guard parts.count == SeriesDimension.allCases.count else { return nil }
        self.init(tenant: tenant, provider: "", model: "")
        for (d, v) in zip(SeriesDimension.allCases, parts) { self[d] = String(v) }
    }

    /// `"app":"…","environment":"…","provider":"…","model":"…"` (no braces), for hand-written payloads.
    public var jsonFields: String {
        SeriesDimension.allCases.map { "\"\($0.rawValue)\":\(jsonStringLiteral(self[$0]))" }.joined(separator: ",")
    }

    public static func < (a: SeriesKey, b: SeriesKey) -> Bool {
        // Field by field in key order (`SeriesDimension.allCases`), without building arrays: batches sort thousands of
        // keys before writing them.
        if a.tenant != b.tenant { return a.tenant < b.tenant }
        for d in SeriesDimension.allCases where a[d] != b[d] { return a[d] < b[d] }
        return false
    }
}

/// Window sizes.
public enum Granularity: String, Sendable, CaseIterable {
    case minute = "1m"
    case hour = "1h"
    case day = "1d"

    public var microseconds: Int64 {
        switch self {
        case .minute: return 60_000_000
        case .hour: return 3_600_000_000
        case .day: return 86_400_000_000
        }
    }

    /// The start of the window holding `t` (UTC-aligned; days start at 00:00 UTC).
    public func windowStart(_ t: EventTimestamp) -> Int64 {
        let m = t.microsecondsSinceEpoch
        let size = self.microseconds
        return m >= 0 ? m / size * size : ((m - size + 1) / size) * size
    }

    public var table: String { "rollups_\(self.rawValue)" }
}

/// One window of one series.
public struct RollupKey: Hashable, Sendable {
    public var series: SeriesKey
    /// Window start, microseconds since the epoch.
    public var windowStart: Int64

    public init(series: SeriesKey, windowStart: Int64) {
        self.series = series
        self.windowStart = windowStart
    }
}

/// What a window holds: the counters (`UsageCounters.fields`) and the sketches (`RollupValues.sketches`), each
/// declared once. Every field merges by addition or register maximum, so deltas apply in any order and add up exactly.
public struct RollupValues: Sendable, Hashable {
    /// The additive counters, declared once (`UsageCounters.fields`: SQL columns, upsert, JSON), shared with the
    /// per-user totals.
    public var counters = UsageCounters()
    public var errorsByType: [String: Int64] = [:]
    public var latency = QuantileSketch()
    public var timeToFirstToken = QuantileSketch()
    /// Distinct `user_id`s and `session_id`s: kept in the tenant's total rows only (`RollupDeltas.add`).
    public var users = DistinctSketch()
    public var sessions = DistinctSketch()

    public init() {}

    /// Counts the event's user and session among the window's distinct ones.
    public mutating func addDistinct(_ event: LLMEvent) {
        if let user = event.userID { self.users.add(user) }
        if let session = event.sessionID { self.sessions.add(session) }
    }

    public mutating func add(_ event: LLMEvent) {
        self.addCounters(event)
        if event.status == .error { self.errorsByType[event.errorType ?? "unknown", default: 0] +|= 1 }
        self.latency.add(event.latencyMs)
        if let ttft = event.timeToFirstTokenMs { self.timeToFirstToken.add(ttft) }
    }

    /// Requests, errors, tokens and cost: what every row keeps.
    public mutating func addCounters(_ event: LLMEvent) { self.counters.add(event) }

    public var requests: Int64 { get { self.counters.requests } set { self.counters.requests = newValue } }
    public var errors: Int64 { get { self.counters.errors } set { self.counters.errors = newValue } }
    public var inputTokens: Int64 { get { self.counters.inputTokens } set { self.counters.inputTokens = newValue } }
    public var outputTokens: Int64 { get { self.counters.outputTokens } set { self.counters.outputTokens = newValue } }
    public var cachedInputTokens: Int64 { get { self.counters.cachedInputTokens } set { self.counters.cachedInputTokens = newValue } }
    public var reasoningTokens: Int64 { get { self.counters.reasoningTokens } set { self.counters.reasoningTokens = newValue } }
    public var costNanos: Int64 { get { self.counters.costNanos } set { self.counters.costNanos = newValue } }


    /// Adds `other`; counters saturate rather than trap (see `saturatingAdd`).
    public mutating func merge(_ other: RollupValues) {
        self.counters.merge(other.counters)
        for sketch in Self.sketches { sketch.merge(&self, other) }
    }

    /// `{"rate_limit":3}` for the jsonb column.
    public var errorsByTypeJSON: String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, (k, v)) in self.errorsByType.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            writeJSONString(k, into: &out)
            out.append(contentsOf: Array(":\(v)".utf8))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// Deltas of many windows, grouped: what one batch of events adds.
public struct RollupDeltas: Sendable {
    public internal(set) var windows: [RollupKey: RollupValues] = [:]
    public let granularity: Granularity

    public init(granularity: Granularity) {
        self.granularity = granularity
    }

    /// Adds `event` to its window at every level (`SeriesKey.levels`): one row per level, and one per promoted tag
    /// (`promoted`: key -> value, as the ingestor resolved them; see `PromotedTags`).
    public mutating func add(_ event: LLMEvent, promoted: [String: String] = [:]) {
        let start = self.granularity.windowStart(event.timestamp)
        let full = SeriesKey(event: event)
        for level in SeriesKey.eventLevels {
            let key = RollupKey(series: full.projected(onto: level), windowStart: start)
            if key.series.keepsDistributions {
                self.windows[key, default: RollupValues()].add(event)
            } else {
                self.windows[key, default: RollupValues()].addCounters(event)
            }
            if level.isEmpty { self.windows[key]!.addDistinct(event) }
        }
        for (key, value) in promoted {
            let series = SeriesKey(tenant: full.tenant, provider: "", model: "", tagKey: key, tagValue: value)
            self.windows[RollupKey(series: series, windowStart: start), default: RollupValues()].addCounters(event)
        }
    }

    public var isEmpty: Bool { self.windows.isEmpty }
}

/// The `tw-tags` header (`EventHeaders.promotedTags`): an event's promoted tags as the ingestor resolved them.
public enum PromotedTags {
    public static func header(_ tags: [String: String]) -> String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (i, (key, value)) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            writeJSONString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            writeJSONString(value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    static let malformed = SketchError(message: "header \(EventHeaders.promotedTags): must be a JSON object of at most \(EventLimits.default.maxTags) tags")
    static let unbounded = SketchError(message: "header \(EventHeaders.promotedTags): tag keys and values must be bounded text")

    /// Non-empty, at most `max` characters, no control character; ASCII (nearly every tag) in one pass over the bytes.
    static func bounded(_ text: String, _ max: Int) -> Bool {
        guard !text.isEmpty else { return false }
        var ascii = true
        for b in text.utf8 {
            if b < 0x20 || b == 0x7F { return false }
            if b >= 0x80 { ascii = false }
        }
        if ascii { return text.utf8.count <= max }
        return text.unicodeScalars.count <= max && !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    }

    /// Reads the header; anything but an object of at most `EventLimits.maxTags` bounded strings without control
    /// characters is refused (a direct producer can write llm.events.v1 headers too).
    public static func parse(_ bytes: [UInt8]?) throws -> [String: String] {
        guard let bytes, !bytes.isEmpty else { return [:] }
        let limits = EventLimits.default
        let malformed = Self.malformed, unbounded = Self.unbounded
        guard bytes.count <= 64 * 1024 else { throw malformed }
        // The strict scanner, not Foundation's JSONSerialization: every event of a tenant with promoted tags carries
        // this header, and the tree Foundation builds was a fifth of the aggregator's decoding time.
        return try bytes.withUnsafeBytes { raw throws -> [String: String] in
            var s = JSONScanner(raw)
            var out: [String: String] = [:]
            do {
                try s.expect(UInt8(ascii: "{"), "an object")
                if !s.consume(UInt8(ascii: "}")) {
                    repeat {
                        guard s.peek() == UInt8(ascii: "\"") else { throw malformed }
                        let key = try s.readString(maxLength: limits.maxTagKeyLength * 4)
                        try s.expect(UInt8(ascii: ":"), "':'")
                        guard s.peek() == UInt8(ascii: "\"") else { throw unbounded }
                        let value = try s.readString(maxLength: limits.maxTagValueLength * 4)
                        guard out.count < limits.maxTags else { throw malformed }
                        guard Self.bounded(key, limits.maxTagKeyLength), Self.bounded(value, limits.maxTagValueLength) else { throw unbounded }
                        guard out.updateValue(value, forKey: key) == nil else { throw malformed }
                    } while s.consume(UInt8(ascii: ","))
                    try s.expect(UInt8(ascii: "}"), "',' or '}'")
                }
                s.skipWhitespace()
                guard s.isAtEnd else { throw malformed }
            } catch let error as SketchError {
                throw error
            } catch let error as JSONScanner.SyntaxError where error.isTooLong {
                throw unbounded
            } catch {
                throw malformed
            }
            return out
        }
    }
}

/// A 64-bit FNV-1a hash of UTF-8 bytes and integers, the same in every process (Swift's `Hasher` is seeded per
/// process): the order in which a statement sends its rows, so that every writer of a row takes its locks in one order.
struct StableHash {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ s: String) {
        // Each string ends with a byte UTF-8 never holds, so ("ab", "c") and ("a", "bc") differ.
        for byte in s.utf8 { self.add(byte: byte) }
        self.add(byte: 0xff)
    }

    mutating func add(_ n: Int64) {
        var n = UInt64(bitPattern: n)
        for _ in 0..<8 {
            self.add(byte: UInt8(truncatingIfNeeded: n))
            n >>= 8
        }
    }

    private mutating func add(byte: UInt8) {
        self.value = (self.value ^ UInt64(byte)) &* 0x100_0000_01b3
    }
}

/// `rows` in the order of `lockOrder` of their keys (a `StableHash`, computed once a row): the order every statement
/// writing rollup or per-user rows sends them in (`RollupStore.write` says why).
func inLockOrder<Key, Value>(_ rows: [(key: Key, value: Value)], _ lockOrder: (Key) -> UInt64) -> [(key: Key, value: Value)] {
    rows.map { (lockOrder($0.key), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
}

extension RollupKey {
    /// `StableHash` of the key: upserts send their rows in this order.
    var lockOrder: UInt64 {
        var h = StableHash()
        h.add(self.series.tenant)
        h.add(self.windowStart)
        for d in SeriesDimension.allCases { h.add(self.series[d]) }
        return h.value
    }
}
