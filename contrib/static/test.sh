#!/usr/bin/env bash
# Test of the static build (contrib/build-static.sh): the binary runs in an
# empty root, as in a FROM scratch image. The root holds the binary and
# /dev/null, nothing else: no C library, no /etc/localtime, no
# /usr/share/zoneinfo, no /etc/passwd, no /proc. logpipe runs there under
# chroot with a clean environment, its input piped in, twice: with
# TZ=Europe/Berlin (a zone only the built-in database can give) and with
# TZ unset and --utc. Each run rotates (--size 64K) and compresses; the
# segments in (date, N) order, decompressed, then the active file, must be
# the input byte for byte, exit 0, with nothing on standard error.
# Needs root (chroot, mknod).
set -euo pipefail
name=static

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    find "$tmp/root" -ls 2>/dev/null | head -n 40 || true
    [ ! -s "$tmp/stderr" ] || { echo "--- standard error:"; head -n 20 "$tmp/stderr"; }
}
[ "$(id -u)" = 0 ] || fail "needs root (chroot, mknod)"
need chroot coreutils
need mknod coreutils
need gzip gzip
need python3 python3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh contrib/build-static.sh >"$tmp/path" 2>"$tmp/build.log" ||
    fail "contrib/build-static.sh failed: $(tail -n 20 "$tmp/build.log")"
static=$(cat "$tmp/path")
[ -x "$static" ] || fail "contrib/build-static.sh printed $static, which is not an executable"
chroot_bin=$(command -v chroot)

# The input: numbered lines, bytes that are not UTF-8, a NUL, CR LF, and a
# line longer than --size (one oversized segment, never a cut line).
input=$tmp/input
{
    seq 1 60000
    printf 'caf\xc3\xa9 \xff\xfe not UTF-8\0 a NUL\r\n'
    head -c 100000 /dev/zero | tr '\0' x
    echo
    seq 60001 120000
} >"$input"
want=$(sha256sum <"$input" | cut -d' ' -f1)

# empty_root: a fresh $tmp/root with the binary as /logpipe and /dev/null.
empty_root() {
    rm -rf "$tmp/root"
    mkdir -p "$tmp/root/dev"
    cp "$static" "$tmp/root/logpipe"
    mknod -m 0666 "$tmp/root/dev/null" c 1 3
}

# The root is really empty: a dynamically linked program finds no loader
# there (/bin/true, which every Debian has, is one).
empty_root
cp /bin/true "$tmp/root/true"
if env -i "$chroot_bin" "$tmp/root" /true 2>/dev/null; then
    fail "a dynamically linked program ran in the empty root: it is not empty"
fi

# run LABEL ENV... -- OPTION...: pipe the input to the static logpipe in a
# fresh empty root, with only ENV in its environment, and check the output.
# Sets dates to the dates in the segments' names.
run() {
    local label=$1 envs=() rc=0 sum
    shift
    while [ "$1" != -- ]; do
        envs+=("$1")
        shift
    done
    shift
    empty_root
    # shellcheck disable=SC2002 # the input comes through a pipe, as in a container
    cat "$input" | env -i "${envs[@]}" "$chroot_bin" "$tmp/root" /logpipe --size 64K "$@" /logs/ \
        2>"$tmp/stderr" || rc=$?
    [ "$rc" = 0 ] || fail "$label: logpipe exited $rc"
    [ ! -s "$tmp/stderr" ] || fail "$label: logpipe wrote to standard error"
    # Whole lines, valid gzip, no temporaries, more than one segment and
    # all compressed; the reassembled output in $tmp/output.
    check "$tmp/root/logs/" --compressed --min-segments 3 --output "$tmp/output"
    sum=$(sha256sum <"$tmp/output" | cut -d' ' -f1)
    [ "$sum" = "$want" ] || fail "$label: the output (sha256 $sum) is not the input (sha256 $want)"
    dates=$(find "$tmp/root/logs" -name 'current.*.gz' | sed 's/.*current\.\([0-9-]*\)\..*/\1/' | sort -u)
    segments=$(find "$tmp/root/logs" -name 'current.*.gz' | wc -l)
}

# dated_in ZONE BEFORE AFTER: every segment is named after a date that
# ZONE had while logpipe ran (BEFORE or AFTER, the dates at either end).
dated_in() {
    local d
    for d in $dates; do
        [ "$d" = "$2" ] || [ "$d" = "$3" ] ||
            fail "TZ=$1: a segment is dated $d, not $2 (the date in $1)"
    done
}

before=$(TZ=Europe/Berlin date +%F)
run "TZ=Europe/Berlin" TZ=Europe/Berlin --
dated_in Europe/Berlin "$before" "$(TZ=Europe/Berlin date +%F)"
berlin="$segments segments"

before=$(date -u +%F)
run "TZ unset, --utc" -- --utc
dated_in UTC "$before" "$(date -u +%F)"
echo "PASS $name: $(stat -c %s "$static") bytes, runs in an empty root: TZ=Europe/Berlin ($berlin)" \
    "and --utc ($segments segments), $(wc -c <"$input") bytes byte for byte, exit 0, no stderr"
