import Foundation
import Hummingbird
import Postgres
import Prometheus
import Redis
import Synchronization

/// A dependency `/readyz` checks.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable () async -> Bool

    public init(_ name: String, _ check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }
}

/// State behind the operations endpoints.
public final class OperationsState: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let checks: [ReadinessCheck]
    private let draining = Atomic<Bool>(false)

    public init(registry: PrometheusCollectorRegistry, checks: [ReadinessCheck]) {
        self.registry = registry
        self.checks = checks
    }

    /// Once set, `/readyz` answers 503 so load balancers stop sending work while the service drains.
    public func startDraining() { self.draining.store(true, ordering: .relaxed) }
    public var isDraining: Bool { self.draining.load(ordering: .relaxed) }
}

extension Router {
    /// `/healthz` (the process is alive), `/readyz` (dependencies reachable, not draining), `/metrics` (Prometheus).
    public func addOperationsRoutes(_ state: OperationsState) {
        self.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}")))
        }
        self.get("/readyz") { _, _ in
            var results: [(String, Bool)] = []
            await withTaskGroup(of: (String, Bool).self) { group in
                for check in state.checks { group.addTask { (check.name, await check.check()) } }
                for await result in group { results.append(result) }
            }
            results.sort { $0.0 < $1.0 }
            // Each probe also records what it saw, for alerts ("broker unavailable") and dashboards.
            for (name, ok) in results {
                state.registry.makeGauge(name: "tw_dependency_up", labels: [("dependency", name)]).set(Double(ok ? 1 : 0))
            }
            let ready = !state.isDraining && results.allSatisfy(\.1)
            let checks = results.map { "\"\($0.0)\":\"\($0.1 ? "ok" : "unreachable")\"" }.joined(separator: ",")
            let body = "{\"status\":\"\(state.isDraining ? "draining" : ready ? "ready" : "not ready")\",\"checks\":{\(checks)}}"
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        self.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            state.registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}

extension Array where Element == ReadinessCheck {
    /// The checks of a service's dependencies: Kafka (a metadata request through `kafka`), and Redis and Postgres
    /// when the service uses them.
    public static func dependencies(kafka: @escaping @Sendable () async -> Bool, redis: RedisClient? = nil, postgres: PostgresClient? = nil) -> [ReadinessCheck] {
        var checks = [ReadinessCheck("kafka", kafka)]
        if let redis { checks.append(ReadinessCheck("redis") { await redis.ping() }) }
        if let postgres { checks.append(ReadinessCheck("postgres") { await postgres.ping() }) }
        return checks
    }
}
