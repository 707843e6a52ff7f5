#!/usr/bin/env bash
# The gateway's API contract, checked by schemathesis (every standard check) against a running gateway:
#   deploy/contract/run.sh PYTHON GATEWAY_URL ADMIN_TOKEN TENANT_KEY [MAX_EXAMPLES]
# TENANT_KEY is a key with every scope (ingest, query, admin) of a tenant made for the run. Runs:
#   1. the tenant API with the key: all phases (the coverage phase without the positive-acceptance check, see 5),
#      except what 2 and 3 take;
#   2. POST /v1/events, and the OTLP exports, without the negative-rejection check (see 5);
#   3. the key routes by id (/v1/keys/{key_id}...) without the stateful phase (see 5);
#   4. last, the operator API (/v1/admin/...) with the admin token: all phases (its stateful phase may disable the
#      run's tenant);
#   the unauthenticated routes (/healthz, /readyz, /metrics, /openapi.json) are in run 4.
# 5. Exclusions, each with its reason:
#   - GET /v1/anomalies/stream: a stream that never ends by design (tested in StreamLifecycleTests).
#   - positive_data_acceptance in the coverage phase: that phase draws boundary values without the hooks
#     (hooks.py), so it breaks constraints across parameters that OpenAPI cannot state (from < to, at most 10,000
#     points, 400 days; an event's timestamp within the server's window, cached <= input, TTFT <= latency). The
#     fuzzing and stateful phases check positive acceptance with those constraints applied.
#   - negative_data_rejection on POST /v1/events: a batch is taken event by event by design; a batch holding an
#     invalid event next to valid ones is 202 with the invalid one reported (index, field, reason), not refused.
#   - negative_data_rejection on POST /v1/traces, /v1/metrics, /v1/logs: OTLP/JSON follows the proto3 JSON mapping,
#     which ignores unknown fields and reads null as absent, so "schema-violating" bodies are valid requests there;
#     the OTLP decoders are fuzzed on their own (make fuzz).
#   - the stateful phase on /v1/keys/{key_id}...: it would revoke or rotate the run's own key (listed by GET
#     /v1/keys) and turn every later request into a 401.
set -euo pipefail
PY=$1 URL=$2 ADMIN=$3 KEY=$4 N=${5:-25}
cd "$(dirname "${BASH_SOURCE[0]}")"
export PYTHONPATH=. SCHEMATHESIS_HOOKS=hooks
ST=("$(dirname "$PY")/schemathesis" run "$URL/openapi.json" --checks all --max-examples "$N" --no-color --seed 20261129)
rc=0
TENANT='^/v1/(series|breakdown|users|anomalies|dead-letters|tenant|detector/settings|keys)$'
echo "== tenant API: examples and coverage"
"${ST[@]}" -H "Authorization: Bearer $KEY" --include-path-regex "$TENANT" --phases examples,coverage --exclude-checks positive_data_acceptance || rc=1
echo "== tenant API: fuzzing and stateful"
"${ST[@]}" -H "Authorization: Bearer $KEY" --include-path-regex "$TENANT" --phases fuzzing,stateful || rc=1
echo "== POST /v1/events and the OTLP exports"
INGEST='^/v1/(events|traces|metrics|logs)$'
"${ST[@]}" -H "Authorization: Bearer $KEY" --include-path-regex "$INGEST" --phases fuzzing --exclude-checks negative_data_rejection || rc=1
"${ST[@]}" -H "Authorization: Bearer $KEY" --include-path-regex "$INGEST" --phases coverage --exclude-checks negative_data_rejection,positive_data_acceptance || rc=1
echo "== key routes by id"
"${ST[@]}" -H "Authorization: Bearer $KEY" --include-path-regex '^/v1/keys/' --phases examples,coverage,fuzzing || rc=1
# Last: its stateful phase lists tenants and may disable or rename them, the run's own tenant included.
echo "== operator API"
"${ST[@]}" -H "Authorization: Bearer $ADMIN" --include-path-regex '^/v1/admin|^/(healthz|readyz|metrics|openapi\.json)$' || rc=1
exit $rc
