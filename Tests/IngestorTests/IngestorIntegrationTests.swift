import Events
import Foundation
import IngestorCore
import Kafka
import Logging
import Postgres
import Redis
import ServiceKit
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

let logger = Logger(label: "ingestor-tests")

/// A raw event as a producer would write it.
func rawEvent(_ id: String, tenant: String? = "acme", model: String = "gpt-4o", input: Int = 1000, output: Int = 100, cost: String? = nil, extra: String = "") -> [UInt8] {
    let ts = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch - 30_000_000).rfc3339
    var fields = ["\"event_id\":\"\(id)\"", "\"timestamp\":\"\(ts)\"", "\"provider\":\"OpenAI\"", "\"model\":\"\(model)\"",
                  "\"input_tokens\":\(input)", "\"output_tokens\":\(output)", "\"latency_ms\":250", "\"status\":\"ok\""]
    if let tenant { fields.append("\"tenant_id\":\"\(tenant)\"") }
    if let cost { fields.append("\"cost_usd\":\(cost)") }
    if !extra.isEmpty { fields.append(extra) }
    return Array(("{" + fields.joined(separator: ",") + "}").utf8)
}

func raw(_ value: [UInt8], offset: Int64, partition: Int32 = 0, topic: String = "raw") -> KafkaMessage {
    KafkaMessage(topic: topic, partition: partition, offset: offset, key: Array("acme".utf8), value: value)
}

func makeClients() async throws -> (KafkaProducer, RedisClient, PostgresClient) {
    let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
    let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: logger)
    let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
    try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
    return (producer, redis, postgres)
}

@Suite("Ingestor against the local stack", .serialized, .timeLimit(.minutes(5)))
struct IngestorIntegrationTests {
    @Test("a batch becomes priced events and dead letters, offsets only after acks; client retries dropped, replays redone")
    func pipeline() async throws {
        let (producer, redis, postgres) = try await makeClients()
        var topics = Topics()
        topics.events = TestEnvironment.unique("events")
        topics.deadLetters = TestEnvironment.unique("dlq")
        try MockBrokerControl.createTopic(topics.events, partitions: 2)
        try MockBrokerControl.createTopic(topics.deadLetters, partitions: 1)
        let prices = try await PriceTable.load(from: postgres)
        let run = TestEnvironment.unique("r")
        // Tenants as Postgres holds them: acme active, one disabled; the registry starts empty and resolves them.
        try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING")
        try await postgres.query("INSERT INTO tenants (tenant_id, name, disabled) VALUES (\(run + "-off"), 'Off', true)")
        let pipeline = IngestPipeline(
            configuration: .init(topics: topics), producer: producer,
            deduplicator: Deduplicator(redis: redis, ttlSeconds: 600), prices: prices, tenants: TenantRegistry(postgres: postgres), logger: logger)
        let batch = [
            raw(rawEvent("\(run)-1"), offset: 10),                                       // priced from the table
            raw(rawEvent("\(run)-2", cost: "0.5"), offset: 11),                          // the client's cost kept
            raw(rawEvent("\(run)-3", model: "brand-new-model"), offset: 12),             // unknown: priced 0, flagged
            raw(rawEvent("\(run)-4", input: -5), offset: 13),                             // invalid
            raw(rawEvent("\(run)-5", tenant: nil), offset: 14),                           // no tenant
            raw(rawEvent("\(run)-1"), offset: 15),                                        // client retry of #1
            raw(Array("not json".utf8), offset: 16),                                      // garbage
            raw(rawEvent("\(run)-6", tenant: "\(run)-nobody"), offset: 17),               // unknown tenant
            raw(rawEvent("\(run)-7", tenant: "\(run)-off"), offset: 18),                  // disabled tenant
        ]
        let (summary, commit) = try await pipeline.process(batch)
        #expect(summary == .init(accepted: 3, replayed: 0, duplicates: 1, rejected: 5, unpriced: 1))
        #expect(commit == [KafkaTopicPartition(topic: "raw", partition: 0): 19])

        let events = try await readTopic(topics.events, count: 3)
        #expect(events.count == 3)
        let decoded = try events.map { try EventDecoder().decode($0.value) }
        let byID = Dictionary(uniqueKeysWithValues: zip(decoded.map(\.eventID), events))
        let eventsByID = Dictionary(uniqueKeysWithValues: decoded.map { ($0.eventID, $0) })
        // 1000 input + 100 output tokens of gpt-4o at 2.50 / 10.00 USD per Mtok = 2500 + 1000 micro-dollars ($0.0035).
        #expect(eventsByID["\(run)-1"]?.costNanos == 3_500_000)
        #expect(eventsByID["\(run)-1"]?.provider == "openai", "normalized")
        #expect(byID["\(run)-1"]?.header(EventHeaders.costSource) == Array("price_table".utf8))
        #expect(byID["\(run)-1"]?.header(EventHeaders.sourceOffset) == Array("10".utf8))
        #expect(byID["\(run)-1"]?.header(EventHeaders.sourcePartition) == Array("0".utf8))
        #expect(byID["\(run)-1"]?.key == Array("acme".utf8))
        #expect(eventsByID["\(run)-2"]?.costNanos == 500_000_000)
        #expect(byID["\(run)-2"]?.header(EventHeaders.costSource) == Array("client".utf8))
        #expect(eventsByID["\(run)-3"]?.costNanos == 0)
        #expect(byID["\(run)-3"]?.header(EventHeaders.unpriced) == Array("1".utf8))

        let dead = try await readTopic(topics.deadLetters, count: 5)
        let reasons = Dictionary(uniqueKeysWithValues: dead.map { (String(decoding: $0.header(EventHeaders.sourceOffset)!, as: UTF8.self), $0) })
        #expect(reasons["13"]?.header(EventHeaders.reason) == Array("invalid_event".utf8))
        #expect(reasons["13"].map { String(decoding: $0.header(EventHeaders.detail)!, as: UTF8.self) } == "input_tokens: must be >= 0, got -5")
        #expect(reasons["13"]?.value == batch[3].value, "the input as received")
        #expect(reasons["14"]?.header(EventHeaders.reason) == Array("missing_tenant".utf8))
        #expect(reasons["16"]?.header(EventHeaders.reason) == Array("invalid_event".utf8))
        #expect(reasons["17"]?.header(EventHeaders.reason) == Array("unknown_tenant".utf8))
        #expect(reasons["18"]?.header(EventHeaders.reason) == Array("tenant_disabled".utf8))
        #expect(reasons["18"]?.value == batch[8].value)

        // The same batch again (a crash before the commit): the accepted ones are replays and produced again; the
        // client retry is still a duplicate.
        let (again, _) = try await pipeline.process(batch)
        #expect(again == .init(accepted: 0, replayed: 3, duplicates: 1, rejected: 5, unpriced: 1))
        await producer.shutdown()
        await redis.close()
        await postgres.close()
    }

    @Test("dedupe verdicts: first, replay at the same offset, duplicate elsewhere, tenants apart")
    func dedupe() async throws {
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: logger)
        let d = Deduplicator(redis: redis, ttlSeconds: 60)
        let id = TestEnvironment.unique("e")
        let items = [
            Deduplicator.Item(tenant: "a", eventID: id, partition: 1, offset: 5),
            Deduplicator.Item(tenant: "a", eventID: id, partition: 1, offset: 9),
            Deduplicator.Item(tenant: "b", eventID: id, partition: 1, offset: 9),
        ]
        #expect(try await d.classify(items) == [.first, .duplicate, .first])
        #expect(try await d.classify([items[0]]) == [.replay])
        #expect(try await d.classify([items[2]]) == [.replay])
        let ttl = try await redis.command("TTL", "tw:dedupe:v1:a:\(id)").int ?? -1
        #expect(ttl > 0 && ttl <= 60)
        await redis.close()
    }

    @Test("the ingestor service turns events produced to the raw topic directly into llm.events.v1 and commits them")
    func directProducers() async throws {
        let run = TestEnvironment.unique("d")
        let rawTopic = "\(run)-raw", eventsTopic = "\(run)-events", dlqTopic = "\(run)-dlq"
        try MockBrokerControl.createTopic(rawTopic, partitions: 4)
        try MockBrokerControl.createTopic(eventsTopic, partitions: 4)
        try MockBrokerControl.createTopic(dlqTopic, partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try TestEnvironment.kafkaBrokers())), logger: logger)
        let tenants = ["t-a", "t-b", "t-c"]
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        for tenant in tenants { try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), \(tenant)) ON CONFLICT DO NOTHING") }
        await postgres.close()
        try await producer.sendAll((0..<300).map { i in
            let tenant = tenants[i % 3]
            return KafkaProducerMessage(topic: rawTopic, key: Array(tenant.utf8), value: rawEvent("\(run)-\(i)", tenant: tenant))
        } + [KafkaProducerMessage(topic: rawTopic, key: nil, value: Array("{}".utf8))])

        let env = ["TW_TOPIC_RAW": rawTopic, "TW_TOPIC_EVENTS": eventsTopic, "TW_TOPIC_DLQ": dlqTopic, "TW_GROUP_PREFIX": run]
        let first = try ServiceProcess("ingestor", environment: env)
        try await first.waitUntilReady()
        let events = try await readTopic(eventsTopic, count: 300)
        #expect(Set(events.map { try! EventDecoder().decode($0.value).eventID }).count == 300)
        for message in events {
            let event = try EventDecoder().decode(message.value)
            #expect(message.key == Array(event.tenantID!.utf8), "keyed by tenant")
        }
        let dead = try await readTopic(dlqTopic, count: 1)
        #expect(dead.first?.header(EventHeaders.detail) == Array("event_id: required".utf8))
        #expect(try first.stop() == 0)

        // Committed: a restarted ingestor in the same group produces nothing more.
        try await producer.sendAll([KafkaProducerMessage(topic: rawTopic, key: Array("t-a".utf8), value: rawEvent("\(run)-last", tenant: "t-a"))])
        let second = try ServiceProcess("ingestor", environment: env)
        try await second.waitUntilReady()
        let after = try await readTopic(eventsTopic, count: 301)
        #expect(after.count == 301)
        #expect(try second.stop() == 0)
        await producer.shutdown()
    }

    @Test("cost policy per tenant: a client's 0 for a priced call does not win by default; each event records where its cost came from")
    func costPolicy() async throws {
        let (producer, redis, postgres) = try await makeClients()
        var topics = Topics()
        topics.events = TestEnvironment.unique("events")
        topics.deadLetters = TestEnvironment.unique("dlq")
        try MockBrokerControl.createTopic(topics.events, partitions: 1)
        try MockBrokerControl.createTopic(topics.deadLetters, partitions: 1)
        let run = TestEnvironment.unique("cp")
        let tenants = ["\(run)-default": nil, "\(run)-client": "client", "\(run)-table": "price_table"]
        for (tenant, policy) in tenants {
            try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'x')")
            if let policy { try await postgres.query("UPDATE tenants SET cost_policy = \(policy) WHERE tenant_id = \(tenant)") }
        }
        let pipeline = IngestPipeline(
            configuration: .init(topics: topics), producer: producer, deduplicator: Deduplicator(redis: redis, ttlSeconds: 600),
            prices: try await PriceTable.load(from: postgres), tenants: TenantRegistry(postgres: postgres), logger: logger)
        // Per tenant: openlit's 0 for gpt-4o with tokens; a client cost of $0.5; a 0 with no tokens; a 0 for a model
        // the table does not know. gpt-4o, 1000 in + 100 out = $0.0035 = 3,500,000 nano-dollars by the table.
        var batch: [KafkaMessage] = []
        for (n, tenant) in tenants.keys.sorted().enumerated() {
            let base = Int64(n * 10)
            batch += [raw(rawEvent("\(tenant)-zero", tenant: tenant, cost: "0"), offset: base),
                      raw(rawEvent("\(tenant)-half", tenant: tenant, cost: "0.5"), offset: base + 1),
                      raw(rawEvent("\(tenant)-none", tenant: tenant, input: 0, output: 0, cost: "0"), offset: base + 2),
                      raw(rawEvent("\(tenant)-new", tenant: tenant, model: "brand-new-model", cost: "0"), offset: base + 3)]
        }
        _ = try await pipeline.process(batch)
        let events = try await readTopic(topics.events, count: batch.count)
        var got: [String: (Int64?, String)] = [:]
        for message in events {
            let e = try EventDecoder().decode(message.value)
            got[e.eventID] = (e.costNanos, String(decoding: message.header(EventHeaders.costSource) ?? [], as: UTF8.self))
        }
        let expected: [String: [String: (Int64, String)]] = [
            "default": ["zero": (3_500_000, "price_table_over_client_zero"), "half": (500_000_000, "client"), "none": (0, "client"), "new": (0, "client")],
            "client": ["zero": (0, "client"), "half": (500_000_000, "client"), "none": (0, "client"), "new": (0, "client")],
            "table": ["zero": (3_500_000, "price_table_over_client"), "half": (3_500_000, "price_table_over_client"), "none": (0, "price_table_over_client"), "new": (0, "client")],
        ]
        for (policy, cases) in expected {
            for (name, (nanos, source)) in cases {
                let id = "\(run)-\(policy)-\(name)"
                #expect(got[id]?.0 == nanos && got[id]?.1 == source, "\(id): \(String(describing: got[id]))")
            }
        }
        await producer.shutdown()
    }

    @Test("cardinality cap: a tenant's first N apps and environments are kept, later ones become 'other'; a second replica (or a replay) maps each event the same way; other tenants are apart")
    func dimensionCap() async throws {
        let (producer, redis, postgres) = try await makeClients()
        var topics = Topics()
        topics.events = TestEnvironment.unique("events")
        topics.deadLetters = TestEnvironment.unique("dlq")
        try MockBrokerControl.createTopic(topics.events, partitions: 1)
        try MockBrokerControl.createTopic(topics.deadLetters, partitions: 1)
        let run = TestEnvironment.unique("cap")
        let (a, b) = ("\(run)-a", "\(run)-b")
        for tenant in [a, b] { try await postgres.query("INSERT INTO tenants (tenant_id, name) VALUES (\(tenant), 'x')") }
        func pipeline() -> IngestPipeline {
            IngestPipeline(configuration: .init(topics: topics), producer: producer, deduplicator: Deduplicator(redis: redis, ttlSeconds: 600),
                           prices: PriceTable(), tenants: TenantRegistry(postgres: postgres), dimensions: DimensionRegistry(postgres: postgres, cap: 2), logger: logger)
        }
        func event(_ id: String, _ tenant: String, app: String?, env: String? = nil) -> [UInt8] {
            var extra: [String] = []
            if let app { extra.append("\"app\":\"\(app)\"") }
            if let env { extra.append("\"environment\":\"\(env)\"") }
            return rawEvent("\(run)-\(id)", tenant: tenant, extra: extra.joined(separator: ","))
        }
        // Tenant a: apps search, chat, then billing (over the cap of 2), search again, one without an app; three
        // environments. Tenant b: its own two apps, unaffected by a's.
        let first = [event("1", a, app: "search", env: "prod"), event("2", a, app: "chat", env: "staging"), event("3", a, app: "billing", env: "dev"),
                     event("4", a, app: "search"), event("5", a, app: nil), event("6", b, app: "x"), event("7", b, app: "billing")]
        _ = try await pipeline().process(first.enumerated().map { raw($0.element, offset: Int64($0.offset)) })
        // Another replica, from nothing in memory: a new app beyond the cap and known ones.
        let second = [event("8", a, app: "reports"), event("9", a, app: "chat", env: "prod")]
        _ = try await pipeline().process(second.enumerated().map { raw($0.element, offset: Int64(100 + $0.offset)) })
        var got: [String: (String?, String?)] = [:]
        for message in try await readTopic(topics.events, count: first.count + second.count) {
            let e = try EventDecoder().decode(message.value)
            got[String(e.eventID.dropFirst(run.count + 1))] = (e.app, e.environment)
        }
        #expect(got["1"]! == ("search", "prod") && got["2"]! == ("chat", "staging"))
        #expect(got["3"]! == ("other", "other"), "the third app and environment of a tenant")
        #expect(got["4"]! == ("search", nil) && got["5"]! == (nil, nil))
        #expect(got["6"]! == ("x", nil) && got["7"]! == ("billing", nil), "tenant b has its own cap")
        #expect(got["8"]!.0 == "other" && got["9"]! == ("chat", "prod"))
        let stored = try await postgres.query("SELECT count(*)::bigint AS n FROM dimension_values WHERE tenant_id = \(a) AND dimension = 'app'")[0].decode("n", as: Int64.self)
        #expect(stored == 2)
        await producer.shutdown()
    }

    @Test("replicas admitting a tenant's new values at once never exceed the cap: one batch's values of several dimensions and tags are admitted in order, the rest are other, and every replica maps each value as stored")
    func dimensionCapRacingReplicas() async throws {
        let (producer, _, postgres) = try await makeClients()
        // Each replica with its own connections, opened before the race (as two ingestor processes have them).
        let clients = (0..<2).map { _ in PostgresClient(configuration: PostgresConfiguration(url: try! TestEnvironment.postgresURL()), logger: logger) }
        for c in clients { _ = try await c.query("SELECT 1") }
        let cap = 4
        let orders = [Array(0..<10), Array((0..<10).reversed())]
        for round in 0..<5 {
            let tenant = TestEnvironment.unique("race\(round)")
            func events(_ order: [Int]) -> ([LLMEvent], [[String: String]]) {
                let events = order.map { i in
                    LLMEvent(eventID: "e\(i)", tenantID: tenant, timestamp: EventTimestamp(microsecondsSinceEpoch: 0), provider: "p", model: "m",
                             inputTokens: 1, outputTokens: 1, latencyMs: 1, status: .ok, app: "app-\(i)", environment: "env-\(i % 3)")
                }
                return (events, order.map { ["feature": "f-\(9 - $0)"] })
            }
            // Two replicas, each from nothing in memory, with the same ten new apps and tag values in opposite orders.
            let replicas = clients.map { DimensionRegistry(postgres: $0, cap: cap) }
            let outputs = try await withThrowingTaskGroup(of: (Int, [LLMEvent], [[String: String]]).self) { group in
                for r in 0..<2 {
                    group.addTask {
                        let (e, p) = events(orders[r])
                        let out = try await replicas[r].apply(e, promoted: p)
                        return (r, out.events, out.promoted)
                    }
                }
                var all: [Int: ([LLMEvent], [[String: String]])] = [:]
                for try await (r, e, p) in group { all[r] = (e, p) }
                return all
            }
            func stored(_ dimension: String) async throws -> Set<String> {
                Set(try await postgres.query("SELECT value FROM dimension_values WHERE tenant_id = \(tenant) AND dimension = \(dimension)").map { try $0.decode("value", as: String.self) })
            }
            let (apps, environments, features) = (try await stored("app"), try await stored("environment"), try await stored("tag:feature"))
            #expect(apps.count == cap && features.count == cap, "no more than the cap, though two replicas admitted at once: \(apps.sorted()), \(features.sorted())")
            #expect(environments == ["env-0", "env-1", "env-2"], "three values, under the cap, all admitted")
            // Whichever replica took the locks first admitted its batch's first values, in its order.
            #expect(orders.map { Set($0.prefix(cap).map { "app-\($0)" }) }.contains(apps), "\(apps.sorted())")
            for r in 0..<2 {
                let (e, p) = outputs[r]!
                for (i, event) in e.enumerated() {
                    let sent = "app-\(orders[r][i])", tag = "f-\(9 - orders[r][i])"
                    #expect(event.app == (apps.contains(sent) ? sent : "other"), "replica \(r): \(sent)")
                    #expect(p[i]["feature"] == (features.contains(tag) ? tag : "other"), "replica \(r): \(tag)")
                }
            }
        }
        for c in clients { await c.close() }
        await producer.shutdown()
    }
}
