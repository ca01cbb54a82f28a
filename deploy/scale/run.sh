#!/usr/bin/env bash
# make scale-test: the multi-host run of deploy/scale/scaletest.py, with a trap that removes its
# namespaces, links and processes even if the driver itself is killed (it cleans up after
# itself on any exception and on SIGTERM/SIGINT; this covers SIGKILL and the unforeseen).
#
#   deploy/scale/run.sh [scaletest.py options]     e.g. --uploads 300
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
py="$repo/.venv/bin/python"

((EUID == 0)) || { echo "scale-test: needs root (it builds network namespaces)" >&2; exit 2; }
trap '"$py" "$here/scaletest.py" --teardown-only || true' EXIT
# Only the variables the topology's hosts are given: none of a caller's ATTACHD_* leak in.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^ATTACHD_' || true)
start=$SECONDS
"$py" "$here/scaletest.py" "$@"
echo "scale-test: $((SECONDS - start)) s from start to teardown" >&2
