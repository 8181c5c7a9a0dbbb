#!/bin/bash
# pgserver.sh - a throwaway PostgreSQL for the tests (make test-pg).
#
#   pgserver.sh start DIR    initdb a new cluster in DIR (which must not exist),
#                            start it on a free 127.0.0.1 port, write DIR/env
#   pgserver.sh stop DIR     stop the server (fast), keep the cluster
#   pgserver.sh resume DIR   start the stopped cluster again, same port
#   pgserver.sh destroy DIR  stop the server if it runs, remove DIR
#
# The server listens on 127.0.0.1 only, its unix socket is in DIR, and every
# connection (TCP and socket) authenticates with a SCRAM password, so the
# password-file and .pgpass paths of the client are exercised.  As root it
# runs as nobody (initdb and postgres refuse root); DIR is made for that user.
# DIR/env holds, as shell assignments, what the tests need:
#   ORP_PG_URL            URI of the test role's database, without password
#   ORP_PG_PASSWORD_FILE  a file holding only the test role's password
#   ORP_PG_PASSFILE       a .pgpass file (mode 0600) for both roles
#   ORP_PG_ADMIN_URL      URI of the superuser (password in ORP_PG_PASSFILE)
#   ORP_PG_ADMIN_PASSWORD_FILE  the superuser's password alone
#   ORP_PG_PORT, ORP_PG_DIR
# bash, not sh: the retry loop uses $RANDOM.
set -eu

fail() {
    printf 'pgserver: %s\n' "$*" >&2
    exit 1
}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] ||
    fail "no PostgreSQL server under /usr/lib/postgresql/*/bin (make deps-test installs postgresql)"

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || fail "usage: pgserver.sh start|stop|resume|destroy DIR"

if [ "$(id -u)" -eq 0 ]; then
    runas() { runuser -u nobody -- "$@"; }
else
    runas() { "$@"; }
fi

pgctl_start() {
    # -w waits until the server accepts connections; -t bounds that wait.
    runas "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $1 -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
        start >/dev/null
}

case $cmd in
start)
    [ ! -e "$dir" ] || fail "$dir exists"
    runas test -x "$(dirname "$dir")" ||
        fail "the server's user cannot enter $(dirname "$dir") (set TMPDIR to a directory it can)"
    mkdir -m 0700 "$dir"
    [ "$(id -u)" -ne 0 ] || chown nobody: "$dir"
    superpw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    testpw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$superpw" >"$dir/super.password"
    [ "$(id -u)" -ne 0 ] || chown nobody: "$dir/super.password"
    runas "$bindir/initdb" -D "$dir/data" -U orp_super --pwfile="$dir/super.password" \
        -A scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
        fail "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    port=""
    for _ in 1 2 3 4 5 6 7 8; do
        p=$((20000 + RANDOM % 40000))
        if pgctl_start "$p" 2>>"$dir/start.err"; then
            port=$p
            break
        fi
    done
    [ -n "$port" ] || fail "the server did not start: $(tail -n 5 "$dir/server.log" 2>/dev/null)"
    echo "$port" >"$dir/port"
    # The client files belong to whoever runs the tests (libpq wants .pgpass 0600).
    printf '%s\n' "$testpw" >"$dir/test.password"
    chmod 0600 "$dir/test.password"
    {
        printf '127.0.0.1:%s:*:orp_super:%s\n' "$port" "$superpw"
        printf '127.0.0.1:%s:*:orp_test:%s\n' "$port" "$testpw"
    } >"$dir/pgpass"
    chmod 0600 "$dir/pgpass"
    PGPASSFILE=$dir/pgpass "$bindir/psql" -X -q -v ON_ERROR_STOP=1 \
        "postgresql://orp_super@127.0.0.1:$port/postgres" >/dev/null <<SQL ||
CREATE ROLE orp_test LOGIN PASSWORD '$testpw' CREATEDB;
CREATE DATABASE orp_test OWNER orp_test;
SQL
        fail "could not create the test role"
    cat >"$dir/env" <<ENV
ORP_PG_DIR=$dir
ORP_PG_PORT=$port
ORP_PG_URL=postgresql://orp_test@127.0.0.1:$port/orp_test
ORP_PG_PASSWORD_FILE=$dir/test.password
ORP_PG_PASSFILE=$dir/pgpass
ORP_PG_ADMIN_URL=postgresql://orp_super@127.0.0.1:$port/postgres
ORP_PG_ADMIN_PASSWORD_FILE=$dir/super.password
ENV
    cat "$dir/env"
    ;;
stop)
    runas "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
resume)
    pgctl_start "$(cat "$dir/port")" || fail "the server did not start again"
    ;;
destroy)
    if [ -f "$dir/data/postmaster.pid" ]; then
        runas "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    fail "unknown command $cmd"
    ;;
esac
