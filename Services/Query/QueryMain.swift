import Events
import ServiceKit

/// The query keeps the Redis read models from llm.rollups.v1 and llm.anomalies.v1. For now it runs as a skeleton (see `ServiceRunner.skeletonConsumer`).
@main
struct QueryMain {
    static func main() async {
        await ServiceRunner.skeletonConsumer(service: "query", defaultPort: 8084, input: \.rollups)
    }
}
