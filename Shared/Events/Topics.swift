/// Topic names (DESIGN.md, "Topics"). Names are configuration; these are the defaults.
public struct Topics: Sendable, Hashable {
    /// Raw events from the gateway and from producers. Key: tenant_id. Default: `llm.events.raw.v1`.
    public var raw = "llm.events.raw.v1"
    /// Validated, normalized, priced events. Default: `llm.events.v1`.
    public var events = "llm.events.v1"
    /// Rejected input as received, with a reason header. Default: `llm.events.dlq.v1`.
    public var deadLetters = "llm.events.dlq.v1"
    /// Closed 1-minute windows. Default: `llm.rollups.v1`.
    public var rollups = "llm.rollups.v1"
    /// Anomalies. Default: `llm.anomalies.v1`.
    public var anomalies = "llm.anomalies.v1"

    public init() {}
}

/// Kafka header names the services write and read.
public enum EventHeaders {
    /// Topic, partition and offset of the raw message an output was made from (decimal strings).
    public static let sourceTopic = "tw-source-topic"
    public static let sourcePartition = "tw-source-partition"
    public static let sourceOffset = "tw-source-offset"
    /// Dead-letter reason: a stable code (`invalid_event`, `too_late`, `unknown_tenant`, ...).
    public static let reason = "tw-reason"
    /// The human-readable detail of a dead-letter reason (field and rule).
    public static let detail = "tw-detail"
    /// Schema version of the value. Always `1` for now.
    public static let schemaVersion = "tw-schema"
    /// Set to `1` on events whose model was not in the price table (priced 0).
    public static let unpriced = "tw-unpriced"
    /// Where `cost_usd` came from: `client` (sent with the event), `price_table`, or `unknown_model` (priced 0).
    public static let costSource = "tw-cost-source"
    /// The event's promoted tags as the aggregator rolls them up: a JSON object, key -> value (`other` beyond the
    /// tenant's cap), written by the ingestor from the tenant's `promoted_tags`. Absent: none.
    public static let promotedTags = "tw-tags"
}
