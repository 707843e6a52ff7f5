import Events
import ServiceKit

/// The detector scores closed windows into llm.anomalies.v1. For now it runs as a skeleton (see `ServiceRunner.skeletonConsumer`).
@main
struct DetectorMain {
    static func main() async {
        await ServiceRunner.skeletonConsumer(service: "detector", defaultPort: 8083, input: \.rollups)
    }
}
