#!/bin/sh
# The Dockerfile, checked without a Docker engine against the binary it ships:
#
#  - every shared library `ldd BINARY` loads is installed in the runtime stage:
#    it belongs (dpkg -S) to a package that stage installs, to a dependency apt
#    pulls in with one, or to the debian:12-slim base (Essential packages and
#    apt, with their dependencies: that is how the base is built);
#  - each library the binary names itself (NEEDED) comes from a package the
#    runtime stage lists by name (or from the base: libc6), and every listed
#    package is needed: it owns such a library, or is ca-certificates (HTTPS to
#    OpenRouter), or a tool the HEALTHCHECK runs;
#  - the build stage installs the development package (the unversioned .so)
#    of each of those libraries, and the files it copies are enough to build;
#  - the runtime stage runs as a non-root USER, has a HEALTHCHECK whose tool
#    exists in the image, declares VOLUME /var/lib/orproxy, and copies in only
#    the binary and conf/orproxy.docker.conf, which `orproxy -t` accepts.
#
# Package relations come from this machine's dpkg and apt-cache: it is Debian
# 12, like both images.
#
# usage: tests/service/check_dockerfile.sh [BINARY]     (default: build/orproxy)
set -eu

cd "$(dirname "$0")/../.."
bin=${1:-build/orproxy}
dockerfile=Dockerfile
conf=conf/orproxy.docker.conf

fail() {
    printf 'check_dockerfile: FAIL: %s\n' "$*" >&2
    exit 1
}
ok() {
    printf 'check_dockerfile: ok: %s\n' "$*"
}

for tool in ldd readelf dpkg dpkg-query apt-cache awk; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed (this check runs on Debian)"
done
[ -x "$bin" ] || fail "$bin is not built (run: make $bin)"
[ -f "$dockerfile" ] || fail "no $dockerfile"
[ -f "$conf" ] || fail "no $conf"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# --- the Dockerfile as instructions -----------------------------------------
# One line per instruction: "STAGE<TAB>INSTRUCTION ARGS", with continuation
# lines joined and comment lines dropped (as Docker does); stages count from 1.
awk '
    /^[ \t]*#/ { next }
    { line = line $0 }
    /\\[ \t]*$/ { sub(/\\[ \t]*$/, "", line); line = line " "; next }
    {
        sub(/^[ \t]+/, "", line)
        if (line != "") {
            if (toupper(line) ~ /^FROM[ \t]/) stage++
            print stage "\t" line
        }
        line = ""
    }
' "$dockerfile" >"$tmp/instr"
nstages=$(awk -F'\t' 'END { print $1 + 0 }' "$tmp/instr")
[ "$nstages" -ge 2 ] || fail "$dockerfile has $nstages stage(s); expected a build stage and a runtime stage"
awk -F'\t' -v s="$nstages" '$1 == s { print $2 }' "$tmp/instr" >"$tmp/runtime"
awk -F'\t' '$1 == 1 { print $2 }' "$tmp/instr" >"$tmp/build"

# Instructions of one stage file whose keyword is $2 (case-insensitive), keyword removed.
instr() {
    awk -v k="$2" 'toupper($1) == k { sub(/^[^ \t]+[ \t]+/, ""); print }' "$1"
}

# Packages named by `apt-get install` in a stage's RUN instructions.
apt_packages() {
    instr "$1" RUN | awk '{
        n = split($0, seg, /&&|\|\||;/)
        for (i = 1; i <= n; i++) {
            m = split(seg[i], w, /[ \t]+/)
            apt = 0; on = 0
            for (j = 1; j <= m; j++) {
                if (w[j] == "") continue
                if (on && w[j] !~ /^-/) { sub(/=.*/, "", w[j]); print w[j] }
                if (w[j] == "apt-get" || w[j] == "apt") apt = 1
                else if (apt && w[j] == "install") on = 1
            }
        }
    }' | sort -u
}

base=$(instr "$tmp/runtime" FROM | awk '{ print $1 }')
[ "$base" = "debian:12-slim" ] || fail "the runtime stage starts FROM $base, expected debian:12-slim"
build_base=$(instr "$tmp/build" FROM | awk '{ print $1 }')
[ "$build_base" = "debian:12" ] || fail "the build stage starts FROM $build_base, expected debian:12"

apt_packages "$tmp/runtime" >"$tmp/rt.list"
apt_packages "$tmp/build" >"$tmp/build.list"
[ -s "$tmp/rt.list" ] || fail "the runtime stage installs no packages with apt-get install"
[ -s "$tmp/build.list" ] || fail "the build stage installs no packages with apt-get install"
ok "runtime stage installs: $(tr '\n' ' ' <"$tmp/rt.list")"

# Every name is a package apt can install (one apt-cache call: each reads the lists).
# shellcheck disable=SC2046
apt-cache policy $(cat "$tmp/rt.list" "$tmp/build.list") 2>/dev/null |
    awk '/^[^ ]/ { sub(/:$/, ""); p = $0 } /^  Candidate: / && $2 != "(none)" { print p }' |
    sort -u >"$tmp/known"
while read -r p; do
    grep -qxF "$p" "$tmp/known" || fail "the runtime stage installs $p, which apt cannot install"
done <"$tmp/rt.list"
while read -r p; do
    grep -qxF "$p" "$tmp/known" || fail "the build stage installs $p, which apt cannot install"
done <"$tmp/build.list"

# --- package sets -------------------------------------------------------------
# closure FILE-OF-PACKAGES: the packages and everything they depend on, the way
# `apt-get install --no-install-recommends` pulls them in.
closure() {
    # shellcheck disable=SC2046
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances $(cat "$1") 2>/dev/null |
        awk '/^[^ <]/ { print $1 }' | sort -u
}
dpkg-query -W -f='${Package} ${Essential}\n' | awk '$2 == "yes" { print $1 }' >"$tmp/essential"
echo apt >>"$tmp/essential"
closure "$tmp/essential" >"$tmp/base.set"
grep -qx libc6 "$tmp/base.set" || fail "could not work out the base image's packages (libc6 missing)"
closure "$tmp/rt.list" >"$tmp/rt.set"
closure "$tmp/build.list" >"$tmp/build.set"

in_set() { grep -qxF "$1" "$2"; }

# Which package owns which file. dpkg knows a path under one name only, and
# Debian 12 merges /lib into /usr/lib, so every path is asked as given and
# resolved, each with and without /usr. One dpkg-query call for all of them
# (each call reads every file list). Fills $tmp/owners: "PATH PACKAGE".
spellings() {
    for p in "$1" "$(readlink -f "$1")"; do
        echo "$p"
        case $p in
        /usr/*) echo "${p#/usr}" ;;
        *) echo "/usr$p" ;;
        esac
    done
}
find_owners() {
    sort -u "$tmp/paths" | xargs dpkg-query -S 2>/dev/null | grep -v '^diversion' |
        awk '{ pkg = $1; sub(/:$/, "", pkg); sub(/:.*/, "", pkg); print $2, pkg }' >"$tmp/owners" || true
}
# pkg_of PATH: the owning package, from $tmp/owners.
pkg_of() {
    for q in $(spellings "$1"); do
        r=$(awk -v q="$q" '$1 == q { print $2; exit }' "$tmp/owners")
        if [ -n "$r" ]; then
            echo "$r"
            return 0
        fi
    done
    return 1
}
# dev_so PATH NAME: where the link-time name of library NAME (libfoo.so) lives.
dev_so() {
    echo "$(dirname "$(readlink -f "$1")")/$(echo "$2" | sed 's/\.so\..*$/.so/')"
}

# --- the binary's libraries --------------------------------------------------
readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' >"$tmp/needed"
[ -s "$tmp/needed" ] || fail "readelf finds no NEEDED libraries in $bin"
ldd "$bin" >"$tmp/ldd" || fail "ldd $bin failed"
if grep -q 'not found' "$tmp/ldd"; then
    fail "ldd $bin: $(grep 'not found' "$tmp/ldd" | tr -s ' \t' ' ')"
fi

: >"$tmp/paths"
while read -r name arrow path rest; do
    [ "$arrow" = "=>" ] || path=$name
    [ -e "$path" ] || continue
    spellings "$path" >>"$tmp/paths"
    spellings "$(dev_so "$path" "$name")" >>"$tmp/paths"
done <"$tmp/ldd"
find_owners

: >"$tmp/used"
nlibs=0
while read -r name arrow path rest; do
    case $name in
    linux-vdso.so.* | linux-gate.so.*)
        continue # provided by the kernel, not a file
        ;;
    esac
    [ "$arrow" = "=>" ] || path=$name # the dynamic loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
    [ -e "$path" ] || fail "ldd names $path, which does not exist"
    pkg=$(pkg_of "$path") || fail "no package owns $path (dpkg -S)"
    nlibs=$((nlibs + 1))
    if grep -qxF "$name" "$tmp/needed"; then
        # Named by the binary itself: the runtime stage must list its package,
        # unless the base image has it.
        if in_set "$pkg" "$tmp/rt.list"; then
            echo "$pkg" >>"$tmp/used"
            how="listed in the runtime stage"
        elif in_set "$pkg" "$tmp/base.set"; then
            how="in the debian:12-slim base (needed by its Essential packages)"
        else
            fail "$bin needs $name ($pkg), which the runtime stage does not install by name"
        fi
        echo "  NEEDED $name -> $pkg: $how"

        # The build stage must have the development .so to link against.
        dev=$(dev_so "$path" "$name")
        devpkg=$(pkg_of "$dev") ||
            fail "no package owns $dev (the link-time name of $name) on this machine"
        in_set "$devpkg" "$tmp/build.list" || in_set "$devpkg" "$tmp/build.set" ||
            in_set "$devpkg" "$tmp/base.set" ||
            fail "the build stage does not install $devpkg (it provides $dev for $name)"
    else
        if in_set "$pkg" "$tmp/rt.list"; then
            how="listed in the runtime stage"
        elif in_set "$pkg" "$tmp/rt.set"; then
            how="a dependency of a listed package"
        elif in_set "$pkg" "$tmp/base.set"; then
            how="in the debian:12-slim base"
        else
            fail "$name ($path) comes from $pkg, which the runtime stage does not install"
        fi
        echo "  $name -> $pkg: $how"
    fi
done <"$tmp/ldd"
ok "all $nlibs libraries ldd lists for $bin are in the runtime image"

# --- nothing extra -----------------------------------------------------------
hc=$(instr "$tmp/runtime" HEALTHCHECK)
while read -r p; do
    if grep -qxF "$p" "$tmp/used"; then continue; fi
    case $p in
    ca-certificates) continue ;;
    curl | wget)
        case $hc in *"$p"*) continue ;; esac
        ;;
    esac
    fail "the runtime stage installs $p, which no library of $bin comes from"
done <"$tmp/rt.list"
in_set ca-certificates "$tmp/rt.list" || fail "the runtime stage must install ca-certificates (HTTPS to OpenRouter)"
ok "the runtime stage installs nothing beyond those libraries and ca-certificates"

# --- the runtime stage -------------------------------------------------------
user=$(instr "$tmp/runtime" USER | tail -n 1)
case ${user%%:*} in
"") fail "the runtime stage has no USER: orproxy would run as root" ;;
root | 0) fail "the runtime stage runs as USER $user" ;;
esac
ok "runs as USER $user"

[ -n "$hc" ] || fail "the runtime stage has no HEALTHCHECK"
case $hc in
NONE | none) fail "the runtime stage disables the HEALTHCHECK" ;;
esac
case $hc in
*/bin/bash* | *"bash "*)
    in_set bash "$tmp/base.set" || fail "the HEALTHCHECK runs bash, which the base image lacks" ;;
*curl*) in_set curl "$tmp/rt.list" || fail "the HEALTHCHECK runs curl, which the runtime stage does not install" ;;
*wget*) in_set wget "$tmp/rt.list" || fail "the HEALTHCHECK runs wget, which the runtime stage does not install" ;;
*) fail "cannot tell which tool the HEALTHCHECK runs: $hc" ;;
esac
port=$(awk '/^[ \t]*listen[ \t]*=/ { g = 1 } g && /port[ \t]*=/ { gsub(/[^0-9]/, ""); print; exit }' "$conf")
[ -n "$port" ] || fail "$conf sets no listen.port"
case $hc in
*"/$port"* | *":$port"*) ;;
*) fail "the HEALTHCHECK does not probe port $port, where $conf listens" ;;
esac
case $hc in
*/healthz* | */readyz*) ;;
*) fail "the HEALTHCHECK asks neither /healthz nor /readyz" ;;
esac
ok "HEALTHCHECK probes port $port with a tool the image has"

instr "$tmp/runtime" VOLUME | tr -d '[]",' | tr '\t' ' ' | tr -s ' ' '\n' | grep -qx /var/lib/orproxy ||
    fail "the runtime stage does not declare VOLUME /var/lib/orproxy"
ok "VOLUME /var/lib/orproxy"

[ -z "$(instr "$tmp/runtime" ADD)" ] || fail "the runtime stage uses ADD; only COPY of the binary and the config is expected"
instr "$tmp/runtime" COPY >"$tmp/copies"
[ "$(wc -l <"$tmp/copies")" -eq 2 ] ||
    fail "the runtime stage should COPY exactly the binary and the config, but has:
$(cat "$tmp/copies")"
grep -Eq '^--from=[^ ]+ +[^ ]*build/orproxy +/usr/local/bin/orproxy$' "$tmp/copies" ||
    fail "the runtime stage does not COPY --from=<build> .../build/orproxy /usr/local/bin/orproxy"
grep -Eq "^$conf +/etc/orproxy/orproxy.conf\$" "$tmp/copies" ||
    fail "the runtime stage does not COPY $conf /etc/orproxy/orproxy.conf"
ok "the runtime stage copies only the binary and $conf"

instr "$tmp/runtime" ENTRYPOINT | grep -q /usr/local/bin/orproxy || fail "ENTRYPOINT does not run /usr/local/bin/orproxy"
instr "$tmp/runtime" CMD | grep -q /etc/orproxy/orproxy.conf || fail "CMD does not pass /etc/orproxy/orproxy.conf"

# --- the container's configuration -------------------------------------------
grep -Eq '^[ \t]*address[ \t]*=[ \t]*"0\.0\.0\.0"' "$conf" ||
    fail "$conf must listen on 0.0.0.0 (a published port reaches the container's own address)"
grep -Eq '^[ \t]*state_dir[ \t]*=[ \t]*"/var/lib/orproxy"' "$conf" || fail "$conf must set state_dir = \"/var/lib/orproxy\""
for f in "$conf" "$dockerfile"; do
    grep -q '127\.0\.0\.1:8080:8080' "$f" || fail "$f must tell to publish on loopback only (-p 127.0.0.1:8080:8080)"
done
# The image's config needs client keys from a mounted clients.conf: check it
# is accepted with one (include path pointed at a temp file) and refused,
# naming the missing file, without.
tmpc=$(mktemp -d)
"$bin" key new ci-check | grep '^  {' > "$tmpc/stanza"
printf 'clients = (\n%s\n);\n' "$(cat "$tmpc/stanza")" > "$tmpc/clients.conf"
sed "s|/etc/orproxy/clients.conf|$tmpc/clients.conf|" "$conf" > "$tmpc/with.conf"
sed "s|/etc/orproxy/clients.conf|$tmpc/missing.conf|" "$conf" > "$tmpc/without.conf"
rc=0
out=$(
    unset OPENROUTER_API_KEY CREDENTIALS_DIRECTORY STATE_DIRECTORY
    "$bin" -t -c "$tmpc/with.conf" 2>&1
) || rc=$?
[ "$rc" -eq 0 ] || { rm -rf "$tmpc"; fail "$conf with a mounted clients.conf: orproxy -t exited $rc: $out"; }
ok "$conf: orproxy -t accepts it with a mounted clients.conf (auth.mode = keys on 0.0.0.0)"
rc=0
out=$("$bin" -t -c "$tmpc/without.conf" 2>&1) || rc=$?
rm -rf "$tmpc"
if [ "$rc" -eq 2 ] && printf '%s\n' "$out" | grep -q 'cannot open include file'; then
    ok "$conf: without clients.conf orproxy refuses to start (FILE:LINE: cannot open include file)"
else
    fail "$conf without clients.conf: expected exit 2 naming the file, got $rc: $out"
fi

# --- the build stage builds from what it copies --------------------------------
# Copy what the build stage's COPY instructions name into an empty directory
# and run its make there: a file the build needs but the Dockerfile forgets
# to copy shows up here, not in someone's docker build.
workdir=$(instr "$tmp/build" WORKDIR | tail -n 1)
[ -n "$workdir" ] || fail "the build stage has no WORKDIR"
mkdir -p "$tmp/ctx"
instr "$tmp/build" COPY | while read -r src dst extra; do
    case $src in --*) fail "the build stage COPY uses options ($src); this check does not follow them" ;; esac
    [ -z "$extra" ] || fail "the build stage COPY has more than one source: $src $dst $extra"
    [ -e "$src" ] || fail "the build stage copies $src, which does not exist"
    case $dst in /*) fail "the build stage copies to an absolute path ($dst); expected paths under WORKDIR" ;; esac
    # Docker's rules: a directory's contents go into the destination; a file
    # goes into a destination ending in / (or .), else becomes that name.
    if [ -d "$src" ]; then
        mkdir -p "$tmp/ctx/$dst" && cp -R "$src/." "$tmp/ctx/$dst"
    else
        case $dst in
        */ | .) mkdir -p "$tmp/ctx/$dst" && cp "$src" "$tmp/ctx/$dst" ;;
        *) mkdir -p "$(dirname "$tmp/ctx/$dst")" && cp "$src" "$tmp/ctx/$dst" ;;
        esac
    fi
done
make_cmd=$(instr "$tmp/build" RUN | grep -E '(^| )make ' | tail -n 1)
[ -n "$make_cmd" ] || fail "the build stage does not RUN make"
case $make_cmd in *build/orproxy*) ;; *) fail "the build stage's make does not build build/orproxy: $make_cmd" ;; esac
rc=0
(cd "$tmp/ctx" && VERSION=check-dockerfile MAKEFLAGS="-j$(nproc 2>/dev/null || echo 2)" sh -c "$make_cmd") >"$tmp/make.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "the build stage's \"$make_cmd\" fails on the files it copies:
$(tail -n 20 "$tmp/make.log")"
[ -x "$tmp/ctx/build/orproxy" ] || fail "the build stage's make did not produce build/orproxy"
ok "the build stage's files (COPY into $workdir) are enough for: $make_cmd"
