/// A topic and partition.
public struct KafkaTopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(self.topic)[\(self.partition)]" }
}

/// Where a consumer starts reading a partition.
public enum KafkaOffset: Hashable, Sendable {
    /// The group's committed offset (or `auto.offset.reset` when there is none).
    case committed
    case beginning
    case end
    /// This exact offset: the next message read is the one at it.
    case offset(Int64)
}

public struct KafkaHeader: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]

    public init(key: String, value: [UInt8]) {
        self.key = key
        self.value = value
    }

    public init(key: String, string: String) {
        self.init(key: key, value: Array(string.utf8))
    }
}

/// A message to produce. `partition` nil lets the partitioner choose from the key.
public struct KafkaProducerMessage: Sendable {
    public var topic: String
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a produced message landed, or why it did not.
public struct KafkaDeliveryReport: Sendable {
    public var topicPartition: KafkaTopicPartition
    public var offset: Int64
    public var error: KafkaError?
}

/// A consumed message.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// Broker or producer timestamp, milliseconds since the epoch; nil when the broker gave none.
    public var timestampMilliseconds: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    public var topicPartition: KafkaTopicPartition { KafkaTopicPartition(topic: self.topic, partition: self.partition) }

    /// The value of the first header with this key.
    public func header(_ key: String) -> [UInt8]? {
        self.headers.first { $0.key == key }?.value
    }
}

extension Sequence where Element == KafkaMessage {
    /// These messages by partition, each partition's in their order here.
    public var byPartition: [KafkaTopicPartition: [KafkaMessage]] {
        var out: [KafkaTopicPartition: [KafkaMessage]] = [:]
        for message in self { out[message.topicPartition, default: []].append(message) }
        return out
    }

    /// For each partition in these messages, the offset to commit once all of them are processed (highest + 1).
    public var nextOffsets: [KafkaTopicPartition: Int64] {
        // A batch holds runs of one partition: the dictionary is touched once a run, not twice a message.
        var out: [KafkaTopicPartition: Int64] = [:]
        var run: (tp: KafkaTopicPartition, next: Int64)?
        for m in self {
            if let r = run, r.tp.partition == m.partition, r.tp.topic == m.topic {
                run = (r.tp, Swift.max(r.next, m.offset + 1))
                continue
            }
            if let r = run { out[r.tp] = Swift.max(out[r.tp] ?? 0, r.next) }
            run = (m.topicPartition, m.offset + 1)
        }
        if let r = run { out[r.tp] = Swift.max(out[r.tp] ?? 0, r.next) }
        return out
    }
}
