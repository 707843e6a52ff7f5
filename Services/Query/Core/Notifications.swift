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

    /// Queues the revision for each channel of its tenant that wants it (severity at least the channel's minimum,
    /// metric among the channel's when it lists any). Idempotent by (channel, message id).
    static func enqueue(_ anomaly: AnomalyMessage, on connection: isolated PostgresConnection) throws {
        try connection.query("""
            INSERT INTO notification_outbox (channel_id, tenant_id, message_id, body)
            SELECT channel_id, tenant_id, \(self.messageID(anomaly)), \(self.body(anomaly))::jsonb FROM notification_channels
            WHERE tenant_id = \(anomaly.tenantID)
              AND array_position(ARRAY['info', 'warning', 'critical'], min_severity) <= array_position(ARRAY['info', 'warning', 'critical'], \(anomaly.severity))
              AND (cardinality(metrics) = 0 OR \(anomaly.metric) = ANY (metrics))
            ON CONFLICT DO NOTHING
            """)
    }
}

/// Delivers the outbox, at least once: every second it claims due rows (`FOR UPDATE SKIP LOCKED`, so replicas
/// never take the same one) by moving their next attempt a lease (`leaseSeconds`) ahead, posts each signed, and
/// records the outcome. A replica that dies mid-delivery leaves the row to be taken again when its lease expires:
/// one more delivery at most, with the same `webhook-id`. 2xx is delivered; 408, 429 (after its Retry-After), 5xx
/// and network errors are retried with exponential backoff and jitter (5 s doubling to 1 h) for `retryFor`; other
/// 4xx and refused addresses fail for good. The row is the delivery log: attempts, last status, latency, error.
public struct NotificationDelivery: Service {
    let postgres: PostgresClient
    let policy: EgressPolicy
    let client: WebhookClient
    let logger: Logger
    public var leaseSeconds = 60
    public var retryFor: Duration = .seconds(24 * 3600)
    public var batchSize = 20
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

    struct Claimed: Sendable {
        var channelID: String
        var messageID: String
        var body: String
        var url: String
        var secret: String
        var attempts: Int
        var ageSeconds: Double
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            var claimed = 0
            do {
                claimed = try await self.deliverDue()
            } catch {
                self.logger.error("Notification delivery pass failed; retrying", metadata: ["error": "\(error)"])
            }
            // Straight on while there is a backlog; otherwise a second.
            if claimed < self.batchSize {
                do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) } } catch { return }
            }
        }
    }

    /// One pass: claims due rows and delivers them; returns how many it claimed.
    public func deliverDue() async throws -> Int {
        let rows = try await self.postgres.query("""
            UPDATE notification_outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => \(Int64(self.leaseSeconds)))
            FROM (SELECT channel_id, message_id FROM notification_outbox
                  WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                  ORDER BY next_attempt_at LIMIT \(Int64(self.batchSize)) FOR UPDATE SKIP LOCKED) due,
                 notification_channels c
            WHERE o.channel_id = due.channel_id AND o.message_id = due.message_id AND c.channel_id = o.channel_id
            RETURNING o.channel_id, o.message_id, o.body::text AS body, c.url, c.secret, o.attempts,
                      extract(epoch FROM now() - o.created_at)::float8 AS age
            """)
        let claimed = try rows.map { row in
            Claimed(channelID: try row.decode("channel_id"), messageID: try row.decode("message_id"), body: try row.decode("body"),
                    url: try row.decode("url"), secret: try row.decode("secret"), attempts: try row.decode("attempts"), ageSeconds: try row.decode("age"))
        }
        await withTaskGroup(of: Void.self) { group in
            for item in claimed { group.addTask { await self.deliver(item) } }
        }
        return claimed.count
    }

    enum Outcome {
        case delivered(status: Int)
        case retry(status: Int?, error: String, after: Double?)
        case failed(status: Int?, error: String)
    }

    func deliver(_ item: Claimed) async {
        let started = ContinuousClock.now
        let outcome = await self.attempt(item)
        let elapsed = ContinuousClock.now - started
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        self.latency.recordNanoseconds(Int64(ms * 1e6))
        do {
            switch outcome {
            case .delivered(let status):
                self.delivered.increment()
                try await self.postgres.query("""
                    UPDATE notification_outbox SET delivered_at = now(), last_status = \(Int64(status)), last_error = NULL, last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            case .retry(let status, let error, let after) where item.ageSeconds < Double(self.retryFor.components.seconds):
                self.retried.increment()
                // Exponential backoff with full jitter, 5 s doubling to an hour; a 429's Retry-After when longer.
                let backoff = Self.backoff.delay(afterFailures: item.attempts - 1)
                let delay = max(Double(backoff.components.seconds) + Double(backoff.components.attoseconds) / 1e18, after ?? 0)
                try await self.postgres.query("""
                    UPDATE notification_outbox SET next_attempt_at = now() + make_interval(secs => \(delay)), last_status = \(status.map(Int64.init)),
                        last_error = \(String(error.prefix(500))), last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            case .retry(let status, let error, _), .failed(let status, let error):
                self.failed.increment()
                self.logger.warning("Notification failed for good", metadata: ["channel": "\(item.channelID)", "message": "\(item.messageID)", "error": "\(error)"])
                try await self.postgres.query("""
                    UPDATE notification_outbox SET failed_at = now(), last_status = \(status.map(Int64.init)), last_error = \(String(error.prefix(500))), last_latency_ms = \(ms)
                    WHERE channel_id = \(item.channelID) AND message_id = \(item.messageID)
                    """)
            }
        } catch {
            // The lease expires and the row is taken again: one more delivery at most.
            self.logger.error("Recording a notification outcome failed", metadata: ["channel": "\(item.channelID)", "error": "\(error)"])
        }
    }

    func attempt(_ item: Claimed) async -> Outcome {
        let target: EgressPolicy.Target
        let addresses: [EgressPolicy.Address]
        do {
            target = try self.policy.parse(item.url)
            addresses = try await self.policy.resolve(target)
        } catch {
            return .failed(status: nil, error: "url: \(error)")
        }
        let body = Array(item.body.utf8)
        let headers: [(String, String)]
        do {
            headers = try StandardWebhooks.headers(id: item.messageID, timestamp: Int64(Date().timeIntervalSince1970), body: body, secret: item.secret)
        } catch {
            return .failed(status: nil, error: "\(error)")
        }
        do {
            let response = try await self.client.post(target, addresses: addresses, headers: headers, body: body)
            switch response.status {
            case 200..<300: return .delivered(status: response.status)
            case 429: return .retry(status: 429, error: "429 Too Many Requests", after: response.retryAfter.flatMap(Double.init))
            case 408, 500..<600: return .retry(status: response.status, error: "\(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))", after: nil)
            case 300..<400: return .failed(status: response.status, error: "\(response.status): redirects are not followed")
            default: return .failed(status: response.status, error: "\(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))")
            }
        } catch {
            return .retry(status: nil, error: "\(error)", after: nil)
        }
    }
}
