import Events
import Foundation

/// OTLP metrics and logs (`POST /v1/metrics`, `POST /v1/logs`). Instrumentations such as traceloop-sdk and openlit
/// export all three signals to one base URL; Tokenwatch counts model calls from their spans only, so the other two
/// are checked (well-formed, bounded) and acknowledged with a partial success that says they are not stored,
/// instead of a 404 that makes the exporter log errors. Counting their token metrics as well would count every
/// call twice.
public enum OTLPOtherSignal: String, Sendable, CaseIterable {
    case metrics, logs

    /// The request's top-level field (1 in both messages) and its JSON name.
    public var jsonMember: String { self == .metrics ? "resourceMetrics" : "resourceLogs" }
    /// The partial-success counter of the response (field 1 of `partial_success` in both messages).
    public var rejectedMember: String { self == .metrics ? "rejectedDataPoints" : "rejectedLogRecords" }

    public static let notStoredMessage = "Tokenwatch stores GenAI model calls from traces (POST /v1/traces); %@ are accepted and not stored, so no call is counted twice"

    /// Checks that `body` is an `Export{Metrics,Logs}ServiceRequest` in `encoding`: protobuf whose every field is
    /// well-formed and whose resource entries are messages, or a JSON object whose resource member, if present, is
    /// an array of objects. Returns the number of resource entries.
    public func validate(_ body: UnsafeRawBufferPointer, encoding: OTLPEncoding) throws -> Int {
        switch encoding {
        case .protobuf:
            let result = Result { () throws(ProtobufReader.Malformed) -> Int in try self.countEntries(body) }
            switch result {
            case .success(let count): return count
            case .failure(let error): throw OTLPDecodingError(path: "", reason: error.reason)
            }
        case .json:
            guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
                throw OTLPDecodingError(path: "", reason: "the body must be a JSON object")
            }
            // null is an absent field (the proto3 JSON mapping), as it is for traces.
            guard let entries = object[self.jsonMember], !(entries is NSNull) else { return 0 }
            guard let array = entries as? [Any], array.allSatisfy({ $0 is [String: Any] }) else {
                throw OTLPDecodingError(path: self.jsonMember, reason: "must be an array of objects")
            }
            return array.count
        }
    }

    private func countEntries(_ body: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> Int {
        var reader = ProtobufReader(body)
        var count = 0
        while let (number, wire) = try reader.nextField() {
            guard number == 1 else {
                try reader.skip(wire)
                continue
            }
            try ProtobufReader.expect(wire, .lengthDelimited, field: self.jsonMember)
            var entry = try reader.message()
            while let (_, inner) = try entry.nextField() { try entry.skip(inner) }
            count += 1
        }
        return count
    }

    /// The 200 answer: a partial success with 0 rejected and the message, in the request's encoding.
    public func response(encoding: OTLPEncoding) -> [UInt8] {
        let message = Self.notStoredMessage.replacingOccurrences(of: "%@", with: self.rawValue)
        switch encoding {
        case .protobuf:
            var w = ProtobufWriter()
            w.messageField(1) { $0.stringField(2, message) }
            return w.bytes
        case .json:
            var out = Array("{\"partialSuccess\":{\"\(self.rejectedMember)\":\"0\",\"errorMessage\":".utf8)
            writeJSONString(message, into: &out)
            out.append(contentsOf: Array("}}".utf8))
            return out
        }
    }
}
