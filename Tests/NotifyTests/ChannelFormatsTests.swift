import Foundation
@testable import Notify
import Testing

@Suite("What Slack and Alertmanager channels are sent")
struct ChannelFormatsTests {
    func message(status: String = "ongoing", severity: String = "critical", start: String = "2026-11-29T10:00:00Z", end: String = "2026-11-29T10:20:00Z") -> String {
        """
        {"type":"anomaly.\(status)","data":{"tenant_id":"acme","anomaly_id":"a1","provider":"openai","model":"gpt-4o","metric":"error_rate",\
        "window_start":"\(start)","window_end":"\(end)","status":"\(status)","severity":"\(severity)","score":4.1,"observed":0.368,\
        "expected_low":0.001,"expected_high":0.02,"unit":"share","revision":3,"explanation":"36.8% of calls failed <b>&</b> more."}}
        """
    }

    func alerts(_ rendered: ChannelFormats.Rendered) throws -> [ChannelFormats.Alert] {
        try JSONDecoder().decode([ChannelFormats.Alert].self, from: Data(rendered.body))
    }

    @Test("Alertmanager: one alert with the labels teams route on; open, it ends an age plus an hour ahead; resolved, at its last window; a severity change ends the old alert")
    func alertmanager() throws {
        let now = ISO8601DateFormatter().date(from: "2026-11-29T10:30:00Z")!
        let open = try ChannelFormats.render(.alertmanager, message: self.message(), publicURL: "https://tw.example.com", now: now)
        #expect(open.path == "/api/v2/alerts")
        let alert = try #require(try self.alerts(open).first)
        #expect(alert.labels == ["alertname": "TokenwatchAnomaly", "tenant": "acme", "provider": "openai", "model": "gpt-4o", "metric": "error_rate",
                                 "severity": "critical", "anomaly_id": "a1"])
        #expect(alert.startsAt == "2026-11-29T10:00:00Z" && alert.endsAt == "2026-11-29T12:00:00Z",
                "30 minutes old: ends 30 minutes + an hour from now: \(alert.endsAt)")
        #expect(alert.annotations["link"] == "https://tw.example.com/#anomaly/a1" && alert.generatorURL == alert.annotations["link"])
        #expect(alert.annotations["description"]?.contains("36.8%") == true && alert.annotations["summary"]?.isEmpty == false)

        let resolved = try #require(try self.alerts(try ChannelFormats.render(.alertmanager, message: self.message(status: "resolved"), publicURL: nil, now: now)).first)
        #expect(resolved.endsAt == "2026-11-29T10:20:00Z" && resolved.annotations["link"] == nil)

        let escalated = try self.alerts(try ChannelFormats.render(.alertmanager, message: self.message(), publicURL: nil, previousSeverity: "warning", now: now))
        #expect(escalated.map { $0.labels["severity"] } == ["warning", "critical"])
        #expect(escalated[0].endsAt == "2026-11-29T10:30:00Z", "the alert under the old severity ends now")
    }

    @Test("Slack: Block Kit with what, where, how bad, since when, observed and the expected range, the explanation escaped, a link; tests and summaries are plain sections")
    func slack() throws {
        let rendered = try ChannelFormats.render(.slack, message: self.message(severity: "warning"), publicURL: "https://tw.example.com/")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(rendered.body)) as? [String: Any])
        #expect(json["text"] as? String == "Warning: error_rate of openai/gpt-4o")
        let blocks = try #require(json["blocks"] as? [[String: Any]])
        #expect(blocks.map { $0["type"] as? String } == ["header", "section", "section", "context"])
        let fields = (blocks[1]["fields"] as? [[String: Any]] ?? []).compactMap { $0["text"] as? String }
        #expect(fields.contains("*Where*\nacme · openai/gpt-4o") && fields.contains("*Since*\n2026-11-29T10:00:00Z"))
        #expect(fields.contains("*Expected range*\n0.001–0.02 share") && fields.contains("*Observed*\n0.368 share"), "\(fields)")
        #expect((blocks[2]["text"] as? [String: Any])?["text"] as? String == "36.8% of calls failed &lt;b&gt;&amp;&lt;/b&gt; more.")
        let context = ((blocks[3]["elements"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
        #expect(context.contains("<https://tw.example.com/#anomaly/a1|Open in Tokenwatch>") && context.contains("revision 3"))
        let resolved = try JSONSerialization.jsonObject(with: Data(try ChannelFormats.render(.slack, message: self.message(status: "resolved"), publicURL: nil).body)) as? [String: Any]
        #expect(resolved?["text"] as? String == "Resolved: error_rate of openai/gpt-4o")
        let summary = #"{"type":"summary","data":{"tenant_id":"acme","channel_id":"ch_1","suppressed":7,"cap":20,"window_seconds":3600}}"#
        let text = (try JSONSerialization.jsonObject(with: Data(try ChannelFormats.render(.slack, message: summary, publicURL: nil).body)) as? [String: Any])?["text"] as? String
        #expect(text?.contains("7 more notifications") == true)
        #expect(throws: ChannelFormats.Invalid.self) { try ChannelFormats.render(.slack, message: "[]", publicURL: nil) }
    }

    @Test("a webhook gets the stored message, with a link to the anomaly when the dashboard's address is known")
    func webhook() throws {
        let plain = try ChannelFormats.render(.webhook, message: self.message(), publicURL: nil)
        #expect(plain.body == Array(self.message().utf8) && plain.path == nil)
        let linked = try ChannelFormats.render(.webhook, message: self.message(), publicURL: "https://tw.example.com")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(linked.body)) as? [String: Any])
        #expect((json["links"] as? [String: Any])?["anomaly"] as? String == "https://tw.example.com/#anomaly/a1" && json["data"] is [String: Any])
    }
}
