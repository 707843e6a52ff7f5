import Hummingbird
import Logging
import Synchronization

/// `TW_ACCESS_LOG=true`: one info line per request, after it is answered: method, route (the path, never the query
/// string), status, duration and tenant (once the key is known). Never a key, a token or a body.
public struct AccessLogMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let tenant = AccessLog.Tenant()
        let start = ContinuousClock.now
        var status = 500
        defer {
            let elapsed = ContinuousClock.now - start
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            context.logger.info("Request", metadata: [
                "http.method": "\(request.method)", "http.route": "\(request.uri.path.prefix(200))", "http.status": "\(status)",
                "duration_ms": "\((ms * 10).rounded() / 10)", "tenant.id": "\(tenant.id.withLock { $0 } ?? "-")",
            ])
        }
        let response = try await AccessLog.$current.withValue(tenant) { try await next(request, context) }
        status = response.status.code
        return response
    }
}

/// Records the tenant for the access log, when it is on.
enum AccessLog {
    /// Where `TenantAccess` records the tenant of the request being served.
    final class Tenant: Sendable {
        let id = Mutex<String?>(nil)
    }

    @TaskLocal static var current: Tenant?

    static func note(tenant: String) {
        Self.current?.id.withLock { $0 = tenant }
    }
}
