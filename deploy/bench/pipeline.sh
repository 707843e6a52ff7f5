#!/usr/bin/env bash
# `make bench`, part 2: the running pipeline, release builds of gateway, ingestor, aggregator and query on the
# bench stack.
#   - pipeline: how long the ingestor and aggregator take to apply 100,000 accepted events to the rollups;
#   - end-to-end delay from a batch's 202 to the first query answer that counts it, at 10,000 events/s;
#   - query latency p50/p99 under 16 clients, and the share answered from the read model;
#   - gateway ingest: events/s accepted (202) with batches of 100 and 1000 events, request latency p50/p99 (wrk),
#     against raw librdkafka produce of the same payloads on the same broker;
#   - OTLP: spans/s accepted through /v1/traces (protobuf, 512 spans a request) against events/s through /v1/events
#     for the same 512 calls;
#   - RSS of each service idle and under load;
#   - noisy neighbours: tenant B's latency while tenant A attacks at its default limits (neighbours.py).
# Figures are printed, never asserted. Usage: deploy/bench/pipeline.sh BIN_DIR STATE_DIR
set -euo pipefail
BIN=$1
STATE=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
set -a; . "$STATE/stack.env"; set +a
command -v wrk >/dev/null || { echo "installing wrk"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

export TW_ADMIN_TOKEN=bench-admin-token-0123456789 TW_LOG_LEVEL=warning TW_GROUP_PREFIX=bench$$ TW_PRICES_REFRESH=1s
# Rate limiting stays on (its Redis round trip is part of every request's cost) with budgets no tenant here reaches.
export TW_RATE_LIMIT_EVENTS_PER_SECOND=10000000 TW_RATE_LIMIT_REQUESTS_PER_SECOND=1000000
# Notifications go to a receiver on loopback (the operator's allowance, as for any private address).
export TW_WEBHOOK_ALLOW_HTTP=true TW_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8
declare -A PORT=([gateway]=18180 [ingestor]=18181 [aggregator]=18182 [query]=18184)
for s in gateway ingestor aggregator query; do
    TW_HTTP_PORT=${PORT[$s]} "$BIN/$s" >"$STATE/$s.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$s=$!"
done
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:18180/readyz" >/dev/null && break; sleep 0.1; done
# Eight tenants: events are keyed by tenant, and the local broker keeps only ~5 MB per partition, so one tenant's
# backlog on one partition would be cut short by retention (the check below would see it).
KEYS=()
for t in $(seq 1 8); do
    KEYS+=("$(curl -sf -XPOST http://127.0.0.1:18180/v1/admin/tenants -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" -d "{\"tenant_id\":\"bench-$$-$t\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')")
done
KEY=${KEYS[0]}
rss() { awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$1/status"; }
echo "RSS idle: gateway $(rss $PID_gateway), ingestor $(rss $PID_ingestor), aggregator $(rss $PID_aggregator), query $(rss $PID_query)"

python3 - "$STATE" <<'PY'
import json, sys, uuid, random, time
state = sys.argv[1]
now = time.time()
# Timestamps over 50 s that always straddle a minute boundary (25 s either side of the minute before this one), so
# every run writes the same rollup rows: from the last 50 s, a run starting late in a minute had every event in one
# minute and wrote half the minute rows of the others.
first = now - now % 60 - 85
models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4")]
def event():
    p, m = random.choice(models)
    return {"event_id": str(uuid.uuid4()), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(first + random.randint(0, 50))) + "Z",
            "provider": p, "model": m, "input_tokens": random.randint(10, 5000), "output_tokens": random.randint(1, 900),
            "latency_ms": random.randint(50, 9000), "status": "ok", "user_id": "u-%d" % random.randint(1, 500)}
for n in (100, 1000):
    with open(f"{state}/batch{n}.json", "w") as f:
        json.dump([event() for _ in range(n)], f)
PY
cat >"$STATE/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
local f = io.open(os.getenv("BODY"), "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT %d %d %.3f %.1f %.1f\n", summary.requests, non2xx, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
# Pipeline first, on an idle pipeline: 100 batches of 1000 fresh events posted one after another, then the wait
# until the rollups hold them all. Twice: the plain workload (3 models, 500 users, no app, environment or tags; the
# figure earlier releases reported) and a realistic one (20 apps, 3 environments, users drawn from 100,000, three
# promoted tags of 50, 200 and 10 values), on tenants of their own.
RKEYS=()
for t in $(seq 1 8); do
    RKEYS+=("$(curl -sf -XPOST http://127.0.0.1:18180/v1/admin/tenants -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" -d "{\"tenant_id\":\"bench-$$-r$t\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')")
    curl -sf -XPATCH "http://127.0.0.1:18180/v1/admin/tenants/bench-$$-r$t" -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" \
        -d '{"promoted_tags": ["feature", "customer", "team"]}' >/dev/null
done
# The ingestor reads promoted tags with the tenant table (TW_PRICES_REFRESH, 1 s here).
sleep 2
url=$TW_POSTGRES_URL
TOTAL="app='' AND environment='' AND provider='' AND model='' AND tag_key='' AND tag_value=''"
sizes() { psql "$url" -tAc "SELECT string_agg(relname || '=' || pg_total_relation_size(oid)::text, ' ' ORDER BY relname) FROM pg_class WHERE relname IN ('rollups_1m','rollups_1h','rollups_1d','user_totals_1d','evidence_samples')"; }
# CPU seconds used so far by each part (utime + stime of the process, and of Postgres's postmaster and backends), to
# say where a workload's time goes; the broker is the local mock cluster.
PG_MASTER=$(head -n 1 "$(cat "$STATE/pg.datadir")/data/postmaster.pid")
BROKER_PID=$(cat "$STATE/broker.pid")
cpu_of() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
cpu_now() { echo "$(cpu_of "$PID_gateway") $(cpu_of "$PID_ingestor") $(cpu_of "$PID_aggregator") $(cpu_of "$PG_MASTER" $(pgrep -P "$PG_MASTER")) $(cpu_of "$BROKER_PID")"; }
# Rows inserted or updated so far per table (Postgres's statistics, flushed at least once a second).
writes() { psql "$TW_POSTGRES_URL" -tAc "SELECT string_agg(relname || '=' || (n_tup_ins + n_tup_upd)::text, ' ' ORDER BY relname) FROM pg_stat_user_tables WHERE relname IN ('rollups_1m','rollups_1h','rollups_1d','user_totals_1d','evidence_samples','rollup_emits')"; }
writes_report() { # before after
    python3 -c "
import sys
b, a = [dict(x.split('=') for x in arg.split()) for arg in sys.argv[1:3]]
print('  rows written (inserted or updated) for the 100,000 events: ' + ', '.join(f'{k} {int(a[k]) - int(b.get(k, 0))}' for k in sorted(a)))
" "$1" "$2"
}
cpu_report() { # before after
    python3 -c "
import os, sys
hz = os.sysconf('SC_CLK_TCK')
b, a = [list(map(int, x.split())) for x in sys.argv[1:3]]
parts = ['gateway', 'ingestor', 'aggregator', 'postgres', 'broker']
print('  CPU seconds for the 100,000 events: ' + ', '.join(f'{n} {(y - x) / hz:.1f}' for n, x, y in zip(parts, b, a)) + f'; total {(sum(a) - sum(b)) / hz:.1f}')
" "$1" "$2"
}
pipeline() { # label tenant-prefix realistic keys...
    local label=$1 prefix=$2 realistic=$3; shift 3
    local cpu_before writes_before; cpu_before=$(cpu_now); writes_before=$(writes)
    python3 - "$STATE" "$realistic" "$@" <<'PY'
import json, sys, time, uuid, random, urllib.request
state, realistic, keys = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
batch = json.load(open(f"{state}/batch1000.json"))
envs = ["prod", "staging", "dev"]
# The bodies are made before the clock starts: the figure is the pipeline's, not this client's.
bodies = []
for i in range(100):
    for e in batch:
        e["event_id"] = str(uuid.uuid4())
        if realistic:
            e["app"] = "app-%d" % random.randint(1, 20)
            e["environment"] = random.choice(envs)
            e["user_id"] = "u-%d" % random.randint(1, 100000)
            e["tags"] = {"feature": "f-%d" % random.randint(1, 50), "customer": "c-%d" % random.randint(1, 200), "team": "t-%d" % random.randint(1, 10)}
    bodies.append(json.dumps(batch).encode())
start = time.time()
for i, body in enumerate(bodies):
    req = urllib.request.Request("http://127.0.0.1:18180/v1/events", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {keys[i % len(keys)]}", "Content-Type": "application/json"})
    assert urllib.request.urlopen(req).status == 202
accepted = time.time()
open(f"{state}/pipeline.start", "w").write(f"{start} {accepted}\n")
PY
    read -r start accepted <"$STATE/pipeline.start"
    for _ in $(seq 1 900); do
        n=$(psql "$url" -tAc "SELECT COALESCE(sum(requests),0) FROM rollups_1m WHERE tenant_id LIKE '$prefix%' AND $TOTAL" 2>/dev/null || echo 0)
        [ "${n:-0}" -ge 100000 ] && break
        sleep 0.2
    done
    python3 -c "import time,sys; s,a=float(sys.argv[1]),float(sys.argv[2]); e=time.time(); print(f'pipeline ({sys.argv[4]}): 100000 events posted in {a-s:.2f} s (one request of 1000 at a time), all in the committed rollups {e-a:.2f} s after the last 202: {100000/(e-s):.0f} events/s from gateway to rollups; requests counted in the rollups: {sys.argv[3]}')" "$start" "$accepted" "$n" "$label"
    cpu_report "$cpu_before" "$(cpu_now)"
    sleep 1.5  # the statistics of the last transactions
    writes_report "$writes_before" "$(writes)"
}
pipeline "plain: 3 models, 500 users" "bench-$$-" 0 "${KEYS[@]}"
before=$(sizes)
pipeline "realistic: 20 apps x 3 environments x 3 models, 100,000 users, 3 promoted tags" "bench-$$-r" 1 "${RKEYS[@]}"
after=$(sizes)
# What the realistic 100,000 events wrote: rollup rows per minute of data, rows per user-day, bytes per row.
psql "$url" -tA -F ' ' -c "
    SELECT (SELECT count(*) FROM rollups_1m WHERE tenant_id LIKE 'bench-$$-r%'), (SELECT count(DISTINCT (tenant_id, window_start)) FROM rollups_1m WHERE tenant_id LIKE 'bench-$$-r%'),
           (SELECT count(*) FROM rollups_1h WHERE tenant_id LIKE 'bench-$$-r%'), (SELECT count(*) FROM rollups_1d WHERE tenant_id LIKE 'bench-$$-r%'),
           (SELECT count(*) FROM user_totals_1d WHERE tenant_id LIKE 'bench-$$-r%'), (SELECT count(*) FROM evidence_samples WHERE tenant_id LIKE 'bench-$$-r%')" \
    | python3 -c "
import sys
m, windows, h, d, users, evidence = map(int, sys.stdin.read().split())
before = dict(x.split('=') for x in sys.argv[1].split())
after = dict(x.split('=') for x in sys.argv[2].split())
grow = {k: int(after[k]) - int(before[k]) for k in after}
print(f'rows (realistic 100,000 events): rollups_1m {m} in {windows} tenant-minutes ({m / max(windows, 1):.0f} rows per tenant-minute), rollups_1h {h}, rollups_1d {d}, user_totals_1d {users}, evidence_samples {evidence}')
print('storage added: ' + ', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sorted(grow.items())))
if users:
    per = grow['user_totals_1d'] / users
    print(f'per-user totals: {per:.0f} bytes per user-day with indexes, {per * 1e6 / 1e6:.0f} MB per million active users a day')
" "$before" "$after"

# TW_BENCH_PIPELINE_ONLY=1 stops here (profiling the write path without the rest of the run).
[ "${TW_BENCH_PIPELINE_ONLY:-0}" = 1 ] && exit 0

# End-to-end delay: 10,000 events/s for 15 s (a batch of 1000 every 100 ms) for a fresh tenant, while a poller
# asks the gateway's query API for the tenant's total every 50 ms; a batch's delay is from its 202 to the first
# answer that counts it.
E2E_KEY=$(curl -sf -XPOST http://127.0.0.1:18180/v1/admin/tenants -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" -d "{\"tenant_id\":\"bench-$$-e2e\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
python3 - "$STATE" "$E2E_KEY" <<'PY'
import json, sys, threading, time, uuid, urllib.request
state, key = sys.argv[1], sys.argv[2]
batch = json.load(open(f"{state}/batch1000.json"))
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
accepted, seen, done = [], [], threading.Event()
def poll():
    while not done.is_set():
        req = urllib.request.Request("http://127.0.0.1:18180/v1/breakdown", headers=headers)
        n = json.load(urllib.request.urlopen(req))["totals"]["requests"]
        seen.append((time.time(), n))
        time.sleep(0.05)
poller = threading.Thread(target=poll)
poller.start()
total, start = 0, time.time()
for i in range(150):
    now = time.time()
    for e in batch:
        e["event_id"] = str(uuid.uuid4())
        e["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 1)) + "Z"
    req = urllib.request.Request("http://127.0.0.1:18180/v1/events", data=json.dumps(batch).encode(), method="POST", headers=headers)
    assert urllib.request.urlopen(req).status == 202
    total += len(batch)
    accepted.append((time.time(), total))
    time.sleep(max(0, start + (i + 1) * 0.1 - time.time()))
deadline = time.time() + 60
while time.time() < deadline and (not seen or seen[-1][1] < total):
    time.sleep(0.1)
done.set(); poller.join()
delays = []
for t, n in accepted:
    visible = next((ts for ts, c in seen if c >= n and ts >= t), None)
    if visible is not None: delays.append(visible - t)
delays.sort()
pct = lambda q: delays[min(len(delays) - 1, int(q * (len(delays) - 1)))] if delays else float("nan")
print(f"end-to-end delay (202 to counted by the query API), {total} events at ~{total / (accepted[-1][0] - start):.0f} events/s: "
      f"p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, max {delays[-1] if delays else float('nan'):.2f} s; "
      f"{len(delays)} of {len(accepted)} batches seen, final count {seen[-1][1] if seen else 0} of {total}")
PY

# Query latency, with the pipeline idle: the last hour of one tenant (the pipeline's events), under 16 concurrent
# clients. (Measured before the throughput test, whose duplicate backlog keeps the ingestor busy for minutes.)
cat >"$STATE/get.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $KEY"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.1f %.1f\\n", summary.requests, summary.errors.status, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
# Wait until the read model has the tenant's windows (the aggregator publishes closed windows within seconds).
for _ in $(seq 1 100); do
    src=$(curl -s -o /dev/null -D - -H "Authorization: Bearer $KEY" "http://127.0.0.1:18180/v1/series?metric=requests&step=1m" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tokenwatch-source" {print $2}')
    [[ "$src" == read_model* ]] && break
    sleep 0.3
done
for q in "series?metric=latency_p95&step=1m" "series?metric=requests&step=1m" "breakdown?by=model&order=cost"; do
    out=$(wrk -t2 -c16 -d5s -s "$STATE/get.lua" "http://127.0.0.1:18180/v1/$q" 2>&1 | grep RESULT || true)
    read -r _ reqs bad secs p50 p99 <<<"$out"
    python3 -c "import sys; r,b,s=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); print(f'query /v1/{sys.argv[6]} (last hour): {r/s:.0f} requests/s, {b} not 200, latency p50 {sys.argv[4]} ms, p99 {sys.argv[5]} ms')" "$reqs" "$bad" "$secs" "$p50" "$p99" "$q"
done
hits=$(curl -s http://127.0.0.1:18180/metrics | awk '/tw_gateway_query_source_total\{source="read_model"\}/ {print $2}')
misses=$(curl -s http://127.0.0.1:18180/metrics | awk '/tw_gateway_query_source_total\{source="postgres"\}/ {print $2}')
python3 -c "import sys; h,m=float(sys.argv[1] or 0),float(sys.argv[2] or 0); print(f'series answered from the read model: {h:.0f} of {h+m:.0f} ({100*h/max(h+m,1):.1f}%; the rest of each answer, windows after the horizon, from Postgres)')" "${hits:-0}" "${misses:-0}"

# Gateway throughput: every request posts the same event ids; the gateway accepts them all (202), the ingestor
# drops the repeats as client retries (and, on the local broker, old raw messages may be dropped by its retention:
# this part measures the gateway only).
for n in 100 1000; do
    out=$(BODY="$STATE/batch$n.json" wrk -t2 -c16 -d8s -s "$STATE/post.lua" http://127.0.0.1:18180/v1/events 2>&1 | grep RESULT || true)
    read -r _ reqs bad secs p50 p99 <<<"$out"
    [ "$n" = 1000 ] && echo "RSS under load: gateway $(rss $PID_gateway), ingestor $(rss $PID_ingestor), aggregator $(rss $PID_aggregator), query $(rss $PID_query)"
    LAST_RATE=$(python3 -c "import sys; r,b,s,n=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); print(f'{(r-b)*n/s:.0f}')" "$reqs" "$bad" "$secs" "$n")
    python3 -c "import sys; r,b,s,n=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); print(f'gateway ingest, batches of {n}: {(r-b)*n/s:.0f} events/s accepted (202) ({(r-b)/s:.0f} requests/s, {b} not 202), latency p50 {sys.argv[5]} ms, p99 {sys.argv[6]} ms')" "$reqs" "$bad" "$secs" "$n" "$p50" "$p99"
done
size=$(python3 -c "import json; b=json.load(open('$STATE/batch1000.json')); print(sum(len(json.dumps(e, separators=(',',':'))) for e in b)//len(b))")
python3 "$ROOT/deploy/broker-ctl.py" "$TW_KAFKA_MOCK_CONTROL" "CREATE bench.raw 16" >/dev/null
c=$("$STATE/produce_loop" "$TW_KAFKA_BROKERS" bench.raw 500000 "$size" | cut -d' ' -f3)
echo "raw librdkafka produce of ${size}-byte events on the same broker: $c msg/s"
echo "ratio gateway (batches of 1000) / raw produce: $(python3 -c "print(f'{$LAST_RATE / $c:.2f}')")"

# OTLP: the same 512 calls as one protobuf export (with prompts and completions as span attributes, as OpenLLMetry
# sends them) and as one event batch, each posted repeatedly for 8 s by 16 connections.
"$BIN/tokenwatch-bench" otlp "$STATE"
declare -A RATE
for kind in traces events; do
    if [ $kind = traces ]; then body="$STATE/traces512.pb"; type=application/x-protobuf; path=/v1/traces; else body="$STATE/events512.json"; type=application/json; path=/v1/events; fi
    out=$(BODY="$body" CONTENT_TYPE=$type wrk -t2 -c16 -d8s -s "$STATE/post.lua" "http://127.0.0.1:18180$path" 2>&1 | grep RESULT || true)
    read -r _ reqs bad secs p50 p99 <<<"$out"
    RATE[$kind]=$(python3 -c "import sys; r,b,s=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); print(f'{(r-b)*512/s:.0f}')" "$reqs" "$bad" "$secs")
    echo "gateway $path, 512 calls a request ($(stat -c %s "$body") bytes): ${RATE[$kind]} $([ $kind = traces ] && echo spans || echo events)/s accepted ($bad not 2xx), latency p50 $p50 ms, p99 $p99 ms"
done
echo "ratio OTLP spans/s / events/s through the gateway: $(python3 -c "print(f'{${RATE[traces]} / max(${RATE[events]}, 1):.2f}')")"

# Notifications: 3,000 new anomalies published on llm.anomalies.v1 at 1,000 a second; the query service stores each,
# queues it for the tenant's webhook channel and delivers it to a local receiver (signed, one POST each). Rate:
# deliveries a second over the run; delay: from publication to the receiver's arrival, p50 and p99.
rm -f "$STATE/hook.port"
python3 "$ROOT/Tests/Notify/webhook_receiver.py" "$STATE/hook.port" "$STATE/hook.log" "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0wMTIzNDU2Nzg5" >"$STATE/hook.out" 2>&1 &
PIDS+=($!)
: >"$STATE/hook.log"
for _ in $(seq 1 100); do [ -s "$STATE/hook.port" ] && break; sleep 0.1; done
NT=bench-$$-notify
curl -sf -XPOST http://127.0.0.1:18180/v1/admin/tenants -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" -d "{\"tenant_id\":\"$NT\"}" >/dev/null
NKEY=$(curl -sf -XPOST "http://127.0.0.1:18180/v1/admin/tenants/$NT/keys" -H "Authorization: Bearer $TW_ADMIN_TOKEN" -H "Content-Type: application/json" -d '{"scopes":["admin"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
curl -sf -XPOST http://127.0.0.1:18180/v1/channels -H "Authorization: Bearer $NKEY" -H "Content-Type: application/json" \
    -d "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$(cat "$STATE/hook.port")/hook\",\"min_severity\":\"info\",\"max_per_hour\":0}" >/dev/null
"$BIN/tokenwatch-bench" anomalies "$TW_KAFKA_BROKERS" llm.anomalies.v1 "$NT" 3000 1000 "$STATE/published.txt"
python3 - "$STATE/published.txt" "$STATE/hook.log" <<'PY'
import json, sys, time
published = dict(line.split() for line in open(sys.argv[1]) if line.strip())
deadline = time.time() + 60
while True:
    got = {}
    for line in open(sys.argv[2]):
        e = json.loads(line)
        if e["id"].endswith("-r1") and e["id"][:-3] in published:
            got.setdefault(e["id"][:-3], e["received_at"])
    if len(got) >= len(published) or time.time() > deadline:
        break
    time.sleep(0.5)
delays = sorted(got[k] - float(published[k]) for k in got)
first = min(float(v) for v in published.values())
span = max(got.values()) - first if got else 1
if not delays:
    print("notifications: none delivered within 60 s")
else:
    p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] * 1000
    print(f"notifications (webhook, signed, one POST each): {len(got)}/{len(published)} delivered, {len(got) / span:.0f} a second over the run "
          f"(published at 1,000 a second); delay from publication to the receiver p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms")
PY

# Noisy neighbours (issue 30): tenant A runs each attack at its default limits while tenant B's latency is measured
# against B alone (deploy/bench/neighbours.py prints the table and the goal), then the gateway's RSS after them.
echo "noisy neighbours (tenant A attacks at the default limits, tenant B measured; ms):"
python3 "$ROOT/deploy/bench/neighbours.py" http://127.0.0.1:18180 --seconds 8 --pid "$PID_gateway"
echo "RSS after the attacks: gateway $(rss $PID_gateway), peak over the whole bench $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$PID_gateway/status) (goal: under 128 MB)"
