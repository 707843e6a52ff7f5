import Events

/// A series: one (tenant, provider, model), or the tenant's total when provider and model are empty.
public struct SeriesKey: Hashable, Sendable, Comparable {
    public var tenant: String
    public var provider: String
    public var model: String

    public init(tenant: String, provider: String, model: String) {
        self.tenant = tenant
        self.provider = provider
        self.model = model
    }

    public static func total(_ tenant: String) -> SeriesKey { SeriesKey(tenant: tenant, provider: "", model: "") }
    public var isTotal: Bool { self.provider.isEmpty && self.model.isEmpty }

    public static func < (a: SeriesKey, b: SeriesKey) -> Bool {
        (a.tenant, a.provider, a.model) < (b.tenant, b.provider, b.model)
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

/// What a window holds. Every field merges by addition, so deltas apply in any order and add up exactly.
public struct RollupValues: Sendable, Hashable {
    public var requests: Int64 = 0
    public var errors: Int64 = 0
    public var errorsByType: [String: Int64] = [:]
    public var inputTokens: Int64 = 0
    public var outputTokens: Int64 = 0
    public var cachedInputTokens: Int64 = 0
    public var reasoningTokens: Int64 = 0
    public var costNanos: Int64 = 0
    public var latency = QuantileSketch()
    public var timeToFirstToken = QuantileSketch()

    public init() {}

    public mutating func add(_ event: LLMEvent) {
        self.requests +|= 1
        if event.status == .error {
            self.errors +|= 1
            self.errorsByType[event.errorType ?? "unknown", default: 0] +|= 1
        }
        self.inputTokens +|= event.inputTokens
        self.outputTokens +|= event.outputTokens
        self.cachedInputTokens +|= event.cachedInputTokens ?? 0
        self.reasoningTokens +|= event.reasoningTokens ?? 0
        self.costNanos +|= event.costNanos ?? 0
        self.latency.add(event.latencyMs)
        if let ttft = event.timeToFirstTokenMs { self.timeToFirstToken.add(ttft) }
    }

    /// Adds `other`; counters saturate rather than trap (see `saturatingAdd`).
    public mutating func merge(_ other: RollupValues) {
        self.requests +|= other.requests
        self.errors +|= other.errors
        for (k, v) in other.errorsByType { self.errorsByType[k, default: 0] +|= v }
        self.inputTokens +|= other.inputTokens
        self.outputTokens +|= other.outputTokens
        self.cachedInputTokens +|= other.cachedInputTokens
        self.reasoningTokens +|= other.reasoningTokens
        self.costNanos +|= other.costNanos
        self.latency.merge(other.latency)
        self.timeToFirstToken.merge(other.timeToFirstToken)
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
    public private(set) var windows: [RollupKey: RollupValues] = [:]
    public let granularity: Granularity

    public init(granularity: Granularity) {
        self.granularity = granularity
    }

    /// Adds `event` to its series' window and to its tenant's total.
    public mutating func add(_ event: LLMEvent) {
        let start = self.granularity.windowStart(event.timestamp)
        let tenant = event.tenantID ?? ""
        self.windows[RollupKey(series: SeriesKey(tenant: tenant, provider: event.provider, model: event.model), windowStart: start), default: RollupValues()].add(event)
        self.windows[RollupKey(series: .total(tenant), windowStart: start), default: RollupValues()].add(event)
    }

    public var isEmpty: Bool { self.windows.isEmpty }
}
