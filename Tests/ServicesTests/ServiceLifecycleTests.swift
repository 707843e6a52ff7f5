import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The five executables, run as real processes against the test stack.
@Suite("Service executables", .serialized, .timeLimit(.minutes(5)))
struct ServiceLifecycleTests {
    @Test("each service becomes ready, serves its operations endpoints and exits 0 on SIGTERM", arguments: ["gateway", "ingestor", "aggregator", "detector", "query"])
    func lifecycle(service: String) async throws {
        let process = try ServiceProcess(service, environment: ["TW_LOG_FORMAT": "json", "TW_SHUTDOWN_TIMEOUT": "10s"])
        try await process.waitUntilReady()
        let health = await process.get("/healthz")
        #expect(health?.status == 200)
        let ready = try #require(await process.get("/readyz"))
        #expect(ready.status == 200)
        #expect(ready.body.hasPrefix("{\"status\":\"ready\",\"checks\":{\"kafka\":\"ok\",\"postgres\":\"ok\""))
        #expect(!ready.body.contains("unreachable"))
        let metrics = try #require(await process.get("/metrics"))
        #expect(metrics.status == 200)
        let status = try process.stop(signal: SIGTERM)
        #expect(status == 0, "exit status \(status); log:\n\(process.log)")
        let lines = process.log.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("{\"ts\":\"") && $0.hasSuffix("}") }, "every log line is a JSON object")
        #expect(lines.contains { $0.contains("\"msg\":\"Stopped\"") })
    }

    @Test("with TW_MANAGEMENT_PORT, health and metrics answer on that port only, and the API only on its own")
    func managementPort() async throws {
        let gateway = try ServiceProcess("gateway", management: true, environment: ["TW_SHUTDOWN_TIMEOUT": "10s"])
        try await gateway.waitUntilReady()
        let management = try #require(gateway.managementPort)
        for path in ["/healthz", "/readyz", "/healthz/dependencies", "/metrics"] {
            #expect(await gateway.get(path, port: management)?.status == 200, "\(path) on the management port")
            let onAPI = await gateway.get(path)
            #expect([404, 405].contains(onAPI?.status ?? 0), "\(path) not served on the API port: \(String(describing: onAPI))")
        }
        #expect(await gateway.get("/openapi.json")?.status == 200, "the API on its port")
        #expect([404, 405].contains(await gateway.get("/openapi.json", port: management)?.status ?? 0), "no API on the management port")
        #expect(try gateway.stop(signal: SIGTERM) == 0)
    }

    @Test("a consumer service leaves its group on SIGTERM, so its partitions are revoked before it exits")
    func consumerLeavesGroup() async throws {
        let process = try ServiceProcess("ingestor", environment: ["TW_SHUTDOWN_TIMEOUT": "10s"])
        try await process.waitUntilReady()
        // Joining the group takes a few seconds on the local broker; the assignment is logged when it happens.
        let deadline = ContinuousClock.now + .seconds(30)
        while !process.log.contains("Kafka partitions assigned") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(process.log.contains("Kafka partitions assigned"))
        #expect(try process.stop(signal: SIGTERM) == 0)
        #expect(process.log.contains("Kafka partitions revoked"))
        #expect(process.log.contains("Kafka consumer closed"))
    }

    @Test("a bad configuration value stops the service at start with the key and the reason", arguments: [
        ("TW_HTTP_PORT", "eighty", "TW_HTTP_PORT: expected an integer in 1...65535, got 'eighty'"),
        ("TW_REDIS_URL", "http://localhost", "TW_REDIS_URL: expected a redis:// or rediss:// URL"),
    ])
    func badConfiguration(key: String, value: String, message: String) throws {
        let process = try ServiceProcess("query", environment: [key: value])
        #expect(process.waitForExit() == 2)
        #expect(process.log.contains(message))
    }
}
