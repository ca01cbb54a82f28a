#!/usr/bin/env bash
# Print the absolute path of a tusd binary on stdout (all logging goes to stderr). tusd is the
# reference tus server, the benchmarks' peer for B1 (bench/peers/tus.py); nothing else runs it.
#
# Lookup order, as deploy/scripts/minio-bin.sh finds MinIO:
#   1. $TUSD_BIN                       (must be an executable file, otherwise this is an error)
#   2. the build cache                 ${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}/tusd-<version>/bin/tusd
#   3. build it into that cache with `go install` from the Go module proxy (needs Go >= 1.21).
#
# Steps 2 and 3 are deploy/scripts/go-tool.sh's, shared with minio-bin.sh. tusd on PATH is not
# used: the benchmark compares one pinned version.
#
# Usage:  tusd=$(deploy/scripts/tusd-bin.sh)
set -euo pipefail

TUSD_MODULE="github.com/tus/tusd/v2/cmd/tusd"
TUSD_VERSION="v2.9.1"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=go-tool.sh
source "$SCRIPT_DIR/go-tool.sh"
log() { printf 'tusd-bin: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_tusd() {
    local bin=$1
    [[ -f $bin && -x $bin ]] || return 1
    "$bin" -version </dev/null 2>/dev/null | grep -q "Version:"
}

if [[ -n ${TUSD_BIN:-} ]]; then
    is_tusd "$TUSD_BIN" || die "TUSD_BIN=$TUSD_BIN is not a runnable tusd ('$TUSD_BIN -version' must print 'Version: ...')"
    printf '%s\n' "$(cd "$(dirname "$TUSD_BIN")" && pwd -P)/$(basename "$TUSD_BIN")"
    exit 0
fi

go_tool_no_go() { die "no tusd in the cache and it cannot be built: $1 (install Go >= 1.21, or set TUSD_BIN)"; }
go_tool_bin tusd "$TUSD_MODULE" "$TUSD_VERSION" "$TUSD_VERSION" is_tusd
