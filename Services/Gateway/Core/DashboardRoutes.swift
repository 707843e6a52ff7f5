import Codecs
import HTTPTypes
import Hummingbird

/// The web dashboard: `GET /` and its two assets, compiled into the binary from `Dashboard/` (plain HTML, CSS and
/// JavaScript; no build step). The page talks only to this gateway's public API with the user's key, so the policy
/// allows nothing but this origin: no inline script or style, no third-party request, no framing.
public struct DashboardRoutes: Sendable {
    struct Asset: Sendable {
        let body: [UInt8]
        let contentType: String
        let etag: String
    }

    /// `connect-src 'self'`: the API and the live stream; `img-src data:` only for the empty favicon.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
        + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    let assets: [String: Asset]
    /// The pages and assets served (GET and HEAD).
    static let paths = ["/", "/dashboard/app.js", "/dashboard/app.css"]

    public init() {
        func asset(_ bytes: [UInt8], _ type: String) -> Asset {
            Asset(body: bytes, contentType: type, etag: "\"" + Digest.hex(Digest.sha256(bytes)).prefix(16) + "\"")
        }
        self.assets = [
            "/": asset(PackageResources.index_html, "text/html; charset=utf-8"),
            "/dashboard/app.js": asset(PackageResources.app_js, "text/javascript; charset=utf-8"),
            "/dashboard/app.css": asset(PackageResources.app_css, "text/css; charset=utf-8"),
        ]
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        for (path, asset) in self.assets {
            router.get(RouterPath(path)) { request, _ in Self.serve(asset, request) }
            router.head(RouterPath(path)) { request, _ in
                var response = Self.serve(asset, request)
                response.body = .init()
                response.headers[.contentLength] = String(asset.body.count)
                return response
            }
        }
    }

    static func serve(_ asset: Asset, _ request: Request) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = asset.contentType
        headers[.eTag] = asset.etag
        // Revalidated each time (cheap: 304), so a new gateway version's dashboard is picked up at once.
        headers[.cacheControl] = "no-cache"
        if request.headers[.ifNoneMatch] == asset.etag {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.body)))
    }

    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        HTTPField.Name("Cross-Origin-Opener-Policy")!: "same-origin",
        HTTPField.Name("Cross-Origin-Resource-Policy")!: "same-origin",
        HTTPField.Name("Permissions-Policy")!: "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ]
}
