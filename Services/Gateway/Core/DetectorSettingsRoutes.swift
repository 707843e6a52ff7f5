import Foundation
import HTTPTypes
import Hummingbird
import Rollups
import Postgres

/// A tenant's detector settings: `GET /v1/detector/settings` (scope query) and `PUT /v1/detector/settings`
/// (scope admin) with `{"sensitivity": 0.25...4, "muted": [{"app"?, "environment"?, "provider"?, "model"?, "metric"?}]}`. Written as the
/// tenant, under row-level security; the detector reloads them every `TW_DETECTOR_SETTINGS_REFRESH`.
public struct DetectorSettingsRoutes: Sendable {
    let access: TenantAccess
    static let metrics = Set(Vocabulary.detectorMetrics)
    static let maxRules = 100

    public init(access: TenantAccess) { self.access = access }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .get, "/v1/detector/settings", scope: .query) { _, tenant, _ in try await self.show(tenant) }
        self.access.route(router, .put, "/v1/detector/settings", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["sensitivity", "muted"])
            // PUT replaces the settings: `sensitivity` is required (an empty body must not silently reset them);
            // `muted` left out means no muted rules.
            var sensitivity = 1.0
            switch input.members["sensitivity"] {
            case nil: throw JSONInput.invalid("sensitivity", "required (a number within 0.25...4; 1 is the default)")
            case .integer(let i)?: sensitivity = Double(i)
            case .number(let d)?: sensitivity = d
            default: throw JSONInput.invalid("sensitivity", "must be a number")
            }
            guard (0.25...4).contains(sensitivity) else { throw JSONInput.invalid("sensitivity", "must be within 0.25...4") }
            var rules: [[String: String]] = []
            if let muted = input.members["muted"] {
                guard case .array(let items) = muted, items.count <= Self.maxRules else { throw JSONInput.invalid("muted", "must be an array of at most \(Self.maxRules) rules") }
                for (i, item) in items.enumerated() {
                    guard case .object(let o) = item else { throw JSONInput.invalid("muted[\(i)]", "must be an object") }
                    let rule = JSONInput(members: o)
                    if let unknown = o.keys.first(where: { !["app", "environment", "provider", "model", "metric"].contains($0) }) { throw JSONInput.invalid("muted[\(i)].\(unknown.prefix(64))", "unknown member") }
                    var r: [String: String] = [:]
                    r["app"] = try rule.string("app", maxLength: 256)
                    r["environment"] = try rule.string("environment", maxLength: 256)
                    r["provider"] = try rule.string("provider", maxLength: 64)
                    r["model"] = try rule.string("model", maxLength: 256)
                    if let metric = try rule.string("metric", maxLength: 64) {
                        guard Self.metrics.contains(metric) else { throw JSONInput.invalid("muted[\(i)].metric", "must be one of \(Self.metrics.sorted().joined(separator: ", "))") }
                        r["metric"] = metric
                    }
                    rules.append(r)
                }
            }
            let muted = String(decoding: try JSONSerialization.data(withJSONObject: rules, options: [.sortedKeys]), as: UTF8.self)
            _ = try await tenant.database.query("""
                INSERT INTO detector_settings (tenant_id, sensitivity, muted) VALUES (\(tenant.tenantID), \(sensitivity), \(muted)::jsonb)
                ON CONFLICT (tenant_id) DO UPDATE SET sensitivity = EXCLUDED.sensitivity, muted = EXCLUDED.muted, updated_at = now()
                """)
            return try await self.show(tenant)
        }
    }

    func show(_ tenant: TenantRequest) async throws -> Response {
        let rows = try await tenant.database.query("SELECT sensitivity, muted::text AS muted FROM detector_settings WHERE tenant_id = \(tenant.tenantID)")
        let sensitivity: Double = try rows.first.map { try $0.decode("sensitivity") } ?? 1
        let muted: String = try rows.first.map { try $0.decode("muted") } ?? "[]"
        let body = "{\"sensitivity\":\(sensitivity),\"muted\":\(muted)}"
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
