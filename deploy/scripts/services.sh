#!/usr/bin/env bash
# Start/stop the backing services attachd needs, as private instances on 127.0.0.1.
#
#   deploy/scripts/services.sh start|stop|status|restart [redis|minio|clamd|postgres ...]
#
# No service names = all four. `start` and `stop` are idempotent; `start` returns only when every
# requested service answers (or fails with the tail of its log); `status` prints one line per
# service and exits 1 if any requested service is down.
#
# Everything lives under $ATTACHD_VAR_DIR (default: <repo>/var; relative = relative to <repo>):
#   redis/       redis.conf (generated), working dir
#   minio/data   object data            minio/certs  (empty: keeps ~/.minio/certs out of it)
#   clamd/       clamd.conf (generated from deploy/clamav/clamd.conf.in), db/, tmp/
#   postgres/    data/ (initdb), run/ (unix socket)
#   log/<service>.log   run/<service>.pid   run/<service>.lock
#
# Environment (defaults):
#   ATTACHD_VAR_DIR=var             (relative paths are taken from the repo root, not the cwd)
#   ATTACHD_REDIS_PORT=6379
#   ATTACHD_MINIO_PORT=9000  ATTACHD_MINIO_CONSOLE_PORT=9001
#   ATTACHD_S3_ACCESS_KEY=attachd  ATTACHD_S3_SECRET_KEY=attachd-secret-key   (MinIO root user/password)
#   ATTACHD_CLAMD_PORT=3310  ATTACHD_CLAMD_MAX_SIZE=4000M (stream/file/scan size limits)
#   ATTACHD_PG_PORT=5432  ATTACHD_PG_DATABASE=attachd   (superuser `postgres`, trust auth on 127.0.0.1)
#   ATTACHD_START_TIMEOUT=60        seconds to wait for a service to answer
#   ATTACHD_CLAMD_START_TIMEOUT=180 same for clamd (a full freshclam DB takes a while to load)
#   ATTACHD_STOP_TIMEOUT=30         seconds before SIGKILL on stop
#   MINIO_BIN, ATTACHD_CACHE_DIR    see minio-bin.sh
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)
DEPLOY_DIR="$REPO_ROOT/deploy"
ALL_SERVICES=(redis minio clamd postgres)

VAR_DIR=${ATTACHD_VAR_DIR:-var}
# A relative ATTACHD_VAR_DIR (e.g. var/test from deploy/env/test.env) is relative to the repo
# root, whatever the cwd. Canonicalised (symlinks resolved, need not exist yet) so the same
# directory always yields the same paths in pid files and command lines.
[[ $VAR_DIR == /* ]] || VAR_DIR="$REPO_ROOT/$VAR_DIR"
VAR_DIR=$(realpath -m -- "$VAR_DIR")
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"

REDIS_PORT=${ATTACHD_REDIS_PORT:-6379}
MINIO_PORT=${ATTACHD_MINIO_PORT:-9000}
MINIO_CONSOLE_PORT=${ATTACHD_MINIO_CONSOLE_PORT:-9001}
S3_ACCESS_KEY=${ATTACHD_S3_ACCESS_KEY:-attachd}
S3_SECRET_KEY=${ATTACHD_S3_SECRET_KEY:-attachd-secret-key}
CLAMD_PORT=${ATTACHD_CLAMD_PORT:-3310}
# clamd's StreamMaxLength/MaxFileSize/MaxScanSize; tests lower it to see over-limit files refused.
CLAMD_MAX_SIZE=${ATTACHD_CLAMD_MAX_SIZE:-4000M}
PG_PORT=${ATTACHD_PG_PORT:-5432}
PG_DATABASE=${ATTACHD_PG_DATABASE:-attachd}
START_TIMEOUT=${ATTACHD_START_TIMEOUT:-60}
CLAMD_START_TIMEOUT=${ATTACHD_CLAMD_START_TIMEOUT:-180}
STOP_TIMEOUT=${ATTACHD_STOP_TIMEOUT:-30}
LOCK_TIMEOUT=${ATTACHD_LOCK_TIMEOUT:-1800} # long: a first `start minio` may build MinIO

MINIO_DATA="$VAR_DIR/minio/data"
CLAMD_DIR="$VAR_DIR/clamd"
CLAMD_CONF="$CLAMD_DIR/clamd.conf"
PG_DIR="$VAR_DIR/postgres"
PG_LOG="$VAR_DIR/log/postgres.log"
# PostgreSQL runs as the `postgres` user when we are root. A var dir that user cannot reach (a
# clone under a private `mktemp -d`, a home directory of mode 700) gets its cluster, socket and
# log in a traversable place of its own instead, named after the var dir, rather than failing.
pg_reachable() {
    local d=$1
    while [[ ! -e $d ]]; do d=$(dirname "$d"); done
    (cd / && runuser -u postgres -- test -x "$d") 2>/dev/null
}
if ((EUID == 0)) && id postgres >/dev/null 2>&1 && ! pg_reachable "$VAR_DIR"; then
    PG_DIR="/var/tmp/attachd-postgres/$(printf '%s' "$VAR_DIR" | cksum | cut -d' ' -f1)"
    PG_LOG="$PG_DIR/postgres.log"
fi
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"

# ---------------------------------------------------------------------------------------------
log() { printf '[services] %s\n' "$*" >&2; }
slog() { local s=$1; shift; printf '[services] %-8s %s\n' "$s" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

for _v in REDIS_PORT MINIO_PORT MINIO_CONSOLE_PORT CLAMD_PORT PG_PORT START_TIMEOUT CLAMD_START_TIMEOUT STOP_TIMEOUT LOCK_TIMEOUT; do
    [[ ${!_v} =~ ^[0-9]+$ ]] || die "$_v must be a number, got '${!_v}'"
done

log_file() {
    if [[ $1 == postgres ]]; then printf '%s\n' "$PG_LOG"; else printf '%s/%s.log\n' "$LOG_DIR" "$1"; fi
}
pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

service_port() {
    case $1 in
        redis) echo "$REDIS_PORT" ;;
        minio) echo "$MINIO_PORT" ;;
        clamd) echo "$CLAMD_PORT" ;;
        postgres) echo "$PG_PORT" ;;
    esac
}

# --- processes --------------------------------------------------------------------------------

# alive and not a zombie
proc_alive() {
    local pid=$1 st
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    st=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ ${st%% *} != Z ]]
}

# Is $2 (alive) really our $1 process and not an unrelated process that reused a stale pid?
proc_is_service() {
    local svc=$1 pid=$2 desc
    desc="$(cat "/proc/$pid/comm" 2>/dev/null) $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # the launcher wrapper, between writing the pid file and exec'ing the daemon
    [[ $desc == *"$(pid_file "$svc")"* ]] && return 0
    case $svc in
        redis) [[ $desc == redis-server* ]] ;;
        minio) [[ $desc == *" server "*"$MINIO_DATA"* || $desc == *" server "*"$MINIO_DATA" ]] ;;
        clamd) [[ $desc == clamd* && $desc == *"$CLAMD_CONF"* ]] ;;
        postgres) [[ ($desc == postgres* || $desc == postmaster*) && $desc == *"$PG_DATA"* ]] ;;
    esac
}

# Print the pid of the running service, or return 1.
live_pid() {
    local svc=$1 pid="" f
    if [[ $svc == postgres && -f $PG_DATA/postmaster.pid ]]; then
        f="$PG_DATA/postmaster.pid"
    else
        f=$(pid_file "$svc")
    fi
    if [[ -f $f ]]; then read -r pid <"$f" 2>/dev/null || true; fi
    [[ -n $pid ]] && proc_alive "$pid" && proc_is_service "$svc" "$pid" || return 1
    echo "$pid"
}

# Wait until pid $1 is gone (or a zombie). $2 = timeout in seconds.
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while proc_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Graceful signal, wait, then SIGKILL the whole process group (we start every daemon in its own
# session, so pgid == pid) and the pid itself.
terminate() {
    local svc=$1 pid=$2 sig=${3:-TERM}
    kill -s "$sig" "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        slog "$svc" "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
        # direct children first (postgres puts each backend in its own process group)
        local child
        for child in $(pgrep -P "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { slog "$svc" "ERROR: pid $pid survives SIGKILL"; return 1; }
    fi
    # leftovers in the process group (children of the daemon)
    if group_alive "$pid"; then
        sleep 1
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
}

# Does process group $1 still have a live (non-zombie) member?
group_alive() {
    local p
    for p in $(pgrep -g "$1" 2>/dev/null); do
        proc_alive "$p" && return 0
    done
    return 1
}

# spawn <svc> <stdout-file> <stderr-file> cmd...  — detached (own session), pid file written by the
# wrapper right before exec, no inherited stdin/stdout/stderr or lock fd.
spawn() {
    local svc=$1 out=$2 err=$3 pidf
    shift 3
    pidf=$(pid_file "$svc")
    rm -f "$pidf"
    # shellcheck disable=SC2016
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$out" 2>>"$err" 9>&- &
    disown $! 2>/dev/null || true
}

port_open() {
    # shellcheck disable=SC2016
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

require_port_free() {
    local svc=$1 port=$2 hint=${3:-}
    if port_open "$port"; then
        slog "$svc" "ERROR: 127.0.0.1:$port is already in use by a process this script did not start${hint:+ ($hint)}."
        slog "$svc" "       Stop it or choose another port (ATTACHD_*_PORT)."
        return 1
    fi
}

show_log_tail() {
    local svc=$1 f
    f=$(log_file "$svc")
    if [[ -s $f ]]; then
        slog "$svc" "last lines of $f:"
        tail -n 30 "$f" | sed 's/^/        | /' >&2
    else
        slog "$svc" "($f is empty)"
    fi
}

# --- readiness checks ---------------------------------------------------------------------------

redis_ready() {
    [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

minio_ready() {
    local base="http://127.0.0.1:$MINIO_PORT/minio/health"
    curl -fsS --noproxy '*' -m 5 -o /dev/null "$base/live" 2>/dev/null &&
        curl -fsS --noproxy '*' -m 5 -o /dev/null "$base/ready" 2>/dev/null
}

clamd_ready() {
    # shellcheck disable=SC2016
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "zPING\0" >&3
        IFS= read -r -d "" -t 4 reply <&3 || exit 1
        [[ $reply == PONG ]]' "$CLAMD_PORT" 2>/dev/null
}

postgres_ready() {
    "$PG_BINDIR/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 3 -q 2>/dev/null
}

service_ready() { "${1}_ready"; }

# wall clock in microseconds ($EPOCHREALTIME uses the locale's decimal separator)
now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }
# seconds elapsed since $1 (a now_us value), with 1 decimal
elapsed() {
    local d=$(($(now_us) - $1))
    printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10))
}

# wait_ready <svc> <timeout>: wait until the service answers; fail early if its process died.
wait_ready() {
    local svc=$1 timeout=$2 start=$SECONDS t0 pid seen=""
    t0=$(now_us)
    local deadline=$((SECONDS + timeout))
    while :; do
        if service_ready "$svc"; then
            slog "$svc" "ready after $(elapsed "$t0")s"
            return 0
        fi
        if pid=$(live_pid "$svc"); then
            seen=$pid
        elif [[ -n $seen ]] || ((SECONDS - start >= 5)); then
            # (without a pid yet, give the launcher a few seconds to write the pid file)
            slog "$svc" "ERROR: the process exited during startup"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            slog "$svc" "ERROR: not answering after ${timeout}s"
            return 1
        fi
        sleep 0.1
    done
}

# --- redis ------------------------------------------------------------------------------------

redis_quote() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

redis_start() {
    command -v redis-server >/dev/null || { slog redis "ERROR: redis-server not installed (run deploy/scripts/ensure-deps.sh)"; return 2; }
    require_port_free redis "$REDIS_PORT" "a system redis-server?" || return 2
    mkdir -p "$VAR_DIR/redis" || return 1
    cat >"$VAR_DIR/redis/redis.conf" <<EOF || return 1
# generated by deploy/scripts/services.sh — do not edit
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
dir $(redis_quote "$VAR_DIR/redis")
logfile ""
save ""
appendonly no
EOF
    spawn redis "$(log_file redis)" "$(log_file redis)" redis-server "$VAR_DIR/redis/redis.conf"
    wait_ready redis "$START_TIMEOUT"
}

# --- minio ------------------------------------------------------------------------------------

minio_start() {
    local bin
    if ((${#S3_ACCESS_KEY} < 3 || ${#S3_SECRET_KEY} < 8)); then
        slog minio "ERROR: MinIO needs ATTACHD_S3_ACCESS_KEY >= 3 and ATTACHD_S3_SECRET_KEY >= 8 characters"
        return 2
    fi
    if ! bin=$("$SCRIPT_DIR/minio-bin.sh"); then
        slog minio "ERROR: no MinIO server binary (see above)"
        return 2
    fi
    require_port_free minio "$MINIO_PORT" || return 2
    require_port_free minio "$MINIO_CONSOLE_PORT" "console port" || return 2
    mkdir -p "$MINIO_DATA" "$VAR_DIR/minio/certs" || return 1
    (
        # via the environment, not argv: keeps the password out of `ps`
        export MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$S3_SECRET_KEY"
        export MINIO_BROWSER=off MINIO_UPDATE=off
        spawn minio "$(log_file minio)" "$(log_file minio)" \
            "$bin" server "$MINIO_DATA" \
            --address "127.0.0.1:$MINIO_PORT" \
            --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
            --certs-dir "$VAR_DIR/minio/certs"
    )
    wait_ready minio "$START_TIMEOUT"
}

# --- clamd ------------------------------------------------------------------------------------

clamd_db_has_signatures() {
    local f
    for f in "$1"/*; do
        [[ -f $f ]] || continue
        case ${f##*.} in
            cvd | cld | cud | ndb | ndu | hdb | hdu | hsb | hsu | mdb | mdu | msb | msu | ldb | ldu | \
                idb | cdb | crb | pdb | gdb | wdb | ftm | cbc | yar | yara | imp | sfp | fp) return 0 ;;
        esac
    done
    return 1
}

apparmor_clamd_enforced() {
    grep -qs 'clamd (enforce)' /sys/kernel/security/apparmor/profiles
}

clamd_render_conf() {
    local line out=""
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line//@CLAMD_PORT@/"$CLAMD_PORT"}
        line=${line//@CLAMD_DB_DIR@/"$CLAMD_DIR/db"}
        line=${line//@CLAMD_TMP_DIR@/"$CLAMD_DIR/tmp"}
        line=${line//@CLAMD_PID_FILE@/"$(pid_file clamd)"}
        line=${line//@CLAMD_LOG_FILE@/"$(log_file clamd)"}
        line=${line//@CLAMD_MAX_SIZE@/"$CLAMD_MAX_SIZE"}
        out+="$line"$'\n'
    done <"$DEPLOY_DIR/clamav/clamd.conf.in"
    if [[ $out == *@CLAMD_*@* ]]; then
        slog clamd "ERROR: unknown placeholder left in clamd.conf.in"
        return 1
    fi
    printf '# generated from deploy/clamav/clamd.conf.in by deploy/scripts/services.sh — do not edit\n%s' "$out" >"$CLAMD_CONF.tmp"
    mv -f "$CLAMD_CONF.tmp" "$CLAMD_CONF"
}

clamd_start() {
    command -v clamd >/dev/null || { slog clamd "ERROR: clamd not installed (run deploy/scripts/ensure-deps.sh)"; return 2; }
    if [[ $CLAMD_DIR == *[[:space:]]* ]]; then
        slog clamd "ERROR: clamd.conf cannot express paths with whitespace: $CLAMD_DIR"
        return 2
    fi
    require_port_free clamd "$CLAMD_PORT" "a system clamav-daemon?" || return 2
    mkdir -p "$CLAMD_DIR/db" "$CLAMD_DIR/tmp" || return 1
    # Seed the test DB only into an empty DB dir: tests add their own signatures there and a
    # production-like setup may have freshclam feeding it.
    if ! clamd_db_has_signatures "$CLAMD_DIR/db"; then
        slog clamd "seeding $CLAMD_DIR/db with the test signatures (deploy/clamav/signatures/)"
        "$DEPLOY_DIR/clamav/build-db.sh" "$CLAMD_DIR/db" 1 || return 1
    fi
    clamd_render_conf || return 1
    # clamd in the foreground echoes its log to stdout too; LogFile already has it.
    spawn clamd /dev/null "$(log_file clamd)" clamd -c "$CLAMD_CONF"
    if ! wait_ready clamd "$CLAMD_START_TIMEOUT"; then
        if apparmor_clamd_enforced; then
            slog clamd "NOTE: AppArmor enforces a profile on /usr/sbin/clamd that only allows /var/lib/clamav,"
            slog clamd "      /tmp and \$HOME. Allow $VAR_DIR in /etc/apparmor.d/local/usr.sbin.clamd, e.g."
            slog clamd "        $VAR_DIR/** rwk,"
            slog clamd "      then: apparmor_parser -r /etc/apparmor.d/usr.sbin.clamd (or: aa-complain clamd)"
        fi
        return 1
    fi
}

# --- postgres ---------------------------------------------------------------------------------

PG_BINDIR=""
PG_AS=() # command prefix that runs a command as the postgres OS user (empty if not root)

pg_find_bindir() {
    local want="" d best=""
    [[ -f $PG_DATA/PG_VERSION ]] && read -r want <"$PG_DATA/PG_VERSION"
    if [[ -n $want && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
        PG_BINDIR="/usr/lib/postgresql/$want/bin"
        return 0
    fi
    best=$(for d in /usr/lib/postgresql/*/bin; do [[ -x $d/pg_ctl && -x $d/initdb ]] && echo "$d"; done | sort -V | tail -n 1)
    if [[ -z $best ]] && command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        [[ -x $d/pg_ctl && -x $d/initdb ]] && best=$d
    fi
    if [[ -z $best ]]; then
        slog postgres "ERROR: no PostgreSQL server binaries (/usr/lib/postgresql/*/bin); run deploy/scripts/ensure-deps.sh"
        return 1
    fi
    PG_BINDIR=$best
    if [[ -n $want && $want != "$(basename "$(dirname "$best")")" ]]; then
        slog postgres "WARNING: $PG_DATA was created by PostgreSQL $want, but only $best is installed"
    fi
}

pg_setup_user() {
    PG_AS=()
    if ((EUID == 0)); then
        id postgres >/dev/null 2>&1 || { slog postgres "ERROR: running as root but there is no 'postgres' OS user (initdb refuses to run as root)"; return 1; }
        PG_AS=(runuser -u postgres --)
    fi
}

# run a command as the postgres OS user, from / (the caller's cwd may be unreadable for it)
as_pg() { (cd / && "${PG_AS[@]}" "$@"); }

pg_check_traversable() {
    ((EUID == 0)) || return 0
    local p="" part bad
    local -a prefixes=()
    local IFS=/
    for part in $PG_DIR; do
        [[ -n $part ]] || continue
        p+="/$part"
        prefixes+=("$p")
    done
    unset IFS
    # shellcheck disable=SC2016
    if ! bad=$(as_pg sh -c 'for d; do [ -x "$d" ] || { echo "$d"; exit 1; }; done' sh "${prefixes[@]}" "$(dirname "$PG_LOG")"); then
        slog postgres "ERROR: the postgres OS user cannot enter $bad (PostgreSQL must run as 'postgres' when started by root)."
        slog postgres "       chmod o+x the directories on that path, or set ATTACHD_VAR_DIR to a traversable place (e.g. /var/tmp/attachd)."
        return 1
    fi
}

pg_conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

pg_prepare() {
    local socket_dir=$PG_SOCKET_DIR
    mkdir -p "$PG_DIR" "$PG_SOCKET_DIR" "$(dirname "$PG_LOG")" || return 1
    [[ $PG_DIR != /var/tmp/attachd-postgres/* ]] || chmod 755 /var/tmp/attachd-postgres
    touch "$(log_file postgres)" || return 1
    if ((EUID == 0)); then
        chown postgres: "$PG_DIR" "$PG_SOCKET_DIR" "$(log_file postgres)" || return 1
        chmod 700 "$PG_SOCKET_DIR"
    fi
    pg_check_traversable || return 2

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        if [[ -e $PG_DATA ]] && [[ -n $(ls -A "$PG_DATA" 2>/dev/null) ]]; then
            slog postgres "ERROR: $PG_DATA exists but is not a PostgreSQL data directory; move it away"
            return 1
        fi
        rmdir "$PG_DATA" 2>/dev/null || true
        local tmp="$PG_DIR/data.initdb-tmp"
        rm -rf "$tmp"
        slog postgres "initdb $PG_DATA"
        if ! as_pg "$PG_BINDIR/initdb" -D "$tmp" --auth=trust -U postgres --encoding=UTF8 --no-locale \
            >>"$(log_file postgres)" 2>&1 9>&-; then
            slog postgres "ERROR: initdb failed"
            show_log_tail postgres
            rm -rf "$tmp"
            return 1
        fi
        mv "$tmp" "$PG_DATA" || return 1 # the data dir holds no absolute paths: renaming is fine
        printf "\n# attachd: local settings (port, sockets) are generated by services.sh\ninclude_if_exists = 'attachd.conf'\n" |
            as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    fi
    grep -q "^include_if_exists = 'attachd.conf'" "$PG_DATA/postgresql.conf" ||
        printf "\ninclude_if_exists = 'attachd.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null

    # unix socket paths are limited to 107 bytes; fall back to /tmp for deep var dirs
    if ((${#socket_dir} + 20 > 107)); then socket_dir=/tmp; fi
    as_pg tee "$PG_DATA/attachd.conf" >/dev/null <<EOF
# generated by deploy/scripts/services.sh on every start — do not edit
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = $(pg_conf_quote "$socket_dir")
synchronous_commit = off
logging_collector = off
EOF
}

pg_ensure_database() {
    local psql=("$PG_BINDIR/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v "dbname=$PG_DATABASE")
    local exists
    exists=$(PGCONNECT_TIMEOUT=10 "${psql[@]}" <<<"SELECT 1 FROM pg_database WHERE datname = :'dbname';") || {
        slog postgres "ERROR: cannot query pg_database"
        return 1
    }
    [[ $exists == 1 ]] && return 0
    slog postgres "creating database $PG_DATABASE"
    if ! PGCONNECT_TIMEOUT=10 "${psql[@]}" <<<'CREATE DATABASE :"dbname";' 2>&1 | sed 's/^/[services] postgres psql: /' >&2; then
        # lost a race with another creator?
        exists=$(PGCONNECT_TIMEOUT=10 "${psql[@]}" <<<"SELECT 1 FROM pg_database WHERE datname = :'dbname';") || true
        [[ $exists == 1 ]] || { slog postgres "ERROR: could not create database $PG_DATABASE"; return 1; }
    fi
}

postgres_start() {
    pg_setup_user || return 1
    require_port_free postgres "$PG_PORT" "a system PostgreSQL cluster? see pg_lsclusters" || return 2
    # a postmaster.pid whose pid is not a live postgres is stale (crash, reboot): remove it
    rm -f "$PG_DATA/postmaster.pid" "$(pid_file postgres)"
    pg_prepare || return $?
    local start=$SECONDS
    if ! as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$(log_file postgres)" -w -t "$START_TIMEOUT" -s start \
        </dev/null >&2 9>&-; then
        slog postgres "ERROR: pg_ctl start failed"
        return 1
    fi
    local pid=""
    read -r pid <"$PG_DATA/postmaster.pid" 2>/dev/null || true
    [[ -n $pid ]] && echo "$pid" >"$(pid_file postgres)"
    wait_ready postgres "$((START_TIMEOUT - (SECONDS - start) > 5 ? START_TIMEOUT - (SECONDS - start) : 5))" || return 1
    pg_ensure_database
}

postgres_stop() {
    local pid=$1
    pg_setup_user || return 1
    if ! as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" -s stop </dev/null >&2 9>&-; then
        slog postgres "pg_ctl stop failed; signalling pid $pid directly"
    fi
    # SIGINT = fast shutdown; also SIGKILLs the process group if anything is left behind
    terminate postgres "$pid" INT
}

# --- generic start / stop / status ------------------------------------------------------------

with_lock() {
    local svc=$1
    shift
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/$svc.lock"
    if ! flock -n 9; then
        slog "$svc" "waiting for another services.sh working on $svc"
        flock -w "$LOCK_TIMEOUT" 9 || { slog "$svc" "ERROR: timed out waiting for $RUN_DIR/$svc.lock"; return 1; }
    fi
    "$@"
}

start_one() {
    local svc=$1 pid timeout=$START_TIMEOUT
    [[ $svc == clamd ]] && timeout=$CLAMD_START_TIMEOUT
    [[ $svc == postgres ]] && { pg_find_bindir || return 1; }
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    if pid=$(live_pid "$svc"); then
        if service_ready "$svc" || wait_ready "$svc" "$timeout"; then
            slog "$svc" "already running (pid $pid) on 127.0.0.1:$(service_port "$svc")"
            if [[ $svc == postgres ]]; then pg_ensure_database || return 1; fi
            return 0
        fi
        slog "$svc" "ERROR: pid $pid is running but not answering; try: $0 restart $svc"
        show_log_tail "$svc"
        return 1
    fi
    rm -f "$(pid_file "$svc")"
    slog "$svc" "starting on 127.0.0.1:$(service_port "$svc") (log: $(log_file "$svc"))"
    local t0
    t0=$(now_us)
    local rc=0
    "${svc}_start" || rc=$?
    if ((rc != 0)); then
        # rc 2 = failed before anything was started (e.g. port taken): no log to show
        ((rc == 2)) || show_log_tail "$svc"
        if pid=$(live_pid "$svc"); then
            slog "$svc" "stopping the half-started process $pid"
            stop_pid "$svc" "$pid" || true
        fi
        rm -f "$(pid_file "$svc")"
        return 1
    fi
    slog "$svc" "up (pid $(live_pid "$svc" || echo '?'), $(elapsed "$t0")s in total)"
}

stop_pid() {
    local svc=$1 pid=$2
    if [[ $svc == postgres ]]; then
        postgres_stop "$pid"
    else
        terminate "$svc" "$pid" TERM
    fi
}

stop_one() {
    local svc=$1 pid
    [[ $svc == postgres ]] && { pg_find_bindir || return 1; }
    if ! pid=$(live_pid "$svc"); then
        slog "$svc" "not running"
        rm -f "$(pid_file "$svc")"
        return 0
    fi
    slog "$svc" "stopping pid $pid"
    local t0
    t0=$(now_us)
    stop_pid "$svc" "$pid" || return 1
    rm -f "$(pid_file "$svc")"
    slog "$svc" "stopped in $(elapsed "$t0")s"
}

status_one() {
    local svc=$1 pid port
    port=$(service_port "$svc")
    [[ $svc == postgres ]] && { pg_find_bindir >/dev/null 2>&1 || PG_BINDIR=/usr/bin; }
    if pid=$(live_pid "$svc"); then
        if service_ready "$svc"; then
            printf '%-8s up    pid %-7s 127.0.0.1:%s\n' "$svc" "$pid" "$port"
            return 0
        fi
        printf '%-8s down  pid %-7s 127.0.0.1:%s (process alive but not answering)\n' "$svc" "$pid" "$port"
        return 1
    fi
    if port_open "$port"; then
        printf '%-8s down  %-11s 127.0.0.1:%s (port taken by a process not started from %s)\n' "$svc" "" "$port" "$VAR_DIR"
    else
        printf '%-8s down\n' "$svc"
    fi
    return 1
}

# Run "$1_one" for every service in parallel (each under its own lock); fail if any failed.
run_parallel() {
    local action=$1 svc rc=0
    shift
    local -a pids=()
    for svc in "$@"; do
        (with_lock "$svc" "${action}_one" "$svc") &
        pids+=($!)
    done
    local i
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=1; slog "${*:i+1:1}" "$action FAILED"; }
    done
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
(($# >= 1)) || usage
cmd=$1
shift
services=()
for s in "$@"; do
    case $s in
        all) services+=("${ALL_SERVICES[@]}") ;;
        redis | minio | clamd | postgres) services+=("$s") ;;
        *) log "unknown service '$s' (expected: ${ALL_SERVICES[*]})"; usage ;;
    esac
done
((${#services[@]})) || services=("${ALL_SERVICES[@]}")

case $cmd in
    start)
        log "var dir: $VAR_DIR"
        run_parallel start "${services[@]}" || die "some services failed to start"
        ;;
    stop)
        [[ -d $VAR_DIR ]] || { log "nothing to stop ($VAR_DIR does not exist)"; exit 0; }
        run_parallel stop "${services[@]}" || die "some services failed to stop"
        ;;
    restart)
        run_parallel stop "${services[@]}" || die "some services failed to stop"
        run_parallel start "${services[@]}" || die "some services failed to start"
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do status_one "$s" || rc=1; done
        exit "$rc"
        ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
esac
