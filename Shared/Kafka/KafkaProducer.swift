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
        for (index, message) in messages.enumerated() {
            do {
                try await self.enqueue(message, tracker: tracker, index: index)
            } catch {
                // Mark this and every message not yet enqueued as failed so the tracker can complete.
                for rest in index..<messages.count {
                    let tp = KafkaTopicPartition(topic: messages[rest].topic, partition: messages[rest].partition ?? -1)
                    tracker.complete(index: rest, report: KafkaDeliveryReport(topicPartition: tp, offset: -1, error: error))
                }
                break
            }
        }
        return await tracker.wait()
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

    private func enqueue(_ message: KafkaProducerMessage, tracker: DeliveryTracker, index: Int) async throws(KafkaError) {
        let topic = try self.handle.topic(message.topic)
        var backoff = Backoff(initial: .milliseconds(1), maximum: .milliseconds(50))
        while true {
            let err = self.produceOnce(message, topic: topic, tracker: tracker, index: index)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            guard err == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                throw KafkaError(.produce, "produce to \(message.topic)", err: err)
            }
            // The local queue is full: wait for deliveries to drain it (backpressure), unless shutting down.
            if self.isShutDown.load(ordering: .relaxed) { throw KafkaError(.shutdown, "the producer is shut down") }
            try? await Task.sleep(for: backoff.next())
        }
    }

    private func produceOnce(_ message: KafkaProducerMessage, topic: TopicHandle, tracker: DeliveryTracker, index: Int) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                _ = header.value.withUnsafeBytes { value in
                    rd_kafka_header_add(headers, header.key, -1, value.baseAddress, value.count)
                }
            }
        }
        let opaque = Unmanaged.passRetained(DeliveryContext(tracker: tracker, index: index)).toOpaque()
        let partition = message.partition ?? Int32(RD_KAFKA_PARTITION_UA)
        let err = message.value.withUnsafeBytes { value in
            if let key = message.key {
                return key.withUnsafeBytes { key in
                    tw_produce(self.handle.pointer, topic.pointer, partition, key.baseAddress, key.count, value.baseAddress, value.count, headers, opaque)
                }
            }
            return tw_produce(self.handle.pointer, topic.pointer, partition, nil, 0, value.baseAddress, value.count, headers, opaque)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Not enqueued: the opaque and the headers are still ours.
            Unmanaged<DeliveryContext>.fromOpaque(opaque).release()
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
final class DeliveryTracker: Sendable {
    private struct State {
        var reports: [KafkaDeliveryReport?]
        var remaining: Int
        var continuation: CheckedContinuation<[KafkaDeliveryReport], Never>?
    }
    private let state: Mutex<State>

    init(count: Int) {
        self.state = Mutex(State(reports: Array(repeating: nil, count: count), remaining: count))
    }

    func complete(index: Int, report: KafkaDeliveryReport) {
        let resume: (CheckedContinuation<[KafkaDeliveryReport], Never>, [KafkaDeliveryReport])? = self.state.withLock { state in
            guard state.reports[index] == nil else { return nil }
            state.reports[index] = report
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.reports.map { $0! })
        }
        if let (continuation, reports) = resume { continuation.resume(returning: reports) }
    }

    func wait() async -> [KafkaDeliveryReport] {
        await withCheckedContinuation { continuation in
            let done: [KafkaDeliveryReport]? = self.state.withLock { state in
                if state.remaining == 0 { return state.reports.map { $0! } }
                state.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}

/// The per-message opaque handed to librdkafka: retained while the message is in flight.
final class DeliveryContext {
    let tracker: DeliveryTracker
    let index: Int
    init(tracker: DeliveryTracker, index: Int) {
        self.tracker = tracker
        self.index = index
    }
}

private let deliveryReportCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    let context = Unmanaged<DeliveryContext>.fromOpaque(opaque).takeRetainedValue()
    let err = message.pointee.err
    let topic = String(cString: rd_kafka_topic_name(message.pointee.rkt))
    let report = KafkaDeliveryReport(
        topicPartition: KafkaTopicPartition(topic: topic, partition: message.pointee.partition),
        offset: message.pointee.offset,
        error: err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(.delivery, "delivery to \(topic)", err: err))
    context.tracker.complete(index: context.index, report: report)
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
