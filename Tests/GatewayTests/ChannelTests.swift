import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Kafka
import Postgres
import Testing
import TestSupport

@Suite("Notification channels API", .serialized, .timeLimit(.minutes(2)))
struct ChannelTests {
    @Test("channels: created with a secret shown once, listed without it, tested, logged, deleted; other tenants see none; SSRF targets refused naming the url")
    func channels() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("chan"), other = TestEnvironment.unique("chan")
        _ = try await gateway.keys.createTenant(id: tenant, name: "C")
        _ = try await gateway.keys.createTenant(id: other, name: "O")
        let admin = try #require(try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.admin, .query])).key
        let otherAdmin = try #require(try await gateway.keys.createKey(tenant: other, name: "admin", scopes: [.admin])).key
        let query = try #require(try await gateway.keys.createKey(tenant: tenant, name: "q", scopes: [.query])).key
        try await gateway.app.test(.router) { client in
            // This gateway allows http and loopback (as a test operator would); everything else stays refused.
            for (url, fragment) in [("ftp://hooks.example.com/", "must be an https URL"), ("https://user:pw@hooks.example.com/", "credentials"),
                                    ("https://10.0.0.1/hook", "a private address"), ("https://169.254.169.254/latest/meta-data", "link-local"),
                                    ("https://[fc00::1]/hook", "unique-local"), ("https://100.64.0.1/", "carrier-grade NAT")] {
                let refused = try await client.call(.post, "/v1/channels", token: admin, body: #"{"name":"ops","url":"\#(url)"}"#)
                #expect(refused.status == .badRequest && refused.text.contains("url: ") && refused.text.contains(fragment), "\(url): \(refused.text)")
            }
            #expect(try await client.call(.post, "/v1/channels", token: query, body: #"{"name":"ops","url":"http://127.0.0.1:9/hook"}"#).status == .forbidden)
            let created = try await client.call(.post, "/v1/channels", token: admin, body: #"{"name":"ops","url":"http://127.0.0.1:9/hook","min_severity":"critical","metrics":["error_rate"]}"#)
            #expect(created.status == .created && created.headers[.cacheControl] == "no-store")
            let id = try #require(created.body["channel_id"] as? String)
            #expect((created.body["secret"] as? String)?.hasPrefix("whsec_") == true)
            #expect(created.body["min_severity"] as? String == "critical" && created.body["metrics"] as? [String] == ["error_rate"])
            let listed = try await client.call(.get, "/v1/channels", token: admin)
            let items = listed.body["items"] as? [[String: Any]] ?? []
            #expect(items.count == 1 && items[0]["channel_id"] as? String == id && items[0]["secret"] == nil && !listed.text.contains("whsec_"))
            #expect((try await client.call(.get, "/v1/channels", token: otherAdmin).body["items"] as? [Any])?.isEmpty == true, "row-level security")
            #expect(try await client.call(.delete, "/v1/channels/\(id)", token: otherAdmin).status == .notFound)

            let test = try await client.call(.post, "/v1/channels/\(id)/test", token: admin)
            #expect(test.status == .accepted)
            let log = try await client.call(.get, "/v1/channels/\(id)/deliveries", token: admin)
            let entries = log.body["items"] as? [[String: Any]] ?? []
            #expect(entries.count == 1 && entries[0]["message_id"] as? String == test.body["message_id"] as? String && entries[0]["state"] as? String == "pending" && entries[0]["type"] as? String == "test")

            #expect(try await client.call(.delete, "/v1/channels/\(id)", token: admin).status == .noContent)
            #expect(try await client.call(.delete, "/v1/channels/\(id)", token: admin).status == .notFound)
            #expect(try await client.call(.get, "/v1/channels/\(id)/deliveries", token: admin).status == .notFound)
        }
        await gateway.producer.shutdown()
    }

    @Test("channel kinds and routing: Slack and Alertmanager with provider and model filters and caps (Alertmanager uncapped by default); bad values named; a secret rotated with an overlap")
    func kindsAndRotation() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("chk"), other = TestEnvironment.unique("chk")
        _ = try await gateway.keys.createTenant(id: tenant, name: "C")
        _ = try await gateway.keys.createTenant(id: other, name: "O")
        let admin = try #require(try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.admin])).key
        let otherAdmin = try #require(try await gateway.keys.createKey(tenant: other, name: "admin", scopes: [.admin])).key
        try await gateway.app.test(.router) { client in
            let slack = try await client.call(.post, "/v1/channels", token: admin, body: #"{"name":"s","url":"http://127.0.0.1:9/services/T0/B0/XsecretX","kind":"slack","providers":["anthropic"],"models":["claude-3-5-sonnet@20240620","gpt-4o"],"max_per_hour":5}"#)
            #expect(slack.body["url"] as? String == "http://127.0.0.1:9/services/T0/B0/XsecretX", "shown whole once, at creation")
            #expect(slack.status == .created && slack.body["kind"] as? String == "slack" && slack.body["providers"] as? [String] == ["anthropic"]
                    && slack.body["models"] as? [String] == ["claude-3-5-sonnet@20240620", "gpt-4o"] && slack.body["max_per_hour"] as? Int == 5, "\(slack.text)")
            let am = try await client.call(.post, "/v1/channels", token: admin, body: #"{"name":"am","url":"http://127.0.0.1:9093","kind":"alertmanager"}"#)
            #expect(am.status == .created && am.body["max_per_hour"] as? Int == 0, "Alertmanager groups and throttles itself: \(am.text)")
            let hook = try await client.call(.post, "/v1/channels", token: admin, body: #"{"name":"h","url":"http://127.0.0.1:9/h"}"#)
            #expect(hook.body["kind"] as? String == "webhook" && hook.body["max_per_hour"] as? Int == 20)
            for (body, field) in [(#"{"name":"x","url":"http://127.0.0.1:9/","kind":"email"}"#, "kind: "), (#"{"name":"x","url":"http://127.0.0.1:9/","providers":["a b"]}"#, "providers: "),
                                  (#"{"name":"x","url":"http://127.0.0.1:9/","models":"gpt-4o"}"#, "models: "), (#"{"name":"x","url":"http://127.0.0.1:9/","max_per_hour":20000}"#, "max_per_hour: ")] {
                let refused = try await client.call(.post, "/v1/channels", token: admin, body: body)
                #expect(refused.status == .badRequest && refused.text.contains(field), "\(body): \(refused.text)")
            }

            let id = try #require(hook.body["channel_id"] as? String)
            let oldSecret = try #require(hook.body["secret"] as? String)
            let rotated = try await client.call(.post, "/v1/channels/\(id)/rotate-secret", token: admin, body: #"{"overlap_seconds":3600}"#)
            let newSecret = try #require(rotated.body["secret"] as? String)
            #expect(rotated.status == .ok && newSecret.hasPrefix("whsec_") && newSecret != oldSecret && rotated.body["previous_secret_until"] is String)
            let listed = try await client.call(.get, "/v1/channels", token: admin)
            #expect(!listed.text.contains(newSecret) && !listed.text.contains(oldSecret), "secrets never listed")
            #expect(!listed.text.contains("XsecretX") && (listed.body["items"] as? [[String: Any]])?.contains { $0["url"] as? String == "http://127.0.0.1:9/services/…" } == true,
                    "a Slack URL is a credential: listed without its path: \(listed.text)")
            #expect((listed.body["items"] as? [[String: Any]])?.first { $0["channel_id"] as? String == id }?["previous_secret_until"] is String)
            let immediate = try await client.call(.post, "/v1/channels/\(id)/rotate-secret", token: admin, body: #"{"overlap_seconds":0}"#)
            #expect(immediate.status == .ok && immediate.body["previous_secret_until"] == nil, "no overlap: the old secret stops signing at once")
            #expect(try await client.call(.post, "/v1/channels/\(id)/rotate-secret", token: otherAdmin).status == .notFound)
            #expect(try await client.call(.post, "/v1/channels/\(id)/rotate-secret", token: admin, body: #"{"overlap_seconds":-1}"#).status == .badRequest)
        }
        await gateway.producer.shutdown()
    }

    @Test("threshold rules and budgets through the API: created with their defaults, listed with their state, deleted; one of above and below; bad values named; other tenants see none")
    func rules() async throws {
        let gateway = try await Gateway.make()
        let tenant = TestEnvironment.unique("rul"), other = TestEnvironment.unique("rul")
        _ = try await gateway.keys.createTenant(id: tenant, name: "R")
        _ = try await gateway.keys.createTenant(id: other, name: "O")
        let admin = try #require(try await gateway.keys.createKey(tenant: tenant, name: "admin", scopes: [.admin])).key
        let otherAdmin = try #require(try await gateway.keys.createKey(tenant: other, name: "admin", scopes: [.admin])).key
        try await gateway.app.test(.router) { client in
            let created = try await client.call(.post, "/v1/rules", token: admin, body: #"{"name":"errors","metric":"error_rate","provider":"openai","model":"gpt-4o","above":0.05}"#)
            #expect(created.status == .created && created.body["for_minutes"] as? Int == 5 && created.body["severity"] as? String == "warning"
                    && created.body["above"] as? Double == 0.05 && created.body["below"] == nil && created.body["firing"] as? Bool == false, "\(created.text)")
            let id = try #require(created.body["rule_id"] as? String)
            let total = try await client.call(.post, "/v1/rules", token: admin, body: #"{"name":"spend","metric":"cost_per_hour","below":100,"for_minutes":60,"severity":"critical"}"#)
            #expect(total.status == .created && total.body["provider"] == nil && total.body["model"] == nil)
            for (body, field) in [(#"{"name":"x","metric":"error_rate"}"#, "above: "), (#"{"name":"x","metric":"error_rate","above":1,"below":2}"#, "below: "),
                                  (#"{"name":"x","metric":"p99","above":1}"#, "metric: "), (#"{"name":"x","metric":"error_rate","above":"high"}"#, "above: "),
                                  (#"{"name":"x","metric":"error_rate","above":1,"for_minutes":0}"#, "for_minutes: ")] {
                let refused = try await client.call(.post, "/v1/rules", token: admin, body: body)
                #expect(refused.status == .badRequest && refused.text.contains(field), "\(body): \(refused.text)")
            }
            let listed = try await client.call(.get, "/v1/rules", token: admin)
            #expect((listed.body["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["errors", "spend"])
            #expect((try await client.call(.get, "/v1/rules", token: otherAdmin).body["items"] as? [Any])?.isEmpty == true, "row-level security")
            #expect(try await client.call(.delete, "/v1/rules/\(id)", token: otherAdmin).status == .notFound)
            #expect(try await client.call(.delete, "/v1/rules/\(id)", token: admin).status == .noContent)
            #expect(try await client.call(.delete, "/v1/rules/\(id)", token: admin).status == .notFound)
            #expect((try await client.call(.get, "/v1/rules", token: admin).body["items"] as? [[String: Any]])?.count == 1)

            let budget = try await client.call(.post, "/v1/budgets", token: admin, body: #"{"name":"monthly","period":"month","amount_usd":250.5}"#)
            #expect(budget.status == .created && budget.body["notify_at"] as? [Int] == [50, 80, 100] && budget.body["forecast"] as? Bool == true
                    && budget.body["amount_usd"] as? Double == 250.5 && budget.body["spent_usd"] as? Double == 0, "\(budget.text)")
            let daily = try await client.call(.post, "/v1/budgets", token: admin, body: #"{"name":"daily","period":"day","amount_usd":10,"notify_at":[100,90,90],"forecast":false}"#)
            #expect(daily.body["notify_at"] as? [Int] == [90, 100] && daily.body["forecast"] as? Bool == false)
            for (body, field) in [(#"{"name":"x","period":"week","amount_usd":1}"#, "period: "), (#"{"name":"x","period":"day","amount_usd":0}"#, "amount_usd: "),
                                  (#"{"name":"x","period":"day","amount_usd":1,"notify_at":[0]}"#, "notify_at: "), (#"{"name":"x","period":"day"}"#, "amount_usd: ")] {
                let refused = try await client.call(.post, "/v1/budgets", token: admin, body: body)
                #expect(refused.status == .badRequest && refused.text.contains(field), "\(body): \(refused.text)")
            }
            #expect((try await client.call(.get, "/v1/budgets", token: admin).body["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["monthly", "daily"])
            #expect((try await client.call(.get, "/v1/budgets", token: otherAdmin).body["items"] as? [Any])?.isEmpty == true, "row-level security")
            let budgetID = try #require(budget.body["budget_id"] as? String)
            #expect(try await client.call(.delete, "/v1/budgets/\(budgetID)", token: otherAdmin).status == .notFound)
            #expect(try await client.call(.delete, "/v1/budgets/\(budgetID)", token: admin).status == .noContent)
            #expect((try await client.call(.get, "/v1/budgets", token: admin).body["items"] as? [[String: Any]])?.count == 1)
        }
        await gateway.producer.shutdown()
    }
}
