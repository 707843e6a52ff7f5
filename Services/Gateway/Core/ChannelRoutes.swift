import Codecs
import Events
import Foundation
import HTTPTypes
import Hummingbird
import Notify
import Postgres

/// A tenant's notification channels (admin scope): webhooks signed per Standard Webhooks, fed by the query
/// service's outbox (README, "Notifications").
/// - `POST /v1/channels` `{"name", "url", "min_severity"?: "warning", "metrics"?: [...]}` -> 201 with the signing
///   `secret`, shown only here. The URL is checked now (https, public addresses; `EgressPolicy`) and again, with a
///   fresh lookup, at every delivery.
/// - `GET /v1/channels`, `DELETE /v1/channels/{id}`, `GET /v1/channels/{id}/deliveries?limit=` (the delivery log:
///   attempts, status, latency, last error), `POST /v1/channels/{id}/test` (queues a test message).
public struct ChannelRoutes: Sendable {
    let access: TenantAccess
    let policy: EgressPolicy
    static let maxChannels = 20

    public init(access: TenantAccess, policy: EgressPolicy) {
        self.access = access
        self.policy = policy
    }

    struct Channel: Encodable {
        var channel_id: String
        var name: String
        var kind: String
        var url: String
        var min_severity: String
        var metrics: [String]
        var created_at: String
        var secret: String?
    }

    struct Channels: Encodable { var items: [Channel] }

    struct Delivery: Encodable {
        var message_id: String, type: String?, state: String, attempts: Int32, last_status: Int32?, last_error: String?
        var last_latency_ms: Double?, created_at: String, finished_at: String?, next_attempt_at: String?
    }

    struct Deliveries: Encodable { var items: [Delivery] }

    static let columns = """
        channel_id, name, kind, url, min_severity, array_to_string(metrics, ',') AS metrics,
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at
        """

    static func channel(_ row: PostgresRow) throws -> Channel {
        Channel(channel_id: try row.decode("channel_id"), name: try row.decode("name"), kind: try row.decode("kind"), url: try row.decode("url"),
                min_severity: try row.decode("min_severity"), metrics: (try row.decode("metrics", as: String.self)).split(separator: ",").map(String.init),
                created_at: try row.decode("created_at"))
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .post, "/v1/channels", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["name", "url", "min_severity", "metrics"])
            guard let name = try input.string("name", maxLength: 100) else { throw JSONInput.invalid("name", "required") }
            guard let url = try input.string("url", maxLength: 2048) else { throw JSONInput.invalid("url", "required (an https URL)") }
            let severity = try input.string("min_severity", maxLength: 16) ?? "warning"
            guard ["info", "warning", "critical"].contains(severity) else { throw JSONInput.invalid("min_severity", "must be info, warning or critical") }
            var metrics: [String] = []
            if let value = input.members["metrics"] {
                guard case .array(let items) = value, items.count <= DetectorSettingsRoutes.metrics.count else { throw JSONInput.invalid("metrics", "must be an array of metric names") }
                for item in items {
                    guard case .string(let m) = item, DetectorSettingsRoutes.metrics.contains(m) else {
                        throw JSONInput.invalid("metrics", "each must be one of \(DetectorSettingsRoutes.metrics.sorted().joined(separator: ", "))")
                    }
                    if !metrics.contains(m) { metrics.append(m) }
                }
            }
            do {
                _ = try await self.policy.resolve(try self.policy.parse(url))
            } catch {
                throw JSONInput.invalid("url", "\(error)")
            }
            let count: Int64 = try await tenant.database.query("SELECT count(*)::bigint AS n FROM notification_channels WHERE tenant_id = \(tenant.tenantID)")[0].decode("n")
            guard count < Self.maxChannels else { throw Problem(.conflict, code: "too_many_channels", title: "Too many channels", detail: "a tenant has at most \(Self.maxChannels) channels") }
            let id = "ch_" + Digest.hex(Digest.randomBytes(8))
            let secret = StandardWebhooks.newSecret()
            let rows = try await tenant.database.query("""
                INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity, metrics)
                VALUES (\(id), \(tenant.tenantID), \(name), 'webhook', \(url), \(secret), \(severity), \("{" + metrics.joined(separator: ",") + "}")::text[])
                RETURNING \(unescaped: Self.columns)
                """)
            var channel = try Self.channel(rows[0])
            channel.secret = secret
            return try AdminRoutes.json(.created, channel)
        }
        self.access.route(router, .get, "/v1/channels", scope: .admin) { _, tenant, _ in
            let rows = try await tenant.database.query("SELECT \(unescaped: Self.columns) FROM notification_channels WHERE tenant_id = \(tenant.tenantID) ORDER BY created_at, channel_id")
            return try AdminRoutes.json(.ok, Channels(items: try rows.map(Self.channel)))
        }
        self.access.route(router, .delete, "/v1/channels/{channel_id}", scope: .admin) { _, tenant, context in
            let id = try Self.channelID(context)
            let rows = try await tenant.database.query("DELETE FROM notification_channels WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id) RETURNING channel_id")
            guard !rows.isEmpty else { throw Self.notFound(id) }
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        self.access.route(router, .get, "/v1/channels/{channel_id}/deliveries", scope: .admin) { request, tenant, context in
            let id = try Self.channelID(context)
            try QueryRoutes.allowOnly(["limit"], in: request)
            let limit = try QueryRoutes.limit(request.uri.queryParameters, max: 500, default: 50)
            guard try await !tenant.database.query("SELECT 1 FROM notification_channels WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id)").isEmpty else { throw Self.notFound(id) }
            let rows = try await tenant.database.query("""
                SELECT message_id, body->>'type' AS type, attempts, last_status, last_error, last_latency_ms,
                       CASE WHEN delivered_at IS NOT NULL THEN 'delivered' WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END AS state,
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
                       to_char(coalesce(delivered_at, failed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished_at,
                       to_char(next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS next_attempt_at
                FROM notification_outbox WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id) ORDER BY created_at DESC, message_id LIMIT \(Int64(limit))
                """)
            let items = try rows.map { row in
                let state: String = try row.decode("state")
                return Delivery(message_id: try row.decode("message_id"), type: try row.decodeIfPresent("type"), state: state, attempts: try row.decode("attempts"),
                                last_status: try row.decodeIfPresent("last_status"), last_error: try row.decodeIfPresent("last_error"),
                                last_latency_ms: try row.decodeIfPresent("last_latency_ms"), created_at: try row.decode("created_at"),
                                finished_at: try row.decodeIfPresent("finished_at"), next_attempt_at: state == "pending" ? try row.decodeIfPresent("next_attempt_at") : nil)
            }
            return try AdminRoutes.json(.ok, Deliveries(items: items))
        }
        self.access.route(router, .post, "/v1/channels/{channel_id}/test", scope: .admin) { _, tenant, context in
            let id = try Self.channelID(context)
            let messageID = "test-" + Digest.hex(Digest.randomBytes(8))
            let body = "{\"type\":\"test\",\"data\":{\"tenant_id\":\(jsonStringLiteral(tenant.tenantID)),\"channel_id\":\(jsonStringLiteral(id)),\"explanation\":\"A test notification from Tokenwatch.\"}}"
            let rows = try await tenant.database.query("""
                INSERT INTO notification_outbox (channel_id, tenant_id, message_id, body)
                SELECT channel_id, tenant_id, \(messageID), \(body)::jsonb FROM notification_channels WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id)
                RETURNING message_id
                """)
            guard !rows.isEmpty else { throw Self.notFound(id) }
            return try AdminRoutes.json(.accepted, ["message_id": messageID])
        }
    }

    static func channelID(_ context: some RequestContext) throws -> String {
        guard let id = context.parameters.get("channel_id"), id.utf8.count <= 64, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw Problem(.notFound, code: "not_found", title: "No such channel", detail: "channel_id: no such channel")
        }
        return id
    }

    static func notFound(_ id: String) -> Problem {
        Problem(.notFound, code: "not_found", title: "No such channel", detail: "channel_id: no channel \(id) for this tenant")
    }
}
