import ClientSupport
import Events
import Foundation
import Logging
import Metrics
import Notify
import Postgres
import Rollups
import ServiceKit
import ServiceLifecycle
import Synchronization

/// Notifications run in the query service: it already turns llm.anomalies.v1 into the stored anomalies, so the
/// outbox rows for a revision are written in the same transaction (a revision is never missed nor queued twice,
/// however often a batch is replayed), and delivery reads Postgres, which every replica shares: no new executable,
/// and still only Kafka between services.
public enum NotificationOutbox {
    /// The Standard Webhooks message id of an anomaly revision: the same on every retry, so receivers deduplicate.
    public static func messageID(_ anomaly: AnomalyMessage) -> String { "\(anomaly.anomalyID)-r\(anomaly.revision)" }

    /// The body every channel of the tenant receives: `{"type": "anomaly.ongoing" | "anomaly.resolved", "data": anomaly}`.
    public static func body(_ anomaly: AnomalyMessage) -> String {
        "{\"type\":\(jsonStringLiteral("anomaly." + anomaly.status)),\"data\":\(anomaly.canonicalJSON)}"
    }

    static let severities = ["info", "warning", "critical"]

    static func rank(_ severity: String?) -> Int { severity.flatMap { Self.severities.firstIndex(of: $0) } ?? -1 }

    /// The cap window: a channel is sent at most its `max_per_hour` messages per window, the rest summarized at the
    /// window's end (`TW_NOTIFICATION_CAP_WINDOW`, an hour; the query service checks the value at start).
    public static let capWindowSeconds: Int64 = (try? capWindow())?.components.seconds ?? 3600

    public static func capWindow() throws -> Duration {
        try Environment().duration("TW_NOTIFICATION_CAP_WINDOW", default: .seconds(3600), in: .seconds(1) ... .seconds(86400))
    }

    /// Queues the revision for each channel of its tenant that wants it, as that channel's lifecycle of the anomaly:
    /// - **opened**: the first revision the channel hears of (severity at least its minimum; metric, provider and
    ///   model among its filters when it lists any);
    /// - **escalated**: a revision more severe than the last one sent;
    /// - **resolved**: the resolution of an anomaly the channel was told of (whatever its severity then).
    /// Other revisions (the extent growing, a severity falling) are not sent to webhook and Slack channels; an
    /// Alertmanager channel gets every revision of an anomaly it was told of, which keeps the alert's `endsAt` ahead.
    /// Beyond the channel's cap in the current cap window a row is kept as suppressed and counted in that window's
    /// summary, delivered when the window ends. Idempotent by (channel, message id): replays queue nothing twice, and
    /// an older revision arriving after a newer one is ignored.
    static func enqueue(_ anomaly: AnomalyMessage, on connection: isolated PostgresConnection) throws {
        let channels = try connection.query("""
            SELECT c.channel_id, c.kind, c.min_severity, c.max_per_hour, last.revision AS last_revision, last.severity AS last_severity, last.event AS last_event,
                   (SELECT count(*) FROM notification_outbox w WHERE w.channel_id = c.channel_id AND w.event IN ('opened', 'escalated', 'resolved', 'updated')
                      AND w.created_at >= to_timestamp(floor(extract(epoch FROM now()) / \(self.capWindowSeconds)) * \(self.capWindowSeconds))
                      AND w.suppressed_at IS NULL)::bigint AS sent_in_window,
                   floor(extract(epoch FROM now()) / \(self.capWindowSeconds))::bigint AS window_index
            FROM notification_channels c
            LEFT JOIN LATERAL (SELECT revision, severity, event FROM notification_outbox o
                               WHERE o.channel_id = c.channel_id AND o.anomaly_id = \(anomaly.anomalyID) AND o.suppressed_at IS NULL
                               ORDER BY revision DESC LIMIT 1) last ON true
            WHERE c.tenant_id = \(anomaly.tenantID)
              AND (cardinality(c.metrics) = 0 OR \(anomaly.metric) = ANY (c.metrics))
              AND (cardinality(c.providers) = 0 OR \(anomaly.provider) = ANY (c.providers))
              AND (cardinality(c.models) = 0 OR \(anomaly.model) = ANY (c.models))
            """)
        for channel in channels {
            let channelID: String = try channel.decode("channel_id")
            let kind: String = try channel.decode("kind")
            let lastRevision: Int64? = try channel.decodeIfPresent("last_revision")
            let lastSeverity: String? = try channel.decodeIfPresent("last_severity")
            let lastEvent: String? = try channel.decodeIfPresent("last_event")
            if let lastRevision, lastRevision >= anomaly.revision { continue }
            if lastEvent == "resolved" { continue }
            let event: String
            if lastRevision == nil {
                guard self.rank(anomaly.severity) >= self.rank(try channel.decode("min_severity", as: String.self)) else { continue }
                event = anomaly.status == "resolved" ? "resolved" : "opened"
            } else if anomaly.status == "resolved" {
                event = "resolved"
            } else if self.rank(anomaly.severity) > self.rank(lastSeverity) {
                event = "escalated"
            } else if kind == "alertmanager" {
                event = "updated"
            } else {
                continue
            }
            let cap: Int32 = try channel.decode("max_per_hour")
            let sent: Int64 = try channel.decode("sent_in_window")
            // A resolution is never held back: the channel was told the anomaly opened and must hear that it ended.
            let suppressed = cap > 0 && sent >= Int64(cap) && event != "resolved"
            try connection.query("""
                INSERT INTO notification_outbox (channel_id, tenant_id, message_id, body, anomaly_id, revision, severity, previous_severity, event, suppressed_at)
                VALUES (\(channelID), \(anomaly.tenantID), \(self.messageID(anomaly)), \(self.body(anomaly))::jsonb, \(anomaly.anomalyID), \(anomaly.revision),
                        \(anomaly.severity), \(lastSeverity), \(event), CASE WHEN \(suppressed) THEN now() END)
                ON CONFLICT DO NOTHING
                """)
            if suppressed {
                let windowIndex: Int64 = try channel.decode("window_index")
                let summaryID = "summary-\(channelID)-\(windowIndex)"
                let body = "{\"type\":\"summary\",\"data\":{\"tenant_id\":\(jsonStringLiteral(anomaly.tenantID)),\"channel_id\":\(jsonStringLiteral(channelID)),\"suppressed\":1,\"cap\":\(cap),\"window_seconds\":\(self.capWindowSeconds)}}"
                try connection.query("""
                    INSERT INTO notification_outbox (channel_id, tenant_id, message_id, body, event, next_attempt_at)
                    SELECT \(channelID), \(anomaly.tenantID), \(summaryID), \(body)::jsonb, 'summary',
                           to_timestamp((\(windowIndex) + 1) * \(self.capWindowSeconds))
                    ON CONFLICT (channel_id, message_id) DO UPDATE
                    SET body = jsonb_set(notification_outbox.body, '{data,suppressed}', to_jsonb((notification_outbox.body #>> '{data,suppressed}')::bigint + 1))
                    WHERE notification_outbox.delivered_at IS NULL AND notification_outbox.attempts = 0
                    """)
            }
        }
    }
}

/// Delivers the outbox, at least once: it claims due rows (`FOR UPDATE SKIP LOCKED`, so replicas never take the same
/// one) by moving their next attempt a lease (`leaseSeconds`) ahead, posts each signed, and records each outcome as
/// it comes. A replica that dies mid-delivery leaves the row to be taken again when its lease expires: one more
/// delivery at most, with the same `webhook-id`. 2xx is delivered; 408, 429 (after its Retry-After, bounded by the
/// retry window), 5xx and network errors are retried with exponential backoff and jitter (5 s doubling to 1 h) for
/// `retryFor`; other 4xx and refused addresses fail for good. The row is the delivery log: attempts, last status,
/// latency, error.
///
/// Tenants share delivery fairly: at most `maxInFlight` deliveries run at once, of which one tenant's at most
/// `perTenantInFlight`, and each claim takes the tenants' oldest due rows in turns (a tenant's first, every tenant's
/// second, ...), so a tenant's backlog or a receiver that never answers delays only that tenant's messages. A slot
/// is claimed again as soon as its delivery ends, not when a whole batch has.
public struct NotificationDelivery: Service {
    let postgres: PostgresClient
    let policy: EgressPolicy
    let client: WebhookClient
    let logger: Logger
    public var leaseSeconds = 60
    public var retryFor: Duration = .seconds(24 * 3600)
    /// Most rows one claim takes.
    public var batchSize = 20
    /// Deliveries at once in this replica (`TW_NOTIFICATION_CONCURRENCY`), and of one tenant
    /// (`TW_NOTIFICATION_TENANT_CONCURRENCY`).
    public var maxInFlight = 32
    public var perTenantInFlight = 4
    static let backoff = Backoff(initial: .seconds(5), maximum: .seconds(3600))
    private let delivered = Counter(label: "tw_notifications_total", dimensions: [("outcome", "delivered")])
    private let retried = Counter(label: "tw_notifications_total", dimensions: [("outcome", "retry")])
    private let failed = Counter(label: "tw_notifications_total", dimensions: [("outcome", "failed")])
    private let latency = Timer(label: "tw_notification_delivery_seconds")

    public init(postgres: PostgresClient, policy: EgressPolicy, client: WebhookClient, logger: Logger) {
        self.postgres = postgres
        self.policy = policy
        self.client = client
        self.logger = logger
    }

    /// The dashboard's external address, for links in messages (`TW_PUBLIC_URL`).
    public var publicURL: String?

    struct Claimed: Sendable {
        var channelID: String
        var tenantID: String
        var messageID: String
        var body: String
        var url: String
        var kind: ChannelFormats.Kind
        /// The channel's secret, and the one it replaced while the rotation's overlap lasts.
        var secrets: [String]
        var previousSeverity: String?
        var attempts: Int
        var ageSeconds: Double
    }

    public func run() async throws {
        let busy = InFlight()
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully {
                let (running, saturated) = busy.counts.withLock { ($0.values.reduce(0, +), $0.filter { $0.value >= self.perTenantInFlight }.map(\.key)) }
                let free = min(self.maxInFlight - running, self.batchSize)
                var claimed: [Claimed] = []
                if free > 0 {
                    do {
                        claimed = try await self.claim(limit: free, excluding: saturated)
                    } catch {
                        self.logger.error("Claiming notifications failed; retrying", metadata: ["error": "\(error)"])
                    }
                }
                for item in claimed {
                    busy.counts.withLock { $0[item.tenantID, default: 0] += 1 }
                    group.addTask {
                        await self.record(await self.deliver(item))
                        busy.counts.withLock { counts in
                            counts[item.tenantID, default: 1] -= 1
                            if counts[item.tenantID] == 0 { counts[item.tenantID] = nil }
                        }
                    }
                }
                // Straight on while rows were left due; otherwise a quarter of a second (an indexed claim query: cheap,
                // and the wait is most of a notification's delay). In-flight deliveries end by their own deadline.
                if free <= 0 || claimed.count < free {
                    do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) } } catch { return }
                }
            }
        }
    }

    /// Deliveries running in this replica, per tenant.
    final class InFlight: Sendable {
        let counts = Mutex<[String: Int]>([:])
    }

    /// One pass (tests, and what `run` does per claim): claims due rows, delivers them at once, each outcome recorded
    /// as it comes; returns how many it claimed.
    public func deliverDue() async throws -> Int {
        let claimed = try await self.claim(limit: self.batchSize, excluding: [])
        await withDiscardingTaskGroup { group in
            for item in claimed { group.addTask { await self.record(await self.deliver(item)) } }
        }
        return claimed.count
    }

    /// Takes up to `limit` due rows for delivery, the tenants' in turns (at most `perTenantInFlight` of one tenant),
    /// none of the `excluding` tenants (already at their share in this replica).
    func claim(limit: Int, excluding: [String]) async throws -> [Claimed] {
        let rows = try await self.postgres.query("""
            UPDATE notification_outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => \(Int64(self.leaseSeconds)))
            FROM (SELECT channel_id, message_id FROM notification_outbox
                  WHERE (channel_id, message_id) IN (
                      SELECT channel_id, message_id FROM (
                          SELECT channel_id, message_id, next_attempt_at,
                                 row_number() OVER (PARTITION BY tenant_id ORDER BY next_attempt_at, message_id) AS turn
                          FROM notification_outbox n
                          WHERE delivered_at IS NULL AND failed_at IS NULL AND suppressed_at IS NULL AND next_attempt_at <= now()
                            AND n.tenant_id <> ALL(\(PostgresQuery.textArray(excluding))::text[])
                            -- One anomaly's revisions reach a channel in order: a later one waits while an earlier one is
                            -- pending (delivered concurrently, an "ongoing" could land after the "resolved" and reopen it).
                            AND NOT EXISTS (SELECT 1 FROM notification_outbox p WHERE p.channel_id = n.channel_id AND p.anomaly_id = n.anomaly_id
                                            AND p.revision < n.revision AND p.delivered_at IS NULL AND p.failed_at IS NULL AND p.suppressed_at IS NULL)
                      ) ranked
                      WHERE turn <= \(Int64(self.perTenantInFlight))
                      ORDER BY turn, next_attempt_at LIMIT \(Int64(limit)))
                  AND delivered_at IS NULL AND failed_at IS NULL AND suppressed_at IS NULL AND next_attempt_at <= now()
                  FOR UPDATE SKIP LOCKED) due,
                 notification_channels c
            WHERE o.channel_id = due.channel_id AND o.message_id = due.message_id AND c.channel_id = o.channel_id
            RETURNING o.channel_id, o.tenant_id, o.message_id, o.body::text AS body, c.url, c.kind, c.secret, o.attempts, o.previous_severity,
                      CASE WHEN c.previous_secret_until > now() THEN c.previous_secret END AS previous_secret,
                      extract(epoch FROM now() - o.created_at)::float8 AS age
            """)
        return try rows.map { row in
            Claimed(channelID: try row.decode("channel_id"), tenantID: try row.decode("tenant_id"), messageID: try row.decode("message_id"), body: try row.decode("body"),
                    url: try row.decode("url"), kind: ChannelFormats.Kind(rawValue: try row.decode("kind")) ?? .webhook,
                    secrets: [try row.decode("secret", as: String.self)] + [try row.decodeIfPresent("previous_secret", as: String.self)].compactMap { $0 },
                    previousSeverity: try row.decodeIfPresent("previous_severity"), attempts: try row.decode("attempts"), ageSeconds: try row.decode("age"))
        }
    }

    enum Outcome {
        case delivered(status: Int)
        case retry(status: Int?, error: String, after: Double?)
        case failed(status: Int?, error: String)
    }

    /// Delivers one claimed row; the outcome is recorded by `record`.
    func deliver(_ item: Claimed) async -> (Claimed, Outcome, Double) {
        let started = ContinuousClock.now
        let outcome = await self.attempt(item)
        let elapsed = ContinuousClock.now - started
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        self.latency.recordNanoseconds(Int64(ms * 1e6))
        return (item, outcome, ms)
    }

    /// Seconds until the next attempt: exponential backoff with full jitter (5 s doubling to an hour), a 429's
    /// Retry-After when longer, never past the end of the retry window (the row then fails for good when it comes due).
    func retryDelay(_ item: Claimed, after: Double?) -> Double {
        let backoff = Self.backoff.delay(afterFailures: item.attempts - 1)
        let delay = max(Double(backoff.components.seconds) + Double(backoff.components.attoseconds) / 1e18, after ?? 0)
        return min(delay, max(1, Double(self.retryFor.components.seconds) - item.ageSeconds))
    }

    /// Records one delivery's outcome on its own, so another row's failure cannot lose it. If it fails, the lease
    /// expires and the row is taken again: one more delivery at most.
    func record(_ result: (Claimed, Outcome, Double)) async {
        let (item, outcome, ms) = result
        let retrying = item.ageSeconds < Double(self.retryFor.components.seconds)
        do {
            switch outcome {
            case .delivered(let status):
                try await self.postgres.query("""
                    UPDATE notification_outbox SET delivered_at = now(), last_status = \(Int64(status)), last_error = NULL, last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            case .retry(let status, let error, let after) where retrying:
                try await self.postgres.query("""
                    UPDATE notification_outbox SET next_attempt_at = now() + make_interval(secs => \(self.retryDelay(item, after: after))),
                        last_status = \(status.map(Int64.init)), last_error = \(String(error.prefix(500))), last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            case .retry(let status, let error, _), .failed(let status, let error):
                try await self.postgres.query("""
                    UPDATE notification_outbox SET failed_at = now(), last_status = \(status.map(Int64.init)), last_error = \(String(error.prefix(500))), last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            }
        } catch {
            self.logger.error("Recording a notification outcome failed", metadata: ["channel": "\(item.channelID)", "message": "\(item.messageID)", "error": "\(error)"])
            return
        }
        switch outcome {
        case .delivered: self.delivered.increment()
        case .retry where retrying: self.retried.increment()
        case .retry(_, let error, _), .failed(_, let error):
            self.failed.increment()
            self.logger.warning("Notification failed for good", metadata: ["channel": "\(item.channelID)", "message": "\(item.messageID)", "error": "\(error)"])
        }
    }

    /// A Retry-After value (RFC 9110 10.2.3) in seconds from `now`: delay-seconds (digits only) or an HTTP-date;
    /// nil for anything else (`inf`, `1e400`, a negative or fractional number: the backoff applies). Bounded to a
    /// year, so no arithmetic on it overflows; `retryDelay` bounds it again by the retry window.
    public static func retryAfter(_ value: String?, now: Date = Date()) -> Double? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        let year = 366.0 * 86_400
        if value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            // Beyond 8 digits it is over a year anyway; never parsed into an overflowing integer.
            return value.utf8.count > 8 ? year : min(Double(Int(value) ?? 0), year)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: value) else { return nil }
        return min(max(0, date.timeIntervalSince(now)), year)
    }

    func attempt(_ item: Claimed) async -> Outcome {
        var target: EgressPolicy.Target
        let addresses: [EgressPolicy.Address]
        do {
            target = try self.policy.parse(item.url)
            addresses = try await self.policy.resolve(target)
        } catch {
            return .failed(status: nil, error: "url: \(error)")
        }
        let body: [UInt8]
        var headers: [(String, String)] = []
        do {
            let rendered = try ChannelFormats.render(item.kind, message: item.body, publicURL: self.publicURL, previousSeverity: item.previousSeverity)
            body = rendered.body
            if let path = rendered.path, !target.path.hasSuffix(path) {
                target.path = (target.path == "/" ? "" : target.path.hasSuffix("/") ? String(target.path.dropLast()) : target.path) + path
            }
            // Every kind carries the Standard Webhooks headers (webhook-id deduplicates anywhere); during a rotation's
            // overlap the signature header holds one signature per secret, as the specification allows.
            let timestamp = Int64(Date().timeIntervalSince1970)
            headers = try StandardWebhooks.headers(id: item.messageID, timestamp: timestamp, body: body, secret: item.secrets[0])
            for secret in item.secrets.dropFirst() {
                let extra = try StandardWebhooks.signature(id: item.messageID, timestamp: timestamp, body: body, secret: secret)
                headers = headers.map { $0.0 == "webhook-signature" ? ($0.0, $0.1 + " " + extra) : $0 }
            }
        } catch {
            return .failed(status: nil, error: "\(error)")
        }
        do {
            let response = try await self.client.post(target, addresses: addresses, headers: headers, body: body)
            switch response.status {
            case 200..<300: return .delivered(status: response.status)
            // The status alone: a receiver's body is not repeated into the delivery log (a channel is not a way to read
            // what a server answers).
            case 429: return .retry(status: 429, error: "429 Too Many Requests", after: Self.retryAfter(response.retryAfter))
            case 408, 500..<600: return .retry(status: response.status, error: response.statusLine, after: nil)
            case 300..<400: return .failed(status: response.status, error: "\(response.status): redirects are not followed")
            default: return .failed(status: response.status, error: response.statusLine)
            }
        } catch {
            return .retry(status: nil, error: "\(error)", after: nil)
        }
    }
}
