#!/usr/bin/env bash
# Fails a third of the demo tenant's gpt-4o calls for a few minutes, to see the detector raise an anomaly (README,
# Quickstart step 6): posts BURST_RATE failed calls a second (default 10) for BURST_SECONDS (default 180) to the
# gateway at GATEWAY (default http://127.0.0.1:8080) with the key in DEMO_KEY.
set -euo pipefail
key=${DEMO_KEY:?set DEMO_KEY to a tenant API key, e.g. DEMO_KEY=\$(cat .state/run/demo.key)}
gateway=${GATEWAY:-http://127.0.0.1:8080}
rate=${BURST_RATE:-10}
seconds=${BURST_SECONDS:-180}
for ((s = 0; s < seconds; s++)); do
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    batch=""
    for ((i = 0; i < rate; i++)); do
        batch+="${batch:+,}{\"event_id\":\"burst-$(date +%s%N)-$i\",\"timestamp\":\"$now\",\"provider\":\"openai\",\"model\":\"gpt-4o\",\"input_tokens\":900,\"output_tokens\":0,\"latency_ms\":300,\"status\":\"error\",\"error_type\":\"server_error\"}"
    done
    curl -s -o /dev/null -w '%{http_code} ' -X POST "$gateway/v1/events" -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' -d "[$batch]"
    sleep 1
done
echo
