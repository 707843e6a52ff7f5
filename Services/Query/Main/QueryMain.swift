import Events
import Foundation
import Kafka
import Logging
import Notify
import Postgres
import QueryCore
import Redis
import Rollups
import ServiceKit

/// The query service: llm.rollups.v1 -> the Redis read model the gateway answers from; llm.anomalies.v1 and
/// llm.events.dlq.v1 (tenants' dead letters) -> Postgres.
@main
struct QueryMain {
    static func main() async {
        await ServiceRunner.main(service: "query", defaultPort: 8084) { runtime in
            let postgres = try await connectPostgres(runtime)
            let redis = try runtime.makeRedis()
            let topics = runtime.configuration.topics
            let consumer = try runtime.makeConsumer(group: runtime.configuration.consumerGroup)
            let projector = QueryProjector(readModel: ReadModel(redis: redis), postgres: postgres, topics: topics, logger: runtime.logger)
            let logger = runtime.logger
            let loop = ConsumerService(consumer: consumer, topics: [topics.rollups, topics.anomalies, topics.deadLetters], logger: logger) { batch in
                try await projector.process(batch)
                do { try await consumer.commit(batch.nextOffsets) } catch {
                    // Writes are idempotent: a replay after a failed commit only repeats them.
                    logger.warning("Offset commit failed; the batch will be replayed", metadata: ["error": "\(error)"])
                }
            }
            let environment = ProcessInfo.processInfo.environment
            var delivery = NotificationDelivery(
                postgres: postgres, policy: try EgressPolicy(environment: environment),
                client: try WebhookClient(extraCA: environment["TW_WEBHOOK_CA_FILE"]), logger: logger)
            delivery.publicURL = environment["TW_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 }
            _ = try NotificationOutbox.capWindow()
            delivery.maxInFlight = try Environment().int("TW_NOTIFICATION_CONCURRENCY", default: delivery.maxInFlight, in: 1...1000)
            delivery.perTenantInFlight = try Environment().int("TW_NOTIFICATION_TENANT_CONCURRENCY", default: delivery.perTenantInFlight, in: 1...1000)
            delivery.leaseSeconds = Int(try Environment().duration("TW_NOTIFICATION_LEASE", default: .seconds(60), in: .seconds(1) ... .seconds(3600)).components.seconds)
            // TW_NOTIFICATION_DELIVERY=false: this replica queues notifications but leaves delivery to others.
            let delivers = try Environment().bool("TW_NOTIFICATION_DELIVERY", default: true)
            var rules = RuleEvaluator(postgres: postgres, logger: logger)
            rules.interval = try Environment().duration("TW_RULES_INTERVAL", default: .seconds(15), in: .seconds(1) ... .seconds(3600))
            rules.grace = try Environment().duration("TW_RULES_GRACE", default: .seconds(30), in: .zero ... .seconds(3600))
            return ServiceParts(
                services: delivers ? [loop, delivery, rules] : [loop, rules],
                readinessChecks: .dependencies(kafka: { await consumer.brokersReachable() }, redis: redis, postgres: postgres))
        }
    }
}
