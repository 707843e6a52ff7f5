import ClientSupport
import Foundation
import HTTPTypes
import Hummingbird
import Kafka
import Logging
import Rollups
import ServiceLifecycle
import Synchronization

/// Fans anomalies from llm.anomalies.v1 out to the gateway's live streams, per tenant. Each gateway replica reads
/// the whole topic in a group of its own from the newest message (nothing committed: a stream is live, history is
/// at `GET /v1/anomalies`). Subscribers are bounded per tenant and in total; a slow subscriber's buffer is bounded
/// too (the oldest messages are dropped, the stream says so with a `dropped` event).
public final class AnomalyBroadcaster: Sendable {
    struct State {
        var subscribers: [String: [UUID: AsyncStream<String>.Continuation]] = [:]
        var total = 0
    }

    public let maxPerTenant: Int
    public let maxTotal: Int
    private let state = Mutex(State())

    public init(maxPerTenant: Int = 20, maxTotal: Int = 1000) {
        self.maxPerTenant = maxPerTenant
        self.maxTotal = maxTotal
    }

    /// A stream of the tenant's anomaly JSON documents, or nil when the limits are reached.
    func subscribe(tenant: String) -> (UUID, AsyncStream<String>)? {
        let id = UUID()
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let added = self.state.withLock { state -> Bool in
            guard state.total < self.maxTotal, state.subscribers[tenant, default: [:]].count < self.maxPerTenant else { return false }
            state.subscribers[tenant, default: [:]][id] = continuation
            state.total += 1
            return true
        }
        guard added else { return nil }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(tenant: tenant, id: id) }
        return (id, stream)
    }

    func unsubscribe(tenant: String, id: UUID) {
        self.state.withLock { state in
            if state.subscribers[tenant]?.removeValue(forKey: id) != nil { state.total -= 1 }
            if state.subscribers[tenant]?.isEmpty == true { state.subscribers[tenant] = nil }
        }
    }

    /// One subscriber only (keep-alives).
    func send(tenant: String, id: UUID, _ text: String) {
        self.state.withLock { $0.subscribers[tenant]?[id] }?.yield(text)
    }

    /// Ends one subscriber's stream (its key was revoked or its tenant disabled).
    func end(tenant: String, id: UUID, _ lastText: String) {
        guard let continuation = self.state.withLock({ $0.subscribers[tenant]?[id] }) else { return }
        continuation.yield(lastText)
        continuation.finish()
    }

    public func publish(tenant: String, json: String) {
        let targets = self.state.withLock { Array(($0.subscribers[tenant] ?? [:]).values) }
        for continuation in targets { continuation.yield(json) }
    }

    public var subscriberCount: Int { self.state.withLock { $0.total } }
}

/// Reads llm.anomalies.v1 into the broadcaster.
public struct AnomalyFeed: Service {
    let consumer: KafkaConsumer
    let topic: String
    let broadcaster: AnomalyBroadcaster
    let logger: Logger

    public init(consumer: KafkaConsumer, topic: String, broadcaster: AnomalyBroadcaster, logger: Logger) {
        self.consumer = consumer
        self.topic = topic
        self.broadcaster = broadcaster
        self.logger = logger
    }

    public func run() async throws {
        try self.consumer.subscribe(topics: [self.topic])
        // The live feed must outlive a broker outage: an error ends this read, not the gateway (a service that
        // throws would stop the whole ServiceGroup). Reading resumes with backoff; streams resume with it.
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                for try await batch in self.consumer.batches(maxMessages: 500).cancelOnGracefulShutdown() {
                    backoff.reset()
                    for message in batch { self.forward(message) }
                }
                break
            } catch {
                guard !Task.isCancelled && !Task.isShuttingDownGracefully else { break }
                let delay = backoff.next()
                self.logger.error("Live anomaly feed failed; reading again", metadata: ["error": "\(error)", "retry.delay": "\(delay)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            }
        }
        await self.consumer.close()
    }

    /// Any producer can write to the topic: only a valid anomaly of the key's tenant is streamed, and as its
    /// canonical one-line JSON, so no message can inject SSE frames or reach another tenant.
    func forward(_ message: KafkaMessage) {
        guard let tenant = message.key.map({ String(decoding: $0, as: UTF8.self) }), !tenant.isEmpty,
            let anomaly = try? AnomalyMessage(json: message.value), anomaly.tenantID == tenant
        else {
            self.logger.debug("Unreadable anomaly not streamed", metadata: ["kafka.offset": "\(message.offset)"])
            return
        }
        self.broadcaster.publish(tenant: tenant, json: anomaly.canonicalJSON)
    }
}

/// `GET /v1/anomalies/stream` (scope query): Server-Sent Events, one `anomaly` event per new or updated anomaly of
/// the caller's tenant, and a comment every 2 s. The stream ends with an `end` event when its key is revoked or
/// expires or its tenant is disabled.
public struct AnomalyStreamRoutes: Sendable {
    let access: TenantAccess
    let broadcaster: AnomalyBroadcaster
    /// How often a comment is written to each stream. Default: 2 s.
    let heartbeat: Duration
    /// How often each stream's key is authenticated again; at most the key-cache TTL. Default: 5 s.
    let recheckEvery: Duration

    public init(access: TenantAccess, broadcaster: AnomalyBroadcaster, heartbeat: Duration = .seconds(2), recheckEvery: Duration = .seconds(5)) {
        self.access = access
        self.broadcaster = broadcaster
        self.heartbeat = heartbeat
        self.recheckEvery = recheckEvery
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .get, "/v1/anomalies/stream", scope: .query) { request, tenant, _ in
            guard let (id, stream) = self.broadcaster.subscribe(tenant: tenant.tenantID) else {
                throw Problem(.tooManyRequests, code: "too_many_streams", title: "Too many live streams",
                    detail: "at most \(self.broadcaster.maxPerTenant) live streams per tenant and \(self.broadcaster.maxTotal) per gateway", retryAfterSeconds: 30)
            }
            let token = TenantAccess.bearerToken(request) ?? ""
            let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: ": connected\n\n"))
                // A short heartbeat: a client that went away is noticed at the next write or two (there is no close
                // notification), so its slot is freed within seconds, and proxies see a live stream. Every
                // `recheckEvery` the key is authenticated again (through the same cache as requests), so a revoked
                // key or a disabled tenant loses its open streams within the key-cache TTL; a store that cannot be
                // reached keeps the stream (the key was valid, and the outage is not the client's).
                let ticker = Task { [broadcaster = self.broadcaster, access = self.access, tenant = tenant.tenantID, id, heartbeat = self.heartbeat, recheckEvery = self.recheckEvery] in
                    var sinceCheck: Duration = .zero
                    while !Task.isCancelled {
                        try? await Task.sleep(for: heartbeat)
                        broadcaster.send(tenant: tenant, id: id, ": keep-alive")
                        sinceCheck += heartbeat
                        guard sinceCheck >= recheckEvery else { continue }
                        sinceCheck = .zero
                        switch await access.stillAuthorized(token: token, tenant: tenant, scope: .query) {
                        case .some(false):
                            broadcaster.end(tenant: tenant, id: id, "event: end\ndata: {\"reason\":\"the key was revoked or has expired, or the tenant is disabled\"}")
                            return
                        case .some(true), nil: continue
                        }
                    }
                }
                defer { ticker.cancel() }
                for await text in stream {
                    let frame = text.hasPrefix(":") || text.hasPrefix("event: ") ? text + "\n\n" : "event: anomaly\ndata: \(text)\n\n"
                    try await writer.write(ByteBuffer(string: frame))
                }
                try await writer.finish(nil)
            })
        }
    }
}
