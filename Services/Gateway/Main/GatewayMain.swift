import Events
import Foundation
import GatewayCore
import Hummingbird
import Kafka
import Notify
import Postgres
import Redis
import Rollups
import ServiceKit

/// The HTTP front door: `POST /v1/events` into llm.events.raw.v1, the query API, the admin bootstrap API and the
/// OpenAPI document.
@main
struct GatewayMain {
    static func main() async {
        // glibc raises its mmap threshold each time a large block is freed (up to 32 MB); after that, the 20 MB of
        // an inflated body come from the heap and stay resident once freed. A fixed 1 MB threshold hands every large
        // body back to the system when it is freed.
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD, malloc.h */, 1 << 20)
        await ServiceRunner.main(service: "gateway", defaultPort: 8080) { runtime in
            let settings = try GatewaySettings(environment: Environment())
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            // A request waits for the broker's acknowledgement: give up after 10 s (503, retry) rather than hold it
            // for librdkafka's default 30 s.
            var producerConfig = KafkaProducerConfiguration(client: runtime.configuration.kafka)
            producerConfig.messageTimeoutMilliseconds = 10_000
            let producer = try KafkaProducer(configuration: producerConfig, logger: runtime.logger)
            let keys = ApiKeyStore(postgres: postgres, redis: redis, cacheTTLSeconds: Int(settings.keyCacheTTL.components.seconds), lookupsPerSecond: settings.authLookupsPerSecond)
            let limiter = RateLimiter(redis: redis, configuration: settings.rateLimits, logger: runtime.logger)
            let access = TenantAccess(keys: keys, limiter: limiter, postgres: postgres, work: TenantWork(workers: settings.decodeWorkers, maxWaiting: settings.tenantMaxWaiting))
            let publisher = EventPublisher(access: access, producer: producer, logger: runtime.logger)
            let ingest = IngestRoutes(access: access, publisher: publisher, topics: runtime.configuration.topics, settings: settings)
            let otlp = OTLPRoutes(access: access, publisher: publisher, topics: runtime.configuration.topics, settings: settings, logger: runtime.logger)
            let admin = AdminRoutes(keys: keys, access: access, adminToken: settings.adminToken)
            let queries = QueryRoutes(access: access, readModel: ReadModel(redis: redis))
            let channels = ChannelRoutes(access: access, policy: try EgressPolicy(environment: ProcessInfo.processInfo.environment))
            // Live anomaly streams: every replica reads the whole anomalies topic, from the newest message, in a
            // consumer group of its own (nothing is committed).
            let broadcaster = AnomalyBroadcaster()
            var feedConfig = KafkaConsumerConfiguration(client: runtime.configuration.kafka, groupID: "\(runtime.configuration.consumerGroup)-stream-\(UUID().uuidString.prefix(8))")
            feedConfig.autoOffsetReset = "latest"
            let feed = AnomalyFeed(consumer: try KafkaConsumer(configuration: feedConfig, logger: runtime.logger), topic: runtime.configuration.topics.anomalies, broadcaster: broadcaster, logger: runtime.logger)
            return ServiceParts(
                services: [producer, feed],
                // Reported, not gating: the gateway answers for a missing dependency itself (ingest 503 with
                // Retry-After, queries from the other store), so losing one must not empty every gateway's Service.
                readinessChecks: Array.dependencies(kafka: { await producer.brokersReachable() }, redis: redis, postgres: postgres),
                http: settings.http,
                routes: { router in
                    // Request counts, errors and durations per route and status (hb_requests_total, ...).
                    router.add(middleware: MetricsMiddleware())
                    if settings.accessLog { router.add(middleware: AccessLogMiddleware()) }
                    router.add(middleware: ProblemMiddleware())
                    router.add(middleware: RequestLimitsMiddleware(maxHeaderBytes: settings.maxHeaderBytes, maxURLBytes: settings.maxURLBytes, maxBodyBytes: settings.maxBodyBytes))
                    ingest.add(to: router)
                    otlp.add(to: router)
                    admin.add(to: router)
                    queries.add(to: router)
                    DetectorSettingsRoutes(access: access).add(to: router)
                    DeadLetterRoutes(access: access).add(to: router)
                    channels.add(to: router)
                    AnomalyStreamRoutes(access: access, broadcaster: broadcaster).add(to: router)
                    OpenAPIDocument.add(to: router)
                    DashboardRoutes().add(to: router)
                })
        }
    }
}

/// glibc's `mallopt` (malloc.h is not in Swift's Glibc module).
@_silgen_name("mallopt")
func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
