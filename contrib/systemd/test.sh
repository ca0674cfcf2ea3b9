#!/usr/bin/env bash
# Test of contrib/systemd/ without systemd (none runs here).
# 1. `systemd-analyze verify` must accept every unit without a word.
# 2. app-with-logpipe.service: its own ExecStart command line, with only
#    its paths replaced, runs a producer of numbered lines through logpipe
#    and is stopped the way systemd stops it (SIGTERM to every process at
#    once), three times over.
# 3. app-log.socket + app-log.service + app.service.d/logpipe.conf: a FIFO
#    held open as systemd holds it, logpipe (its unit's ExecStart) reading
#    it, restarted twice while the application writes; then the
#    application is stopped, logging $tail_lines lines on its way out,
#    and logpipe after it.
# Each time: every line the producer wrote must be in the output once,
# whole, in order; every segment must be valid gzip; logpipe exits 0.
set -euo pipefail
name=systemd
runs=3
tail_lines=300   # lines the application writes after its SIGTERM
dir=contrib/systemd
single=$dir/app-with-logpipe.service

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    ls -la "$tmp"/*/log || true
    tail -n 20 "$tmp"/*/*.journal 2>/dev/null || true
}
need systemd-analyze systemd
need python3 python3
need gzip gzip
find_logpipe

tmp=$(mktemp -d)
declare -A unit_pid   # unit name: pid of its stand-in for systemd, while it runs
cleanup() {
    local pid
    for pid in "${unit_pid[@]}"; do
        kill_tree "$pid"
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/single/state" "$tmp/pair/state" "$tmp/units/single" "$tmp/units/pair"

# 1. Verify. Warnings do not change verify's exit status: any output fails.
verify() {
    local out
    out=$(systemd-analyze verify "$@" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
}
# Its ExecStart runs /bin/sh, which exists: nothing to replace.
cp "$single" "$tmp/units/single/"
verify "$tmp/units/single/${single##*/}"
# logpipe's path replaced, and an application unit for the drop-in.
sed "s|/usr/local/bin/logpipe|$LOGPIPE|" "$dir/app-log.service" >"$tmp/units/pair/app-log.service"
cp -r "$dir/app-log.socket" "$dir/app.service.d" "$tmp/units/pair/"
printf '[Service]\nExecStart=%s %s --state %s --graceful %s\n' "$(command -v python3)" \
    "$repo/contrib/harness/produce.py" "$tmp/pair/state" "$tail_lines" >"$tmp/units/pair/app.service"
verify "$tmp/units/pair/app-log.socket" "$tmp/units/pair/app-log.service" "$tmp/units/pair/app.service"

# The ExecStart line of unit $1, with the paths replaced for part $2.
# systemd and the shell split it into words alike, unless it has $, % or \.
exec_start() {
    local cmd
    cmd=$(sed -n 's/^ExecStart=//p' "$1")
    if [ -z "$cmd" ] || [ "$(wc -l <<<"$cmd")" -ne 1 ]; then
        fail "$1: expected one ExecStart line: $cmd"
    fi
    case $cmd in *[\$%\\]*) fail "$1: ExecStart has \$, % or \\: this test's word splitting would not be systemd's" ;; esac
    sed -e "s|/usr/local/bin/app|$producer --state $tmp/$2/state|" \
        -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
        -e "s|/var/log/app/|$tmp/$2/log/|" <<<"$cmd"
}
# systemctl start: unit $1 (file prefix in $part) runs the command $2...,
# its standard input ours with STDIN=socket, else /dev/null (service.py).
start() {
    # <&0: a background command's standard input would be /dev/null.
    python3 contrib/harness/service.py "$part/$1" "${@:2}" <&0 2>"$part/$1.journal" &
    unit_pid[$1]=$!
}
# systemctl stop: unit $1; then its processes' exit statuses must match $2.
stop() {
    local pid=${unit_pid[$1]}
    kill -TERM "$pid"
    wait_for "$1 to stop" exited "$pid"
    wait "$pid" || fail "the stand-in for systemd failed: $(cat "$part/$1.journal")"
    unset "unit_pid[$1]"
    ! grep -vE "$2" "$part/$1.status" || fail "$1: unexpected exit status"
    [ ! -s "$part/$1.journal" ] || fail "$1 said: $(cat "$part/$1.journal")"
}

# 2. The single unit: start, roll, stop, three times.
part=$tmp/single logdir=$part/log state=$part/state old_lp=
eval "set -- $(exec_start "$single" single)"
for run in $(seq "$runs"); do
    start app-with-logpipe "$@"
    wait_for "logpipe to start (run $run)" new_logpipe
    old_lp=$lp
    more_lines 2000
    kill -USR1 "$lp"   # roll now: each run leaves a finished segment
    more_lines 2000
    # The shell and the producer die of SIGTERM (-15), which systemd
    # counts as a clean stop; logpipe must exit 0. Its status is seen
    # unless the shell collected it in the moment before dying; every
    # failure of logpipe says why on stderr, and that must stay empty.
    stop app-with-logpipe '^(logpipe 0|sh -15|python3 -15)$'
done
# Every line written, once, in order, but for a line the producer was
# writing when it was killed, which may be there or not.
check "$logdir/" --state "$state" --killed --starts "$runs" --segments "$runs" --compressed
single_result=$result

# 3. The pair. The FIFO, held open read-write as systemd holds it while
# app-log.socket runs; the drop-in must point the application into it.
part=$tmp/pair logdir=$part/log state=$part/state old_lp=
fifo=$(sed -n 's/^ListenFIFO=//p' "$dir/app-log.socket")
[ "$(sed -n 's/^StandardOutput=file://p' "$dir/app.service.d/logpipe.conf")" = "$fifo" ] ||
    fail "the drop-in does not write into the socket's FIFO $fifo"
mkfifo -m 0600 "$part/fifo"
exec 9<>"$part/fifo"
eval "set -- $(exec_start "$dir/app-log.service" pair)"
STDIN=socket start app-log "$@" <&9   # StandardInput=socket
wait_for "logpipe to start" new_logpipe
old_lp=$lp
start app python3 contrib/harness/produce.py --state "$state" --graceful "$tail_lines" 9<&- >"$part/fifo" 2>&1
for run in $(seq "$runs"); do
    more_lines 2000
    kill -USR1 "$lp"
    more_lines 1000
    [ "$run" -eq "$runs" ] && break
    # systemctl restart app-log: the application goes on writing.
    stop app-log '^logpipe 0$'
    STDIN=socket start app-log "$@" <&9
    wait_for "logpipe to start again" new_logpipe
    old_lp=$lp
done
# Shutdown order: the application first, then logpipe.
stop app '^python3 0$'
stop app-log '^logpipe 0$'
if read -r -t 0 -u 9; then
    IFS= read -r -t 1 -u 9 left || :
    fail "bytes left in the FIFO: ${left:0:200}"
fi
exec 9<&-
# Every line written, once, in order, the shutdown lines included.
check "$logdir/" --state "$state" --starts 1 --after-term "$tail_lines" \
    --segments "$runs" --compressed
pair_result=$result

echo "PASS $name: verify clean; single unit, $runs stops by SIGTERM to all: $single_result; socket pair, $((runs - 1)) logpipe restarts then the application stopped: $pair_result"
