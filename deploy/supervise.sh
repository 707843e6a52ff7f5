#!/usr/bin/env bash
# Keeps one service running the way Kubernetes would for `make run`: when it exits (a crash, a trap, exit 1) it is
# started again after a backoff that doubles from 1 s to 30 s (reset once a run has lasted 60 s), and every
# restart is logged, here and in the service's log. SIGTERM or SIGINT to this script is passed to the service, which
# drains and exits; the script then exits too, without restarting it.
#
#   deploy/supervise.sh NAME LOGFILE COMMAND [ARGS...]
set -uo pipefail
name=$1 log=$2
shift 2

child=0 stopping=0
on_stop() {
    stopping=1
    [ "$child" -gt 0 ] && kill -TERM "$child" 2>/dev/null
}
trap on_stop TERM INT

note() { printf '%s supervise: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$log" >&2; }

delay=1 restarts=0
while :; do
    started=$(date +%s)
    "$@" >>"$log" 2>&1 </dev/null &
    child=$!
    # `wait` returns early when a trapped signal arrives; keep waiting until the child is really gone.
    while kill -0 "$child" 2>/dev/null; do wait "$child"; done
    wait "$child" 2>/dev/null
    status=$?
    [ $stopping -eq 1 ] && { note "$name stopped (exit status $status)"; exit 0; }
    if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
    restarts=$((restarts + 1))
    note "$name exited with status $status; restart #$restarts in ${delay}s"
    # Sleep in the background so a SIGTERM during the backoff ends the script at once.
    sleep "$delay" & wait $! 2>/dev/null
    [ $stopping -eq 1 ] && { note "$name stopped during backoff"; exit 0; }
    delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
