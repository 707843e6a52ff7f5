#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (part of `make test`; `make k8s-check` alone):
#   1. every kustomization (base, overlays, components applied to the base) renders with `kubectl kustomize`;
#   2. every rendered built-in resource validates against the Kubernetes OpenAPI schemas bundled by
#      kubernetes-validate (PyPI) for Kubernetes 1.30, 1.32 and 1.37, strict about unknown fields, warnings treated
#      as errors; custom resources
#      (KafkaTopic, ServiceMonitor, ScaledObject, TriggerAuthentication) validate against the operators' own CRDs
#      (k8s/crds) and the cluster rules of deploy/k8s/crcheck.py, which must catch every case in deploy/k8s/bad;
#   3. checkov's Kubernetes policies pass on each rendered overlay (exceptions are annotated in place, with why).
# Usage: deploy/k8s/check.sh VENV_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=$(bash "$ROOT/deploy/venv.sh" "$1" "$ROOT/deploy/k8s/requirements.txt")
BIN=$(dirname "$PY")
command -v kubectl >/dev/null || { echo "k8s-check: kubectl (1.27 or later, with kustomize v5) is needed to render the manifests" >&2; exit 1; }
# Inside the repository: kustomize accepts only relative paths to other kustomizations.
OUT="$ROOT/.state/k8s-check"
rm -rf "$OUT"; mkdir -p "$OUT"

# Components render on top of the base, through a throwaway kustomization.
for component in "$ROOT"/k8s/components/*/; do
    name=$(basename "$component")
    mkdir -p "$OUT/with-$name"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n' \
        "$(realpath --relative-to="$OUT/with-$name" "$ROOT/k8s/base")" "$(realpath --relative-to="$OUT/with-$name" "$component")" >"$OUT/with-$name/kustomization.yaml"
done
targets=("$ROOT/k8s/base" "$ROOT"/k8s/overlays/*/ "$OUT"/with-*/)
rc=0
"$PY" "$ROOT/deploy/k8s/crcheck.py" --self-test "$ROOT/deploy/k8s/bad" "$ROOT/k8s/crds" || rc=1
for target in "${targets[@]}"; do
    label=${target#"$ROOT/"}; label=${label#"$OUT/"}; label=${label%/}
    rendered="$OUT/$(echo "$label" | tr / -).yaml"
    if ! kubectl kustomize "$target" >"$rendered" 2>"$rendered.err"; then
        echo "FAIL render $label: $(cat "$rendered.err")"; rc=1; continue
    fi
    "$PY" "$ROOT/deploy/k8s/crcheck.py" "$rendered" "$ROOT/k8s/crds" "$OUT/$(echo "$label" | tr / -).core.yaml" || rc=1
    core="$OUT/$(echo "$label" | tr / -).core.yaml"
    # Warnings (an unknown kind, a deprecated field) count as failures. The oldest Kubernetes the README supports
    # (1.30), one in between and the newest the validator knows.
    out=""
    for version in 1.30.0 1.32.0 1.37.0; do
        v=$("$BIN/kubernetes-validate" -k "$version" --strict --quiet "$core" 2>&1) || true
        [ -n "$v" ] && out+="Kubernetes $version:"$'\n'"$v"$'\n'
    done
    if [ -n "$out" ]; then echo "FAIL kubernetes-validate $label:"; echo "$out" | sed 's/^/  /'; rc=1; else echo "ok   $label: rendered, schemas valid (strict; Kubernetes 1.30, 1.32, 1.37)"; fi
    case "$label" in
        k8s/overlays/*)
            # -f, not -d: checkov skips directories whose path has a hidden component (.state).
            if "$BIN/checkov" -f "$rendered" --framework kubernetes --compact --skip-download >"$OUT/checkov.txt" 2>&1; then
                summary=$(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$OUT/checkov.txt") \
                    || { echo "FAIL checkov $label: no checks ran"; rc=1; continue; }
                echo "ok   $label: checkov $summary"
            else
                echo "FAIL checkov $label:"; grep -E "Passed checks" "$OUT/checkov.txt" | sed 's/^/  /'; grep -B1 "FAILED for" "$OUT/checkov.txt" | sed 's/^/  /'; rc=1
            fi;;
    esac
done

# Monitoring: the alert rules and the Grafana dashboard parse, have what Prometheus and Grafana require, and name
# only metrics the services export (or the Kafka exporter's, for lag).
"$PY" - "$ROOT" <<'PY' || rc=1
import glob, json, re, sys, yaml
root = sys.argv[1]
sources = "".join(open(f).read() for f in glob.glob(f"{root}/Services/**/*.swift", recursive=True) + glob.glob(f"{root}/Shared/**/*.swift", recursive=True))
external = {"up", "kafka_consumergroup_lag", "http_server_request_duration", "http_server_active_requests"}  # scrape health, the Kafka exporter, Hummingbird's MetricsMiddleware
def unknown_metrics(expr):
    names = set(re.findall(r"\b((?:tw|http_server|kafka)_[a-z_]+|up)\b(?=\s*[{(\[]|\s*\)|\s*$|\s*[><=])", expr))
    out = []
    for n in names:
        base = re.sub(r"_(bucket|count|sum)$", "", n)
        if base not in external and f'"{n}"' not in sources and f'"{base}"' not in sources:
            out.append(n)
    return out
failures = []
rules = yaml.safe_load(open(f"{root}/deploy/monitoring/alerts.yaml"))
count = 0
for group in rules["groups"]:
    assert group.get("name") and group.get("rules"), "every group needs a name and rules"
    for rule in group["rules"]:
        count += 1
        for key in ("alert", "expr", "labels", "annotations"):
            if key not in rule: failures.append(f"alert {rule.get('alert')}: missing {key}")
        if rule.get("labels", {}).get("severity") not in ("info", "warning", "critical"): failures.append(f"alert {rule.get('alert')}: severity must be info, warning or critical")
        if "for" in rule and not re.fullmatch(r"\d+[smh]", rule["for"]): failures.append(f"alert {rule['alert']}: bad for")
        if rule.get("expr", "").count("(") != rule.get("expr", "").count(")"): failures.append(f"alert {rule['alert']}: unbalanced parentheses")
        failures += [f"alert {rule['alert']}: unknown metric {m}" for m in unknown_metrics(rule.get("expr", ""))]
dashboard = json.load(open(f"{root}/deploy/monitoring/grafana-dashboard.json"))
ids = [p["id"] for p in dashboard["panels"]]
if len(set(ids)) != len(ids): failures.append("dashboard: panel ids repeat")
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        failures += [f"dashboard panel {panel['title']!r}: unknown metric {m}" for m in unknown_metrics(target["expr"])]
for f in failures: print("FAIL monitoring " + f)
if not failures: print(f"ok   monitoring: {count} alert rules, {len(ids)} dashboard panels, every metric exported")
sys.exit(1 if failures else 0)
PY
exit $rc
