/// The bounds every event must keep. Each is documented in the README; exceeding one rejects the event with the
/// field and the limit, never truncates it.
public struct EventLimits: Sendable {
    /// Largest encoded event. Default: 32768 bytes.
    public var maxEventBytes = 32 * 1024
    /// event_id length; ids are UUIDs (36) or ULIDs (26), with room for prefixes. Default: 128.
    public var maxEventIDLength = 128
    /// tenant_id length. Default: 64.
    public var maxTenantIDLength = 64
    /// provider and operation length. Default: 64.
    public var maxNameLength = 64
    /// model length (Bedrock ARNs are long). Default: 256.
    public var maxModelLength = 256
    /// error_type length. Default: 64.
    public var maxErrorTypeLength = 64
    /// user_id, session_id, app, environment length. Default: 256.
    public var maxDimensionLength = 256
    /// Number of tags. Default: 32.
    public var maxTags = 32
    /// Tag key length. Default: 64.
    public var maxTagKeyLength = 64
    /// Tag value length. Default: 256.
    public var maxTagValueLength = 256
    /// Largest token count of any kind in one call. Default: 1,000,000,000.
    public var maxTokens: Int64 = 1_000_000_000
    /// Largest latency or time to first token. Default: 86,400,000 ms (one day).
    public var maxLatencyMs: Double = 86_400_000
    /// Largest cost of one call. Default: 100,000 USD.
    /// Largest integer a JSON number carries exactly in every reader (IEEE double): the bound on counters read from
    /// topics written by other producers.
    public static let maxExactJSONInteger: Int64 = 1 << 53

    public var maxCostNanos: Int64 = 100_000 * LLMEvent.nanosPerUSD
    /// How far in the future a timestamp may be (clock skew). Default: 300 s.
    public var maxFutureSkewSeconds: Int64 = 300
    /// How far in the past a timestamp may be. Default: 7 days. (Windows accept late events only up to the
    /// aggregator's allowed lateness; this bound only rejects what cannot be meant.)
    public var maxAgeSeconds: Int64 = 7 * 24 * 3600
    /// The setting `maxAgeSeconds` comes from, named in the rejection (the gateway sets it to its allowed lateness,
    /// so an event the aggregator would dead-letter is refused where the client sees why). Default: nil.
    public var ageLimitName: String?
    /// Nesting depth of unknown fields, which are ignored. Default: 8.
    public var maxNestingDepth = 8
    /// Number of fields in the event object, known and unknown. Default: 64.
    public var maxFields = 64

    public init() {}

    public static let `default` = EventLimits()
}
