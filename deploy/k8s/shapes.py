"""Shapes of the custom resources whose CRDs are not vendored in k8s/crds (which holds only those the project was
given: Strimzi KafkaTopic, KEDA, prometheus-operator ServiceMonitor). Each lists the apiVersion the operator serves
and the fields of `spec` this project's manifests may use, as the operators document them (Strimzi 1.x KafkaUser,
CloudNativePG 1.2x Cluster, Pooler and ScheduledBackup, cert-manager 1.x Issuer and Certificate). A field not listed
is refused: check it against the operator's CRD before adding it here. This is weaker than validating against the
CRD itself, and says so in the check's output.

Shape notation: a dict is an object with those keys; a one-element list is an array of that shape; a set is an
enumeration; "string", "int", "bool", "quantity" are scalars; "object" is any mapping (free-form, e.g. parameters).
"""

STRING, INT, BOOL, OBJECT, QUANTITY = "string", "int", "bool", "object", "quantity"
SECRET_REF = {"name": STRING}

KAFKA_USER = {
    "authentication": {"type": {"scram-sha-512", "tls", "tls-external"}},
    "authorization": {"type": {"simple"}, "acls": [{
        "resource": {"type": {"topic", "group", "cluster", "transactionalId"}, "name": STRING, "patternType": {"literal", "prefix"}},
        "operations": [{"Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"}],
        "host": STRING, "type": {"allow", "deny"}}]},
    "quotas": {"producerByteRate": INT, "consumerByteRate": INT, "requestPercentage": INT, "controllerMutationRate": INT},
}

RESOURCES = {"requests": {"cpu": QUANTITY, "memory": QUANTITY}, "limits": {"cpu": QUANTITY, "memory": QUANTITY}}

CNPG_CLUSTER = {
    "description": STRING, "imageName": STRING, "instances": INT, "primaryUpdateStrategy": {"unsupervised", "supervised"},
    "postgresql": {"parameters": OBJECT, "pg_hba": [STRING]},
    "bootstrap": {"initdb": {"database": STRING, "owner": STRING, "secret": SECRET_REF, "encoding": STRING, "localeCollate": STRING,
                             "localeCType": STRING, "dataChecksums": BOOL, "postInitSQL": [STRING], "postInitApplicationSQL": [STRING]}},
    "managed": {"roles": [{"name": STRING, "ensure": {"present", "absent"}, "comment": STRING, "login": BOOL, "superuser": BOOL,
                           "createdb": BOOL, "createrole": BOOL, "inherit": BOOL, "replication": BOOL, "bypassrls": BOOL,
                           "connectionLimit": INT, "passwordSecret": SECRET_REF, "inRoles": [STRING]}]},
    "storage": {"size": QUANTITY, "storageClass": STRING},
    "walStorage": {"size": QUANTITY, "storageClass": STRING},
    "resources": RESOURCES,
    "affinity": {"enablePodAntiAffinity": BOOL, "topologyKey": STRING, "podAntiAffinityType": {"preferred", "required"}},
    "monitoring": {"enablePodMonitor": BOOL},
    "backup": {"retentionPolicy": STRING, "barmanObjectStore": {
        "destinationPath": STRING, "endpointURL": STRING,
        "s3Credentials": {"accessKeyId": {"name": STRING, "key": STRING}, "secretAccessKey": {"name": STRING, "key": STRING}, "inheritFromIAMRole": BOOL},
        "wal": {"compression": {"gzip", "bzip2", "snappy", "lz4", "xz", "zstd"}, "maxParallel": INT},
        "data": {"compression": {"gzip", "bzip2", "snappy"}, "jobs": INT}}},
}

CNPG_POOLER = {
    "cluster": {"name": STRING}, "instances": INT, "type": {"rw", "ro", "r"},
    "pgbouncer": {"poolMode": {"session", "transaction"}, "parameters": OBJECT, "paused": BOOL},
    "template": OBJECT,
}

CNPG_SCHEDULED_BACKUP = {
    "schedule": STRING, "immediate": BOOL, "suspend": BOOL, "backupOwnerReference": {"none", "self", "cluster"},
    "cluster": {"name": STRING}, "method": {"barmanObjectStore", "volumeSnapshot", "plugin"}, "target": {"primary", "prefer-standby"},
}

CERT_MANAGER_ISSUER = {"selfSigned": {}, "ca": {"secretName": STRING}}

CERT_MANAGER_CERTIFICATE = {
    "secretName": STRING, "commonName": STRING, "dnsNames": [STRING], "isCA": BOOL, "duration": STRING, "renewBefore": STRING,
    "issuerRef": {"name": STRING, "kind": {"Issuer", "ClusterIssuer"}, "group": STRING},
    "privateKey": {"algorithm": {"RSA", "ECDSA", "Ed25519"}, "size": INT, "rotationPolicy": {"Never", "Always"}},
    "usages": [{"server auth", "client auth", "digital signature", "key encipherment", "cert sign"}],
}

# (group, kind) -> (the version the operator serves, the spec's shape, required spec fields)
SHAPES = {
    ("kafka.strimzi.io", "KafkaUser"): ("v1", KAFKA_USER, ["authentication"]),
    ("postgresql.cnpg.io", "Cluster"): ("v1", CNPG_CLUSTER, ["instances", "storage"]),
    ("postgresql.cnpg.io", "Pooler"): ("v1", CNPG_POOLER, ["cluster", "pgbouncer"]),
    ("postgresql.cnpg.io", "ScheduledBackup"): ("v1", CNPG_SCHEDULED_BACKUP, ["schedule", "cluster"]),
    ("cert-manager.io", "Issuer"): ("v1", CERT_MANAGER_ISSUER, []),
    ("cert-manager.io", "Certificate"): ("v1", CERT_MANAGER_CERTIFICATE, ["secretName", "issuerRef"]),
}


def shape_errors(value, shape, path):
    """Where `value` leaves `shape`: unknown fields, wrong types, values outside an enumeration."""
    if shape == OBJECT:
        return [] if isinstance(value, dict) else [f"{path}: must be an object"]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{path}: must be an object"]
        out = []
        for key, item in value.items():
            if key not in shape:
                out.append(f"{path}.{key}: unknown field (not among the fields this project's rules know; check the operator's CRD)")
            else:
                out += shape_errors(item, shape[key], f"{path}.{key}")
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: must be an array"]
        return [e for i, item in enumerate(value) for e in shape_errors(item, shape[0], f"{path}[{i}]")]
    if isinstance(shape, set):
        return [] if value in shape else [f"{path}: {value!r} is not one of {sorted(shape)}"]
    ok = {STRING: isinstance(value, str), INT: isinstance(value, int) and not isinstance(value, bool), BOOL: isinstance(value, bool),
          QUANTITY: isinstance(value, (str, int))}[shape]
    return [] if ok else [f"{path}: must be a {shape}"]
