/// How a batch of events is written in a request body.
public enum EventBatchFormat: Sendable {
    /// `[{...}, {...}]`
    case jsonArray
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    case ndjson
}

/// Splits a batch body into the byte ranges of its events, checking the batch's own syntax and size; each event is
/// then decoded and validated on its own, so one bad event does not reject its neighbours.
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

    private static func splitArray(_ bytes: UnsafeRawBufferPointer, maxEvents: Int, maxDepth: Int) throws(EventValidationError) -> [Range<Int>] {
        var scanner = JSONScanner(bytes, maxDepth: maxDepth)
        var ranges: [Range<Int>] = []
        do {
            try scanner.expect(UInt8(ascii: "["), "a JSON array of events")
            if !scanner.consume(UInt8(ascii: "]")) {
                repeat {
                    guard ranges.count < maxEvents else { throw EventValidationError(field: "body", reason: "more than \(maxEvents) events in one batch") }
                    _ = scanner.peek()
                    let start = scanner.index
                    try scanner.skipValue(depth: 1)
                    ranges.append(start..<scanner.index)
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
        return ranges
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
