import Foundation
import Hummingbird
import Kafka
import Logging
import Metrics
import ClientSupport
import Postgres
import Prometheus
import ServiceLifecycle
import UnixSignals

/// What a service's `@main` hands the runner: its long-running parts, readiness checks and extra HTTP routes.
public struct ServiceParts: Sendable {
    /// Clients and workers, in start order (shutdown runs in reverse: later ones stop first).
    public var services: [any Service]
    public var readinessChecks: [ReadinessCheck]
    /// Extra routes on the service's HTTP listener (the gateway's API).
    public var routes: @Sendable (Router<BasicRequestContext>) -> Void
    /// TLS, bounds and deadlines of the HTTP listener.
    public var http: HTTPServerOptions

    public init(
        services: [any Service], readinessChecks: [ReadinessCheck], http: HTTPServerOptions = HTTPServerOptions(),
        routes: @escaping @Sendable (Router<BasicRequestContext>) -> Void = { _ in }
    ) {
        self.services = services
        self.readinessChecks = readinessChecks
        self.http = http
        self.routes = routes
    }
}

/// Everything a service needs while it builds its parts.
public struct ServiceRuntime: Sendable {
    public let configuration: ServiceConfiguration
    public let logger: Logger
    public let registry: PrometheusCollectorRegistry
}

/// The shared `main` of the five executables.
public enum ServiceRunner {
    /// Reads the configuration (exiting with status 2 and the offending key on error), bootstraps logging and
    /// metrics once, lets `build` make the service's parts, and runs them with the HTTP listener in one
    /// `ServiceGroup` that shuts down gracefully on SIGTERM or SIGINT.
    public static func main(service: String, defaultPort: Int, build: @Sendable (ServiceRuntime) async throws -> ServiceParts) async {
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration(serviceName: service, defaultPort: defaultPort)
        } catch {
            FileHandle.standardError.write(Data("\(service): invalid configuration: \(error)\n".utf8))
            exit(2)
        }
        let format = configuration.logFormat
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var logger = Logger(label: "tokenwatch.\(service)")
        logger.logLevel = level
        do {
            let runtime = ServiceRuntime(configuration: configuration, logger: logger, registry: registry)
            let parts = try await build(runtime)
            try await Self.run(parts, runtime: runtime)
        } catch {
            logger.critical("Service failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }

    static func run(_ parts: ServiceParts, runtime: ServiceRuntime) async throws {
        let c = runtime.configuration
        let state = OperationsState(registry: runtime.registry, checks: parts.readinessChecks)
        let router = Router()
        var listeners: [any Service] = []
        if let port = c.managementPort {
            // Health and metrics on their own port (plain HTTP, for the kubelet and Prometheus), off the API's.
            let management = Router()
            management.addOperationsRoutes(state)
            listeners.append(Application(router: management, configuration: .init(address: .hostname(c.managementHost, port: port), serverName: c.serviceName), logger: runtime.logger))
        } else {
            router.addOperationsRoutes(state)
        }
        parts.routes(router)
        listeners.append(Application(
            router: router,
            server: try parts.http.serverBuilder(),
            configuration: .init(address: .hostname(c.httpHost, port: c.httpPort), serverName: c.serviceName),
            logger: runtime.logger))
        // Last in the group, so the first to hear of shutdown: readiness turns 503 before anything stops.
        let drain = DrainService(state: state)
        var config = ServiceGroupConfiguration(
            services: parts.services.map { .init(service: $0) } + [.init(service: DependencyMonitor(state: state))] + listeners.map { .init(service: $0) } + [.init(service: drain)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: runtime.logger)
        config.maximumGracefulShutdownDuration = c.shutdownTimeout
        config.maximumCancellationDuration = .seconds(5)
        runtime.logger.info("Starting", metadata: [
            "http.address": "\(c.httpHost):\(c.httpPort)", "http.tls": "\(parts.http.tlsEnabled)", "kafka.brokers": "\(c.kafka.bootstrapServers)",
            "management.address": "\(c.managementPort.map { "\(c.managementHost):\($0)" } ?? "the HTTP listener")",
        ])
        try await ServiceGroup(configuration: config).run()
        runtime.logger.info("Stopped")
    }
}

/// Flags the service as draining when graceful shutdown begins.
struct DrainService: Service {
    let state: OperationsState
    func run() async throws {
        try? await gracefulShutdown()
        self.state.startDraining()
    }
}

/// Opens the Postgres pool and sees to the schema as `TW_MIGRATIONS` says: applies the missing migrations (`apply`,
/// the default), waits until someone else has (`wait`: a runtime role without DDL), or applies them and exits 0
/// (`only`: the migration Job).
public func connectPostgres(_ runtime: ServiceRuntime, migrations: [PostgresMigration] = TokenwatchSchema.migrations,
                            privileges: String? = TokenwatchSchema.privileges) async throws -> PostgresClient {
    var config = PostgresConfiguration(url: runtime.configuration.postgresURL)
    config.maxConnections = runtime.configuration.postgresPoolSize
    config.applicationName = "tokenwatch-\(runtime.configuration.serviceName)"
    let client = PostgresClient(configuration: config, logger: runtime.logger)
    let migrator = PostgresMigrator(migrations: migrations, privileges: privileges)
    let settings = runtime.configuration
    var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    switch settings.migrations {
    case .apply, .only:
        // Postgres may come up after the service (a fresh cluster); retry for a while rather than crash-looping.
        for attempt in 1... {
            do {
                let applied = try await migrator.migrate(client, lockTimeout: settings.migrationLockTimeout)
                guard settings.migrations == .only else { return client }
                runtime.logger.notice("Migrations applied; exiting (TW_MIGRATIONS=only)", metadata: ["applied": "\(applied)", "known": "\(migrations.count)"])
                await client.close()
                exit(0)
            } catch let error as PostgresError where error.isRetriable && attempt < 30 {
                runtime.logger.warning("Postgres not reachable yet", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try await Task.sleep(for: backoff.next())
            }
        }
    case .wait:
        let deadline = ContinuousClock.now + settings.migrationWait
        while true {
            let outcome: String
            do {
                let missing = try await migrator.missing(client)
                if missing.isEmpty { return client }
                outcome = "migrations \(missing.filter { $0 != PostgresMigrator.privilegesPending }.map(String.init).joined(separator: ", ")) not applied yet"
                    + (missing.contains(PostgresMigrator.privilegesPending) ? " (and this release's grants)" : "")
            } catch let error as PostgresError where error.isRetriable || error.sqlState == "42501" {
                // 42501: the migration table exists but this role's grants do not yet (the Job grants after migrating).
                outcome = error.sqlState == "42501" ? "this role's grants not applied yet" : "\(error)"
            }
            guard ContinuousClock.now < deadline else {
                throw PostgresError(.migration, "TW_MIGRATIONS=wait: the schema is not ready after \(settings.migrationWait): \(outcome) (run the migration Job, or TW_MIGRATIONS=only with a role that may change the schema)")
            }
            runtime.logger.warning("Waiting for the schema (TW_MIGRATIONS=wait)", metadata: ["state": "\(outcome)"])
            try await Task.sleep(for: backoff.next())
        }
    }
    fatalError("unreachable")
}
