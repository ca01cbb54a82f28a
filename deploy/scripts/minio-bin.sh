#!/usr/bin/env bash
# Print the absolute path of a MinIO *server* binary on stdout (all logging goes to stderr).
#
# Lookup order:
#   1. $MINIO_BIN                      (must be an executable file, otherwise this is an error)
#   2. `minio` on PATH                 (only if `minio --version` works and it is the server, not mc)
#   3. the build cache                 ${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}/minio-<commit>/bin/minio
#   4. build it into that cache with `go install` (needs Go >= 1.21; Go downloads the 1.24
#      toolchain that MinIO's go.mod asks for by itself when GOTOOLCHAIN=auto, the default).
#
# Steps 3 and 4 are deploy/scripts/go-tool.sh's, shared with tusd-bin.sh (an atomic rename into
# the cache, a flock so concurrent callers wait for one build).
#
# Usage:  minio=$(deploy/scripts/minio-bin.sh)
set -euo pipefail

# Pinned MinIO version. MinIO publishes no Go module tags, so we pin a pseudo-version.
# We would prefer the release commit 9e49d5e7a648 (RELEASE.2025-10-15T17-29-55Z), but the Go
# module proxy answers 403 for it; the newer master commit 7aac2a2c5b7c (2026-02-12) is the
# only one it serves, so that is what we build. The cache directory is named after the commit.
MINIO_MODULE="github.com/minio/minio"
MINIO_PSEUDO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_COMMIT="${MINIO_PSEUDO_VERSION##*-}" # 7aac2a2c5b7c

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=go-tool.sh
source "$SCRIPT_DIR/go-tool.sh"
log() { printf 'minio-bin: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Succeeds if $1 is a runnable MinIO server binary (not the `mc` client).
is_minio_server() {
    local bin=$1 out
    [[ -f $bin && -x $bin ]] || return 1
    out=$("$bin" --version 2>/dev/null </dev/null | head -n 1) || return 1
    [[ $out == "minio version "* ]]
}

abspath() {
    local p=$1
    [[ $p == /* ]] || p="$PWD/$p"
    printf '%s/%s\n' "$(cd "$(dirname "$p")" && pwd -P)" "$(basename "$p")"
}

# 1. explicit override
if [[ -n ${MINIO_BIN:-} ]]; then
    [[ -f $MINIO_BIN && -x $MINIO_BIN ]] || die "MINIO_BIN=$MINIO_BIN is not an executable file"
    is_minio_server "$MINIO_BIN" ||
        die "MINIO_BIN=$MINIO_BIN does not look like a MinIO server ('$MINIO_BIN --version' must print 'minio version ...')"
    abspath "$MINIO_BIN"
    exit 0
fi

# 2. minio on PATH
if path_bin=$(command -v minio 2>/dev/null) && [[ -n $path_bin ]]; then
    if is_minio_server "$path_bin"; then
        abspath "$path_bin"
        exit 0
    fi
    log "ignoring $path_bin: '--version' does not report a MinIO server (the mc client?)"
fi

# 3. the cache, 4. a build into it (go-tool.sh)
go_tool_no_go() {
    cat >&2 <<EOF
minio-bin: ERROR: no MinIO server binary found and it cannot be built here: $1
  Either
    - install Go >= 1.21 so this script can build MinIO ($MINIO_MODULE@$MINIO_PSEUDO_VERSION) into
      $GO_TOOL_CACHE_DIR
      (apt-get install golang-go on Debian 13 / bookworm-backports, or a release from https://go.dev/dl/;
      Debian 12's own golang-go 1.19 is too old), or
    - set MINIO_BIN to an existing minio server binary, or
    - point attachd at an existing MinIO/S3 endpoint with ATTACHD_S3_ENDPOINT,
      ATTACHD_S3_ACCESS_KEY and ATTACHD_S3_SECRET_KEY and skip the local service
      (e.g. deploy/scripts/services.sh start redis clamd postgres).
EOF
    exit 1
}

# Someone may be running the very same `go install` without our lock (e.g. a provisioning step
# started by hand). Wait for it instead of building a second copy in parallel.
go_tool_before_build() {
    local waited=0 limit=${ATTACHD_MINIO_BUILD_WAIT:-1800}
    while pgrep -f "go install ${MINIO_MODULE}@${MINIO_PSEUDO_VERSION}" >/dev/null 2>&1; do
        if is_minio_server "$GO_TOOL_CACHED"; then return 0; fi
        if ((waited == 0)); then log "a 'go install $MINIO_MODULE@$MINIO_PSEUDO_VERSION' is already running; waiting for it"; fi
        if ((waited >= limit)); then log "gave up waiting for the other build after ${limit}s"; return 0; fi
        sleep 5
        waited=$((waited + 5))
    done
    # give `go install` a moment to finish writing the file it just produced
    sleep 1
}

go_tool_bin minio "$MINIO_MODULE" "$MINIO_PSEUDO_VERSION" "$MINIO_COMMIT" is_minio_server
