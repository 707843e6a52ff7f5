import Foundation

/// What each kind of channel is sent for one outbox message (`{"type": ..., "data": {...}}`, the webhook body):
/// the webhook gets it as it is, Slack a Block Kit message, Alertmanager a list of alerts for `POST /api/v2/alerts`.
public enum ChannelFormats {
    public enum Kind: String, Sendable, CaseIterable {
        case webhook, slack, alertmanager
    }

    public struct Rendered: Sendable, Equatable {
        public var path: String?
        public var body: [UInt8]
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// The request for `kind`: the body, and for Alertmanager the path appended to the channel's base URL.
    /// `publicURL` (the dashboard's external address) makes the links; `previousSeverity` is the severity last sent
    /// for the anomaly, whose Alertmanager alert (its labels include the severity) is ended when it changes.
    public static func render(_ kind: Kind, message: String, publicURL: String?, previousSeverity: String? = nil, now: Date = Date()) throws -> Rendered {
        switch kind {
        case .webhook:
            // The anomaly as stored, plus a link to its page when the dashboard's address is known.
            if message.hasPrefix("{\"type\":\"anomaly."), message.hasSuffix("}"), let id = try? self.parse(message).string("anomaly_id"),
               let link = self.anomalyLink(publicURL, anomalyID: id), let quoted = try? self.encode(link) {
                return Rendered(path: nil, body: Array(message.dropLast().utf8) + Array(",\"links\":{\"anomaly\":".utf8) + quoted + Array("}}".utf8))
            }
            return Rendered(path: nil, body: Array(message.utf8))
        case .slack:
            return Rendered(path: nil, body: try self.encode(try self.slack(try self.parse(message), publicURL: publicURL)))
        case .alertmanager:
            let alerts = try self.alertmanager(try self.parse(message), publicURL: publicURL, previousSeverity: previousSeverity, now: now)
            return Rendered(path: "/api/v2/alerts", body: try self.encode(alerts))
        }
    }

    struct Message {
        var type: String
        var data: [String: Any]

        func string(_ key: String) -> String? { self.data[key] as? String }
        func number(_ key: String) -> Double? { (self.data[key] as? NSNumber)?.doubleValue }
    }

    static func parse(_ message: String) throws -> Message {
        guard let object = try? JSONSerialization.jsonObject(with: Data(message.utf8)) as? [String: Any],
              let type = object["type"] as? String, let data = object["data"] as? [String: Any] else {
            throw Invalid(description: "a notification is {\"type\", \"data\"}")
        }
        return Message(type: type, data: data)
    }

    static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    public static func anomalyLink(_ publicURL: String?, anomalyID: String) -> String? {
        guard let base = publicURL?.trimmingCharacters(in: CharacterSet(charactersIn: "/")), !base.isEmpty else { return nil }
        return base + "/#anomaly/" + (anomalyID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? anomalyID)
    }

    static func series(_ m: Message) -> String {
        let provider = m.string("provider") ?? "", model = m.string("model") ?? ""
        return provider.isEmpty && model.isEmpty ? "all traffic" : "\(provider)/\(model)"
    }

    static func number(_ value: Double) -> String {
        if value.rounded() == value, abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: abs(value) >= 100 ? "%.0f" : abs(value) >= 1 ? "%.2f" : "%.4g", value)
    }

    static func expectedRange(_ m: Message) -> String? {
        guard let low = m.number("expected_low"), let high = m.number("expected_high") else { return nil }
        let unit = m.string("unit").map { " " + $0 } ?? ""
        return "\(self.number(low))–\(self.number(high))\(unit)"
    }

    // MARK: - Slack

    struct SlackText: Encodable {
        var type: String
        var text: String
    }

    struct SlackBlock: Encodable {
        var type: String
        var text: SlackText?
        var fields: [SlackText]?
        var elements: [SlackText]?
    }

    struct SlackMessage: Encodable {
        var text: String
        var blocks: [SlackBlock]
    }

    /// Slack's mrkdwn needs `&`, `<` and `>` escaped; everything else from the data is plain text.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Block Kit: a header (what and how bad), fields (where, metric, since when, observed and expected range), the
    /// explanation, and a link to the anomaly page. `text` is the fallback for notifications.
    static func slack(_ m: Message, publicURL: String?) throws -> SlackMessage {
        switch m.type {
        case "test":
            let text = "Tokenwatch test notification for channel \(m.string("channel_id") ?? "")."
            return SlackMessage(text: text, blocks: [SlackBlock(type: "section", text: SlackText(type: "mrkdwn", text: self.escape(text)))])
        case "summary":
            let n = Int(m.number("suppressed") ?? 0)
            let text = "Tokenwatch: \(n) more notification\(n == 1 ? "" : "s") in this period were held back (this channel's cap is \(Int(m.number("cap") ?? 0)))."
            return SlackMessage(text: text, blocks: [SlackBlock(type: "section", text: SlackText(type: "mrkdwn", text: self.escape(text)))])
        default:
            let status = m.string("status") ?? "ongoing"
            let severity = m.string("severity") ?? "info"
            let metric = m.string("metric") ?? ""
            let headline = status == "resolved"
                ? "Resolved: \(metric) of \(self.series(m))"
                : "\(severity.capitalized): \(metric) of \(self.series(m))"
            var fields = [
                SlackText(type: "mrkdwn", text: "*Where*\n" + self.escape("\(m.string("tenant_id") ?? "") · \(self.series(m))")),
                SlackText(type: "mrkdwn", text: "*How bad*\n" + self.escape("\(severity)" + (m.number("score").map { ", score \(self.number($0))" } ?? ""))),
                SlackText(type: "mrkdwn", text: "*Since*\n" + self.escape(m.string("window_start") ?? "")),
            ]
            if let observed = m.number("observed") {
                fields.append(SlackText(type: "mrkdwn", text: "*Observed*\n" + self.escape(self.number(observed) + (m.string("unit").map { " " + $0 } ?? ""))))
            }
            if let range = self.expectedRange(m) {
                fields.append(SlackText(type: "mrkdwn", text: "*Expected range*\n" + self.escape(range)))
            }
            var blocks = [
                SlackBlock(type: "header", text: SlackText(type: "plain_text", text: String(headline.prefix(150)))),
                SlackBlock(type: "section", fields: fields),
            ]
            if let explanation = m.string("explanation") {
                blocks.append(SlackBlock(type: "section", text: SlackText(type: "mrkdwn", text: self.escape(String(explanation.prefix(2900))))))
            }
            var context = "Anomaly \(m.string("anomaly_id") ?? "") revision \(Int64(m.number("revision") ?? 0))"
            if let link = self.anomalyLink(publicURL, anomalyID: m.string("anomaly_id") ?? "") { context += " · <\(link)|Open in Tokenwatch>" }
            blocks.append(SlackBlock(type: "context", elements: [SlackText(type: "mrkdwn", text: context)]))
            return SlackMessage(text: headline, blocks: blocks)
        }
    }

    // MARK: - Alertmanager

    public struct Alert: Codable, Sendable, Equatable {
        public var labels: [String: String]
        public var annotations: [String: String]
        public var startsAt: String
        public var endsAt: String
        public var generatorURL: String?
    }

    /// A formatter per call: `ISO8601DateFormatter` is not Sendable, and a notification is not a hot path.
    static var timestamp: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f
    }

    /// One alert per anomaly, identified in Alertmanager by its labels (alertname, tenant, provider, model, metric,
    /// severity, anomaly_id). Open: `endsAt` is as far ahead as the anomaly's age plus an hour, which the next
    /// republication of a growing anomaly (at 2, 4, 8, ... windows) renews before it passes. Resolved: `endsAt` is
    /// the end of its last window. When the severity changed, the alert under the old severity is ended too.
    static func alertmanager(_ m: Message, publicURL: String?, previousSeverity: String?, now: Date) throws -> [Alert] {
        let nowText = self.timestamp.string(from: now)
        switch m.type {
        case "test":
            return [Alert(labels: ["alertname": "TokenwatchTest", "tenant": m.string("tenant_id") ?? "", "channel_id": m.string("channel_id") ?? ""],
                          annotations: ["summary": "A test notification from Tokenwatch."], startsAt: nowText,
                          endsAt: self.timestamp.string(from: now.addingTimeInterval(300)), generatorURL: nil)]
        case "summary":
            return []
        default:
            guard let id = m.string("anomaly_id"), let start = m.string("window_start"), let startDate = self.timestamp.date(from: start) else {
                throw Invalid(description: "an anomaly needs anomaly_id and window_start")
            }
            let severity = m.string("severity") ?? "info"
            var labels = ["alertname": "TokenwatchAnomaly", "tenant": m.string("tenant_id") ?? "", "provider": m.string("provider") ?? "",
                          "model": m.string("model") ?? "", "metric": m.string("metric") ?? "", "severity": severity, "anomaly_id": id]
            let link = self.anomalyLink(publicURL, anomalyID: id)
            var annotations = ["summary": "\(m.string("metric") ?? "") of \(self.series(m)) is anomalous (\(severity))",
                               "description": m.string("explanation") ?? ""]
            if let link { annotations["link"] = link }
            let resolved = m.string("status") == "resolved"
            let endsAt: String
            if resolved {
                let end = m.string("window_end").flatMap { self.timestamp.date(from: $0) } ?? now
                endsAt = self.timestamp.string(from: min(end, now))
            } else {
                endsAt = self.timestamp.string(from: now.addingTimeInterval(max(now.timeIntervalSince(startDate), 0) + 3600))
            }
            var alerts = [Alert(labels: labels, annotations: annotations, startsAt: start, endsAt: endsAt, generatorURL: link)]
            if let previousSeverity, previousSeverity != severity {
                labels["severity"] = previousSeverity
                alerts.insert(Alert(labels: labels, annotations: annotations, startsAt: start, endsAt: nowText, generatorURL: link), at: 0)
            }
            return alerts
        }
    }
}
