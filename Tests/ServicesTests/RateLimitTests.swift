import Foundation
import Testing
import TestSupport

@Suite("Rate limits and quotas across gateway replicas", .serialized, .timeLimit(.minutes(3)))
struct RateLimitTests {
    @Test("a burst above a tenant's limit, spread over two gateways, gets 429 with Retry-After and RateLimit headers; the other tenant is unaffected; event budgets and quotas hold")
    func sharedLimits() async throws {
        let run = TestEnvironment.unique("rl")
        let token = "rate-limit-admin-token-0123"
        let env = ["TW_TOPIC_RAW": "\(run)-raw", "TW_GROUP_PREFIX": run, "TW_ADMIN_TOKEN": token, "TW_RATE_LIMIT_BURST_SECONDS": "2"]
        try MockBrokerControl.createTopic("\(run)-raw", partitions: 2)
        let gateways = try (0..<2).map { _ in try ServiceProcess("gateway", environment: env) }
        for gateway in gateways { try await gateway.waitUntilReady() }
        let http = gateways.map { HTTPClient(port: $0.port) }

        func tenant(_ name: String, limits: String) async throws -> String {
            let reply = try await http[0].call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(run)-\#(name)","limits":\#(limits)}"#)
            return try #require(reply.json["api_key"] as? String, "\(reply.body)")
        }
        // 5 requests/s with a 2 s burst: 10 at once.
        let limited = try await tenant("a", limits: #"{"requests_per_second":5}"#)
        let other = try await tenant("b", limits: "{}")

        let start = ContinuousClock.now
        let replies = try await withThrowingTaskGroup(of: HTTPReply.self) { group in
            for i in 0..<40 { group.addTask { try await http[i % 2].call("GET", "/v1/tenant", token: limited) } }
            var all: [HTTPReply] = []
            for try await reply in group { all.append(reply) }
            return all
        }
        let elapsed = ContinuousClock.now - start
        let ok = replies.filter { $0.status == 200 }
        let refused = replies.filter { $0.status == 429 }
        // The budget is shared: both gateways together let through the burst plus what refilled meanwhile, no more.
        let refill = Int((Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * 5) + 1
        #expect(ok.count >= 10 && ok.count <= 10 + refill, "\(ok.count) allowed in \(elapsed)")
        #expect(ok.count + refused.count == 40)
        for reply in refused {
            #expect(reply.type == "rate_limited")
            #expect(Int(reply.header("Retry-After") ?? "") ?? 0 >= 1)
            #expect(reply.header("RateLimit-Policy") == #""requests";q=10;w=2"#)
            #expect(reply.header("RateLimit")?.hasPrefix(#""requests";r=0;t="#) == true)
        }
        #expect(ok.allSatisfy { $0.header("RateLimit-Policy") == #""requests";q=10;w=2"# })
        // Meanwhile the other tenant is served normally, on both gateways.
        for i in 0..<20 { #expect(try await http[i % 2].call("GET", "/v1/tenant", token: other).status == 200) }

        // Events: 100/s with a 2 s burst is 200 events at once; batches of 50 alternate between the gateways.
        let eventsKey = try await tenant("c", limits: #"{"events_per_second":100}"#)
        func batch(_ prefix: String, _ n: Int) -> String { "[" + (0..<n).map { validEvent("\(run)-\(prefix)-\($0)") }.joined(separator: ",") + "]" }
        var acceptedEvents = 0
        var eventReplies: [HTTPReply] = []
        let eventStart = ContinuousClock.now
        // Until the first refusal (8 batches outrun the budget on an idle machine; a loaded one posts slower and the
        // budget refills meanwhile, so it takes more), at most 40 batches.
        for i in 0..<40 {
            let reply = try await http[i % 2].call("POST", "/v1/events", token: eventsKey, body: batch("e\(i)", 50))
            eventReplies.append(reply)
            if reply.status == 202 { acceptedEvents += reply.json["accepted"] as? Int ?? 0 }
            if reply.status == 429 && i >= 7 { break }
        }
        let eventElapsed = ContinuousClock.now - eventStart
        let eventRefill = Int((Double(eventElapsed.components.seconds) + Double(eventElapsed.components.attoseconds) / 1e18) * 100) + 50
        #expect(acceptedEvents >= 200 && acceptedEvents <= 200 + eventRefill, "\(acceptedEvents) events in \(eventElapsed)")
        let eventRefusals = eventReplies.filter { $0.status == 429 }
        #expect(!eventRefusals.isEmpty && eventRefusals.allSatisfy { $0.type == "rate_limited" && $0.header("RateLimit-Policy") == #""events";q=200;w=2"# })
        let tooBig = try await http[0].call("POST", "/v1/events", token: eventsKey, body: batch("big", 250))
        #expect(tooBig.status == 413 && tooBig.type == "batch_exceeds_rate_limit")
        // No quota set: this month's usage is still counted, across both gateways, refused events not included.
        let counted = try await http[1].call("GET", "/v1/tenant", token: eventsKey)
        #expect(counted.json["events_this_month"] as? Int == acceptedEvents, "\(counted.json)")

        // Invalid events cost the budget too (the gateway parsed them): 100 of them empty a budget of 100 (50 a second
        // over 2 s), and 100 valid ones need 2 s of refill. A pair posted within 1.5 s must be refused; a loaded machine
        // can take longer than that between the two posts, so the pair is tried again, each time for a new tenant (a
        // full budget), and only a fast pair is judged.
        var judged = false
        for attempt in 0..<10 where !judged {
            let workKey = try await tenant("w\(attempt)", limits: #"{"events_per_second":50}"#)
            let invalid = "[" + (0..<100).map { "{\"event_id\":\"\(run)-w\(attempt)-\($0)\",\"input_tokens\":-1}" }.joined(separator: ",") + "]"
            let pairStart = ContinuousClock.now
            let refusedInvalid = try await http[0].call("POST", "/v1/events", token: workKey, body: invalid)
            #expect(refusedInvalid.status == 400 && refusedInvalid.type == "invalid_events")
            let afterInvalid = try await http[1].call("POST", "/v1/events", token: workKey, body: batch("w-valid\(attempt)", 100))
            guard ContinuousClock.now - pairStart < .milliseconds(1500) else { continue }
            judged = true
            #expect(afterInvalid.status == 429 && afterInvalid.type == "rate_limited", "\(afterInvalid.status) \(afterInvalid.body.prefix(200))")
        }
        #expect(judged, "no pair of posts within 1.5 s in 10 tries")

        // A monthly quota of 120 events: 100 fit, 50 more do not (nothing of them counts), 20 do.
        let quotaKey = try await tenant("d", limits: #"{"monthly_event_quota":120}"#)
        #expect(try await http[0].call("POST", "/v1/events", token: quotaKey, body: batch("q1", 100)).status == 202)
        let over = try await http[1].call("POST", "/v1/events", token: quotaKey, body: batch("q2", 50))
        #expect(over.status == 429 && over.type == "quota_exceeded" && Int(over.header("Retry-After") ?? "") ?? 0 > 0)
        #expect(try await http[1].call("POST", "/v1/events", token: quotaKey, body: batch("q3", 20)).status == 202)
        let usage = try await http[0].call("GET", "/v1/tenant", token: quotaKey)
        #expect(usage.json["events_this_month"] as? Int == 120)

        for gateway in gateways { #expect(try gateway.stop() == 0) }
    }
}
