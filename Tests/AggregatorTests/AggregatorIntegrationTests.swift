import AggregatorCore
import Events
import Foundation
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import Testing
import TestSupport

let logger = Logger(label: "aggregator-tests")

/// A test world: its own topics and tenants, real Postgres and broker.
struct World {
    let postgres: PostgresClient
    let producer: KafkaProducer
    let topics: Topics
    let run: String
    let base: Int64 // event time origin: a minute boundary, an hour ago

    static func make() async throws -> World {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
        let run = TestEnvironment.unique("agg")
        var topics = Topics()
        topics.events = "\(run)-events"
        topics.deadLetters = "\(run)-dlq"
        topics.rollups = "\(run)-rollups"
        try MockBrokerControl.createTopic(topics.deadLetters, partitions: 1)
        try MockBrokerControl.createTopic(topics.rollups, partitions: 2)
        let now = EventTimestamp.now().microsecondsSinceEpoch
        return World(postgres: postgres, producer: producer, topics: topics, run: run, base: (now - 3_600_000_000) / 60_000_000 * 60_000_000)
    }

    func core(_ states: PartitionStates = PartitionStates(), lateness: Duration = .seconds(600)) -> AggregatorCore {
        AggregatorCore(postgres: self.postgres, producer: self.producer, states: states, settings: AggregatorSettings(allowedLateness: lateness), topics: self.topics, logger: logger)
    }

    var partition: KafkaTopicPartition { KafkaTopicPartition(topic: self.topics.events, partition: 0) }

    /// Loads the partition as an assignment would.
    func assign(_ core: AggregatorCore) async throws {
        _ = try await AggregatorRebalanceHandler(postgres: self.postgres, states: core.states).partitionsAssigned([self.partition])
    }

    func tenant(_ n: Int) -> String { "\(self.run)-t\(n)" }
}

/// An ingestor output message: the event with its source coordinates.
func message(_ event: LLMEvent, offset: Int64, sourcePartition: Int32 = 0, sourceOffset: Int64, topic: String) -> KafkaMessage {
    KafkaMessage(
        topic: topic, partition: 0, offset: offset, key: Array(event.tenantID!.utf8), value: event.jsonBytes(),
        headers: [KafkaHeader(key: EventHeaders.sourcePartition, string: "\(sourcePartition)"), KafkaHeader(key: EventHeaders.sourceOffset, string: "\(sourceOffset)")])
}

/// A generated workload: tenants, models, errors, costs and latencies over several minutes.
func workload(_ world: World, count: Int, seed: UInt64) -> [LLMEvent] {
    var rng = SeededRandom(seed: seed)
    let models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini")]
    return (0..<count).map { i in
        let (provider, model) = models[Int(rng.next() % 3)]
        let error = rng.next() % 10 == 0
        // Ids with the characters an array literal must escape, too. Times to first token stay below the smallest latency.
        let user = rng.next() % 5 == 0 ? nil : ["user-\(rng.next() % 20)", #"o"dd, {id}\ "#][Int(rng.next() % 2)]
        return LLMEvent(
            eventID: "\(world.run)-\(i)", tenantID: world.tenant(Int(rng.next() % 2)),
            timestamp: EventTimestamp(microsecondsSinceEpoch: world.base + Int64(i) * 180_000_000 / Int64(count) + Int64(rng.next() % 1000)),
            provider: provider, model: model, inputTokens: Int64(rng.next() % 5000), outputTokens: Int64(rng.next() % 800),
            cachedInputTokens: 0, latencyMs: Double(50 + rng.next() % 5000), timeToFirstTokenMs: i % 3 == 0 ? nil : Double(1 + i % 49),
            status: error ? .error : .ok, errorType: error ? (rng.next() % 2 == 0 ? "timeout" : "rate_limit") : nil, costNanos: Int64(rng.next() % 40_000),
            userID: user, sessionID: i % 4 == 0 ? nil : "s-\(i % 37)")
    }
}

/// Reads every 1m row of the world's tenants.
func rows(_ world: World, _ granularity: Granularity) async throws -> [RollupKey: RollupRecord] {
    let result = try await world.postgres.query("""
        SELECT \(unescaped: RollupStore.selectColumns)
        FROM \(identifier: granularity.table) WHERE tenant_id LIKE \(world.run + "-%")
        """)
    var out: [RollupKey: RollupRecord] = [:]
    for row in result {
        let record = try RollupStore.record(row, granularity: granularity)
        out[record.key] = record
    }
    return out
}

/// What the rollups must hold: computed independently from the events.
func groundTruth(_ events: [LLMEvent], _ granularity: Granularity) -> [RollupKey: RollupValues] {
    var deltas = RollupDeltas(granularity: granularity)
    for e in events { deltas.add(e) }
    return deltas.windows
}

/// The per-user daily totals stored for the world's tenants, keyed "tenant|day|user" → [requests, errors, input, output, cost].
func userTotals(_ world: World) async throws -> [String: [Int64]] {
    let result = try await world.postgres.query("""
        SELECT tenant_id, to_char(day, 'YYYY-MM-DD') AS day, user_id, requests, errors, input_tokens, output_tokens, cost_nanos
        FROM user_totals_1d WHERE tenant_id LIKE \(world.run + "-%")
        """)
    var out: [String: [Int64]] = [:]
    for row in result {
        let key = "\(try row.decode("tenant_id", as: String.self))|\(try row.decode("day", as: String.self))|\(try row.decode("user_id", as: String.self))"
        out[key] = try ["requests", "errors", "input_tokens", "output_tokens", "cost_nanos"].map { try row.decode($0, as: Int64.self) }
    }
    return out
}

/// What the per-user totals must hold, summed from the events here (not with the aggregator's types).
func userGroundTruth(_ events: [LLMEvent]) -> [String: [Int64]] {
    var out: [String: [Int64]] = [:]
    for e in events {
        let key = "\(e.tenantID ?? "")|\(e.timestamp.rfc3339.prefix(10))|\(e.userID ?? "")"
        let add: [Int64] = [1, e.status == .error ? 1 : 0, e.inputTokens, e.outputTokens, e.costNanos ?? 0]
        out[key] = zip(out[key] ?? [0, 0, 0, 0, 0], add).map { $0 + $1 }
    }
    return out
}

func expectEqual(_ actual: [RollupKey: RollupRecord], _ expected: [RollupKey: RollupValues], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(Set(actual.keys) == Set(expected.keys), sourceLocation: sourceLocation)
    for (key, values) in expected {
        guard let got = actual[key]?.values else { continue }
        #expect(got.requests == values.requests && got.errors == values.errors && got.errorsByType == values.errorsByType, "\(key)", sourceLocation: sourceLocation)
        #expect(got.inputTokens == values.inputTokens && got.outputTokens == values.outputTokens && got.costNanos == values.costNanos, "\(key)", sourceLocation: sourceLocation)
        #expect(got.latency == values.latency && got.timeToFirstToken == values.timeToFirstToken, "sketches merge exactly", sourceLocation: sourceLocation)
        #expect(got.users == values.users && got.sessions == values.sessions, "distinct-id registers merge exactly: \(key)", sourceLocation: sourceLocation)
    }
}

@Suite("Aggregator against the local stack", .serialized, .timeLimit(.minutes(5)))
struct AggregatorIntegrationTests {
    @Test("rollups equal the ground truth exactly through replays, a restart and a zombie member")
    func exactlyOnce() async throws {
        let world = try await World.make()
        let events = workload(world, count: 600, seed: 7)
        let input = events.enumerated().map { message($0.element, offset: Int64($0.offset), sourceOffset: Int64($0.offset) * 2, topic: world.topics.events) }

        let a = world.core()
        try await world.assign(a)
        let first = try await a.process(Array(input[0..<250]))
        #expect(first.applied == 250)
        // The ingestor replayed source offsets 400...498 after a crash: new input offsets, same source offsets.
        let replayed = (200..<250).map { i in message(events[i], offset: Int64(250 + i - 200), sourceOffset: Int64(i) * 2, topic: world.topics.events) }
        let second = try await a.process(replayed)
        #expect(second.replays == 50 && second.applied == 0)
        let rest = events[250...].enumerated().map { message($0.element, offset: Int64(300 + $0.offset), sourceOffset: Int64(250 + $0.offset) * 2, topic: world.topics.events) }

        // A restarted member resumes from Postgres; Kafka redelivering from an older offset changes nothing.
        let b = world.core()
        try await world.assign(b)
        #expect(b.states[world.partition]?.nextOffset == 300)
        let redelivered = try await b.process(Array(input[100..<250]) + Array(rest[0..<200]))
        #expect(redelivered.applied == 200 && redelivered.replays == 0)

        // A zombie (a, which still thinks it owns the partition at offset 300) applies the next batch: fenced.
        let zombie = try await a.process(Array(rest[200...]))
        #expect(zombie.fenced == [world.partition] && zombie.applied == 0)
        #expect(a.states[world.partition] == b.states[world.partition], "the zombie reloaded the real state")
        let last = try await b.process(Array(rest[200...]))
        #expect(last.applied == 150)

        expectEqual(try await rows(world, .minute), groundTruth(events, .minute))
        expectEqual(try await rows(world, .hour), groundTruth(events, .hour))
        expectEqual(try await rows(world, .day), groundTruth(events, .day))
        let users = try await userTotals(world)
        #expect(users == userGroundTruth(events), "per-user daily totals equal the ground truth")
        #expect(users.count > 20, "users on both tenants, and the events without a user under ''")

        // Percentiles from the stored sketches are within the stated error of the exact ones.
        let tenant0 = events.filter { $0.tenantID == world.tenant(0) }.map(\.latencyMs).sorted()
        let total = try await rows(world, .day).values.first { $0.key.series == .total(world.tenant(0)) }!
        for q in [0.5, 0.95, 0.99] {
            let exact = tenant0[max(0, Int((q * Double(tenant0.count)).rounded(.up)) - 1)]
            #expect(abs(total.values.latency.quantile(q)! - exact) <= 0.01 * exact)
        }
        await world.producer.shutdown()
        await world.postgres.close()
    }

    @Test("per-user totals stay exact when rows are removed or added behind the aggregator's back: the batch is written again with upserts")
    func knownUsersOutOfDate() async throws {
        let world = try await World.make()
        var events = workload(world, count: 400, seed: 11)
        // One tenant's user in the first and second quarters, and one only in the last quarter.
        events[10].userID = "both-user"
        events[250].userID = "both-user"
        events[250].tenantID = events[10].tenantID
        events[250].timestamp = events[10].timestamp
        events[350].userID = "late-user"
        let both = events[250], late = events[350]
        func key(_ e: LLMEvent) -> String { "\(e.tenantID!)|\(e.timestamp.rfc3339.prefix(10))|\(e.userID!)" }
        func day(_ e: LLMEvent) -> String { String(e.timestamp.rfc3339.prefix(10)) }
        let input = events.enumerated().map { message($0.element, offset: Int64($0.offset), sourceOffset: Int64($0.offset), topic: world.topics.events) }
        let core = world.core()
        try await world.assign(core)
        #expect(try await core.process(Array(input[0..<200])).applied == 200)

        // Another writer removes both-user's row: the aggregator's update of it finds nothing.
        try await world.postgres.query("DELETE FROM user_totals_1d WHERE tenant_id = \(both.tenantID!) AND day = \(day(both))::date AND user_id = 'both-user'")
        #expect(try await core.process(Array(input[200..<300])).applied == 100)
        var expected = userGroundTruth(Array(events[0..<300]))
        expected[key(both)] = userGroundTruth([both])[key(both)]
        #expect(try await userTotals(world) == expected, "both-user holds the second batch only; nothing else lost or doubled")

        // Another writer adds late-user's row: the aggregator's insert of it meets it.
        try await world.postgres.query("""
            INSERT INTO user_totals_1d (tenant_id, day, user_id, requests, errors, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost_nanos)
            VALUES (\(late.tenantID!), \(day(late))::date, 'late-user', 5, 0, 7, 0, 0, 0, 0)
            """)
        #expect(try await core.process(Array(input[300...])).applied == 100)
        expected = userGroundTruth(events)
        expected[key(both)] = userGroundTruth([both])[key(both)]
        expected[key(late)] = zip(expected[key(late)]!, [5, 0, 7, 0, 0]).map { $0 + $1 }
        #expect(try await userTotals(world) == expected)
        await world.producer.shutdown()
        await world.postgres.close()
    }

    @Test("a batch that starts past the stored offset (fetched before a revocation or a seek) is not applied: the member seeks back, and nothing is lost")
    func staleFetch() async throws {
        let world = try await World.make()
        let core = world.core()
        try await world.assign(core)
        let events = (0..<20).map { i in
            LLMEvent(eventID: "\(world.run)-g\(i)", tenantID: world.tenant(0), timestamp: EventTimestamp(microsecondsSinceEpoch: world.base + Int64(i) * 1_000_000),
                     provider: "openai", model: "gpt-4o", inputTokens: 1, outputTokens: 1, latencyMs: 10, status: .ok, costNanos: 5)
        }
        let messages = events.enumerated().map { message($0.element, offset: Int64($0.offset), sourceOffset: Int64($0.offset), topic: world.topics.events) }
        _ = try await core.process(Array(messages[0..<5]))
        #expect(core.states[world.partition]?.nextOffset == 5)
        // Offsets 5...9 were fetched by another member, or before a seek took effect: this batch starts at 10.
        let stale = try await core.process(Array(messages[10..<20]))
        #expect(stale.applied == 0 && stale.fenced == [world.partition], "not applied; the caller seeks back")
        #expect(core.states[world.partition]?.nextOffset == 5)
        // After the seek, from the stored offset: every event counted once.
        let resumed = try await core.process(Array(messages[5..<20]))
        #expect(resumed.applied == 15)
        let total = try await rows(world, .minute).filter { $0.key.series == .total(world.tenant(0)) }.map(\.value.values.requests).reduce(0, +)
        #expect(total == 20)
        await world.producer.shutdown()
        await world.postgres.close()
    }

    @Test("late events within the allowed lateness update their window; later ones go to the DLQ as too_late")
    func lateness() async throws {
        let world = try await World.make()
        let core = world.core(lateness: .seconds(600))
        try await world.assign(core)
        func event(_ id: String, minutesAfterBase: Double) -> LLMEvent {
            LLMEvent(eventID: "\(world.run)-\(id)", tenantID: world.tenant(0), timestamp: EventTimestamp(microsecondsSinceEpoch: world.base + Int64(minutesAfterBase * 60_000_000)),
                     provider: "openai", model: "gpt-4o", inputTokens: 1, outputTokens: 1, latencyMs: 10, status: .ok, costNanos: 5)
        }
        let inOrder = [event("a", minutesAfterBase: 0.5), event("b", minutesAfterBase: 30)]
        let late = event("late", minutesAfterBase: 25)      // 5 minutes behind the watermark: applied
        let tooLate = event("too-late", minutesAfterBase: 10) // 20 minutes behind: dead letter
        let batch = (inOrder + [late, tooLate]).enumerated().map { message($0.element, offset: Int64($0.offset), sourceOffset: Int64($0.offset), topic: world.topics.events) }
        let summary = try await core.process(batch)
        #expect(summary.applied == 3 && summary.tooLate == 1)
        let minute = try await rows(world, .minute)
        #expect(minute[RollupKey(series: .total(world.tenant(0)), windowStart: world.base + 25 * 60_000_000)]?.values.requests == 1)
        #expect(minute[RollupKey(series: .total(world.tenant(0)), windowStart: world.base + 10 * 60_000_000)] == nil)
        let dead = try await readTopic(world.topics.deadLetters, count: 1)
        #expect(dead.first?.header(EventHeaders.reason) == Array("too_late".utf8))
        #expect(dead.first?.value == batch[3].value)
        let detail = String(decoding: dead.first?.header(EventHeaders.detail) ?? [], as: UTF8.self)
        #expect(detail.hasPrefix("timestamp: "))
        await world.producer.shutdown()
        await world.postgres.close()
    }

    @Test("closed windows are published once closed, and a late update publishes a corrected version")
    func emission() async throws {
        let world = try await World.make()
        let core = world.core()
        try await world.assign(core)
        let emitter = RollupEmitter(core: core)
        let events = workload(world, count: 60, seed: 3)
        _ = try await core.process(events.enumerated().map { message($0.element, offset: Int64($0.offset), sourceOffset: Int64($0.offset), topic: world.topics.events) })
        // Wall clock at base + 2 minutes: only windows ending by then (minus the 5 s delay) are closed; the data
        // watermark (base + ~3 min) closes the first two minutes.
        let closedFirst = try await emitter.emit(wallClock: EventTimestamp(microsecondsSinceEpoch: world.base))
        // Published: the levels with distributions (total, model, app, environment); the full key stays in Postgres.
        let expected = groundTruth(events, .minute).filter { $0.key.series.keepsDistributions }
        let closable = expected.keys.filter { $0.windowStart + 60_000_000 <= events.map(\.timestamp.microsecondsSinceEpoch).max()! - 5_000_000 }
        #expect(closedFirst == closable.count)
        let rest = try await emitter.emit(wallClock: .now())
        #expect(closedFirst + rest == expected.count)
        #expect(try await emitter.emit(wallClock: .now()) == 0, "nothing is published twice without a change")

        var published: [RollupKey: RollupRecord] = [:]
        for m in try await readTopic(world.topics.rollups, count: expected.count) {
            let record = try RollupRecord(json: m.value)
            #expect(m.key == Array(record.key.series.tenant.utf8))
            published[record.key] = record
        }
        expectEqual(published, expected)

        // A late event for the first minute: the window is published again, with a higher version.
        let late = LLMEvent(eventID: "\(world.run)-late", tenantID: world.tenant(0), timestamp: EventTimestamp(microsecondsSinceEpoch: world.base + 1), provider: "openai",
                            model: "gpt-4o", inputTokens: 1, outputTokens: 1, latencyMs: 1, status: .ok, costNanos: 1)
        _ = try await core.process([message(late, offset: 60, sourceOffset: 60, topic: world.topics.events)])
        let republished = SeriesKey.watchedLevels.count
        #expect(try await emitter.emit(wallClock: .now()) == republished, "the window at every published level: the tenant's total, the model, the app, the environment")
        let all = try await readTopic(world.topics.rollups, count: expected.count + republished)
        let corrected = all.compactMap { try? RollupRecord(json: $0.value) }.filter { $0.key == RollupKey(series: .total(world.tenant(0)), windowStart: world.base) }
        #expect(corrected.count == 2)
        #expect(corrected.map(\.version).max()! > corrected.map(\.version).min()!)
        #expect(corrected.max { $0.version < $1.version }!.values.requests == (expected[RollupKey(series: .total(world.tenant(0)), windowStart: world.base)]?.requests ?? 0) + 1)
        await world.producer.shutdown()
        await world.postgres.close()
    }
}
