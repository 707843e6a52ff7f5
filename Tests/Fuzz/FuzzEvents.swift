// libFuzzer entry point for the event decoder and the batch reader (`make fuzz`). Built by swiftc together with
// Shared/Events/*.swift, outside SwiftPM, with -sanitize=fuzzer,address. Beyond "no crash", it checks the
// properties the services rely on: a decoded event re-encodes to bytes that decode to the same event, and the batch
// reader's ranges lie inside the input, in order, without overlap.

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
        guard let ranges = try? EventBatchReader.split(Array(bytes), format: format, maxEvents: 1000) else { continue }
        var end = 0
        for range in ranges {
            precondition(range.lowerBound >= end && range.upperBound <= size, "batch range out of order or bounds")
            end = range.upperBound
        }
    }
    return 0
}
