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
# A local demo receives its webhooks on localhost, which the delivery guard refuses by default.
export ATTACHD_WEBHOOK_ALLOWED_NETWORKS=${ATTACHD_WEBHOOK_ALLOWED_NETWORKS-127.0.0.0/8,::1/128}
VAR_DIR=$ATTACHD_VAR_DIR
LOG_DIR="$VAR_DIR/log"
API="http://${ATTACHD_API_HOST:-127.0.0.1}:${ATTACHD_API_PORT:-8080}${ATTACHD_URL_PREFIX:-}"
FLOWER="http://127.0.0.1:${ATTACHD_FLOWER_PORT:-5555}"
# MinIO and clamd ports for the app, derived from the ports the services script starts them on.
export ATTACHD_S3_ENDPOINT=${ATTACHD_S3_ENDPOINT:-127.0.0.1:${ATTACHD_MINIO_PORT:-9000}}
export ATTACHD_REDIS_URL=${ATTACHD_REDIS_URL:-redis://127.0.0.1:${ATTACHD_REDIS_PORT:-6379}/0}
# nginx in front of gunicorn on the public port (attachd/stack/proxy.py): gunicorn facing clients
# is frozen by a few dozen that never finish their request line. gunicorn listens on loopback.
export ATTACHD_API_PROXY=${ATTACHD_API_PROXY:-true}
# The demo page (/demo) is for this local stack only; production never sets it.
export ATTACHD_DEMO=${ATTACHD_DEMO:-true}
# A local stack runs on the development MinIO key its own services script made: allowed here,
# with a warning, and refused by production start-up (core/secrets_check.py).
export ATTACHD_INSECURE_DEFAULTS=${ATTACHD_INSECURE_DEFAULTS:-1}

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
        # var/attachd.env records where the password is kept, never the password.
        export ATTACHD_OPS_PASSWORD_FILE=$file
        [[ -n ${ATTACHD_FLOWER_PASSWORD:-} ]] || export ATTACHD_FLOWER_PASSWORD_FILE=$file
    fi
    export ATTACHD_OPS_USER=${ATTACHD_OPS_USER:-ops}
    export ATTACHD_OPS_PASSWORD
    export ATTACHD_FLOWER_USER=${ATTACHD_FLOWER_USER:-$ATTACHD_OPS_USER}
    export ATTACHD_FLOWER_PASSWORD=${ATTACHD_FLOWER_PASSWORD:-$ATTACHD_OPS_PASSWORD}
}

# The key of signed download links (ATTACHD_URL_SECRET): from the environment when set, else made
# once per var dir in var/url-secret (mode 600), so links stay valid across restarts.
url_secret() {
    local file="$VAR_DIR/url-secret"
    if [[ -z ${ATTACHD_URL_SECRET:-} ]]; then
        if [[ ! -s $file ]]; then
            mkdir -p "$VAR_DIR"
            (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$file")
        fi
        ATTACHD_URL_SECRET=$(cat "$file")
        export ATTACHD_URL_SECRET_FILE=$file
    fi
    export ATTACHD_URL_SECRET
}

# The key that encrypts webhook secrets at rest (ATTACHD_WEBHOOK_SECRET_KEY, a Fernet key): from
# the environment when set, else made once per var dir in var/webhook-key (mode 600).
webhook_key() {
    local file="$VAR_DIR/webhook-key"
    if [[ -z ${ATTACHD_WEBHOOK_SECRET_KEY:-} ]]; then
        if [[ ! -s $file ]]; then
            mkdir -p "$VAR_DIR"
            (umask 077 && python3 -c 'import base64, secrets
print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())' >"$file")
        fi
        ATTACHD_WEBHOOK_SECRET_KEY=$(cat "$file")
        export ATTACHD_WEBHOOK_SECRET_KEY_FILE=$file
    fi
    export ATTACHD_WEBHOOK_SECRET_KEY
}

setup() {
    # make run needs no PostgreSQL: the embedded SQLite store is the default.
    "$SCRIPT_DIR/services.sh" start redis minio clamd
    # Before the migrations: 0009 encrypts the webhook secrets already stored.
    webhook_key
    attachd migrate
    attachd init-storage
    attachd demo
    ops_credentials
    url_secret
    # What this stack runs with, for every process of this checkout: `attachd` run beside it
    # sees what its services see (core/installation.py).
    python -m attachd.stack env-file
    log "settings: $VAR_DIR/attachd.env (the environment overrides it)"
    log "start here: $API/   (the demo: $API/demo, the API reference: $API/api/1/docs)"
    log "dashboard: $API/ops/dashboard   metrics: $API/metrics   flower: $FLOWER"
    log "  user $ATTACHD_OPS_USER, password in $VAR_DIR/ops-password (or ATTACHD_OPS_PASSWORD)"
}

# Ctrl-C on `make run 2>&1 | tee run.log` ends tee at once, so whatever the stop prints goes to
# a closed pipe: SIGPIPE would end this script (and services.sh) half-way, leaving the services
# running. Ignored here, a failed write says the reader is gone, and the rest goes to a log file.
stop_services() {
    trap '' INT PIPE
    if ! printf '[stack] stopping the services\n' 2>/dev/null >&"$ERR"; then
        mkdir -p "$LOG_DIR" && exec >>"$LOG_DIR/stack.log" 2>&1
    fi
    "$SCRIPT_DIR/services.sh" stop redis minio clamd
}

case ${1:-} in
    setup)
        setup
        ;;
    run)
        exec {ERR}>&2
        trap stop_services EXIT
        trap 'exit 130' INT TERM HUP
        setup
        # The components write into the stack's pipe, never a terminal: `auto` is decided here.
        [[ ${ATTACHD_LOG_FORMAT:-auto} != auto || ! -t 1 ]] || export ATTACHD_LOG_FORMAT=text
        python -m attachd.stack run &
        stack=$!
        # A terminal's Ctrl-C reaches the stack directly (same process group); a signal to this
        # script alone (make's SIGTERM when make is stopped) is passed on. Either way the
        # services stop only once the stack has stopped.
        trap 'kill -TERM "$stack" 2>/dev/null || true' INT TERM HUP
        code=0
        wait "$stack" || code=$?
        # A trapped signal ends `wait` early: the stack is still stopping.
        while kill -0 "$stack" 2>/dev/null; do wait "$stack" || code=$?; done
        exit "$code"
        ;;
    up)
        if python -m attachd.stack status; then
            log "already up"
        else
            setup
        fi
        python -m attachd.stack up
        ;;
    down)
        python -m attachd.stack down
        "$SCRIPT_DIR/services.sh" stop redis minio clamd
        ;;
    *)
        sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
