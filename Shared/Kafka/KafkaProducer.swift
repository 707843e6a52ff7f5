import CRdKafka
import ClientSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// An idempotent (`enable.idempotence=true`, `acks=all`) Kafka producer.
///
/// `send` returns once the broker has acknowledged every message of the call (or reports why it could not), which is
/// what lets a caller say "accepted". Delivery reports are served by a dedicated polling thread, never the
/// cooperative pool. As a `Service`, `run()` waits for graceful shutdown and then flushes what is queued.
public final class KafkaProducer: Service, Sendable {
    let handle: KafkaHandle
    private let poller: Poller
    private let configuration: KafkaProducerConfiguration
    private let logger: Logger
    private let isShutDown = Atomic<Bool>(false)

    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        self.logger = logger
        self.handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, properties: configuration.properties) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryReportCallback)
        }
        self.poller = Poller(handle: self.handle, name: "kafka-producer-poll")
    }

    // MARK: - Sending

    /// Produces `messages` and waits until each one is acknowledged or has failed for good.
    /// The reports come back in the order of `messages`.
    public func send(_ messages: [KafkaProducerMessage]) async throws(KafkaError) -> [KafkaDeliveryReport] {
        guard !self.isShutDown.load(ordering: .relaxed) else {
            throw KafkaError(.shutdown, "the producer is shut down")
        }
        if messages.isEmpty { return [] }
        let tracker = DeliveryTracker(count: messages.count)
        var index = 0
        var backoff = Backoff(initial: .milliseconds(1), maximum: .milliseconds(50))
        while index < messages.count {
            let (next, failure) = self.produceRun(messages, from: index, tracker: tracker)
            index = next
            guard let failure else { break }
            guard case .queueFull = failure, !self.isShutDown.load(ordering: .relaxed) else {
                // This message and every one not yet enqueued failed; mark them so the tracker can complete.
                switch failure {
                case .queueFull: tracker.fail(from: index, error: KafkaError(.shutdown, "the producer is shut down"))
                case .error(let error): tracker.fail(from: index, error: error)
                }
                break
            }
            // The local queue is full: wait for deliveries to drain it (backpressure).
            try? await Task.sleep(for: backoff.next())
        }
        await tracker.wait()
        return tracker.reports(for: messages)
    }

    /// Produces `messages` and throws the first failure, if any; otherwise every message is acknowledged.
    public func sendAll(_ messages: [KafkaProducerMessage]) async throws(KafkaError) {
        let reports = try await self.send(messages)
        let failed = reports.filter { $0.error != nil }
        if let first = failed.first?.error {
            throw KafkaError(
                first.code, "\(failed.count) of \(messages.count) messages not delivered; first: \(first.message)",
                librdkafkaCode: first.librdkafkaCode, isRetriable: first.isRetriable)
        }
    }

    private enum RunFailure {
        case queueFull
        case error(KafkaError)
    }

    /// Enqueues messages from `start` on in a tight synchronous loop over borrowed storage (no copy or reference
    /// counting per message), until all are enqueued or one fails. Returns the index it stopped at.
    private func produceRun(_ messages: [KafkaProducerMessage], from start: Int, tracker: DeliveryTracker) -> (Int, RunFailure?) {
        messages.withUnsafeBufferPointer { buffer in
            var topicName = ""
            var topic: TopicHandle?
            for index in start..<buffer.count {
                // Batches usually go to one topic: look its handle up once, not per message.
                if topic == nil || buffer[index].topic != topicName {
                    topicName = buffer[index].topic
                    switch Result(catching: { () throws(KafkaError) in try self.handle.topic(topicName) }) {
                    case .success(let handle): topic = handle
                    case .failure(let error): return (index, .error(error))
                    }
                }
                let err = self.produceOne(buffer[index], topic: topic!, opaque: tracker.opaque(for: index))
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { return (index, .queueFull) }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    return (index, .error(KafkaError(.produce, "produce to \(topicName)", err: err)))
                }
            }
            return (buffer.count, nil)
        }
    }

    private func produceOne(_ message: borrowing KafkaProducerMessage, topic: TopicHandle, opaque: UnsafeMutableRawPointer) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                _ = header.value.withUnsafeBytes { value in
                    rd_kafka_header_add(headers, header.key, -1, value.baseAddress, value.count)
                }
            }
        }
        let partition = message.partition ?? Int32(RD_KAFKA_PARTITION_UA)
        let rk = self.handle.pointer
        let err = message.value.withUnsafeBytes { value in
            if let key = message.key {
                return key.withUnsafeBytes { key in
                    tw_produce(rk, topic.pointer, partition, key.baseAddress, key.count, value.baseAddress, value.count, headers, opaque)
                }
            }
            return tw_produce(rk, topic.pointer, partition, nil, 0, value.baseAddress, value.count, headers, opaque)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Not enqueued: the headers are still ours.
            if let headers { rd_kafka_headers_destroy(headers) }
        }
        return err
    }

    // MARK: - Lifecycle

    public func run() async throws {
        try? await gracefulShutdown()
        await self.shutdown()
    }

    /// Flushes queued messages (up to `flushTimeout`), then stops the polling thread. Idempotent.
    public func shutdown() async {
        guard !self.isShutDown.exchange(true, ordering: .relaxed) else { return }
        let timeoutMs = Int32(self.configuration.flushTimeout.components.seconds * 1000)
        let remaining = await self.poller.stop(flushTimeoutMilliseconds: timeoutMs)
        if remaining > 0 {
            self.logger.error("Kafka producer shut down with undelivered messages", metadata: ["kafka.undelivered": "\(remaining)"])
        } else {
            self.logger.info("Kafka producer flushed and stopped")
        }
    }

    /// Messages queued locally or in flight to the broker.
    public var queuedMessages: Int { Int(rd_kafka_outq_len(self.handle.pointer)) }
}

// MARK: - Delivery reports

/// Collects the delivery reports of one `send` call and wakes the caller when the last arrives.
///
/// Built for the hot path: one allocation per call, not per message. Each message's librdkafka opaque points at its
/// own slot; the polling thread fills slots (each exactly once) and counts down atomically, and the caller reads
/// the slots only after the count reached zero (acquire/release ordering makes the writes visible).
final class DeliveryTracker: @unchecked Sendable {
    // @unchecked: each slot is written once, by one thread, before the release-decrement of `remaining`; slots are
    // read only after the acquiring decrement that reached zero. `waiter` is guarded by its mutex.
    struct Slot {
        let tracker: Unmanaged<DeliveryTracker>
        var partition: Int32 = -1
        var offset: Int64 = -1
        var error: Int32 = 0
    }

    private let slots: UnsafeMutableBufferPointer<Slot>
    private let remaining: Atomic<Int>
    private let waiter = Mutex<(continuation: CheckedContinuation<Void, Never>?, finished: Bool)>((nil, false))
    private let localFailures = Mutex<[Int: KafkaError]>([:])

    init(count: Int) {
        self.slots = .allocate(capacity: count)
        self.remaining = Atomic(count)
        let me = Unmanaged.passUnretained(self)
        _ = self.slots.initialize(from: repeatElement(Slot(tracker: me), count: count))
    }

    deinit {
        self.slots.deinitialize()
        self.slots.deallocate()
    }

    /// The opaque handed to librdkafka for message `index`. The tracker outlives every report: `send` holds it
    /// until all of them arrived.
    func opaque(for index: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(self.slots.baseAddress! + index)
    }

    /// Called on the polling thread with the opaque of a delivered (or failed) message.
    static func complete(opaque: UnsafeMutableRawPointer, partition: Int32, offset: Int64, error: Int32) {
        let slot = opaque.assumingMemoryBound(to: Slot.self)
        slot.pointee.partition = partition
        slot.pointee.offset = offset
        slot.pointee.error = error
        slot.pointee.tracker.takeUnretainedValue().countDown(1)
    }

    /// Marks messages `from...` as failed without being enqueued.
    func fail(from index: Int, error: KafkaError) {
        self.localFailures.withLock { failures in
            for i in index..<self.slots.count { failures[i] = error }
        }
        self.countDown(self.slots.count - index)
    }

    private func countDown(_ n: Int) {
        if self.remaining.subtract(n, ordering: .acquiringAndReleasing).newValue == 0 {
            let continuation = self.waiter.withLock { state -> CheckedContinuation<Void, Never>? in
                state.finished = true
                return state.continuation.take()
            }
            continuation?.resume()
        }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let done = self.waiter.withLock { state -> Bool in
                if state.finished { return true }
                state.continuation = continuation
                return false
            }
            if done { continuation.resume() }
        }
        // Pairs with the releasing decrements: every slot write is visible from here on.
        _ = self.remaining.load(ordering: .acquiring)
    }

    func reports(for messages: [KafkaProducerMessage]) -> [KafkaDeliveryReport] {
        let failures = self.localFailures.withLock { $0 }
        return messages.indices.map { i in
            let slot = self.slots[i]
            let tp = KafkaTopicPartition(topic: messages[i].topic, partition: failures[i] == nil ? slot.partition : (messages[i].partition ?? -1))
            if let failure = failures[i] { return KafkaDeliveryReport(topicPartition: tp, offset: -1, error: failure) }
            let error = slot.error == 0 ? nil : KafkaError(.delivery, "delivery to \(messages[i].topic)", err: rd_kafka_resp_err_t(rawValue: slot.error))
            return KafkaDeliveryReport(topicPartition: tp, offset: slot.offset, error: error)
        }
    }
}

private let deliveryReportCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    DeliveryTracker.complete(opaque: opaque, partition: message.pointee.partition, offset: message.pointee.offset, error: message.pointee.err.rawValue)
}

// MARK: - Polling thread

/// Serves delivery-report callbacks (`rd_kafka_poll`) on its own thread until stopped, then flushes.
final class Poller: Sendable {
    private let stopRequest = Mutex<CheckedContinuation<Int, Never>?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let flushTimeout = Atomic<Int32>(0)

    init(handle: KafkaHandle, name: String) {
        let thread = Thread { [self] in
            while !self.stopping.load(ordering: .acquiring) {
                rd_kafka_poll(handle.pointer, 100)
            }
            rd_kafka_flush(handle.pointer, self.flushTimeout.load(ordering: .relaxed))
            rd_kafka_poll(handle.pointer, 0)
            let remaining = Int(rd_kafka_outq_len(handle.pointer))
            self.stopRequest.withLock { $0.take() }?.resume(returning: remaining)
        }
        thread.name = name
        thread.start()
    }

    /// Asks the thread to flush and exit; returns the number of messages still undelivered.
    func stop(flushTimeoutMilliseconds: Int32) async -> Int {
        await withCheckedContinuation { continuation in
            self.stopRequest.withLock { $0 = continuation }
            self.flushTimeout.store(flushTimeoutMilliseconds, ordering: .relaxed)
            self.stopping.store(true, ordering: .releasing)
        }
    }
}
