import CRdKafka

/// An error from the Kafka client, with librdkafka's error code where there is one.
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate let value: String
        public var description: String { self.value }

        public static let configuration = Code(value: "configuration")
        public static let client = Code(value: "client")
        public static let produce = Code(value: "produce")
        public static let delivery = Code(value: "delivery")
        public static let consume = Code(value: "consume")
        public static let rebalance = Code(value: "rebalance")
        public static let commit = Code(value: "commit")
        public static let shutdown = Code(value: "shutdown")
    }

    public let code: Code
    public let message: String
    /// librdkafka's `rd_kafka_resp_err_t`, when the failure came from it.
    public let librdkafkaCode: Int32?
    /// True when trying the same operation again may succeed (transient broker or network state).
    public let isRetriable: Bool

    public var description: String {
        if let librdkafkaCode { return "Kafka \(self.code): \(self.message) (librdkafka \(librdkafkaCode))" }
        return "Kafka \(self.code): \(self.message)"
    }

    init(_ code: Code, _ message: String, librdkafkaCode: Int32? = nil, isRetriable: Bool = false) {
        self.code = code
        self.message = message
        self.librdkafkaCode = librdkafkaCode
        self.isRetriable = isRetriable
    }

    /// Wraps a librdkafka error code, deciding retriability from the code itself.
    init(_ code: Code, _ context: String, err: rd_kafka_resp_err_t) {
        let text = String(cString: rd_kafka_err2str(err))
        self.init(code, "\(context): \(text)", librdkafkaCode: err.rawValue, isRetriable: Self.retriable(err))
    }

    /// The codes after which an identical retry can succeed: the broker or the network was briefly unavailable,
    /// a leader moved, or the local queue was full.
    static func retriable(_ err: rd_kafka_resp_err_t) -> Bool {
        switch err {
        case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__TIMED_OUT,
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__RESOLVE,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
            return true
        default:
            return false
        }
    }
}
