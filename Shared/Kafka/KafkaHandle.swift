import CRdKafka
import Synchronization

/// Owns one `rd_kafka_t` and destroys it in `deinit`.
///
/// @unchecked Sendable: librdkafka handles are thread-safe (rdkafka.h: "all functions are thread-safe unless
/// noted"); the topic-handle cache is guarded by a mutex.
final class KafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    private let topics = Mutex<[String: TopicHandle]>([:])
    private let abandoned = Atomic<Bool>(false)

    /// Builds a conf from `properties`, lets `configure` install callbacks, and creates the client.
    init(
        type: rd_kafka_type_t, properties: [String: String],
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(.configuration, "rd_kafka_conf_new failed") }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(.configuration, "property \(key): \(Self.string(errorBuffer))")
            }
        }
        configure(conf)
        // rd_kafka_new takes ownership of conf only when it succeeds.
        guard let handle = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.client, "rd_kafka_new: \(Self.string(errorBuffer))")
        }
        self.pointer = handle
    }

    deinit {
        self.topics.withLock { $0.removeAll() }
        if self.abandoned.load(ordering: .acquiring) { return }
        rd_kafka_destroy(self.pointer)
    }

    /// Leaves the handle to the process's end instead of destroying it in `deinit`: librdkafka before 2.3.0
    /// (Debian 12 ships 2.0.2) aborts the process in `rd_kafka_destroy` when a cooperative-sticky member is destroyed
    /// after joining its group but before its first assignment (librdkafka #4312, fixed by #4381). A pod stopped
    /// while its group rebalances (a scale-down, a rollout) hits exactly that; the leak is one client's memory and
    /// threads, once, and only after `rd_kafka_consumer_close` has left the group.
    func abandonAtDeinit() {
        self.abandoned.store(true, ordering: .releasing)
    }

    /// A cached `rd_kafka_topic_t` for `name`; creating one per message would take librdkafka's topic lock each time.
    func topic(_ name: String) throws(KafkaError) -> TopicHandle {
        let result: Result<TopicHandle, KafkaError> = self.topics.withLock { topics in
            if let existing = topics[name] { return .success(existing) }
            guard let rkt = rd_kafka_topic_new(self.pointer, name, nil) else {
                return .failure(KafkaError(.produce, "topic \(name)", err: rd_kafka_last_error()))
            }
            let handle = TopicHandle(rkt)
            topics[name] = handle
            return .success(handle)
        }
        return try result.get()
    }

    static func string(_ buffer: [CChar]) -> String {
        buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// Owns one `rd_kafka_topic_t`.
final class TopicHandle: @unchecked Sendable {
    // @unchecked: topic handles are thread-safe in librdkafka.
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { rd_kafka_topic_destroy(self.pointer) }
}

/// Owns one `rd_kafka_topic_partition_list_t` and converts it to and from Swift values.
final class PartitionList {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    init(capacity: Int) {
        self.pointer = rd_kafka_topic_partition_list_new(Int32(Swift.max(capacity, 1)))
    }

    convenience init(_ items: [(KafkaTopicPartition, Int64?)]) {
        self.init(capacity: items.count)
        for (tp, offset) in items { self.add(tp, offset: offset) }
    }

    deinit { rd_kafka_topic_partition_list_destroy(self.pointer) }

    func add(_ tp: KafkaTopicPartition, offset: Int64?) {
        let element = rd_kafka_topic_partition_list_add(self.pointer, tp.topic, tp.partition)!
        if let offset { element.pointee.offset = offset }
    }

    /// The elements of a list librdkafka owns (lent to a callback).
    static func elements(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [(KafkaTopicPartition, Int64, rd_kafka_resp_err_t)] {
        let count = Int(list.pointee.cnt)
        var result: [(KafkaTopicPartition, Int64, rd_kafka_resp_err_t)] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            let e = list.pointee.elems[i]
            result.append((KafkaTopicPartition(topic: String(cString: e.topic), partition: e.partition), e.offset, e.err))
        }
        return result
    }

    var elements: [(KafkaTopicPartition, Int64, rd_kafka_resp_err_t)] { Self.elements(self.pointer) }
}

extension KafkaOffset {
    var rawValue: Int64 {
        switch self {
        case .committed: return -1000  // RD_KAFKA_OFFSET_STORED
        case .beginning: return -2  // RD_KAFKA_OFFSET_BEGINNING
        case .end: return -1  // RD_KAFKA_OFFSET_END
        case .offset(let value): return value
        }
    }
}
