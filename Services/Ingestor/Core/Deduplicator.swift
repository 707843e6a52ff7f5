import Redis

/// What the dedupe store says of one event.
public enum DedupeVerdict: Sendable, Equatable {
    /// First time this event_id is seen: process it.
    case first
    /// Seen before at this very (partition, offset): a replay after a crash or rebalance. Process it again; the
    /// aggregator skips what it already applied.
    case replay
    /// Seen before at another offset: a client retry. Drop and count it.
    case duplicate
}

/// Remembers each tenant's event_ids with the raw (partition, offset) where each was first seen (DESIGN.md,
/// "Delivery"), in Redis with a TTL. One pipelined round trip per batch for the SET NX commands, and one more only
/// when some ids were already there.
public struct Deduplicator: Sendable {
    public let redis: RedisClient
    /// How long an event_id is remembered. Client retries later than this are not caught.
    public let ttlSeconds: Int

    public init(redis: RedisClient, ttlSeconds: Int) {
        self.redis = redis
        self.ttlSeconds = ttlSeconds
    }

    public struct Item: Sendable {
        public var tenant: String
        public var eventID: String
        public var partition: Int32
        public var offset: Int64

        public init(tenant: String, eventID: String, partition: Int32, offset: Int64) {
            self.tenant = tenant
            self.eventID = eventID
            self.partition = partition
            self.offset = offset
        }
    }

    /// Tenant ids and event ids cannot contain ':' (the schema allows letters, digits and -_. in tenant ids), so
    /// the key is unambiguous; the version prefix lets the format change without old keys being misread.
    static func key(_ item: Item) -> RedisArgument { RedisArgument("tw:dedupe:v1:\(item.tenant):\(item.eventID)") }

    public func classify(_ items: [Item]) async throws -> [DedupeVerdict] {
        if items.isEmpty { return [] }
        let ttl = RedisArgument(self.ttlSeconds)
        let sets = items.map { item -> [RedisArgument] in
            ["SET", Self.key(item), RedisArgument("\(item.partition):\(item.offset)"), "NX", "EX", ttl]
        }
        let replies = try await self.redis.pipeline(sets)
        var verdicts = [DedupeVerdict](repeating: .first, count: items.count)
        var lookups: [Int] = []
        for (i, reply) in replies.enumerated() {
            switch reply {
            case .simpleString: verdicts[i] = .first
            case .null: lookups.append(i)
            case .error(let message): throw RedisError(.server, "dedupe SET: \(message)")
            default: throw RedisError(.protocolError, "dedupe SET: unexpected reply \(reply)")
            }
        }
        if lookups.isEmpty { return verdicts }
        let gets = try await self.redis.pipeline(lookups.map { ["GET", Self.key(items[$0])] })
        for (n, i) in lookups.enumerated() {
            let item = items[i]
            // A key that expired between SET and GET: treat the event as new rather than drop it.
            guard let seenAt = gets[n].string else { verdicts[i] = .first; continue }
            verdicts[i] = seenAt == "\(item.partition):\(item.offset)" ? .replay : .duplicate
        }
        return verdicts
    }
}
