#!/bin/sh
# The operator console in a real browser (make test-ui; make check runs it).
# Starts the fake upstream and orproxy (auth.mode keys, an admin client and a
# config client, two workers) on loopback, then tests/ui/console.mjs drives
# Debian's chromium headless through the console with puppeteer-core; then
# the same with auth.mode none, where the console must work without a key.
# Usage: tests/ui/run.sh ORPROXY_BIN FAKE_BIN [SCREENS_DIR]
# Screenshots go to SCREENS_DIR (default build/ui-screens); everything else
# lives in a temporary directory removed on exit.  Bounded: UI_TIMEOUT
# seconds for the browser part (default 180).
set -eu
ORP=$(realpath "$1")
FAKE=$(realpath "$2")
SCREENS=${3:-build/ui-screens}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cleanup() {
    [ -n "${opid:-}" ] && kill "$opid" 2>/dev/null || true
    [ -n "${fpid:-}" ] && kill "$fpid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] || { echo "tests/ui: chromium is missing (make deps-test installs it)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "tests/ui: sqlite3 is missing (make deps-test installs it)" >&2; exit 1; }
if [ ! -d "$here/node_modules/puppeteer-core" ]; then
    # PUPPETEER_SKIP_DOWNLOAD: puppeteer-core fetches no browser anyway; be explicit.
    (cd "$here" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$SCREENS" "$work/downloads"

"$FAKE" --port 0 > "$work/fake.port" &
fpid=$!
for _ in $(seq 50); do [ -s "$work/fake.port" ] && break; sleep 0.1; done
fport=$(awk '{print $2}' "$work/fake.port")
[ -n "$fport" ] || { echo "tests/ui: the fake upstream did not start" >&2; exit 1; }

newkey() { printf 'orp-uitest%s' "$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')"; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
ADMIN_KEY=$(newkey)
SEED_KEY=$(newkey)
# start_orp MODE: orproxy with auth.mode MODE on a fresh state directory; sets port.
start_orp() {
    cat > "$work/orproxy.conf" <<CONF
listen = { address = "127.0.0.1"; port = 0; };
upstream = { base_url = "http://127.0.0.1:$fport/api/v1"; };
state_dir = "$work/state-$1";
workers = 2;
auth = { mode = "$1"; };
limits = { budget_usd_month = "100"; };
clients = (
  { name = "ops"; key_sha256 = "$(sha "$ADMIN_KEY")"; admin = true; },
  { name = "seed"; key_sha256 = "$(sha "$SEED_KEY")"; budget_usd_day = "5"; }
);
CONF
    : > "$work/orproxy.log"
    OPENROUTER_API_KEY=sk-or-v1-ui-test "$ORP" -c "$work/orproxy.conf" 2> "$work/orproxy.log" &
    opid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/orproxy.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "orproxy did not start:" >&2; cat "$work/orproxy.log" >&2; exit 1; }
}

# run_browser MODE: console.mjs against the running orproxy; exits on failure.
run_browser() {
    rc=0
    MODE=$1 ORP_URL="http://127.0.0.1:$port" ADMIN_KEY=$ADMIN_KEY SEED_KEY=$SEED_KEY \
    LEDGER="$work/state-$1/usage.db" CHROMIUM=$CHROMIUM SCREENS=$(realpath "$SCREENS") \
    DOWNLOADS="$work/downloads" HOME="$work" \
        timeout -k 5 "${UI_TIMEOUT:-180}" node "$here/console.mjs" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "--- orproxy log (tail):" >&2
        tail -40 "$work/orproxy.log" >&2
        exit "$rc"
    fi
    kill "$opid" && wait "$opid" || true
    opid=""
}

start_orp keys
run_browser keys
start_orp none
run_browser none
