import Events
import Foundation
import Kafka
import Logging

/// Publishes `count` anomalies of `tenant` to `topic` at about `perSecond`, each a new anomaly (revision 1, so each
/// is one notification), and writes `<anomaly id> <publication time, Unix seconds>` lines to `out`: the query
/// service's delivery to a receiver is timed against them (deploy/bench/pipeline.sh).
func publishAnomalies(brokers: String, topic: String, tenant: String, count: Int, perSecond: Int, out: String) async throws {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: KafkaClientConfiguration(bootstrapServers: brokers, clientID: "bench")), logger: logger)
    let start = ContinuousClock.now
    let batch = max(perSecond / 20, 1)
    var lines: [String] = []
    let now = EventTimestamp.now()
    for first in stride(from: 0, to: count, by: batch) {
        // Paced: batch k leaves at k / 20 s.
        let due = start + .milliseconds(first / batch * 50)
        if due > .now { try await Task.sleep(until: due) }
        var messages: [KafkaProducerMessage] = []
        let sent = Date().timeIntervalSince1970
        for i in first..<min(first + batch, count) {
            let id = "bench-\(UUID().uuidString.prefix(8))-\(i)"
            let json = """
                {"tenant_id":"\(tenant)","anomaly_id":"\(id)","provider":"openai","model":"gpt-4o","metric":"error_rate","window_start":"\(now.rfc3339)",\
                "window_end":"\(now.rfc3339)","status":"ongoing","severity":"critical","score":3.0,"revision":1,"explanation":"Benchmark anomaly \(i)."}
                """
            messages.append(KafkaProducerMessage(topic: topic, key: Array(tenant.utf8), value: Array(json.utf8)))
            lines.append("\(id) \(sent)")
        }
        try await producer.sendAll(messages)
    }
    await producer.shutdown()
    try (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8)
}
