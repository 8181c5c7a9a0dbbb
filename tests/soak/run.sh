#!/bin/bash
# run.sh - soak orproxy (sanitizer build) with mixed traffic and check it comes back to rest.
#
# Usage: tests/soak/run.sh BUILD_DIR SECONDS      (make soak / make soak-smoke)
#
# Starts the fake upstream and BUILD_DIR/orproxy (ASan + UBSan) on free 127.0.0.1 ports, then
# drives BUILD_DIR/soak (tests/soak/soak.c: 32 concurrent requests of a dozen kinds) for
# SECONDS in all, while a side loop sends SIGHUP every 3 s (alternating two configs) and clears
# the fake's request log every 5 s (the fake records every request; the daemon is what is
# measured, not the fake).
#
# The run has two phases. Warm-up: the first W seconds (SECONDS/4, at least 30, at most 150) of
# the same mixed load. Then the load stops, the daemon settles, and its VmRSS and descriptors are
# the baseline. Main: the rest of the time, load again, then the same settle and measurement.
# Settling means at rest: no reconciliation of an aborted stream's cost pending (those ask
# upstream for up to ~67 s after the abort; measuring while they ran put 4-6 MB of their work
# into "after load") and the descriptor count still for 3 s.
# Why this baseline: the first requests grow the heap to its working size (the allocator's size
# classes, curl's connection cache, MHD's pools, SQLite's page cache, the metrics label table).
# Under ASan, RSS also holds its quarantine of freed blocks, capped here at ASAN_QUARANTINE_MB
# (default 8; ASan's own default is 256). Freed blocks leave the quarantine in the order they
# entered it, so when the mix of allocation sizes changes (load, then only reconciliations and
# reloads) the size classes being freed are not the ones being allocated, and RSS moves by up to
# the quarantine's size with no change in the live heap. With 32 MB, 60 s runs measured +3.4% to
# +7.8% (600 s: +4.0%); with 8 MB, +0.5% to +1.3% (600 s: +5.8%, RSS creeping under load while
# the live heap stayed at 3.0 MB), always with the live heap flat. 8 MB still catches a
# use-after-free within the last 8 MB of frees (thousands of requests).
# allocator_release_to_os_interval_ms makes ASan give free pages back as glibc's malloc_trim
# does in the optimised build.
# Assertions, each printed:
#   - RSS after the main phase is within 10% of the warm-up baseline;
#   - descriptors are back to the idle count measured before any traffic, not counting the
#     keep-alive connections curl caches to upstream (reported; bounded by curl's cache), and no
#     client connection is left open;
#   - SIGTERM ends orproxy with exit 0, and no sanitizer report was written (log files or log);
#   - the ledger has exactly one row per request that reached the daemon (soak verify);
#   - the load generator saw no unexpected answer (a 502 where a 200 was due, ...).
# Everything stays in BUILD_DIR/soak (logs, ledger, id lists) for inspection. Processes started
# here are stopped on any exit.
set -u

build=${1:?usage: run.sh BUILD_DIR SECONDS}
total=${2:-600}
work=$build/soak
conc=${SOAK_CONCURRENCY:-32}
quarantine=${ASAN_QUARANTINE_MB:-8}

warm=$((total / 4))
[ "$warm" -lt 30 ] && warm=30
[ "$warm" -gt 150 ] && warm=150
main=$((total - warm))
[ "$main" -lt 10 ] && main=10

fake_pid= orp_pid= side_pid= gen_pid=
cleanup() {
    for p in $gen_pid $side_pid $orp_pid $fake_pid; do
        kill -9 "$p" 2>/dev/null
    done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

fail=0
check() { # check OK_EXPR MESSAGE
    if eval "$1"; then echo "  ok:   $2"; else echo "  FAIL: $2"; fail=1; fi
}

rm -rf "$work" && mkdir -p "$work/state" || exit 2
work=$(cd "$work" && pwd)
soak=$build/soak_load
for b in "$build/orproxy" "$build/fake_openrouter" "$soak"; do
    [ -x "$b" ] || { echo "soak: $b is missing" >&2; exit 2; }
done

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$work/asan:quarantine_size_mb=$quarantine:allocator_release_to_os_interval_ms=500"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/ubsan"

# The fake: it prints "PORT n" once it listens on 127.0.0.1.
"$build/fake_openrouter" >"$work/fake.port" 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$work/fake.port" && break; sleep 0.05; done
fake_port=$(sed -n 's/^PORT //p' "$work/fake.port")
[ -n "$fake_port" ] || { echo "soak: the fake did not start" >&2; cat "$work/fake.log" >&2; exit 2; }

port=$("$soak" freeport)
conf() { # conf MAX_DELAY_MS TITLE
    cat <<EOF
listen = { address = "127.0.0.1"; port = $port; };
upstream = { base_url = "http://127.0.0.1:$fake_port/api/v1"; idle_timeout_s = 5; connect_timeout_s = 2;
             title = "$2"; };
retry = { max_attempts = 3; base_delay_ms = 10; max_delay_ms = $1; };
state_dir = "$work/state";
ledger = { flush_ms = 200; };
shutdown_timeout_s = 10;
workers = 2;
EOF
}
conf 50 soak-a >"$work/conf.a"
conf 60 soak-b >"$work/conf.b"
cp "$work/conf.a" "$work/orproxy.conf"

OPENROUTER_API_KEY=sk-or-v1-SOAK-not-a-real-key "$build/orproxy" -c "$work/orproxy.conf" \
    >"$work/orproxy.log" 2>&1 &
orp_pid=$!
for _ in $(seq 200); do
    curl -s -o /dev/null --noproxy '*' "http://127.0.0.1:$port/healthz" && break
    kill -0 "$orp_pid" 2>/dev/null || break
    sleep 0.05
done
curl -sf -o /dev/null --noproxy '*' "http://127.0.0.1:$port/healthz" ||
    { echo "soak: orproxy did not start" >&2; cat "$work/orproxy.log" >&2; exit 2; }
for _ in $(seq 100); do grep -q 'prices loaded' "$work/orproxy.log" && break; sleep 0.05; done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$orp_pid/status"; }
# "anon A kB, file F kB, shmem S kB": what the RSS is made of.
rss_parts() {
    awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^RssShmem:/ {s=$2}
         END {printf "anon %d kB, file %d kB, shmem %d kB", a, f, s}' "/proc/$orp_pid/status"
}
# ASan's count of bytes allocated and not yet freed (the live heap, without the allocator's
# free lists, quarantine and fragmentation that RSS includes), read with gdb while the daemon is
# idle; "?" without gdb. It tells a leak (live heap grows) from allocator high water (only RSS).
live_heap_kb() {
    local b
    b=$(command -v gdb >/dev/null && timeout 30 gdb -p "$orp_pid" -batch -nx \
        -ex 'print (unsigned long)__sanitizer_get_current_allocated_bytes()' 2>/dev/null |
        sed -n 's/^\$1 = \([0-9]*\).*/\1/p')
    if [ -n "$b" ]; then echo $((b / 1024)); else echo "?"; fi
}
active_conns() {
    curl -s --noproxy '*' "http://127.0.0.1:$port/metrics" |
        sed -n 's/^orproxy_active_connections \([0-9]*\).*/\1/p'
}
# Every descriptor with its target and, for TCP sockets, "local remote state" (hex, as in
# /proc/net/tcp); "no tcp entry" for sockets that are not (or no longer) TCP connections.
fds_dump() {
    ls -l "/proc/$orp_pid/fd" 2>/dev/null | awk 'NR > 1 {print $(NF-2), $NF}' |
        awk 'FILENAME ~ /unix$/ { if (FNR > 1) unix[$7] = "unix " $8; next }
             FILENAME != "-" { if (FNR > 1) tcp[$10] = $2 " " $3 " " $4; next }
             { t = $2; ino = t; gsub(/[^0-9]/, "", ino)
               if (t ~ /^socket:/)
                   print $1, t, (ino in tcp ? tcp[ino] : ino in unix ? unix[ino] : "no tcp entry")
               else print $1, t }' /proc/net/tcp /proc/net/tcp6 /proc/net/unix -
}
# From one fds_dump snapshot on stdin: "TOTAL UPSTREAM CLIENT": upstream = TCP sockets whose peer is the
# fake's port (curl's keep-alive cache); client = accepted on the daemon's port (not listening).
fds() {
    awk -v fp="$(printf '%04X' "$fake_port")" -v op="$(printf '%04X' "$port")" '
        { total++ }
        $2 ~ /^socket:/ && NF >= 5 {
            split($3, l, ":"); split($4, r, ":")
            if (r[2] == fp) up++
            else if (l[2] == op && $5 != "0A") cl++
        }
        END { print total + 0, up + 0, cl + 0 }'
}
metric() { # metric SERIES: its value in a /metrics scrape, empty if absent
    curl -s --noproxy '*' "http://127.0.0.1:$port/metrics" |
        awk -v s="$1" '$1 == s {print $2; exit}'
}
# Waits until the daemon is at rest: no reconciliation of an aborted stream's cost still going
# on (those ask upstream for up to ~67 s after the abort, so they outlive the load) and the
# descriptor count holding still for 3 s; at most 120 s.
settle() {
    local last= same=0 pending
    for _ in $(seq 120); do
        sleep 1
        pending=$(metric orproxy_reconcile_pending)
        cur=$(fds_dump | fds)
        if [ "$cur" = "$last" ] && [ "${pending:-x}" = 0 ]; then same=$((same + 1)); else same=0; fi
        last=$cur
        [ "$same" -ge 3 ] && break
    done
    echo "$(date +%s.%N) MARK settled (reconcile pending ${pending:-?})" >>"$work/rss.fine"
    settled_pending="$settled_pending ${pending:-?}"
}
settled_pending=

fds_dump >"$work/fds.idle"
read -r fd_idle up_idle cl_idle <<<"$(fds <"$work/fds.idle")"
rss_idle=$(rss)
heap_idle=$(live_heap_kb)
active_idle=$(active_conns) # the scrape's own connection
echo "soak: orproxy pid $orp_pid on 127.0.0.1:$port, fake on $fake_port; $total s in all:" \
    "warm-up $warm s, main $main s, concurrency $conc, ASan quarantine $quarantine MB"
echo "soak: idle before traffic: RSS $rss_idle kB ($(rss_parts)), $fd_idle fds ($up_idle upstream sockets)"

# Side loop: SIGHUP every 3 s with the other config; clear the fake's records every 5 s.
(
    n=0
    while sleep 1; do
        n=$((n + 1))
        if [ $((n % 3)) -eq 0 ]; then
            if [ $((n % 6)) -eq 0 ]; then cp "$work/conf.a" "$work/orproxy.conf.new"
            else cp "$work/conf.b" "$work/orproxy.conf.new"; fi
            mv "$work/orproxy.conf.new" "$work/orproxy.conf"
            kill -HUP "$orp_pid" 2>/dev/null || exit 0
            echo "$n" >>"$work/reloads"
        fi
        [ $((n % 10)) -eq 0 ] && echo "$n $(rss)" >>"$work/rss.trace"
        [ $((n % 5)) -eq 0 ] && curl -s -o /dev/null --noproxy '*' -X POST \
            "http://127.0.0.1:$fake_port/_fake/reset"
    done
) &
side_pid=$!
# Diagnostic: RSS every 0.5 s through the whole run, settles included (rss.fine).
( t0=$(date +%s.%N); while kill -0 "$orp_pid" 2>/dev/null; do
    echo "$(date +%s.%N) $(rss)" >>"$work/rss.fine"; sleep 0.5; done ) &

gen_rc=0
# The generator runs in the background so that the EXIT trap can stop it too.
"$soak" run --port "$port" --seconds "$warm" --concurrency "$conc" --phase warm --seed 1 \
    --ids "$work/ids.warm" &
gen_pid=$!
wait "$gen_pid" || gen_rc=1
gen_pid=
echo "$(date +%s.%N) MARK warm-load-ended" >>"$work/rss.fine"
settle
fds_dump >"$work/fds.warm"
read -r fd_warm up_warm cl_warm <<<"$(fds <"$work/fds.warm")"
rss_warm=$(rss)
cp "/proc/$orp_pid/smaps" "$work/smaps.warm" 2>/dev/null
echo "$(date +%s.%N) MARK warm-measured" >>"$work/rss.fine"
heap_warm=$(live_heap_kb)
echo "$(date +%s.%N) MARK gdb-done" >>"$work/rss.fine"
echo "soak: after warm-up and settle: RSS $rss_warm kB ($(rss_parts)), $fd_warm fds ($up_warm upstream sockets," \
    "$cl_warm client connections)"

"$soak" run --port "$port" --seconds "$main" --concurrency "$conc" --phase main --seed 2 \
    --ids "$work/ids.main" &
gen_pid=$!
wait "$gen_pid" || gen_rc=1
gen_pid=
echo "$(date +%s.%N) MARK main-load-ended" >>"$work/rss.fine"
kill "$side_pid" 2>/dev/null
wait "$side_pid" 2>/dev/null
side_pid=
settle
fds_dump >"$work/fds.end"
read -r fd_end up_end cl_end <<<"$(fds <"$work/fds.end")"
rss_end=$(rss)
cp "/proc/$orp_pid/smaps" "$work/smaps.end" 2>/dev/null
heap_end=$(live_heap_kb)
echo "soak: after main load and settle: RSS $rss_end kB ($(rss_parts)), $fd_end fds ($up_end upstream sockets," \
    "$cl_end client connections)"
curl -s --noproxy '*' "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
reloads=$(grep -c . "$work/reloads" 2>/dev/null || echo 0)
reloads_ok=$(sed -n 's/^orproxy_config_reloads_total{result="ok"} \([0-9]*\).*/\1/p' "$work/metrics.txt")
reloads_failed=$(sed -n 's/^orproxy_config_reloads_total{result="failed"} \([0-9]*\).*/\1/p' "$work/metrics.txt")
dropped=$(sed -n 's/^orproxy_ledger_dropped_total \([0-9]*\).*/\1/p' "$work/metrics.txt")
active=$(sed -n 's/^orproxy_active_connections \([0-9]*\).*/\1/p' "$work/metrics.txt")
rec() { sed -n "s/^orproxy_reconcile_total{result=\"$1\"} \([0-9]*\).*/\1/p" "$work/metrics.txt"; }

kill -TERM "$orp_pid"
exit_code=
for _ in $(seq 300); do
    if ! kill -0 "$orp_pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if kill -0 "$orp_pid" 2>/dev/null; then
    echo "soak: orproxy ignored SIGTERM for 30 s; killing it"
    kill -9 "$orp_pid"
fi
wait "$orp_pid"
exit_code=$?
orp_pid=

echo "soak: summary"
echo "  SIGHUP reloads sent $reloads; metrics: ok ${reloads_ok:-0}, failed ${reloads_failed:-0}"
echo "  RSS kB: idle $rss_idle, after warm-up $rss_warm (baseline), end $rss_end" \
    "($(awk -v a="$rss_warm" -v b="$rss_end" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }'))"
echo "  reconciliations of aborted streams: answered $(rec answered), given up $(rec given_up)," \
    "dropped $(rec dropped); pending when measured:$settled_pending"
echo "  ASan live heap kB: idle $heap_idle, after warm-up $heap_warm, end $heap_end"
echo "  RSS under load every 10 s (s:kB): $(awk '{printf "%s:%s ", $1, $2}' "$work/rss.trace" 2>/dev/null)"
echo "  fds: idle $fd_idle (upstream $up_idle), after warm-up $fd_warm (upstream $up_warm)," \
    "end $fd_end (upstream $up_end, clients $cl_end)"
"$soak" verify --db "$work/state/usage.db" --ids "$work/ids.warm" --ids "$work/ids.main" \
    >"$work/verify.txt" 2>&1
verify_rc=$?
sed 's/^/  /' "$work/verify.txt"
san=$(ls "$work"/asan* "$work"/ubsan* 2>/dev/null)
san_log=$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/orproxy.log")

echo "soak: checks"
check '[ "$gen_rc" -eq 0 ]' "every answer was what its kind must produce (load generator)"
check '[ "$settled_pending" = " 0 0" ]' \
    "at rest when measured (no reconciliation pending after warm-up and main:$settled_pending)"
check '[ "$rss_end" -le $((rss_warm * 110 / 100)) ]' \
    "RSS at the end ($rss_end kB) within 10% of the warm-up baseline ($rss_warm kB)"
check '[ $((fd_end - up_end)) -eq $((fd_idle - up_idle)) ]' \
    "fds back to idle: $((fd_end - up_end)) besides upstream keep-alive, $((fd_idle - up_idle)) before traffic"
check '[ "$cl_end" -eq 0 ] && [ "${active:-x}" = "$active_idle" ]' \
    "no client connection left ($cl_end sockets; orproxy_active_connections ${active:-?}, $active_idle before traffic: the scrape itself)"
check '[ "${dropped:-0}" -eq 0 ]' "ledger dropped nothing (orproxy_ledger_dropped_total ${dropped:-?})"
check '[ "${reloads_failed:-0}" -eq 0 ] && [ "${reloads_ok:-0}" -gt 0 ]' "reloads all applied"
check '[ "$exit_code" -eq 0 ]' "orproxy exited 0 after SIGTERM (got $exit_code)"
check '[ -z "$san" ] && [ "$san_log" -eq 0 ]' "no sanitizer report ($san; $san_log in the log)"
check '[ "$verify_rc" -eq 0 ]' "ledger rows == requests that reached the daemon"
if [ "$fail" -ne 0 ]; then
    [ -n "$san" ] && head -50 $san
    echo "soak: FAILED (files in $work)"
    exit 1
fi
echo "soak: passed (files in $work)"
