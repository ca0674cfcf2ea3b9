#!/usr/bin/env bash
# End-to-end test of contrib/s6 under a real s6-svscan (Debian's s6).
#
# The shipped run and log/run are copied into a service directory inside a
# temporary scan directory, with only the user (nobody), the paths and
# --size (64K, for many rotations) substituted; ./run starts a producer
# that writes numbered lines, one write(2) per line, and continues its
# numbering from a counter file across restarts. s6-svscan sees log/ and
# holds the pipe between the two; one s6-supervise runs each. While the
# producer writes, the service and the logger are restarted alternately
# with `s6-svc -r`. Then `s6-svscanctl -t` tears it all down: the service
# gets TERM, the logger reads to end of input. Checks: the segments in
# order, then current, equal byte for byte the lines 1..last the producer
# wrote; every segment is a valid gzip of at most 64 KiB of whole lines;
# the pipe is the same one for every producer and every logpipe; every
# logpipe and every producer exited 0 (s6-svdt); nothing is left running.
# Before all that, readiness (log/notification-fd, --ready-fd): while
# another logpipe holds the lock on the directory, the logger's logpipe
# cannot start and `s6-svwait -U` must keep waiting (it times out after
# 3 s); once that holder ends, `s6-svwait -U` returns, and the lock then
# names the logger's logpipe.
#
# Needs root (s6-setuidgid, install -o). Run from anywhere; LOGPIPE
# overrides the binary under test.
set -euo pipefail

name=s6
restarts=5
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
svscan_pid=
holder=

on_fail() {
    show_output_and_starts
    if [ -s "$tmp/svscan.err" ]; then
        echo "--- s6-svscan stderr (logpipe's messages):"
        tail -n 20 "$tmp/svscan.err"
    fi
    if [ -e "$tmp/scan/app/log/supervise" ]; then
        echo "--- deaths of the service, then of the logger:"
        s6-svdt "$tmp/scan/app" 2>&1 || true
        s6-svdt "$tmp/scan/app/log" 2>&1 || true
    fi
}

# Every process this test started runs with its working directory in $tmp
# (s6-svscan in the scan directory, s6-supervise and the services in their
# service directories), so kill_leftovers finds them all.
cleanup() {
    local i
    if [ -n "$svscan_pid" ] && kill -0 "$svscan_pid" 2>/dev/null; then
        s6-svscanctl -t "$tmp/scan" 2>/dev/null || kill -TERM "$svscan_pid"
        for ((i = 0; i < 50; i++)); do
            [ -z "$(leftovers)" ] && break
            sleep 0.1
        done
    fi
    if [ -n "$holder" ]; then
        kill -TERM "$holder" 2>/dev/null || true
    fi
    if [ -n "$tmp" ]; then
        kill_leftovers
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "must run as root (the recipe uses s6-setuidgid and install -o)"

for cmd in s6-svscan s6-supervise s6-svc s6-svscanctl s6-svstat s6-svdt s6-setuidgid; do
    need "$cmd" s6
done
need_for_nobody
find_logpipe

tmp=$(mktemp -d)
svc=$tmp/scan/app
state=$tmp/state
logdir=$tmp/logs/app
# The service directory, and logpipe and the producer in $tmp/bin, all
# for nobody; the producer stops between two lines on TERM.
prepare_for_nobody "$svc" --rate 2000 --graceful 0

# The recipe as shipped (run, log/run), with only the users (s6-setuidgid nobody),
# the paths and --size 64K substituted.
copy_recipe contrib/s6 "s6-setuidgid" "$svc"

pid_of() { # pid_of SERVICEDIR: the pid s6-supervise runs there, or nothing
    local p
    p=$(s6-svstat -o pid "$1" 2>/dev/null) || true
    [ "${p:--1}" = -1 ] || echo "$p"
}
gone() { [ -z "$(leftovers)" ]; }
deaths() { # deaths SERVICEDIR: "COUNT exitcode N" per kind of death
    s6-svdt "$1" | cut -d' ' -f2- | sort | uniq -c | sed 's/^ *//'
}

# Readiness. Another logpipe (same user) holds the lock on $logdir, fed
# by a FIFO that this script holds open on descriptor 7.
install -d -o nobody -m 0750 "$logdir"
mkfifo "$tmp/hold.fifo"
(cd "$tmp" && exec s6-setuidgid nobody "$tmp/bin/logpipe" "$logdir/" <"$tmp/hold.fifo" 2>"$tmp/holder.err") &
holder=$!
exec 7>"$tmp/hold.fifo"
held() { [ "$(cat "$logdir/.current.lock" 2>/dev/null)" = "$holder" ]; }
wait_for "the other logpipe to hold the lock" held

# Not descriptor 7: the holder's end of input must not wait for s6-svscan.
s6-svscan "$tmp/scan" </dev/null >/dev/null 2>"$tmp/svscan.err" 7>&- &
svscan_pid=$!
refused() { grep -q "^logpipe: unable to lock $logdir/.current.lock: held by pid $holder" "$tmp/svscan.err"; }
wait_for "the logger's logpipe to be refused the lock" refused
status=0
s6-svwait -U -t 3000 "$svc/log" 2>/dev/null || status=$?
[ "$status" -eq 99 ] ||
    fail "s6-svwait -U exited $status while another logpipe held the lock; want 99 (timed out)"
exec 7>&-   # the holder reads to end of input and exits 0
wait "$holder" || fail "the other logpipe exited $?"
holder=
s6-svwait -U -t 30000 "$svc/log" || fail "s6-svwait -U exited $? once the lock was free"
lp=$(pid_of "$svc/log")
[ "$(cat "$logdir/.current.lock")" = "$lp" ] ||
    fail "s6-svwait -U returned, but the lock holds $(cat "$logdir/.current.lock"), not the logger's $lp"
# The refused starts are not part of what follows.
s6-svdt-clear "$svc/log"
wait_for "s6-svscan to start both services" running "$svc"
wait_for "the first 1000 lines" at_least 1000
pipe=
same_pipe "$svc"

for ((i = 1; i <= restarts; i++)); do
    # The service: a new producer on the same pipe, logpipe untouched.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log")
    s6-svc -T 30000 -wr -r "$svc" || fail "s6-svc -r $svc failed"
    wait_for "a new producer" changed "$svc" "$p"
    more_lines 500
    [ "$(pid_of "$svc/log")" = "$l" ] || fail "the logger restarted with the service"
    same_pipe "$svc"

    # The logger: TERM, logpipe writes what was in the pipe and exits 0,
    # s6-supervise starts a new one on the pipe s6-svscan holds; the
    # producer never waits for long and never notices.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log")
    s6-svc -T 30000 -wr -r "$svc/log" || fail "s6-svc -r $svc/log failed"
    wait_for "a new logpipe" changed "$svc/log" "$l"
    more_lines 500
    [ "$(pid_of "$svc")" = "$p" ] || fail "the service restarted with its logger"
    same_pipe "$svc"
done

# The end, as s6 documents it: -t sends TERM to the service's supervisor
# (the producer is brought down) and HUP to the logger's, whose logpipe
# then reads to end of input and exits 0; s6-svscan waits for it and exits.
s6-svscanctl -t "$tmp/scan" || fail "s6-svscanctl -t failed"
wait_for "s6-svscan and everything under it to exit" gone
wait "$svscan_pid" || fail "s6-svscan exited $?"
svscan_pid=

exits=$(deaths "$svc/log")
[ "$exits" = "$((restarts + 1)) exitcode 0" ] ||
    fail "logpipe deaths: $exits; want $((restarts + 1)) times exitcode 0"
exits=$(deaths "$svc")
[ "$exits" = "$((restarts + 1)) exitcode 0" ] ||
    fail "producer deaths: $exits; want $((restarts + 1)) times exitcode 0"
# Besides the refusals while the lock was held, logpipe said nothing.
said=$(grep logpipe "$tmp/svscan.err" | grep -v "^logpipe: unable to lock $logdir/.current.lock: held by pid ") || true
[ -z "$said" ] || fail "logpipe wrote to stderr: $said"

# The output: every line the producer wrote, once, in order, byte for
# byte; every segment a valid gzip of whole lines, at most 64 KiB.
check "$logdir/" --state "$state" --starts $((restarts + 1)) \
    --compressed --max-size 65536 --min-segments 5

echo "PASS $name: s6-svwait -U waited while another logpipe held the lock, returned once" \
    "the logger's logpipe held it; $restarts service restarts and $restarts log restarts, one pipe" \
    "throughout, every logpipe exit 0: $result"
