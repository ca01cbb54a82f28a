#!/usr/bin/env bash
# Print the absolute path of a tusd binary on stdout (all logging goes to stderr). tusd is the
# reference tus server, the benchmarks' peer for B1 (bench/peers/tus.py); nothing else runs it.
#
# Lookup order, as deploy/scripts/minio-bin.sh finds MinIO:
#   1. $TUSD_BIN                       (must be an executable file, otherwise this is an error)
#   2. the build cache                 ${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}/tusd-<version>/bin/tusd
#   3. build it into that cache with `go install` from the Go module proxy (needs Go >= 1.21).
#
# The build happens in a temporary directory next to the cache and the binary is renamed into
# place, so an interrupted build never leaves a broken cache entry; a flock makes concurrent
# callers wait for one build. tusd on PATH is not used: the benchmark compares one pinned version.
#
# Usage:  tusd=$(deploy/scripts/tusd-bin.sh)
set -euo pipefail

TUSD_MODULE="github.com/tus/tusd/v2/cmd/tusd"
TUSD_VERSION="v2.9.1"

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

cache_root="${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}"
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)
cache_dir="$cache_root/tusd-$TUSD_VERSION"
cached_bin="$cache_dir/bin/tusd"

if is_tusd "$cached_bin"; then
    printf '%s\n' "$cached_bin"
    exit 0
fi

exec 9>"$cache_root/tusd-$TUSD_VERSION.lock"
if ! flock -n 9; then
    log "another process is building tusd into $cache_dir; waiting for its lock"
    flock 9
fi
if is_tusd "$cached_bin"; then
    printf '%s\n' "$cached_bin"
    exit 0
fi

command -v go >/dev/null 2>&1 || die "no tusd in $cache_dir and 'go' is not on PATH to build it (install Go >= 1.21, or set TUSD_BIN)"
go_version=$(go env GOVERSION 2>/dev/null || go version | awk '{print $3}')
go_minor=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$go_version")
if [[ -z $go_minor ]] || ((go_minor < 21)); then
    die "found $go_version, but Go >= 1.21 is needed to build tusd (it fetches the toolchain tusd's go.mod asks for)"
fi

mkdir -p "$cache_dir/bin"
rm -rf "$cache_dir"/.build.*
tmp_dir=$(mktemp -d "$cache_dir/.build.XXXXXX")
trap 'rm -rf "$tmp_dir"' EXIT
trap 'exit 130' INT TERM HUP

log "building $TUSD_MODULE@$TUSD_VERSION with $go_version (a minute or two the first time)"
start=$SECONDS
if ! GOBIN="$tmp_dir" GOFLAGS=-trimpath go install "$TUSD_MODULE@$TUSD_VERSION" </dev/null >&2; then
    die "go install $TUSD_MODULE@$TUSD_VERSION failed (see output above)"
fi
is_tusd "$tmp_dir/tusd" || die "the freshly built $tmp_dir/tusd does not run"
mv -f "$tmp_dir/tusd" "$cached_bin"
log "built $cached_bin in $((SECONDS - start))s"
printf '%s\n' "$cached_bin"
