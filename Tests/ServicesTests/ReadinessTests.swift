import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing
import TestSupport

/// What Kubernetes' probes see: `/readyz` is serving (and reports the dependencies), `/healthz` only the process.
@Suite("Readiness and liveness", .serialized, .timeLimit(.minutes(4)))
struct ReadinessTests {
    @Test("the ingestor stays ready while Kafka, Redis or Postgres is unreachable, reports which (readyz, tw_dependency_up) and reports it back when it returns, without a restart; liveness stays green")
    func followsDependencies() async throws {
        let run = TestEnvironment.unique("ready")
        let dir = NSTemporaryDirectory() + "tw-\(run)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // Dependencies of the test's own, so cutting them disturbs no other suite: a broker (fault injection through
        // its control port), a Redis (stopped and started on the same port), and the stack's Postgres behind a
        // proxy that can be cut.
        let broker = try ChildProcess([Subprocess.projectRoot + "/.state/bin/tokenwatch-mockbroker", "--bootstrap-file", dir + "/bootstrap",
                                       "--control-file", dir + "/control", "--brokers", "1"], outputPath: dir + "/broker.log")
        try await eventually(.seconds(10), "the private broker") { ((try? String(contentsOfFile: dir + "/control", encoding: .utf8)) ?? "").contains(":") }
        let bootstrap = try String(contentsOfFile: dir + "/bootstrap", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let control = try String(contentsOfFile: dir + "/control", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for topic in ["raw", "events", "dlq"] { try MockBrokerControl.createTopic("\(run)-\(topic)", partitions: 2, control: control) }

        let redisPort = try ServiceProcess.freePort()
        func startRedis() throws -> ChildProcess {
            try ChildProcess(["redis-server", "--bind", "127.0.0.1", "--port", "\(redisPort)", "--save", "", "--appendonly", "no", "--dir", dir], outputPath: dir + "/redis.log")
        }
        var redis = try startRedis()

        let postgresURL = try TestEnvironment.postgresURL()
        let target = try #require(postgresURL.firstMatch(of: /@([^\/?]+)\//)).1
        let proxy = try ChildProcess(["python3", Subprocess.projectRoot + "/Tests/Tools/tcp_proxy.py", "--target", String(target), "--port-file", dir + "/proxy.port"],
                                     outputPath: dir + "/proxy.log")
        try await eventually(.seconds(10), "the Postgres proxy") { FileManager.default.fileExists(atPath: dir + "/proxy.port") }
        let proxyPort = try String(contentsOfFile: dir + "/proxy.port", encoding: .utf8)
        let proxiedURL = postgresURL.replacingOccurrences(of: String(target), with: "127.0.0.1:\(proxyPort)")

        let ingestor = try ServiceProcess("ingestor", environment: [
            "TW_KAFKA_BROKERS": bootstrap, "TW_REDIS_URL": "redis://127.0.0.1:\(redisPort)", "TW_POSTGRES_URL": proxiedURL,
            "TW_TOPIC_RAW": "\(run)-raw", "TW_TOPIC_EVENTS": "\(run)-events", "TW_TOPIC_DLQ": "\(run)-dlq", "TW_GROUP_PREFIX": run,
            // A dependency that does not answer must not hold a probe for long.
            "TW_KAFKA_PROPERTIES": "socket.connection.setup.timeout.ms=1000",
        ])
        try await ingestor.waitUntilReady()

        @Sendable func readiness() async -> (status: Int, checks: [String: String])? {
            guard let (status, body) = await ingestor.get("/readyz") else { return nil }
            let json = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
            return (status, json?["checks"] as? [String: String] ?? [:])
        }
        // Readiness is serving: it stays 200 through the outage (a dependency shared by every replica must not take
        // them all out of their Service, nor block node drains), reports the dependency from the last probe, and
        // the probe's gauge says it for alerts.
        func expectTransition(_ dependency: String, cut: () async throws -> Void, restore: () async throws -> Void) async throws {
            try await cut()
            try await eventually(.seconds(60), "\(dependency) reported unreachable", interval: .milliseconds(250)) {
                guard let r = await readiness() else { return false }
                #expect(r.status == 200, "ready while \(dependency) is away")
                return r.checks[dependency] == "unreachable"
            }
            #expect(await ingestor.get("/metrics")?.body.contains("tw_dependency_up{dependency=\"\(dependency)\"} 0") == true)
            #expect(await ingestor.get("/healthz")?.status == 200, "alive while \(dependency) is away")
            try await restore()
            try await eventually(.seconds(60), "\(dependency) reported again after it returned", interval: .milliseconds(250)) {
                await readiness()?.checks.values.allSatisfy { $0 == "ok" } == true
            }
            #expect(await readiness()?.status == 200)
        }

        try await expectTransition("kafka", cut: { try MockBrokerControl.setBroker(1, up: false, control: control) },
                                   restore: { try MockBrokerControl.setBroker(1, up: true, control: control) })
        try await expectTransition("redis", cut: { redis.stop() }, restore: { redis = try startRedis() })
        try await expectTransition("postgres", cut: { kill(proxy.pid, SIGUSR1) }, restore: { kill(proxy.pid, SIGUSR2) })

        // Never restarted: the same process answered throughout, and it still stops cleanly.
        #expect(ingestor.waitForExit(timeout: .zero) == nil, "the ingestor kept running:\n\(ingestor.log)")
        #expect(try ingestor.stop() == 0)
        _ = broker
    }

    @Test("liveness stays green while the gateway is under ingest load")
    func livenessUnderLoad() async throws {
        let run = TestEnvironment.unique("live")
        let token = "liveness-admin-token-0123456"
        try MockBrokerControl.createTopic("\(run)-raw", partitions: 4)
        let gateway = try ServiceProcess("gateway", environment: ["TW_TOPIC_RAW": "\(run)-raw", "TW_GROUP_PREFIX": run, "TW_ADMIN_TOKEN": token])
        try await gateway.waitUntilReady()
        let http = HTTPClient(port: gateway.port)
        let key = try #require(try await http.call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(run)-t"}"#).json["api_key"] as? String)
        let now = Date().timeIntervalSince1970
        let batch = "[" + (0..<500).map { i in
            #"{"event_id":"\#(run)-\#(i)","timestamp":"\#(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: now - 5)))","provider":"openai","model":"gpt-4o","input_tokens":\#(i),"output_tokens":5,"latency_ms":100,"status":"ok"}"#
        }.joined(separator: ",") + "]"

        // Eight clients post while a probe asks /healthz every 100 ms, as a kubelet would (1 s timeout), until the
        // probe has asked ten times (at least 5 s of load; at most 60 s). The load lasts as long as the probing, so a
        // test process too busy to schedule the probe (the whole suite runs beside it) makes the run longer, not the
        // verdict different.
        let probing = LoadSwitch()
        let earliest = ContinuousClock.now + .seconds(5), latest = ContinuousClock.now + .seconds(60)
        let (accepted, probes) = try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var n = 0
                    while probing.on {
                        if try await http.call("POST", "/v1/events", token: key, body: batch).status == 202 { n += 1 }
                    }
                    return (n, [])
                }
            }
            group.addTask {
                var statuses: [Int] = []
                while (statuses.count < 10 || ContinuousClock.now < earliest) && ContinuousClock.now < latest {
                    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(gateway.port)/healthz")!)
                    request.timeoutInterval = 1
                    let status = (try? await URLSession.shared.data(for: request)).flatMap { ($0.1 as? HTTPURLResponse)?.statusCode } ?? 0
                    statuses.append(status)
                    try await Task.sleep(for: .milliseconds(100))
                }
                probing.stop()
                return (0, statuses)
            }
            var accepted = 0, probes: [Int] = []
            for try await (n, statuses) in group { accepted += n; probes += statuses }
            return (accepted, probes)
        }
        #expect(accepted > 0, "the load ran")
        #expect(probes.count >= 10 && probes.allSatisfy { $0 == 200 }, "every liveness probe answered 200 within 1 s under load: \(probes.count) probes, \(probes.filter { $0 != 200 })")
        #expect(try gateway.stop() == 0)
    }
}

/// Keeps the load of `livenessUnderLoad` running until the probe has done its part.
final class LoadSwitch: Sendable {
    private let state = Mutex(true)
    var on: Bool { self.state.withLock { $0 } }
    func stop() { self.state.withLock { $0 = false } }
}
