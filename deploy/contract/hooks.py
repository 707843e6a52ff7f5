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


def _drop(operation, query, *names):
    """Leaves out parameters another one rules out, when their values are valid by the schema. A value the schema
    refuses is kept: it makes the case a negative one, which the server must refuse whatever else is sent, and
    schemathesis does not notice that a parameter it made invalid was left out (it would report the server's
    answer to the rest as accepted negative data)."""
    for name in names:
        if name not in query:
            continue
        try:
            valid = operation.get_parameter(name, "query").is_valid(query[name])
        except Exception:
            valid = True
        if valid:
            query.pop(name)


def _dependent(operation, path, query):
    """Parameters whose validity depends on another one."""
    if path == "/v1/series" and "user" in query:
        # A user's series: daily counters, no other filter.
        query["step"] = "1d"
        if query.get("metric") not in ("requests", "errors", "error_rate", "input_tokens", "output_tokens", "cost_usd"):
            query["metric"] = "requests"
        _drop(operation, query, "app", "environment", "provider", "model", "error_type")
    if path == "/v1/series" and query.get("metric") in ("users", "sessions"):
        _drop(operation, query, "app", "environment", "provider", "model")
    if path == "/v1/series" and "error_type" in query and query.get("metric") not in ("errors", "error_rate"):
        query["metric"] = "errors"
    if path == "/v1/breakdown":
        if query.get("by") == "error_type":
            query["order"] = "errors"
        # Per-user totals and promoted tags are rolled up on their own: no series filter goes with them.
        if query.get("by") == "user" or str(query.get("by", "")).startswith("tag:"):
            _drop(operation, query, "app", "environment", "provider", "model")
    if path == "/v1/users":
        # An opaque cursor is only valid as the API returned it; JSON pages hold at most 1000 users.
        # Always left out, valid or not: a cursor the schema refuses for its length can be thousands of
        # characters, which the gateway's URL limit answers with 414 before the route sees it.
        query.pop("cursor", None)
        if "user" in query:
            _drop(operation, query, "order", "limit")
        if query.get("format") != "csv" and _number(query.get("limit")) and query["limit"] > 1000:
            query["limit"] = 1000


def _whole_days(query):
    """Per-user totals are kept per UTC day: from and to as dates, from before to, at most 400 days."""
    day = dt.timedelta(days=1)
    end = (_parse(query.get("to")) or dt.datetime.now(dt.timezone.utc) + day).replace(hour=0, minute=0, second=0, microsecond=0)
    end = min(max(end, dt.datetime(1970, 1, 2, tzinfo=dt.timezone.utc)), dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc))
    start = (_parse(query.get("from")) or end - 7 * day).replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(min(start, end - day), end - 400 * day, dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
    if "from" in query:
        query["from"] = start.strftime("%Y-%m-%d")
    if "to" in query:
        query["to"] = end.strftime("%Y-%m-%d")
    return query


@schemathesis.hook
def map_query(ctx, query):
    path = getattr(ctx.operation, "path", "")
    if query:
        _dependent(ctx.operation, path, query)
    if not query or ("from" not in query and "to" not in query):
        return query
    if path == "/v1/users" or (path == "/v1/breakdown" and query.get("by") == "user"):
        return _whole_days(query)
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
