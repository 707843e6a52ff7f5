import Events
import Foundation
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

@Suite("Detector end to end", .serialized, .timeLimit(.minutes(4)))
struct DetectorEndToEndTests {
    /// The services started and ready, a tenant and its key.
    static func pipeline(_ prefix: String, services: [String], extra: [String: String] = [:]) async throws -> (run: String, processes: [ServiceProcess], http: HTTPClient, tenant: String, key: String) {
        let run = TestEnvironment.unique(prefix)
        let token = "detector-e2e-admin-token-\(prefix)"
        let env = try TestEnvironment.pipelineEnvironment(run: run, extra: extra.merging(["TW_ADMIN_TOKEN": token]) { a, _ in a })
        let processes = try services.map { try ServiceProcess($0, environment: env) }
        for process in processes { try await process.waitUntilReady() }
        let http = HTTPClient(port: processes[0].port)
        let tenant = "\(run)-t"
        let created = try await http.call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(tenant)"}"#)
        return (run, processes, http, tenant, try #require(created.json["api_key"] as? String))
    }

    @Test("an injected latency degradation becomes exactly one anomaly on llm.anomalies.v1, visible through the gateway and its live stream")
    func latencyDegradation() async throws {
        let (run, processes, http, tenant, key) = try await Self.pipeline("det", services: ["gateway", "ingestor", "aggregator", "detector", "query"])

        // Four hours of normal history in the rollups (what the detector rebuilds the series from; its warm-up is 200
        // windows): 20 requests a minute, p95 latency about 900 ms.
        let logger = Logger(label: "detector-e2e")
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        let now = EventTimestamp.now().microsecondsSinceEpoch / 60_000_000 * 60_000_000
        // The first live event must still be within the allowed lateness (600 s) when it is posted: up to a minute
        // after `now` (floored) plus the seeding below. Nine minutes back failed when the test began late in a minute;
        // seven leaves two minutes of margin, and the last live minute still ends by `now`.
        let live = now - 7 * 60_000_000
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        var rng = SeededRandom(seed: 11)
        func event(_ id: String, at t: Int64, latency: Double) -> LLMEvent {
            LLMEvent(eventID: id, tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: t), provider: "openai", model: "gpt-4o",
                     inputTokens: 500, outputTokens: 200, latencyMs: latency, status: .ok, costNanos: 3000)
        }
        for m in 0..<240 {
            let start = live - Int64(240 - m) * 60_000_000
            for i in 0..<20 {
                let e = event("\(run)-h\(m)-\(i)", at: start + Int64(i) * 2_000_000, latency: 500 + Double(rng.next() % 450))
                minutes.add(e)
                hours.add(e)
            }
        }
        try await RollupStore.write(minutes, hours, to: postgres)

        // Watch the live stream from before the degradation.
        let streamPath = NSTemporaryDirectory() + "tw-stream-\(run)"
        let curl = try Subprocess.spawn(
            ["curl", "-sN", "--max-time", "170", "-H", "Authorization: Bearer \(key)", "http://127.0.0.1:\(processes[0].port)/v1/anomalies/stream"],
            environment: ProcessInfo.processInfo.environment, outputPath: streamPath)
        defer { kill(curl, SIGKILL); var status: Int32 = 0; waitpid(curl, &status, 0); try? FileManager.default.removeItem(atPath: streamPath) }
        try await eventually(.seconds(10), "stream connected") { ((try? String(contentsOfFile: streamPath, encoding: .utf8)) ?? "").contains(": connected") }

        // Seven live minutes through the gateway: three normal, then four with latency four times higher.
        var events: [LLMEvent] = []
        for m in 0..<7 {
            for i in 0..<20 {
                let base = 500 + Double(rng.next() % 450)
                events.append(event("\(run)-l\(m)-\(i)", at: live + Int64(m) * 60_000_000 + Int64(i) * 2_000_000, latency: m >= 3 ? base * 4 : base))
            }
        }
        let batch = "[" + events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]"
        let posted = try await http.call("POST", "/v1/events", token: key, body: batch)
        #expect(posted.status == 202 && posted.json["accepted"] as? Int == events.count, "\(posted.status) \(posted.body.prefix(600))")

        // Through the gateway's query API (the query service stores what the detector publishes).
        var anomaly: [String: Any] = [:]
        try await eventually(.seconds(90), "the anomaly through the gateway") {
            let reply = try await http.call("GET", "/v1/anomalies?from=\(EventTimestamp(microsecondsSinceEpoch: live - 3_600_000_000).rfc3339)&model=gpt-4o", token: key)
            return (reply.json["items"] as? [[String: Any]])?.isEmpty == false
        }
        let listed = try await http.call("GET", "/v1/anomalies?from=\(EventTimestamp(microsecondsSinceEpoch: live - 3_600_000_000).rfc3339)&model=gpt-4o", token: key)
        let items = try #require(listed.json["items"] as? [[String: Any]])
        #expect(items.count == 1, "one anomaly for the model series: \(listed.body)")
        anomaly = items.first ?? [:]
        #expect(anomaly["metric"] as? String == "latency_p95")
        #expect(anomaly["window_start"] as? String == EventTimestamp(microsecondsSinceEpoch: live + 3 * 60_000_000).rfc3339)
        #expect(["warning", "critical"].contains(anomaly["severity"] as? String ?? ""))
        #expect((anomaly["explanation"] as? String)?.contains("p95 latency of openai/gpt-4o") == true)
        let filtered = try await http.call("GET", "/v1/anomalies?from=\(EventTimestamp(microsecondsSinceEpoch: live - 3_600_000_000).rfc3339)&metric=request_rate", token: key)
        #expect((filtered.json["items"] as? [Any])?.isEmpty == true, "no request-rate anomaly")

        // On the topic: every publication of the model series is that one anomaly.
        let id = try #require(anomaly["anomaly_id"] as? String)
        let published = try await readTopic("\(run)-anomalies", count: 1)
        let modelSeries = published.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.value))) as? [String: Any] }.filter { $0["model"] as? String == "gpt-4o" }
        #expect(!modelSeries.isEmpty && modelSeries.allSatisfy { $0["anomaly_id"] as? String == id })

        // And on the live stream.
        try await eventually(.seconds(20), "the anomaly on the live stream") {
            ((try? String(contentsOfFile: streamPath, encoding: .utf8)) ?? "").contains(id)
        }
        let stream = (try? String(contentsOfFile: streamPath, encoding: .utf8)) ?? ""
        #expect(stream.contains("event: anomaly\ndata: {"))

        for process in processes { #expect(try process.stop() == 0, "\(process.name) exits cleanly") }
        await postgres.close()
    }

    @Test("a busy series that stops sending through the gateway becomes an outage anomaly on llm.anomalies.v1 within the silence delay")
    func outage() async throws {
        // Silence judged 30 s after a minute closes (the default is 2 minutes).
        let (run, processes, http, tenant, key) = try await Self.pipeline("sil", services: ["gateway", "ingestor", "aggregator", "detector"], extra: ["TW_DETECTOR_SILENCE_AFTER": "30s"])

        // Four hours of history (past the 200-window warm-up) for two models, 60 and 30 requests a minute.
        let logger = Logger(label: "silence-e2e")
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        let now = EventTimestamp.now().microsecondsSinceEpoch / 60_000_000 * 60_000_000
        let live = now - 8 * 60_000_000
        func event(_ id: String, model: String, at t: Int64) -> LLMEvent {
            LLMEvent(eventID: id, tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: t), provider: "openai", model: model,
                     inputTokens: 300, outputTokens: 100, latencyMs: 700, status: .ok, costNanos: 2000)
        }
        let models = [("gpt-4o", 60), ("gpt-4o-mini", 30)]
        var minutes = RollupDeltas(granularity: .minute), hours = RollupDeltas(granularity: .hour)
        for m in 0..<240 {
            let start = live - Int64(240 - m) * 60_000_000
            for (model, rate) in models {
                for i in 0..<rate {
                    let e = event("\(run)-h\(model)-\(m)-\(i)", model: model, at: start + Int64(i) * 60_000_000 / Int64(rate))
                    minutes.add(e)
                    hours.add(e)
                }
            }
        }
        try await RollupStore.write(minutes, hours, to: postgres)

        // Live: both models for three minutes, then gpt-4o stops while gpt-4o-mini goes on for five more.
        var events: [LLMEvent] = []
        for m in 0..<8 {
            for (model, rate) in models where model == "gpt-4o-mini" || m < 3 {
                for i in 0..<rate {
                    events.append(event("\(run)-l\(model)-\(m)-\(i)", model: model, at: live + Int64(m) * 60_000_000 + Int64(i) * 60_000_000 / Int64(rate)))
                }
            }
        }
        let batch = "[" + events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]"
        let posted = try await http.call("POST", "/v1/events", token: key, body: batch)
        #expect(posted.status == 202 && posted.json["accepted"] as? Int == events.count, "\(posted.status) \(posted.body.prefix(600))")
        let sent = ContinuousClock.now

        // On the topic: a request-rate anomaly of gpt-4o starting where it stopped, observed 0, critical.
        @Sendable func parse(_ message: KafkaMessage) -> [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(message.value))) as? [String: Any]) ?? [:] }
        let message = try await firstMessage(on: "\(run)-anomalies", limit: .seconds(120)) { message in
            let a = parse(message)
            return a["model"] as? String == "gpt-4o" && a["metric"] as? String == "request_rate"
        }
        let anomaly = parse(message)
        print("outage raised \(ContinuousClock.now - sent) after the events were posted")
        #expect(anomaly["window_start"] as? String == EventTimestamp(microsecondsSinceEpoch: live + 3 * 60_000_000).rfc3339)
        #expect(anomaly["observed"] as? Double == 0 && anomaly["severity"] as? String == "critical")
        #expect((anomaly["explanation"] as? String)?.contains("openai/gpt-4o") == true)

        for process in processes { #expect(try process.stop() == 0, "\(process.name) exits cleanly") }
        await postgres.close()
    }

}
