"""Schemathesis hooks for the gateway's contract run (Tests/ServicesTests/ContractTests.swift).

They state what an OpenAPI schema cannot: constraints across parameters and against the server's clock. Without
them every such request would be "schema-valid but rejected" and the run would say nothing about the rest:
- `from` < `to`, both from 1970 on, and the span within the route's cap (10,000 steps for a series, 400 days for a
  breakdown or anomaly query);
- events stamped within the server's accepted window (now, give or take the allowed lateness and clock skew), and
  consistent across fields (cached input tokens within input tokens, time to first token within latency,
  error_type only with status error).
Everything else is generated as schemathesis likes it."""
import datetime as dt

import schemathesis

STEPS = {"1m": 60, "1h": 3600, "1d": 86400}


def _parse(text):
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00").replace("z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format(value):
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@schemathesis.hook
def map_query(ctx, query):
    if not query or ("from" not in query and "to" not in query):
        return query
    path = getattr(ctx.operation, "path", "")
    now = dt.datetime.now(dt.timezone.utc)
    low, high = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    end = _parse(query.get("to")) or now
    start = _parse(query.get("from")) or end - dt.timedelta(hours=1)
    end, start = min(max(end, low + dt.timedelta(days=1)), high), min(max(start, low), high)
    if start >= end:
        start = end - dt.timedelta(hours=1)
    span = dt.timedelta(days=399)  # a day short of the cap: `to` defaults to the server's now
    if path == "/v1/series":
        # Two steps short of the cap: `to` defaults to the server's now, a moment after this runs.
        span = dt.timedelta(seconds=STEPS.get(query.get("step", "1m"), 60) * 9_998)
    if end - start > span:
        start = end - span
    if "from" in query:
        query["from"] = _format(start)
    if "to" in query:
        query["to"] = _format(end)
    return query


@schemathesis.hook
def map_body(ctx, body):
    path = getattr(ctx.operation, "path", "")
    if path == "/v1/events" and isinstance(body, list):
        now = _format(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5))
        for event in body:
            if not isinstance(event, dict):
                continue
            if "timestamp" in event:
                event["timestamp"] = now
            # JSON Schema integers may be drawn as 354.0: compare as numbers (booleans are not numbers here).
            cached, given = event.get("cached_input_tokens"), event.get("input_tokens")
            if _number(cached) and _number(given) and cached > given:
                event["cached_input_tokens"] = given
            latency, ttft = event.get("latency_ms"), event.get("time_to_first_token_ms")
            if _number(latency) and _number(ttft) and ttft > latency:
                event["time_to_first_token_ms"] = latency
            if event.get("status") != "error":
                event.pop("error_type", None)
    return body
