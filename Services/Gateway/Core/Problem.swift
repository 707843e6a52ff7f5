import Events
import Hummingbird
import Logging
import ServiceKit

/// RFC 9457 problem details, with a stable `type` per kind of failure.
public struct Problem: Error, Sendable {
    public var status: HTTPResponse.Status
    /// The last segment of the `type` URI: unauthorized, forbidden, payload_too_large, ...
    public var code: String
    public var title: String
    public var detail: String
    public var retryAfterSeconds: Int?
    /// Extra members (raw JSON values), e.g. `"errors": [...]`.
    public var extensions: [(String, String)] = []
    /// Extra response headers (rate-limit state).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, title: String, detail: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.retryAfterSeconds = retryAfterSeconds
    }

    public static let typeBase = "https://tokenwatch.dev/problems/"

    public var response: Response {
        var out: [UInt8] = []
        func member(_ name: String, _ raw: String) {
            out.append(out.isEmpty ? UInt8(ascii: "{") : UInt8(ascii: ","))
            writeJSONString(name, into: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: raw.utf8)
        }
        member("type", jsonStringLiteral(Self.typeBase + self.code))
        member("title", jsonStringLiteral(self.title))
        member("status", String(self.status.code))
        member("detail", jsonStringLiteral(self.detail))
        for (name, raw) in self.extensions { member(name, raw) }
        out.append(UInt8(ascii: "}"))
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        headers.append(contentsOf: self.headers)
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }

    public static func unauthorized(_ detail: String) -> Problem {
        Problem(.unauthorized, code: "unauthorized", title: "Missing or invalid API key", detail: detail)
    }
}

/// Turns every error a route throws into problem+json: a `Problem` as it is; Hummingbird's own HTTP errors with
/// their status; a dependency that failed in passing (Postgres or Redis down or restarting, a pool timeout, the
/// broker unreachable) as 503 `dependency_unavailable` with Retry-After; anything else as 500 `internal_error`.
/// Failures of the last two kinds are logged at error level with the route, never with the request's secrets.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}
    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            var response = problem.response
            if problem.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
            return response
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            // The router found no route for this method and path.
            let allowed = RouteCatalog.allowedMethods(request.uri.path)
            guard allowed.isEmpty else {
                var problem = Problem(.methodNotAllowed, code: "method_not_allowed", title: "Method not allowed",
                    detail: "\(request.method) is not served at this path; it answers \(allowed.joined(separator: ", "))")
                problem.headers[.allow] = allowed.joined(separator: ", ")
                return problem.response
            }
            return Problem(.notFound, code: "not_found", title: "Not found", detail: "no route at this path; the API is described at /openapi.json").response
        } catch let error as any HTTPResponseError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let transient = TransientFaults.isTransient(error)
            context.logger.error(transient ? "Dependency unavailable in a request" : "Request failed", metadata: [
                "http.method": "\(request.method)", "http.route": "\(request.uri.path.prefix(200))", "error": "\(error)",
            ])
            if transient {
                return Problem(.serviceUnavailable, code: "dependency_unavailable", title: "A dependency is unavailable",
                    detail: "a store the gateway needs did not answer; retry after the delay", retryAfterSeconds: 5).response
            }
            return Problem(.internalServerError, code: "internal_error", title: "Internal error",
                detail: "the request failed on the server; the error is logged").response
        }
    }
}
