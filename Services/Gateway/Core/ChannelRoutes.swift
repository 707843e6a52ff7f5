import Codecs
import Events
import Foundation
import HTTPTypes
import Hummingbird
import Notify
import Postgres

/// A tenant's notification channels (admin scope): webhooks signed per Standard Webhooks, Slack incoming webhooks
/// and Prometheus Alertmanager, fed by the query service's outbox (README, "Notifications").
/// - `POST /v1/channels` `{"name", "url", "kind"?: "webhook" | "slack" | "alertmanager", "min_severity"?: "warning",
///   "metrics"?, "providers"?, "models"?: [...], "max_per_hour"?: 20 (0 for Alertmanager: it groups and throttles
///   itself)}` -> 201 with the signing `secret`, shown only here. The URL is checked now (https, public addresses;
///   `EgressPolicy`) and again, with a fresh lookup, at every delivery.
/// - `POST /v1/channels/{id}/rotate-secret` `{"overlap_seconds"?: 86400}` -> a new secret, shown only here; the old
///   one signs too (a second signature in `webhook-signature`) until the overlap ends.
/// - `GET /v1/channels`, `DELETE /v1/channels/{id}`, `GET /v1/channels/{id}/deliveries?limit=` (the delivery log:
///   attempts, status, latency, last error), `POST /v1/channels/{id}/test` (queues a test message).
public struct ChannelRoutes: Sendable {
    let access: TenantAccess
    let policy: EgressPolicy
    static let maxChannels = 20
    static let maxTestsPerHour = 10

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
        var providers: [String]
        var models: [String]
        var max_per_hour: Int32
        var created_at: String
        var previous_secret_until: String?
        var secret: String?
    }

    struct Channels: Encodable { var items: [Channel] }

    struct Delivery: Encodable {
        var message_id: String, type: String?, event: String?, state: String, attempts: Int32, last_status: Int32?, last_error: String?
        var last_latency_ms: Double?, created_at: String, finished_at: String?, next_attempt_at: String?
    }

    struct Deliveries: Encodable { var items: [Delivery] }

    static let columns = """
        channel_id, name, kind, url, min_severity, array_to_json(metrics)::text AS metrics, array_to_json(providers)::text AS providers,
        array_to_json(models)::text AS models, max_per_hour,
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
        CASE WHEN previous_secret_until > now() THEN to_char(previous_secret_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END AS previous_secret_until
        """

    /// The URL as listings show it: scheme, host, port and the first path segment, the rest elided. A Slack
    /// incoming-webhook URL is itself the credential (as are tokens in many webhook URLs), so like the signing
    /// secret it is shown whole only in the answer to the creation.
    static func redacted(_ url: String) -> String {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host else { return "…" }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        var out = "\(scheme)://\(hostPart)\(c.port.map { ":\($0)" } ?? "")"
        let segments = c.path.split(separator: "/", omittingEmptySubsequences: true)
        if let first = segments.first { out += "/" + first }
        if segments.count > 1 || c.query != nil || c.fragment != nil { out += "/…" }
        return out
    }

    static func strings(_ row: PostgresRow, _ column: String) throws -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(try row.decode(column, as: String.self).utf8))) ?? []
    }

    static func channel(_ row: PostgresRow) throws -> Channel {
        Channel(channel_id: try row.decode("channel_id"), name: try row.decode("name"), kind: try row.decode("kind"), url: Self.redacted(try row.decode("url")),
                min_severity: try row.decode("min_severity"), metrics: try self.strings(row, "metrics"), providers: try self.strings(row, "providers"),
                models: try self.strings(row, "models"), max_per_hour: try row.decode("max_per_hour"), created_at: try row.decode("created_at"),
                previous_secret_until: try row.decodeIfPresent("previous_secret_until"))
    }

    /// An optional array of distinct strings, each checked by `valid`.
    static func stringList(_ input: JSONInput, _ field: String, max: Int, valid: (String) -> Bool, reason: String) throws -> [String] {
        guard let value = input.members[field] else { return [] }
        guard case .array(let items) = value, items.count <= max else { throw JSONInput.invalid(field, "must be an array of at most \(max) strings") }
        var out: [String] = []
        for item in items {
            guard case .string(let s) = item, valid(s) else { throw JSONInput.invalid(field, reason) }
            if !out.contains(s) { out.append(s) }
        }
        return out
    }

    /// The channels' routes and the threshold rules' (`RuleRoutes`), which feed the same channels.
    public func add<Context: RequestContext>(to router: Router<Context>) {
        RuleRoutes(access: self.access).add(to: router)
        self.access.route(router, .post, "/v1/channels", scope: .admin) { request, tenant, _ in
            let input = try await JSONInput.read(request, allowed: ["name", "url", "kind", "min_severity", "metrics", "providers", "models", "max_per_hour"])
            guard let name = try input.string("name", maxLength: 100) else { throw JSONInput.invalid("name", "required") }
            guard let url = try input.string("url", maxLength: 2048) else { throw JSONInput.invalid("url", "required (an https URL)") }
            let kindName = try input.string("kind", maxLength: 16) ?? "webhook"
            guard let kind = ChannelFormats.Kind(rawValue: kindName) else { throw JSONInput.invalid("kind", "must be webhook, slack or alertmanager") }
            let severity = try input.string("min_severity", maxLength: 16) ?? "warning"
            guard ["info", "warning", "critical"].contains(severity) else { throw JSONInput.invalid("min_severity", "must be info, warning or critical") }
            let metrics = try Self.stringList(input, "metrics", max: DetectorSettingsRoutes.metrics.count, valid: { DetectorSettingsRoutes.metrics.contains($0) },
                                              reason: "each must be one of \(DetectorSettingsRoutes.metrics.sorted().joined(separator: ", "))")
            let nameRule = "each must be a provider or model name (1-128 characters: letters, digits, . _ - : / @)"
            let validName: (String) -> Bool = { !$0.isEmpty && $0.utf8.count <= 128 && $0.unicodeScalars.allSatisfy { ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || ".-_:/@".unicodeScalars.contains($0) } }
            let providers = try Self.stringList(input, "providers", max: 50, valid: validName, reason: nameRule)
            let models = try Self.stringList(input, "models", max: 200, valid: validName, reason: nameRule)
            let cap = try input.integer("max_per_hour", in: 0...10000, absent: kind == .alertmanager ? 0 : 20)
            do {
                _ = try await self.policy.resolve(try self.policy.parse(url))
            } catch {
                throw JSONInput.invalid("url", "\(error)")
            }
            let id = "ch_" + Digest.hex(Digest.randomBytes(8))
            let secret = StandardWebhooks.newSecret()
            guard let rows = try await tenant.database.insert("""
                INSERT INTO notification_channels (channel_id, tenant_id, name, kind, url, secret, min_severity, metrics, providers, models, max_per_hour)
                VALUES (\(id), \(tenant.tenantID), \(name), \(kind.rawValue), \(url), \(secret), \(severity), \(PostgresQuery.textArray(metrics))::text[],
                        \(PostgresQuery.textArray(providers))::text[], \(PostgresQuery.textArray(models))::text[], \(Int32(cap)))
                RETURNING \(unescaped: Self.columns)
                """, whileCount: "SELECT count(*)::bigint AS n FROM notification_channels WHERE tenant_id = \(tenant.tenantID)", isBelow: Int64(Self.maxChannels), resource: "channels")
            else { throw Problem(.conflict, code: "too_many_channels", title: "Too many channels", detail: "a tenant has at most \(Self.maxChannels) channels") }
            var channel = try Self.channel(rows[0])
            channel.secret = secret
            channel.url = url
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
                SELECT message_id, body->>'type' AS type, event, attempts, last_status, last_error, last_latency_ms,
                       CASE WHEN delivered_at IS NOT NULL THEN 'delivered' WHEN failed_at IS NOT NULL THEN 'failed'
                            WHEN suppressed_at IS NOT NULL THEN 'suppressed' ELSE 'pending' END AS state,
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
                       to_char(coalesce(delivered_at, failed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished_at,
                       to_char(next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS next_attempt_at
                FROM notification_outbox WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id) ORDER BY created_at DESC, message_id LIMIT \(Int64(limit))
                """)
            let items = try rows.map { row in
                let state: String = try row.decode("state")
                return Delivery(message_id: try row.decode("message_id"), type: try row.decodeIfPresent("type"), event: try row.decodeIfPresent("event"), state: state, attempts: try row.decode("attempts"),
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
            // Test sends are capped per channel (they bypass `max_per_hour`, which counts anomalies).
            guard let rows = try await tenant.database.insert("""
                INSERT INTO notification_outbox (channel_id, tenant_id, message_id, body, event)
                SELECT channel_id, tenant_id, \(messageID), \(body)::jsonb, 'test' FROM notification_channels WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id)
                RETURNING message_id
                """, whileCount: """
                SELECT count(*)::bigint AS n FROM notification_outbox
                WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id) AND event = 'test' AND created_at > now() - interval '1 hour'
                """, isBelow: Int64(Self.maxTestsPerHour), resource: "tests")
            else {
                throw Problem(.tooManyRequests, code: "too_many_tests", title: "Too many test messages",
                              detail: "a channel is sent at most \(Self.maxTestsPerHour) test messages an hour", retryAfterSeconds: 600)
            }
            guard !rows.isEmpty else { throw Self.notFound(id) }
            return try AdminRoutes.json(.accepted, ["message_id": messageID])
        }
        self.access.route(router, .post, "/v1/channels/{channel_id}/rotate-secret", scope: .admin) { request, tenant, context in
            let id = try Self.channelID(context)
            let input = try await JSONInput.read(request, allowed: ["overlap_seconds"], optionalBody: true)
            let overlap = try input.integer("overlap_seconds", in: 0...604_800, absent: 86_400)
            let secret = StandardWebhooks.newSecret()
            let rows = try await tenant.database.query("""
                UPDATE notification_channels SET previous_secret = secret, previous_secret_until = now() + make_interval(secs => \(Double(overlap))), secret = \(secret)
                WHERE tenant_id = \(tenant.tenantID) AND channel_id = \(id)
                RETURNING \(unescaped: Self.columns)
                """)
            guard let row = rows.first else { throw Self.notFound(id) }
            var channel = try Self.channel(row)
            channel.secret = secret
            return try AdminRoutes.json(.ok, channel)
        }
    }

    static func channelID(_ context: some RequestContext) throws -> String { try Self.pathID(context, "channel_id", noun: "channel") }

    /// A path id of this API's form (letters, digits and `_`, at most 64 bytes); anything else is 404, as an unknown id.
    static func pathID(_ context: some RequestContext, _ parameter: String, noun: String) throws -> String {
        guard let id = context.parameters.get(parameter), id.utf8.count <= 64, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw Problem(.notFound, code: "not_found", title: "No such \(noun)", detail: "\(parameter): no such \(noun)")
        }
        return id
    }

    static func notFound(_ id: String) -> Problem { Self.notFound(id, "channel_id", noun: "channel") }

    static func notFound(_ id: String, _ parameter: String, noun: String) -> Problem {
        Problem(.notFound, code: "not_found", title: "No such \(noun)", detail: "\(parameter): no \(noun) \(id) for this tenant")
    }
}
