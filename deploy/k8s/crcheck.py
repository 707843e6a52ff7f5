#!/usr/bin/env python3
"""Checks the custom resources of a rendered kustomization against the operators' own CRDs (k8s/crds) and the
rules a real cluster enforces that no schema states. Part of deploy/k8s/check.sh.

    crcheck.py RENDERED.yaml CRD_DIR CORE_OUT.yaml   validate; write the built-in resources to CORE_OUT
    crcheck.py --self-test BAD_DIR CRD_DIR           every BAD_DIR/*.yaml must fail with its `# expect:` text

Schema: the CRD must serve the resource's apiVersion (Strimzi 1.x serves KafkaTopic kafka.strimzi.io/v1 only);
the resource must validate against that version's openAPIV3Schema; fields the schema does not declare are refused
unless it preserves unknown fields (the API server would prune them silently).
Cluster rules:
- KafkaTopics live in the Kafka cluster's namespace (the Topic Operator watches only its own): the namespace of
  TW_KAFKA_BROKERS' host (`<service>.<namespace>.svc`) when the config names one.
- KEDA kafka triggers name the brokers with their namespace (KEDA resolves names in its own namespace), carry an
  authenticationRef to a TriggerAuthentication of the render when the services use SASL or TLS, and every
  ScaledObject paces scale-down with advanced.horizontalPodAutoscalerConfig.behavior (cooldownPeriod only
  applies to scaling to zero), and scales to no more replicas than its topic has partitions (when the render has
  the KafkaTopic).
- A ServiceMonitor carries a `release` label (what kube-prometheus-stack's default serviceMonitorSelector matches).
- The ConfigMap the Deployments read is generated with a content hash in its name, so a change rolls the pods.
- Each Deployment reads its own Secret (tokenwatch-<service>), and only the gateway's holds the admin token.
- A CA file the config names (PGSSLROOTCERT, *_CA_FILE) lies inside a volume every Deployment mounts.
- Custom resources without a vendored CRD (KafkaUser, CloudNativePG, cert-manager) match the shapes of
  deploy/k8s/shapes.py (served version, known fields, enumerations); each service has a KafkaUser
  tokenwatch-<service>-kafka beside it whose Secret it reads, granting exactly the topics and groups the ConfigMap
  gives the service.
- Migrations come from a Job (TW_MIGRATIONS=only) when one exists, the services waiting (TW_MIGRATIONS=wait) within
  their startup probes; production renders have the Job, serve health and metrics on TW_MANAGEMENT_PORT (probes and
  the ServiceMonitor there) and open no data-store port to any address.
- In a production render (a Namespace labelled tokenwatch.io/environment=production): TLS to Kafka names its CA
  (TW_KAFKA_SSL_CA_FILE) and libpq has a root CA (PGSSLROOTCERT); every Deployment keeps at
  least 2 replicas (its HPA's minReplicas, or its ScaledObject's minReplicaCount), its PodDisruptionBudget lets at
  most one go at a time, and its replicas spread over nodes hard (DoNotSchedule).
"""
import re
import glob, json, os, sys
import jsonschema
import yaml
from shapes import SHAPES, shape_errors


def load_crds(directory):
    crds = {}
    for path in glob.glob(os.path.join(directory, "*.yaml")):
        for doc in yaml.safe_load_all(open(path)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            crds[(group, kind)] = {v["name"]: v["schema"]["openAPIV3Schema"] for v in doc["spec"]["versions"] if v.get("served")}
    return crds


def unknown_fields(value, schema, path):
    """Fields the structural schema does not declare (the API server prunes them without a word)."""
    out = []
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                out += unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and extra is not True:
                out.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def check(docs, crds):
    failures, core, ruled = [], [], []
    config = next((d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("tokenwatch-config")), {})
    brokers_host = config.get("TW_KAFKA_BROKERS", "").split(",")[0].rsplit(":", 1)[0]
    parts = brokers_host.split(".")
    kafka_namespace = parts[1] if len(parts) >= 3 and parts[2] == "svc" else None
    secured = config.get("TW_KAFKA_SECURITY_PROTOCOL", "plaintext").lower() != "plaintext"
    auths = {d["metadata"]["name"] for d in docs if d.get("kind") == "TriggerAuthentication"}
    partitions = {d["spec"].get("topicName", d["metadata"]["name"]): d["spec"].get("partitions") for d in docs if d.get("kind") == "KafkaTopic"}
    for doc in docs:
        api, kind, name = doc.get("apiVersion", ""), doc.get("kind"), doc.get("metadata", {}).get("name")
        group, _, version = api.rpartition("/")
        if (group, kind) not in crds:
            if (group, kind) in SHAPES:
                served, shape, required = SHAPES[(group, kind)]
                if version != served:
                    failures.append(f"{kind}/{name}: {api} is not what the operator serves ({group}/{served})")
                    continue
                failures += [f"{kind}/{name}: {e}" for e in shape_errors(doc.get("spec", {}), shape, "spec")]
                failures += [f"{kind}/{name}: spec.{r} is required" for r in required if r not in doc.get("spec", {})]
                ruled.append(kind)
            elif "." in group and not group.endswith("k8s.io"):
                failures.append(f"{kind}/{name}: custom resource {api} has no CRD in k8s/crds and no shape in deploy/k8s/shapes.py")
            else:
                core.append(doc)
            continue
        served = crds[(group, kind)]
        if version not in served:
            failures.append(f"{kind}/{name}: {api} is not served by the operator's CRD (it serves {', '.join(group + '/' + v for v in served)})")
            continue
        schema = served[version]
        for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
            failures.append(f"{kind}/{name}: {'/'.join(map(str, error.path))}: {error.message}")
        for field in unknown_fields(doc.get("spec", {}), schema.get("properties", {}).get("spec", {}), "spec"):
            failures.append(f"{kind}/{name}: unknown field {field} (the API server would drop it)")
        if kind == "KafkaTopic" and kafka_namespace and doc["metadata"].get("namespace") != kafka_namespace:
            failures.append(f"KafkaTopic/{name}: in namespace {doc['metadata'].get('namespace')!r}, but the Kafka cluster ({brokers_host}) is in {kafka_namespace!r}; the Topic Operator watches only its own namespace")
        if kind == "ScaledObject":
            behavior = doc["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
            if not behavior or "scaleDown" not in behavior:
                failures.append(f"ScaledObject/{name}: no advanced.horizontalPodAutoscalerConfig.behavior.scaleDown (cooldownPeriod only paces scaling to zero)")
            for trigger in doc["spec"].get("triggers", []):
                if trigger.get("type") != "kafka":
                    continue
                servers = trigger.get("metadata", {}).get("bootstrapServers", "")
                if any(len(s.rsplit(":", 1)[0].split(".")) < 2 for s in servers.split(",")):
                    failures.append(f"ScaledObject/{name}: bootstrapServers {servers!r} has no namespace; KEDA resolves it in its own")
                topic = trigger.get("metadata", {}).get("topic")
                if partitions.get(topic) and doc["spec"].get("maxReplicaCount", 100) > partitions[topic]:
                    failures.append(f"ScaledObject/{name}: maxReplicaCount {doc['spec'].get('maxReplicaCount', 100)} exceeds the {partitions[topic]} partitions of {topic} (a replica beyond them owns none)")
                ref = trigger.get("authenticationRef", {}).get("name")
                if secured and not ref:
                    failures.append(f"ScaledObject/{name}: the services use {config.get('TW_KAFKA_SECURITY_PROTOCOL')}, the kafka trigger has no authenticationRef")
                if ref and ref not in auths:
                    failures.append(f"ScaledObject/{name}: authenticationRef {ref!r} names no TriggerAuthentication in the render")
        if kind == "ServiceMonitor" and "release" not in doc["metadata"].get("labels", {}):
            failures.append(f"ServiceMonitor/{name}: no `release` label (kube-prometheus-stack selects ServiceMonitors by it)")
    failures += cluster_rules(docs) + kafka_user_rules(docs, config)
    return failures, core, ruled


def kafka_user_rules(docs, config):
    """Each service's KafkaUser grants exactly what the service uses (the topics and groups the ConfigMap names):
    a missing grant fails at the first produce or join, an extra one is access nobody needs."""
    users = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "KafkaUser"}
    if not users:
        return []
    topic = {k: config.get(f"TW_TOPIC_{k.upper()}", default) for k, default in
             [("raw", "llm.events.raw.v1"), ("events", "llm.events.v1"), ("dlq", "llm.events.dlq.v1"), ("rollups", "llm.rollups.v1"), ("anomalies", "llm.anomalies.v1")]}
    prefix = config.get("TW_GROUP_PREFIX", "tokenwatch")
    read = lambda t: {("topic", topic[t], "literal", "Read"), ("topic", topic[t], "literal", "Describe")}
    write = lambda t: {("topic", topic[t], "literal", "Write"), ("topic", topic[t], "literal", "Describe")}
    group = lambda service: {("group", f"{prefix}-{service}", "literal", "Read")}
    idempotent = {("cluster", None, None, "IdempotentWrite")}
    uses = {
        "gateway": write("raw") | read("anomalies") | {("group", f"{prefix}-gateway-stream-", "prefix", "Read")} | idempotent,
        "ingestor": read("raw") | write("events") | write("dlq") | group("ingestor") | idempotent,
        "aggregator": read("events") | write("rollups") | write("dlq") | group("aggregator") | idempotent,
        "detector": read("rollups") | write("anomalies") | group("detector") | idempotent,
        "query": read("rollups") | read("anomalies") | read("dlq") | group("query"),
        # KEDA's lag reads: committed offsets of the consumers' groups, end offsets of their topics.
        "keda": {("topic", topic[t], "literal", "Describe") for t in ("raw", "events", "rollups")}
                | {("group", f"{prefix}-{s}", "literal", "Describe") for s in ("ingestor", "aggregator", "detector", "query")},
    }
    failures = []
    # Each service reads its password from the Secret Strimzi writes for its user, in the user's namespace: so the
    # user must be `tokenwatch-<service>-kafka`, beside the Deployment, and the Deployment must read that Secret.
    for d in docs:
        if d.get("kind") != "Deployment" or d["metadata"]["name"] not in SERVICES:
            continue
        name, user_name = d["metadata"]["name"], d["metadata"]["name"] + "-kafka"
        user = users.get(user_name)
        if user is None:
            failures.append(f"Deployment/{name}: no KafkaUser {user_name} (the render has users for the others)")
            continue
        if user["metadata"].get("namespace") != d["metadata"].get("namespace"):
            failures.append(f"KafkaUser/{user_name}: in namespace {user['metadata'].get('namespace')!r}, away from Deployment/{name} ({d['metadata'].get('namespace')!r}), which cannot read the Secret Strimzi writes beside the user")
        env = {e["name"]: e for c in d["spec"]["template"]["spec"].get("containers", []) for e in c.get("env", [])}
        ref = env.get("TW_KAFKA_SASL_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != (user_name, "password") or env.get("TW_KAFKA_SASL_USERNAME", {}).get("value") != user_name:
            failures.append(f"Deployment/{name}: TW_KAFKA_SASL_USERNAME/PASSWORD are not {user_name} and its Secret's `password`")
    for name, user in users.items():
        service = name.removeprefix("tokenwatch-").removesuffix("-kafka")
        if service not in uses:
            continue
        granted = set()
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            r = acl.get("resource", {})
            for op in acl.get("operations", []):
                granted.add((r.get("type"), r.get("name"), r.get("patternType", "literal") if r.get("type") != "cluster" else None, op))
        fmt = lambda acls: ", ".join(sorted(f"{op} on {t} {n or ''}{'*' if p == 'prefix' else ''}".replace("  ", " ") for t, n, p, op in acls))
        if granted - uses[service]:
            failures.append(f"KafkaUser/{name}: grants more than {service} uses: {fmt(granted - uses[service])}")
        if uses[service] - granted:
            failures.append(f"KafkaUser/{name}: lacks what {service} uses: {fmt(uses[service] - granted)}")
    return failures


# The five services' Deployments: the rules below are about them (a reference Valkey is a one-replica cache of its own).
SERVICES = {f"tokenwatch-{s}" for s in ("gateway", "ingestor", "aggregator", "detector", "query")}


def cluster_rules(docs):
    failures = []
    deployments = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] in SERVICES]
    for d in deployments:
        for c in d["spec"]["template"]["spec"].get("containers", []):
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref and not re.search(r"-[a-z0-9]{10}$", ref):
                    failures.append(f"Deployment/{d['metadata']['name']}: reads ConfigMap {ref!r}, whose name has no content hash (configMapGenerator): a change would not roll the pods")
    # Secrets: only the gateway may read the admin token (known from the render's Secrets, or from the templates'
    # convention: a Secret named for another service).
    secrets = {d["metadata"]["name"]: set((d.get("data") or {}) | (d.get("stringData") or {})) for d in docs if d.get("kind") == "Secret"}
    for d in deployments:
        name = d["metadata"]["name"]
        for c in d["spec"]["template"]["spec"].get("containers", []):
            for source in c.get("envFrom", []):
                ref = source.get("secretRef", {}).get("name")
                if ref and name != "tokenwatch-gateway" and "TW_ADMIN_TOKEN" in secrets.get(ref, set()):
                    failures.append(f"Deployment/{name}: reads Secret {ref!r}, which holds TW_ADMIN_TOKEN; only the gateway may")
                if ref and (ref == "tokenwatch-secrets" or (ref.startswith("tokenwatch-") and not ref.startswith(name))):
                    failures.append(f"Deployment/{name}: reads Secret {ref!r}, not its own (tokenwatch-<service>): every service would get every credential")
    # CA files: a path the config names must be inside a volume every Deployment mounts (the README once named
    # /etc/tokenwatch/ca.pem, which nothing mounted); ConfigMap values are what the services read.
    config = {}
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("tokenwatch-config"):
            config.update(d.get("data") or {})
    ca_keys = [k for k in config if k == "PGSSLROOTCERT" or k.endswith("_CA_FILE")]
    jobs = [d for d in docs if d.get("kind") == "Job"]
    for d in deployments + jobs:
        name = f"{d['kind']}/{d['metadata']['name']}"

        for c in d["spec"]["template"]["spec"].get("containers", []):
            mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])]
            for key in ca_keys:
                if not any(config[key].startswith(m) for m in mounts):
                    failures.append(f"{name}: {key}={config[key]} is not inside any volume it mounts")
    # Migrations: a Job applies them with the schema owner's credential (TW_MIGRATIONS=only) and the services wait
    # for the schema (TW_MIGRATIONS=wait) on roles without DDL. A service that also migrates needs DDL; one that
    # waits longer than its startup probe allows is killed while it waits, again and again.
    migrators = [j for j in jobs for c in j["spec"]["template"]["spec"].get("containers", []) for e in c.get("env", [])
                 if e.get("name") == "TW_MIGRATIONS" and e.get("value") == "only"]
    mode = config.get("TW_MIGRATIONS", "apply")
    if migrators and deployments and mode != "wait":
        failures.append(f"ConfigMap: TW_MIGRATIONS={mode} while Job/{migrators[0]['metadata']['name']} migrates: the services must wait for it (TW_MIGRATIONS=wait), not migrate with a DDL credential")
    if mode == "wait":
        wait = seconds(config.get("TW_MIGRATIONS_WAIT", "10m"))
        for d in deployments:
            for c in d["spec"]["template"]["spec"].get("containers", []):
                probe = c.get("startupProbe")
                budget = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3) if probe else None
                if budget is not None and budget < wait:
                    failures.append(f"Deployment/{d['metadata']['name']}: startupProbe allows {budget} s, less than TW_MIGRATIONS_WAIT ({wait} s): a pod waiting for the migration Job is killed")
    production = any(d.get("kind") == "Namespace" and d["metadata"].get("labels", {}).get("tokenwatch.io/environment") == "production" for d in docs)
    if not production:
        return failures
    # Egress to the data stores' ports open to any address: a compromised pod could reach any Postgres or Redis it
    # finds (the base's rule, meant to be narrowed).
    for p in docs:
        if p.get("kind") != "NetworkPolicy":
            continue
        for rule in p["spec"].get("egress", []):
            ports = {x.get("port") for x in rule.get("ports", [])}
            if ports & {9092, 9093, 6379, 5432} and not rule.get("to"):
                failures.append(f"NetworkPolicy/{p['metadata']['name']}: egress to ports {sorted(ports & {9092, 9093, 6379, 5432})} of any address; name where Kafka, Redis and Postgres run")
    # Health and metrics on the management port, not the public API's (issue 17: /metrics and /readyz were public).
    management = config.get("TW_MANAGEMENT_PORT")
    if deployments and not management:
        failures.append("ConfigMap: no TW_MANAGEMENT_PORT: /metrics and the health endpoints would be served on the public API port")
    for d in deployments:
        for c in d["spec"]["template"]["spec"].get("containers", []):
            named = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and str(named.get(port, port)) != str(management):
                    failures.append(f"Deployment/{d['metadata']['name']}: {probe} on port {port}, not the management port ({management})")
    for monitor in (m for m in docs if m.get("kind") == "ServiceMonitor"):
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("port") != "management":
                failures.append(f"ServiceMonitor/{monitor['metadata']['name']}: scrapes port {endpoint.get('port')!r}, not `management`")
    if deployments and not migrators:
        failures.append("production: no migration Job (a container with TW_MIGRATIONS=only); every pod would migrate at start with a DDL credential")
    # A production cluster's brokers and Postgres use a private CA (Strimzi's cluster CA, CloudNativePG's): the
    # services must be told where it is, or TLS fails (Kafka) or verify-full has no root to check against (libpq).
    if deployments and config.get("TW_KAFKA_SECURITY_PROTOCOL", "plaintext").lower() in ("ssl", "sasl_ssl") and "TW_KAFKA_SSL_CA_FILE" not in config:
        failures.append("ConfigMap: TLS to Kafka without TW_KAFKA_SSL_CA_FILE (a private cluster CA cannot be verified; components/private-ca)")
    if deployments and "PGSSLROOTCERT" not in config:
        failures.append("ConfigMap: no PGSSLROOTCERT (sslmode=verify-full has no CA to verify Postgres against; components/private-ca)")
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d["spec"].get("minReplicas", 1) for d in docs if d.get("kind") == "HorizontalPodAutoscaler"}
    keda = {d["spec"]["scaleTargetRef"]["name"]: d["spec"].get("minReplicaCount", 0) for d in docs if d.get("kind") == "ScaledObject"}
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for d in deployments:
        name = d["metadata"]["name"]
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        minimum = keda.get(name, hpas.get(name, d["spec"].get("replicas", 1)))
        if minimum < 2:
            failures.append(f"Deployment/{name}: production runs at least 2 replicas (minimum here {minimum})")
        pdb = next((p for p in pdbs if all(labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items())), None)
        if pdb is None:
            failures.append(f"Deployment/{name}: no PodDisruptionBudget")
        else:
            spec = pdb["spec"]
            allowed = spec["maxUnavailable"] if "maxUnavailable" in spec else minimum - spec.get("minAvailable", 0)
            if not isinstance(allowed, int) or allowed > 1:
                failures.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: lets {allowed} of {minimum} replicas go at once; at most 1")
        spread = d["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not any(c.get("topologyKey") == "kubernetes.io/hostname" and c.get("whenUnsatisfiable") == "DoNotSchedule" for c in spread):
            failures.append(f"Deployment/{name}: replicas not spread over nodes hard (kubernetes.io/hostname, DoNotSchedule)")
    return failures


def seconds(text):
    """A TW_* duration (`90s`, `5m`, `1h`, `250ms`) in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not m:
        return 0
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def main():
    if sys.argv[1] == "--self-test":
        bad_dir, crd_dir = sys.argv[2:4]
        crds, rc = load_crds(crd_dir), 0
        for path in sorted(glob.glob(os.path.join(bad_dir, "*.yaml"))):
            expected = [l.split("# expect:", 1)[1].strip() for l in open(path) if "# expect:" in l]
            failures, _, _ = check([d for d in yaml.safe_load_all(open(path)) if d], crds)
            missing = [e for e in expected if not any(e in f for f in failures)]
            if missing or not expected:
                print(f"FAIL self-test {os.path.basename(path)}: not caught: {missing or 'no # expect: line'}; got {failures}")
                rc = 1
        if rc == 0:
            print(f"ok   custom-resource checks catch every known defect ({len(glob.glob(os.path.join(bad_dir, '*.yaml')))} cases)")
        sys.exit(rc)
    rendered, crd_dir, core_out = sys.argv[1:4]
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    failures, core, ruled = check(docs, load_crds(crd_dir))
    for f in failures:
        print("FAIL crd " + f)
    yaml.safe_dump_all(core, open(core_out, "w"))
    by_rules = f"; {len(ruled)} without a vendored CRD ({', '.join(sorted(set(ruled)))}) against deploy/k8s/shapes.py" if ruled else ""
    print(f"{os.path.basename(rendered)}: {len(docs)} resources, {len(docs) - len(core) - len(ruled)} custom resources checked against the operators' CRDs{by_rules}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
