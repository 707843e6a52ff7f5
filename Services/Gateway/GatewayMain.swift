import Logging
import Events
import Kafka
import Postgres
import Redis
import ServiceKit

/// The HTTP front door: accepts events, answers queries. This skeleton serves the operations endpoints and holds
/// the clients the API will use (producer to llm.events.raw.v1, Redis, Postgres).
@main
struct GatewayMain {
    static func main() async {
        await ServiceRunner.main(service: "gateway", defaultPort: 8080) { runtime in
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            let producer = try runtime.makeProducer()
            return ServiceParts(
                services: [producer],
                readinessChecks: [
                    ReadinessCheck("kafka") { await producer.brokersReachable() },
                    ReadinessCheck("redis") { await redis.ping() },
                    ReadinessCheck("postgres") { await postgres.ping() },
                ])
        }
    }
}
