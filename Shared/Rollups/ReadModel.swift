import Events
import Redis

/// The hot read model of closed 1-minute windows in Redis, kept by the query service from llm.rollups.v1 and read
/// by the gateway, so the common queries (the last hours of a tenant) are answered without Postgres.
///
/// Layout: one hash per tenant and hour, `tw:rm:v2:<tenant>:h:<hour start µs>`, field `<window start µs>|<series>` (the
/// series' dimension values joined by U+001F, `SeriesKey.fieldText`; v1 fields held provider and model only),
/// value `<version>|<record JSON>`, expiring after `retentionSeconds`; a write keeps the highest version (a Lua
/// compare-and-set, so replays and out-of-order corrections cannot go back). `tw:rm:v2:<tenant>:horizon` is the
/// start of the latest window published for the tenant: the aggregator publishes a partition's closed windows in
/// window order, so every window that starts before the horizon is in the read model if it had any traffic. A
/// reader trusts the read model below the horizon and asks Postgres for the rest. Losing Redis loses only speed:
/// without a horizon every read goes to Postgres.
public struct ReadModel: Sendable {
    public let redis: RedisClient
    public let retentionSeconds: Int

    public init(redis: RedisClient, retentionSeconds: Int = 26 * 3600) {
        self.redis = redis
        self.retentionSeconds = retentionSeconds
    }

    static let hourMicros: Int64 = 3_600_000_000

    static func hourKey(_ tenant: String, _ windowStart: Int64) -> String {
        "tw:rm:v2:\(tenant):h:\(windowStart / hourMicros * hourMicros)"
    }

    static func horizonKey(_ tenant: String) -> String { "tw:rm:v2:\(tenant):horizon" }

    static let setIfNewer: RedisArgument = """
        local cur = redis.call('HGET', KEYS[1], ARGV[1])
        if cur then
          local v = tonumber(string.match(cur, '^(%d+)|'))
          if v and v >= tonumber(ARGV[2]) then return 0 end
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
        redis.call('EXPIRE', KEYS[1], ARGV[4])
        return 1
        """

    static let raiseHorizon: RedisArgument = """
        local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
        return 1
        """

    /// Writes 1-minute `records` (one pipelined round trip), then raises each tenant's horizon.
    public func apply(_ records: [RollupRecord]) async throws {
        let minute = records.filter { $0.granularity == .minute }
        guard !minute.isEmpty else { return }
        var commands: [[RedisArgument]] = minute.map { stored in
            // Without the distinct-user sketches: thousands of registers per window that the hot queries never read
            // (distinct users are answered from Postgres).
            var record = stored
            record.values.users = DistinctSketch()
            record.values.sessions = DistinctSketch()
            let field = "\(record.key.windowStart)|\(record.key.series.fieldText)"
            return ["EVAL", Self.setIfNewer, "1", RedisArgument(Self.hourKey(record.key.series.tenant, record.key.windowStart)),
                    RedisArgument(field), RedisArgument(record.version), RedisArgument(record.jsonBytes()), RedisArgument(self.retentionSeconds)]
        }
        var horizons: [String: Int64] = [:]
        for record in minute { horizons[record.key.series.tenant] = max(horizons[record.key.series.tenant] ?? 0, record.key.windowStart) }
        for (tenant, start) in horizons.sorted(by: { $0.key < $1.key }) {
            commands.append(["EVAL", Self.raiseHorizon, "1", RedisArgument(Self.horizonKey(tenant)), RedisArgument(start), RedisArgument(self.retentionSeconds)])
        }
        for reply in try await self.redis.pipeline(commands) {
            if case .error(let message) = reply { throw RedisError(.server, "read model: \(message)") }
        }
    }

    /// The tenant's horizon: windows starting before it are complete in the read model. Nil when there is none.
    public func horizon(tenant: String) async throws -> Int64? {
        try await self.redis.command(["GET", RedisArgument(Self.horizonKey(tenant))]).int
    }

    /// The tenant's 1-minute windows starting in [from, to) of the series `include` accepts. Series are chosen from
    /// the field names, so only the records returned are decoded.
    public func windows(tenant: String, from: Int64, to: Int64, include: (SeriesKey) -> Bool = { _ in true }) async throws -> [RollupRecord] {
        var hour = from / Self.hourMicros * Self.hourMicros
        var commands: [[RedisArgument]] = []
        while hour < to {
            commands.append(["HGETALL", RedisArgument(Self.hourKey(tenant, hour))])
            hour += Self.hourMicros
        }
        var records: [RollupRecord] = []
        for reply in try await self.redis.pipeline(commands) {
            guard let items = reply.array else { continue }
            var i = 0
            while i + 1 < items.count {
                defer { i += 2 }
                guard let field = items[i].string else { continue }
                let parts = field.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, let series = SeriesKey(tenant: tenant, fieldText: parts[1]), include(series) else { continue }
                guard case .bulkString(let value) = items[i + 1], let bar = value.firstIndex(of: UInt8(ascii: "|")) else { continue }
                let record = try RollupRecord(json: Array(value[(bar + 1)...]))
                if record.key.windowStart >= from && record.key.windowStart < to { records.append(record) }
            }
        }
        return records
    }
}
