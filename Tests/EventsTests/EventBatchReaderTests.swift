import Events
import Testing

@Suite("Batch reader: a batch's events decoded in one pass, as split and decoded one by one")
struct EventBatchReaderTests {
    private func event(_ id: String, _ extra: String = "") -> String {
        #"{"event_id":"\#(id)","timestamp":"2026-11-23T11:59:30Z","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":5,"latency_ms":100,"status":"ok"\#(extra)}"#
    }

    private func both(_ body: String, limits: EventLimits = .default) -> (split: Result<[Result<LLMEvent, EventValidationError>], EventValidationError>,
                                                                          onePass: Result<[Result<LLMEvent, EventValidationError>], EventValidationError>) {
        let bytes = Array(body.utf8)
        let decoder = EventDecoder(limits: limits)
        let split = Result { () throws(EventValidationError) in
            try EventBatchReader.split(bytes, format: .jsonArray, maxEvents: 5).map { range in
                Result { () throws(EventValidationError) in try decoder.decode(Array(bytes[range]), now: now) }
            }
        }
        let onePass = Result { () throws(EventValidationError) in try EventBatchReader.decode(bytes, format: .jsonArray, maxEvents: 5, decoder: decoder, now: now) }
        return (split, onePass)
    }

    @Test("valid and refused events keep their places, each refusal naming its field; the results equal split and decode")
    func mixed() throws {
        let body = "[ \(event("a")) ,\(event("b", #","input_tokens":-1"#)), 7,\n\(event("c", #","x":{"deep":[[[[[[[[[[1]]]]]]]]]]}"#)), \(event("d"))]"
        let (split, onePass) = both(body)
        let events = try onePass.get()
        #expect(events.count == 5)
        #expect(try events[0].get().eventID == "a")
        #expect(throws: EventValidationError(field: "input_tokens", reason: "duplicate field")) { try events[1].get() }
        #expect(throws: EventValidationError.self) { try events[2].get() }
        #expect((try? events[3].get()) == nil, "nested deeper than the event's bound")
        #expect(try events[4].get().eventID == "d")
        #expect(onePass == split)
    }

    @Test("a batch whose syntax breaks anywhere, or that holds too many events, is refused whole with the split's error")
    func refusedWhole() {
        for body in [
            "[\(event("a")), \(event("b"))", "[\(event("a")), {\"event_id\": }]", "[\(event("a"))] x", "{\"not\":\"an array\"}",
            "[" + Array(repeating: event("a"), count: 6).joined(separator: ",") + "]", "[\(event("a")),]",
        ] {
            let (split, onePass) = both(body)
            #expect(throws: EventValidationError.self, "\(body)") { try onePass.get() }
            #expect(onePass == split, "\(body)")
        }
    }

    @Test("an event over the size bound is refused for its size, whether or not it would decode")
    func oversize() throws {
        var limits = EventLimits.default
        limits.maxEventBytes = 300
        let padding = #","note":"\#(String(repeating: "p", count: 300))""#
        let (split, onePass) = both("[\(event("a")), \(event("big", padding)), \(event("bad", padding + #","input_tokens":"x""#))]", limits: limits)
        let events = try onePass.get()
        #expect(try events[0].get().eventID == "a")
        #expect(throws: EventValidationError(field: "body", reason: "event larger than 300 bytes")) { try events[1].get() }
        #expect(throws: EventValidationError(field: "body", reason: "event larger than 300 bytes")) { try events[2].get() }
        #expect(onePass == split)
    }
}
