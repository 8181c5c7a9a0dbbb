#!/bin/bash
# run.sh - make test-pg: start a throwaway PostgreSQL (pgserver.sh), run each
# test program given against it, one at a time, each bounded by a timeout,
# and remove the server and its directory at the end, whatever happened.
#   tests/pg/run.sh build/tests/pg/test_a build/tests/pg/test_b ...
# The programs find the server through ORP_PG_* (see pgserver.sh) and may
# stop and resume it with "$ORP_PG_CTL stop|resume $ORP_PG_DIR".
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -u "${TMPDIR:-/tmp}/orp-pg.XXXXXX")
trap '"$here/pgserver.sh" destroy "$dir"' EXIT
trap 'exit 130' INT TERM
"$here/pgserver.sh" start "$dir" >/dev/null
set -a
# shellcheck disable=SC1091
. "$dir/env"
ORP_PG_CTL=$here/pgserver.sh
set +a
failed=0
for t in "$@"; do
    echo "== $t"
    timeout -k 5 120 "$t" || { echo "FAILED: $t (exit $?)"; failed=1; }
done
exit $failed
