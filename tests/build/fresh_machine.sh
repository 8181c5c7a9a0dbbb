#!/bin/bash
# fresh_machine.sh - the README's two commands, run for the first time on a
# machine that has none of the build packages (make test-build; make check runs it).
#
# This machine has the packages, so the test hides them. It copies the tree to
# a temporary directory and puts there:
#   - a pkg-config first in PATH that knows no package (exit 1, no output) until
#     a marker file exists, and then is the real one;
#   - a scripts/deps.sh that only creates the marker: the real one would install
#     what the shim hides, but everything is already installed.
# Then, each from a clean copy (no build directory, no marker):
#   1. `make run`, with OPENROUTER_API_KEY set, conf/orproxy.conf listening on an
#      ephemeral loopback port and its upstream a closed loopback port: the binary
#      must link and serve (the "listening" line appears and /healthz answers
#      200); it is stopped afterwards.
#   2. `make check CHECK_STEPS=check-build`: deps-test, then make check's build
#      step (orproxy, the fake upstream, the unit and end-to-end programs) must
#      link; orproxy and one unit suite are run to show they load.
# A Makefile that reads pkg-config when make starts and links in that same make
# (ad8cd53's `run: deps $(BUILD)/orproxy`) fails step 1 with undefined references.
#
#   FRESH_MAKEFILE=path   test that Makefile instead of the tree's
#   FRESH_KEEP=1          keep the temporary directory (its path is printed)
#   FRESH_TIMEOUT=s       seconds each make may take to build (default 300)
# Only loopback is bound; everything started is stopped on exit. bash, not sh:
# dash's kill cannot signal a process group.
set -eu

cd "$(dirname "$0")/../.."
root=$(pwd)
timeout_s=${FRESH_TIMEOUT:-300}

fail() {
    printf 'fresh_machine: FAIL: %s\n' "$*" >&2
    exit 1
}
ok() {
    printf 'fresh_machine: ok: %s\n' "$*"
}

real_pkg_config=$(command -v pkg-config) || fail "pkg-config is needed (make deps installs it)"
command -v curl >/dev/null 2>&1 || fail "curl is needed (make deps-test installs it)"
command -v setsid >/dev/null 2>&1 || fail "setsid (util-linux) is needed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orp-fresh.XXXXXX")
tree=$tmp/tree
pgid=""
stop_run() {
    # The process group of `make run` (make, its shells, orproxy): TERM, then KILL.
    [ -n "$pgid" ] || return 0
    i=0
    while [ -e "$tmp/run.rc" ] && kill -0 -- "-$pgid" 2>/dev/null && [ $i -lt 20 ]; do
        sleep 0.1 # make has exited: let its wrapper shell finish
        i=$((i + 1))
    done
    if kill -TERM -- "-$pgid" 2>/dev/null; then
        i=0
        while kill -0 -- "-$pgid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    pgid=""
}
cleanup() {
    stop_run
    if [ "${FRESH_KEEP:-}" = 1 ]; then
        echo "fresh_machine: kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the copy ----------------------------------------------------------------
# What git would check out plus untracked files, without build output; a tree
# that is not a git checkout is copied whole, less its build directories.
mkdir -p "$tree" "$tmp/bin"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -co --exclude-standard | while read -r f; do
        [ -e "$f" ] && printf '%s\n' "$f"
    done | tar -cf - -T - | tar -C "$tree" -xf -
else
    tar --exclude=./build --exclude=./build-san --exclude=./build-fuzz --exclude=./state \
        --exclude=./.git -cf - . | tar -C "$tree" -xf -
fi
if [ -n "${FRESH_MAKEFILE:-}" ]; then
    cp "$FRESH_MAKEFILE" "$tree/Makefile"
fi
[ -f "$tree/Makefile" ] || fail "the copy has no Makefile"

marker=$tmp/packages-installed
cat >"$tmp/bin/pkg-config" <<EOF
#!/bin/sh
# Knows no package until deps has run; then the real pkg-config.
if [ -e "$marker" ]; then
    echo "found \$*" >>"$tmp/pkg-config.log"
    exec "$real_pkg_config" "\$@"
fi
echo "hidden \$*" >>"$tmp/pkg-config.log"
exit 1
EOF
cat >"$tree/scripts/deps.sh" <<EOF
#!/bin/sh
# Stand-in for the real deps.sh: the packages are installed, only hidden.
echo "deps.sh\${1:+ \$*}" >>"$tmp/deps.log"
: >"$marker"
EOF
chmod +x "$tmp/bin/pkg-config" "$tree/scripts/deps.sh"

# An ephemeral port (printed in the listening line) and an upstream that
# refuses connections at once, so that nothing leaves the machine.
conf=$tree/conf/orproxy.conf
sed -e 's|^\([ \t]*port[ \t]*=[ \t]*\)8080;|\10;|' \
    -e 's|^\([ \t]*base_url[ \t]*=[ \t]*\)"https://openrouter.ai/api/v1";|\1"http://127.0.0.1:9/api/v1";|' \
    "$conf" >"$conf.new"
mv "$conf.new" "$conf"
grep -Eq '^[ \t]*port[ \t]*=[ \t]*0;' "$conf" || fail "could not set listen.port = 0 in the copy's $conf"
grep -q '"http://127.0.0.1:9/api/v1"' "$conf" || fail "could not point the copy's $conf upstream at loopback"
grep -Eq '^[ \t]*address[ \t]*=[ \t]*"127\.0\.0\.1";' "$conf" || fail "$conf does not listen on 127.0.0.1"

# The environment of the make the user would run (call it in a subshell): no
# flags or jobserver inherited from a make that runs this test, the shim first
# in PATH, an upstream key (which goes nowhere: the upstream is a closed port).
fresh_env() {
    unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES CREDENTIALS_DIRECTORY STATE_DIRECTORY
    export PATH="$tmp/bin:$PATH" OPENROUTER_API_KEY=sk-or-v1-fresh-machine-test
}

# Asserts that the make of this step saw the packages hidden (so the situation
# was recreated) and that deps ran with the expected arguments.
check_hidden() {
    grep -q '^hidden ' "$tmp/pkg-config.log" 2>/dev/null ||
        fail "$1: pkg-config was never asked while the packages were hidden; the test proves nothing"
    grep -qx "deps.sh$2" "$tmp/deps.log" 2>/dev/null ||
        fail "$1: scripts/deps.sh was not run as \"deps.sh$2\" ($(cat "$tmp/deps.log" 2>/dev/null))"
}
reset() {
    rm -rf "$tree/build" "$tree/state" "$marker" "$tmp/pkg-config.log" "$tmp/deps.log"
}

# --- 1. make run --------------------------------------------------------------
reset
# setsid: make and everything it starts get a process group of their own, which
# stop_run ends. The wrapper shell leads it and records make's status.
(
    cd "$tree"
    fresh_env
    exec setsid sh -c 'echo $$ >"$1/run.pgid"; exec >"$1/run.log" 2>&1; make run; echo $? >"$1/run.rc"' \
        sh "$tmp" </dev/null
) &
i=0
while [ ! -s "$tmp/run.pgid" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -s "$tmp/run.pgid" ] || fail "make run did not start"
pgid=$(cat "$tmp/run.pgid")
port=""
i=0
while [ $i -lt $((timeout_s * 5)) ]; do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\) .*|\1|p' "$tmp/run.log" | head -n 1)
    [ -n "$port" ] && break
    [ -e "$tmp/run.rc" ] && break
    sleep 0.2
    i=$((i + 1))
done
if [ -z "$port" ]; then
    if [ -e "$tmp/run.rc" ]; then
        why="make run exited with status $(cat "$tmp/run.rc") before orproxy listened"
    else
        why="orproxy did not print its listening line within ${timeout_s} s"
    fi
    fail "$why; the end of its output:
$(grep -E 'undefined reference|error:|\*\*\*' "$tmp/run.log" | head -n 5)
$(tail -n 15 "$tmp/run.log")"
fi
check_hidden "make run" ""
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/healthz") ||
    fail "make run: GET /healthz on 127.0.0.1:$port failed"
[ "$status" = 200 ] || fail "make run: GET /healthz answered $status"
stop_run
ok "first make run linked orproxy, which listened on 127.0.0.1:$port and answered /healthz 200"

# --- 2. make check's build step ------------------------------------------------
reset
rc=0
(cd "$tree" && fresh_env && exec make check CHECK_STEPS=check-build) >"$tmp/check.log" 2>&1 </dev/null || rc=$?
[ "$rc" -eq 0 ] || fail "make check CHECK_STEPS=check-build exited $rc; the end of its output:
$(grep -E 'undefined reference|error:|\*\*\*' "$tmp/check.log" | head -n 5)
$(tail -n 15 "$tmp/check.log")"
check_hidden "make check" " --test"
for f in build/orproxy build/fake_openrouter build/tests/test_keys; do
    [ -x "$tree/$f" ] || fail "make check's build step did not produce $f"
done
ls "$tree"/build/tests/test_* >/dev/null 2>&1 || fail "make check's build step built no test programs"
"$tree/build/orproxy" --version >/dev/null || fail "the orproxy make check built does not run"
(cd "$tree" && CK_VERBOSITY=silent build/tests/test_keys) >"$tmp/units.log" 2>&1 ||
    fail "build/tests/test_keys from make check's build step failed:
$(tail -n 10 "$tmp/units.log")"
ok "first make check linked its build step ($(ls "$tree"/build/tests | wc -l) test programs, orproxy, the fake upstream)"
