import Events
import HTTPTypes
import Hummingbird
import Kafka
import Logging
import Metrics
import OTLP
import ServiceKit

/// `POST /v1/traces`: OTLP/HTTP trace export (https://opentelemetry.io/docs/specs/otlp/#otlphttp), so an
/// application already instrumented with OpenTelemetry GenAI conventions reports to Tokenwatch by pointing its
/// exporter here with its API key. GenAI spans become events on llm.events.raw.v1 (the same path as
/// `POST /v1/events`), other spans are skipped. Every answer, errors included, is in the request's encoding:
/// `ExportTraceServiceResponse` (with `partialSuccess` for spans that could not be used) or `google.rpc.Status`.
public struct OTLPRoutes: Sendable {
    let access: TenantAccess
    let publisher: EventPublisher
    let topics: Topics
    let settings: GatewaySettings
    let logger: Logger
    private let accepted = Counter(label: "tw_gateway_otlp_spans_total", dimensions: [("outcome", "accepted")])
    private let rejected = Counter(label: "tw_gateway_otlp_spans_total", dimensions: [("outcome", "rejected")])
    private let skipped = Counter(label: "tw_gateway_otlp_spans_total", dimensions: [("outcome", "skipped")])
    private let duplicates = Counter(label: "tw_gateway_otlp_spans_total", dimensions: [("outcome", "duplicate")])
    private let ignoredScope = Counter(label: "tw_gateway_otlp_spans_total", dimensions: [("outcome", "ignored_scope")])
    private let otherSignals = Counter(label: "tw_gateway_otlp_other_signal_requests_total")
    /// Rejection reasons quoted in `partialSuccess.errorMessage`; the count stays exact.
    static let maxReportedReasons = 5
    /// OTLP elements (attributes, events, empty messages...) that cost one unit of the event budget: a GenAI span
    /// with its usual attributes costs about one.
    static let elementsPerUnit = 64

    public init(access: TenantAccess, publisher: EventPublisher, topics: Topics, settings: GatewaySettings, logger: Logger) {
        self.access = access
        self.publisher = publisher
        self.topics = topics
        self.settings = settings
        self.logger = logger
    }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        router.on("/v1/traces", method: .post) { request, _ in await self.export(request) }
        for signal in OTLPOtherSignal.allCases {
            router.on(RouterPath("/v1/\(signal.rawValue)"), method: .post) { request, _ in await self.acknowledge(signal, request) }
        }
    }

    /// Credentials first (an unauthenticated caller learns nothing else), then the media type.
    func authorizeExport(_ request: Request) async throws -> (TenantRequest, OTLPEncoding) {
        let tenant = try await self.access.authorize(request, scope: .ingest)
        guard let encoding = OTLPEncoding(contentType: request.headers[.contentType]) else {
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type", title: "Unsupported Content-Type", detail: "Content-Type must be application/x-protobuf or application/json")
        }
        return (tenant, encoding)
    }

    /// `POST /v1/metrics` and `/v1/logs`: authenticated, bounded and checked like traces, then acknowledged with a
    /// partial success saying they are not stored (`OTLPOtherSignal`).
    func acknowledge(_ signal: OTLPOtherSignal, _ request: Request) async -> Response {
        var encoding = OTLPEncoding(contentType: request.headers[.contentType]) ?? .json
        do {
            let tenant: TenantRequest
            (tenant, encoding) = try await self.authorizeExport(request)
            let raw = try await RequestBody.read(request, tenant: tenant, settings: self.settings, publisher: self.publisher)
            let limit = self.settings.maxDecompressedBytes
            try await self.access.work.run(tenant: tenant.tenantID) { [encoding] in
                let body = try RequestBody.inflate(raw, limit: limit)
                do {
                    _ = try body.withUnsafeBytes { try signal.validate($0, encoding: encoding) }
                } catch {
                    throw Problem(.badRequest, code: "invalid_body", title: "Undecodable OTLP body", detail: "not an Export\(signal == .metrics ? "Metrics" : "Logs")ServiceRequest: \(error)")
                }
            }
            self.otherSignals.increment()
            var headers: HTTPFields = [.contentType: encoding.contentType]
            if let decision = tenant.requestDecision { RateLimitHeaders.apply(decision, to: &headers) }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: signal.response(encoding: encoding))))
        } catch {
            return self.failure(error, encoding: encoding)
        }
    }

    func export(_ request: Request) async -> Response {
        var encoding = OTLPEncoding(contentType: request.headers[.contentType]) ?? .json
        do {
            let tenant: TenantRequest
            (tenant, encoding) = try await self.authorizeExport(request)
            let raw = try await RequestBody.read(request, tenant: tenant, settings: self.settings, publisher: self.publisher)
            let otlpLimits = OTLPLimits(maxSpans: self.settings.otlpMaxSpans, maxElements: self.settings.otlpMaxElements)
            let limit = self.settings.maxDecompressedBytes
            let (traces, inflated): (OTLPTraceRequest, Int) = try await self.access.work.run(tenant: tenant.tenantID) { [encoding] in
                let body = try RequestBody.inflate(raw, limit: limit)
                do {
                    return (try body.withUnsafeBytes { buffer throws(OTLPDecodingError) in
                        switch encoding {
                        case .protobuf: try OTLPTraceRequest(protobuf: buffer, keep: GenAISpanMapping.keep, limits: otlpLimits)
                        case .json: try OTLPTraceRequest(json: buffer, keep: GenAISpanMapping.keep, limits: otlpLimits)
                        }
                    }, body.count)
                } catch let error as OTLPDecodingError {
                    switch error.kind {
                    case .tooManySpans:
                        throw Problem(.contentTooLarge, code: "batch_too_large", title: "Too many spans", detail: "\(error.reason) (TW_OTLP_MAX_SPANS)")
                    case .tooManyElements:
                        throw Problem(.contentTooLarge, code: "batch_too_large", title: "Too many elements", detail: "\(error.reason) (TW_OTLP_MAX_ELEMENTS)")
                    case .malformed:
                        throw Problem(.badRequest, code: "invalid_body", title: "Undecodable OTLP body", detail: "not an ExportTraceServiceRequest in \(encoding == .protobuf ? "protobuf" : "OTLP/JSON"): \(error)")
                    }
                }
            }

            let now = EventTimestamp.now()
            let limits = self.settings.eventLimits
            let tenantKey = Array(tenant.tenantID.utf8)
            let export = GenAIExport(traces, ignoredScopes: tenant.caller.ignoredOTLPScopes, limits: limits, now: now)
            let messages = export.events.map { event in
                var event = event
                event.tenantID = tenant.tenantID
                return KafkaProducerMessage(topic: self.topics.raw, key: tenantKey, value: event.jsonBytes())
            }
            let rejectedCount = export.rejected.count
            let reasons = export.rejected.prefix(Self.maxReportedReasons).map { r in
                "span \(GenAISpanMapping.hex(r.spanID).prefix(16)) (\(r.spanName.prefix(64))): \(r.reason)"
            }
            self.skipped.increment(by: export.skipped)
            self.rejected.increment(by: rejectedCount)
            self.duplicates.increment(by: export.duplicates)
            self.ignoredScope.increment(by: export.ignored)
            // GenAI spans, used or not, are what the gateway worked on for this tenant, or the elements it walked
            // through (`elementsPerUnit` to a unit), whichever is more; less what the body's bytes were charged.
            let spans = messages.count + rejectedCount + export.duplicates + export.ignored
            let work = max(max(spans, traces.elements / Self.elementsPerUnit) - raw.units, raw.remaining(inflated))
            let budget = try await self.publisher.chargeWork(work, caller: tenant.caller) ?? raw.decision
            if !messages.isEmpty {
                try await self.publisher.publish(messages, caller: tenant.caller)
                self.accepted.increment(by: messages.count)
            }
            var message = ""
            if rejectedCount > 0 {
                message = "\(rejectedCount) GenAI span(s) could not be used: " + reasons.joined(separator: "; ")
                if rejectedCount > reasons.count { message += "; ..." }
            }
            var headers: HTTPFields = [.contentType: encoding.contentType]
            if let budget { RateLimitHeaders.apply(budget, to: &headers) }
            if let decision = tenant.requestDecision { RateLimitHeaders.apply(decision, to: &headers) }
            let answer = OTLPResponse.export(rejectedSpans: rejectedCount, errorMessage: message, encoding: encoding)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer)))
        } catch {
            return self.failure(error, encoding: encoding)
        }
    }

    /// An error as OTLP/HTTP answers it: `google.rpc.Status` in the request's encoding; Retry-After on 429 and 503
    /// (what exporters honour); a dependency fault is 503, so the exporter retries instead of dropping the data.
    func failure(_ error: any Error, encoding: OTLPEncoding) -> Response {
        if let problem = error as? Problem {
            var response = Self.status(problem.status, problem.detail, encoding: encoding)
            if let seconds = problem.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
            response.headers.append(contentsOf: problem.headers)
            if problem.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
            return response
        }
        self.logger.error("OTLP export failed", metadata: ["error": "\(error)"])
        if TransientFaults.isTransient(error) {
            var response = Self.status(.serviceUnavailable, "a store the gateway needs is unavailable; retry", encoding: encoding)
            response.headers[.retryAfter] = "5"
            return response
        }
        return Self.status(.internalServerError, "internal error", encoding: encoding)
    }

    static func status(_ status: HTTPResponse.Status, _ message: String, encoding: OTLPEncoding) -> Response {
        let body = OTLPResponse.status(code: OTLPResponse.grpcCode(httpStatus: status.code), message: message, encoding: encoding)
        return Response(status: status, headers: [.contentType: encoding.contentType], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
