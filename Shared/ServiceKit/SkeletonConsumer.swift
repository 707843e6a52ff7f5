import Events
import Kafka
import Postgres
import Redis

extension ServiceRunner {
    /// The stand-in for a consumer stage whose real work has not landed yet: it applies migrations, joins the
    /// `<prefix>-<service>` group on its input topic and reads it without committing anything, so no event is marked
    /// done before the real stage processes it; it serves /healthz, /readyz and /metrics like the real one will.
    public static func skeletonConsumer(service: String, defaultPort: Int, input: any KeyPath<Topics, String> & Sendable) async {
        await ServiceRunner.main(service: service, defaultPort: defaultPort) { runtime in
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            let consumer = try runtime.makeConsumer(group: runtime.configuration.consumerGroup)
            let loop = ConsumerService(consumer: consumer, topics: [runtime.configuration.topics[keyPath: input]], logger: runtime.logger) { _ in }
            return ServiceParts(
                services: [loop],
                readinessChecks: .dependencies(kafka: { await consumer.brokersReachable() }, redis: redis, postgres: postgres))
        }
    }
}
