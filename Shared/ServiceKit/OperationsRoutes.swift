import Foundation
import Hummingbird
import Postgres
import Prometheus
import Redis
import ServiceLifecycle
import Synchronization

/// A dependency the service reports on (`/healthz/dependencies`, `/readyz`'s body, `tw_dependency_up`).
///
/// No dependency gates readiness: every service answers for a missing one itself (the gateway with 503 and
/// Retry-After or the other store, the consumers by retrying their batch), and a readiness tied to a shared
/// dependency takes every replica out at once and blocks node drains (a PodDisruptionBudget counts unready pods).
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
    /// What the last probe saw (`DependencyMonitor`), for `/readyz`, which itself asks no dependency anything.
    private let last = Mutex<[Probe]>([])

    public init(registry: PrometheusCollectorRegistry, checks: [ReadinessCheck]) {
        self.registry = registry
        self.checks = checks
    }

    /// Once set, `/readyz` answers 503 so load balancers stop sending work while the service drains.
    public func startDraining() { self.draining.store(true, ordering: .relaxed) }
    public var isDraining: Bool { self.draining.load(ordering: .relaxed) }

    struct Probe {
        var name: String
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
                    return Probe(name: check.name, ok: ok, milliseconds: ms)
                }
            }
            for await result in group { results.append(result) }
        }
        results.sort { $0.name < $1.name }
        for result in results {
            self.registry.makeGauge(name: "tw_dependency_up", labels: [("dependency", result.name)]).set(Double(result.ok ? 1 : 0))
        }
        self.last.withLock { $0 = results }
        return results
    }

    /// The last probe's results (empty before the first).
    var lastProbe: [Probe] { self.last.withLock { $0 } }
}

extension Router {
    /// `/healthz` (the process is alive), `/readyz` (serving and not draining), `/healthz/dependencies` (each
    /// dependency probed now), `/metrics` (Prometheus).
    public func addOperationsRoutes(_ state: OperationsState) {
        // Registered before any service middleware: their own bound on the request head (probes and scrapers send a
        // few hundred bytes; nothing else should make them parse 60 KB).
        let ops = self.group().add(middleware: HeadLimitMiddleware())
        ops.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}")))
        }
        // `/readyz`: 200 while serving and not draining, `degraded` when the last probe (`DependencyMonitor`, every
        // 10 s) found a dependency unreachable; a kubelet probing every few seconds costs the dependencies nothing.
        // `/healthz/dependencies`: every dependency probed now, with its time, always 200 (for people and dashboards).
        ops.get("/readyz") { _, _ in
            let results = state.lastProbe
            let checks = results.map { "\"\($0.name)\":\"\($0.ok ? "ok" : "unreachable")\"" }.joined(separator: ",")
            let status = state.isDraining ? "draining" : results.isEmpty && !state.checks.isEmpty ? "starting" : results.allSatisfy(\.ok) ? "ready" : "degraded"
            let body = "{\"status\":\"\(status)\",\"checks\":{\(checks)}}"
            return Response(status: state.isDraining ? .serviceUnavailable : .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        ops.get("/healthz/dependencies") { _, _ in
            let results = await state.probe()
            let items = results.map {
                "{\"name\":\"\($0.name)\",\"status\":\"\($0.ok ? "ok" : "unreachable")\",\"probe_ms\":\(Int($0.milliseconds.rounded()))}"
            }.joined(separator: ",")
            let body = "{\"draining\":\(state.isDraining),\"dependencies\":[\(items)]}"
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        ops.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            state.registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}

/// 431 for a request head (target and header fields) over `maxBytes`.
struct HeadLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    var maxBytes = 16 * 1024

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var bytes = request.uri.description.utf8.count
        for field in request.headers { bytes += field.name.rawName.utf8.count + field.value.utf8.count + 4 }
        guard bytes <= self.maxBytes else {
            return Response(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"), headers: [.contentType: "text/plain", .connection: "close"],
                            body: .init(byteBuffer: ByteBuffer(string: "request head larger than \(self.maxBytes) bytes\n")))
        }
        return try await next(request, context)
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

/// Probes every dependency every `interval` (and once at start) for `tw_dependency_up` and `/readyz`'s body.
struct DependencyMonitor: Service {
    let state: OperationsState
    var interval: Duration = .seconds(10)

    func run() async throws {
        while true {
            _ = await self.state.probe()
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) } } catch { return }
        }
    }
}
