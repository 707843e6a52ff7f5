import Foundation
import HTTPTypes
import Hummingbird

/// Bounds on a request's head, answered as problems naming the limit: `TW_MAX_URL_BYTES` (414) and
/// `TW_MAX_HEADER_BYTES` (431). The HTTP parser has harder bounds still (`HTTPServerOptions`); these let a client
/// that is merely too generous learn which limit it hit.
public struct RequestLimitsMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxHeaderBytes: Int
    let maxURLBytes: Int
    let maxBodyBytes: Int?

    public init(maxHeaderBytes: Int, maxURLBytes: Int, maxBodyBytes: Int? = nil) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxURLBytes = maxURLBytes
        self.maxBodyBytes = maxBodyBytes
    }

    static var otlpPaths: Set<String> { ["/v1/traces", "/v1/metrics", "/v1/logs"] }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.description.utf8.count <= self.maxURLBytes else {
            throw Problem(.uriTooLong, code: "uri_too_long", title: "Request target too long", detail: "the path and query are longer than \(self.maxURLBytes) bytes (TW_MAX_URL_BYTES)")
        }
        var headerBytes = 0
        for field in request.headers { headerBytes += field.name.rawName.utf8.count + field.value.utf8.count + 4 }
        guard headerBytes <= self.maxHeaderBytes else {
            throw Problem(.init(code: 431, reasonPhrase: "Request Header Fields Too Large"), code: "headers_too_large", title: "Request headers too large",
                detail: "the header fields total more than \(self.maxHeaderBytes) bytes (TW_MAX_HEADER_BYTES)")
        }
        // RFC 9112 §6.1: a transfer coding the server does not implement is 501; only chunked framing is read
        // here, and reading `gzip, chunked` as plain chunked would hand compressed bytes to the parser.
        for value in request.headers[values: .transferEncoding] {
            for coding in value.split(separator: ",") where coding.trimmingCharacters(in: .whitespaces).lowercased() != "chunked" {
                throw Problem(.notImplemented, code: "unsupported_transfer_encoding", title: "Transfer coding not implemented",
                    detail: "Transfer-Encoding: only chunked is supported; send compressed bodies with Content-Encoding: gzip")
            }
        }
        // A declared length over the limit is refused before a byte of the body is read, and the connection closed:
        // a client that waits for `100 Continue` gets its answer, and one that sends anyway is not read for a minute.
        // (OTLP routes answer it themselves: their errors are google.rpc.Status in the request's encoding.)
        if let maxBodyBytes, let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes,
           !Self.otlpPaths.contains(request.uri.path) {
            var problem = Problem(.contentTooLarge, code: "payload_too_large", title: "Request body too large", detail: "the body is larger than \(maxBodyBytes) bytes (TW_MAX_BODY_BYTES)")
            problem.headers.append(HTTPField(name: .connection, value: "close"))
            throw problem
        }
        // Query parameters are names and values, never control characters: `user=a%00b` must not read as user `a`.
        for (name, value) in request.uri.queryParameters {
            if [name, value].contains(where: { $0.unicodeScalars.contains(where: JSONInput.isControl) }) {
                throw QueryRoutes.bad(String(name), "must not contain control characters")
            }
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is 400.
        // (The HTTP/1 to HTTPTypes conversion moves the first Host into the authority and keeps any further one as a
        // field, so a second Host shows up here.)
        guard request.head.authority.map({ !$0.isEmpty }) ?? false, !request.headers.contains(where: { $0.name.canonicalName == "host" }) else {
            throw Problem(.badRequest, code: "invalid_host", title: "Invalid Host header", detail: "send exactly one Host header")
        }
        return try await next(request, context)
    }
}
