#!/usr/bin/env bash
# The local stack: Postgres, Redis and a Kafka-protocol broker (librdkafka's mock cluster), on 127.0.0.1 only,
# under a project-local state folder.
#
#   deploy/stack.sh install   install missing Debian packages (needs root or sudo)
#   deploy/stack.sh start     start whatever is not running yet; writes $STATE/stack.env
#   deploy/stack.sh stop      stop what this stack started, by the PIDs it recorded
#   deploy/stack.sh status    one line per server
#   deploy/stack.sh restart-redis-aux   restart the second Redis (for reconnect tests)
#   deploy/stack.sh restart-postgres [SECONDS]   stop Postgres (fast shutdown), stay down SECONDS (default 0), start it
#   deploy/stack.sh restart-redis [SECONDS]      the same for the main Redis (which loses its keys: no persistence)
#
# TW_STATE_DIR picks the state folder (default .state/run); `make test` uses its own, so tests never touch the
# stack of `make run`. Ports are free ones picked at first start unless TW_PG_PORT / TW_REDIS_PORT are set.
# Topic partition counts: TW_TOPIC_PARTITIONS_RAW, _EVENTS, _DLQ, _ROLLUPS, _ANOMALIES.
# TW_PG_OPTIONS adds Postgres server settings (e.g. "-c shared_preload_libraries=pg_stat_statements" to profile).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${TW_STATE_DIR:-$ROOT/.state/run}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
ENV_FILE=$STATE/stack.env
PACKAGES=(librdkafka-dev libhiredis-dev libpq-dev libssl-dev zlib1g-dev redis-server postgresql pgbouncer pkg-config gcc python3 openssl curl prometheus-alertmanager)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# MARK: - install

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    # Debian's maintainer scripts would start a system-wide Redis and Postgres; the policy-rc.d convention keeps
    # them from starting (we run our own, on our own ports). An existing policy-rc.d is left as it is.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        added_policy=1
    fi
    "${sudo[@]}" apt-get update -q >/dev/null || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    [ $added_policy -eq 1 ] && "${sudo[@]}" rm -f "$policy"
    return 0
}

# MARK: - helpers

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -f "$1" ] && head -n 1 "$1" || true; }

# Stops one PID: SIGTERM, then SIGKILL after a grace period.
stop_pid() {
    local pid=$1 name=$2
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || { log "$name stopped"; return 0; }; sleep 0.1; done
    log "$name did not stop in 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
}

port_file() { # name default-env-var
    local f=$STATE/$1.port
    if [ ! -f "$f" ]; then
        if [ -n "${2:-}" ]; then echo "$2" >"$f"; else free_port >"$f"; fi
    fi
    cat "$f"
}

# MARK: - Postgres

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# Postgres refuses to run as root. As root we run it as the `postgres` user, whose data folder must be reachable by
# that user: inside the state folder when its path is traversable, otherwise a folder under /tmp recorded in
# $STATE/pg.datadir.
pg_as() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# MARK: - TLS material

# A throwaway CA and a server certificate for localhost / 127.0.0.1, so the local Postgres and Redis also listen with
# TLS and the clients' TLS paths are exercised against real servers (tests and `make run` alike).
make_certs() {
    local dir=$STATE/tls
    [ -s "$dir/server.pem" ] && return
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Tokenwatch local CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1 || die "openssl: CA"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1 ||
        die "openssl: server key"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/ext.cnf"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
        -extfile "$dir/ext.cnf" -out "$dir/server.pem" >/dev/null 2>&1 || die "openssl: server certificate"
    chmod 600 "$dir"/*.key
}

pg_datadir() {
    if [ -f "$STATE/pg.datadir" ]; then cat "$STATE/pg.datadir"; return; fi
    local dir=$STATE/pg
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p "$dir"
        chown postgres:postgres "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            rmdir "$dir" 2>/dev/null || true
            dir=$(mktemp -d /tmp/tokenwatch-pg.XXXXXX)
            chown postgres:postgres "$dir"
        fi
    fi
    echo "$dir" >"$STATE/pg.datadir"
    echo "$dir"
}

start_postgres() {
    local bin port data
    bin=$(pg_bin)
    [ -n "$bin" ] || die "Postgres binaries not found; run: deploy/stack.sh install"
    port=$(port_file pg "${TW_PG_PORT:-}")
    data=$(pg_datadir)
    if alive "$(pid_of "$data/data/postmaster.pid")"; then log "postgres already running on $port"; return; fi
    if [ ! -f "$data/data/PG_VERSION" ]; then
        log "initdb in $data/data"
        pg_as "$bin/initdb" -D "$data/data" -U tokenwatch --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 ||
            { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
    fi
    mkdir -p "$data/run" "$data/tls"
    cp "$STATE/tls/server.pem" "$STATE/tls/server.key" "$data/tls/"
    chmod 600 "$data/tls/server.key"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$data/run" "$data/tls"
    pg_as "$bin/pg_ctl" -D "$data/data" -l "$data/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data/run -c max_connections=200 -c ssl=on -c ssl_cert_file=$data/tls/server.pem -c ssl_key_file=$data/tls/server.key -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${TW_PG_OPTIONS:-}" \
        start >/dev/null || { tail -n 20 "$data/postgres.log" >&2; die "postgres did not start"; }
    pg_as "$bin/psql" -h 127.0.0.1 -p "$port" -U tokenwatch -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'tokenwatch'" | grep -q 1 ||
        pg_as "$bin/createdb" -h 127.0.0.1 -p "$port" -U tokenwatch tokenwatch
    log "postgres on 127.0.0.1:$port (pid $(pid_of "$data/data/postmaster.pid"))"
}

stop_postgres() {
    [ -f "$STATE/pg.datadir" ] || return 0
    local data
    data=$(cat "$STATE/pg.datadir")
    stop_pid "$(pid_of "$data/data/postmaster.pid")" postgres
}

# A restart as an operator or a failover would do it: fast shutdown (open sessions are ended, not waited for).
restart_postgres() {
    local data
    data=$(cat "$STATE/pg.datadir")
    pg_as "$(pg_bin)/pg_ctl" -D "$data/data" -m fast -w -t 60 stop >/dev/null || die "postgres did not stop"
    log "postgres stopped"
    sleep "${1:-0}"
    start_postgres
}

# MARK: - Redis

# Two Redis servers: `redis` for everything, and `redis-aux`, which tests may restart (a restart of a Redis without
# persistence wipes it, which must not pull keys from under tests running at the same time).
start_redis() {
    local name=${1:-redis} fixed=""
    [ "$name" = redis ] && fixed=${TW_REDIS_PORT:-}
    command -v redis-server >/dev/null || die "redis-server not found; run: deploy/stack.sh install"
    mkdir -p "$STATE/$name"
    # A port picked free can be taken by another process before Redis binds it (tests open many connections): then
    # pick new ports and try again, rather than fail the whole start.
    local attempt
    for attempt in 1 2 3; do
        try_start_redis "$name" "$fixed" && return
        if [ -z "$fixed" ] && grep -q "Address already in use" "$STATE/$name.log" 2>/dev/null; then
            log "$name: port taken; picking another (attempt $attempt)"
            rm -f "$STATE/$name.port" "$STATE/redis-tls.port"
            continue
        fi
        break
    done
    tail -n 20 "$STATE/$name.log" >&2 2>/dev/null || true
    die "$name did not start; see $STATE/$name.log"
}

try_start_redis() {
    local name=$1 port
    port=$(port_file "$name" "$2")
    if alive "$(pid_of "$STATE/$name.pid")"; then log "$name already running on $port"; return 0; fi
    : >"$STATE/$name.log"
    # The main Redis also listens with TLS on a second port (clients may present a certificate, need not).
    local tls=()
    if [ "$name" = redis ]; then
        local tls_port; tls_port=$(port_file redis-tls "")
        tls=(--tls-port "$tls_port" --tls-cert-file "$STATE/tls/server.pem" --tls-key-file "$STATE/tls/server.key"
             --tls-ca-cert-file "$STATE/tls/ca.pem" --tls-auth-clients optional)
    fi
    redis-server --bind 127.0.0.1 --port "$port" "${tls[@]}" --dir "$STATE/$name" --daemonize yes \
        --pidfile "$STATE/$name.pid" --logfile "$STATE/$name.log" --save "" --appendonly no >/dev/null || return 1
    # Up to 30 s: a loaded CI machine (the quickstart runs while other suites do) can be slow to start anything.
    for _ in $(seq 1 300); do
        redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && {
            log "$name on 127.0.0.1:$port (pid $(pid_of "$STATE/$name.pid"))"; return 0; }
        grep -q "Address already in use" "$STATE/$name.log" 2>/dev/null && break
        sleep 0.1
    done
    stop_pid "$(pid_of "$STATE/$name.pid")" "$name"; rm -f "$STATE/$name.pid"
    return 1
}

stop_redis() { local name=${1:-redis}; stop_pid "$(pid_of "$STATE/$name.pid")" "$name"; rm -f "$STATE/$name.pid"; }

# MARK: - Kafka-protocol broker

BROKER_BIN=$ROOT/.state/bin/tokenwatch-mockbroker
BROKER_SRC=$ROOT/deploy/mockbroker/mockbroker.c

build_broker() {
    if [ ! -x "$BROKER_BIN" ] || [ "$BROKER_SRC" -nt "$BROKER_BIN" ]; then
        mkdir -p "$(dirname "$BROKER_BIN")"
        # shellcheck disable=SC2046
        gcc -O2 -Wall -o "$BROKER_BIN.tmp" "$BROKER_SRC" $(pkg-config --cflags --libs rdkafka) && mv "$BROKER_BIN.tmp" "$BROKER_BIN"
    fi
}

start_broker() {
    if alive "$(pid_of "$STATE/broker.pid")"; then log "broker already running at $(cat "$STATE/broker.bootstrap")"; return; fi
    build_broker
    rm -f "$STATE/broker.bootstrap" "$STATE/broker.control"
    nohup "$BROKER_BIN" --bootstrap-file "$STATE/broker.bootstrap" --control-file "$STATE/broker.control" \
        --brokers "${TW_MOCK_BROKERS:-1}" \
        --topic "llm.events.raw.v1:${TW_TOPIC_PARTITIONS_RAW:-16}" \
        --topic "llm.events.v1:${TW_TOPIC_PARTITIONS_EVENTS:-16}" \
        --topic "llm.events.dlq.v1:${TW_TOPIC_PARTITIONS_DLQ:-4}" \
        --topic "llm.rollups.v1:${TW_TOPIC_PARTITIONS_ROLLUPS:-8}" \
        --topic "llm.anomalies.v1:${TW_TOPIC_PARTITIONS_ANOMALIES:-4}" \
        >"$STATE/broker.log" 2>&1 </dev/null &
    echo $! >"$STATE/broker.pid"
    for _ in $(seq 1 100); do [ -s "$STATE/broker.bootstrap" ] && break; sleep 0.1; done
    [ -s "$STATE/broker.bootstrap" ] || { cat "$STATE/broker.log" >&2; die "broker did not start"; }
    log "broker at $(cat "$STATE/broker.bootstrap") (pid $(pid_of "$STATE/broker.pid")), control $(cat "$STATE/broker.control")"
}

stop_broker() { stop_pid "$(pid_of "$STATE/broker.pid")" broker; rm -f "$STATE/broker.pid"; }

wipe_data() {
    if [ -f "$STATE/pg.datadir" ]; then
        rm -rf "$(cat "$STATE/pg.datadir")"
        rm -f "$STATE/pg.datadir"
    fi
    rm -rf "$STATE/redis" "$STATE/redis-aux" "$STATE/tls"
}

# MARK: - commands

write_env() {
    cat >"$ENV_FILE" <<EOF
TW_KAFKA_BROKERS=$(cat "$STATE/broker.bootstrap")
TW_KAFKA_MOCK_CONTROL=$(cat "$STATE/broker.control")
TW_POSTGRES_URL=postgresql://tokenwatch@127.0.0.1:$(cat "$STATE/pg.port")/tokenwatch
TW_REDIS_URL=redis://127.0.0.1:$(cat "$STATE/redis.port")
TW_REDIS_AUX_URL=redis://127.0.0.1:$(cat "$STATE/redis-aux.port")
TW_TEST_REDIS_TLS_URL=rediss://localhost:$(cat "$STATE/redis-tls.port")
TW_TEST_TLS_CA_FILE=$STATE/tls/ca.pem
TW_TEST_TLS_CERT_FILE=$STATE/tls/server.pem
TW_TEST_TLS_KEY_FILE=$STATE/tls/server.key
EOF
    log "addresses in $ENV_FILE"
}

status() {
    local data=""
    [ -f "$STATE/pg.datadir" ] && data=$(cat "$STATE/pg.datadir")
    local pg_pid; pg_pid=$(pid_of "$data/data/postmaster.pid")
    alive "$pg_pid" && echo "postgres running pid $pg_pid port $(cat "$STATE/pg.port")" || echo "postgres stopped"
    alive "$(pid_of "$STATE/redis.pid")" && echo "redis    running pid $(pid_of "$STATE/redis.pid") port $(cat "$STATE/redis.port")" || echo "redis    stopped"
    alive "$(pid_of "$STATE/redis-aux.pid")" && echo "redis-aux running pid $(pid_of "$STATE/redis-aux.pid") port $(cat "$STATE/redis-aux.port")" || echo "redis-aux stopped"
    alive "$(pid_of "$STATE/broker.pid")" && echo "broker   running pid $(pid_of "$STATE/broker.pid") at $(cat "$STATE/broker.bootstrap")" || echo "broker   stopped"
}

case "${1:-}" in
    install) install_packages ;;
    start) install_packages; make_certs; start_postgres; start_redis redis; start_redis redis-aux; start_broker; write_env ;;
    # The broker keeps its data in memory, so stopping it loses every topic. Postgres and Redis hold offsets and
    # dedupe keys that refer to those topics; keeping them would make the next start skip new messages whose
    # offsets the old topics had already used. So the local stack is ephemeral as a whole.
    stop) stop_broker; stop_redis redis; stop_redis redis-aux; stop_postgres; wipe_data; rm -f "$ENV_FILE" ;;
    restart-redis-aux) stop_redis redis-aux; start_redis redis-aux ;;
    restart-postgres) restart_postgres "${2:-0}" ;;
    restart-redis) stop_redis redis; sleep "${2:-0}"; start_redis redis ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status|restart-redis-aux|restart-postgres [s]|restart-redis [s]" >&2; exit 2 ;;
esac
