#!/bin/sh
# Way 2: ships a logpipe target's lines, each exactly once under normal
# operation, to the local rsyslog's relay socket (relay.conf), which sends
# them on to the central rsyslog over RELP.
#
#   ship.sh TARGET CURSOR [SOCKET [TAG]]
#   ship.sh /var/log/app/ /var/lib/logpipe-ship/app.cursor /run/logpipe-ship.sock app
#
# `logpipe --follow --cursor CURSOR TARGET` prints every line of the
# target, from where CURSOR says it stopped, and follows it through its
# rotations; logger sends each line as one message to SOCKET. If either
# ends (the relay socket gone, a crash), the pipeline starts again a second
# later from the cursor. On SIGTERM or SIGINT (what a supervisor sends to
# stop it) the follower saves its cursor and stops; logger, which ignores
# those signals, sends what is still in the pipe, then sees the end of its
# input and exits; then so does this script, 0.
set -u
[ "$#" -ge 2 ] || { echo "usage: ship.sh TARGET CURSOR [SOCKET [TAG]]" >&2; exit 2; }
target=$1 cursor=$2 socket=${3:-/run/logpipe-ship.sock} tag=${4:-app}
logpipe=${LOGPIPE:-logpipe}

# The pipe between the two, made here so that the follower's pid is known.
fifo_dir=$(mktemp -d) || exit 1
fifo=$fifo_dir/lines
mkfifo "$fifo" || exit 1
stopping='' follower=''
trap 'rm -rf "$fifo_dir"' EXIT
trap 'stopping=1; [ -z "$follower" ] || kill -TERM "$follower" 2>/dev/null' TERM INT

while [ -z "$stopping" ]; do
    # Ignored signals stay ignored across exec: logger outlives a SIGTERM
    # sent to the whole process group, and reads the pipe to its end.
    # --socket-errors=on: without it, logger throws lines away, and exits
    # 0, when the socket is missing or goes away.
    (trap '' TERM INT; exec logger --socket-errors=on --rfc5424 -u "$socket" -t "$tag" <"$fifo") &
    forwarder=$!
    "$logpipe" --follow --cursor "$cursor" "$target" >"$fifo" &
    follower=$!
    # A signal that came before $! was known.
    [ -z "$stopping" ] || kill -TERM "$follower" 2>/dev/null
    # wait returns early when a signal is trapped: wait again until both
    # have exited.
    while kill -0 "$follower" 2>/dev/null || kill -0 "$forwarder" 2>/dev/null; do
        wait
    done
    follower=
    [ -n "$stopping" ] || sleep 1
done
exit 0
