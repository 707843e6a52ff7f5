import Foundation
import Hummingbird

/// Bounds on a request's head, answered as problems naming the limit: `TW_MAX_URL_BYTES` (414) and
/// `TW_MAX_HEADER_BYTES` (431). The HTTP parser has harder bounds still (`HTTPServerOptions`); these let a client
/// that is merely too generous learn which limit it hit.
public struct RequestLimitsMiddleware<Context: RequestContext>: RouterMiddleware {
    let maxHeaderBytes: Int
    let maxURLBytes: Int

    public init(maxHeaderBytes: Int, maxURLBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxURLBytes = maxURLBytes
    }

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
        // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is 400.
        // (The HTTP/1 to HTTPTypes conversion moves the first Host into the authority and keeps any further one as a
        // field, so a second Host shows up here.)
        guard request.head.authority.map({ !$0.isEmpty }) ?? false, !request.headers.contains(where: { $0.name.canonicalName == "host" }) else {
            throw Problem(.badRequest, code: "invalid_host", title: "Invalid Host header", detail: "send exactly one Host header")
        }
        return try await next(request, context)
    }
}
