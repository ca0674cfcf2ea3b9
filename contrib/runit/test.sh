#!/usr/bin/env bash
# End-to-end test of contrib/runit under a real runsv (Debian's runit).
#
# The shipped run and log/run are copied into a temporary service directory
# with only the user (nobody), the paths and --size (64K, for many
# rotations) substituted; ./run starts a producer that writes numbered
# lines, one write(2) per line, and continues its numbering from a counter
# file across restarts. While it writes, the service is restarted with
# `sv restart` and the log service with `sv restart SVC/log`, alternately.
# Then the service is taken down and runsv told to exit, which closes the
# pipe so logpipe sees end of input. Checks: the segments in order, then
# current, equal byte for byte the lines 1..last the producer wrote; every
# segment is a valid gzip of at most 64 KiB of whole lines; the pipe, held
# by runsv, is the same one for every producer and every logpipe; each
# logpipe leaves quietly on runsv's TERM.
#
# Needs root (chpst -u, install -o). Run from anywhere; LOGPIPE overrides
# the binary under test.
set -euo pipefail

name=runit
restarts=5
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
runsv_pid=

on_fail() {
    show_output_and_starts
    if [ -s "$tmp/runsv.err" ]; then
        echo "--- runsv stderr (logpipe's messages):"
        tail -n 20 "$tmp/runsv.err"
    fi
    if [ -n "$runsv_pid" ]; then
        sv status "$tmp/svc" "$tmp/svc/log" 2>&1 || true
    fi
}

# Every process this test started runs with its working directory in $tmp
# (runsv chdirs to the service directory, ./run and ./log/run inherit it),
# so kill_leftovers finds them all.
cleanup() {
    local i
    if [ -n "$runsv_pid" ] && kill -0 "$runsv_pid" 2>/dev/null; then
        kill -TERM "$runsv_pid" # runsv treats TERM as `sv exit`
        for ((i = 0; i < 50; i++)); do
            kill -0 "$runsv_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if [ -n "$tmp" ]; then
        kill_leftovers
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "must run as root (the recipe uses chpst -u and install -o)"

need runsv runit
need sv runit
need chpst runit
need_for_nobody
find_logpipe

tmp=$(mktemp -d)
svc=$tmp/svc
state=$tmp/state
logdir=$tmp/logs/app
# The service directory, and logpipe and the producer in $tmp/bin, all
# for nobody; the producer stops between two lines on TERM.
prepare_for_nobody "$svc" --rate 2000 --graceful 0

# The recipe as shipped (run, log/run), with only the users (chpst -u nobody),
# the paths and --size 64K substituted.
copy_recipe contrib/runit "chpst -u" "$svc"

pid_of() { # pid_of SERVICEDIR: the pid runsv runs there, or nothing
    cat "$1/supervise/pid" 2>/dev/null || true
}
stopped() { ! kill -0 "$runsv_pid" 2>/dev/null; }

runsv "$svc" </dev/null >/dev/null 2>"$tmp/runsv.err" &
runsv_pid=$!
wait_for "runsv to start both services" running "$svc"
wait_for "the first 1000 lines" at_least 1000
pipe=
same_pipe "$svc"

for ((i = 1; i <= restarts; i++)); do
    # The service: a new producer on the same pipe, logpipe untouched.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log")
    sv -w 30 restart "$svc" >/dev/null || fail "sv restart $svc failed"
    wait_for "a new producer" changed "$svc" "$p"
    more_lines 500
    [ "$(pid_of "$svc/log")" = "$l" ] || fail "the log service restarted with the service"
    same_pipe "$svc"

    # The log service: TERM, logpipe writes what was in the pipe and exits
    # 0, runsv starts a new one on the same pipe; the producer never waits
    # for long and never notices.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log")
    sv -w 30 restart "$svc/log" >/dev/null || fail "sv restart $svc/log failed"
    wait_for "a new logpipe" changed "$svc/log" "$l"
    more_lines 500
    [ "$(pid_of "$svc")" = "$p" ] || fail "the service restarted with its log service"
    same_pipe "$svc"
done

# The end: the service down first, then runsv told to exit, which closes
# its end of the pipe; logpipe reads to end of input and exits 0.
sv -w 30 down "$svc" >/dev/null || fail "sv down $svc failed"
sv exit "$svc" >/dev/null || fail "sv exit $svc failed"
wait_for "runsv to exit" stopped
wait "$runsv_pid" || fail "runsv exited $?"
runsv_pid=
[ -z "$(leftovers)" ] || fail "processes left after runsv exited: $(leftovers)"

# runsv runs no log/finish, so logpipe's exit codes cannot be seen without
# wrapping it; but logpipe never exits non-zero without a message, and it
# is to say nothing at all here.
[ ! -s "$tmp/runsv.err" ] || fail "logpipe (or runsv) wrote to stderr"

# The output: every line the producer wrote, once, in order, byte for
# byte; every segment a valid gzip of whole lines, at most 64 KiB.
check "$logdir/" --state "$state" --starts $((restarts + 1)) \
    --compressed --max-size 65536 --min-segments 5

echo "PASS $name: $restarts service restarts and $restarts log restarts, one pipe" \
    "throughout, logpipe silent: $result"
