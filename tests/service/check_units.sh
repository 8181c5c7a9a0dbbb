#!/bin/sh
# The systemd units pass `systemd-analyze verify` without a word, and
# `systemd-analyze security` rates orproxy.service's exposure 2.0 or lower
# ("OK" or better).
#
# verify also checks that ExecStart='s binary exists and that the
# Documentation= man page is installed. So it runs on copies of the units in
# a temporary directory, with ExecStart= naming the built binary by absolute
# path and MANPATH pointing at a man tree that holds doc/orproxy.8.
# (tests/service/check_install.sh verifies the installed copies as well.)
#
# usage: tests/service/check_units.sh [BINARY]     (default: build/orproxy)
set -eu

cd "$(dirname "$0")/../.."
bin=${1:-build/orproxy}
max_exposure=2.0

fail() {
    printf 'check_units: FAIL: %s\n' "$*" >&2
    exit 1
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check_units: SKIP: systemd-analyze is not installed, the units cannot be checked here"
    exit 0
fi
[ -x "$bin" ] || fail "$bin is not built (run: make $bin)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# --- verify -----------------------------------------------------------------
bin_abs=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
bin_sed=$(printf '%s\n' "$bin_abs" | sed 's/[&|\\]/\\&/g')
grep -q '^ExecStart=/usr/local/bin/orproxy ' systemd/orproxy.service ||
    fail "systemd/orproxy.service: ExecStart= does not start with /usr/local/bin/orproxy" \
        "(make install rewrites that path)"
mkdir -p "$tmp/units" "$tmp/man/man8"
sed "s|/usr/local/bin/orproxy|$bin_sed|g" systemd/orproxy.service >"$tmp/units/orproxy.service"
cp systemd/orproxy.socket "$tmp/units/orproxy.socket"
cp doc/orproxy.8 "$tmp/man/man8/orproxy.8"

man_opt=
if ! command -v man >/dev/null 2>&1; then
    echo "check_units: note: man is not installed; verify skips the Documentation= check"
    man_opt=--man=no
fi
rc=0
out=$(MANPATH="$tmp/man" systemd-analyze verify $man_opt \
    "$tmp/units/orproxy.service" "$tmp/units/orproxy.socket" 2>&1) || rc=$?
[ "$rc" -eq 0 ] || fail "systemd-analyze verify exited $rc:
$out"
[ -z "$out" ] || fail "systemd-analyze verify printed:
$out"
echo "check_units: ok: systemd-analyze verify orproxy.service orproxy.socket: no complaints"

# --- security ---------------------------------------------------------------
rc=0
report=$(systemd-analyze security --offline=yes --no-pager systemd/orproxy.service 2>&1) || rc=$?
[ "$rc" -eq 0 ] || fail "systemd-analyze security exited $rc:
$report"
score=$(printf '%s\n' "$report" |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]*\).*/\1/p')
[ -n "$score" ] || fail "no overall exposure level in the systemd-analyze security output:
$report"
if ! awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
    printf '%s\n' "$report" | grep -v '^✓' >&2 || true
    fail "orproxy.service exposure level is $score, above $max_exposure"
fi
echo "check_units: ok: systemd-analyze security: exposure $score (at most $max_exposure)"

# --- what the daemon relies on ----------------------------------------------
# Directives whose loss would not trouble systemd-analyze but would break or
# weaken the service.
# shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
for want in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' 'DynamicUser=yes' \
    'StateDirectory=orproxy' 'ConfigurationDirectory=orproxy' \
    'LoadCredential=openrouter-api-key:/etc/orproxy/openrouter-api-key' \
    'LimitNOFILE=65536' 'WatchdogSec=30s' 'Restart=on-failure' 'Documentation=man:orproxy(8)'; do
    grep -qxF "$want" systemd/orproxy.service || fail "systemd/orproxy.service lacks the line: $want"
done
for no in IPAddressDeny IPAddressAllow PrivateNetwork; do
    ! grep -q "^$no=" systemd/orproxy.service ||
        fail "systemd/orproxy.service sets $no=, but orproxy must reach OpenRouter"
done
for want in 'ListenStream=127.0.0.1:8080' 'Accept=no' 'Documentation=man:orproxy(8)'; do
    grep -qxF "$want" systemd/orproxy.socket || fail "systemd/orproxy.socket lacks the line: $want"
done

# TimeoutStopSec= must leave room for the graceful stop (shutdown_timeout_s,
# whose default the binary reports) plus the ledger flush.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9][0-9]*\)s\{0,1\}$/\1/p' systemd/orproxy.service)
[ -n "$stop" ] || fail "systemd/orproxy.service: no TimeoutStopSec= in whole seconds"
drain=$("$bin" --settings | awk -F'|' '$2 ~ /`shutdown_timeout_s`/ { gsub(/[ `]/, "", $4); print $4 }')
[ -n "$drain" ] || fail "$bin --settings does not list shutdown_timeout_s"
[ "$stop" -gt "$drain" ] ||
    fail "TimeoutStopSec=${stop}s is not longer than the default shutdown_timeout_s (${drain}s)"
echo "check_units: ok: TimeoutStopSec=${stop}s > shutdown_timeout_s default ${drain}s; required directives present"
