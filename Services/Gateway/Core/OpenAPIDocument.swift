import Hummingbird

/// `GET /openapi.json`: the gateway's API as OpenAPI 3.1. Kept next to the routes it describes; a test checks that
/// every route the gateway serves is in it.
public enum OpenAPIDocument {
    public static func add<Context: RequestContext>(to router: Router<Context>) {
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
        }
    }

    public static let paths = ["/v1/events", "/v1/series", "/v1/breakdown", "/v1/anomalies", "/v1/admin/tenants", "/openapi.json", "/healthz", "/readyz", "/metrics"]

    public static let json = """
        {
          "openapi": "3.1.0",
          "info": {"title": "Tokenwatch gateway", "version": "1.0.0",
                   "description": "Ingest LLM call events; errors are application/problem+json (RFC 9457) with a stable type."},
          "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "tw_<key id>_<secret>"},
                                "adminToken": {"type": "http", "scheme": "bearer", "description": "TW_ADMIN_TOKEN"}},
            "schemas": {
              "Event": {"type": "object", "required": ["event_id", "timestamp", "provider", "model", "input_tokens", "output_tokens", "latency_ms", "status"],
                "properties": {
                  "event_id": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"},
                  "tenant_id": {"type": "string", "description": "ignored: the tenant comes from the API key"},
                  "timestamp": {"type": "string", "format": "date-time"},
                  "provider": {"type": "string", "maxLength": 64}, "model": {"type": "string", "maxLength": 256},
                  "operation": {"type": "string", "default": "chat"},
                  "input_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                  "output_tokens": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                  "cached_input_tokens": {"type": "integer", "minimum": 0}, "reasoning_tokens": {"type": "integer", "minimum": 0},
                  "latency_ms": {"type": "number", "minimum": 0, "maximum": 86400000},
                  "time_to_first_token_ms": {"type": "number", "minimum": 0},
                  "status": {"type": "string", "enum": ["ok", "error"]}, "error_type": {"type": "string"},
                  "cost_usd": {"type": "number", "minimum": 0, "maximum": 100000},
                  "user_id": {"type": "string"}, "session_id": {"type": "string"}, "app": {"type": "string"}, "environment": {"type": "string"},
                  "tags": {"type": "object", "maxProperties": 32, "additionalProperties": {"type": "string", "maxLength": 256}}}},
              "IngestResult": {"type": "object", "required": ["accepted", "rejected", "errors"], "properties": {
                "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
                "errors": {"type": "array", "maxItems": 100, "items": {"type": "object", "properties": {
                  "index": {"type": "integer"}, "field": {"type": "string"}, "reason": {"type": "string"}}}}}},
              "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                "type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}}}
            },
            "responses": {
              "Problem": {"description": "An error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
          },
          "paths": {
            "/v1/events": {"post": {
              "summary": "Send a batch of events", "security": [{"apiKey": []}],
              "parameters": [{"name": "Content-Encoding", "in": "header", "required": false, "schema": {"type": "string", "enum": ["gzip", "identity"]}}],
              "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"type": "array", "maxItems": 5000, "items": {"$ref": "#/components/schemas/Event"}}},
                "application/x-ndjson": {"schema": {"type": "string", "description": "one Event per line"}}}},
              "responses": {
                "202": {"description": "Accepted: every valid event was acknowledged by the broker", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"},
                "403": {"$ref": "#/components/responses/Problem"}, "413": {"$ref": "#/components/responses/Problem"},
                "415": {"$ref": "#/components/responses/Problem"},
                "503": {"description": "The broker did not acknowledge the batch; retry after Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}}},
            "/v1/series": {"get": {
              "summary": "One metric of the caller's tenant over time", "security": [{"apiKey": []}],
              "parameters": [
                {"name": "metric", "in": "query", "required": true, "schema": {"type": "string", "enum": ["requests", "errors", "error_rate", "input_tokens", "output_tokens", "cost_usd",
                  "latency_p50", "latency_p90", "latency_p95", "latency_p99", "ttft_p50", "ttft_p90", "ttft_p95", "ttft_p99"]}},
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: an hour before to"},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "default: now"},
                {"name": "step", "in": "query", "schema": {"type": "string", "enum": ["1m", "1h", "1d"], "default": "1m"}},
                {"name": "provider", "in": "query", "schema": {"type": "string"}}, {"name": "model", "in": "query", "schema": {"type": "string"}}],
              "responses": {"200": {"description": "At most 10000 points; null where undefined (a rate or percentile of no requests)",
                "headers": {"X-Tokenwatch-Source": {"schema": {"type": "string", "enum": ["read_model", "read_model+postgres", "postgres"]}}},
                "content": {"application/json": {"schema": {"type": "object", "properties": {"metric": {"type": "string"}, "unit": {"type": "string"}, "step": {"type": "string"},
                  "from": {"type": "string"}, "to": {"type": "string"}, "points": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}, "value": {"type": ["number", "null"]}}}}}}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/breakdown": {"get": {
              "summary": "Totals and the top-N models or providers of the caller's tenant", "security": [{"apiKey": []}],
              "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["model", "provider"], "default": "model"}},
                {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["cost", "requests", "tokens", "errors"], "default": "cost"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}}],
              "responses": {"200": {"description": "totals and items", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/anomalies": {"get": {
              "summary": "Anomalies of the caller's tenant in a range", "security": [{"apiKey": []}],
              "parameters": [{"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
              "responses": {"200": {"description": "Newest first, at most 1000", "content": {"application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array"}}}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}}}},
            "/v1/admin/tenants": {"post": {
              "summary": "Create a tenant and its first API key", "security": [{"adminToken": []}],
              "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["tenant_id"],
                "properties": {"tenant_id": {"type": "string", "maxLength": 64}, "name": {"type": "string"}}}}}},
              "responses": {
                "201": {"description": "Created; the key is shown only once", "content": {"application/json": {"schema": {"type": "object",
                  "properties": {"tenant_id": {"type": "string"}, "api_key": {"type": "string"}}}}}},
                "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"},
                "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "The process runs"}}}},
            "/readyz": {"get": {"summary": "Readiness", "responses": {"200": {"description": "Dependencies reachable"}, "503": {"description": "Not ready or draining"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text exposition format"}}}}
          }
        }
        """
}
