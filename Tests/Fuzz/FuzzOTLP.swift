// libFuzzer entry point for the OTLP trace decoders and the GenAI mapping (`make fuzz`). Built by swiftc together
// with Shared/Events/*.swift and Shared/OTLP/*.swift as one module, outside SwiftPM, with -sanitize=fuzzer,address.
// Beyond "no crash": whatever either decoder accepts re-encodes (both encodings) to bytes that decode to the same
// request, and every span maps to an event that passes validation, a skip, or a rejection with a reason.

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
        for rs in request.resourceSpans {
            for span in rs.spans {
                switch GenAISpanMapping.map(span, resource: rs.resource, now: now) {
                case .event(let event):
                    precondition((try? event.validate(now: now)) != nil, "mapped event does not validate")
                case .skipped: break
                case .rejected(let reason): precondition(!reason.isEmpty, "rejection without a reason")
                }
            }
        }
    }
    return 0
}
