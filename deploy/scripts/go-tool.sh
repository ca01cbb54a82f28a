#!/usr/bin/env bash
# Build a pinned Go tool into attachd's cache, once: sourced by minio-bin.sh and tusd-bin.sh,
# which differ only in how they find a binary elsewhere and how they tell theirs runs.
#
#   source "$SCRIPT_DIR/go-tool.sh"
#   go_tool_bin NAME MODULE VERSION KEY CHECK [MIN_GO_HINT]
#
# prints the path of ${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}/NAME-KEY/bin/NAME,
# building it with `go install MODULE@VERSION` when the cached one is missing or CHECK (a shell
# function taking a path) refuses it. The build happens in a temporary directory beside the cache
# and the binary is renamed into place, so an interrupted build never leaves a broken entry; a
# flock on <cache>/NAME-KEY.lock makes concurrent callers wait for one build. Hooks a caller may
# define before calling: go_tool_no_go MESSAGE (no usable Go; the default dies with MESSAGE) and
# go_tool_before_build (runs under the lock, before the cache is checked again).

go_tool_log() { printf '%s-bin: %s\n' "$GO_TOOL_NAME" "$*" >&2; }
go_tool_die() { go_tool_log "ERROR: $*"; exit 1; }

go_tool_cache_root() {
    local root="${ATTACHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/attachd}"
    mkdir -p "$root"
    (cd "$root" && pwd -P)
}

go_tool_bin() {
    local name=$1 module=$2 version=$3 key=$4 check=$5
    GO_TOOL_NAME=$name
    local root cache_dir cached
    root=$(go_tool_cache_root)
    cache_dir="$root/$name-$key"
    cached="$cache_dir/bin/$name"
    GO_TOOL_CACHED=$cached GO_TOOL_CACHE_DIR=$cache_dir
    if "$check" "$cached"; then
        printf '%s\n' "$cached"
        return 0
    fi
    exec 9>"$root/$name-$key.lock"
    if ! flock -n 9; then
        go_tool_log "another process is building $name into $cache_dir; waiting for its lock"
        flock 9
    fi
    if declare -F go_tool_before_build >/dev/null; then go_tool_before_build; fi
    # Another caller may have built it while we waited for the lock.
    if "$check" "$cached"; then
        printf '%s\n' "$cached"
        return 0
    fi
    local no_go=go_tool_die
    if declare -F go_tool_no_go >/dev/null; then no_go=go_tool_no_go; fi
    command -v go >/dev/null 2>&1 || "$no_go" "'go' is not on PATH"
    local go_version go_minor
    go_version=$(go env GOVERSION 2>/dev/null || go version | awk '{print $3}')
    go_minor=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$go_version")
    if [[ -z $go_minor ]] || ((go_minor < 21)); then
        # Go >= 1.21 fetches the toolchain the module's go.mod asks for by itself.
        "$no_go" "found $go_version, but Go >= 1.21 is needed to build $name"
    fi
    mkdir -p "$cache_dir/bin"
    # Leftovers of interrupted builds: nobody else can be building, we hold the lock.
    rm -rf "$cache_dir"/.build.*
    GO_TOOL_TMP=$(mktemp -d "$cache_dir/.build.XXXXXX")
    trap 'rm -rf "$GO_TOOL_TMP"' EXIT
    trap 'exit 130' INT TERM HUP
    go_tool_log "building $module@$version with $go_version (minutes the first time)"
    local start=$SECONDS
    if ! GOBIN="$GO_TOOL_TMP" GOFLAGS=-trimpath go install "$module@$version" </dev/null >&2; then
        go_tool_die "go install $module@$version failed (see output above)"
    fi
    local built="$GO_TOOL_TMP/${module##*/}"
    "$check" "$built" || go_tool_die "the freshly built $built does not run"
    mv -f "$built" "$cached" # same filesystem: an atomic rename
    go_tool_log "built $cached in $((SECONDS - start))s"
    printf '%s\n' "$cached"
}
