import CRdKafka
import ClientSupport
import Logging
import Synchronization

/// What a consumer tells its owner when partitions move, so the owner can keep its own offsets (in Postgres, say)
/// and flush its work before a partition leaves.
///
/// Handlers run between batches: while one runs, the batch sequence does not advance, so no message of a revoked
/// partition is handed out after `partitionsRevoked` returns. A handler must not wait for the batch sequence.
public protocol KafkaRebalanceHandler: Sendable {
    /// Partitions newly assigned to this member. Return where to start each one; a partition left out starts at
    /// the group's committed offset. Throwing stops the consumer (its batch sequence throws the error).
    func partitionsAssigned(_ partitions: [KafkaTopicPartition]) async throws -> [KafkaTopicPartition: KafkaOffset]
    /// Partitions taken away. `lost` is true when they were lost without an orderly handover (session timeout):
    /// another member may already own them, so commits for them will fail.
    func partitionsRevoked(_ partitions: [KafkaTopicPartition], lost: Bool) async
}

/// A consumer-group member. Offsets are committed only by `commit`; messages come as batches through an
/// `AsyncSequence`; rebalances are reported to a `KafkaRebalanceHandler`.
///
/// Polling, rebalance handling and close run on the consumer's own thread; commits and seeks on a second one, so a
/// rebalance handler can commit while the polling thread waits for it.
public final class KafkaConsumer: Sendable {
    let handle: KafkaHandle
    private let queue: ConsumerQueue
    private let pollThread: ThreadExecutor
    private let controlThread: ThreadExecutor
    private let rebalance: RebalanceBridge
    private let logger: Logger
    private let state = Mutex(LifecycleState.open)
    private let subscribed = Atomic<Bool>(false)

    private enum LifecycleState { case open, closing, closed }

    public init(configuration: KafkaConsumerConfiguration, rebalanceHandler: (any KafkaRebalanceHandler)? = nil, logger: Logger) throws(KafkaError) {
        guard !configuration.groupID.isEmpty else { throw KafkaError(.configuration, "group.id must not be empty") }
        self.logger = logger
        let bridge = RebalanceBridge(handler: rebalanceHandler, logger: logger)
        self.rebalance = bridge
        self.handle = try KafkaHandle(type: RD_KAFKA_CONSUMER, properties: configuration.properties) { conf in
            rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
            // The bridge outlives the handle: both belong to this consumer, and the handle is freed first in deinit.
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(bridge).toOpaque())
        }
        // Route the main queue (rebalance events, errors) to the consumer queue we poll.
        rd_kafka_poll_set_consumer(self.handle.pointer)
        self.queue = ConsumerQueue(rd_kafka_queue_get_consumer(self.handle.pointer)!)
        self.pollThread = ThreadExecutor(name: "kafka-consumer-poll")
        self.controlThread = ThreadExecutor(name: "kafka-consumer-control")
    }

    deinit {
        // rd_kafka_destroy waits for every queue reference to go, so the queue must go first.
        self.queue.release()
        self.pollThread.shutdown()
        self.controlThread.shutdown()
        if self.subscribed.load(ordering: .acquiring) && !self.rebalance.everAssigned.load(ordering: .acquiring) {
            self.logger.debug("Kafka consumer never assigned: its handle is left to the process's end (librdkafka #4312)")
            self.handle.abandonAtDeinit()
        }
    }

    /// The member id the group coordinator gave this consumer; nil until its first JoinGroup is answered.
    public var memberID: String? {
        guard let id = rd_kafka_memberid(self.handle.pointer) else { return nil }
        defer { rd_kafka_mem_free(self.handle.pointer, id) }
        let value = String(cString: id)
        return value.isEmpty ? nil : value
    }

    /// Joins the group for `topics`.
    public func subscribe(topics: [String]) throws(KafkaError) {
        let list = PartitionList(topics.map { (KafkaTopicPartition(topic: $0, partition: Int32(RD_KAFKA_PARTITION_UA)), nil) })
        let err = rd_kafka_subscribe(self.handle.pointer, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.client, "subscribe \(topics)", err: err) }
        self.subscribed.store(true, ordering: .releasing)
    }

    /// Batches of messages, each of at most `maxMessages`, as they arrive. Ends after `close()`.
    /// With `includeEmpty`, a poll that times out yields an empty batch, so a consumer can do periodic work while
    /// its partitions are quiet.
    /// With a `linger`, a poll that finds messages is followed by more polls, appended to it, until one finds none
    /// (nothing more has arrived), `linger` has passed since the first, or the batch holds `maxMessages`: under
    /// steady traffic a batch spans `linger`, so a consumer whose cost is per row written rather than per event
    /// (the aggregator) writes each row once a `linger` instead of once a poll; a lone burst is handed over as soon
    /// as it has all arrived. `quiet` (at least `pollTimeout`, which it defaults to) is the timeout of the lingering
    /// polls: one that finds nothing in that long ends the batch. Longer rides out a producer's pauses (a busy
    /// machine, a slow dependency) that would otherwise cut batches short; the last events of a burst wait that
    /// much longer.
    public func batches(maxMessages: Int = 1000, pollTimeout: Duration = .milliseconds(100), includeEmpty: Bool = false, linger: Duration = .zero,
                        quiet: Duration? = nil) -> KafkaMessageBatches {
        KafkaMessageBatches(consumer: self, maxMessages: maxMessages, pollTimeout: pollTimeout, includeEmpty: includeEmpty, linger: linger, quiet: quiet ?? pollTimeout)
    }

    /// One poll on the polling thread: nil when the consumer is closing, an empty array on timeout.
    func poll(maxMessages: Int, timeoutMilliseconds: Int32, prompt: Bool = false) async throws -> [KafkaMessage]? {
        if self.state.withLock({ $0 }) != .open { return nil }
        let queue = self.queue
        let logger = self.logger
        let messages = try await self.pollThread.run { () throws -> [KafkaMessage] in
            try queue.consume(max: maxMessages, timeoutMilliseconds: timeoutMilliseconds, prompt: prompt, logger: logger)
        }
        if let failure = self.rebalance.takeFailure() { throw failure }
        return messages
    }

    // MARK: - Offsets and flow control

    /// Commits, for each partition, the offset of the next message to read (the last processed offset + 1).
    public func commit(_ offsets: [KafkaTopicPartition: Int64]) async throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let handle = self.handle
        let items = offsets.map { ($0.key, Int64?.some($0.value)) }
        let result: Result<Void, KafkaError> = await self.control {
            let list = PartitionList(items)
            let err = rd_kafka_commit(handle.pointer, list.pointer, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(.commit, "commit", err: err)) }
            for (tp, _, perr) in list.elements where perr != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(KafkaError(.commit, "commit \(tp)", err: perr))
            }
            return .success(())
        }
        try result.get()
    }

    /// The group's committed offsets (next offset to read) for `partitions`; nil where none is committed.
    public func committed(_ partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)) async throws(KafkaError) -> [KafkaTopicPartition: Int64?] {
        let handle = self.handle
        let timeoutMs = Int32(timeout.components.seconds * 1000)
        let result: Result<[KafkaTopicPartition: Int64?], KafkaError> = await self.control {
            let list = PartitionList(partitions.map { ($0, nil) })
            let err = rd_kafka_committed(handle.pointer, list.pointer, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(.commit, "committed", err: err)) }
            var out: [KafkaTopicPartition: Int64?] = [:]
            for (tp, offset, _) in list.elements { out[tp] = offset >= 0 ? offset : nil }
            return .success(out)
        }
        return try result.get()
    }

    /// Moves the read position of assigned partitions.
    public func seek(_ positions: [KafkaTopicPartition: KafkaOffset], timeout: Duration = .seconds(10)) async throws(KafkaError) {
        let handle = self.handle
        let items = positions.map { ($0.key, Int64?.some($0.value.rawValue)) }
        let timeoutMs = Int32(timeout.components.seconds * 1000)
        let result: Result<Void, KafkaError> = await self.control {
            let list = PartitionList(items)
            var buffer = [CChar](repeating: 0, count: 256)
            let err = tw_error_take(rd_kafka_seek_partitions(handle.pointer, list.pointer, timeoutMs), &buffer, buffer.count, nil)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(.consume, "seek: \(KafkaHandle.string(buffer))", librdkafkaCode: err.rawValue)) }
            for (tp, _, perr) in list.elements where perr != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(KafkaError(.consume, "seek \(tp)", err: perr))
            }
            return .success(())
        }
        try result.get()
    }

    /// The oldest offset the broker still holds for `partition` (its low watermark; retention moves it forward).
    public func lowWatermark(_ partition: KafkaTopicPartition, timeout: Duration = .seconds(10)) async throws(KafkaError) -> Int64 {
        let handle = self.handle
        let timeoutMs = Int32(timeout.components.seconds * 1000)
        let result: Result<Int64, KafkaError> = await self.control {
            var low: Int64 = 0, high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(handle.pointer, partition.topic, Int32(partition.partition), &low, &high, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(.consume, "watermarks of \(partition)", err: err)) }
            return .success(low)
        }
        return try result.get()
    }

    /// Stops fetching these partitions until `resume`; messages already fetched may still arrive.
    public func pause(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = PartitionList(partitions.map { ($0, nil) })
        let err = rd_kafka_pause_partitions(self.handle.pointer, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.consume, "pause", err: err) }
    }

    public func resume(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = PartitionList(partitions.map { ($0, nil) })
        let err = rd_kafka_resume_partitions(self.handle.pointer, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.consume, "resume", err: err) }
    }

    /// The partitions currently assigned to this member.
    public func assignment() throws(KafkaError) -> [KafkaTopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let err = rd_kafka_assignment(self.handle.pointer, &list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.client, "assignment", err: err) }
        guard let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return PartitionList.elements(list).map(\.0)
    }

    // MARK: - Close

    /// Leaves the group cleanly: the rebalance handler sees its partitions revoked, then the batch sequence ends.
    /// Call it after the last batch's work is committed. Idempotent.
    public func close() async {
        let first = self.state.withLock { state -> Bool in
            guard state == .open else { return false }
            state = .closing
            return true
        }
        guard first else { return }
        let handle = self.handle
        let queue = self.queue
        // On the polling thread, after any poll in progress; revoke callbacks are served inside consumer_close.
        _ = try? await self.pollThread.run {
            queue.release()
            let err = rd_kafka_consumer_close(handle.pointer)
            return err.rawValue
        }
        self.state.withLock { $0 = .closed }
        self.logger.info("Kafka consumer closed")
    }

    private func control<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        // ThreadExecutor.run only throws what body throws; body does not throw.
        try! await self.controlThread.run(body)
    }
}

/// Owns the consumer's `rd_kafka_queue_t`.
final class ConsumerQueue: @unchecked Sendable {
    // @unchecked: only used from the polling thread.
    private var pointer: OpaquePointer?
    private var topicNames: [OpaquePointer: String] = [:]
    private var buffer: [UnsafeMutablePointer<rd_kafka_message_t>?] = []

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { self.release() }

    func release() {
        if let pointer { rd_kafka_queue_destroy(pointer) }
        self.pointer = nil
    }

    /// Up to `max` messages. `rd_kafka_consume_batch_queue` returns when it has `max` or the timeout has passed, so a
    /// poll for many messages waits out its timeout whenever fewer are coming. With `prompt`, it returns as soon as
    /// any are there: what is queued at once, else the first to arrive within the timeout and what came with it.
    func consume(max: Int, timeoutMilliseconds: Int32, prompt: Bool = false, logger: Logger) throws -> [KafkaMessage] {
        guard let pointer else { return [] }
        if self.buffer.count < max { self.buffer = Array(repeating: nil, count: max) }
        var count = self.buffer.withUnsafeMutableBufferPointer { buf in
            rd_kafka_consume_batch_queue(pointer, prompt ? 0 : timeoutMilliseconds, buf.baseAddress, max)
        }
        if prompt && count == 0, let first = rd_kafka_consume_queue(pointer, timeoutMilliseconds) {
            self.buffer[0] = first
            count = 1 + self.buffer.withUnsafeMutableBufferPointer { buf in
                Swift.max(0, rd_kafka_consume_batch_queue(pointer, 0, buf.baseAddress! + 1, max - 1))
            }
        }
        if count < 0 { throw KafkaError(.consume, "consume", err: rd_kafka_last_error()) }
        var messages: [KafkaMessage] = []
        messages.reserveCapacity(count)
        for i in 0..<count {
            guard let raw = self.buffer[i] else { continue }
            defer { rd_kafka_message_destroy(raw) }
            let m = raw.pointee
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                // Errors on the consumer queue are reports (a broker went away, a partition is unknown); librdkafka
                // keeps retrying. A fatal error would mean this member can no longer make progress.
                if m.err == RD_KAFKA_RESP_ERR__FATAL {
                    throw KafkaError(.consume, "fatal consumer error", err: m.err)
                }
                logger.warning("Kafka consumer error", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2str(m.err)))"])
                continue
            }
            messages.append(self.convert(raw))
        }
        return messages
    }

    private func convert(_ raw: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaMessage {
        let m = raw.pointee
        let topic: String
        if let rkt = m.rkt {
            if let cached = self.topicNames[rkt] { topic = cached } else {
                topic = String(cString: rd_kafka_topic_name(rkt))
                self.topicNames[rkt] = topic
            }
        } else {
            topic = ""
        }
        let value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        let key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(raw, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                headers.append(KafkaHeader(key: name.map { String(cString: $0) } ?? "", value: bytes))
                index += 1
            }
        }
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(raw, &type)
        return KafkaMessage(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
            timestampMilliseconds: type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp)
    }
}

/// Batches from a consumer, as an `AsyncSequence`. Empty polls are skipped; the sequence ends when the consumer
/// closes and throws when a rebalance handler failed.
public struct KafkaMessageBatches: AsyncSequence, Sendable {
    public typealias Element = [KafkaMessage]
    let consumer: KafkaConsumer
    let maxMessages: Int
    let pollTimeout: Duration
    let includeEmpty: Bool
    let linger: Duration
    let quiet: Duration

    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: KafkaConsumer
        let maxMessages: Int
        let timeoutMs: Int32
        let includeEmpty: Bool
        let linger: Duration
        /// The lingering polls' timeout: a poll that finds nothing in this long ends the batch.
        let quietMs: Int32

        public mutating func next() async throws -> [KafkaMessage]? {
            // With a linger, polls take what is queued at once (`prompt`; after a long batch, the backlog) instead of
            // waiting out their timeout for `maxMessages`: the linger does the gathering, a batch ends at its linger,
            // and the last events of a burst wait one quiet, not the rest of a poll and then a quiet. (Under load a
            // poll returns a fetch's worth of messages, not one.)
            let prompt = self.linger > .zero
            while !Task.isCancelled {
                guard var batch = try await self.consumer.poll(maxMessages: self.maxMessages, timeoutMilliseconds: self.timeoutMs, prompt: prompt) else {
                    return nil
                }
                if !batch.isEmpty && self.linger > .zero {
                    let start = ContinuousClock.now
                    while batch.count < self.maxMessages, ContinuousClock.now - start < self.linger, !Task.isCancelled {
                        // Closing: what was gathered is not handed out; nothing of it was processed or committed.
                        guard let more = try await self.consumer.poll(maxMessages: self.maxMessages - batch.count, timeoutMilliseconds: self.quietMs, prompt: true) else {
                            return nil
                        }
                        if more.isEmpty { break }
                        batch += more
                    }
                }
                if !batch.isEmpty || self.includeEmpty { return batch }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        func ms(_ d: Duration) -> Int32 { Int32(Swift.max(1, Swift.min(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000, 3_600_000))) }
        return AsyncIterator(consumer: self.consumer, maxMessages: self.maxMessages, timeoutMs: ms(self.pollTimeout), includeEmpty: self.includeEmpty, linger: self.linger,
                             quietMs: ms(Swift.max(self.quiet, self.pollTimeout)))
    }
}
