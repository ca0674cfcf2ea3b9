#!/bin/sh
# Run gunicorn with its logs going through logpipe (see README.md here).
#
#   LOGDIR=/var/log/myapp ./run.sh --workers 4 --bind 0.0.0.0:8000
#
# Arguments go to gunicorn, before the application. Environment (defaults
# in brackets):
#   LOGDIR        where the logs go [/var/log/gunicorn]
#   SPLIT         0: access and error log together in $LOGDIR/current, one
#                 logpipe; 1: access log in $LOGDIR/access/current, error log
#                 (and whatever the application prints) in
#                 $LOGDIR/error/current, one logpipe each [0]
#   LOGPIPE       the logpipe binary [logpipe]
#   LOGPIPE_OPTS  logpipe options, split at spaces [--size 64M]
#   GUNICORN      the gunicorn command [gunicorn]
#   APP           the WSGI application [app:app]
#
# This is `gunicorn --access-logfile - --error-logfile - APP 2>&1 | logpipe
# LOGDIR/`, through named pipes so that the script knows every process id:
# TERM (graceful stop), INT and QUIT (quick stop), HUP (reload), TTIN and
# TTOU (one worker more or less) sent to this script go to gunicorn's master
# alone. logpipe ends at end of input, when gunicorn and all its workers
# have exited, so the lines gunicorn writes while it stops are kept. If a
# logpipe fails, gunicorn is stopped: its logs would have nowhere to go.
# Exit status: the first failed logpipe's, else gunicorn's.
set -eu

LOGDIR=${LOGDIR:-/var/log/gunicorn}
SPLIT=${SPLIT:-0}
LOGPIPE=${LOGPIPE:-logpipe}
LOGPIPE_OPTS=${LOGPIPE_OPTS:---size 64M}
GUNICORN=${GUNICORN:-gunicorn}
APP=${APP:-app:app}

fifos=$(mktemp -d "${TMPDIR:-/tmp}/gunicorn-logpipe.XXXXXX")
trap 'rm -rf "$fifos"' EXIT

# sink FIFO TARGET: logpipe from FIFO into TARGET; if it fails, stop gunicorn.
sink() {
    rc=0
    # shellcheck disable=SC2086 # LOGPIPE_OPTS is a list of options
    "$LOGPIPE" $LOGPIPE_OPTS "$2" <"$1" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: logpipe for $2 exited with status $rc, stopping gunicorn" >&2
        kill -TERM "$gunicorn_pid" 2>/dev/null || :
    fi
    exit "$rc"
}

if [ "$SPLIT" = 1 ]; then
    mkfifo -m 600 "$fifos/access" "$fifos/error"
    # The access log goes to fd 3, which gunicorn opens again as a file
    # (so SIGUSR1's reopen finds the same pipe); stdout joins stderr.
    "$GUNICORN" --access-logfile /dev/fd/3 --error-logfile - "$@" "$APP" \
        3>"$fifos/access" >"$fifos/error" 2>&1 &
    gunicorn_pid=$!
    sink "$fifos/access" "$LOGDIR/access/" &
    sink1=$!
    sink "$fifos/error" "$LOGDIR/error/" &
    sink2=$!
else
    mkfifo -m 600 "$fifos/log"
    "$GUNICORN" --access-logfile - --error-logfile - "$@" "$APP" \
        >"$fifos/log" 2>&1 &
    gunicorn_pid=$!
    sink "$fifos/log" "$LOGDIR/" &
    sink1=$!
    sink2=
fi

for sig in TERM INT QUIT HUP TTIN TTOU; do
    # shellcheck disable=SC2064 # $sig is meant to be expanded now
    trap "kill -$sig \"\$gunicorn_pid\" 2>/dev/null || :" "$sig"
done

# wait_for PID: PID's exit status. A trapped signal interrupts wait (status
# above 128, the trap has passed the signal on): then wait again, unless
# PID has really exited.
wait_for() {
    while :; do
        rc=0
        wait "$1" || rc=$?
        if [ "$rc" -gt 128 ] && kill -0 "$1" 2>/dev/null; then
            continue
        fi
        return "$rc"
    done
}

status=0
for pid in $sink1 $sink2; do
    rc=0
    wait_for "$pid" || rc=$?
    [ "$status" -ne 0 ] || status=$rc
done
rc=0
wait_for "$gunicorn_pid" || rc=$?
[ "$status" -ne 0 ] || status=$rc
exit "$status"
