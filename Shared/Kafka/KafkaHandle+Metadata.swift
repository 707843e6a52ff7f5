import CRdKafka
import ClientSupport

/// One thread for the rare blocking metadata requests of all clients (readiness checks).
private let metadataThread = ThreadExecutor(name: "kafka-metadata")

extension KafkaHandle {
    /// Asks the cluster for its broker list; true when it answers within `timeout`.
    func brokersReachable(timeout: Duration) async -> Bool {
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return (try? await metadataThread.run { [self] in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(self.pointer, 0, nil, &metadata, ms)
            defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
            return err == RD_KAFKA_RESP_ERR_NO_ERROR && (metadata?.pointee.broker_cnt ?? 0) > 0
        }) ?? false
    }
}

extension KafkaProducer {
    /// True when the cluster answers a metadata request; for readiness checks.
    public func brokersReachable(timeout: Duration = .seconds(2)) async -> Bool {
        await self.handle.brokersReachable(timeout: timeout)
    }
}

extension KafkaConsumer {
    public func brokersReachable(timeout: Duration = .seconds(2)) async -> Bool {
        await self.handle.brokersReachable(timeout: timeout)
    }
}
