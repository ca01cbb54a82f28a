#!/usr/bin/env bash
# Make sure everything deploy/scripts/services.sh needs is installed. Idempotent and fast
# (no apt-get call at all when everything is present).
#
#   Debian packages: redis-server (+ redis-tools), clamav-daemon, clamav, postgresql, libmagic1, curl,
#                    nginx (in front of the API in make run; `redis-server --sentinel` is make
#                    scale-test's Sentinel: no redis-sentinel) and, with ATTACHD_TEST_DEPS=1 (make test),
#                    chromium; with ATTACHD_TEST_DEPS=1 or ATTACHD_SCALE_DEPS=1 (make scale-test),
#                    iproute2 (the multi-host test)
#   MinIO server:    via deploy/scripts/minio-bin.sh (MINIO_BIN, PATH, cache, or a `go install` build)
#
# Set ATTACHD_SKIP_MINIO=1 to skip the MinIO step (when using an external S3 endpoint).
# Installs with `sudo` only when not running as root.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

log() { printf 'ensure-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

pg_bindir_present() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && return 0
    done
    return 1
}

libmagic_present() {
    local f
    for f in /usr/lib/*/libmagic.so.1 /usr/lib/libmagic.so.1 /lib/*/libmagic.so.1 /usr/lib64/libmagic.so.1; do
        [[ -e $f ]] && return 0
    done
    return 1
}

missing=()
{ have redis-server && have redis-cli; } || missing+=(redis-server redis-tools)
have clamd || missing+=(clamav-daemon)
have clamscan || missing+=(clamav)
pg_bindir_present || missing+=(postgresql)
have curl || missing+=(curl)
libmagic_present || missing+=(LIBMAGIC)
have flock || missing+=(util-linux)
{ have pgrep; } || missing+=(procps)
# make run / make up put nginx in front of the API (ATTACHD_API_PROXY); the multi-host test
# balances its API replicas with it too.
have nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
# Only the tests need a browser (the dashboard renders in headless Chromium): `make test` sets
# ATTACHD_TEST_DEPS=1, `make run` does not.
if [[ ${ATTACHD_TEST_DEPS:-0} == 1 ]]; then have chromium || missing+=(chromium); fi
# The multi-host topology test (deploy/scale/, make scale-test and its short run in make test)
# builds its hosts with iproute2.
scale_deps=0
[[ ${ATTACHD_TEST_DEPS:-0} == 1 || ${ATTACHD_SCALE_DEPS:-0} == 1 ]] && scale_deps=1
if ((scale_deps)); then
    have ip || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
fi

if ((${#missing[@]})); then
    have apt-get || die "missing: ${missing[*]} and apt-get is not available; install them by hand"
    SUDO=()
    if ((EUID != 0)); then
        have sudo || die "missing: ${missing[*]}; not root and sudo is not installed"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -q >&2
    pkgs=()
    for p in "${missing[@]}"; do
        if [[ $p == LIBMAGIC ]]; then
            # Debian 13 renamed libmagic1 to libmagic1t64 (64-bit time_t transition)
            if apt-cache show libmagic1t64 >/dev/null 2>&1; then p=libmagic1t64; else p=libmagic1; fi
        fi
        pkgs+=("$p")
    done
    # The packages' own init/systemd units would start system-wide redis/postgres/clamd/freshclam
    # right away and take the default ports (6379, 5432). We start private instances instead, so
    # block service starts during the install with a temporary policy-rc.d (only if none exists).
    # The units stay enabled for the next boot; disable them if they get in the way:
    #   systemctl disable --now redis-server postgresql clamav-daemon clamav-freshclam
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, created by attachd ensure-deps.sh\nexit 101\n' |
            "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        own_policy=1
        trap '"${SUDO[@]}" rm -f "$policy"' EXIT
    fi
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
    if ((own_policy)); then
        "${SUDO[@]}" rm -f "$policy"
        trap - EXIT
    fi

    { have redis-server && have redis-cli; } || die "redis-server/redis-cli still missing after apt-get"
    have clamd || die "clamd still missing after apt-get"
    pg_bindir_present || die "no /usr/lib/postgresql/*/bin/{initdb,pg_ctl,postgres} after apt-get"
    have curl || die "curl still missing after apt-get"
    libmagic_present || die "libmagic.so.1 still missing after apt-get"
    [[ ${ATTACHD_TEST_DEPS:-0} != 1 ]] || have chromium || die "chromium still missing after apt-get"
    have nginx || [[ -x /usr/sbin/nginx ]] || die "nginx still missing after apt-get"
fi

if [[ ${ATTACHD_SKIP_MINIO:-0} != 1 ]]; then
    minio_bin=$("$SCRIPT_DIR/minio-bin.sh")
    log "minio server: $minio_bin"
fi
