import Events
import Postgres

/// Evidence for anomalies: per model and minute, a bounded sample of the calls that explain one (the slowest, the
/// latest failed, the most expensive), with the ids to find them again (event id, trace and span ids, user, app).
/// Written by the aggregator in its exactly-once transaction; read through `GET /v1/anomalies/{id}/evidence`.
public enum EvidenceKind: String, CaseIterable, Sendable {
    case slowest, failed, costliest

    /// What ranks a call within its kind (highest kept): latency, time (the latest failures), cost.
    func value(_ event: LLMEvent) -> Double? {
        switch self {
        case .slowest: return event.latencyMs
        case .failed: return event.status == .error ? Double(event.timestamp.microsecondsSinceEpoch) : nil
        case .costliest: return (event.costNanos ?? 0) > 0 ? Double(event.costNanos ?? 0) : nil
        }
    }
}

public struct EvidenceSamples: Sendable {
    /// Calls kept per model, minute and kind: 3 x 3 rows per model-minute at most.
    public static let perKind = 3

    struct Group: Hashable {
        var tenant: String
        var window: Int64
        var provider: String
        var model: String
        var kind: EvidenceKind
    }

    private(set) var groups: [Group: [(value: Double, event: LLMEvent)]] = [:]

    public init() {}

    public var isEmpty: Bool { self.groups.isEmpty }

    public mutating func add(_ event: LLMEvent) {
        let window = Granularity.minute.windowStart(event.timestamp)
        for kind in EvidenceKind.allCases {
            guard let value = kind.value(event) else { continue }
            let group = Group(tenant: event.tenantID ?? "", window: window, provider: event.provider, model: event.model, kind: kind)
            var kept = self.groups[group] ?? []
            guard kept.count < Self.perKind || value > kept[kept.count - 1].value else { continue }
            kept.append((value, event))
            kept.sort { ($0.value, $1.event.eventID) > ($1.value, $0.event.eventID) }
            if kept.count > Self.perKind { kept.removeLast() }
            self.groups[group] = kept
        }
    }

    static let columns = ["tenant_id", "window_start", "provider", "model", "kind", "event_id", "value", "at", "app", "environment", "user_id",
                          "trace_id", "span_id", "latency_ms", "cost_nanos", "error_type"]

    /// The batch's candidates inserted (a replayed one changes nothing), then each touched group trimmed back to its
    /// best `perKind`: what is kept is the best of every batch so far, whatever order the batches came in.
    public func statements() -> [PostgresQuery] {
        guard !self.groups.isEmpty else { return [] }
        var statements: [PostgresQuery] = []
        var parameters: [String?] = []
        var rows: [String] = []
        func flush() {
            guard !rows.isEmpty else { return }
            statements.append(PostgresQuery(
                sql: "INSERT INTO evidence_samples (\(Self.columns.joined(separator: ", "))) VALUES \(rows.joined(separator: ", ")) ON CONFLICT DO NOTHING",
                parameters: parameters))
            (rows, parameters) = ([], [])
        }
        for (group, kept) in self.groups.sorted(by: { ($0.key.tenant, $0.key.window, $0.key.provider, $0.key.model, $0.key.kind.rawValue) < ($1.key.tenant, $1.key.window, $1.key.provider, $1.key.model, $1.key.kind.rawValue) }) {
            for (value, e) in kept {
                let values: [String?] = [group.tenant, EventTimestamp(microsecondsSinceEpoch: group.window).rfc3339, group.provider, group.model, group.kind.rawValue,
                                         e.eventID, String(value), e.timestamp.rfc3339, e.app, e.environment, e.userID, e.traceID, e.spanID,
                                         String(e.latencyMs), e.costNanos.map { String($0) }, e.errorType]
                let base = parameters.count
                parameters += values
                rows.append("(" + (1...values.count).map { n in
                    let c = Self.columns[n - 1]
                    return "$\(base + n)" + (c == "window_start" || c == "at" ? "::timestamptz" : c == "value" || c == "latency_ms" ? "::double precision" : c == "cost_nanos" ? "::bigint" : "")
                }.joined(separator: ",") + ")")
                // 16 parameters a row: well below Postgres's 65,535 a statement.
                if rows.count == 2_000 { flush() }
            }
        }
        flush()
        let tenants = Set(self.groups.keys.map(\.tenant)).sorted()
        let windows = self.groups.keys.map(\.window)
        let trim = PostgresQuery(
            sql: """
                DELETE FROM evidence_samples e USING (
                    SELECT tenant_id, window_start, provider, model, kind, event_id FROM (
                        SELECT tenant_id, window_start, provider, model, kind, event_id,
                               row_number() OVER (PARTITION BY tenant_id, window_start, provider, model, kind ORDER BY value DESC, event_id) AS n
                        FROM evidence_samples WHERE tenant_id = ANY(string_to_array($1, chr(31))) AND window_start >= $2::timestamptz AND window_start <= $3::timestamptz) r
                    WHERE n > \(Self.perKind)) d
                WHERE (e.tenant_id, e.window_start, e.provider, e.model, e.kind, e.event_id) = (d.tenant_id, d.window_start, d.provider, d.model, d.kind, d.event_id)
                """,
            parameters: [tenants.joined(separator: "\u{1F}"), EventTimestamp(microsecondsSinceEpoch: windows.min()!).rfc3339,
                         EventTimestamp(microsecondsSinceEpoch: windows.max()!).rfc3339])
        return statements + [trim]
    }
}
