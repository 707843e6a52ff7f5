import Events
import Foundation

/// The payload of llm.anomalies.v1 as its readers take it. The detector writes it, but the topic is open to any
/// producer, so readers (the query service storing it, the gateway streaming it) decode it through this type, which
/// checks every member before use: ids and names bounded, times valid RFC 3339 from 1970 on, the window in order,
/// status and severity from their vocabularies, the revision a whole number. `canonicalJSON` is what they then
/// store or send: compact, one line, only the members declared here.
public struct AnomalyMessage: Codable, Sendable, Equatable {
    public var anomalyID: String
    public var tenantID: String
    /// The series' app and environment; absent or "" for all (messages from before they existed).
    public var app: String?
    public var environment: String?
    public var provider: String
    public var model: String
    public var metric: String
    public var windowStart: String
    public var windowEnd: String
    public var peakWindow: String?
    public var status: String
    public var severity: String
    public var detector: String?
    public var score: Double?
    public var observed: Double?
    public var expected: Double?
    public var expectedLow: Double?
    public var expectedHigh: Double?
    public var unit: String?
    public var explanation: String?
    public var revision: Int64

    enum CodingKeys: String, CodingKey {
        case anomalyID = "anomaly_id", tenantID = "tenant_id", app, environment, provider, model, metric
        case windowStart = "window_start", windowEnd = "window_end", peakWindow = "peak_window"
        case status, severity, detector, score, observed, expected
        case expectedLow = "expected_low", expectedHigh = "expected_high", unit, explanation, revision
    }

    /// Every member; the writers (the detector, rules, budgets) build the payload through this type, so one
    /// definition and one number format serve every producer and reader of llm.anomalies.v1.
    public init(anomalyID: String, tenantID: String, app: String? = nil, environment: String? = nil, provider: String, model: String, metric: String,
                windowStart: String, windowEnd: String, peakWindow: String? = nil, status: String, severity: String, detector: String? = nil,
                score: Double? = nil, observed: Double? = nil, expected: Double? = nil, expectedLow: Double? = nil, expectedHigh: Double? = nil,
                unit: String? = nil, explanation: String? = nil, revision: Int64) {
        (self.anomalyID, self.tenantID, self.app, self.environment, self.provider, self.model, self.metric) = (anomalyID, tenantID, app, environment, provider, model, metric)
        (self.windowStart, self.windowEnd, self.peakWindow, self.status, self.severity, self.detector) = (windowStart, windowEnd, peakWindow, status, severity, detector)
        // Non-finite numbers have no JSON form: absent.
        func finite(_ d: Double?) -> Double? { d.flatMap { $0.isFinite ? $0 : nil } }
        (self.score, self.observed, self.expected, self.expectedLow, self.expectedHigh) = (finite(score), finite(observed), finite(expected), finite(expectedLow), finite(expectedHigh))
        (self.unit, self.explanation, self.revision) = (unit, explanation, revision)
    }

    public static let statuses: Set<String> = ["ongoing", "resolved"]
    public static let severities = ["info", "warning", "critical"]
    /// Largest message read.
    public static let maxBytes = 16 * 1024

    public struct Invalid: Error, CustomStringConvertible {
        public let field: String
        public let reason: String
        public var description: String { "\(self.field): \(self.reason)" }
        public init(field: String, reason: String) {
            self.field = field
            self.reason = reason
        }
    }

    /// Decodes and checks one message.
    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw Invalid(field: "anomaly", reason: "larger than \(Self.maxBytes) bytes") }
        do {
            self = try JSONDecoder().decode(AnomalyMessage.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw Invalid(field: Self.path(of: error), reason: "missing or of the wrong type")
        }
        try self.validate()
    }

    public func validate() throws {
        let limits = EventLimits.default
        do { try LLMEvent.validateTenantID(self.tenantID) } catch { throw Invalid(field: "tenant_id", reason: error.reason) }
        // The detector's ids are 32 hex digits; any identifier (letters, digits, -_.) is safe to store, link and stream.
        guard (1...128).contains(self.anomalyID.utf8.count),
            self.anomalyID.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 || $0 == 46 })
        else {
            throw Invalid(field: "anomaly_id", reason: "must be 1 to 128 letters, digits, '-', '_' or '.'")
        }
        if let app { try Self.text("app", app, max: limits.maxDimensionLength * 4) }
        if let environment { try Self.text("environment", environment, max: limits.maxDimensionLength * 4) }
        try Self.text("provider", self.provider, max: limits.maxNameLength)
        try Self.text("model", self.model, max: limits.maxModelLength)
        try Self.text("metric", self.metric, max: 64, allowEmpty: false)
        let start = try Self.time("window_start", self.windowStart)
        let end = try Self.time("window_end", self.windowEnd)
        guard end >= start else { throw Invalid(field: "window_end", reason: "must not be before window_start") }
        if let peakWindow { _ = try Self.time("peak_window", peakWindow) }
        guard Self.statuses.contains(self.status) else { throw Invalid(field: "status", reason: "must be ongoing or resolved") }
        guard Self.severities.contains(self.severity) else { throw Invalid(field: "severity", reason: "must be info, warning or critical") }
        if let detector { try Self.text("detector", detector, max: 64) }
        if let unit { try Self.text("unit", unit, max: 64) }
        if let explanation { try Self.text("explanation", explanation, max: 2048) }
        for (name, value) in [("score", self.score), ("observed", self.observed), ("expected", self.expected),
                              ("expected_low", self.expectedLow), ("expected_high", self.expectedHigh)] {
            if let value, !value.isFinite { throw Invalid(field: name, reason: "must be a finite number or null") }
        }
        guard (0...EventLimits.maxExactJSONInteger).contains(self.revision) else { throw Invalid(field: "revision", reason: "must be an integer in 0...2^53") }
    }

    /// Compact JSON with sorted members: no newline can reach an SSE frame, and SQL casts of its members succeed.
    public var canonicalJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a validated message cannot fail (finite numbers, strings only).
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    public var windowStartMicros: Int64 { EventTimestamp(rfc3339: self.windowStart)?.microsecondsSinceEpoch ?? 0 }

    static func time(_ field: String, _ text: String) throws -> Int64 {
        guard text.utf8.count <= 40, let t = EventTimestamp(rfc3339: text), EventTimestamp.acceptedRange.contains(t.microsecondsSinceEpoch) else {
            throw Invalid(field: field, reason: "must be an RFC 3339 date-time from 1970 to 9999")
        }
        return t.microsecondsSinceEpoch
    }

    static func text(_ field: String, _ value: String, max: Int, allowEmpty: Bool = true) throws {
        guard allowEmpty || !value.isEmpty else { throw Invalid(field: field, reason: "must not be empty") }
        guard value.utf8.count <= max else { throw Invalid(field: field, reason: "longer than \(max) bytes") }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw Invalid(field: field, reason: "must not contain control characters")
        }
    }

    static func path(of error: DecodingError) -> String {
        let context: DecodingError.Context
        switch error {
        case .keyNotFound(let key, let c): return (c.codingPath + [key]).map(\.stringValue).joined(separator: ".")
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): context = c
        @unknown default: return "anomaly"
        }
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? "anomaly" : path
    }
}
