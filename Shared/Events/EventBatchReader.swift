/// How a batch of events is written in a request body.
public enum EventBatchFormat: Sendable {
    /// `[{...}, {...}]`
    case jsonArray
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    case ndjson
}

/// Reads a batch body: its own syntax and size are checked for the whole batch, each event is decoded and validated
/// on its own, so one bad event does not reject its neighbours. `decode` does both (the gateway); `split` gives
/// only the events' byte ranges.
public enum EventBatchReader {
    public static func split(_ body: [UInt8], format: EventBatchFormat, maxEvents: Int, maxDepth: Int = 16) throws(EventValidationError) -> [Range<Int>] {
        let result: Result<[Range<Int>], EventValidationError> = body.withUnsafeBytes { buffer in
            Result { () throws(EventValidationError) in
                switch format {
                case .jsonArray: return try self.splitArray(buffer, maxEvents: maxEvents, maxDepth: maxDepth)
                case .ndjson: return try self.splitLines(buffer, maxEvents: maxEvents)
                }
            }
        }
        return try result.get()
    }

    /// `split`, then each event decoded by `decoder`: the batch's errors thrown, each event's kept in its place.
    /// A JSON array is read once, each element decoded where it lies; only an event the decoder refuses is scanned
    /// again, to find its end (and to tell a batch whose syntax is broken, refused whole as by `split`). Same results
    /// as `split` and `decode` of each range (the events fuzz target checks that they agree).
    public static func decode(_ body: [UInt8], format: EventBatchFormat, maxEvents: Int, maxDepth: Int = 16, decoder: EventDecoder,
                              now: EventTimestamp) throws(EventValidationError) -> [Result<LLMEvent, EventValidationError>] {
        // An element the decoder's depth bound admits is within the batch's (the event's own object is one level
        // down in the array); with a deeper bound than that, the ranges come first.
        guard format == .jsonArray, decoder.limits.maxNestingDepth < maxDepth else {
            let ranges = try self.split(body, format: format, maxEvents: maxEvents, maxDepth: maxDepth)
            return body.withUnsafeBytes { buffer in
                ranges.map { range in Result { () throws(EventValidationError) in try decoder.decode(UnsafeRawBufferPointer(rebasing: buffer[range]), now: now) } }
            }
        }
        let result: Result<[Result<LLMEvent, EventValidationError>], EventValidationError> = body.withUnsafeBytes { buffer in
            Result { () throws(EventValidationError) in try self.decodeArray(buffer, maxEvents: maxEvents, maxDepth: maxDepth, decoder: decoder, now: now) }
        }
        return try result.get()
    }

    private static func decodeArray(_ bytes: UnsafeRawBufferPointer, maxEvents: Int, maxDepth: Int, decoder: EventDecoder,
                                    now: EventTimestamp) throws(EventValidationError) -> [Result<LLMEvent, EventValidationError>] {
        var events: [Result<LLMEvent, EventValidationError>] = []
        try self.eachElement(bytes, maxEvents: maxEvents, maxDepth: maxDepth) { scanner in
            let start = scanner.index
            // The event's own depth bound, as `decode` of its range would have.
            var element = JSONScanner(bytes, maxDepth: decoder.limits.maxNestingDepth)
            element.index = start
            let fields = Result { () throws(EventValidationError) in try decoder.readObject(&element, origin: start) }
            if case .success(let fields) = fields, element.index - start <= decoder.limits.maxEventBytes {
                scanner.index = element.index
                events.append(Result { () throws(EventValidationError) in try fields.build(limits: decoder.limits, now: now) })
                return
            }
            try scanner.skipValue(depth: 1)
            if scanner.index - start > decoder.limits.maxEventBytes {
                events.append(.failure(decoder.tooLarge))
            } else if case .failure(let error) = fields {
                events.append(.failure(error))
            }
        }
        return events
    }

    private static func splitArray(_ bytes: UnsafeRawBufferPointer, maxEvents: Int, maxDepth: Int) throws(EventValidationError) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        try self.eachElement(bytes, maxEvents: maxEvents, maxDepth: maxDepth) { scanner in
            let start = scanner.index
            try scanner.skipValue(depth: 1)
            ranges.append(start..<scanner.index)
        }
        return ranges
    }

    /// Checks the array's syntax around its elements and their number; `element` reads each, from its first byte
    /// (`scanner.index`) to just past it.
    private static func eachElement(_ bytes: UnsafeRawBufferPointer, maxEvents: Int, maxDepth: Int,
                                    _ element: (inout JSONScanner) throws -> Void) throws(EventValidationError) {
        var scanner = JSONScanner(bytes, maxDepth: maxDepth)
        var count = 0
        do {
            try scanner.expect(UInt8(ascii: "["), "a JSON array of events")
            if !scanner.consume(UInt8(ascii: "]")) {
                repeat {
                    guard count < maxEvents else { throw EventValidationError(field: "body", reason: "more than \(maxEvents) events in one batch") }
                    _ = scanner.peek()
                    try element(&scanner)
                    count += 1
                } while scanner.consume(UInt8(ascii: ","))
                try scanner.expect(UInt8(ascii: "]"), "',' or ']'")
            }
            scanner.skipWhitespace()
            guard scanner.isAtEnd else { throw EventValidationError(field: "body", reason: "unexpected data after the array") }
        } catch let error as EventValidationError {
            throw error
        } catch let error as JSONScanner.SyntaxError {
            throw EventValidationError(field: "body", reason: "invalid JSON at byte \(error.offset): \(error.reason)")
        } catch {
            throw EventValidationError(field: "body", reason: "\(error)")
        }
    }

    private static func splitLines(_ bytes: UnsafeRawBufferPointer, maxEvents: Int) throws(EventValidationError) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        func isBlank(_ r: Range<Int>) -> Bool { r.allSatisfy { [0x20, 0x09, 0x0D].contains(bytes[$0]) } }
        for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
            var end = i
            if end > start, bytes[end - 1] == 0x0D { end -= 1 }
            let line = start..<end
            start = i + 1
            if line.isEmpty || isBlank(line) { continue }
            guard ranges.count < maxEvents else { throw EventValidationError(field: "body", reason: "more than \(maxEvents) events in one batch") }
            ranges.append(line)
        }
        return ranges
    }
}
