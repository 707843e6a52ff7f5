import Foundation
import Kafka
import Synchronization
import Testing
import TestSupport

@Suite("Kafka against the local broker", .serialized, .timeLimit(.minutes(3)))
struct KafkaIntegrationTests {
    @Test("produce and consume keep keys, values and headers; one key stays on one partition")
    func roundTrip() async throws {
        let topic = TestEnvironment.unique("roundtrip")
        try MockBrokerControl.createTopic(topic, partitions: 4)
        let producer = try makeProducer()
        let messages = (0..<200).map { i in
            KafkaProducerMessage(
                topic: topic, key: Array("tenant-\(i % 7)".utf8), value: Array("value-\(i)".utf8),
                headers: [KafkaHeader(key: "index", string: "\(i)"), KafkaHeader(key: "kind", string: "test")])
        }
        let reports = try await producer.send(messages)
        #expect(reports.allSatisfy { $0.error == nil && $0.offset >= 0 })
        await producer.shutdown()

        let consumer = try makeConsumer(group: TestEnvironment.unique("g"))
        try consumer.subscribe(topics: [topic])
        let received = try await within(.seconds(60), "consume 200") { try await collect(consumer, count: 200) }
        await consumer.close()

        #expect(received.count == 200)
        var partitionOfKey: [String: Int32] = [:]
        for message in received {
            let index = Int(String(decoding: message.header("index") ?? [], as: UTF8.self))!
            #expect(message.value == Array("value-\(index)".utf8))
            #expect(message.key == Array("tenant-\(index % 7)".utf8))
            #expect(message.header("kind") == Array("test".utf8))
            let key = String(decoding: message.key!, as: UTF8.self)
            #expect(partitionOfKey[key, default: message.partition] == message.partition)
            partitionOfKey[key] = message.partition
        }
        #expect(Set(received.map { String(decoding: $0.value, as: UTF8.self) }).count == 200)
        #expect(Set(partitionOfKey.values).count > 1, "keys spread over partitions")
    }

    @Test("two members split the partitions and the survivor takes all back when one leaves")
    func groupRebalance() async throws {
        let topic = TestEnvironment.unique("rebalance")
        try MockBrokerControl.createTopic(topic, partitions: 4)
        let group = TestEnvironment.unique("g")
        let all = Set((0..<4).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) })

        let handlerA = RecordingRebalanceHandler()
        let a = try makeConsumer(group: group, handler: handlerA)
        try a.subscribe(topics: [topic])
        let pollA = Task { for try await _ in a.batches() {} }
        try await within(.seconds(30), "A owns all") { await handlerA.waitUntil { $0 == all } }

        let handlerB = RecordingRebalanceHandler()
        let b = try makeConsumer(group: group, handler: handlerB)
        try b.subscribe(topics: [topic])
        let pollB = Task { for try await _ in b.batches() {} }
        try await within(.seconds(60), "A and B split") {
            await handlerB.waitUntil { !$0.isEmpty }
            await handlerA.waitUntil { $0.count < 4 }
        }
        // Give the cooperative protocol its second round: ownership must end up disjoint and complete.
        try await within(.seconds(60), "split settles") {
            await handlerA.waitUntil { $0.count == 2 }
            await handlerB.waitUntil { $0.count == 2 }
        }
        #expect(handlerA.assigned.isDisjoint(with: handlerB.assigned))
        #expect(handlerA.assigned.union(handlerB.assigned) == all)

        await b.close()
        _ = try? await pollB.value
        #expect(handlerB.assigned.isEmpty, "B saw its partitions revoked on close")
        try await within(.seconds(60), "A takes all back") { await handlerA.waitUntil { $0 == all } }
        await a.close()
        _ = try? await pollA.value
    }

    @Test("a member stopped after joining its group but before its first assignment closes and is freed without aborting the process (librdkafka #4312 in Debian's 2.0.2)")
    func closedBeforeFirstAssignment() async throws {
        // A broker of the test's own: every SyncGroup it answers fails, which no other suite may see.
        let dir = NSTemporaryDirectory() + "tw-\(TestEnvironment.unique("joining"))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let broker = try ChildProcess([Subprocess.projectRoot + "/.state/bin/tokenwatch-mockbroker", "--bootstrap-file", dir + "/bootstrap",
                                       "--control-file", dir + "/control", "--brokers", "1"], outputPath: dir + "/broker.log")
        try await eventually(.seconds(10), "the private broker") { ((try? String(contentsOfFile: dir + "/control", encoding: .utf8)) ?? "").contains(":") }
        let bootstrap = try String(contentsOfFile: dir + "/bootstrap", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let control = try String(contentsOfFile: dir + "/control", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let topic = TestEnvironment.unique("joining")
        try MockBrokerControl.createTopic(topic, partitions: 2, control: control)
        // SyncGroup (API key 14) answered REBALANCE_IN_PROGRESS (27): the member joins, and rejoins, but is never assigned,
        // as a pod is while its group waits for a dead member's session to expire.
        try MockBrokerControl.send("ERRORS 14 100000 27", control: control)

        let handler = RecordingRebalanceHandler()
        var consumer: KafkaConsumer? = try makeConsumer(group: TestEnvironment.unique("g"), handler: handler, brokers: bootstrap)
        try consumer!.subscribe(topics: [topic])
        let member = consumer!
        let poll = Task { for try await _ in member.batches() {} }
        try await eventually(.seconds(30), "the member has joined") { member.memberID != nil }
        await member.close()
        _ = try? await poll.value
        #expect(handler.assigned.isEmpty && handler.everAssigned == false, "the scenario: joined, never assigned")
        // Dropping the last reference frees the client; with 2.0.2's rd_kafka_destroy that aborted the test process here.
        consumer = nil
        _ = consumer
        broker.stop()
    }

    @Test("with a linger, a backlog comes in batches of the maximum, and the rest as soon as a poll finds nothing more")
    func lingerGathersPolls() async throws {
        let topic = try await producedTopic("linger", partitions: 4, count: 2500, keys: 13)
        // A linger far past the test's limit: the last batch can only come from a poll that found nothing.
        let sizes = try await batchSizes(topic, count: 2500, within: .seconds(60)) { $0.batches(maxMessages: 1000, linger: .seconds(3600)) }
        #expect(sizes == [1000, 1000, 500])
    }

    @Test("with a linger, a batch's first poll hands over what is queued instead of waiting out its timeout for the maximum")
    func promptFirstPoll() async throws {
        let topic = try await producedTopic("prompt", partitions: 2, count: 50, keys: 5)
        // A poll timeout past the deadline, and a linger over before a second poll: every batch is one poll, which
        // without `prompt` would wait its whole 40 s for 1000 messages that never come (the deadline then fails the
        // test once that poll returns; a blocked poll cannot be interrupted).
        let sizes = try await batchSizes(topic, count: 50, within: .seconds(20)) {
            $0.batches(maxMessages: 1000, pollTimeout: .seconds(40), linger: .nanoseconds(1))
        }
        #expect(sizes.reduce(0, +) == 50)
    }

    @Test("with a quiet longer than a poll, a producer's pause shorter than the quiet does not cut a lingering batch")
    func quietRidesOutPauses() async throws {
        let topic = TestEnvironment.unique("quiet")
        try MockBrokerControl.createTopic(topic, partitions: 2)
        let producer = try makeProducer()
        func send(_ range: Range<Int>) async throws {
            try await producer.sendAll(range.map { KafkaProducerMessage(topic: topic, key: Array("k\($0 % 3)".utf8), value: Array("\($0)".utf8)) })
        }
        let consumer = try makeConsumer(group: TestEnvironment.unique("g"))
        try consumer.subscribe(topics: [topic])
        let batches = Mutex<[Int]>([])
        let reading = Task {
            for try await batch in consumer.batches(maxMessages: 1000, pollTimeout: .milliseconds(100), linger: .seconds(60), quiet: .seconds(3)) {
                batches.withLock { $0.append(batch.count) }
            }
        }
        // One message first, handed over once quiet: the member is then assigned and waiting.
        try await send(0..<1)
        try await eventually(.seconds(30), "the first message in a batch of its own") { batches.withLock { $0 } == [1] }
        // Fifty, a pause of several polls (the stimulus, shorter than the quiet), fifty more: one batch.
        try await send(1..<51)
        try await Task.sleep(for: .milliseconds(700))
        try await send(51..<101)
        try await eventually(.seconds(30), "the hundred handed over") { batches.withLock { $0.reduce(0, +) } == 101 }
        #expect(batches.withLock { $0 } == [1, 100], "a pause of 700 ms, seven poll timeouts, did not end the batch")
        reading.cancel()
        await consumer.close()
        await producer.shutdown()
    }

    @Test("committed offsets resume a new member with no loss and no duplicate")
    func commitAndResume() async throws {
        let topic = try await producedTopic("resume", partitions: 3, count: 300, keys: 11)
        let group = TestEnvironment.unique("g")

        // First member: processes 120 messages, commits exactly those, leaves.
        let first = try makeConsumer(group: group)
        try first.subscribe(topics: [topic])
        var processed: [KafkaMessage] = []
        try await within(.seconds(60), "first 120") {
            var seen: [KafkaMessage] = []
            for try await batch in first.batches() {
                seen += batch.prefix(120 - seen.count)
                if seen.count == 120 { break }
            }
            return seen
        }.forEach { processed.append($0) }
        var next: [KafkaTopicPartition: Int64] = [:]
        for m in processed { next[m.topicPartition] = max(next[m.topicPartition] ?? 0, m.offset + 1) }
        try await first.commit(next)
        let committed = try await first.committed(Array(next.keys))
        #expect(committed.mapValues { $0 ?? -1 } == next)
        await first.close()

        // Second member of the same group: picks up exactly where the commit left off.
        let second = try makeConsumer(group: group)
        try second.subscribe(topics: [topic])
        let rest = try await within(.seconds(60), "remaining 180") { try await collect(second, count: 180) }
        await second.close()

        let values = (processed + rest).map { String(decoding: $0.value, as: UTF8.self) }
        #expect(values.count == 300)
        #expect(Set(values) == Set((0..<300).map(String.init)))
    }

    @Test("a rebalance handler's start offsets override the committed ones")
    func handlerStartOffsets() async throws {
        let topic = TestEnvironment.unique("seek")
        try MockBrokerControl.createTopic(topic, partitions: 1)
        let producer = try makeProducer()
        try await producer.sendAll((0..<50).map { KafkaProducerMessage(topic: topic, partition: 0, key: nil, value: Array("\($0)".utf8)) })
        await producer.shutdown()
        let tp = KafkaTopicPartition(topic: topic, partition: 0)
        let consumer = try makeConsumer(group: TestEnvironment.unique("g"), handler: RecordingRebalanceHandler(starts: [tp: .offset(40)]))
        try consumer.subscribe(topics: [topic])
        let got = try await within(.seconds(60), "from 40") { try await collect(consumer, count: 10) }
        #expect(got.map(\.offset) == Array(40..<50))
        // Seek back and read again; pause/resume round-trip on an assigned partition.
        try consumer.pause([tp])
        try consumer.resume([tp])
        try await consumer.seek([tp: .offset(45)])
        let again = try await within(.seconds(60), "from 45") { try await collect(consumer, count: 5) }
        #expect(again.map(\.offset) == Array(45..<50))
        await consumer.close()
    }

    @Test("shutdown flushes every queued message before the producer stops")
    func flushOnShutdown() async throws {
        let topic = TestEnvironment.unique("flush")
        try MockBrokerControl.createTopic(topic, partitions: 2)
        // A long linger keeps messages queued locally, so only the shutdown flush can deliver them in time.
        let producer = try makeProducer(lingerMs: 20_000)
        let count = 5000
        let sending = Task {
            try await producer.send((0..<count).map { KafkaProducerMessage(topic: topic, key: nil, value: Array("\($0)".utf8)) })
        }
        try await within(.seconds(30), "all queued") {
            while producer.queuedMessages < count { try await Task.sleep(for: .milliseconds(5)) }
        }
        await producer.shutdown()
        let reports = try await sending.value
        #expect(reports.count == count)
        #expect(reports.allSatisfy { $0.error == nil })
        await #expect(throws: KafkaError.self) { try await producer.send([KafkaProducerMessage(topic: topic, key: nil, value: [1])]) }

        let consumer = try makeConsumer(group: TestEnvironment.unique("g"))
        try consumer.subscribe(topics: [topic])
        let got = try await within(.seconds(60), "consume all") { try await collect(consumer, count: count) }
        await consumer.close()
        #expect(Set(got.map { String(decoding: $0.value, as: UTF8.self) }).count == count)
    }
}
