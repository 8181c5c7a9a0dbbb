#!/bin/sh
# Installs the Debian packages orproxy needs to build and test, if missing.
# Called by `make deps` (`make run`) and `make deps-test` (`make check`, with
# --test: also what the tests need; with --bench: what make bench needs).  Quiet when
# everything is already there.
set -eu
PKGS="gcc make pkg-config libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcjson-dev \
libconfig-dev check libsqlite3-dev libsystemd-dev libpq-dev"
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    # The benchmark (make bench; make check runs its smoke): wrk and nginx
    # as the load tool and the reference proxy, python3 for the driver.
    command -v wrk >/dev/null 2>&1 || PKGS="$PKGS wrk"
    [ -x /usr/sbin/nginx ] || PKGS="$PKGS nginx-light"
    command -v python3 >/dev/null 2>&1 || PKGS="$PKGS python3"
    # The TLS upstream (bench, tests/e2e/test_tls.c): a throwaway CA and a
    # certificate for 127.0.0.1 made with the openssl CLI.
    command -v openssl >/dev/null 2>&1 || PKGS="$PKGS openssl"
fi
if [ "${1:-}" = "--test" ]; then
    # The SDK test runs the official OpenAI Node SDK: it needs node and npm.
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
    command -v curl >/dev/null 2>&1 || PKGS="$PKGS curl"
    # The console's browser test (tests/ui/): Debian's chromium, driven
    # headless by puppeteer-core; the sqlite3 CLI reads the ledger it checks.
    command -v chromium >/dev/null 2>&1 || PKGS="$PKGS chromium"
    command -v sqlite3 >/dev/null 2>&1 || PKGS="$PKGS sqlite3"
    # promtool validates /metrics; systemd-analyze/-socket-activate the units.
    command -v promtool >/dev/null 2>&1 || PKGS="$PKGS prometheus"
    command -v systemd-socket-activate >/dev/null 2>&1 || PKGS="$PKGS systemd"
    # make fuzz-regress / fuzz-smoke: clang-14 and its libFuzzer runtime
    # (libclang_rt.fuzzer-x86_64.a is in libclang-rt-14-dev).
    PKGS="$PKGS clang libclang-rt-14-dev"
    # make test-pg (tests/pg/): a throwaway PostgreSQL server started with
    # initdb and pg_ctl from /usr/lib/postgresql/*/bin, and psql.
    PKGS="$PKGS postgresql"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "orproxy: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "orproxy: not root and no sudo; please run: apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
