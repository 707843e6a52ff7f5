import Events
import Foundation
import GatewayCore
import Hummingbird
import Kafka
import HummingbirdTesting
import Postgres
import Rollups
import Testing
import TestSupport

@Suite("Gateway query API", .serialized, .timeLimit(.minutes(3)))
struct QueryTests {
    @Test("series, breakdown and anomalies answer from the rollups, for the key's tenant only")
    func queries() async throws {
        let gateway = try await Gateway.make()
        let a = TestEnvironment.unique("qa"), b = TestEnvironment.unique("qb")
        let keyA = try await gateway.keys.createTenant(id: a, name: "A").key
        let keyB = try await gateway.keys.createTenant(id: b, name: "B").key
        // Two tenants with the same model names; A: 3 minutes of traffic, B: one request.
        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 7_200_000_000) / 3_600_000_000 * 3_600_000_000
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        var events: [LLMEvent] = []
        for i in 0..<90 {
            let model = i % 3 == 0 ? "gpt-4o-mini" : "gpt-4o"
            events.append(LLMEvent(eventID: "e\(i)", tenantID: a, timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 2_000_000), provider: "openai", model: model,
                                   inputTokens: 100, outputTokens: 10, latencyMs: Double(i + 1) * 10, status: i % 10 == 0 ? .error : .ok, costNanos: model == "gpt-4o" ? 300_001 : 100_000))
        }
        events.append(LLMEvent(eventID: "b0", tenantID: b, timestamp: EventTimestamp(microsecondsSinceEpoch: origin), provider: "openai", model: "gpt-4o",
                               inputTokens: 1, outputTokens: 1, latencyMs: 1, status: .ok, costNanos: 999_999))
        for e in events { minutes.add(e); hours.add(e) }
        try await gateway.postgres.query(RollupStore.upsert(minutes))
        try await gateway.postgres.query(RollupStore.upsert(hours))
        let latencies = events.filter { $0.tenantID == a }.map(\.latencyMs).sorted()
        let from = EventTimestamp(microsecondsSinceEpoch: origin).rfc3339
        let to = EventTimestamp(microsecondsSinceEpoch: origin + 3_600_000_000).rfc3339

        try await gateway.app.test(.router) { client in
            func get(_ uri: String, key: String) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(key)"]) { ($0.status, json($0.body)) }
            }
            let (status, series) = try await get("/v1/series?metric=requests&step=1m&from=\(from)&to=\(to)", key: keyA)
            #expect(status == .ok)
            let points = series["points"] as? [[String: Any]] ?? []
            #expect(points.count == 60)
            #expect(points.prefix(3).map { $0["value"] as? Int } == [30, 30, 30])
            #expect(points[3]["value"] as? Int == 0)

            let (_, rate) = try await get("/v1/series?metric=error_rate&step=1h&from=\(from)&to=\(to)", key: keyA)
            #expect((rate["points"] as? [[String: Any]])?.first?["value"] as? Double == 0.1)
            #expect(rate["unit"] as? String == "ratio")

            let (_, mini) = try await get("/v1/series?metric=requests&step=1h&from=\(from)&to=\(to)&model=gpt-4o-mini", key: keyA)
            #expect((mini["points"] as? [[String: Any]])?.first?["value"] as? Int == 30)
            // Filters are normalized as ingest normalizes events: spellings and aliases find the stored series.
            for filter in ["model=GPT-4o-Mini", "model=openai/gpt-4o-mini", "provider=OpenAI&model=gpt-4o-mini", "provider=openai&model=openai/GPT-4O-MINI"] {
                let (_, found) = try await get("/v1/series?metric=requests&step=1h&from=\(from)&to=\(to)&\(filter)", key: keyA)
                #expect((found["points"] as? [[String: Any]])?.first?["value"] as? Int == 30, "\(filter)")
            }
            let (_, alias) = try await get("/v1/series?metric=requests&step=1h&from=\(from)&to=\(to)&model=gpt-4o-latest", key: keyA)
            #expect((alias["points"] as? [[String: Any]])?.first?["value"] as? Int == 60, "gpt-4o-latest is stored as gpt-4o")

            let (_, p95) = try await get("/v1/series?metric=latency_p95&step=1h&from=\(from)&to=\(to)", key: keyA)
            let estimate = (p95["points"] as? [[String: Any]])?.first?["value"] as? Double ?? -1
            let exact = latencies[max(0, Int((0.95 * Double(latencies.count)).rounded(.up)) - 1)]
            #expect(abs(estimate - exact) <= 0.01 * exact + 0.0001)

            let (_, breakdown) = try await get("/v1/breakdown?from=\(from)&to=\(to)&by=model&order=cost&limit=1", key: keyA)
            let items = breakdown["items"] as? [[String: Any]] ?? []
            #expect(items.count == 1 && items.first?["model"] as? String == "gpt-4o")
            #expect((items.first?["values"] as? [String: Any])?["requests"] as? Int == 60)
            // Money is exact in every answer: 60 x 300,001 + 30 x 100,000 nano-dollars, the same text in a series
            // and in a breakdown (a 4-decimal series value would say 0.0210).
            let expectedCost = "0.02100006"
            let rawBreakdown = try await client.execute(uri: "/v1/breakdown?from=\(from)&to=\(to)", method: .get, headers: [.authorization: "Bearer \(keyA)"]) { String(buffer: $0.body) }
            #expect(rawBreakdown.contains("\"cost_usd\":\(expectedCost),"), "\(rawBreakdown)")
            let rawSeries = try await client.execute(uri: "/v1/series?metric=cost_usd&step=1h&from=\(from)&to=\(to)", method: .get, headers: [.authorization: "Bearer \(keyA)"]) { String(buffer: $0.body) }
            #expect(rawSeries.contains("\"value\":\(expectedCost)}"), "\(rawSeries)")

            // B sees only B; naming another tenant is refused, naming its own is allowed.
            let (crafted, craftedBody) = try await get("/v1/series?metric=requests&step=1h&from=\(from)&to=\(to)&tenant_id=\(a)", key: keyB)
            #expect(crafted == .forbidden && craftedBody["type"] as? String == Problem.typeBase + "tenant_mismatch")
            let (_, seriesB) = try await get("/v1/series?metric=requests&step=1h&from=\(from)&to=\(to)&tenant_id=\(b)", key: keyB)
            #expect((seriesB["points"] as? [[String: Any]])?.first?["value"] as? Int == 1)
            let (_, breakdownB) = try await get("/v1/breakdown?from=\(from)&to=\(to)", key: keyB)
            #expect(((breakdownB["totals"] as? [String: Any])?["requests"] as? Int) == 1)

            let (anomalyStatus, anomalies) = try await get("/v1/anomalies?from=\(from)&to=\(to)", key: keyA)
            #expect(anomalyStatus == .ok && (anomalies["items"] as? [Any])?.isEmpty == true)

            for (uri, status) in [("/v1/series?metric=nope", HTTPResponse.Status.badRequest), ("/v1/series?metric=requests&step=5m", .badRequest),
                                  ("/v1/series?metric=requests&from=\(to)&to=\(from)", .badRequest), ("/v1/series?metric=requests&from=yesterday", .badRequest),
                                  ("/v1/series?metric=requests&step=1m&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", .badRequest),
                                  ("/v1/breakdown?by=tenant", .badRequest), ("/v1/breakdown?limit=0", .badRequest)] {
                let (got, problem) = try await get(uri, key: keyA)
                #expect(got == status, "\(uri)")
                #expect(problem["type"] as? String == Problem.typeBase + "invalid_parameter", "\(uri)")
            }
            try await client.execute(uri: "/v1/series?metric=requests", method: .get) { #expect($0.status == .unauthorized) }
        }
        await gateway.producer.shutdown()
    }
}
