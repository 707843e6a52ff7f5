@testable import Kafka
import Testing

@Suite("Kafka client settings")
struct KafkaConfigurationTests {
    @Test("consumers ask for a held fetch of at most 100 ms unless told otherwise, and never commit behind the caller's back")
    func consumerDefaults() {
        let plain = KafkaConsumerConfiguration(client: KafkaClientConfiguration(), groupID: "g")
        #expect(plain.properties["fetch.wait.max.ms"] == "100")
        #expect(plain.properties["enable.auto.commit"] == "false")

        // TW_KAFKA_PROPERTIES reaches the client as `properties`: it overrides the defaults, not the commit policy.
        let told = KafkaConsumerConfiguration(
            client: KafkaClientConfiguration(properties: ["fetch.wait.max.ms": "500", "enable.auto.commit": "true"]), groupID: "g")
        #expect(told.properties["fetch.wait.max.ms"] == "500")
        #expect(told.properties["enable.auto.commit"] == "false")
    }

    @Test("producers keep idempotence and acks=all whatever the extra properties say")
    func producerPromise() {
        let told = KafkaProducerConfiguration(client: KafkaClientConfiguration(properties: ["acks": "1", "enable.idempotence": "false", "linger.ms": "20"]))
        #expect(told.properties["acks"] == "all")
        #expect(told.properties["enable.idempotence"] == "true")
        #expect(told.properties["linger.ms"] == "20")
    }
}
