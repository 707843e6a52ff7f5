import Events
import ServiceKit

/// The ingestor validates raw events into llm.events.v1. For now it runs as a skeleton (see `ServiceRunner.skeletonConsumer`).
@main
struct IngestorMain {
    static func main() async {
        await ServiceRunner.skeletonConsumer(service: "ingestor", defaultPort: 8081, input: \.raw)
    }
}
