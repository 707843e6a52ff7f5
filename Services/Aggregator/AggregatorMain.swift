import Events
import ServiceKit

/// The aggregator rolls llm.events.v1 up into Postgres and llm.rollups.v1. For now it runs as a skeleton (see `ServiceRunner.skeletonConsumer`).
@main
struct AggregatorMain {
    static func main() async {
        await ServiceRunner.skeletonConsumer(service: "aggregator", defaultPort: 8082, input: \.events)
    }
}
