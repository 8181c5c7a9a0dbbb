#!/bin/sh
# Runs the official OpenAI Node SDK against a real orproxy in front of the
# fake upstream (tests/sdk/openai_node.mjs).  Called by `make check`.
# Usage: tests/sdk/run.sh ORPROXY_BIN FAKE_BIN
set -eu
ORP=$1
FAKE=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cleanup() {
    [ -n "${opid:-}" ] && kill "$opid" 2>/dev/null || true
    [ -n "${fpid:-}" ] && kill "$fpid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ ! -d "$here/node_modules/openai" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

"$FAKE" --port 0 > "$work/fake.port" &
fpid=$!
for _ in $(seq 50); do [ -s "$work/fake.port" ] && break; sleep 0.1; done
fport=$(awk '{print $2}' "$work/fake.port")
cat > "$work/orproxy.conf" <<CONF
listen = { address = "127.0.0.1"; port = 0; };
upstream = { base_url = "http://127.0.0.1:$fport/api/v1"; };
state_dir = "$work/state";
workers = 1;
CONF
OPENROUTER_API_KEY=sk-or-v1-sdk-test "$ORP" -c "$work/orproxy.conf" 2> "$work/orproxy.log" &
opid=$!
# port 0: the kernel picks a free port; orproxy logs which one.
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/orproxy.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "orproxy did not start:" >&2; cat "$work/orproxy.log" >&2; exit 1; }
if ! node "$here/openai_node.mjs" "$port"; then
    echo "--- orproxy log:" >&2
    cat "$work/orproxy.log" >&2
    exit 1
fi
