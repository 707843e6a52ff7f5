import Codecs
import Events
import Foundation
import Rollups

/// One anomaly as published on llm.anomalies.v1: an ongoing deviation of one metric of one series, from its first
/// anomalous window to its last. It is published when it opens, when its severity rises, and when it resolves, always
/// under the same deterministic id, so consumers upsert it.
public struct Anomaly: Sendable, Equatable {
    public enum Status: String, Sendable { case ongoing, resolved }

    public var series: SeriesKey
    public var metric: DetectorMetric
    /// First anomalous window's start and the last anomalous window's end (microseconds).
    public var start: Int64
    public var end: Int64
    public var status: Status
    public var severity: Severity
    public var detector: DetectorKind
    /// Multiples of the alert threshold at the peak (>= 1).
    public var score: Double
    /// At the peak window: what was seen and what the baseline expected, with the range it considers normal.
    public var peakWindow: Int64
    public var observed: Double
    public var expected: Double
    public var expectedLow: Double
    public var expectedHigh: Double
    /// Bumped on every publication of this anomaly; consumers keep the highest.
    public var revision: Int
    /// The series' window length (microseconds): what a request rate is counted per.
    public var interval: Int64 = 60_000_000
    /// How much history the normal range was learned from (microseconds; 0 when not said, as for error bursts).
    public var learnedOver: Int64 = 0

    /// sha256(tenant, [app, environment,] provider, model, metric, start), hex, 32 characters: the same anomaly gets
    /// the same id on every replica, after every restart and replay. App and environment enter only when set, so the
    /// series that existed before them keep their ids.
    public var id: String {
        let scope = self.series.app.isEmpty && self.series.environment.isEmpty ? "" : "app=\(self.series.app)\u{0}env=\(self.series.environment)\u{0}"
        let text = "\(self.series.tenant)\u{0}\(scope)\(self.series.provider)\u{0}\(self.series.model)\u{0}\(self.metric.name)\u{0}\(self.start)"
        return String(Digest.hex(Digest.sha256(text)).prefix(32))
    }

    /// One sentence a person can act on.
    public var explanation: String {
        let subject = self.series.displayName
        let m = self.metric
        let seen = Self.format(self.observed, m, interval: self.interval), usual = Self.format(self.expected, m, interval: self.interval)
        let range = "\(Self.format(self.expectedLow, m, interval: self.interval))–\(Self.format(self.expectedHigh, m, interval: self.interval))"
        let learned = Self.period(self.learnedOver).map { ", learned over the last \($0)" } ?? ""
        switch self.detector {
        case .errorBurst:
            return "Error burst on \(subject): \(seen) of requests failed against a usual \(usual)."
        case .levelShift:
            return "The \(m.phrase) of \(subject) shifted to \(seen) and stayed there; it was \(usual) (ten-window means normally \(range)\(learned))."
        case .seasonal:
            return "The \(m.phrase) of \(subject) was \(seen), far from the \(usual) usual at this time of day (normal \(range)\(learned))."
        case .silence:
            return "\(subject) received no requests: usually \(usual) (normal \(range)\(learned))."
        case .spike:
            let ratio = self.expected > 0 ? self.observed / self.expected : 0
            let factor = ratio >= 1.5 || (ratio > 0 && ratio <= 0.67) ? " (\(ratio >= 1 ? String(format: "%.1fx", ratio) : String(format: "%.0f%% of", ratio * 100)) its usual \(usual))" : " (usual \(usual))"
            return "The \(m.phrase) of \(subject) was \(seen)\(factor), outside the normal \(range)\(learned)."
        }
    }

    /// "2.8 days", "5.0 hours", "45 minutes"; nil for none.
    static func period(_ microseconds: Int64) -> String? {
        guard microseconds > 0 else { return nil }
        let minutes = Double(microseconds) / 60_000_000
        if minutes >= 2 * 1440 { return String(format: "%.1f days", minutes / 1440) }
        if minutes >= 120 { return String(format: "%.1f hours", minutes / 60) }
        return String(format: "%.0f minutes", minutes)
    }

    static func format(_ value: Double, _ metric: DetectorMetric, interval: Int64 = 60_000_000) -> String {
        switch metric {
        case .errorRate: return String(format: "%.1f%%", value * 100)
        case .costPerRequest: return value < 0.01 ? String(format: "$%.5f", value) : String(format: "$%.3f", value)
        case .requestRate: return String(format: "%.0f requests", value) + Self.per(interval)
        case .outputTokensPerRequest: return String(format: "%.0f tokens", value)
        case .latencyP95, .timeToFirstTokenP95: return value >= 10_000 ? String(format: "%.1f s", value / 1000) : String(format: "%.0f ms", value)
        }
    }

    /// "/min", "/hour", "/day", or " per 5 min" for a window of another length.
    static func per(_ interval: Int64) -> String {
        let seconds = interval / 1_000_000
        switch seconds {
        case 60: return "/min"
        case 3600: return "/hour"
        case 86_400: return "/day"
        case let s where s % 3600 == 0: return " per \(s / 3600) h"
        case let s where s % 60 == 0: return " per \(s / 60) min"
        default: return " per \(seconds) s"
        }
    }

    /// The payload published on llm.anomalies.v1 (and stored by the query service, served by the gateway).
    public var message: AnomalyMessage {
        func ts(_ us: Int64) -> String { EventTimestamp(microsecondsSinceEpoch: us).rfc3339 }
        let s = self.series
        return AnomalyMessage(
            anomalyID: self.id, tenantID: s.tenant, app: s.app.isEmpty ? nil : s.app, environment: s.environment.isEmpty ? nil : s.environment,
            provider: s.provider, model: s.model, metric: self.metric.name, windowStart: ts(self.start), windowEnd: ts(self.end), peakWindow: ts(self.peakWindow),
            status: self.status.rawValue, severity: self.severity.name, detector: self.detector.name, score: self.score, observed: self.observed,
            expected: self.expected, expectedLow: self.expectedLow, expectedHigh: self.expectedHigh, unit: self.metric.unit, explanation: self.explanation,
            revision: Int64(self.revision))
    }

    /// `message` as canonical JSON.
    public func jsonBytes() -> [UInt8] { Array(self.message.canonicalJSON.utf8) }
}
