import Kafka
import Logging
import Postgres
import ServiceKit
import Synchronization

/// What the aggregator knows of one input partition it owns, loaded from Postgres on assignment.
public struct PartitionState: Sendable, Equatable {
    /// Next input offset to apply; the transaction of a batch moves it only if it still holds this value (fencing).
    public var nextOffset: Int64
    /// Latest event time applied on this partition (microseconds): the data watermark lateness is measured from.
    public var watermark: Int64
    /// Highest source (raw) offset applied per source partition: anything at or below is a replay.
    public var marks: [Int32: Int64]

    /// Loads (creating when new) the state of `tp`. A new partition starts at offset 0, the beginning.
    public static func load(_ tp: KafkaTopicPartition, postgres: PostgresClient) async throws -> PartitionState {
        try await postgres.withTransaction { conn in
            try conn.query("INSERT INTO aggregator_partitions (topic, partition, next_offset) VALUES (\(tp.topic), \(tp.partition), \(Int64(0))) ON CONFLICT DO NOTHING")
            let row = try conn.query("SELECT next_offset, watermark_us FROM aggregator_partitions WHERE topic = \(tp.topic) AND partition = \(tp.partition)")[0]
            var marks: [Int32: Int64] = [:]
            for mark in try conn.query("SELECT source_partition, source_offset FROM aggregator_source_marks WHERE topic = \(tp.topic) AND partition = \(tp.partition)") {
                marks[try mark.decode("source_partition")] = try mark.decode("source_offset")
            }
            return PartitionState(nextOffset: try row.decode("next_offset"), watermark: try row.decode("watermark_us"), marks: marks)
        }
    }
}

/// The partitions this member owns, shared by the rebalance handler and the processing loop.
public final class PartitionStates: Sendable {
    private let states = Mutex<[KafkaTopicPartition: PartitionState]>([:])

    public init() {}

    public subscript(tp: KafkaTopicPartition) -> PartitionState? {
        get { self.states.withLock { $0[tp] } }
        set { self.states.withLock { $0[tp] = newValue } }
    }

    public var owned: [KafkaTopicPartition] { self.states.withLock { Array($0.keys) } }
    public func remove(_ tps: [KafkaTopicPartition]) { self.states.withLock { for tp in tps { $0[tp] = nil } } }
}

/// Resumes each assigned partition from the offset stored in Postgres, not from Kafka's committed offset.
public struct AggregatorRebalanceHandler: KafkaRebalanceHandler {
    let postgres: PostgresClient
    let states: PartitionStates
    let logger: Logger

    public init(postgres: PostgresClient, states: PartitionStates, logger: Logger = Logger(label: "tokenwatch.aggregator")) {
        self.postgres = postgres
        self.states = states
        self.logger = logger
    }

    public func partitionsAssigned(_ partitions: [KafkaTopicPartition]) async throws -> [KafkaTopicPartition: KafkaOffset] {
        var starts: [KafkaTopicPartition: KafkaOffset] = [:]
        for tp in partitions {
            // Postgres restarting during a rebalance must not end the service: without its state the partition
            // cannot be consumed, so the assignment waits for Postgres (within the group's max poll interval).
            let state = try await TransientFaults.retrying("load partition state", logger: self.logger) {
                try await PartitionState.load(tp, postgres: self.postgres)
            }
            self.states[tp] = state
            // Offset 0 of a topic whose head was deleted by retention does not exist: start at the beginning then.
            starts[tp] = state.nextOffset == 0 ? .beginning : .offset(state.nextOffset)
        }
        return starts
    }

    public func partitionsRevoked(_ partitions: [KafkaTopicPartition], lost: Bool) async {
        self.states.remove(partitions)
    }
}
