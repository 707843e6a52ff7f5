import Hummingbird
import HummingbirdTesting
import Logging
import Metrics
import Prometheus
@testable import ServiceKit
import Synchronization
import Testing
import Events

@Suite("Operations endpoints")
struct OperationsRoutesTests {
    func app(_ state: OperationsState) -> some ApplicationProtocol {
        let router = Router()
        router.addOperationsRoutes(state)
        return Application(router: router)
    }

    @Test("healthz, readyz with every check passing, and Prometheus metrics")
    func healthy() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "tw", metricName: "test", unitName: "total", helpText: "a test counter")).increment(by: Int64(3))
        let state = OperationsState(registry: registry, checks: [ReadinessCheck("kafka") { true }, ReadinessCheck("redis") { true }])
        try await self.app(state).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"starting\",\"checks\":{}}", "serving before the first probe")
            }
            _ = await state.probe()
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"ok\"}")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"ready\",\"checks\":{\"kafka\":\"ok\",\"redis\":\"ok\"}}")
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("tw_test_total 3"))
            }
        }
    }

    @Test("a request head over 16 KB to healthz or metrics is 431, whatever middleware the service adds after")
    func headLimit() async throws {
        let state = OperationsState(registry: PrometheusCollectorRegistry(), checks: [])
        try await self.app(state).test(.router) { client in
            for uri in ["/healthz", "/metrics", "/readyz"] {
                try await client.execute(uri: uri, method: .get, headers: [.init("X-Padding")!: String(repeating: "a", count: 60_000)]) { response in
                    #expect(response.status.code == 431, "\(uri)")
                }
                try await client.execute(uri: uri, method: .get, headers: [.init("X-Padding")!: String(repeating: "a", count: 1000)]) { response in
                    #expect(response.status == .ok, "\(uri)")
                }
            }
        }
    }

    @Test("readyz stays 200 while a dependency is down (degraded, with which one, from the last probe) and is 503 only while draining")
    func notReady() async throws {
        let up = Atomic<Bool>(false)
        let asked = Atomic<Int>(0)
        let state = OperationsState(registry: PrometheusCollectorRegistry(), checks: [ReadinessCheck("postgres") { asked.add(1, ordering: .relaxed); return up.load(ordering: .relaxed) }])
        try await self.app(state).test(.router) { client in
            _ = await state.probe()
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"degraded\",\"checks\":{\"postgres\":\"unreachable\"}}")
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains("tw_dependency_up{dependency=\"postgres\"} 0"))
            }
            for _ in 0..<5 { try await client.execute(uri: "/readyz", method: .get) { _ in } }
            #expect(asked.load(ordering: .relaxed) == 1, "readiness probes ask no dependency anything")
            up.store(true, ordering: .relaxed)
            try await client.execute(uri: "/healthz/dependencies", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).hasPrefix("{\"draining\":false,\"dependencies\":[{\"name\":\"postgres\",\"status\":\"ok\""), "probed now")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).hasPrefix("{\"status\":\"ready\""))
            }
            state.startDraining()
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).hasPrefix("{\"status\":\"draining\""))
            }
        }
    }

    @Test("JSON log lines are single, valid objects with escaped metadata")
    func jsonLog() throws {
        let handler = JSONLogHandler(label: "test")
        let event = LogEvent(level: .warning, message: "quote \" and\nnewline", metadata: ["tenant.id": "acme", "n": "1"], source: "s", file: "f", function: "fn", line: 1)
        let line = String(decoding: handler.line(event, timestamp: EventTimestamp(microsecondsSinceEpoch: 0)), as: UTF8.self)
        #expect(line == "{\"ts\":\"1970-01-01T00:00:00Z\",\"level\":\"warning\",\"logger\":\"test\",\"msg\":\"quote \\\" and\\nnewline\",\"n\":\"1\",\"tenant.id\":\"acme\"}\n")
    }
}
