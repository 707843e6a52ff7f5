import Codecs
import Events
import Foundation
import HTTPTypes
import Hummingbird
import Kafka
import Logging
import Metrics

/// `POST /v1/events`: a JSON array or NDJSON batch, gzip allowed. The tenant comes from the API key (a `tenant_id`
/// in the body is replaced). Valid events are produced to llm.events.raw.v1 keyed by tenant, and the answer is 202
/// only after the broker acknowledged every one of them; invalid ones are reported by index, field and reason.
public struct IngestRoutes: Sendable {
    let access: TenantAccess
    let publisher: EventPublisher
    let topics: Topics
    let settings: GatewaySettings
    private let accepted = Counter(label: "tw_gateway_events_total", dimensions: [("outcome", "accepted")])
    private let rejected = Counter(label: "tw_gateway_events_total", dimensions: [("outcome", "rejected")])
    /// Reported per-event errors are capped; the counts stay exact.
    static let maxReportedErrors = 100

    public init(access: TenantAccess, publisher: EventPublisher, topics: Topics, settings: GatewaySettings) {
        self.access = access
        self.publisher = publisher
        self.topics = topics
        self.settings = settings
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .post, "/v1/events", scope: .ingest) { request, tenant, _ in try await self.ingest(request, tenant: tenant) }
    }

    func ingest(_ request: Request, tenant: TenantRequest) async throws -> Response {
        let caller = tenant.caller
        let format = try Self.format(of: request)
        let raw = try await RequestBody.read(request, tenant: tenant, settings: self.settings, publisher: self.publisher)

        // The key decides the tenant: a body's tenant_id is ignored, whatever it holds.
        let decoder = EventDecoder(limits: self.settings.eventLimits, ignoresTenantID: true)
        let maxEvents = self.settings.maxBatchEvents, limit = self.settings.maxDecompressedBytes
        let (decoded, inflated): ([Result<LLMEvent, EventValidationError>], Int) = try await self.publisher.access.work.run(tenant: caller.tenantID) {
            let body = try RequestBody.inflate(raw, limit: limit)
            do {
                return (try EventBatchReader.decode(body, format: format, maxEvents: maxEvents, decoder: decoder, now: .now()), body.count)
            } catch let error as EventValidationError {
                if error.reason.hasPrefix("more than") {
                    throw Problem(.contentTooLarge, code: "batch_too_large", title: "Too many events", detail: "\(error.reason) (TW_MAX_BATCH_EVENTS)")
                }
                throw Problem(.badRequest, code: "invalid_body", title: "Invalid batch", detail: error.description)
            }
        }
        guard !decoded.isEmpty else { throw Problem(.badRequest, code: "empty_batch", title: "Empty batch", detail: "the batch holds no events") }
        // The events or the inflated bytes, whichever cost more, less what the body was charged before (a pass to
        // count the events before decoding cost a sixth of the gateway's time); a batch over the budget is refused
        // before anything is produced.
        let work = max(decoded.count - raw.units, raw.remaining(inflated))
        let eventBudget = try await self.publisher.chargeWork(work, caller: caller) ?? raw.decision

        var messages: [KafkaProducerMessage] = []
        messages.reserveCapacity(decoded.count)
        var errors: [(Int, EventValidationError)] = []
        let tenantKey = Array(caller.tenantID.utf8)
        for (index, outcome) in decoded.enumerated() {
            switch outcome {
            case .success(var event):
                event.tenantID = caller.tenantID
                messages.append(KafkaProducerMessage(topic: self.topics.raw, key: tenantKey, value: event.jsonBytes()))
            case .failure(let error):
                errors.append((index, error))
            }
        }
        self.rejected.increment(by: errors.count)
        let errorsJSON = Self.errorsJSON(errors)
        guard !messages.isEmpty else {
            var problem = Problem(.badRequest, code: "invalid_events", title: "No valid events", detail: "all \(errors.count) events were rejected")
            problem.extensions = [("accepted", "0"), ("rejected", String(errors.count)), ("errors", errorsJSON)]
            throw problem
        }
        try await self.publisher.publish(messages, caller: caller)
        self.accepted.increment(by: messages.count)
        let json = "{\"accepted\":\(messages.count),\"rejected\":\(errors.count),\"errors\":\(errorsJSON)}"
        var headers: HTTPFields = [.contentType: "application/json"]
        if let eventBudget { RateLimitHeaders.apply(eventBudget, to: &headers) }
        return Response(status: .accepted, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    static func format(of request: Request) throws -> EventBatchFormat {
        let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        switch type {
        case "application/json": return .jsonArray
        case "application/x-ndjson", "application/jsonl", "application/ndjson": return .ndjson
        default:
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type", title: "Unsupported Content-Type", detail: "send application/json (an array of events) or application/x-ndjson (one event per line)")
        }
    }

    static func errorsJSON(_ errors: [(Int, EventValidationError)]) -> String {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (n, (index, error)) in errors.prefix(maxReportedErrors).enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: Array("{\"index\":\(index),\"field\":".utf8))
            writeJSONString(error.field, into: &out)
            out.append(contentsOf: Array(",\"reason\":".utf8))
            writeJSONString(error.reason, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// A request body within the gateway's limits: read as sent (bounded), charged to the tenant's event budget for
/// what it will cost before any work is done on it, then inflated (bounded) on a decode worker together with its
/// decoding, so an inflated body is never held while waiting for a turn.
enum RequestBody {
    /// Bytes of body (after inflation) that cost one unit of the tenant's event budget: a body's parsing costs what
    /// its bytes cost whether they hold events or 20 MB of whitespace. An ordinary event is well under this, so an
    /// ordinary batch pays for its events alone.
    static let bytesPerUnit = 4096

    /// A body as sent, and what was charged for it before any work.
    struct Raw: Sendable {
        var bytes: [UInt8]
        var gzip: Bool
        /// Units charged: the inflated size the body declares (gzip's ISIZE trailer, within the bound) or its size.
        var units: Int
        var decision: RateLimiter.Decision?

        /// The units a body of `inflated` bytes costs beyond what was charged.
        func remaining(_ inflated: Int) -> Int { inflated / RequestBody.bytesPerUnit - self.units }
    }

    static func read(_ request: Request, tenant: TenantRequest, settings: GatewaySettings, publisher: EventPublisher) async throws -> Raw {
        let raw: [UInt8]
        do {
            raw = Array(buffer: try await request.body.collect(upTo: settings.maxBodyBytes))
        } catch {
            throw Problem(.contentTooLarge, code: "payload_too_large", title: "Request body too large", detail: "the body is larger than \(settings.maxBodyBytes) bytes (TW_MAX_BODY_BYTES)")
        }
        let gzip: Bool
        switch request.headers[.contentEncoding]?.lowercased() {
        case nil, "identity": gzip = false
        case "gzip": gzip = true
        case let other?:
            throw Problem(.unsupportedMediaType, code: "unsupported_encoding", title: "Unsupported Content-Encoding", detail: "Content-Encoding '\(other)' is not supported; use gzip or none")
        }
        // What inflating will produce, as the body says (ISIZE; a lie only moves the charge to after the work).
        let declared = gzip ? min(Gzip.declaredSize(raw) ?? raw.count, settings.maxDecompressedBytes) : raw.count
        let units = declared / Self.bytesPerUnit
        return Raw(bytes: raw, gzip: gzip, units: units, decision: try await publisher.chargeWork(units, caller: tenant.caller))
    }

    /// The body inflated (on a decode worker), within `limit`.
    static func inflate(_ raw: Raw, limit: Int) throws -> [UInt8] {
        guard raw.gzip else { return raw.bytes }
        do {
            return try Gzip.decompress(raw.bytes, maxOutput: limit)
        } catch {
            if error.kind == .tooLarge {
                throw Problem(.contentTooLarge, code: "payload_too_large", title: "Decompressed body too large", detail: "the body inflates to more than \(limit) bytes (TW_MAX_DECOMPRESSED_BYTES)")
            }
            throw Problem(.badRequest, code: "invalid_body", title: "Invalid gzip body", detail: error.message)
        }
    }
}

/// What every ingest route does with its valid events: take them from the tenant's event budget, produce them to
/// llm.events.raw.v1, and return only once the broker acknowledged all of them (then the caller may answer
/// "accepted"). A broker failure refunds the budget and is a 503 the client retries unchanged.
public struct EventPublisher: Sendable {
    public let access: TenantAccess
    let producer: KafkaProducer
    let logger: Logger

    public init(access: TenantAccess, producer: KafkaProducer, logger: Logger) {
        self.access = access
        self.producer = producer
        self.logger = logger
    }

    /// Takes the events a request made the gateway decode from the tenant's event rate budget, before any is
    /// produced; the decision's state goes into the answer's RateLimit headers.
    func chargeWork(_ count: Int, caller: Caller) async throws -> RateLimiter.Decision? {
        guard let limiter = self.access.limiter, count > 0 else { return nil }
        let decision = await limiter.checkEventWork(tenant: caller.tenantID, limits: caller.limits, count: count)
        guard decision.outcome == .allowed else { throw Problem.rateLimited(decision) }
        return decision
    }

    /// Counts the events against the monthly quota, then hands them to the broker; answers only once it acknowledged.
    func publish(_ messages: [KafkaProducerMessage], caller: Caller) async throws {
        if let limiter = self.access.limiter {
            let decision = await limiter.checkEvents(tenant: caller.tenantID, limits: caller.limits, count: messages.count)
            guard decision.outcome == .allowed else { throw Problem.rateLimited(decision) }
        }
        do {
            try await self.producer.sendAll(messages)
        } catch {
            await self.access.limiter?.refund(tenant: caller.tenantID, count: messages.count, limits: caller.limits)
            self.logger.warning("Broker did not acknowledge a batch", metadata: ["error": "\(error)", "tenant.id": "\(caller.tenantID)"])
            throw Problem(.serviceUnavailable, code: "broker_unavailable", title: "Events not accepted", detail: "the event broker did not acknowledge the batch; retry it unchanged (event ids make retries safe)", retryAfterSeconds: 5)
        }
    }
}
