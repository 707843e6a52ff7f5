import Events

/// The body encodings OTLP/HTTP allows; a response uses the request's.
public enum OTLPEncoding: Sendable {
    case protobuf
    case json

    public var contentType: String {
        switch self {
        case .protobuf: "application/x-protobuf"
        case .json: "application/json"
        }
    }

    /// From a Content-Type header (parameters such as `charset` ignored); nil for anything else.
    public init?(contentType: String?) {
        let type = contentType?.split(separator: ";").first.map { String($0.filter { $0 != " " && $0 != "\t" }).lowercased() }
        switch type {
        case "application/x-protobuf", "application/protobuf": self = .protobuf
        case "application/json": self = .json
        default: return nil
        }
    }
}

/// Answers of `POST /v1/traces`.
public enum OTLPResponse {
    /// `ExportTraceServiceResponse`: empty when every span was accepted, else `partial_success` with the number of
    /// rejected spans and why.
    public static func export(rejectedSpans: Int, errorMessage: String, encoding: OTLPEncoding) -> [UInt8] {
        switch encoding {
        case .protobuf:
            var w = ProtobufWriter()
            if rejectedSpans > 0 || !errorMessage.isEmpty {
                w.messageField(1) { p in
                    if rejectedSpans > 0 { p.varintField(1, UInt64(rejectedSpans)) }
                    if !errorMessage.isEmpty { p.stringField(2, errorMessage) }
                }
            }
            return w.bytes
        case .json:
            guard rejectedSpans > 0 || !errorMessage.isEmpty else { return Array("{}".utf8) }
            var out = Array("{\"partialSuccess\":{\"rejectedSpans\":\"\(rejectedSpans)\",\"errorMessage\":".utf8)
            writeJSONString(errorMessage, into: &out)
            out.append(contentsOf: Array("}}".utf8))
            return out
        }
    }

    /// `google.rpc.Status`, the body of every 4xx and 5xx answer. `code` is the gRPC code that matches the HTTP
    /// status (3 invalid argument, 7 permission denied, 8 resource exhausted, 14 unavailable, 16 unauthenticated).
    public static func status(code: Int32, message: String, encoding: OTLPEncoding) -> [UInt8] {
        switch encoding {
        case .protobuf:
            var w = ProtobufWriter()
            w.varintField(1, UInt64(UInt32(bitPattern: code)))
            w.stringField(2, message)
            return w.bytes
        case .json:
            var out = Array("{\"code\":\(code),\"message\":".utf8)
            writeJSONString(message, into: &out)
            out.append(UInt8(ascii: "}"))
            return out
        }
    }

    /// The gRPC status code for an HTTP status.
    public static func grpcCode(httpStatus: Int) -> Int32 {
        switch httpStatus {
        case 400, 413, 414, 415, 422, 431: 3
        case 401: 16
        case 403: 7
        case 404: 5
        case 429: 8
        case 502, 503, 504: 14
        default: 13
        }
    }
}
