import Foundation
import Hummingbird
import Postgres
import Prometheus
import Redis
import Synchronization

/// A dependency `/readyz` checks.
public struct ReadinessCheck: Sendable {
    public let name: String
    /// False for a dependency whose loss the service answers itself (the gateway: ingest answers 503 with
    /// Retry-After, queries fall back to the other store): it is reported and measured but does not take the
    /// service out of its load balancer, where every replica would go at once and clients would get no answer.
    public let gatesReadiness: Bool
    public let check: @Sendable () async -> Bool

    public init(_ name: String, gatesReadiness: Bool = true, _ check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.gatesReadiness = gatesReadiness
        self.check = check
    }

    /// The same check, reported only.
    public var reportedOnly: ReadinessCheck { ReadinessCheck(self.name, gatesReadiness: false, self.check) }
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

    struct Probe {
        var name: String
        var gates: Bool
        var ok: Bool
        var milliseconds: Double
    }

    /// Runs every check at once; each also records what it saw in `tw_dependency_up{dependency}`, for alerts
    /// ("broker unavailable") and dashboards.
    func probe() async -> [Probe] {
        var results: [Probe] = []
        await withTaskGroup(of: Probe.self) { group in
            for check in self.checks {
                group.addTask {
                    let clock = ContinuousClock()
                    let start = clock.now
                    let ok = await check.check()
                    let elapsed = clock.now - start
                    let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                    return Probe(name: check.name, gates: check.gatesReadiness, ok: ok, milliseconds: ms)
                }
            }
            for await result in group { results.append(result) }
        }
        results.sort { $0.name < $1.name }
        for result in results {
            self.registry.makeGauge(name: "tw_dependency_up", labels: [("dependency", result.name)]).set(Double(result.ok ? 1 : 0))
        }
        return results
    }
}

extension Router {
    /// `/healthz` (the process is alive), `/readyz` (dependencies reachable, not draining), `/metrics` (Prometheus).
    public func addOperationsRoutes(_ state: OperationsState) {
        self.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}")))
        }
        // `/readyz`: 200 while serving and not draining and every dependency that gates readiness answers;
        // `/healthz/dependencies`: every dependency's state and probe time, always 200 (for people and dashboards).
        self.get("/readyz") { _, _ in
            let results = await state.probe()
            let ready = !state.isDraining && results.allSatisfy { $0.ok || !$0.gates }
            let degraded = results.contains { !$0.ok }
            let checks = results.map { "\"\($0.name)\":\"\($0.ok ? "ok" : "unreachable")\"" }.joined(separator: ",")
            let status = state.isDraining ? "draining" : !ready ? "not ready" : degraded ? "degraded" : "ready"
            let body = "{\"status\":\"\(status)\",\"checks\":{\(checks)}}"
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        self.get("/healthz/dependencies") { _, _ in
            let results = await state.probe()
            let items = results.map {
                "{\"name\":\"\($0.name)\",\"status\":\"\($0.ok ? "ok" : "unreachable")\",\"gates_readiness\":\($0.gates),\"probe_ms\":\(Int($0.milliseconds.rounded()))}"
            }.joined(separator: ",")
            let body = "{\"draining\":\(state.isDraining),\"dependencies\":[\(items)]}"
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: body)))
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
