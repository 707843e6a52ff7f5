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
        try await RollupStore.write(minutes, hours, to: gateway.postgres)
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

    @Test("users: exact per-user totals over whole days, top-N by any order with cursor paging, CSV, one user's days; error types as a breakdown and a series; the key's tenant only")
    func users() async throws {
        let gateway = try await Gateway.make()
        let a = TestEnvironment.unique("ua"), b = TestEnvironment.unique("ub")
        let keyA = try await gateway.keys.createTenant(id: a, name: "A").key
        let keyB = try await gateway.keys.createTenant(id: b, name: "B").key
        let day: Int64 = 86_400_000_000
        let day0 = (EventTimestamp.now().microsecondsSinceEpoch / day - 3) * day
        // A: user-k makes k calls on each of two days, each costing k x 1,000 nano-dollars; the 3rd call of each user
        // fails (rate_limit, or timeout for user-5); 4 calls without a user. B: one call by "user-1".
        var events: [LLMEvent] = []
        for d in 0..<2 {
            for k in 1...5 {
                for i in 0..<k {
                    let failed = i == 2
                    events.append(LLMEvent(eventID: "e\(d)-\(k)-\(i)", tenantID: a, timestamp: EventTimestamp(microsecondsSinceEpoch: day0 + Int64(d) * day + Int64(k * 60 + i) * 1_000_000),
                                           provider: "openai", model: "gpt-4o", inputTokens: 10, outputTokens: Int64(k), latencyMs: 100, status: failed ? .error : .ok,
                                           errorType: failed ? (k == 5 ? "timeout" : "rate_limit") : nil, costNanos: Int64(k) * 1_000, userID: "user-\(k)"))
                }
            }
            for i in 0..<2 {
                events.append(LLMEvent(eventID: "n\(d)-\(i)", tenantID: a, timestamp: EventTimestamp(microsecondsSinceEpoch: day0 + Int64(d) * day + 3_600_000_000),
                                       provider: "openai", model: "gpt-4o", inputTokens: 1, outputTokens: 1, latencyMs: 100, status: .ok, costNanos: 7))
            }
        }
        events.append(LLMEvent(eventID: "b0", tenantID: b, timestamp: EventTimestamp(microsecondsSinceEpoch: day0), provider: "openai", model: "gpt-4o",
                               inputTokens: 1, outputTokens: 1, latencyMs: 1, status: .ok, costNanos: 999_999, userID: "user-1"))
        var users = UserTotalDeltas(), minutes = RollupDeltas(granularity: .minute), days = RollupDeltas(granularity: .day)
        for e in events { users.add(e); minutes.add(e); days.add(e) }
        for query in UserTotalsStore.upserts(users) { try await gateway.postgres.query(query) }
        try await RollupStore.write(minutes, days, to: gateway.postgres)
        let from = String(EventTimestamp(microsecondsSinceEpoch: day0).rfc3339.prefix(10))
        let to = String(EventTimestamp(microsecondsSinceEpoch: day0 + 2 * day).rfc3339.prefix(10))

        try await gateway.app.test(.router) { client in
            func get(_ uri: String, key: String = keyA) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(key)"]) { ($0.status, json($0.body)) }
            }
            func values(_ item: [String: Any]?) -> [String: Any] { item?["values"] as? [String: Any] ?? [:] }
            let (status, top) = try await get("/v1/users?from=\(from)&to=\(to)&limit=2")
            #expect(status == .ok)
            #expect(top["users"] as? Int == 5)
            let items = top["items"] as? [[String: Any]] ?? []
            #expect(items.map { $0["user_id"] as? String } == ["user-5", "user-4"], "by cost, most first")
            // user-5: 5 calls a day for 2 days at 5,000 nano-dollars each = 50,000 nano-dollars, 2 failures.
            #expect(values(items.first)["requests"] as? Int == 10 && values(items.first)["errors"] as? Int == 2)
            #expect(values(items.first)["output_tokens"] as? Int == 50)
            let rawTop = try await client.execute(uri: "/v1/users?from=\(from)&to=\(to)&limit=1", method: .get, headers: [.authorization: "Bearer \(keyA)"]) { String(buffer: $0.body) }
            #expect(rawTop.contains("\"cost_usd\":0.00005}"), "\(rawTop)")
            // Totals: all 30 user calls + 4 without a user, which are answered apart.
            #expect((top["totals"] as? [String: Any])?["requests"] as? Int == 34)
            #expect((top["unattributed"] as? [String: Any])?["requests"] as? Int == 4)

            // Paging: the cursor walks the rest without repeats or gaps.
            var seen = items.compactMap { $0["user_id"] as? String }
            var cursor = top["next_cursor"] as? String
            while let next = cursor {
                let (_, page) = try await get("/v1/users?from=\(from)&to=\(to)&limit=2&cursor=\(next)")
                seen += (page["items"] as? [[String: Any]] ?? []).compactMap { $0["user_id"] as? String }
                cursor = page["next_cursor"] as? String
            }
            #expect(seen == ["user-5", "user-4", "user-3", "user-2", "user-1"])
            let (_, byRequests) = try await get("/v1/users?from=\(from)&to=\(to)&order=errors")
            #expect((byRequests["items"] as? [[String: Any]] ?? []).map { $0["user_id"] as? String } == ["user-3", "user-4", "user-5", "user-1", "user-2"],
                    "two failures each for users 3-5, ties by user id")

            // One user's days.
            let (_, one) = try await get("/v1/users?from=\(from)&to=\(to)&user=user-3")
            let perDay = one["days"] as? [[String: Any]] ?? []
            #expect(perDay.map { $0["day"] as? String } == [from, String(EventTimestamp(microsecondsSinceEpoch: day0 + day).rfc3339.prefix(10))])
            #expect(perDay.allSatisfy { values($0)["requests"] as? Int == 3 })
            #expect((one["totals"] as? [String: Any])?["requests"] as? Int == 6)

            // CSV: a header and one line per user, exact money.
            let csv = try await client.execute(uri: "/v1/users?from=\(from)&to=\(to)&format=csv", method: .get, headers: [.authorization: "Bearer \(keyA)"]) {
                ($0.headers[.contentType] ?? "", String(buffer: $0.body))
            }
            #expect(csv.0.hasPrefix("text/csv"))
            let lines = csv.1.split(separator: "\r\n").map(String.init)
            #expect(lines.first == "user_id,requests,errors,input_tokens,output_tokens,cached_input_tokens,reasoning_tokens,cost_usd")
            #expect(lines.count == 6 && lines[1] == "user-5,10,2,100,50,0,0,0.00005")

            // Breakdowns by user and by error type, and one error type's series.
            let (_, byUser) = try await get("/v1/breakdown?by=user&from=\(from)T00:00:00Z&to=\(to)T00:00:00Z&limit=1")
            #expect(byUser["by"] as? String == "user" && (byUser["items"] as? [[String: Any]])?.first?["user_id"] as? String == "user-5")
            let (partial, _) = try await get("/v1/breakdown?by=user&from=\(from)T01:00:00Z&to=\(to)T00:00:00Z")
            #expect(partial == .badRequest, "per-user totals are per day")
            let (_, byType) = try await get("/v1/breakdown?by=error_type&from=\(from)T00:00:00Z&to=\(to)T00:00:00Z")
            let types = byType["items"] as? [[String: Any]] ?? []
            #expect(types.map { $0["error_type"] as? String } == ["rate_limit", "timeout"])
            #expect(types.map { values($0)["errors"] as? Int } == [4, 2])
            #expect(values(types.first)["share_of_errors"] as? Double == 4.0 / 6.0)
            let (_, timeouts) = try await get("/v1/series?metric=errors&error_type=timeout&step=1d&from=\(from)T00:00:00Z&to=\(to)T00:00:00Z")
            #expect((timeouts["points"] as? [[String: Any]] ?? []).map { $0["value"] as? Int } == [1, 1])
            let (wrongMetric, _) = try await get("/v1/series?metric=requests&error_type=timeout")
            #expect(wrongMetric == .badRequest)
            // Distinct users per window (an estimate; exact this small): 5 a day, 5 over both days.
            let (_, distinct) = try await get("/v1/series?metric=users&step=1d&from=\(from)T00:00:00Z&to=\(to)T00:00:00Z")
            #expect((distinct["points"] as? [[String: Any]] ?? []).map { $0["value"] as? Int } == [5, 5])
            // One user's days: user-4 made 4 calls a day costing 4 x 4,000 nano-dollars.
            let (_, userSeries) = try await get("/v1/series?metric=requests&step=1d&user=user-4&from=\(from)T00:00:00Z&to=\(to)T00:00:00Z")
            #expect((userSeries["points"] as? [[String: Any]] ?? []).map { $0["value"] as? Int } == [4, 4])
            let (userStep, _) = try await get("/v1/series?metric=requests&step=1h&user=user-4")
            #expect(userStep == .badRequest, "per-user totals are daily")
            let (filtered, _) = try await get("/v1/series?metric=users&model=gpt-4o")
            #expect(filtered == .badRequest, "distinct users are kept for the tenant's total")

            // B sees its one user only.
            let (_, topB) = try await get("/v1/users?from=\(from)&to=\(to)", key: keyB)
            #expect((topB["items"] as? [[String: Any]] ?? []).map { $0["user_id"] as? String } == ["user-1"])
            #expect(values((topB["items"] as? [[String: Any]])?.first)["requests"] as? Int == 1)

            for uri in ["/v1/users?from=\(from)T01:00:00Z", "/v1/users?order=latency", "/v1/users?cursor=%25%25", "/v1/users?format=xml",
                        "/v1/users?user=user-1&limit=3", "/v1/users?from=\(to)&to=\(from)"] {
                let (got, problem) = try await get(uri)
                #expect(got == .badRequest, "\(uri)")
                #expect(problem["type"] as? String == Problem.typeBase + "invalid_parameter", "\(uri)")
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("app and environment: breakdowns by each, filters alone and combined with provider and model, each answer equal to the sum of the matching events")
    func appsAndEnvironments() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("ae")
        let key = try await gateway.keys.createTenant(id: tenant, name: "AE").key
        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 7_200_000_000) / 3_600_000_000 * 3_600_000_000
        let apps: [String?] = ["search", "chat", "search", nil]
        let envs: [String?] = ["prod", "staging", nil]
        let models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4")]
        var events: [LLMEvent] = []
        for i in 0..<120 {
            let (provider, model) = models[i % 2]
            events.append(LLMEvent(eventID: "e\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 1_000_000), provider: provider, model: model,
                                   inputTokens: Int64(i), outputTokens: 1, latencyMs: 10, status: .ok, costNanos: Int64(1000 + i), app: apps[i % 4], environment: envs[i % 3]))
        }
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        for e in events { minutes.add(e); hours.add(e) }
        try await RollupStore.write(minutes, hours, to: gateway.postgres)
        let range = "from=\(EventTimestamp(microsecondsSinceEpoch: origin).rfc3339)&to=\(EventTimestamp(microsecondsSinceEpoch: origin + 3_600_000_000).rfc3339)"
        let all = events
        @Sendable func expected(_ keep: (LLMEvent) -> Bool) -> Int { all.filter(keep).count }

        try await gateway.app.test(.router) { client in
            func get(_ uri: String) async throws -> [String: Any] {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(key)"]) {
                    #expect($0.status == .ok, "\(uri): \(String(buffer: $0.body))")
                    return json($0.body)
                }
            }
            func items(_ answer: [String: Any], _ name: String) -> [String: Int] {
                var out: [String: Int] = [:]
                for item in answer["items"] as? [[String: Any]] ?? [] {
                    out[item[name] as? String ?? "?"] = (item["values"] as? [String: Any])?["requests"] as? Int
                }
                return out
            }
            let byApp = try await get("/v1/breakdown?\(range)&by=app&order=requests")
            #expect(items(byApp, "app") == ["search": expected { $0.app == "search" }, "chat": expected { $0.app == "chat" }, "default": expected { $0.app == nil }],
                    "events without an app are counted under default")
            #expect((byApp["totals"] as? [String: Any])?["requests"] as? Int == 120)
            let byEnv = try await get("/v1/breakdown?\(range)&by=environment&app=search")
            #expect(items(byEnv, "environment") == ["prod": expected { $0.app == "search" && $0.environment == "prod" },
                                                     "staging": expected { $0.app == "search" && $0.environment == "staging" },
                                                     "default": expected { $0.app == "search" && $0.environment == nil }])
            let models = try await get("/v1/breakdown?\(range)&by=model&environment=prod")
            #expect(items(models, "model") == ["gpt-4o": expected { $0.model == "gpt-4o" && $0.environment == "prod" },
                                                "claude-sonnet-4": expected { $0.model == "claude-sonnet-4" && $0.environment == "prod" }])
            for (filter, keep) in [("app=chat", { (e: LLMEvent) in e.app == "chat" }), ("environment=staging", { $0.environment == "staging" }),
                                   ("app=search&environment=prod&model=gpt-4o", { $0.app == "search" && $0.environment == "prod" && $0.model == "gpt-4o" }),
                                   ("provider=anthropic&app=default", { $0.provider == "anthropic" && $0.app == nil }),
                                   ("model=gpt-4o", { $0.model == "gpt-4o" })] as [(String, (LLMEvent) -> Bool)] {
                let series = try await get("/v1/series?metric=requests&step=1h&\(range)&\(filter)")
                #expect((series["points"] as? [[String: Any]])?.first?["value"] as? Int == expected(keep), "\(filter)")
            }
            let (unknown, problem) = try await client.execute(uri: "/v1/breakdown?\(range)&by=team", method: .get, headers: [.authorization: "Bearer \(key)"]) { ($0.status, json($0.body)) }
            #expect(unknown == .badRequest && (problem["detail"] as? String)?.contains("app, environment") == true)
        }
        await gateway.producer.shutdown()
    }

    @Test("promoted tags: a tenant promotes tag keys through the API; a breakdown by tag:<key> and a tag.<key>= filter answer the events' sums; a tag with another dimension is refused")
    func promotedTags() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("tg")
        let queryKey = try await gateway.keys.createTenant(id: tenant, name: "TG").key
        let admin = try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.query, .admin])!.key
        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 7_200_000_000) / 3_600_000_000 * 3_600_000_000
        var events: [LLMEvent] = []
        for i in 0..<60 {
            events.append(LLMEvent(eventID: "e\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 1_000_000), provider: "openai", model: "gpt-4o",
                                   inputTokens: 1, outputTokens: 1, latencyMs: 10, status: .ok, costNanos: Int64(i), tags: ["feature": ["search", "chat", "summary"][i % 3], "team": "a"]))
        }
        var hours = RollupDeltas(granularity: .hour)
        for e in events { hours.add(e, promoted: e.tags.filter { $0.key == "feature" }) }
        try await RollupStore.write(hours, to: gateway.postgres)
        let range = "from=\(EventTimestamp(microsecondsSinceEpoch: origin).rfc3339)&to=\(EventTimestamp(microsecondsSinceEpoch: origin + 3_600_000_000).rfc3339)"
        let expectedCost = events.filter { $0.tags["feature"] == "search" }.reduce(Int64(0)) { $0 + ($1.costNanos ?? 0) }

        try await gateway.app.test(.router) { client in
            func call(_ uri: String, _ method: HTTPRequest.Method = .get, key: String? = nil, body: String? = nil) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(key ?? queryKey)", .contentType: "application/json"],
                                         body: body.map { ByteBuffer(string: $0) }) { ($0.status, json($0.body)) }
            }
            // Promoting needs the admin scope; the tenant shows its keys.
            let (refused, _) = try await call("/v1/tenant", .patch, body: #"{"promoted_tags": ["feature"]}"#)
            #expect(refused == .forbidden)
            let (ok, shown) = try await call("/v1/tenant", .patch, key: admin, body: #"{"promoted_tags": ["feature", "customer", "feature"]}"#)
            #expect(ok == .ok && (shown["tenant"] as? [String: Any])?["promoted_tags"] as? [String] == ["feature", "customer"])
            let (tooMany, problem) = try await call("/v1/tenant", .patch, key: admin, body: #"{"promoted_tags": ["a", "b", "c", "d", "e", "f"]}"#)
            #expect(tooMany == .badRequest && (problem["detail"] as? String)?.hasPrefix("promoted_tags") == true)

            let (_, byFeature) = try await call("/v1/breakdown?\(range)&by=tag:feature&order=requests")
            var counts: [String: Int] = [:]
            for item in byFeature["items"] as? [[String: Any]] ?? [] { counts[item["tag_value"] as? String ?? "?"] = (item["values"] as? [String: Any])?["requests"] as? Int }
            #expect(counts == ["search": 20, "chat": 20, "summary": 20])
            #expect((byFeature["totals"] as? [String: Any])?["requests"] as? Int == 60, "every event carries the tag once")
            let search = try await client.execute(uri: "/v1/series?metric=cost_usd&step=1h&\(range)&tag.feature=search", method: .get, headers: [.authorization: "Bearer \(queryKey)"]) { String(buffer: $0.body) }
            #expect(search.contains("\"value\":\(LLMEvent.decimalUSD(nanos: expectedCost))}"), "\(search)")
            let (_, team) = try await call("/v1/breakdown?\(range)&by=tag:team")
            #expect((team["items"] as? [Any])?.isEmpty == true, "an unpromoted tag is not aggregated")
            for uri in ["/v1/series?metric=requests&tag.feature=search&model=gpt-4o", "/v1/breakdown?by=tag:feature&app=x", "/v1/breakdown?by=model&tag.feature=search",
                        "/v1/series?metric=requests&tag.feature=a&tag.team=b"] {
                let (status, body) = try await call(uri)
                #expect(status == .badRequest, "\(uri): \(body)")
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("an anomaly's evidence: the sampled calls of its model and minutes, the slowest first for a latency anomaly, linked to the tenant's tracing tool; another tenant's anomaly is not found")
    func evidence() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("ev"), other = TestEnvironment.unique("eo")
        let key = try await gateway.keys.createTenant(id: tenant, name: "EV").key
        let admin = try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.query, .admin])!.key
        let otherKey = try await gateway.keys.createTenant(id: other, name: "EO").key
        let minute: Int64 = 60_000_000
        let start = (EventTimestamp.now().microsecondsSinceEpoch / minute - 30) * minute
        // Two minutes of gpt-4o calls (latency 100 + i ms; every 7th failed), and a slower model that is not the
        // anomaly's: its calls must not appear.
        var samples = EvidenceSamples()
        var calls: [LLMEvent] = []
        for i in 0..<40 {
            let model = i % 5 == 4 ? "gpt-4o-mini" : "gpt-4o"
            let latency = model == "gpt-4o" ? Double(100 + i) : 9_000
            let event = LLMEvent(eventID: "c\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: start + Int64(i % 2) * minute + Int64(i) * 100_000),
                                 provider: "openai", model: model, inputTokens: 1, outputTokens: 1, latencyMs: latency, status: i % 7 == 0 ? .error : .ok,
                                 errorType: i % 7 == 0 ? "timeout" : nil, costNanos: Int64(i), userID: "u\(i % 3)",
                                 traceID: String(repeating: "a", count: 31) + String(i % 10), spanID: String(repeating: "b", count: 16))
            samples.add(event)
            calls.append(event)
        }
        // Added twice (a replayed batch): nothing changes.
        for statement in samples.statements() + samples.statements() { try await gateway.postgres.query(statement) }
        let body = #"{"anomaly_id":"an-ev-1","tenant_id":"\#(tenant)","provider":"openai","model":"gpt-4o","metric":"latency_p95","window_start":"\#(EventTimestamp(microsecondsSinceEpoch: start).rfc3339)","window_end":"\#(EventTimestamp(microsecondsSinceEpoch: start + minute).rfc3339)","status":"ongoing","severity":"warning","revision":1}"#
        try await gateway.postgres.query("INSERT INTO anomalies (tenant_id, anomaly_id, window_start, body) VALUES (\(tenant), 'an-ev-1', \(EventTimestamp(microsecondsSinceEpoch: start).rfc3339)::timestamptz, \(body)::jsonb)")
        let slowest = calls.filter { $0.model == "gpt-4o" }
        let expected = [0, 1].flatMap { m in
            slowest.filter { ($0.timestamp.microsecondsSinceEpoch - start) / minute == Int64(m) }.sorted { $0.latencyMs > $1.latencyMs }.prefix(EvidenceSamples.perKind)
        }.sorted { $0.latencyMs > $1.latencyMs }.map(\.eventID)

        try await gateway.app.test(.router) { client in
            func call(_ uri: String, _ method: HTTPRequest.Method = .get, key: String, body: String? = nil) async throws -> (HTTPResponse.Status, [String: Any]) {
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"],
                                         body: body.map { ByteBuffer(string: $0) }) { ($0.status, json($0.body)) }
            }
            let (bad, _) = try await call("/v1/tenant", .patch, key: admin, body: #"{"trace_url_template": "ftp://x/{trace_id}"}"#)
            #expect(bad == .badRequest)
            let (set, _) = try await call("/v1/tenant", .patch, key: admin, body: #"{"trace_url_template": "https://jaeger.example.com/trace/{trace_id}?uiFind={span_id}"}"#)
            #expect(set == .ok)
            let (status, answer) = try await call("/v1/anomalies/an-ev-1/evidence", key: key)
            #expect(status == .ok)
            #expect(answer["kind"] as? String == "slowest")
            let items = answer["items"] as? [[String: Any]] ?? []
            #expect(items.allSatisfy { $0["model"] as? String == "gpt-4o" }, "only the anomaly's model")
            #expect(items.prefix(expected.count).map { $0["event_id"] as? String } == expected.map { Optional($0) }, "the slowest of each minute, slowest first")
            #expect(Set(items.compactMap { $0["kind"] as? String }) == ["slowest", "failed", "costliest"])
            let first = items.first ?? [:]
            #expect(first["trace_url"] as? String == "https://jaeger.example.com/trace/\(first["trace_id"] as? String ?? "")?uiFind=bbbbbbbbbbbbbbbb")
            #expect(first["user_id"] as? String != nil)
            let (hidden, _) = try await call("/v1/anomalies/an-ev-1/evidence", key: otherKey)
            #expect(hidden == .notFound)
        }
        await gateway.producer.shutdown()
    }
}
