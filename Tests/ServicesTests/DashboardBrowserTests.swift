import Events
import Foundation
import Kafka
import Logging
import Testing
import TestSupport

@Suite("Dashboard in a real browser", .serialized, .timeLimit(.minutes(5)))
struct DashboardBrowserTests {
    @Test("headless chromium: totals and charts equal the API's, drill-down, a live anomaly, settings, a wrong key, an empty tenant, no third-party request")
    func dashboard() async throws {
        let python = try TestEnvironment.require("TW_TEST_BROWSER_PYTHON")
        let run = TestEnvironment.unique("dash")
        let token = "dashboard-e2e-admin-token-0123"
        // The workload covers the last 50 minutes, posted at once: the gateway and aggregator accept that much lateness.
        // Loopback webhooks allowed, as an operator would for an internal receiver (the channel panel is exercised).
        let env = try TestEnvironment.pipelineEnvironment(run: run, extra: ["TW_ADMIN_TOKEN": token, "TW_ALLOWED_LATENESS": "2h",
                                                                           "TW_WEBHOOK_ALLOW_HTTP": "true", "TW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"])
        let processes = try ["gateway", "ingestor", "aggregator", "query"].map { try ServiceProcess($0, environment: env) }
        for process in processes { try await process.waitUntilReady() }
        let http = HTTPClient(port: processes[0].port)

        // A tenant with a known workload over the last 50 minutes, and a key that may also manage keys; a second
        // tenant with nothing.
        let tenant = "\(run)-t"
        let created = try await http.call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(tenant)","name":"Acme support"}"#)
        let ingestKey = try #require(created.json["api_key"] as? String)
        let adminKey = try #require(try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: token, body: #"{"name":"dashboard","scopes":["query","admin"]}"#).json["api_key"] as? String)
        let empty = try await http.call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(run)-empty"}"#)
        let emptyKey = try #require(empty.json["api_key"] as? String)

        let now = EventTimestamp.now().microsecondsSinceEpoch
        let models = [("openai", "gpt-4o", 2500), ("openai", "gpt-4o-mini", 400), ("anthropic", "claude-sonnet-4", 1800)]
        var rng = SeededRandom(seed: 5)
        let events: [LLMEvent] = (0..<600).map { i in
            let (provider, model, latency) = models[i % 3]
            let failed = i % 17 == 0
            return LLMEvent(
                eventID: "\(run)-\(i)", timestamp: EventTimestamp(microsecondsSinceEpoch: now - 50 * 60_000_000 + Int64(i) * 5_000_000),
                provider: provider, model: model, inputTokens: Int64(100 + rng.next() % 3000), outputTokens: Int64(10 + rng.next() % 700),
                latencyMs: Double(latency) + Double(rng.next() % 900), status: failed ? .error : .ok, errorType: failed ? "rate_limit" : nil,
                costNanos: Int64(500 + rng.next() % 20_000), userID: "user-\(i % 7)", app: ["search", "chat"][i % 2])
        }
        let batch = "[" + events.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }.joined(separator: ",") + "]"
        let posted = try await http.call("POST", "/v1/events", token: ingestKey, body: batch)
        #expect(posted.status == 202 && posted.json["accepted"] as? Int == events.count)
        let from = EventTimestamp(microsecondsSinceEpoch: now - 3_600_000_000).rfc3339
        try await eventually(.seconds(60), "the workload in the rollups") {
            let reply = try await http.call("GET", "/v1/breakdown?from=\(from)", token: adminKey)
            return (reply.json["totals"] as? [String: Any])?["requests"] as? Int == events.count
        }

        // Input that never became an event: three produced to Kafka directly with a negative token count, which the
        // ingestor dead-letters; the page's "Rejected input" panel must show what the API says.
        var dlqLogger = Logger(label: "dashboard-test")
        dlqLogger.logLevel = .warning
        let direct = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: dlqLogger)
        try await direct.sendAll((0..<3).map { i in
            KafkaProducerMessage(topic: "\(run)-raw", key: Array(tenant.utf8), value: Array("""
                {"event_id":"\(run)-bad-\(i)","tenant_id":"\(tenant)","timestamp":"\(EventTimestamp(microsecondsSinceEpoch: now - 60_000_000).rfc3339)","provider":"openai","model":"gpt-4o",\
                "input_tokens":-5,"output_tokens":1,"latency_ms":10,"status":"ok"}
                """.utf8))
        })
        try await eventually(.seconds(60), "the dead letters in the API") {
            let reply = try await http.call("GET", "/v1/dead-letters?from=\(from)", token: adminKey)
            return (reply.json["totals"] as? [String: Any])?.values.compactMap { $0 as? Int }.reduce(0, +) == 3
        }

        // The browser session; it asks for the live anomaly once the anomalies view is connected.
        let handshake = NSTemporaryDirectory() + "tw-dash-\(run)"
        try FileManager.default.createDirectory(atPath: handshake, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: handshake) }
        let artifacts = Subprocess.projectRoot + "/.state/artifacts/dashboard"
        let output = handshake + "/browser.log"
        let browser = try Subprocess.spawn(
            [python, Subprocess.projectRoot + "/Tests/Browser/dashboard_test.py", "--base", "http://127.0.0.1:\(processes[0].port)",
             "--key", adminKey, "--empty-key", emptyKey, "--artifacts", artifacts, "--handshake", handshake],
            environment: ProcessInfo.processInfo.environment, outputPath: output)
        let child = ChildProcess(pid: browser)
        defer { if child.exitCode == nil { kill(browser, SIGKILL); _ = child.poll() } }

        try await eventually(.seconds(150), "the page is live on the anomalies view") {
            child.poll() != nil || FileManager.default.fileExists(atPath: handshake + "/ready")
        }
        if child.exitCode == nil {
            let start = (now / 60_000_000 - 12) * 60_000_000
            let anomalyID = "\(run)-anomaly"
            let anomaly = """
                {"anomaly_id":"\(anomalyID)","tenant_id":"\(tenant)","provider":"openai","model":"gpt-4o","metric":"latency_p95",\
                "window_start":"\(EventTimestamp(microsecondsSinceEpoch: start).rfc3339)","window_end":"\(EventTimestamp(microsecondsSinceEpoch: start + 5 * 60_000_000).rfc3339)",\
                "peak_window":"\(EventTimestamp(microsecondsSinceEpoch: start + 2 * 60_000_000).rfc3339)","status":"ongoing","severity":"critical","detector":"robust_level",\
                "score":3.1,"observed":9800,"expected":2900,"expected_low":2500,"expected_high":3400,"unit":"ms",\
                "explanation":"The p95 latency of openai/gpt-4o was 9,800 ms (3.4x its usual 2,900 ms), outside the normal 2,500–3,400 ms.","revision":1}
                """
            try anomalyID.write(toFile: handshake + "/anomaly-id", atomically: true, encoding: .utf8)
            var logger = Logger(label: "dashboard-test")
            logger.logLevel = .warning
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
            try await producer.sendAll([KafkaProducerMessage(topic: "\(run)-anomalies", key: Array(tenant.utf8), value: Array(anomaly.utf8))])
            try await eventually(.seconds(150), "the browser session finishes") { child.poll() != nil }
        }
        let exited = child.exitCode
        let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(exited == 0, "browser checks failed:\n\(log.suffix(4000))")
        for line in log.split(separator: "\n") where line.contains("appeared live") || line.contains("\"passed\"") { print("browser: \(line.trimmingCharacters(in: .whitespaces))") }
        for name in ["signin-wrong-key", "overview", "model", "anomalies", "anomaly", "settings", "overview-phone", "empty"] {
            #expect(FileManager.default.fileExists(atPath: "\(artifacts)/\(name).png"), "screenshot \(name)")
        }
        for process in processes { #expect(try process.stop() == 0) }
    }
}

