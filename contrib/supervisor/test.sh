#!/usr/bin/env bash
# End-to-end test of contrib/supervisor/app.conf under a real supervisord:
# a producer of numbered lines runs as the program's application, is
# restarted several times mid-stream with `supervisorctl restart`, and logs
# $tail_lines lines while it shuts down each time. Then: every line the
# producer wrote must be in logpipe's output once, whole, in order, and
# every segment must be valid gzip.
set -euo pipefail
name=supervisor
restarts=5
tail_lines=300   # lines the application writes after its SIGTERM

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    ls -la "$logdir" || true
    tail -n 20 "$tmp/app-logpipe.log" "$tmp/supervisord.log" 2>/dev/null || true
}
need supervisord supervisor
need python3 python3
need setsid util-linux
need gzip gzip
find_logpipe

tmp=$(mktemp -d)
state=$tmp/state logdir=$tmp/log
sv_pid=
cleanup() {
    # On success supervisord is gone already; on failure this also gets
    # logpipe, which runs outside supervisord's process groups.
    [ -z "$sv_pid" ] || kill_tree "$sv_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$state"

# The recipe as shipped, with only its paths replaced; the application
# logs $tail_lines lines on its way out after SIGTERM.
sed -e "s|/usr/local/bin/app|$producer --state $state --graceful $tail_lines|" \
    -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
    -e "s|/var/log/app/|$logdir/|" \
    -e "s|/var/log/supervisor/|$tmp/|" \
    contrib/supervisor/app.conf >"$tmp/app.conf"
cat >"$tmp/supervisord.conf" <<CONF
[unix_http_server]
file=$tmp/supervisor.sock
[supervisord]
logfile=$tmp/supervisord.log
pidfile=$tmp/supervisord.pid
childlogdir=$tmp
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$tmp/supervisor.sock
[include]
files = $tmp/app.conf
CONF
ctl() { supervisorctl -c "$tmp/supervisord.conf" "$@"; }

supervisord -n -c "$tmp/supervisord.conf" >/dev/null 2>&1 &
sv_pid=$!
old_lp=
segments=0
for run in $(seq 0 "$restarts"); do
    wait_for "logpipe to start (run $run)" new_logpipe
    old_lp=$lp
    more_lines 1500
    kill -USR1 "$lp"   # roll now: each run leaves a finished segment
    segments=$((segments + 1))
    more_lines 1500
    if [ "$run" -lt "$restarts" ]; then
        ctl restart app >"$tmp/ctl.out" || fail "supervisorctl restart: $(cat "$tmp/ctl.out")"
    fi
done
ctl stop app >"$tmp/ctl.out" || fail "supervisorctl stop: $(cat "$tmp/ctl.out")"
grep -q 'app: stopped' "$tmp/ctl.out" || fail "supervisorctl stop said: $(cat "$tmp/ctl.out")"
# The program counts as stopped only once the shell, hence logpipe, exited.
[ "$(cat "/proc/$lp/comm" 2>/dev/null)" != logpipe ] || fail "logpipe $lp still running after stop"
kill -TERM "$sv_pid"
wait "$sv_pid" || fail "supervisord exited with $?"
sv_pid=

# Each stop: the shell exited 0 after logpipe did, never on the signal.
stops=$(grep -c 'stopped: app (exit status 0)' "$tmp/supervisord.log" || true)
[ "$stops" -eq $((restarts + 1)) ] || fail "$stops clean stops, expected $((restarts + 1))"
! grep -E 'exited: app|terminated by|FATAL|BACKOFF' "$tmp/supervisord.log" || fail "unexpected program states"
[ ! -s "$tmp/app-logpipe.log" ] || fail "logpipe said: $(cat "$tmp/app-logpipe.log")"
# Every line written, once, in order, the shutdown lines included; one
# segment per SIGUSR1, each a valid gzip.
check "$logdir/" --state "$state" --starts $((restarts + 1)) \
    --after-term $(((restarts + 1) * tail_lines)) --segments "$segments" --compressed
echo "PASS $name: $restarts restarts, $result"
