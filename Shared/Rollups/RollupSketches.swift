import Events
import Foundation

/// A measure of a window that merges but does not add like a counter (an error map, a quantile sketch, distinct-id
/// registers), declared once: `RollupValues.sketches` drives the merge (in memory, also into stored rows:
/// `RollupStore.write`), the rollup tables' columns and stored form, the select, and the llm.rollups.v1 payload, as
/// `UsageCounters.fields` does for the counters. Adding one is a property of `RollupValues`, an entry here, a jsonb
/// column in a migration, and its documentation.
public struct RollupSketch: Sendable {
    /// The jsonb column of the rollup tables.
    public let column: String
    /// The field of the llm.rollups.v1 payload.
    public let payloadField: String
    let merge: @Sendable (inout RollupValues, RollupValues) -> Void
    /// The stored JSON (the column's value).
    let stored: @Sendable (RollupValues) -> String
    /// Reads the column's text as Postgres prints it (the column's name for errors).
    let readStored: @Sendable (inout RollupValues, String, String) throws -> Void
    /// The payload value, nil to leave the field out; and its reading (`nil` when the field is absent).
    let payload: @Sendable (RollupValues) -> String?
    let readPayload: @Sendable (inout RollupValues, Any?) throws -> Void
}

extension RollupValues {
    public static let sketches: [RollupSketch] = [
        RollupSketch(
            column: "errors_by_type", payloadField: "errors_by_type",
            merge: { a, b in for (k, v) in b.errorsByType { a.errorsByType[k, default: 0] +|= v } },
            stored: { $0.errorsByTypeJSON }, readStored: { v, text, column in v.errorsByType = try Self.errorMap(StoredSketch.entries(text, column: column)) },
            payload: { $0.errorsByTypeJSON },
            readPayload: { v, raw in
                guard let raw else { return }
                guard let o = raw as? [String: Any] else { throw SketchError(message: "rollup field errors_by_type: must be an object") }
                v.errorsByType = try Self.errorMap(StoredSketch.entries(o) { _ in Self.invalidErrorMap })
            }),
        // Merges name their property: applying a key path held in a closure went through the runtime for every row.
        Self.distribution("latency_sketch", "latency_ms", \.latency) { $0.latency.merge($1.latency) },
        Self.distribution("ttft_sketch", "time_to_first_token_ms", \.timeToFirstToken) { $0.timeToFirstToken.merge($1.timeToFirstToken) },
        // Distinct users and sessions: kept in the tenant's total rows only; elsewhere empty, and left out of the payload.
        Self.distinct("users_hll", "users", \.users) { $0.users.merge($1.users) },
        Self.distinct("sessions_hll", "sessions", \.sessions) { $0.sessions.merge($1.sessions) },
    ]

    /// A latency-like quantile sketch; its payload carries the percentiles precomputed for readers that only display.
    static func distribution(_ column: String, _ field: String, _ path: any WritableKeyPath<RollupValues, QuantileSketch> & Sendable,
                             merge: @escaping @Sendable (inout RollupValues, RollupValues) -> Void) -> RollupSketch {
        RollupSketch(
            column: column, payloadField: field, merge: merge,
            stored: { $0[keyPath: path].storedJSON },
            readStored: { v, text, column in v[keyPath: path] = try QuantileSketch(stored: text, column: column) },
            payload: { v in
                let sketch = v[keyPath: path]
                let p = [0.5, 0.9, 0.95, 0.99].map { q in sketch.quantile(q).map { String(format: "%.3f", $0) } ?? "null" }
                return "{\"count\":\(sketch.count),\"p50\":\(p[0]),\"p90\":\(p[1]),\"p95\":\(p[2]),\"p99\":\(p[3]),\"sketch\":\(sketch.json)}"
            },
            readPayload: { v, raw in
                guard let d = raw as? [String: Any], let s = d["sketch"] as? [String: Any] else { throw SketchError(message: "rollup field \(field): sketch missing") }
                v[keyPath: path] = try QuantileSketch(object: s)
            })
    }

    static func distinct(_ column: String, _ field: String, _ path: any WritableKeyPath<RollupValues, DistinctSketch> & Sendable,
                         merge: @escaping @Sendable (inout RollupValues, RollupValues) -> Void) -> RollupSketch {
        RollupSketch(
            column: column, payloadField: field, merge: merge,
            stored: { $0[keyPath: path].storedJSON }, readStored: { v, text, column in v[keyPath: path] = try DistinctSketch(stored: text, column: column) },
            payload: { v in v[keyPath: path].isEmpty ? nil : "{\"estimate\":\(v[keyPath: path].estimate),\"sketch\":\(v[keyPath: path].json)}" },
            readPayload: { v, raw in
                guard let raw else { return }
                guard let d = raw as? [String: Any], let s = d["sketch"] as? [String: Any] else { throw SketchError(message: "rollup field \(field): sketch missing") }
                v[keyPath: path] = try DistinctSketch(object: s)
            })
    }

    /// Error type -> count, as stored or published: bounded names, exact integer counts.
    static func errorMap(_ entries: [StoredSketch.Entry]) throws -> [String: Int64] {
        let limit = EventLimits.default.maxErrorTypeLength
        var out: [String: Int64] = [:]
        for (type, count) in entries {
            guard type.utf8.count <= limit else { throw Self.invalidErrorMap }
            out[type] = count
        }
        return out
    }

    static let invalidErrorMap = SketchError(message: "rollup field errors_by_type: names of at most \(EventLimits.default.maxErrorTypeLength) bytes, integer counts")
}
