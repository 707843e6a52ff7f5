// libFuzzer entry point for the event decoder and the batch reader (`make fuzz`). Built by swiftc together with
// Shared/Events/*.swift, outside SwiftPM, with -sanitize=fuzzer,address. Beyond "no crash", it checks the
// properties the services rely on: a decoded event re-encodes to bytes that decode to the same event, the batch
// reader's ranges lie inside the input, in order, without overlap, and its one-pass decode of a batch equals the split
// and each range decoded.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let decoder = EventDecoder()
    let now = EventTimestamp(microsecondsSinceEpoch: 1_790_000_000_000_000)
    if let event = try? decoder.decode(bytes, now: now) {
        let again = Array(event.jsonBytes())
        let redecoded = again.withUnsafeBytes { try? decoder.decode($0, now: now) }
        precondition(redecoded == event, "re-encoded event does not decode to itself")
    }
    for format in [EventBatchFormat.jsonArray, .ndjson] {
        // The gateway's one-pass decode of a batch agrees with splitting it and decoding each range: the same batch
        // error, or the same event or error at each place.
        let split = Result { () throws(EventValidationError) in try EventBatchReader.split(Array(bytes), format: format, maxEvents: 1000) }
        let onePass = Result { () throws(EventValidationError) in try EventBatchReader.decode(Array(bytes), format: format, maxEvents: 1000, decoder: decoder, now: now) }
        switch (split, onePass) {
        case (.failure(let a), .failure(let b)):
            precondition(a == b, "one-pass batch error \(b) differs from the split's \(a)")
        case (.success(let ranges), .success(let events)):
            var end = 0
            for range in ranges {
                precondition(range.lowerBound >= end && range.upperBound <= size, "batch range out of order or bounds")
                end = range.upperBound
            }
            let expected = ranges.map { range in
                Result { () throws(EventValidationError) in try decoder.decode(UnsafeRawBufferPointer(rebasing: bytes[range]), now: now) }
            }
            precondition(events == expected, "one-pass events differ from split and decode")
        default:
            preconditionFailure("one-pass decode and split disagree on the batch: \(split) against \(onePass)")
        }
    }
    return 0
}
