import Kafka
import Testing

@Suite("Kafka messages")
struct KafkaMessageTests {
    @Test("the offsets to commit are each partition's highest offset + 1, however the partitions interleave")
    func nextOffsets() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var messages: [KafkaMessage] = []
            var expected: [KafkaTopicPartition: Int64] = [:]
            for _ in 0..<Int.random(in: 0...60, using: &rng) {
                let topic = Bool.random(using: &rng) ? "a" : "b"
                let partition = Int32.random(in: 0...3, using: &rng)
                let offset = Int64.random(in: 0...1000, using: &rng)
                // Runs of one partition, as polls return them, and interleavings.
                for k in 0..<Int.random(in: 1...4, using: &rng) {
                    messages.append(KafkaMessage(topic: topic, partition: partition, offset: offset + Int64(k), key: nil, value: []))
                    let tp = KafkaTopicPartition(topic: topic, partition: partition)
                    expected[tp] = max(expected[tp] ?? 0, offset + Int64(k) + 1)
                }
            }
            #expect(messages.nextOffsets == expected)
        }
    }
}
