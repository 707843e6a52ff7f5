#!/usr/bin/env python3
"""Noisy neighbours (issue 30): tenant A attacks at its default limits while tenant B's latency is measured.

    neighbours.py GATEWAY_URL [--seconds S] [--json OUT]    (the admin token in TW_ADMIN_TOKEN)

Creates tenants A and B with the default limits (50,000 events/s, 1,000 requests/s), a webhook receiver for B and a
listener for A that accepts connections and never answers. B alone first, then during each attack of A in turn, B
sends a batch of 10 events, a 60-point series query, a breakdown query and a liveness probe one after another for S seconds, and one
test notification (its latency is from the POST to the receiver's arrival). Attacks, each by 8 client threads (--threads; --scale shrinks the bodies, series and batches):

  otlp_bomb     19 KB gzip bodies of 10 million empty resourceSpans to /v1/traces
  inflate       20 KB gzip bodies inflating to 20 MB of whitespace to /v1/events
  big_batches   5,000-event batches to /v1/events
  big_series    series queries of 10,000 points
  test_sends    test notifications to 20 channels whose receiver never answers
  creations     channels, rules and budgets created as fast as answered

Prints per phase B's p50/p99 (ms) and ratio to alone, the notification latency, and A's answers by status. With
--json writes the same as data. Nothing is asserted here: `make test` runs it briefly and checks the answers
(`Tests/ServicesTests/NoisyNeighbourEndToEndTests.swift`); `make bench` prints the figures.
"""
import argparse, gzip, http.client, json, os, socket, sys, threading, time, urllib.parse, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.ArgumentParser()
args.add_argument("gateway")
args.add_argument("--seconds", type=float, default=10)
args.add_argument("--json")
# `make test` runs a debug build: fewer attackers and smaller bodies keep it to a minute (the answers are what it checks).
args.add_argument("--threads", type=int, default=8)
args.add_argument("--scale", type=float, default=1.0)
# The gateway's PID: its RSS (and peak) is reported after each phase.
args.add_argument("--pid", type=int)
a = args.parse_args()
url = urllib.parse.urlparse(a.gateway)
ADMIN = os.environ["TW_ADMIN_TOKEN"]
RUN = uuid.uuid4().hex[:8]


def call(method, path, token=None, body=None, headers=None, timeout=60):
    """One request on its own connection: (status, body bytes, seconds); status 0 on a connection error."""
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    if isinstance(body, str):
        body = body.encode()
    started = time.monotonic()
    try:
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, time.monotonic() - started
    except Exception:
        return 0, b"", time.monotonic() - started


def tenant(name):
    tid = f"nb-{RUN}-{name}"
    s, d, _ = call("POST", "/v1/admin/tenants", ADMIN, json.dumps({"tenant_id": tid, "limits": {"events_per_second": 50000, "requests_per_second": 1000}}))
    assert s == 201, (s, d)
    s, d, _ = call("POST", f"/v1/admin/tenants/{tid}/keys", ADMIN, json.dumps({"scopes": ["ingest", "query", "admin"]}))
    assert s == 201, (s, d)
    return tid, json.loads(d)["api_key"]


# B's receiver: arrival time per webhook-id. A's: accepts and never answers.
arrived = {}
class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *_): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        arrived[self.headers.get("webhook-id", "")] = time.monotonic()
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
silent = socket.socket(); silent.bind(("127.0.0.1", 0)); silent.listen(1024)
held = []
def hold():
    while True:
        try: held.append(silent.accept()[0])
        except OSError: return
threading.Thread(target=hold, daemon=True).start()

A, akey = tenant("a")
B, bkey = tenant("b")
now = time.time()
def event(i):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 30 - i % 60)) + "Z"
    return {"event_id": str(uuid.uuid4()), "timestamp": ts, "provider": "openai", "model": "gpt-4o", "input_tokens": 100 + i % 50,
            "output_tokens": 20, "latency_ms": 300 + i % 100, "status": "ok"}
call("POST", "/v1/events", bkey, json.dumps([event(i) for i in range(200)]))

b_channels = []
def b_channel():
    s, d, _ = call("POST", "/v1/channels", bkey, json.dumps({"name": "b", "url": f"http://127.0.0.1:{receiver.server_port}/hook"}))
    assert s == 201, (s, d)
    return json.loads(d)["channel_id"]

bodies = {
    "otlp_bomb": gzip.compress(b"\x0a\x00" * 10_000_000, 9),
    "inflate": gzip.compress(b" " * int(20 * 1024 * 1024 * a.scale - 1000) + json.dumps([event(0)]).encode(), 9),
    "big_batches": json.dumps([event(i) for i in range(int(5000 * a.scale))]).encode(),
}
end_us = int(now // 60 * 60 * 1_000_000)
series_big = f"/v1/series?metric=requests&step=1m&from={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end_us / 1e6 - int(9999 * a.scale) * 60))}&to={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end_us / 1e6))}"
series_small = f"/v1/series?metric=requests&step=1m&from={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end_us / 1e6 - 3600))}&to={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end_us / 1e6))}"
a_channels = []

def attack(kind, stop, counts, lock):
    i = 0
    while not stop.is_set():
        i += 1
        if kind == "otlp_bomb":
            s, _, _ = call("POST", "/v1/traces", akey, bodies[kind], {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        elif kind == "inflate":
            s, _, _ = call("POST", "/v1/events", akey, bodies[kind], {"Content-Encoding": "gzip"})
        elif kind == "big_batches":
            s, _, _ = call("POST", "/v1/events", akey, bodies[kind])
        elif kind == "big_series":
            s, _, _ = call("GET", series_big, akey)
        elif kind == "test_sends":
            s, _, _ = call("POST", f"/v1/channels/{a_channels[i % len(a_channels)]}/test", akey)
        else:
            path, body = [("/v1/channels", {"name": "x", "url": f"http://127.0.0.1:{silent.getsockname()[1]}/h"}),
                          ("/v1/rules", {"name": "x", "metric": "error_rate", "above": 0.5}),
                          ("/v1/budgets", {"name": "x", "period": "day", "amount_usd": 1})][i % 3]
            s, _, _ = call("POST", path, akey, json.dumps(body))
        with lock:
            counts[s] = counts.get(s, 0) + 1

def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")

def phase(kind):
    stop, lock, counts = threading.Event(), threading.Lock(), {}
    threads = [threading.Thread(target=attack, args=(kind, stop, counts, lock), daemon=True) for _ in range(a.threads if kind else 0)]
    for t in threads: t.start()
    if kind: time.sleep(min(2, a.seconds / 3))  # the attack under way before B is measured
    lat = {"ingest": [], "series": [], "breakdown": [], "healthz": []}
    failures = 0
    channel = b_channel()
    s, d, sent = call("POST", f"/v1/channels/{channel}/test", bkey)
    posted = time.monotonic()
    message = json.loads(d).get("message_id") if s == 202 else None
    failures += s != 202
    deadline = time.monotonic() + a.seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        for name, (m, p, body) in {"ingest": ("POST", "/v1/events", json.dumps([event(i * 10 + j) for j in range(10)])),
                                   "series": ("GET", series_small, None),
                                   "breakdown": ("GET", series_small.replace("/v1/series?metric=requests&step=1m&", "/v1/breakdown?by=model&"), None),
                                   "healthz": ("GET", "/healthz", None)}.items():
            s, _, secs = call(m, p, bkey, body)
            if s not in (200, 202): failures += 1
            lat[name].append(secs)
    while message and message not in arrived and time.monotonic() < posted + 30:
        time.sleep(0.02)
    notify = (arrived[message] - posted) * 1000 if message in arrived else None
    stop.set()
    for t in threads: t.join(timeout=90)
    rss = None
    if a.pid:
        status = dict(line.split(":", 1) for line in open(f"/proc/{a.pid}/status") if ":" in line)
        rss = (int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024)
    return {"attack": kind or "alone", "b_failures": failures, "gateway_rss_mb": rss, "notification_ms": notify, "a_answers": {str(k): v for k, v in sorted(counts.items())},
            **{f"{n}_p50_ms": percentile(v, 50) for n, v in lat.items()}, **{f"{n}_p99_ms": percentile(v, 99) for n, v in lat.items()},
            "b_requests": sum(len(v) for v in lat.values())}

for _ in range(20):
    s, d, _ = call("POST", "/v1/channels", akey, json.dumps({"name": "a", "url": f"http://127.0.0.1:{silent.getsockname()[1]}/hook"}))
    if s == 201: a_channels.append(json.loads(d)["channel_id"])
# B's channels: one per phase (a channel takes 10 test messages an hour).
results = [phase(None)]
for kind in ["otlp_bomb", "inflate", "big_batches", "big_series", "test_sends", "creations"]:
    results.append(phase(kind))

alone = results[0]
print(f"{'attack':<12} {'ingest p50/p99':>16} {'series p50/p99':>16} {'breakdown p50/p99':>18} {'healthz p99':>12} {'p99 ratio (worst)':>18} {'notify ms':>10}  A's answers")
for r in results:
    worst = max(r[f"{n}_p99_ms"] / max(alone[f"{n}_p99_ms"], 0.001) for n in ("ingest", "series", "breakdown"))
    r["worst_p99_ratio"] = worst
    note = "" if r["b_failures"] == 0 else f"  B failures: {r['b_failures']}"
    print(f"{r['attack']:<12} {r['ingest_p50_ms']:>7.1f}/{r['ingest_p99_ms']:<8.1f} {r['series_p50_ms']:>7.1f}/{r['series_p99_ms']:<8.1f} {r['breakdown_p50_ms']:>8.1f}/{r['breakdown_p99_ms']:<9.1f} {r['healthz_p99_ms']:>12.1f} "
          f"{worst:>18.2f} {'-' if r['notification_ms'] is None else round(r['notification_ms']):>10}  {r['a_answers']}{note}" + (f"  gateway RSS {r['gateway_rss_mb'][0]} MB (peak {r['gateway_rss_mb'][1]})" if r["gateway_rss_mb"] else ""))
print("goal: B's p99 at most 2x alone and under 100 ms for queries; every attack answered 413/429 or served within its budget")
if a.json:
    with open(a.json, "w") as f:
        json.dump(results, f)
