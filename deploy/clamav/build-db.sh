#!/usr/bin/env bash
# Build the test signature database as an unsigned ClamAV container, daily.cud, so clamd reports
# a signature version ("ClamAV 1.4.6/<VERSION>/<date>") exactly as it does with freshclam's
# daily.cvd in production. attachd records that version per scan and rescans attached files
# when it changes; tests bump it to check that.
#
#   deploy/clamav/build-db.sh OUT_DIR VERSION [EXTRA_SIGNATURE_FILE ...]
#
# Signatures come from deploy/clamav/signatures/*.ndb plus any extra files given (.ndb/.hdb).
set -euo pipefail

out=${1:?usage: build-db.sh OUT_DIR VERSION [EXTRA ...]}
version=${2:?usage: build-db.sh OUT_DIR VERSION [EXTRA ...]}
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
command -v sigtool >/dev/null || { echo "build-db.sh: sigtool missing (Debian package clamav)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# sigtool builds a container from every database file in the current directory, named after it.
for f in "$here"/signatures/*.ndb "$@"; do
    ext=${f##*.}
    cat "$f" >>"$work/daily.$ext"
done
printf 'Test signatures of attachd; not for production use.\n' >"$work/COPYING"
(
    cd "$work"
    # sigtool asks for a builder name on stdin; its "can't open daily.cud" is about the missing
    # previous version and is expected.
    echo attachd | sigtool --build=daily.cud --unsigned --cvd-version="$version" --no-cdiff \
        --datadir="$work" >build.log 2>&1 || { cat build.log >&2; exit 1; }
)
mkdir -p "$out"
cp "$work/daily.cud" "$out/daily.cud.tmp"
mv -f "$out/daily.cud.tmp" "$out/daily.cud"
