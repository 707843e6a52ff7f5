import Events
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The ingestor and the aggregator as real processes on the local stack, killed and restarted while they work.
@Suite("Pipeline: raw events to exact rollups", .serialized, .timeLimit(.minutes(8)))
struct PipelineTests {
    @Test("with client retries, invalid events, SIGKILLed ingestor and aggregator and two aggregator replicas, rollups equal the ground truth")
    func crashSafety() async throws {
        let logger = Logger(label: "pipeline-test")
        let run = TestEnvironment.unique("p")
        var topics = Topics()
        topics.raw = "\(run)-raw"
        topics.events = "\(run)-events"
        topics.deadLetters = "\(run)-dlq"
        topics.rollups = "\(run)-rollups"
        for (topic, partitions) in [(topics.raw, 4), (topics.events, 4), (topics.deadLetters, 1), (topics.rollups, 2)] {
            try MockBrokerControl.createTopic(topic, partitions: partitions)
        }
        let env = [
            "TW_TOPIC_RAW": topics.raw, "TW_TOPIC_EVENTS": topics.events, "TW_TOPIC_DLQ": topics.deadLetters,
            "TW_TOPIC_ROLLUPS": topics.rollups, "TW_GROUP_PREFIX": run, "TW_SHUTDOWN_TIMEOUT": "10s",
            "TW_INGEST_BATCH": "200", "TW_AGGREGATOR_BATCH": "300",
        ]
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)

        // Tenants promote the tag "feature" (not "team", which is not aggregated).
        for t in 0..<3 { try await postgres.query("INSERT INTO tenants (tenant_id, name, promoted_tags) VALUES (\("\(run)-t\(t)"), 'T', '{feature}')") }
        // The workload: 3 tenants, 3 models, 4 minutes of event time ending a minute ago, 10% errors.
        var rng = SystemRandomNumberGenerator()
        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 300_000_000) / 60_000_000 * 60_000_000
        let models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini")]
        let events: [LLMEvent] = (0..<2400).map { i in
            let (provider, model) = models[i % 3]
            let error = i % 10 == 0
            return LLMEvent(
                eventID: "\(run)-\(i)", tenantID: "\(run)-t\(i % 3)",
                timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 240_000_000 / 2400),
                provider: provider, model: model, inputTokens: Int64.random(in: 0...4000, using: &rng), outputTokens: Int64.random(in: 0...900, using: &rng),
                latencyMs: Double(Int.random(in: 20...8000, using: &rng)), status: error ? .error : .ok, errorType: error ? "timeout" : nil,
                costNanos: Int64.random(in: 1...50_000, using: &rng), userID: i % 7 == 0 ? nil : "user-\(i % 40)",
                app: i % 5 == 0 ? nil : "app-\(i % 4)", environment: ["prod", "staging", nil][i % 3],
                tags: i % 6 == 0 ? [:] : ["feature": "f\(i % 5)", "team": "t\(i % 2)"])
        }
        func raw(_ e: LLMEvent) -> KafkaProducerMessage { KafkaProducerMessage(topic: topics.raw, key: Array(e.tenantID!.utf8), value: e.jsonBytes()) }
        let invalid = (0..<7).map { KafkaProducerMessage(topic: topics.raw, key: nil, value: Array("{\"event_id\":\"\(run)-bad-\($0)\"}".utf8)) }
        // Client retries: every 25th event sent again later.
        let retries = stride(from: 0, to: events.count, by: 25).map { raw(events[$0]) }

        @Sendable func appliedRequests() async throws -> Int64 {
            let row = try await postgres.query("SELECT COALESCE(sum(requests), 0)::bigint AS n FROM rollups_1m WHERE tenant_id LIKE \(run + "-%") AND \(unescaped: SeriesSelection.totalSQL)")
            return try row[0].decode("n")
        }
        func waitForApplied(atLeast n: Int64, _ what: String) async throws {
            try await within(.seconds(180), what) {
                while try await appliedRequests() < n { try await Task.sleep(for: .milliseconds(200)) }
            }
        }

        // Kill moments are random (at a random amount of progress); the seed is printed so a failure can be replayed
        // with TW_TEST_SEED.
        let seed = ProcessInfo.processInfo.environment["TW_TEST_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        print("crash test seed: \(seed)")
        var killRNG = SeededRandom(seed: seed)
        let killAt = [Int64.random(in: 50...700, using: &killRNG), Int64.random(in: 900...1500, using: &killRNG), Int64.random(in: 1700...2200, using: &killRNG)]

        try await producer.sendAll(events[0..<800].map(raw) + invalid)
        var ingestor = try ServiceProcess("ingestor", environment: env)
        var aggregatorA = try ServiceProcess("aggregator", environment: env)
        try await waitForApplied(atLeast: killAt[0], "first rollups")

        // Kill the aggregator mid-stream and start it again, with a second replica joining.
        kill(aggregatorA.pid, SIGKILL)
        _ = aggregatorA.waitForExit()
        try await producer.sendAll(events[800..<1600].map(raw) + retries[0..<40])
        aggregatorA = try ServiceProcess("aggregator", environment: env)
        let aggregatorB = try ServiceProcess("aggregator", environment: env)
        try await waitForApplied(atLeast: killAt[1], "rollups after the aggregator restart")

        // Kill the ingestor mid-stream and start it again.
        kill(ingestor.pid, SIGKILL)
        _ = ingestor.waitForExit()
        try await producer.sendAll(events[1600...].map(raw) + retries[40...])
        ingestor = try ServiceProcess("ingestor", environment: env)
        // A second aggregator crash while the last events flow.
        try await waitForApplied(atLeast: killAt[2], "rollups after the ingestor restart")
        kill(aggregatorB.pid, SIGKILL)
        _ = aggregatorB.waitForExit()
        try await waitForApplied(atLeast: Int64(events.count), "every event applied")

        // Exactly the ground truth: no loss, no double count, in every series and window.
        var truth = RollupDeltas(granularity: .minute)
        for e in events { truth.add(e, promoted: e.tags.filter { $0.key == "feature" }) }
        let result = try await postgres.query("""
            SELECT \(unescaped: RollupStore.selectColumns)
            FROM rollups_1m WHERE tenant_id LIKE \(run + "-%")
            """)
        var actual: [RollupKey: (Int64, Int64, Int64, Int64, Int64)] = [:]
        for row in result {
            let key = RollupKey(series: try RollupStore.series(row), windowStart: try row.decode("window_us"))
            actual[key] = (try row.decode("requests"), try row.decode("errors"), try row.decode("input_tokens"), try row.decode("output_tokens"), try row.decode("cost_nanos"))
        }
        #expect(Set(actual.keys) == Set(truth.windows.keys))
        for (key, v) in truth.windows {
            let got = actual[key]
            #expect(got?.0 == v.requests && got?.1 == v.errors && got?.2 == v.inputTokens && got?.3 == v.outputTokens && got?.4 == v.costNanos, "\(key)")
        }
        // Per-user daily totals, through the same kills: equal to the events' sums, computed here.
        var userTruth: [String: [Int64]] = [:]
        for e in events {
            let key = "\(e.tenantID!)|\(e.timestamp.rfc3339.prefix(10))|\(e.userID ?? "")"
            userTruth[key] = zip(userTruth[key] ?? [0, 0, 0], [1, e.inputTokens, e.costNanos ?? 0]).map { $0 + $1 }
        }
        var userActual: [String: [Int64]] = [:]
        for row in try await postgres.query("""
            SELECT tenant_id, to_char(day, 'YYYY-MM-DD') AS day, user_id, requests, input_tokens, cost_nanos FROM user_totals_1d WHERE tenant_id LIKE \(run + "-%")
            """) {
            userActual["\(try row.decode("tenant_id", as: String.self))|\(try row.decode("day", as: String.self))|\(try row.decode("user_id", as: String.self))"] =
                [try row.decode("requests"), try row.decode("input_tokens"), try row.decode("cost_nanos")]
        }
        #expect(userActual == userTruth, "per-user totals equal the ground truth")
        // The promoted tag, per tenant and value, summed here from the events; the unpromoted one has no rows.
        var tagTruth: [String: Int64] = [:]
        for e in events { if let f = e.tags["feature"] { tagTruth["\(e.tenantID!)|\(f)", default: 0] += 1 } }
        var tagActual: [String: Int64] = [:]
        for row in try await postgres.query("""
            SELECT tenant_id, tag_key, tag_value, sum(requests)::bigint AS n FROM rollups_1m WHERE tenant_id LIKE \(run + "-%") AND tag_key <> '' GROUP BY 1, 2, 3
            """) {
            #expect(try row.decode("tag_key", as: String.self) == "feature")
            tagActual["\(try row.decode("tenant_id", as: String.self))|\(try row.decode("tag_value", as: String.self))"] = try row.decode("n")
        }
        #expect(tagActual == tagTruth, "promoted tag rows equal the ground truth")
        let dead = try await readTopic(topics.deadLetters, count: 7)
        #expect(dead.allSatisfy { $0.header(EventHeaders.reason) == Array("invalid_event".utf8) })

        for process in [ingestor, aggregatorA] { #expect(try process.stop() == 0, "\(process.name) stops cleanly:\n\(process.log)") }
        await producer.shutdown()
        await postgres.close()
    }

    @Test("events POSTed to the gateway over a real socket, one batch sent twice, become exact rollups of the key's tenant")
    func throughTheGateway() async throws {
        let logger = Logger(label: "pipeline-test")
        let run = TestEnvironment.unique("g")
        let env = try TestEnvironment.pipelineEnvironment(run: run, topics: ["raw", "events", "dlq", "rollups"], extra: ["TW_ADMIN_TOKEN": "pipeline-admin-token-123456"])
        let gateway = try ServiceProcess("gateway", environment: env)
        let ingestor = try ServiceProcess("ingestor", environment: env)
        let aggregator = try ServiceProcess("aggregator", environment: env)
        let query = try ServiceProcess("query", environment: env)
        try await gateway.waitUntilReady()

        func post(_ path: String, _ body: String, token: String, contentType: String = "application/json") async throws -> (Int, [String: Any]) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(gateway.port)\(path)")!)
            request.httpMethod = "POST"
            request.httpBody = Data(body.utf8)
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }
        let tenant = "\(run)-acme"
        let (created, tenantBody) = try await post("/v1/admin/tenants", "{\"tenant_id\":\"\(tenant)\"}", token: "pipeline-admin-token-123456")
        #expect(created == 201)
        let key = try #require(tenantBody["api_key"] as? String)

        let origin = (EventTimestamp.now().microsecondsSinceEpoch - 180_000_000) / 60_000_000 * 60_000_000
        let events = (0..<200).map { i in
            LLMEvent(eventID: "\(run)-\(i)", tenantID: "not-\(tenant)", timestamp: EventTimestamp(microsecondsSinceEpoch: origin + Int64(i) * 600_000),
                     provider: "openai", model: "gpt-4o", inputTokens: Int64(i), outputTokens: 1, latencyMs: Double(i), status: .ok, costNanos: Int64(i + 1))
        }
        let batch = events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: "\n")
        let (first, firstBody) = try await post("/v1/events", batch, token: key, contentType: "application/x-ndjson")
        #expect(first == 202 && firstBody["accepted"] as? Int == 200)
        // The client did not see the answer and sends the same batch again.
        let (second, _) = try await post("/v1/events", batch, token: key, contentType: "application/x-ndjson")
        #expect(second == 202)

        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        @Sendable func totals() async throws -> (Int64, Int64) {
            let row = try await postgres.query("SELECT COALESCE(sum(requests), 0)::bigint AS n, COALESCE(sum(cost_nanos), 0)::bigint AS c FROM rollups_1m WHERE tenant_id = \(tenant) AND \(unescaped: SeriesSelection.totalSQL)")[0]
            return (try row.decode("n"), try row.decode("c"))
        }
        try await within(.seconds(120), "200 events in the rollups") {
            while try await totals().0 < 200 { try await Task.sleep(for: .milliseconds(200)) }
        }
        let (requests, cost) = try await totals()
        #expect(requests == 200, "the repeated batch was deduplicated")
        #expect(cost == (1...200).reduce(0) { $0 + Int64($1) })

        // The closed windows reach the query service's read model; the gateway then answers from it.
        let series: @Sendable () async throws -> (String?, Int) = {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(gateway.port)/v1/series?metric=requests&step=1m&from=\(EventTimestamp(microsecondsSinceEpoch: origin).rfc3339)")!)
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
            let (data, response) = try await URLSession.shared.data(for: request)
            let points = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["points"] as? [[String: Any]] ?? []
            return ((response as? HTTPURLResponse)?.value(forHTTPHeaderField: "X-Tokenwatch-Source"), points.compactMap { $0["value"] as? Int }.reduce(0, +))
        }
        let (source, total) = try await within(.seconds(60), "series from the read model") {
            while true {
                let answer = try await series()
                if answer.0?.hasPrefix("read_model") == true { return answer }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        #expect(source?.hasPrefix("read_model") == true)
        #expect(total == 200, "the read model and Postgres together hold every request once")
        for process in [gateway, ingestor, aggregator, query] { #expect(try process.stop() == 0) }
        await postgres.close()
    }

    @Test("all five services: two tenants, retries and late events through the gateway, too-late ones refused there and dead-lettered from a direct producer; exact rollups, percentiles within 1%, tenants apart, an access log without secrets")
    func fullTopology() async throws {
        let logger = Logger(label: "pipeline-test")
        let run = TestEnvironment.unique("f")
        let token = "full-topology-admin-token-1"
        let env = try TestEnvironment.pipelineEnvironment(run: run, extra: ["TW_ADMIN_TOKEN": token, "TW_ACCESS_LOG": "true"])
        let processes = try ["gateway", "ingestor", "aggregator", "detector", "query"].map { try ServiceProcess($0, environment: env) }
        let gateway = processes[0]
        for process in processes { try await process.waitUntilReady() }

        @Sendable func request(_ method: String, _ path: String, _ body: String? = nil, key: String) async throws -> (Int, [String: Any]) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(gateway.port)\(path)")!)
            request.httpMethod = method
            if let body { request.httpBody = Data(body.utf8) }
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }
        var keys: [String: String] = [:]
        for t in ["a", "b"] {
            let (status, body) = try await request("POST", "/v1/admin/tenants", "{\"tenant_id\":\"\(run)-\(t)\"}", key: token)
            #expect(status == 201)
            keys["\(run)-\(t)"] = body["api_key"] as? String
        }
        let a = "\(run)-a", b = "\(run)-b"

        // Recent traffic: 4 minutes ending 2 minutes ago; then late (5 min behind) and too-late (25 min behind) events.
        let now = EventTimestamp.now().microsecondsSinceEpoch
        let models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini")]
        func make(_ id: String, tenant: String, at t: Int64, _ i: Int) -> LLMEvent {
            let (provider, model) = models[i % 3]
            return LLMEvent(eventID: id, tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: t), provider: provider, model: model,
                            inputTokens: Int64(10 + i % 700), outputTokens: Int64(i % 90), latencyMs: Double(20 + (i * 37) % 4000),
                            status: i % 9 == 0 ? .error : .ok, errorType: i % 9 == 0 ? "rate_limit" : nil, costNanos: Int64(1 + i % 5000))
        }
        let recent = (0..<600).map { i in make("\(run)-r\(i)", tenant: i % 4 == 0 ? b : a, at: now - 360_000_000 + Int64(i) * 400_000, i) }
        let late = (0..<30).map { i in make("\(run)-l\(i)", tenant: a, at: now - 420_000_000 - Int64(i) * 1_000_000, i) }
        let tooLate = (0..<20).map { i in make("\(run)-x\(i)", tenant: a, at: now - 1_800_000_000 - Int64(i) * 1_000_000, i) }
        @Sendable func json(_ events: [LLMEvent]) -> String {
            "[" + events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]"
        }
        for tenant in [a, b] {
            let mine = recent.filter { $0.tenantID == tenant }
            let (status, body) = try await request("POST", "/v1/events", json(mine) , key: keys[tenant]!)
            #expect(status == 202 && body["accepted"] as? Int == mine.count)
            // A client retry of the first 50 of them, and an invalid event that is refused on the spot.
            let retry = Array(mine.prefix(50))
            let invalid = "{\"event_id\":\"\(run)-bad\",\"timestamp\":\"2026-01-01T00:00:00Z\"}"
            let (retried, retryBody) = try await request("POST", "/v1/events", String(json(retry).dropLast()) + "," + invalid + "]", key: keys[tenant]!)
            #expect(retried == 202 && retryBody["accepted"] as? Int == 50 && retryBody["rejected"] as? Int == 1)
        }
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        @Sendable func applied() async throws -> Int64 {
            try await postgres.query("SELECT COALESCE(sum(requests), 0)::bigint AS n FROM rollups_1m WHERE tenant_id IN (\(a), \(b)) AND \(unescaped: SeriesSelection.totalSQL)")[0].decode("n")
        }
        try await within(.seconds(120), "recent events applied") { while try await applied() < 600 { try await Task.sleep(for: .milliseconds(200)) } }
        // Through the gateway, events past the allowed lateness are refused on the spot, each naming the limit;
        // the late ones are accepted.
        let (lateStatus, lateBody) = try await request("POST", "/v1/events", json(late + tooLate), key: keys[a]!)
        #expect(lateStatus == 202 && lateBody["accepted"] as? Int == late.count && lateBody["rejected"] as? Int == tooLate.count)
        let lateErrors = lateBody["errors"] as? [[String: Any]] ?? []
        #expect(lateErrors.count == tooLate.count && lateErrors.allSatisfy { ($0["field"] as? String) == "timestamp" && (($0["reason"] as? String)?.contains("TW_ALLOWED_LATENESS") ?? false) })
        // A direct producer's too-late events reach the aggregator, which dead-letters them with the reason.
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
        try await producer.sendAll(tooLate.map { KafkaProducerMessage(topic: "\(run)-raw", key: Array($0.tenantID!.utf8), value: $0.jsonBytes()) })
        await producer.shutdown()
        let dead = try await readTopic("\(run)-dlq", count: 20, limit: .seconds(120))
        #expect(Set(dead.compactMap { try? EventDecoder().decode($0.value).eventID }) == Set(tooLate.map(\.eventID)))
        #expect(dead.allSatisfy { $0.header(EventHeaders.reason) == Array("too_late".utf8) })
        try await within(.seconds(120), "late events applied") { while try await applied() < 630 { try await Task.sleep(for: .milliseconds(200)) } }

        // Exact rollups of what was accepted and not too late, in every series and window.
        var truth = RollupDeltas(granularity: .minute)
        for e in recent + late { truth.add(e) }
        let rows = try await postgres.query("""
            SELECT \(unescaped: RollupStore.selectColumns) FROM rollups_1m WHERE tenant_id IN (\(a), \(b))
            """)
        var actual: [RollupKey: RollupValues] = [:]
        for row in rows { let r = try RollupStore.record(row, granularity: .minute); actual[r.key] = r.values }
        #expect(Set(actual.keys) == Set(truth.windows.keys))
        for (key, v) in truth.windows {
            #expect(actual[key] == v, "\(key)")
        }
        // Percentiles through the query API, within the sketch's 1% of the exact value.
        let from = EventTimestamp(microsecondsSinceEpoch: (now - 3_600_000_000) / 3_600_000_000 * 3_600_000_000).rfc3339
        let to = EventTimestamp(microsecondsSinceEpoch: (now / 3_600_000_000 + 1) * 3_600_000_000).rfc3339
        let mine = (recent + late).filter { $0.tenantID == a }
        // Wait for the query API to count the late events (they were applied a moment ago).
        let keyA = keys[a]!, keyB = keys[b]!
        let expected = mine.count
        let (count, p50, p99) = try await within(.seconds(60), "corrections in the query API") { () -> (Int, Double, Double) in
            while true {
                let (_, breakdown) = try await request("GET", "/v1/breakdown?from=\(from)&to=\(to)", key: keyA)
                let totals = breakdown["totals"] as? [String: Any] ?? [:]
                let latency = totals["latency_ms"] as? [String: Any] ?? [:]
                let count = totals["requests"] as? Int ?? -1
                if count == expected { return (count, latency["p50"] as? Double ?? -1, latency["p99"] as? Double ?? -1) }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        #expect(count == expected)
        let latencies = mine.map(\.latencyMs).sorted()
        for (name, q, got) in [("p50", 0.5, p50), ("p99", 0.99, p99)] {
            let exact = latencies[max(0, Int((q * Double(latencies.count)).rounded(.up)) - 1)]
            #expect(abs(got - exact) <= 0.01 * exact + 0.001, "\(name): \(got) vs \(exact)")
        }
        // Tenant B sees only its own traffic.
        let (_, breakdownB) = try await request("GET", "/v1/breakdown?from=\(from)&to=\(to)", key: keyB)
        #expect((breakdownB["totals"] as? [String: Any])?["requests"] as? Int == recent.filter { $0.tenantID == b }.count)

        // The tenant sees its dead letters: the direct producer's too-late events, by reason, with samples.
        let tooLateCount = tooLate.count
        try await within(.seconds(60), "dead letters visible to the tenant") {
            while true {
                let (_, body) = try await request("GET", "/v1/dead-letters", key: keyA)
                if (body["totals"] as? [String: Any])?["too_late"] as? Int == tooLateCount { return }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        let (deadStatus, deadLetters) = try await request("GET", "/v1/dead-letters", key: keyA)
        #expect(deadStatus == 200)
        let deadSamples = deadLetters["samples"] as? [[String: Any]] ?? []
        #expect(deadSamples.count == tooLate.count && deadSamples.allSatisfy { $0["reason"] as? String == "too_late" })
        #expect(Set(deadSamples.compactMap { $0["event_id"] as? String }) == Set(tooLate.map(\.eventID)))
        let (_, deadB) = try await request("GET", "/v1/dead-letters", key: keyB)
        #expect((deadB["totals"] as? [String: Any])?.isEmpty == true, "tenant B sees none of A's dead letters")

        // The access log (TW_ACCESS_LOG): a line per request with route, status and tenant; never a key or a query.
        let accessLines = gateway.log.split(separator: "\n").filter { $0.contains("Request") && $0.contains("http.route=") }
        #expect(accessLines.contains { $0.contains("http.route=/v1/events") && $0.contains("http.status=202") && $0.contains("tenant.id=\(a)") })
        #expect(accessLines.contains { $0.contains("http.route=/v1/breakdown") && $0.contains("tenant.id=\(b)") })
        #expect(!gateway.log.contains(keyA) && !gateway.log.contains(keyB) && !gateway.log.contains(token) && !gateway.log.contains("from="))

        for process in processes { #expect(try process.stop() == 0, "\(process.name)") }
        await postgres.close()
    }
}
