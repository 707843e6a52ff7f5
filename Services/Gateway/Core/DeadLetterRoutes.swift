import Events
import Foundation
import Hummingbird
import Postgres

/// `GET /v1/dead-letters?from=&to=` (scope query): what of the tenant's input was dead-lettered (by the ingestor
/// or the aggregator, from events produced to Kafka directly; the gateway refuses bad events on the spot): counts
/// by reason over the range (per minute and in total) and the latest samples with their reason, the field and rule
/// (`detail`) and the event id when the input named one. Written by the query service from llm.events.dlq.v1.
public struct DeadLetterRoutes: Sendable {
    let access: TenantAccess

    public init(access: TenantAccess) { self.access = access }

    struct Point: Encodable { var t: String, reason: String, count: Int64 }
    struct Sample: Encodable { var at: String, reason: String, field: String?, detail: String, event_id: String? }
    struct Answer: Encodable { var from: String, to: String, totals: [String: Int64], points: [Point], samples: [Sample] }

    public func add<Context: RequestContext>(to router: Router<Context>) {
        self.access.route(router, .get, "/v1/dead-letters", scope: .query) { request, tenant, _ in
            try QueryRoutes.allowOnly(["from", "to"], in: request)
            let (from, to) = try QueryRoutes.range(request.uri.queryParameters)
            guard to - from <= QueryRoutes.maxRangeDays * 86_400_000_000 else { throw QueryRoutes.bad("from", "the range is longer than \(QueryRoutes.maxRangeDays) days") }
            let fromText = EventTimestamp(microsecondsSinceEpoch: from).rfc3339, toText = EventTimestamp(microsecondsSinceEpoch: to).rfc3339
            let points = try await tenant.database.query("""
                SELECT to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS t, reason, count FROM dead_letter_counts
                WHERE tenant_id = \(tenant.tenantID) AND window_start >= \(fromText)::timestamptz AND window_start < \(toText)::timestamptz
                ORDER BY window_start, reason LIMIT 100000
                """)
            let samples = try await tenant.database.query("""
                SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at, reason, detail, event_id FROM dead_letter_samples
                WHERE tenant_id = \(tenant.tenantID) AND at >= \(fromText)::timestamptz AND at < \(toText)::timestamptz
                ORDER BY at DESC, dlq_offset DESC LIMIT 50
                """)
            var answer = Answer(from: fromText, to: toText, totals: [:], points: [], samples: [])
            for row in points {
                let point = Point(t: try row.decode("t"), reason: try row.decode("reason"), count: try row.decode("count"))
                answer.points.append(point)
                answer.totals[point.reason, default: 0] += point.count
            }
            for row in samples {
                let detail: String = try row.decode("detail")
                // The detail is "field: reason" (the decoder's and the aggregator's form); the field is its first part.
                let field = detail.split(separator: ":", maxSplits: 1).first.map { String($0) }.flatMap { $0.contains(" ") || $0.isEmpty ? nil : $0 }
                answer.samples.append(Sample(at: try row.decode("at"), reason: try row.decode("reason"), field: field, detail: detail, event_id: try row.decodeIfPresent("event_id", as: String.self)))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(answer))))
        }
    }
}
