import Codecs
import Events
import Foundation
import GatewayCore
import Hummingbird
import HummingbirdTesting
import Kafka
import Notify
import Logging
import Postgres
import Redis
import Rollups
import ServiceKit
import Testing
import TestSupport

let logger = Logger(label: "gateway-tests")
let adminToken = "test-admin-token-0123456789"

struct Gateway {
    let app: Application<RouterResponder<BasicRequestContext>>
    let topics: Topics
    let keys: ApiKeyStore
    let producer: KafkaProducer
    let postgres: PostgresClient

    static func make(settings: GatewaySettings = GatewaySettings(), brokers: String? = nil, rateLimits: RateLimiter.Configuration? = nil, keyCacheTTL: Int = 30, keyLookupsPerSecond: Int = 200) async throws -> Gateway {
        let postgres = PostgresClient(configuration: PostgresConfiguration(url: try TestEnvironment.postgresURL()), logger: logger)
        try await PostgresMigrator(migrations: TokenwatchSchema.migrations).migrate(postgres)
        let redis = RedisClient(configuration: try RedisConfiguration(url: try TestEnvironment.redisURL()), logger: logger)
        var producerConfig = KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: try brokers ?? TestEnvironment.kafkaBrokers()))
        producerConfig.messageTimeoutMilliseconds = 2000
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        var topics = Topics()
        topics.raw = TestEnvironment.unique("raw")
        if brokers == nil { try MockBrokerControl.createTopic(topics.raw, partitions: 2) }
        var settings = settings
        settings.adminToken = adminToken
        let keys = ApiKeyStore(postgres: postgres, redis: redis, cacheTTLSeconds: keyCacheTTL, lookupsPerSecond: keyLookupsPerSecond)
        let limiter = rateLimits.map { RateLimiter(redis: redis, configuration: $0, logger: logger) }
        let access = TenantAccess(keys: keys, limiter: limiter, postgres: postgres)
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: RequestLimitsMiddleware(maxHeaderBytes: settings.maxHeaderBytes, maxURLBytes: settings.maxURLBytes, maxBodyBytes: settings.maxBodyBytes))
        let publisher = EventPublisher(access: access, producer: producer, logger: logger)
        IngestRoutes(access: access, publisher: publisher, topics: topics, settings: settings).add(to: router)
        OTLPRoutes(access: access, publisher: publisher, topics: topics, settings: settings, logger: logger).add(to: router)
        AdminRoutes(keys: keys, access: access, adminToken: settings.adminToken).add(to: router)
        QueryRoutes(access: access, readModel: ReadModel(redis: redis)).add(to: router)
        DetectorSettingsRoutes(access: access).add(to: router)
        DeadLetterRoutes(access: access).add(to: router)
        ChannelRoutes(access: access, policy: EgressPolicy(allowHTTP: true, allowedNetworks: [Network("127.0.0.0/8")!])).add(to: router)
        OpenAPIDocument.add(to: router)
        return Gateway(app: Application(router: router), topics: topics, keys: keys, producer: producer, postgres: postgres)
    }
}

func event(_ id: String, tenant: String = "someone-else", input: Int = 10) -> String {
    let ts = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch - 10_000_000).rfc3339
    return "{\"event_id\":\"\(id)\",\"tenant_id\":\"\(tenant)\",\"timestamp\":\"\(ts)\",\"provider\":\"openai\",\"model\":\"gpt-4o\",\"input_tokens\":\(input),\"output_tokens\":5,\"latency_ms\":120,\"status\":\"ok\"}"
}

func json(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(Array(buffer: buffer)))) as? [String: Any] ?? [:]
}

func expectProblem(_ body: ByteBuffer, headers: HTTPFields, status: HTTPResponse.Status, type: String, _ client: some TestClientProtocol) async throws {
    try await client.execute(uri: "/v1/events", method: .post, headers: headers, body: body) { response in
        #expect(response.status == status, "\(type)")
        #expect(response.headers[.contentType] == "application/problem+json")
        #expect(json(response.body)["type"] as? String == Problem.typeBase + type)
        #expect(json(response.body)["status"] as? Int == Int(status.code))
    }
}

@Suite("Gateway API", .serialized, .timeLimit(.minutes(3)))
struct GatewayTests {
    @Test("the admin API creates a tenant with a key; events are accepted for that tenant only after the broker acked them")
    func ingest() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("tenant")
        try await gateway.app.test(.router) { client in
            try await client.execute(uri: "/v1/admin/tenants", method: .post, body: ByteBuffer(string: "{\"tenant_id\":\"\(tenant)\"}")) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            let apiKey = try await client.execute(uri: "/v1/admin/tenants", method: .post, headers: [.authorization: "Bearer \(adminToken)"], body: ByteBuffer(string: "{\"tenant_id\":\"\(tenant)\",\"name\":\"T\"}")) { response in
                #expect(response.status == .created)
                return json(response.body)["api_key"] as? String ?? ""
            }
            #expect(apiKey.hasPrefix("tw_") && apiKey.count == 3 + 16 + 1 + 64)
            try await client.execute(uri: "/v1/admin/tenants", method: .post, headers: [.authorization: "Bearer \(adminToken)"], body: ByteBuffer(string: "{\"tenant_id\":\"\(tenant)\"}")) { response in
                #expect(response.status == .conflict)
            }
            let run = TestEnvironment.unique("e")
            let body = "[\(event("\(run)-1")),\(event("\(run)-2")),\(event("\(run)-3", input: -1)),\(event("\(run)-4"))]"
            try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(apiKey)", .contentType: "application/json"], body: ByteBuffer(string: body)) { response in
                #expect(response.status == .accepted)
                let result = json(response.body)
                #expect(result["accepted"] as? Int == 3 && result["rejected"] as? Int == 1)
                let errors = result["errors"] as? [[String: Any]]
                #expect(errors?.first?["index"] as? Int == 2)
                #expect(errors?.first?["field"] as? String == "input_tokens")
                #expect(errors?.first?["reason"] as? String == "must be >= 0, got -1")
            }
            // NDJSON, gzipped.
            let ndjson = Gzip.compress(Array("\(event("\(run)-5"))\n\n\(event("\(run)-6"))\n".utf8))
            try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(apiKey)", .contentType: "application/x-ndjson", .contentEncoding: "gzip"], body: ByteBuffer(bytes: ndjson)) { response in
                #expect(response.status == .accepted)
                #expect(json(response.body)["accepted"] as? Int == 2)
            }
            // Two gzip members back to back (`cat a.gz b.gz`): both are read (issue 18: the second was dropped).
            let members = Gzip.compress(Array("\(event("\(run)-7"))\n".utf8)) + Gzip.compress(Array("\(event("\(run)-8"))\n".utf8))
            try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(apiKey)", .contentType: "application/x-ndjson", .contentEncoding: "gzip"], body: ByteBuffer(bytes: members)) { response in
                #expect(response.status == .accepted)
                #expect(json(response.body)["accepted"] as? Int == 2)
            }
            // Bytes after the last member that start no member are refused, not ignored.
            let trailing = Gzip.compress(Array("\(event("\(run)-9"))\n".utf8)) + Array("garbage".utf8)
            try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(apiKey)", .contentType: "application/x-ndjson", .contentEncoding: "gzip"], body: ByteBuffer(bytes: trailing)) { response in
                #expect(response.status == .badRequest)
                #expect((json(response.body)["detail"] as? String)?.contains("trailing data") == true)
            }
        }
        let produced = try await readTopic(gateway.topics.raw, count: 7)
        #expect(produced.count == 7)
        for message in produced {
            let e = try EventDecoder().decode(message.value)
            #expect(e.tenantID == tenant, "the tenant comes from the key, not the body")
            #expect(message.key == Array(tenant.utf8))
        }
        await gateway.producer.shutdown()
    }

    @Test("bad requests get problem+json with the right status and a stable type")
    func badRequests() async throws {
        var settings = GatewaySettings()
        settings.maxBodyBytes = 64 * 1024
        settings.maxDecompressedBytes = 256 * 1024
        settings.maxBatchEvents = 10
        let gateway = try await Gateway.make(settings: settings)
        let apiKey = try await gateway.keys.createTenant(id: TestEnvironment.unique("tenant"), name: "x").key
        let auth: HTTPFields = [.authorization: "Bearer \(apiKey)", .contentType: "application/json"]
        try await gateway.app.test(.router) { client in
            try await expectProblem(ByteBuffer(string: "[]"), headers: [.contentType: "application/json"], status: .unauthorized, type: "unauthorized", client)
            try await expectProblem(ByteBuffer(string: "[]"), headers: [.authorization: "Bearer tw_0000000000000000_\(String(repeating: "0", count: 64))", .contentType: "application/json"], status: .unauthorized, type: "unauthorized", client)
            try await expectProblem(ByteBuffer(string: "[]"), headers: [.authorization: "Bearer \(apiKey)x", .contentType: "application/json"], status: .unauthorized, type: "unauthorized", client)
            try await expectProblem(ByteBuffer(string: "[]"), headers: auth, status: .badRequest, type: "empty_batch", client)
            try await expectProblem(ByteBuffer(string: "[{]"), headers: auth, status: .badRequest, type: "invalid_body", client)
            try await expectProblem(ByteBuffer(string: "[\(event("a", input: -1))]"), headers: auth, status: .badRequest, type: "invalid_events", client)
            try await expectProblem(ByteBuffer(string: "x"), headers: [.authorization: "Bearer \(apiKey)", .contentType: "text/plain"], status: .unsupportedMediaType, type: "unsupported_media_type", client)
            try await expectProblem(ByteBuffer(string: "[" + (0..<11).map { event("e\($0)") }.joined(separator: ",") + "]"), headers: auth, status: .contentTooLarge, type: "batch_too_large", client)
            try await expectProblem(ByteBuffer(string: "[" + String(repeating: " ", count: 70 * 1024) + "]"), headers: auth, status: .contentTooLarge, type: "payload_too_large", client)
            // A gzip bomb: 10 MB of zeros compress to ~10 KB.
            var bombHeaders = auth
            bombHeaders[.contentEncoding] = "gzip"
            try await expectProblem(ByteBuffer(bytes: Gzip.compress([UInt8](repeating: 0x20, count: 10 * 1024 * 1024))), headers: bombHeaders, status: .contentTooLarge, type: "payload_too_large", client)
            try await expectProblem(ByteBuffer(bytes: [0x1f, 0x8b, 0, 1, 2]), headers: bombHeaders, status: .badRequest, type: "invalid_body", client)
            bombHeaders[.contentEncoding] = "br"
            try await expectProblem(ByteBuffer(string: "[]"), headers: bombHeaders, status: .unsupportedMediaType, type: "unsupported_encoding", client)
        }
        await gateway.producer.shutdown()
    }

    @Test("when the broker cannot take the batch the answer is 503 with Retry-After")
    func brokerUnavailable() async throws {
        // A producer whose broker does not exist: nothing can be acknowledged.
        let gateway = try await Gateway.make(brokers: "127.0.0.1:1")
        let apiKey = try await gateway.keys.createTenant(id: TestEnvironment.unique("tenant"), name: "x").key
        try await gateway.app.test(.router) { client in
            try await client.execute(uri: "/v1/events", method: .post, headers: [.authorization: "Bearer \(apiKey)", .contentType: "application/json"], body: ByteBuffer(string: "[\(event("a"))]")) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] == "5")
                #expect(json(response.body)["type"] as? String == Problem.typeBase + "broker_unavailable")
            }
        }
        await gateway.producer.shutdown()
    }

    @Test("the OpenAPI document is valid JSON and describes every route")
    func openAPI() async throws {
        let gateway = try await Gateway.make()
        try await gateway.app.test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                let doc = json(response.body)
                #expect(doc["openapi"] as? String == "3.1.0")
                let paths = (doc["paths"] as? [String: Any]).map { Set($0.keys) } ?? []
                #expect(paths == Set(OpenAPIDocument.paths))
            }
        }
        await gateway.producer.shutdown()
    }
}
