#!/usr/bin/env bash
# The whole pipeline on this machine: backing services + API, worker, beat and Flower.
#
#   deploy/scripts/stack.sh run    foreground; Ctrl-C stops everything, services included
#   deploy/scripts/stack.sh up     detached; returns when every component answers
#   deploy/scripts/stack.sh down   stops everything; no process left behind
#   deploy/scripts/stack.sh setup  services + migrations + buckets + demo data, then exit
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)
cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"
export PATH="$VENV/bin:$PATH"
export ATTACHD_VAR_DIR=${ATTACHD_VAR_DIR:-$REPO_ROOT/var}
VAR_DIR=$ATTACHD_VAR_DIR
RUN_DIR="$VAR_DIR/run"
LOG_DIR="$VAR_DIR/log"
STACK_PID="$RUN_DIR/stack.pid"
API="http://${ATTACHD_API_HOST:-127.0.0.1}:${ATTACHD_API_PORT:-8080}${ATTACHD_URL_PREFIX:-}"
FLOWER="http://127.0.0.1:${ATTACHD_FLOWER_PORT:-5555}"
# MinIO and clamd ports for the app, derived from the ports the services script starts them on.
export ATTACHD_S3_ENDPOINT=${ATTACHD_S3_ENDPOINT:-127.0.0.1:${ATTACHD_MINIO_PORT:-9000}}
export ATTACHD_REDIS_URL=${ATTACHD_REDIS_URL:-redis://127.0.0.1:${ATTACHD_REDIS_PORT:-6379}/0}

log() { printf '[stack] %s\n' "$*" >&2; }

# The operator's password (dashboard, /metrics) and Flower's: taken from the environment when
# set, otherwise made once per var dir and kept in var/ops-password (mode 600), so a local stack
# is never open without a password and the same one works across restarts.
ops_credentials() {
    local file="$VAR_DIR/ops-password"
    if [[ -z ${ATTACHD_OPS_PASSWORD:-} ]]; then
        if [[ ! -s $file ]]; then
            mkdir -p "$VAR_DIR"
            (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$file")
        fi
        ATTACHD_OPS_PASSWORD=$(cat "$file")
    fi
    export ATTACHD_OPS_USER=${ATTACHD_OPS_USER:-ops}
    export ATTACHD_OPS_PASSWORD
    export ATTACHD_FLOWER_USER=${ATTACHD_FLOWER_USER:-$ATTACHD_OPS_USER}
    export ATTACHD_FLOWER_PASSWORD=${ATTACHD_FLOWER_PASSWORD:-$ATTACHD_OPS_PASSWORD}
}

setup() {
    # make run needs no PostgreSQL: the embedded SQLite store is the default.
    "$SCRIPT_DIR/services.sh" start redis minio clamd
    attachd migrate
    attachd init-storage
    attachd demo
    ops_credentials
    log "dashboard: $API/ops/dashboard   metrics: $API/metrics   flower: $FLOWER"
    log "  user $ATTACHD_OPS_USER, password in $VAR_DIR/ops-password (or ATTACHD_OPS_PASSWORD)"
}

stack_running() {
    [[ -f $STACK_PID ]] && kill -0 "$(cat "$STACK_PID")" 2>/dev/null
}

wait_ready() {
    ops_credentials
    local deadline=$((SECONDS + ${ATTACHD_UP_TIMEOUT:-90}))
    local api=0 flower=0 worker=0
    while ((SECONDS < deadline)); do
        stack_running || { log "the stack exited; see $LOG_DIR/stack.log"; tail -n 40 "$LOG_DIR/stack.log" >&2; return 1; }
        ((api)) || { curl -fs -o /dev/null "$API/api/1/monitoring/status" && api=1 && log "api up at $API"; } || true
        ((flower)) || { curl -fs -o /dev/null -u "$ATTACHD_FLOWER_USER:$ATTACHD_FLOWER_PASSWORD" "$FLOWER/healthcheck" && flower=1 && log "flower up at $FLOWER"; } || true
        ((worker)) || { celery -A workers.app inspect ping --timeout 1 >/dev/null 2>&1 && worker=1 && log "worker answering"; } || true
        if ((api && flower && worker)); then return 0; fi
        sleep 1
    done
    log "timed out waiting for: $( ((api)) || printf 'api ')$( ((flower)) || printf 'flower ')$( ((worker)) || printf 'worker')"
    return 1
}

case ${1:-} in
    setup)
        setup
        ;;
    run)
        setup
        trap '"$SCRIPT_DIR/services.sh" stop redis minio clamd' EXIT
        honcho -f deploy/Procfile -d "$REPO_ROOT" start
        ;;
    up)
        if stack_running; then
            log "already up (pid $(cat "$STACK_PID"))"
        else
            setup
            mkdir -p "$RUN_DIR" "$LOG_DIR"
            # A session of its own, so `down` can signal honcho and every child at once.
            setsid honcho -f deploy/Procfile -d "$REPO_ROOT" start >"$LOG_DIR/stack.log" 2>&1 < /dev/null &
            echo $! >"$STACK_PID"
        fi
        wait_ready
        ;;
    down)
        if stack_running; then
            pid=$(cat "$STACK_PID")
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 1; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$STACK_PID"
        "$SCRIPT_DIR/services.sh" stop redis minio clamd
        ;;
    *)
        sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
