import Events

/// The counters every rollup row and every per-user total keeps: the declaration drives the SQL (columns, upsert, sums) and the JSON answers.
public struct UsageCounters: Sendable, Hashable {
    public var requests: Int64 = 0
    public var errors: Int64 = 0
    public var inputTokens: Int64 = 0
    public var outputTokens: Int64 = 0
    public var cachedInputTokens: Int64 = 0
    public var reasoningTokens: Int64 = 0
    public var costNanos: Int64 = 0

    public init() {}

    /// Column (and JSON field) names with their counters, in order. Cost is stored in nano-dollars and answered as
    /// exact decimal dollars (`cost_usd`). (Key paths are not `Sendable`; this array is a constant, never mutated.)
    nonisolated(unsafe) public static let fields: [(column: String, keyPath: WritableKeyPath<UsageCounters, Int64>)] = [
        ("requests", \.requests), ("errors", \.errors), ("input_tokens", \.inputTokens), ("output_tokens", \.outputTokens),
        ("cached_input_tokens", \.cachedInputTokens), ("reasoning_tokens", \.reasoningTokens), ("cost_nanos", \.costNanos),
    ]

    public mutating func add(_ event: LLMEvent) {
        self.requests +|= 1
        if event.status == .error { self.errors +|= 1 }
        self.inputTokens +|= event.inputTokens
        self.outputTokens +|= event.outputTokens
        self.cachedInputTokens +|= event.cachedInputTokens ?? 0
        self.reasoningTokens +|= event.reasoningTokens ?? 0
        self.costNanos +|= event.costNanos ?? 0
    }

    /// Field by field rather than over `fields`: a key path applied in a loop goes through the runtime, and this runs
    /// for every key an event adds to (a tenth of the aggregator's time in `make bench`'s realistic workload).
    /// `UsageCountersTests` checks it covers every field.
    public mutating func merge(_ other: UsageCounters) {
        self.requests +|= other.requests
        self.errors +|= other.errors
        self.inputTokens +|= other.inputTokens
        self.outputTokens +|= other.outputTokens
        self.cachedInputTokens +|= other.cachedInputTokens
        self.reasoningTokens +|= other.reasoningTokens
        self.costNanos +|= other.costNanos
    }

    /// The counter of `fields[index]`, without a key path (the statements' hot loop; checked like `merge`).
    @inline(__always) public func value(at index: Int) -> Int64 {
        switch index {
        case 0: self.requests
        case 1: self.errors
        case 2: self.inputTokens
        case 3: self.outputTokens
        case 4: self.cachedInputTokens
        case 5: self.reasoningTokens
        default: self.costNanos
        }
    }

    /// `{"requests":..,"errors":..,"error_rate":..,"input_tokens":..,...,"cost_usd":"0.0123"}`.
    public var json: String {
        var parts: [String] = []
        for field in Self.fields {
            if field.column == "cost_nanos" {
                parts.append("\"cost_usd\":\(LLMEvent.decimalUSD(nanos: self.costNanos))")
            } else {
                parts.append("\"\(field.column)\":\(self[keyPath: field.keyPath])")
            }
            if field.column == "errors" {
                // As the other answers print ratios: 0 and 1 as integers, others in the shortest exact text.
                let rate = Double(self.errors) / Double(max(self.requests, 1))
                parts.append("\"error_rate\":" + (self.requests == 0 ? "null" : rate == rate.rounded() ? String(Int64(rate)) : "\(rate)"))
            }
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}
