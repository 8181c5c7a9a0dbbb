#!/bin/sh
# `make install` and `make uninstall` into a scratch DESTDIR:
#
#  - install puts the binary, both units, the two man pages and the example
#    configuration where orproxy(8) says, with ExecStart= naming the installed
#    binary, and nothing else;
#  - the installed units are the checked ones (tests/service/check_units.sh)
#    with only the binary's path changed;
#  - a second install keeps a configuration the administrator changed;
#  - uninstall removes everything install added except the configuration.
#
# Also installs with PREFIX=/usr, where the units go to /lib/systemd/system
# and ExecStart= must be rewritten to /usr/bin/orproxy.
#
# usage: tests/service/check_install.sh [BUILD]     (default: build)
set -eu

cd "$(dirname "$0")/../.."
build=${1:-build}
make=${MAKE:-make}

fail() {
    printf 'check_install: FAIL: %s\n' "$*" >&2
    exit 1
}
ok() {
    printf 'check_install: ok: %s\n' "$*"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# run_make LOG ARGS...: make in this checkout, output kept in LOG.
run_make() {
    log=$1
    shift
    if ! "$make" --no-print-directory BUILD="$build" "$@" >"$log" 2>&1; then
        cat "$log" >&2
        fail "make $* failed"
    fi
}

# mode FILE: octal permission bits.
mode() {
    stat -c %a "$1"
}

# only_files ROOT FILE...: ROOT holds exactly these regular files (paths under ROOT).
only_files() {
    root=$1
    shift
    (cd "$root" && find . -type f -o -type l) | sed 's|^\./|/|' | sort >"$tmp/have"
    printf '%s\n' "$@" | sort >"$tmp/want"
    if ! cmp -s "$tmp/have" "$tmp/want"; then
        diff "$tmp/want" "$tmp/have" >&2 || true
        return 1
    fi
}

# --- install, PREFIX=/usr/local ----------------------------------------------
dest=$tmp/root
mkdir "$dest"
run_make "$tmp/install1.log" install DESTDIR="$dest" PREFIX=/usr/local

bin=/usr/local/bin/orproxy
unit=/usr/local/lib/systemd/system/orproxy.service
sock=/usr/local/lib/systemd/system/orproxy.socket
man=/usr/local/share/man/man8/orproxy.8
man5=/usr/local/share/man/man5/orproxy.conf.5
conf=/etc/orproxy/orproxy.conf

only_files "$dest" "$bin" "$unit" "$sock" "$man" "$man5" "$conf" ||
    fail "make install did not install exactly the binary, the two units, the two man pages and the configuration (- missing, + extra)"

[ -x "$dest$bin" ] || fail "$bin is not executable"
cmp -s "$dest$bin" "$build/orproxy" || fail "$bin differs from $build/orproxy"
[ "$(mode "$dest$bin")" = 755 ] || fail "$bin has mode $(mode "$dest$bin"), expected 755"
for f in "$unit" "$sock" "$man" "$man5"; do
    [ "$(mode "$dest$f")" = 644 ] || fail "$f has mode $(mode "$dest$f"), expected 644"
done
grep -qx "ExecStart=$bin -c /etc/orproxy/orproxy.conf" "$dest$unit" ||
    fail "$unit: ExecStart= is not '$bin -c /etc/orproxy/orproxy.conf': $(grep '^ExecStart=' "$dest$unit")"
cmp -s "$dest$unit" systemd/orproxy.service || fail "$unit differs from systemd/orproxy.service"
cmp -s "$dest$sock" systemd/orproxy.socket || fail "$sock differs from systemd/orproxy.socket"
cmp -s "$dest$man" doc/orproxy.8 || fail "$man differs from doc/orproxy.8"
cmp -s "$dest$man5" doc/orproxy.conf.5 || fail "$man5 differs from doc/orproxy.conf.5"
ok "PREFIX=/usr/local: binary, units (ExecStart=$bin), man pages and configuration, nothing else"

# The configuration: readable by the service's dynamic user, state in /var/lib.
[ "$(mode "$dest$conf")" = 644 ] || fail "$conf has mode $(mode "$dest$conf"), expected 644"
grep -Eq '^state_dir = "/var/lib/orproxy";' "$dest$conf" ||
    fail "$conf does not set state_dir = \"/var/lib/orproxy\""
rc=0
out=$(
    unset OPENROUTER_API_KEY CREDENTIALS_DIRECTORY STATE_DIRECTORY
    "$dest$bin" -t -c "$dest$conf" 2>&1
) || rc=$?
[ "$rc" -eq 0 ] || fail "the installed binary rejects the installed configuration (exit $rc): $out"
grep -q "installing $dest$conf" "$tmp/install1.log" || fail "make install did not say it installed $conf"
ok "$conf: mode 644, state_dir /var/lib/orproxy, orproxy -t accepts it"

# --- install again over a changed configuration ------------------------------
echo '# changed by the administrator' >>"$dest$conf"
cp "$dest$conf" "$tmp/conf.changed"
run_make "$tmp/install2.log" install DESTDIR="$dest" PREFIX=/usr/local
cmp -s "$dest$conf" "$tmp/conf.changed" || fail "a second make install overwrote the changed $conf"
grep -q "keeping existing $dest$conf" "$tmp/install2.log" ||
    fail "a second make install did not say it kept $conf:
$(cat "$tmp/install2.log")"
only_files "$dest" "$bin" "$unit" "$sock" "$man" "$man5" "$conf" ||
    fail "a second make install left other files (- missing, + extra)"
ok "a second make install keeps the changed configuration and says so"

# --- uninstall ---------------------------------------------------------------
run_make "$tmp/uninstall.log" uninstall DESTDIR="$dest" PREFIX=/usr/local
only_files "$dest" "$conf" ||
    fail "make uninstall should leave only $conf (- missing, + extra)"
cmp -s "$dest$conf" "$tmp/conf.changed" || fail "make uninstall changed $conf"
ok "make uninstall removes the binary, units and man pages, and keeps $conf"

# --- PREFIX=/usr --------------------------------------------------------------
dest=$tmp/root-usr
mkdir "$dest"
run_make "$tmp/install-usr.log" install DESTDIR="$dest" PREFIX=/usr
only_files "$dest" /usr/bin/orproxy /lib/systemd/system/orproxy.service \
    /lib/systemd/system/orproxy.socket /usr/share/man/man8/orproxy.8 \
    /usr/share/man/man5/orproxy.conf.5 "$conf" ||
    fail "make install PREFIX=/usr did not install the expected files (- missing, + extra)"
grep -qx 'ExecStart=/usr/bin/orproxy -c /etc/orproxy/orproxy.conf' "$dest/lib/systemd/system/orproxy.service" ||
    fail "PREFIX=/usr: ExecStart= was not rewritten to /usr/bin/orproxy: $(grep '^ExecStart=' "$dest/lib/systemd/system/orproxy.service")"
sed 's|/usr/local/bin/orproxy|/usr/bin/orproxy|g' systemd/orproxy.service >"$tmp/unit.usr"
if ! cmp -s "$dest/lib/systemd/system/orproxy.service" "$tmp/unit.usr"; then
    diff "$tmp/unit.usr" "$dest/lib/systemd/system/orproxy.service" >&2 || true
    fail "PREFIX=/usr: the installed unit differs from systemd/orproxy.service by more than the binary's path"
fi
run_make "$tmp/uninstall-usr.log" uninstall DESTDIR="$dest" PREFIX=/usr
only_files "$dest" "$conf" || fail "make uninstall PREFIX=/usr should leave only $conf (- missing, + extra)"
ok "PREFIX=/usr: units in /lib/systemd/system with ExecStart=/usr/bin/orproxy; uninstall leaves only $conf"
