import Events

/// One model call reported by two instrumentations (the Anthropic SDK's own span and OpenLLMetry's `anthropic.chat`,
/// or OpenLLMetry's and the OpenTelemetry project's openai instrumentation) is counted once.
///
/// How a duplicate is recognised, within one export request:
/// 1. Spans with the provider's response id (`gen_ai.response.id`) share an event id (`GenAISpanMapping`), so the
///    first is kept and the others dropped here; one arriving in a later request is dropped by the ingestor's
///    event-id deduplication, like an exporter retry.
/// 2. Spans without a response id (failed calls, embeddings) from *different* instrumentation scopes of the same
///    resource are one call when they name the same provider, model and outcome and one span's time covers the
///    other's (an instrumentation that wraps the SDK's method starts before and ends after the SDK's own span).
///    Spans of one scope are never merged: they are separate calls however they overlap.
/// Which report is kept: the provider SDK's own (its attributes follow the provider's own accounting), then the
/// order of the request. A tenant can also stop counting a scope altogether (`otlp_ignored_scopes`).
public enum InstrumentationOverlap {
    public struct Report: Sendable {
        public var event: LLMEvent
        public var scope: String
        public var resource: Int
        public var start: UInt64
        public var end: UInt64
        public var hasResponseID: Bool

        public init(event: LLMEvent, scope: String, resource: Int, start: UInt64, end: UInt64, hasResponseID: Bool) {
            self.event = event
            self.scope = scope
            self.resource = resource
            self.start = start
            self.end = end
            self.hasResponseID = hasResponseID
        }
    }

    /// Scopes of providers' own SDKs, preferred over third-party instrumentations of the same call.
    static let providerScopePrefixes = ["com.anthropic.sdk"]
    /// How many neighbours (by start time) a span without a response id is compared with: bounds the work on a
    /// request of many concurrent calls; a pair farther apart than that is counted twice, never merged wrongly.
    static let window = 16

    static func rank(_ scope: String) -> Int { providerScopePrefixes.contains(where: { scope.hasPrefix($0) }) ? 0 : 1 }

    /// The events to publish, in request order, and how many reports were duplicates.
    public static func resolve(_ reports: [Report]) -> (events: [LLMEvent], duplicates: Int) {
        guard reports.count > 1 else { return (reports.map(\.event), 0) }
        // Preferred scopes first; stable, so the request's order decides among equals.
        let order = reports.indices.sorted { (rank(reports[$0].scope), $0) < (rank(reports[$1].scope), $1) }
        var dropped = [Bool](repeating: false, count: reports.count)
        var seen: Set<String> = []
        for i in order where !seen.insert(reports[i].event.eventID).inserted { dropped[i] = true }

        // Rule 2, per (resource, provider, model, outcome), only where more than one scope reports.
        struct Group: Hashable { var resource: Int; var provider: String; var model: String; var failed: Bool }
        var groups: [Group: [Int]] = [:]
        for i in order where !dropped[i] {
            let e = reports[i].event
            groups[Group(resource: reports[i].resource, provider: e.provider, model: e.model, failed: e.status == .error), default: []].append(i)
        }
        var preference = [Int](repeating: 0, count: reports.count)
        for (n, i) in order.enumerated() { preference[i] = n }
        // Scopes each kept report has already absorbed a duplicate from (one call has one span per instrumentation).
        var absorbed = [Set<String>](repeating: [], count: reports.count)
        var isDuplicate = [Bool](repeating: false, count: reports.count)
        for (_, members) in groups where Set(members.map { reports[$0].scope }).count > 1 {
            let byStart = members.sorted { reports[$0].start < reports[$1].start }
            var position: [Int: Int] = [:]
            for (n, i) in byStart.enumerated() { position[i] = n }
            for keeper in members where !isDuplicate[keeper] {
                let k = reports[keeper]
                let p = position[keeper]!
                for j in byStart[max(0, p - window)..<min(byStart.count, p + window + 1)] {
                    let r = reports[j]
                    guard j != keeper, !isDuplicate[j], preference[j] > preference[keeper], r.scope != k.scope,
                          !absorbed[keeper].contains(r.scope), absorbed[j].isEmpty,
                          !(r.hasResponseID && k.hasResponseID),
                          (r.start >= k.start && r.end <= k.end) || (k.start >= r.start && k.end <= r.end)
                    else { continue }
                    absorbed[keeper].insert(r.scope)
                    isDuplicate[j] = true
                    dropped[j] = true
                }
            }
        }
        var events: [LLMEvent] = []
        events.reserveCapacity(reports.count)
        for i in reports.indices where !dropped[i] { events.append(reports[i].event) }
        return (events, dropped.count(where: { $0 }))
    }
}

/// What one export request yields, mapped as the gateway maps it: every span through `GenAISpanMapping`, spans
/// of the tenant's ignored scopes left out, and duplicate reports of one call resolved (`InstrumentationOverlap`).
public struct GenAIExport: Sendable {
    public struct Rejection: Sendable {
        public var spanID: [UInt8]
        public var spanName: String
        public var reason: String
    }

    /// Events to publish, in request order.
    public var events: [LLMEvent] = []
    /// Spans that are not model calls.
    public var skipped = 0
    /// Model-call spans that cannot become events.
    public var rejected: [Rejection] = []
    /// Model-call spans of scopes the tenant does not count.
    public var ignored = 0
    /// Second reports of a call another instrumentation reported too.
    public var duplicates = 0

    public init(_ request: OTLPTraceRequest, ignoredScopes: Set<String> = [], limits: EventLimits = .default, now: EventTimestamp = .now()) {
        var reports: [InstrumentationOverlap.Report] = []
        for (resourceIndex, resourceSpans) in request.resourceSpans.enumerated() {
            for span in resourceSpans.spans {
                switch GenAISpanMapping.map(span, resource: resourceSpans.resource, limits: limits, now: now) {
                case .event(let event):
                    if ignoredScopes.contains(span.scope) {
                        self.ignored += 1
                        continue
                    }
                    reports.append(.init(event: event, scope: span.scope, resource: resourceIndex, start: span.startTimeUnixNano,
                                         end: span.endTimeUnixNano, hasResponseID: GenAISpanMapping.isResponseEventID(event.eventID)))
                case .skipped:
                    self.skipped += 1
                case .rejected(let reason):
                    self.rejected.append(Rejection(spanID: span.spanID, spanName: span.name, reason: reason))
                }
            }
        }
        (self.events, self.duplicates) = InstrumentationOverlap.resolve(reports)
    }
}
