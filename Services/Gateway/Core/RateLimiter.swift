import Foundation
import Logging
import Metrics
import Redis

/// Per-tenant rate limits and monthly quotas, kept in Redis so every gateway replica draws from the same budget.
///
/// Rates use GCRA (the generic cell rate algorithm, a token bucket stored as one timestamp): a tenant may send
/// `rate x burst` units at once and `rate` per second sustained. The clock is Redis's own (`TIME` inside the script),
/// so replicas with skewed clocks still agree. The monthly quota is a counter per calendar month (UTC), checked and
/// reserved in the same script as the event rate, so a rejected request consumes neither.
///
/// Redis unreachable: the request is let through (counted in `tw_gateway_rate_limit_errors_total`). Limits protect
/// the service; refusing all traffic because a cache is down would be the larger harm.
public final class RateLimiter: Sendable {
    public struct Configuration: Sendable {
        /// Default events per second per tenant (0: unlimited).
        public var eventsPerSecond: Int
        /// Default requests per second per tenant (0: unlimited).
        public var requestsPerSecond: Int
        /// Seconds of rate a tenant may spend at once.
        public var burstSeconds: Double
        /// Default monthly event quota (0: none).
        public var monthlyEventQuota: Int64

        public init(eventsPerSecond: Int = 50_000, requestsPerSecond: Int = 1_000, burstSeconds: Double = 2, monthlyEventQuota: Int64 = 0) {
            self.eventsPerSecond = eventsPerSecond
            self.requestsPerSecond = requestsPerSecond
            self.burstSeconds = burstSeconds
            self.monthlyEventQuota = monthlyEventQuota
        }
    }

    /// The outcome of one check.
    public struct Decision: Sendable, Equatable {
        public enum Outcome: Sendable, Equatable {
            case allowed
            case rateLimited
            case quotaExceeded
            /// More units in one request than the budget can ever hold: retrying cannot help.
            case exceedsBurst
        }

        public var outcome: Outcome
        /// Which budget: "requests" or "events".
        public var policy: String
        /// The budget's size (units at once) and window (seconds), for the RateLimit-Policy header; nil if unlimited.
        public var limit: Int?
        public var windowSeconds: Int
        public var remaining: Int
        /// Seconds until the budget is full again (RateLimit `t`), or until the request may be retried when refused.
        public var resetSeconds: Int
        public var retryAfterSeconds: Int

        static func unlimited(_ policy: String) -> Decision {
            Decision(outcome: .allowed, policy: policy, limit: nil, windowSeconds: 1, remaining: 0, resetSeconds: 0, retryAfterSeconds: 0)
        }
    }

    let redis: RedisClient
    let configuration: Configuration
    let logger: Logger
    private let errors = Counter(label: "tw_gateway_rate_limit_errors_total")
    private let refusedRequests = Counter(label: "tw_gateway_rate_limited_total", dimensions: [("policy", "requests")])
    private let refusedEvents = Counter(label: "tw_gateway_rate_limited_total", dimensions: [("policy", "events")])
    private let refusedQuota = Counter(label: "tw_gateway_rate_limited_total", dimensions: [("policy", "quota")])

    public init(redis: RedisClient, configuration: Configuration, logger: Logger) {
        self.redis = redis
        self.configuration = configuration
        self.logger = logger
    }

    /// Takes `cost` requests (one, or more for a request that does the work of several) from the tenant's request
    /// budget.
    public func checkRequest(tenant: String, limits: TenantLimits, cost: Int = 1) async -> Decision {
        let rate = limits.requestsPerSecond ?? self.configuration.requestsPerSecond
        let decision = await self.check(policy: "requests", bucket: "tw:rl:v1:\(tenant):requests", rate: rate, cost: cost, quotaKey: nil, quota: 0)
        if decision.outcome != .allowed { self.refusedRequests.increment() }
        return decision
    }

    /// Takes `count` events from the tenant's event rate budget: every event a request makes the gateway parse,
    /// valid or not, so a stream of invalid events costs the sender what it costs the gateway. Checked before the
    /// events are decoded.
    public func checkEventWork(tenant: String, limits: TenantLimits, count: Int) async -> Decision {
        let rate = limits.eventsPerSecond ?? self.configuration.eventsPerSecond
        let decision = await self.check(policy: "events", bucket: "tw:rl:v1:\(tenant):events", rate: rate, cost: count, quotaKey: nil, quota: 0)
        if decision.outcome != .allowed { self.refusedEvents.increment() }
        return decision
    }

    /// Counts `count` accepted events against the tenant's monthly quota (refused, all of them, when they do not
    /// fit). The month's counter is kept whether or not a quota is set, so a tenant's usage is always known.
    public func checkEvents(tenant: String, limits: TenantLimits, count: Int, now: Date = Date()) async -> Decision {
        let quota = limits.monthlyEventQuota ?? self.configuration.monthlyEventQuota
        let decision = await self.check(
            policy: "events", bucket: "tw:rl:v1:\(tenant):events", rate: 0, cost: count,
            quotaKey: Self.quotaKey(tenant: tenant, now: now), quota: quota, now: now)
        if decision.outcome == .quotaExceeded { self.refusedQuota.increment() }
        return decision
    }

    /// Gives back quota reserved for events the broker then refused (best effort).
    public func refund(tenant: String, count: Int, limits: TenantLimits, now: Date = Date()) async {
        guard count > 0 else { return }
        _ = try? await self.redis.command(["DECRBY", RedisArgument(Self.quotaKey(tenant: tenant, now: now)), RedisArgument(count)])
    }

    /// Events counted against the tenant's quota this month.
    public func quotaUsed(tenant: String, now: Date = Date()) async throws -> Int64 {
        try await self.redis.command(["GET", RedisArgument(Self.quotaKey(tenant: tenant, now: now))]).int ?? 0
    }

    static func quotaKey(tenant: String, now: Date) -> String {
        let c = Calendar.utc.dateComponents([.year, .month], from: now)
        return "tw:quota:v1:\(tenant):\(c.year!)-\(c.month!)"
    }

    /// Seconds from `now` to the first instant of the next UTC month.
    static func secondsToNextMonth(_ now: Date) -> Int {
        let start = Calendar.utc.dateInterval(of: .month, for: now)!
        return max(1, Int(start.end.timeIntervalSince(now).rounded(.up)))
    }

    private func check(policy: String, bucket: String, rate: Int, cost: Int, quotaKey: String?, quota: Int64, now: Date = Date()) async -> Decision {
        guard rate > 0 || quotaKey != nil else { return .unlimited(policy) }
        let capacity = rate > 0 ? max(1, Int((Double(rate) * self.configuration.burstSeconds).rounded())) : 0
        // Microseconds of budget one unit uses; 0 turns the rate check off in the script.
        let interval = rate > 0 ? 1_000_000.0 / Double(rate) : 0
        if rate > 0 && cost > capacity {
            return Decision(outcome: .exceedsBurst, policy: policy, limit: capacity, windowSeconds: max(1, Int(self.configuration.burstSeconds.rounded(.up))), remaining: 0, resetSeconds: 0, retryAfterSeconds: 0)
        }
        let reply: RedisValue
        do {
            reply = try await self.redis.command([
                "EVAL", RedisArgument(Self.script), "2", RedisArgument(bucket), RedisArgument(quotaKey ?? bucket + ":noquota"),
                RedisArgument(String(interval)), RedisArgument(capacity), RedisArgument(cost), RedisArgument(quotaKey == nil ? 0 : quota),
                RedisArgument(Self.secondsToNextMonth(now) + 86_400 * 7), RedisArgument(quotaKey == nil ? 0 : 1),
            ])
        } catch {
            self.errors.increment()
            self.logger.warning("Rate limit check failed; letting the request through", metadata: ["error": "\(error)"])
            return .unlimited(policy)
        }
        guard let values = reply.array?.compactMap(\.int), values.count == 4 else {
            self.errors.increment()
            return .unlimited(policy)
        }
        let (code, waitMicros, remaining, resetMicros) = (values[0], values[1], values[2], values[3])
        let seconds: (Int64) -> Int = { Int(($0 + 999_999) / 1_000_000) }
        var decision = Decision(
            outcome: .allowed, policy: policy, limit: rate > 0 ? capacity : nil, windowSeconds: max(1, Int(self.configuration.burstSeconds.rounded(.up))),
            remaining: Int(remaining), resetSeconds: seconds(resetMicros), retryAfterSeconds: 0)
        switch code {
        case 1:
            decision.outcome = .rateLimited
            decision.retryAfterSeconds = max(1, seconds(waitMicros))
        case 2:
            decision.outcome = .quotaExceeded
            decision.retryAfterSeconds = Self.secondsToNextMonth(now)
        default: break
        }
        return decision
    }

    /// KEYS[1]: the GCRA bucket (its theoretical arrival time, microseconds); KEYS[2]: the month's quota counter.
    /// ARGV: microseconds per unit (0: no rate), capacity, cost, quota (0: none), quota key TTL, 1 to count the
    /// cost in KEYS[2] (usage is counted also when no quota limits it).
    /// Returns {code (0 ok, 1 rate, 2 quota), wait us, remaining units, us until full}.
    static let script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval = tonumber(ARGV[1])
        local capacity = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local quota = tonumber(ARGV[4])
        local tat = now
        local newTat = now
        if interval > 0 then
            tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
            newTat = tat + cost * interval
            local horizon = capacity * interval
            if newTat - now > horizon then
                local remaining = math.floor((horizon - (tat - now)) / interval)
                return {1, math.ceil(newTat - now - horizon), math.max(remaining, 0), math.ceil(tat - now)}
            end
        end
        if quota > 0 then
            local used = tonumber(redis.call('GET', KEYS[2]) or 0)
            if used + cost > quota then return {2, 0, math.max(quota - used, 0), 0} end
        end
        if ARGV[6] == '1' then
            redis.call('INCRBY', KEYS[2], cost)
            redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
        end
        if interval > 0 then
            redis.call('SET', KEYS[1], string.format('%.0f', newTat), 'PX', math.ceil((newTat - now) / 1000) + 1)
            return {0, 0, math.floor((capacity * interval - (newTat - now)) / interval), math.ceil(newTat - now)}
        end
        if quota == 0 then return {0, 0, 0, 0} end
        return {0, 0, math.max(quota - tonumber(redis.call('GET', KEYS[2]) or 0), 0), 0}
        """
}

extension Calendar {
    static let utc: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()
}
