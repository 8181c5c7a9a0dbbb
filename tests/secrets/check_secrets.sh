#!/bin/sh
# check_secrets.sh - the upstream keys appear nowhere a client, an operator or a crash could see.
#
# Usage: tests/secrets/check_secrets.sh CAPTURE_DIR [HARNESS_H]
#
# The end-to-end suite gives orproxy only the canary keys defined in tests/e2e/harness.h
# (H_CANARY_KEY*) and, with ORP_CAPTURE_DIR set, keeps what came out: every response a client got
# (status line, headers, body; /metrics scrapes included), every orproxy log (stderr, so sanitizer
# reports too), the ledger (SQLite file, WAL, JSONL), the state directory (prices.json) and the
# output of every command the tests ran. This script greps all of it, byte for byte and binary
# files included, for each key and for every 12-character piece of its secret part (a key cut,
# re-encoded around the edges or partly logged still shows). It fails listing the files that hold
# one, and it also fails when the capture is missing a kind of evidence (no responses, no log, no
# ledger, no metrics scrape), so a broken capture cannot pass silently.
set -eu

cap=${1:?usage: check_secrets.sh CAPTURE_DIR [HARNESS_H]}
hdr=${2:-tests/e2e/harness.h}
piece=12

fail() {
    echo "check_secrets: FAIL: $*" >&2
    exit 1
}

[ -d "$cap" ] || fail "no capture directory $cap (run the e2e suite with ORP_CAPTURE_DIR=$cap)"
keys=$(sed -n 's/^#define H_CANARY_KEY[_0-9]* *"\(sk-or-v1-[^"]*\)"$/\1/p' "$hdr")
[ -n "$keys" ] || fail "no H_CANARY_KEY definitions in $hdr"

pat=$(mktemp)
trap 'rm -f "$pat"' EXIT INT TERM
for k in $keys; do
    echo "$k" >>"$pat"
    secret=${k#sk-or-v1-}
    n=${#secret}
    [ "$n" -ge 32 ] || fail "canary $k is too short to be recognisable"
    i=0
    while [ $((i + piece)) -le "$n" ]; do
        # ${secret:i:piece} is not POSIX sh; cut is.
        printf '%s\n' "$secret" | cut -c $((i + 1))-$((i + piece)) >>"$pat"
        i=$((i + 1))
    done
done

# The capture must hold every kind of evidence, or the check proves nothing.
nresp=$(find "$cap" -name responses.txt -size +0c | wc -l)
nlog=$(find "$cap" -name orproxy.log -size +0c | wc -l)
ndb=$(find "$cap" -name usage.db -size +0c | wc -l)
njsonl=$(find "$cap" -name '*.jsonl' -size +0c | wc -l)
nprices=$(find "$cap" -name prices.json -size +0c | wc -l)
nmetrics=$(find "$cap" -name responses.txt -exec grep -l '^# TYPE orproxy_' {} + 2>/dev/null | wc -l)
nrecords=$(find "$cap" -name responses.txt -exec cat {} + 2>/dev/null | grep -c '^=== ' || true)
nfiles=$(find "$cap" -type f | wc -l)
bytes=$(find "$cap" -type f -exec cat {} + | wc -c)
echo "check_secrets: $nfiles files, $bytes bytes: $nrecords responses in $nresp files," \
    "$nlog orproxy logs, $ndb ledgers, $njsonl JSONL ledgers, $nprices price caches," \
    "$nmetrics programs with metrics scrapes; $(wc -l <"$pat") patterns from" \
    "$(echo "$keys" | wc -w) canary keys"
[ "$nresp" -gt 0 ] && [ "$nrecords" -gt 0 ] || fail "no client responses captured in $cap"
[ "$nlog" -gt 0 ] || fail "no orproxy log captured in $cap"
[ "$ndb" -gt 0 ] || fail "no ledger database captured in $cap"
[ "$njsonl" -gt 0 ] || fail "no JSONL ledger captured in $cap"
[ "$nprices" -gt 0 ] || fail "no price cache captured in $cap"
[ "$nmetrics" -gt 0 ] || fail "no /metrics scrape captured in $cap"

# Sanitizer reports, wherever they went (ASAN_OPTIONS=log_path=... or the log).
nsan=$(find "$cap" -type f \( -name 'asan*' -o -name 'ubsan*' -o -name 'lsan*' \) | wc -l)
[ "$nsan" -eq 0 ] || echo "check_secrets: note: $nsan sanitizer report files in $cap (grepped too)"

hits=$(grep -rlaF -f "$pat" "$cap" || true)
if [ -n "$hits" ]; then
    echo "check_secrets: FAIL: an upstream key (or a 12-character piece of one) is in:" >&2
    echo "$hits" | sed 's/^/  /' >&2
    echo "first matches:" >&2
    echo "$hits" | head -5 | while read -r f; do
        grep -naoF -f "$pat" "$f" | head -3 | sed "s|^|  $f:|" >&2
    done
    exit 1
fi
echo "check_secrets: ok: no canary key or piece of one in the capture"
