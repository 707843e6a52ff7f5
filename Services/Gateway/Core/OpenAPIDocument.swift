import Foundation
import Hummingbird
import Rollups
import OTLP

/// `GET /openapi.json`: the gateway's API as OpenAPI 3.1. Kept next to the routes it describes; a test checks that
/// every route the gateway serves is in it.
public enum OpenAPIDocument {
    public static func add<Context: RequestContext>(to router: Router<Context>) {
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
        }
    }

    public static let paths = [
        "/v1/events", "/v1/traces", "/v1/metrics", "/v1/logs", "/v1/series", "/v1/dead-letters", "/v1/breakdown", "/v1/users", "/v1/anomalies", "/v1/anomalies/{anomaly_id}/evidence", "/v1/anomalies/stream", "/v1/tenant", "/v1/keys", "/v1/keys/{key_id}", "/v1/keys/{key_id}/rotate",
        "/v1/detector/settings", "/v1/channels", "/v1/channels/{channel_id}", "/v1/channels/{channel_id}/deliveries", "/v1/channels/{channel_id}/test", "/v1/channels/{channel_id}/rotate-secret", "/v1/rules", "/v1/rules/{rule_id}", "/v1/budgets", "/v1/budgets/{budget_id}", "/v1/admin/tenants", "/v1/admin/tenants/{tenant_id}", "/v1/admin/tenants/{tenant_id}/keys", "/v1/admin/tenants/{tenant_id}/keys/{key_id}",
        "/v1/admin/tenants/{tenant_id}/keys/{key_id}/rotate", "/openapi.json", "/healthz", "/healthz/dependencies", "/readyz", "/metrics",
    ]

    /// The document served: `base` completed by the rules every route shares, so no route can forget them (and the
    /// schemathesis contract run in `make test` checks the result against the running gateway):
    /// - an operation with a security requirement can answer 401;
    /// - a tenant operation (API key) can answer 403 (scope, tenant mismatch) and 429 (rate limits);
    /// - an operation with parameters or a body can answer 400;
    /// - every `/v1` operation can answer 503 `dependency_unavailable` (Postgres, Redis or the broker unavailable).
    /// The series filters, one query parameter per dimension (`SeriesDimension`), bounded as the dimension is, and
    /// marked `x-tokenwatch-dimension` (the dashboard reads its filters from here).
    static var dimensionParameters: String {
        QueryRoutes.filterDimensions.map { d in
            #"{"name": "\#(d.rawValue)", "in": "query", "x-tokenwatch-dimension": true, "schema": {"type": "string", "minLength": 1, "maxLength": \#(d.maxLength)}}"#
        }.joined(separator: ", ")
    }

    public static let json: String = {
        guard var doc = (try? JSONSerialization.jsonObject(with: Data(base.utf8))) as? [String: Any],
            var paths = doc["paths"] as? [String: Any]
        else { return base }
        let problem: [String: Any] = ["$ref": "#/components/responses/Problem"]
        let unavailable: [String: Any] = [
            "description": "A store or the broker is unavailable; retry after Retry-After seconds",
            "headers": ["Retry-After": ["schema": ["type": "integer"]]],
            "content": ["application/problem+json": ["schema": ["$ref": "#/components/schemas/Problem"]]],
        ]
        // Query parameters never hold control characters (`RequestLimitsMiddleware` answers 400 naming the
        // parameter): every free-form string parameter says so in a pattern.
        func withoutControls(_ parameters: Any?) -> Any? {
            guard let list = parameters as? [[String: Any]] else { return parameters }
            return list.map { parameter -> [String: Any] in
                guard parameter["in"] as? String == "query", var schema = parameter["schema"] as? [String: Any], schema["type"] as? String == "string",
                      schema["enum"] == nil, schema["format"] == nil, schema["pattern"] == nil else { return parameter }
                var parameter = parameter
                schema["pattern"] = Self.noControls
                parameter["schema"] = schema
                return parameter
            }
        }
        for (path, value) in paths {
            guard var item = value as? [String: Any] else { continue }
            let pathParameters = (item["parameters"] as? [Any])?.isEmpty == false
            if let parameters = item["parameters"] { item["parameters"] = withoutControls(parameters) }
            for method in ["get", "put", "post", "delete", "patch"] {
                guard var operation = item[method] as? [String: Any] else { continue }
                if let parameters = operation["parameters"] { operation["parameters"] = withoutControls(parameters) }
                var responses = operation["responses"] as? [String: Any] ?? [:]
                func ensure(_ code: String, _ response: [String: Any]) { if responses[code] == nil { responses[code] = response } }
                let security = (operation["security"] as? [[String: Any]]) ?? []
                if !security.isEmpty { ensure("401", problem) }
                if security.contains(where: { $0["apiKey"] != nil }) {
                    ensure("403", problem)
                    ensure("429", ["$ref": "#/components/responses/RateLimited"])
                }
                if pathParameters || operation["parameters"] != nil || operation["requestBody"] != nil { ensure("400", problem) }
                if path.hasPrefix("/v1/") { ensure("503", unavailable) }
                operation["responses"] = responses
                item[method] = operation
            }
            paths[path] = item
        }
        // The OTLP signals Tokenwatch acknowledges without storing: one declaration each (OTLPOtherSignal).
        for signal in OTLPOtherSignal.allCases {
            paths["/v1/\(signal.rawValue)"] = ["post": Self.otherSignalOperation(signal)]
        }
        doc["paths"] = paths
        guard let data = try? JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .withoutEscapingSlashes]) else { return base }
        return String(decoding: data, as: UTF8.self)
    }()

    /// A string without C0 or C1 controls or the Unicode line and paragraph separators (`JSONInput.isControl`).
    static let noControls = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"

    /// `POST /v1/metrics` and `/v1/logs`, described from the signal's own declaration.
    static func otherSignalOperation(_ signal: OTLPOtherSignal) -> [String: Any] {
        func rpc(_ description: String, retry: Bool = false) -> [String: Any] {
            var response: [String: Any] = ["description": description, "content": [
                "application/json": ["schema": ["$ref": "#/components/schemas/RpcStatus"]],
                "application/x-protobuf": ["schema": ["type": "string", "format": "binary"]],
            ]]
            if retry { response["headers"] = ["Retry-After": ["schema": ["type": "integer"]]] }
            return response
        }
        let binary: [String: Any] = ["schema": ["type": "string", "format": "binary"]]
        return [
            "summary": "OTLP/HTTP \(signal.rawValue) export: accepted and not stored",
            "description": "Checked and bounded like traces, then acknowledged with a partial success that says \(signal.rawValue) are not stored: model calls are counted from spans only, so exporters that send every signal to one base URL see no errors and nothing is counted twice.",
            "security": [["apiKey": [String]()]],
            "requestBody": ["required": true, "content": [
                "application/x-protobuf": binary,
                "application/json": ["schema": ["type": "object", "properties": [signal.jsonMember: ["type": ["array", "null"], "items": ["type": "object"]]]]],
            ]],
            "responses": [
                "200": ["description": "Acknowledged, not stored", "content": [
                    "application/x-protobuf": binary,
                    "application/json": ["schema": ["type": "object", "properties": ["partialSuccess": ["type": "object", "properties": [
                        signal.rejectedMember: ["type": "string"], "errorMessage": ["type": "string"]]]]]],
                ]],
                "400": rpc("Undecodable body"), "401": rpc("Missing or invalid API key"), "413": rpc("Body over the limit"),
                "415": rpc("Content-Type is neither application/x-protobuf nor application/json"),
                "429": rpc("Rate limited; retry after Retry-After seconds", retry: true),
                "503": rpc("A store is unavailable; retry after Retry-After seconds", retry: true),
            ],
        ]
    }

    static let base = """
        {
          "openapi": "3.1.0",
          "info": {"title": "Tokenwatch gateway", "version": "1.0.0",
                   "description": "Ingest LLM call events and query their rollups. Errors are application/problem+json (RFC 9457) with a stable type. Tenant routes answer with RateLimit-Policy and RateLimit headers (draft-ietf-httpapi-ratelimit-headers); 429 carries Retry-After."},
          "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "tw_<key id>_<secret>"},
                                "adminToken": {"type": "http", "scheme": "bearer", "description": "TW_ADMIN_TOKEN"}},
            "schemas": {
              "Event": {"type": "object", "required": ["event_id", "timestamp", "provider", "model", "input_tokens", "output_tokens", "latency_ms", "status"],
                "properties": {
                  "event_id": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"},
                  "tenant_id": {"type": "string", "description": "ignored: the tenant comes from the API key"},
                  "timestamp": {"type": "string", "format": "date-time"},
                  "provider": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "operation": {"type": "string", "default": "chat", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "input_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                  "output_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                  "cached_input_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000, "description": "at most input_tokens"}, "reasoning_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                  "latency_ms": {"type": "number", "minimum": 0, "maximum": 86400000},
                  "time_to_first_token_ms": {"type": "number", "minimum": 0, "maximum": 86400000, "description": "at most latency_ms"},
                  "status": {"type": "string", "enum": ["ok", "error"]}, "error_type": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$", "description": "only with status error"},
                  "cost_usd": {"type": "number", "minimum": 0, "maximum": 100000},
                  "user_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "session_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "app": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "environment": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "tags": {"type": "object", "maxProperties": 32, "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                    "additionalProperties": {"type": "string", "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]*$"}},
                  "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "W3C trace id of the call, for evidence links"},
                  "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}},
              "RpcStatus": {"type": "object", "description": "google.rpc.Status", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
              "IngestResult": {"type": "object", "required": ["accepted", "rejected", "errors"], "properties": {
                "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
                "errors": {"type": "array", "maxItems": 100, "items": {"type": "object", "properties": {
                  "index": {"type": "integer"}, "field": {"type": "string"}, "reason": {"type": "string"}}}}}},
              "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                "type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}}},
              "Limits": {"type": "object", "additionalProperties": false, "description": "null: the deployment's default; 0: unlimited", "properties": {
                "events_per_second": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000000},
                "requests_per_second": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000000},
                "monthly_event_quota": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000000000000}}},
              "Tenant": {"type": "object", "properties": {"tenant_id": {"type": "string"}, "name": {"type": "string"}, "disabled": {"type": "boolean"},
                "cost_policy": {"type": "string", "enum": ["client_unless_zero", "client", "price_table"], "description": "which cost an event keeps when its client sent one"},
                "otlp_ignored_scopes": {"type": "array", "items": {"type": "string"}, "description": "instrumentation scopes whose GenAI spans are not counted"},
                "promoted_tags": {"type": "array", "items": {"type": "string"}, "description": "tag keys aggregated as breakdown dimensions"},
                "trace_url_template": {"type": ["string", "null"], "description": "where evidence links open a trace"},
                "limits": {"$ref": "#/components/schemas/Limits"}, "created_at": {"type": "string", "format": "date-time"}}},
              "Key": {"type": "object", "description": "A key as listed: never its secret", "properties": {"key_id": {"type": "string"}, "prefix": {"type": "string"},
                "name": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string", "enum": ["ingest", "query", "admin"]}},
                "created_at": {"type": "string"}, "expires_at": {"type": "string"}, "revoked_at": {"type": "string"}}},
              "IssuedKey": {"type": "object", "description": "The only answer that holds a key's secret (api_key)", "properties": {
                "tenant_id": {"type": "string"}, "key_id": {"type": "string"}, "api_key": {"type": "string"}, "name": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}}, "tenant": {"$ref": "#/components/schemas/Tenant"}}},
              "NewKey": {"type": "object", "required": ["scopes"], "additionalProperties": false, "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                "scopes": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "enum": ["ingest", "query", "admin"]}}}},
              "NewChannel": {"type": "object", "required": ["name", "url"], "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                "url": {"type": "string", "maxLength": 2048, "description": "https URL of the receiver (for alertmanager, its base URL; /api/v2/alerts is appended); must resolve to public addresses only (unless the operator allowlists a network)"},
                "kind": {"type": "string", "enum": ["webhook", "slack", "alertmanager"], "description": "default webhook"},
                "min_severity": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.severities))], "description": "default warning"},
                "providers": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:/@-]+$"}, "description": "only these providers; empty or absent: all"},
                "models": {"type": "array", "maxItems": 200, "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:/@-]+$"}, "description": "only these models; empty or absent: all"},
                "max_per_hour": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "messages per cap window (an hour) before the rest are summarized; 0: no cap. Default 20, 0 for alertmanager"},
                "metrics": {"type": "array", "maxItems": 6, "items": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.detectorMetrics))]}, "description": "only these metrics; empty or absent: all"}}},
              "Channel": {"type": "object", "properties": {"channel_id": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string", "enum": ["webhook", "slack", "alertmanager"]},
                "url": {"type": "string"}, "min_severity": {"type": "string"}, "metrics": {"type": "array", "items": {"type": "string"}}, "providers": {"type": "array", "items": {"type": "string"}},
                "models": {"type": "array", "items": {"type": "string"}}, "max_per_hour": {"type": "integer"}, "created_at": {"type": "string"},
                "previous_secret_until": {"type": "string", "description": "while a rotated secret still signs: until when"},
                "secret": {"type": "string", "description": "whsec_... signing secret (Standard Webhooks); only in the answer to the creation"}}},
              "NewRule": {"type": "object", "required": ["name", "metric"], "additionalProperties": false,
                "oneOf": [{"required": ["above"]}, {"required": ["below"]}],
                "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                "metric": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.ruleMetrics))], "description": "request_rate in requests/min, error_rate a share (0.05 = 5%), latencies in ms, cost_per_request in USD, output_tokens_per_request in tokens, cost_per_hour in USD over the trailing 60 minutes"},
                "provider": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$", "description": "absent: every provider"},
                "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$", "description": "absent: every model"},
                "above": {"type": "number", "minimum": -1e15, "maximum": 1e15}, "below": {"type": "number", "minimum": -1e15, "maximum": 1e15},
                "for_minutes": {"type": "integer", "minimum": 1, "maximum": 1440, "description": "closed minutes in a row, default 5"},
                "severity": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.severities))], "description": "default warning"}}},
              "NewBudget": {"type": "object", "required": ["name", "period", "amount_usd"], "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                "period": {"type": "string", "enum": ["day", "month"], "description": "UTC day or calendar month"},
                "amount_usd": {"type": "number", "minimum": 0.000001, "maximum": 1000000000},
                "notify_at": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "integer", "minimum": 1, "maximum": 1000}, "description": "percentages of the amount; default [50, 80, 100]"},
                "forecast": {"type": "boolean", "description": "also notify when the period's forecast exceeds the amount (default true)"}}},
              "Budget": {"type": "object", "properties": {"budget_id": {"type": "string"}, "name": {"type": "string"}, "period": {"type": "string"}, "amount_usd": {"type": "number"},
                "notify_at": {"type": "array", "items": {"type": "integer"}}, "forecast": {"type": "boolean"}, "created_at": {"type": "string"},
                "spent_usd": {"type": "number", "description": "this period's spend so far"}, "percent": {"type": "number"}}},
              "Rule": {"type": "object", "properties": {"rule_id": {"type": "string"}, "name": {"type": "string"}, "metric": {"type": "string"}, "provider": {"type": ["string", "null"]},
                "model": {"type": ["string", "null"]}, "above": {"type": ["number", "null"]}, "below": {"type": ["number", "null"]}, "for_minutes": {"type": "integer"},
                "severity": {"type": "string"}, "created_at": {"type": "string"}, "firing": {"type": "boolean"}, "alert_id": {"type": ["string", "null"]},
                "since": {"type": ["string", "null"]}, "last_value": {"type": ["number", "null"]}}},
              "DetectorSettings": {"type": "object", "required": ["sensitivity"], "additionalProperties": false, "properties": {
                "sensitivity": {"type": "number", "minimum": 0.25, "maximum": 4, "default": 1},
                "muted": {"type": "array", "maxItems": 100, "items": {"type": "object", "additionalProperties": false, "properties": {
                  "app": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "environment": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "provider": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"},
                  "metric": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.detectorMetrics))]}}}}}},
              "Rotation": {"type": "object", "additionalProperties": false, "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 604800, "default": 0,
                "description": "how long the old key keeps working"}}}
            },
            "responses": {
              "Problem": {"description": "An error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
              "RateLimited": {"description": "Over the tenant's rate limit (type rate_limited) or monthly quota (quota_exceeded)",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}, "RateLimit-Policy": {"schema": {"type": "string"}}, "RateLimit": {"schema": {"type": "string"}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
              "Keys": {"description": "The tenant's keys, newest first", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}}}}},
              "Issued": {"description": "Created; the key is shown only now", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IssuedKey"}}}}
            },
            "parameters": {
              "tenant": {"name": "tenant_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$"}},
              "key": {"name": "key_id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
            }
          },
          "paths": {
            "/v1/events": {"post": {
              "summary": "Send a batch of events", "security": [{"apiKey": []}],
              "description": "A JSON array or NDJSON; the body may be sent with Content-Encoding: gzip (several members allowed). Events older than TW_ALLOWED_LATENESS or more than 300 s ahead of the server's clock are refused per event.",
              "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"type": "array", "minItems": 1, "maxItems": 5000, "items": {"$ref": "#/components/schemas/Event"}}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "one Event per line"}}}},
              "responses": {
                "202": {"description": "Accepted: every valid event was acknowledged by the broker", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"},
                "403": {"$ref": "#/components/responses/Problem"}, "413": {"$ref": "#/components/responses/Problem"},
                "415": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"},
                "503": {"description": "The broker did not acknowledge the batch; retry after Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}}},
            "/v1/traces": {"post": {
              "summary": "OTLP/HTTP trace export: OpenTelemetry GenAI spans become events",
              "description": "An ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1) in protobuf or OTLP/JSON. LLM-call spans (gen_ai.* attributes) become events with event_id otlp-<trace id>-<span id>; other spans are skipped. Answers are in the request's encoding: ExportTraceServiceResponse (partialSuccess for spans that could not be used), or google.rpc.Status for errors.",
              "security": [{"apiKey": []}],
              "requestBody": {"required": true, "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object", "properties": {"resourceSpans": {"type": ["array", "null"], "items": {"type": "object"}, "description": "null is an absent field (the proto3 JSON mapping)"}}}}}},
              "responses": {
                "200": {"description": "Accepted (every usable GenAI span acknowledged by the broker)", "content": {
                  "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                  "application/json": {"schema": {"type": "object", "properties": {"partialSuccess": {"type": "object", "properties": {"rejectedSpans": {"type": "string"}, "errorMessage": {"type": "string"}}}}}}}},
                "400": {"description": "Undecodable body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}, "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
                "401": {"description": "Missing or invalid API key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}, "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
                "413": {"description": "Body or span count over the limit", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}, "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
                "415": {"description": "Content-Type is neither application/x-protobuf nor application/json", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}}},
                "429": {"description": "Rate limited; retry after Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}, "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
                "503": {"description": "The broker did not acknowledge; retry after Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RpcStatus"}}, "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}}}}},
            "/v1/dead-letters": {"get": {
              "summary": "The tenant's dead letters: counts by reason over the range and the latest samples", "security": [{"apiKey": []}],
              "description": "Input rejected after it was accepted into Kafka (events produced directly; the gateway refuses bad events on the spot). Written by the query service from llm.events.dlq.v1.",
              "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: an hour before to; from 1970 on"},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: now; at most 400 days after from"}],
              "responses": {"200": {"description": "Counts per minute and reason, totals by reason, at most 50 samples, newest first", "content": {"application/json": {"schema": {"type": "object",
                "required": ["from", "to", "totals", "points", "samples"], "properties": {
                "from": {"type": "string"}, "to": {"type": "string"}, "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
                "points": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}, "reason": {"type": "string"}, "count": {"type": "integer"}}}},
                "samples": {"type": "array", "maxItems": 50, "items": {"type": "object", "properties": {"at": {"type": "string"}, "reason": {"type": "string"},
                  "field": {"type": ["string", "null"]}, "detail": {"type": "string"}, "event_id": {"type": ["string", "null"]}}}}}}}}}}}},
            "/v1/series": {"get": {
              "summary": "One metric of the caller's tenant over time", "security": [{"apiKey": []}],
              "parameters": [
                {"name": "metric", "in": "query", "required": true, "schema": {"type": "string", "enum": [\(Metric.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))]},
                  "description": "users and sessions: distinct estimates (1.6% standard error) of the tenant's total, without filters"},
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: an hour before to"},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: now"},
                {"name": "step", "in": "query", "schema": {"type": "string", "enum": ["1m", "1h", "1d"], "default": "1m"}},
                \(Self.dimensionParameters),
                {"name": "error_type", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 64}, "description": "with metric=errors or error_rate: only the failures of this error type"},
                {"name": "user", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 256}, "description": "one user's daily totals (step=1d; requests, errors, error_rate, tokens, cost; no other filter)"}],
              "responses": {"200": {"description": "At most 10000 points; null where undefined (a rate or percentile of no requests)",
                "headers": {"X-Tokenwatch-Source": {"schema": {"type": "string", "enum": ["read_model", "read_model+postgres", "postgres"]}}},
                "content": {"application/json": {"schema": {"type": "object", "properties": {"metric": {"type": "string"}, "unit": {"type": "string"}, "step": {"type": "string"},
                  "from": {"type": "string"}, "to": {"type": "string"}, "points": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}, "value": {"type": ["number", "null"]}}}}}}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"},
                "422": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/breakdown": {"get": {
              "summary": "Totals and the top-N models, providers, error types or users of the caller's tenant", "security": [{"apiKey": []}],
              "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "by", "in": "query", "schema": {"type": "string", "pattern": "^(\(QueryRoutes.breakdownDimensions.keys.sorted().joined(separator: "|"))|user|tag:[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]{1,64})$", "default": "model"},
                  "description": "model, provider, app, environment, error_type (ordered by errors), user (whole UTC days, answered as /v1/users, without series filters) or tag:<promoted tag key> (without other filters; filter one tag with tag.<key>=<value>)"},
                \(Self.dimensionParameters),
                {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["cost", "requests", "tokens", "errors"], "default": "cost"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}}],
              "responses": {"200": {"description": "totals and items", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"},
                "422": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/users": {"get": {
              "summary": "Exact per-user totals over whole UTC days: top users with cursor paging, or one user's days; JSON or CSV", "security": [{"apiKey": []}],
              "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string"}, "description": "a date (YYYY-MM-DD) or a date-time at 00:00:00Z; default: 6 days before today"},
                {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "exclusive, as from; default: tomorrow; at most 400 days after from"},
                {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["cost", "requests", "tokens", "errors"], "default": "cost"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}, "description": "JSON: 1...1000, default 50; CSV: 1...100000, default 10000"},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 1024}, "description": "next_cursor of the previous page (X-Next-Cursor for CSV)"},
                {"name": "user", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 256}, "description": "one user's totals per day (order, limit and cursor do not apply)"},
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
              "responses": {"200": {"description": "users (distinct users with calls in the range), totals, unattributed (events without user_id), items and next_cursor; or user_id, totals and days",
                "headers": {"X-Next-Cursor": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"},
                "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/anomalies/{anomaly_id}/evidence": {"parameters": [{"name": "anomaly_id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 128}}],
              "get": {"summary": "Sampled calls of an anomaly's series and windows (slowest, failed, most expensive), the kind explaining its metric first, with trace links", "security": [{"apiKey": []}],
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30}}],
                "responses": {"200": {"description": "anomaly_id, metric, kind and items (kind, event_id, at, provider, model, app, environment, user_id, trace_id, span_id, trace_url, latency_ms, cost_usd, error_type)",
                  "content": {"application/json": {"schema": {"type": "object", "required": ["anomaly_id", "metric", "items"], "properties": {"anomaly_id": {"type": "string"}, "metric": {"type": "string"},
                    "kind": {"type": ["string", "null"]}, "items": {"type": "array", "items": {"type": "object"}}}}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"},
                  "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/anomalies/stream": {"get": {
              "summary": "Live Server-Sent Events: one 'anomaly' event per new or updated anomaly of the caller's tenant; a comment every 15 s", "security": [{"apiKey": []}],
              "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "401": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/anomalies": {"get": {
              "summary": "Anomalies of the caller's tenant overlapping a range, newest first", "security": [{"apiKey": []}],
              "parameters": [{"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "severity", "in": "query", "description": "the least severity", "schema": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.severities))]}},
                {"name": "metric", "in": "query", "schema": {"type": "string", "enum": [\(Vocabulary.jsonList(Vocabulary.anomalyMetrics))]}},
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["ongoing", "resolved"]}},
                {"name": "provider", "in": "query", "schema": {"type": "string"}}, {"name": "model", "in": "query", "schema": {"type": "string"}},
                {"name": "app", "in": "query", "schema": {"type": "string", "maxLength": 256}}, {"name": "environment", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
              "responses": {"200": {"description": "Newest first, at most 1000", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array"}}}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"}}}},
            "/v1/tenant": {"get": {"summary": "The caller's tenant: limits and events counted against this month's quota", "security": [{"apiKey": []}],
              "responses": {"200": {"description": "tenant and events_this_month", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "tenant": {"$ref": "#/components/schemas/Tenant"}, "events_this_month": {"type": ["integer", "null"]}}}}}},
                "401": {"$ref": "#/components/responses/Problem"}, "429": {"$ref": "#/components/responses/RateLimited"}}},
              "patch": {"summary": "The caller's attribution settings (admin scope): which tag keys are promoted to breakdown dimensions", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                  "promoted_tags": {"type": "array", "maxItems": 5, "description": "tag keys aggregated as breakdown dimensions (by=tag:<key>, tag.<key>=); others are not aggregated",
                    "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}},
                  "trace_url_template": {"type": ["string", "null"], "maxLength": 512, "pattern": "^$|^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?/[A-Za-z0-9._~/?&=%-]*[{]trace_id[}][A-Za-z0-9._~/?&=%{}-]*$",
                    "description": "where the tenant's traces open, {trace_id} and {span_id} replaced (e.g. https://jaeger.example.com/trace/{trace_id}); null or empty clears"}}}}}},
                "responses": {"200": {"description": "tenant and events_this_month, as GET answers", "content": {"application/json": {"schema": {"type": "object"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/detector/settings": {
              "get": {"summary": "The caller's tenant's detector settings (query scope)", "security": [{"apiKey": []}],
                "responses": {"200": {"description": "sensitivity and muted rules", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectorSettings"}}}}}},
              "put": {"summary": "Set the detector's sensitivity and muted series (admin scope); the detector applies them within TW_DETECTOR_SETTINGS_REFRESH", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectorSettings"}}}},
                "responses": {"200": {"description": "The settings as stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectorSettings"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/channels": {
              "get": {"summary": "The tenant's notification channels, without their secrets (admin scope)", "security": [{"apiKey": []}],
                "responses": {"200": {"description": "channels", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Channel"}}}}}}},
                  "403": {"$ref": "#/components/responses/Problem"}}},
              "post": {"summary": "Create a webhook channel (admin scope): anomalies are delivered to it at least once, signed per Standard Webhooks with the secret shown in this answer only", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewChannel"}}}},
                "responses": {"201": {"description": "The channel, with its secret", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Channel"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/channels/{channel_id}": {"parameters": [{"name": "channel_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "delete": {"summary": "Delete a channel and its pending notifications (admin scope)", "security": [{"apiKey": []}],
                "responses": {"204": {"description": "Deleted"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/channels/{channel_id}/deliveries": {"parameters": [{"name": "channel_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "get": {"summary": "The channel's delivery log, newest first (admin scope)", "security": [{"apiKey": []}],
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                "responses": {"200": {"description": "deliveries: message id, type, state (pending, delivered, failed), attempts, last status, latency and error", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/channels/{channel_id}/test": {"parameters": [{"name": "channel_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "post": {"summary": "Queue a test notification to the channel (admin scope)", "security": [{"apiKey": []}],
                "responses": {"202": {"description": "Queued", "content": {"application/json": {"schema": {"type": "object", "properties": {"message_id": {"type": "string"}}}}}},
                  "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/budgets": {
              "get": {"summary": "The tenant's spend budgets with this period's spend (admin scope)", "security": [{"apiKey": []}],
                "responses": {"200": {"description": "budgets", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Budget"}}}}}}},
                  "403": {"$ref": "#/components/responses/Problem"}}},
              "post": {"summary": "Add a spend budget: notified at percentages of it and when the forecast exceeds it (admin scope)", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewBudget"}}}},
                "responses": {"201": {"description": "The budget", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Budget"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/budgets/{budget_id}": {"parameters": [{"name": "budget_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "delete": {"summary": "Delete a budget; its open alerts are resolved (admin scope)", "security": [{"apiKey": []}],
                "responses": {"204": {"description": "Deleted"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/rules": {
              "get": {"summary": "The tenant's threshold rules and their state (admin scope)", "security": [{"apiKey": []}],
                "responses": {"200": {"description": "rules", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}}}}}}},
                  "403": {"$ref": "#/components/responses/Problem"}}},
              "post": {"summary": "Add a threshold rule: its alerts reach the tenant's channels like anomalies (admin scope)", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewRule"}}}},
                "responses": {"201": {"description": "The rule", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rule"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/rules/{rule_id}": {"parameters": [{"name": "rule_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "delete": {"summary": "Delete a rule; its open alert is resolved (admin scope)", "security": [{"apiKey": []}],
                "responses": {"204": {"description": "Deleted"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/channels/{channel_id}/rotate-secret": {"parameters": [{"name": "channel_id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
              "post": {"summary": "Replace the channel's signing secret; the old one signs too until the overlap ends (admin scope)", "security": [{"apiKey": []}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {"overlap_seconds": {"type": "integer", "minimum": 0, "maximum": 604800, "description": "default 86400"}}}}}},
                "responses": {"200": {"description": "The channel, with its new secret (shown only here)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Channel"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/keys": {
              "get": {"summary": "The caller's tenant's keys (admin scope)", "security": [{"apiKey": []}],
                "responses": {"200": {"$ref": "#/components/responses/Keys"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}},
              "post": {"summary": "Create a key for the caller's tenant (admin scope)", "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewKey"}}}},
                "responses": {"201": {"$ref": "#/components/responses/Issued"}, "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/keys/{key_id}": {"parameters": [{"$ref": "#/components/parameters/key"}],
              "delete": {"summary": "Revoke a key of the caller's tenant (admin scope); it stops working at once", "security": [{"apiKey": []}],
                "responses": {"204": {"description": "Revoked"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/keys/{key_id}/rotate": {"parameters": [{"$ref": "#/components/parameters/key"}],
              "post": {"summary": "Replace a key by a new one with the same name and scopes (admin scope)", "security": [{"apiKey": []}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rotation"}}}},
                "responses": {"201": {"$ref": "#/components/responses/Issued"}, "403": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants": {
              "post": {"summary": "Create a tenant and its first API key (scopes ingest, query)", "security": [{"adminToken": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["tenant_id"], "additionalProperties": false,
                  "properties": {"tenant_id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$"},
                    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "limits": {"$ref": "#/components/schemas/Limits"}}}}}},
                "responses": {"201": {"$ref": "#/components/responses/Issued"},
                  "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"},
                  "404": {"description": "The admin API is disabled (no TW_ADMIN_TOKEN)"}, "409": {"$ref": "#/components/responses/Problem"}}},
              "get": {"summary": "Tenants in id order", "security": [{"adminToken": []}],
                "parameters": [{"name": "after", "in": "query", "schema": {"type": "string"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}}],
                "responses": {"200": {"description": "A page; next_after is set when there may be more", "content": {"application/json": {"schema": {"type": "object", "properties": {
                  "items": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}, "next_after": {"type": ["string", "null"]}}}}}},
                  "401": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants/{tenant_id}": {"parameters": [{"$ref": "#/components/parameters/tenant"}],
              "get": {"summary": "One tenant", "security": [{"adminToken": []}],
                "responses": {"200": {"description": "The tenant", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tenant"}}}}, "404": {"$ref": "#/components/responses/Problem"}}},
              "patch": {"summary": "Rename, disable or enable a tenant, or change its limits; applies at once", "security": [{"adminToken": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                  "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}, "disabled": {"type": "boolean"}, "limits": {"$ref": "#/components/schemas/Limits"},
                  "cost_policy": {"type": "string", "enum": ["client_unless_zero", "client", "price_table"]},
                  "otlp_ignored_scopes": {"type": "array", "maxItems": 20, "description": "instrumentation scopes (InstrumentationScope.name) whose GenAI spans this tenant does not count; [] counts all",
                    "items": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9._/:@-]+$"}},
                  "promoted_tags": {"type": "array", "maxItems": 5, "description": "tag keys aggregated as breakdown dimensions (by=tag:<key>, tag.<key>=); others are not aggregated",
                    "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]+$"}}}}}}},
                "responses": {"200": {"description": "The tenant as it now is", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tenant"}}}},
                  "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants/{tenant_id}/keys": {"parameters": [{"$ref": "#/components/parameters/tenant"}],
              "get": {"summary": "A tenant's keys", "security": [{"adminToken": []}], "responses": {"200": {"$ref": "#/components/responses/Keys"}}},
              "post": {"summary": "Create a key for a tenant", "security": [{"adminToken": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewKey"}}}},
                "responses": {"201": {"$ref": "#/components/responses/Issued"}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants/{tenant_id}/keys/{key_id}": {"parameters": [{"$ref": "#/components/parameters/tenant"}, {"$ref": "#/components/parameters/key"}],
              "delete": {"summary": "Revoke a key", "security": [{"adminToken": []}], "responses": {"204": {"description": "Revoked"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants/{tenant_id}/keys/{key_id}/rotate": {"parameters": [{"$ref": "#/components/parameters/tenant"}, {"$ref": "#/components/parameters/key"}],
              "post": {"summary": "Rotate a key", "security": [{"adminToken": []}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rotation"}}}},
                "responses": {"201": {"$ref": "#/components/responses/Issued"}, "404": {"$ref": "#/components/responses/Problem"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "The process runs"}}}},
            "/healthz/dependencies": {"get": {"summary": "Each dependency, probed now: its state and probe time", "responses": {"200": {"description": "Always 200; see the body",
              "content": {"application/json": {"schema": {"type": "object", "properties": {"draining": {"type": "boolean"}, "dependencies": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "status": {"type": "string", "enum": ["ok", "unreachable"]}, "probe_ms": {"type": "integer"}}}}}}}}}}}},
            "/readyz": {"get": {"summary": "Readiness: serving and not draining; the body reports the dependencies as last probed (every 10 s), which never gate it", "responses": {"200": {"description": "Serving (status starting, ready or degraded)"}, "503": {"description": "Draining"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text exposition format"}}}}
          }
        }
        """
}
