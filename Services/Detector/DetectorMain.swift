import Kafka
import Events
import Postgres
import Redis
import ServiceKit

/// The detector scores closed windows into llm.anomalies.v1. This skeleton joins its consumer group and reads its input without committing anything
/// (so no event is marked done before the real stage processes it), serving the operations endpoints.
@main
struct DetectorMain {
    static func main() async {
        await ServiceRunner.main(service: "detector", defaultPort: 8083) { runtime in
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            let consumer = try runtime.makeConsumer(group: "tokenwatch-detector")
            let loop = ConsumerService(consumer: consumer, topics: [runtime.configuration.topics.rollups], logger: runtime.logger) { _ in }
            return ServiceParts(
                services: [loop],
                readinessChecks: [
                    ReadinessCheck("kafka") { await consumer.brokersReachable() },
                    ReadinessCheck("redis") { await redis.ping() },
                    ReadinessCheck("postgres") { await postgres.ping() },
                ])
        }
    }
}
