import Events
import Foundation
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import Synchronization
import Testing
import TestSupport

/// What a HorizontalPodAutoscaler does to the consumers, played with local processes: replicas join and leave the
/// consumer groups while a steady workload runs, and one is killed outright.
@Suite("Scaling: the HPA story with local processes", .serialized, .timeLimit(.minutes(6)))
struct ScalingTests {
    @Test("ingestor, aggregator, detector and query go 1 -> 3 -> 1 under steady load with one SIGKILL; rollups equal the ground truth and every SIGTERMed replica exits cleanly within its budget")
    func scaleUpAndDown() async throws {
        let logger = Logger(label: "scaling-test")
        let run = TestEnvironment.unique("hpa")
        let shutdownBudget = 10
        // Four partitions: three replicas each own at least one.
        let env = try TestEnvironment.pipelineEnvironment(
            run: run, partitions: ["raw": 4, "events": 4, "dlq": 1, "rollups": 4],
            extra: ["TW_SHUTDOWN_TIMEOUT": "\(shutdownBudget)s", "TW_INGEST_BATCH": "200", "TW_AGGREGATOR_BATCH": "300"])
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        // Eight tenants, so the tenant-keyed topics spread over the partitions.
        let tenants = (0..<8).map { "\(run)-t\($0)" }
        for tenant in tenants { try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'T')") }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)

        @Sendable func applied() async throws -> Int64 {
            let row = try await postgres.query("SELECT COALESCE(sum(requests), 0)::bigint AS n FROM rollups_1m WHERE tenant_id LIKE \(run + "-%") AND \(unescaped: SeriesSelection.totalSQL)")
            return try row[0].decode("n")
        }
        func waitForApplied(atLeast n: Int64, _ what: String) async throws {
            try await eventually(.seconds(120), what, interval: .milliseconds(200)) { try await applied() >= n }
        }

        // The steady workload: 40 events every 100 ms produced to the raw topic, every 20th sent again later as a
        // client retry would, until stopped. `sent` is the ground truth.
        let sent = Mutex<[LLMEvent]>([])
        let running = Atomic<Bool>(true)
        let workload = Task {
            var i = 0
            var retries: [LLMEvent] = []
            let models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini")]
            while running.load(ordering: .relaxed) {
                let now = EventTimestamp.now().microsecondsSinceEpoch
                var batch: [LLMEvent] = []
                for _ in 0..<40 {
                    let (provider, model) = models[i % 3]
                    batch.append(LLMEvent(eventID: "\(run)-\(i)", tenantID: tenants[i % tenants.count], timestamp: EventTimestamp(microsecondsSinceEpoch: now - Int64(i % 20) * 1_000_000),
                                          provider: provider, model: model, inputTokens: Int64(i % 997), outputTokens: Int64(i % 101), latencyMs: Double(100 + i % 900),
                                          status: i % 13 == 0 ? .error : .ok, errorType: i % 13 == 0 ? "timeout" : nil, costNanos: Int64(1 + i % 5000)))
                    i += 1
                }
                let again = retries
                retries = batch.enumerated().filter { $0.offset % 20 == 0 }.map(\.element)
                try await producer.sendAll((batch + again).map { KafkaProducerMessage(topic: "\(run)-raw", key: Array($0.tenantID!.utf8), value: $0.jsonBytes()) })
                sent.withLock { $0 += batch }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        let services = ["ingestor", "aggregator", "detector", "query"]
        // 1 replica each.
        var replicas: [String: [ServiceProcess]] = [:]
        // Every process of the test, stopped ones included (their logs go with them), for the diagnosis of a failure.
        var everyone: [ServiceProcess] = []
        for service in services { replicas[service] = [try ServiceProcess(service, environment: env)] }
        everyone += services.flatMap { replicas[$0]! }
        for service in services { try await replicas[service]![0].waitUntilReady() }
        try await waitForApplied(atLeast: 1500, "the first replicas apply events")

        // Scale up: 3 each. The new replicas join their groups and are handed partitions.
        var joined: [ServiceProcess] = []
        for service in services {
            for _ in 0..<2 {
                let p = try ServiceProcess(service, environment: env)
                replicas[service]!.append(p)
                joined.append(p)
                everyone.append(p)
            }
        }
        for p in joined { try await p.waitUntilReady() }
        for p in joined {
            try await eventually(.seconds(60), "\(p.name) (pid \(p.pid)) owns partitions") {
                p.log.range(of: #"kafka\.partitions=\[[A-Za-z0-9].*Kafka partitions assigned"#, options: .regularExpression) != nil
            }
        }
        let atScaleUp = try await applied()
        try await waitForApplied(atLeast: atScaleUp + 1500, "three replicas apply events")

        // One aggregator replica dies without warning (a node lost): its partitions go to the others.
        let killed = replicas["aggregator"]!.remove(at: 1)
        kill(killed.pid, SIGKILL)
        _ = killed.waitForExit()
        let atKill = try await applied()
        try await waitForApplied(atLeast: atKill + 1500, "progress after the SIGKILL")

        // Scale down to 1 each, one replica at a time as the HPA's policy does; each gets SIGTERM and must finish
        // its batch, commit, leave the group and exit 0 within its shutdown budget.
        var exits: [(String, Int32, Duration)] = []
        for service in services {
            while replicas[service]!.count > 1 {
                let p = replicas[service]!.removeLast()
                let start = ContinuousClock.now
                let status = try p.stop(timeout: .seconds(shutdownBudget + 5))
                exits.append((service, status, ContinuousClock.now - start))
                #expect(status == 0, "\(service) exits 0 on SIGTERM:\n\(p.crashReport)")
                #expect(ContinuousClock.now - start < .seconds(shutdownBudget), "\(service) stopped within its \(shutdownBudget) s budget")
            }
        }
        print("scale-down exits: " + exits.map { "\($0.0) \($0.1) in \($0.2)" }.joined(separator: ", "))
        let atScaleDown = try await applied()
        try await waitForApplied(atLeast: atScaleDown + 1000, "one replica each carries on")

        // Stop the load; everything sent must be applied exactly once.
        running.store(false, ordering: .relaxed)
        try await workload.value
        let events = sent.withLock { $0 }
        var truth = RollupDeltas(granularity: .minute)
        for e in events { truth.add(e) }
        do {
            try await waitForApplied(atLeast: Int64(events.count), "every event applied")
        } catch {
            // Say what is missing and where, so a failure can be placed against the scaling steps above.
            let rows = try await postgres.query("SELECT tenant_id, (extract(epoch FROM window_start) * 1000000)::bigint AS window_us, requests FROM rollups_1m WHERE tenant_id LIKE \(run + "-%") AND \(unescaped: SeriesSelection.totalSQL)")
            var have: [String: Int64] = [:]
            for row in rows { have["\(try row.decode("tenant_id", as: String.self)) \(EventTimestamp(microsecondsSinceEpoch: try row.decode("window_us")).rfc3339)"] = try row.decode("requests") }
            var want: [String: Int64] = [:]
            for (key, v) in truth.windows where key.series.provider.isEmpty {
                want["\(key.series.tenant) \(EventTimestamp(microsecondsSinceEpoch: key.windowStart).rfc3339)"] = v.requests
            }
            let short = want.filter { have[$0.key, default: 0] != $0.value }.map { "\($0.key): \(have[$0.key, default: 0]) of \($0.value)" }.sorted()
            Issue.record("applied \(try await applied()) of \(events.count); windows short: \(short.prefix(20).joined(separator: "; "))")
            for p in everyone {
                let lines = p.log.split(separator: "\n").filter { $0.contains("warning") || $0.contains("error") || $0.contains("partitions") || $0.contains("Fenced") }
                print("--- \(p.name) pid \(p.pid):\n" + lines.suffix(25).joined(separator: "\n"))
            }
            throw error
        }
        let result = try await postgres.query("SELECT \(unescaped: RollupStore.selectColumns) FROM rollups_1m WHERE tenant_id LIKE \(run + "-%")")
        var actual: [RollupKey: (Int64, Int64, Int64, Int64, Int64)] = [:]
        for row in result {
            let key = RollupKey(series: try RollupStore.series(row), windowStart: try row.decode("window_us"))
            actual[key] = (try row.decode("requests"), try row.decode("errors"), try row.decode("input_tokens"), try row.decode("output_tokens"), try row.decode("cost_nanos"))
        }
        #expect(Set(actual.keys) == Set(truth.windows.keys))
        var mismatches = 0
        for (key, v) in truth.windows {
            let got = actual[key]
            if !(got?.0 == v.requests && got?.1 == v.errors && got?.2 == v.inputTokens && got?.3 == v.outputTokens && got?.4 == v.costNanos) { mismatches += 1 }
        }
        #expect(mismatches == 0, "\(mismatches) of \(truth.windows.count) series-windows differ from the ground truth (\(events.count) events)")

        for service in services { #expect(try replicas[service]![0].stop() == 0, "the last \(service) stops cleanly") }
        await producer.shutdown()
        await postgres.close()
    }
}
