// libFuzzer entry point for the whole OTLP path the gateway runs (`make fuzz`): bytes -> spans (both decoders) ->
// mapped events (with duplicate reports of one call resolved, as `GenAIExport` does for the gateway) -> encoded
// events, as produced to llm.events.raw.v1, -> the ingestor's decoder. Built by swiftc
// together with Shared/Events/*.swift and Shared/OTLP/*.swift as one module, outside SwiftPM, with
// -sanitize=fuzzer,address (overflow checks stay on at -O, so any trap is a crash). Beyond "no crash": whatever
// either decoder accepts re-encodes (both encodings) to bytes that decode to the same request; every span maps to
// an event that passes validation, a skip, or a rejection with a reason; and every mapped event, given the tenant
// the gateway sets, encodes to bytes the ingestor decodes to the same event.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let limits = OTLPLimits(maxSpans: 200, maxJSONDepth: 32)
    let now = EventTimestamp(microsecondsSinceEpoch: 1_795_000_000_000_000)
    for request in [try? OTLPTraceRequest(protobuf: bytes, keep: GenAISpanMapping.keep, limits: limits),
                    try? OTLPTraceRequest(json: bytes, keep: GenAISpanMapping.keep, limits: limits)] {
        guard let request else { continue }
        let hasNaN = request.resourceSpans.contains { rs in
            (rs.resource.entries + rs.spans.flatMap(\.attributes.entries)).contains { if case .double(let d) = $0.value { d.isNaN } else { false } }
        }
        if !hasNaN {
            let pb = request.protobuf().withUnsafeBytes { try? OTLPTraceRequest(protobuf: $0, keep: GenAISpanMapping.keep, limits: limits) }
            precondition(pb == request, "protobuf re-encoding does not decode to the same request")
            // OTLP/JSON can only carry ids of the right length (hex of 16 and 8 bytes); protobuf carries any bytes.
            let idsFit = request.resourceSpans.allSatisfy { $0.spans.allSatisfy { [0, 16].contains($0.traceID.count) && [0, 8].contains($0.spanID.count) } }
            if idsFit {
                let js = request.json().withUnsafeBytes { try? OTLPTraceRequest(json: $0, keep: GenAISpanMapping.keep, limits: limits) }
                precondition(js == request, "JSON re-encoding does not decode to the same request")
            }
        }
        // The gateway's whole mapping: spans -> events, duplicate reports of one call resolved.
        let export = GenAIExport(request, ignoredScopes: ["fuzz.ignored"], now: now)
        precondition(export.events.count + export.skipped + export.rejected.count + export.duplicates + export.ignored == request.spanCount,
                     "every span is an event, a skip, a rejection, a duplicate or ignored")
        precondition(Set(export.events.map(\.eventID)).count == export.events.count, "two events with one id")
        precondition(export.rejected.allSatisfy { !$0.reason.isEmpty }, "rejection without a reason")
        for var event in export.events {
            precondition((try? event.validate(now: now)) != nil, "mapped event does not validate")
            event.tenantID = "fuzz-tenant"
            let decoded = try? EventDecoder().decode(event.jsonBytes(), now: now)
            precondition(decoded == event, "mapped event does not survive encoding and the ingestor's decoder")
        }
    }
    return 0
}
