import Events
import Foundation
import OTLP
import Testing

@Suite("One call reported by two instrumentations")
struct InstrumentationOverlapTests {
    func report(_ id: String, scope: String, start: UInt64, end: UInt64, status: LLMEvent.Status = .ok, model: String = "claude-3-5-haiku",
                resource: Int = 0, responseID: Bool = false) -> InstrumentationOverlap.Report {
        let event = LLMEvent(eventID: id, timestamp: EventTimestamp(microsecondsSinceEpoch: Int64(start / 1000)), provider: "anthropic", model: model,
                             inputTokens: 10, outputTokens: 5, latencyMs: Double(end - start) / 1e6, status: status,
                             errorType: status == .error ? "rate_limit" : nil)
        return .init(event: event, scope: scope, resource: resource, start: start, end: end, hasResponseID: responseID)
    }

    let sdk = "com.anthropic.sdk.python", openllmetry = "opentelemetry.instrumentation.anthropic", other = "opentelemetry.instrumentation.openai_v2"

    @Test("the same response id is one call; the provider SDK's report is kept wherever it stands in the request")
    func responseID() {
        let reports = [report("otlp-r-anthropic:msg_1", scope: openllmetry, start: 100, end: 900, responseID: true),
                       report("otlp-r-anthropic:msg_1", scope: sdk, start: 110, end: 890, responseID: true),
                       report("otlp-r-anthropic:msg_2", scope: sdk, start: 120, end: 880, responseID: true)]
        let (events, duplicates) = InstrumentationOverlap.resolve(reports)
        #expect(duplicates == 1)
        #expect(events.map(\.eventID) == ["otlp-r-anthropic:msg_1", "otlp-r-anthropic:msg_2"])
        #expect(events.first?.latencyMs == Double(890 - 110) / 1e6, "the SDK's span, not OpenLLMetry's")
    }

    @Test("without a response id: a failed call wrapped by another scope's span is one call")
    func containment() {
        let reports = [report("a", scope: openllmetry, start: 100, end: 900, status: .error),
                       report("b", scope: sdk, start: 110, end: 890, status: .error)]
        let (events, duplicates) = InstrumentationOverlap.resolve(reports)
        #expect(duplicates == 1 && events.map(\.eventID) == ["b"])
    }

    @Test("what is never merged: spans of one scope, disjoint times, other models or outcomes, other resources, two response ids")
    func neverMerged() {
        let cases: [[InstrumentationOverlap.Report]] = [
            [report("a", scope: sdk, start: 100, end: 900, status: .error), report("b", scope: sdk, start: 110, end: 890, status: .error)],
            [report("a", scope: openllmetry, start: 100, end: 200, status: .error), report("b", scope: sdk, start: 300, end: 400, status: .error)],
            [report("a", scope: openllmetry, start: 100, end: 900, status: .error, model: "claude-sonnet-4"), report("b", scope: sdk, start: 110, end: 890, status: .error)],
            [report("a", scope: openllmetry, start: 100, end: 900, status: .ok), report("b", scope: sdk, start: 110, end: 890, status: .error)],
            [report("a", scope: openllmetry, start: 100, end: 900, status: .error, resource: 1), report("b", scope: sdk, start: 110, end: 890, status: .error)],
            [report("otlp-r-anthropic:msg_1", scope: openllmetry, start: 100, end: 900, responseID: true),
             report("otlp-r-anthropic:msg_2", scope: sdk, start: 110, end: 890, responseID: true)],
        ]
        for reports in cases {
            let (events, duplicates) = InstrumentationOverlap.resolve(reports)
            #expect(duplicates == 0 && events.count == 2, "\(reports.map(\.event.eventID))")
        }
    }

    @Test("three instrumentations of one call count once; a burst of concurrent failures pairs one to one")
    func manyReports() {
        let three = [report("a", scope: openllmetry, start: 100, end: 900, status: .error),
                     report("b", scope: other, start: 105, end: 895, status: .error),
                     report("c", scope: sdk, start: 110, end: 890, status: .error)]
        #expect(InstrumentationOverlap.resolve(three).events.map(\.eventID) == ["c"])

        // 50 calls failing at once, each reported by both: 50 events, never fewer.
        var burst: [InstrumentationOverlap.Report] = []
        for i in 0..<50 {
            let t = UInt64(1_000 + i)
            burst.append(report("o\(i)", scope: openllmetry, start: t, end: t + 10_000, status: .error))
            burst.append(report("s\(i)", scope: sdk, start: t + 1, end: t + 9_000, status: .error))
        }
        let (events, duplicates) = InstrumentationOverlap.resolve(burst)
        #expect(events.count == 50 && duplicates == 50)
        // Only one instrumentation: nothing merged however the calls overlap.
        let single = burst.filter { $0.scope == openllmetry }
        #expect(InstrumentationOverlap.resolve(single).events.count == 50)
    }
}
