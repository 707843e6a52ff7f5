import CRdKafka
import Dispatch
import Logging
import Synchronization

/// Carries rebalance events from librdkafka's callback (on the polling thread) to the async handler.
///
/// The callback blocks the polling thread until the handler finishes: that thread is the consumer's own, never the
/// cooperative pool, and blocking it is what keeps batches from flowing while partitions change hands.
final class RebalanceBridge: Sendable {
    let handler: (any KafkaRebalanceHandler)?
    let logger: Logger
    private let failure = Mutex<KafkaError?>(nil)
    /// Whether an assignment (possibly empty) has reached this member: the sticky assignor's state exists from then on.
    let everAssigned = Atomic<Bool>(false)

    init(handler: (any KafkaRebalanceHandler)?, logger: Logger) {
        self.handler = handler
        self.logger = logger
    }

    func takeFailure() -> KafkaError? { self.failure.withLock { $0.take() } }

    /// Runs an async body to completion from a non-async thread.
    func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let value = await body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    func handle(rk: OpaquePointer, err: rd_kafka_resp_err_t, list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let partitions = PartitionList.elements(list).map(\.0)
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            self.everAssigned.store(true, ordering: .releasing)
            self.logger.info("Kafka partitions assigned", metadata: ["kafka.partitions": "\(partitions)"])
            var starts: [KafkaTopicPartition: KafkaOffset] = [:]
            if let handler = self.handler {
                let outcome: Result<[KafkaTopicPartition: KafkaOffset], KafkaError> = self.wait {
                    do { return .success(try await handler.partitionsAssigned(partitions)) }
                    catch { return .failure(KafkaError(.rebalance, "partitionsAssigned handler failed: \(error)")) }
                }
                switch outcome {
                case .success(let value): starts = value
                case .failure(let error):
                    // Without the owner's offsets these partitions cannot be consumed correctly: take none of them
                    // and surface the failure through the batch sequence.
                    self.logger.error("Kafka rebalance handler failed", metadata: ["error": "\(error)"])
                    self.failure.withLock { $0 = error }
                    return
                }
            }
            for i in 0..<Int(list.pointee.cnt) {
                let e = list.pointee.elems[i]
                let tp = KafkaTopicPartition(topic: String(cString: e.topic), partition: e.partition)
                list.pointee.elems[i].offset = (starts[tp] ?? .committed).rawValue
            }
            let assignErr: rd_kafka_resp_err_t
            if cooperative {
                assignErr = tw_error_take(rd_kafka_incremental_assign(rk, list), nil, 0, nil)
            } else {
                assignErr = rd_kafka_assign(rk, list)
            }
            if assignErr != RD_KAFKA_RESP_ERR_NO_ERROR {
                self.failure.withLock { $0 = KafkaError(.rebalance, "assign", err: assignErr) }
            }
        default:
            // RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, or an error that forces giving everything up.
            let lost = rd_kafka_assignment_lost(rk) != 0
            self.logger.info("Kafka partitions revoked", metadata: ["kafka.partitions": "\(partitions)", "kafka.lost": "\(lost)"])
            if let handler = self.handler {
                self.wait { await handler.partitionsRevoked(partitions, lost: lost) }
            }
            if cooperative {
                _ = tw_error_take(rd_kafka_incremental_unassign(rk, list), nil, 0, nil)
            } else {
                _ = rd_kafka_assign(rk, nil)
            }
        }
    }
}

let rebalanceCallback: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { rk, err, list, opaque in
    guard let rk, let list, let opaque else { return }
    Unmanaged<RebalanceBridge>.fromOpaque(opaque).takeUnretainedValue().handle(rk: rk, err: err, list: list)
}
