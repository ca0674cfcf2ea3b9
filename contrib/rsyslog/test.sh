#!/usr/bin/env bash
# End-to-end test of contrib/rsyslog: logpipe writes a producer's numbered
# lines to a directory, with --size 256K for many rotations, and a real
# rsyslogd, the central one, receives them over TCP on loopback and writes
# each message's text to a file. Both ways of shipping run, in turn, with
# the configurations as shipped (only paths, host and ports replaced), each
# rsyslogd with its own configuration, pid file and work directory (never
# the system's):
#
#   1  imfile: a sending rsyslogd follows DIR/current (imfile.conf) and
#      forwards over TCP (omfwd) to the central one;
#   2  follow: ship.sh runs `logpipe --follow --cursor FILE DIR/ | logger`
#      into the socket of a relaying rsyslogd (relay.conf), which forwards
#      over RELP (omrelp) to the central one.
#
# During each run the sender (way 1: the sending rsyslogd; way 2: the
# `logpipe --follow` process) is killed with SIGKILL $kills times, and
# the central rsyslogd once, then started again on the same port. Then,
# once everything has arrived, each way's figures are printed: lines lost,
# lines repeated. Way 2 must lose none, and may repeat lines only from the
# cursor each follower saved last: each jump back in what arrived must
# land on the line after the cursor the next follower started from (read
# back with logpipe itself), plus one jump of at most the RELP window for
# the central restart. Way 2's ship.sh is also stopped cleanly (SIGTERM to
# its process group) and started again mid-stream: the line after that
# stop must arrive once, right after the one before, and after the final
# stop its cursor must be at the end. Way 1 may lose lines only around a kill (from a
# second's worth of lines before it to a second's worth after the
# restart): what it loses there is reported (README.md), and every line
# that arrives must be one written, whole. Both ways: logpipe's own output
# holds every line, byte for byte (check.py).
#
#   WAYS="1 2" LINES=200000 RATE=10000 bash contrib/rsyslog/test.sh
set -euo pipefail
name=rsyslog
lines=${LINES:-200000}
rate=${RATE:-10000}    # lines a second, about: ~4 rotations a second at 256K
kills=3
relp_window=128        # omrelp's default windowSize

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    [ -z "${run:-}" ] || {
        echo "--- $run: central rsyslogd, sender, ship.sh:"
        tail -n 5 "$run/central.log" "$run/sender.log" "$run/ship.log" 2>/dev/null || true
        find "$run/log" -maxdepth 1 -printf "%M %s %f\n" 2>/dev/null | sort -k3 | tail -n 5 || true
    }
}
need rsyslogd rsyslog
need logger bsdutils
need python3 python3
need gzip gzip
# omrelp and imrelp come in their own package.
modules=$(dirname "$(dpkg -L rsyslog | grep '/imfile\.so$')")
[ -e "$modules/omrelp.so" ] || {
    [ "$(id -u)" = 0 ] || fail "could not install rsyslog-relp: not root (apt-get install rsyslog-relp)"
    apt-get install -y -q rsyslog-relp >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q rsyslog-relp >/dev/null 2>&1; } || true
    [ -e "$modules/omrelp.so" ] || fail "could not install rsyslog-relp"
}
find_logpipe
ways=${WAYS:-1 2}
if [[ " $ways " == *" 2 "* ]]; then
    "$LOGPIPE" --help 2>&1 | grep -q -- '--follow' || fail "$LOGPIPE has no --follow (way 2)"
fi

tmp=$(mktemp -d)
chmod 0755 "$tmp"
cleanup() {
    # rsyslogd runs in /: killed by its pid. Then what is left in $tmp
    # (from /, not to kill this shell).
    cd /
    for pid in ${central:-} ${sender:-} ${relay:-} ${ship:-} ${pipeline:-}; do kill_tree "$pid"; done
    kill_leftovers
    rm -rf "$tmp"
}
trap cleanup EXIT
# Every process the test starts but rsyslogd runs in $tmp (leftovers
# finds them there).
cd "$tmp"

# Two free loopback ports, for the central rsyslogd's TCP and RELP inputs.
read -r tcp_port relp_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
# listening PORT: something listens on 127.0.0.1:PORT (from /proc, without
# connecting to it).
listening() {
    awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}

# rsyslog_conf DIR FILE SED...: DIR/rsyslog.conf, the main configuration of
# a private rsyslogd: its work directory DIR/work, then the recipe FILE
# with the SED substitutions applied, each of which must change a line.
rsyslog_conf() {
    local dir=$1 file=$2 expr
    shift 2
    mkdir -p "$dir/work"
    cp "$file" "$dir/$(basename "$file")"
    for expr in "$@"; do
        cp "$dir/$(basename "$file")" "$dir/before"
        sed -i "$expr" "$dir/$(basename "$file")"
        ! cmp -s "$dir/before" "$dir/$(basename "$file")" || fail "$file: '$expr' changed nothing"
    done
    {
        echo "global(workDirectory=\"$dir/work\")"
        # Way 2's relay.conf expects imuxsock from the main configuration;
        # here without the system socket (/dev/log).
        [ "$(basename "$file")" != relay.conf ] || echo 'module(load="imuxsock" SysSock.Use="off")'
        echo "include(file=\"$dir/$(basename "$file")\")"
    } >"$dir/rsyslog.conf"
    rsyslogd -N1 -f "$dir/rsyslog.conf" >"$dir/check.log" 2>&1 ||
        fail "rsyslogd -N1 rejects $file: $(grep -v '^rsyslogd: version' "$dir/check.log" | head -3)"
}

# start_central: the central rsyslogd of $run, on the same ports each time.
start_central() {
    # Its pid file, left by a kill, would stop it if another process had
    # that pid by now.
    rm -f "$run/central/pid"
    rsyslogd -n -f "$run/central/rsyslog.conf" -i "$run/central/pid" >>"$run/central.log" 2>&1 &
    central=$!
    wait_for "the central rsyslogd to listen on $tcp_port and $relp_port" \
        eval "listening $tcp_port && listening $relp_port"
}

# start_sender: way 1's sending rsyslogd.
start_sender() {
    rm -f "$run/sender/pid"
    rsyslogd -n -f "$run/sender/rsyslog.conf" -i "$run/sender/pid" >>"$run/sender.log" 2>&1 &
    sender=$!
}

# start_ship: way 2's ship.sh, run by its #!/bin/sh as shipped, in a
# process group of its own (setsid execs it: this shell's children lead
# no group), and its follower.
start_ship() {
    LOGPIPE=$LOGPIPE setsid "$repo/contrib/rsyslog/ship.sh" "$logdir/" "$run/cursor" \
        "$run/relay.sock" app >>"$run/ship.log" 2>&1 &
    ship=$!
    old_f=
    wait_for "ship.sh to start logpipe --follow" new_follower
}
# stop_ship: SIGTERM to ship.sh's whole process group, as a supervisor
# stops it; it must exit 0.
stop_ship() {
    kill -TERM -- "-$ship"
    wait "$ship" || fail "ship.sh exited with $? on SIGTERM to its process group"
    ship=
}

# follower: the pid of ship.sh's `logpipe --follow`, if it runs.
follower() { ps -o pid=,args= --ppid "$ship" | awk '/ --follow / { print $1 }'; }
new_follower() { f=$(follower) && [ -n "$f" ] && [ "$f" != "${old_f:-}" ]; }

# received N: line N is in the central file.
received() { [ -e "$run/received" ] && grep -q "^line $(printf %08d "$1") " "$run/received"; }
# arrived: the last line written has arrived (read from the end only).
arrived() {
    [ -e "$run/received" ] && tail -c 4096 "$run/received" | grep -q "^line $(printf %08d "$lines") "
}

# run_way WAY: one run of 1 (imfile) or 2 (follow); sets figures_WAY.
run_way() {
    local way=$1 at
    run=$tmp/way$way state=$tmp/way$way/state logdir=$tmp/way$way/log
    mkdir -p "$state"
    rsyslog_conf "$run/central" "$repo/contrib/rsyslog/central.conf" \
        "s|/var/log/central/app.log|$run/received|" \
        "s|port=\"514\"|port=\"$tcp_port\" address=\"127.0.0.1\"|" \
        "s|port=\"2514\"|port=\"$relp_port\" address=\"127.0.0.1\"|"
    if [ "$way" = 1 ]; then
        rsyslog_conf "$run/sender" "$repo/contrib/rsyslog/imfile.conf" \
            "s|/var/log/app/current|$logdir/current|" \
            "s|target=\"central.example\"|target=\"127.0.0.1\"|" \
            "s|port=\"514\"|port=\"$tcp_port\"|"
    else
        rsyslog_conf "$run/relay" "$repo/contrib/rsyslog/relay.conf" \
            "s|/run/logpipe-ship.sock|$run/relay.sock|" \
            "s|target=\"central.example\"|target=\"127.0.0.1\"|" \
            "s|port=\"2514\"|port=\"$relp_port\"|"
    fi
    start_central

    python3 "$repo/contrib/harness/produce.py" --state "$state" --rate "$rate" --count "$lines" |
        "$LOGPIPE" --size 256K "$logdir/" &
    pipeline=$!
    wait_for "logpipe to make $logdir/current" test -e "$logdir/current"

    if [ "$way" = 1 ]; then
        start_sender
    else
        rsyslogd -n -f "$run/relay/rsyslog.conf" -i "$run/relay/pid" >>"$run/relay.log" 2>&1 &
        relay=$!
        wait_for "the relay's socket" test -S "$run/relay.sock"
        start_ship
    fi

    # The kills, spread over the run: the sender $kills times, then the
    # central rsyslogd; each stays down while the producer writes
    # $((rate / 2)) lines (a few rotations).
    : >"$run/events"
    for i in $(seq "$kills"); do
        at=$((lines * i / (kills + 2)))
        wait_for -t 120 "$at lines written" at_least "$at"
        if [ "$way" = 1 ]; then
            kill -KILL "$sender"
            wait "$sender" 2>/dev/null || true
            echo "sender killed at $(written)" >>"$run/events"
            more_lines $((rate / 2))
            echo "sender started at $(written)" >>"$run/events"
            start_sender
        else
            f=$(follower)
            [ -n "$f" ] || fail "no logpipe --follow under ship.sh at kill $i"
            kill -KILL "$f"
            old_f=$f
            # The cursor it saved last, before ship.sh starts the next one.
            cp "$run/cursor" "$run/cursor.$i" 2>/dev/null || fail "no cursor file after kill $i"
            echo "follower killed at $(written)" >>"$run/events"
            wait_for "ship.sh to start logpipe --follow again" new_follower
            echo "follower started at $(written)" >>"$run/events"
        fi
    done
    if [ "$way" = 2 ]; then
        # A clean stop, mid-stream, and a start: the follower saves its
        # cursor, logger sends what the pipe holds: no line lost, none
        # repeated (no jump back that the check would allow).
        more_lines $((rate / 2))
        stop_ship
        cp "$run/cursor" "$run/cursor.clean"
        echo "ship.sh stopped at $(written)" >>"$run/events"
        more_lines $((rate / 2))
        start_ship
        echo "ship.sh started at $(written)" >>"$run/events"
    fi
    at=$((lines * (kills + 1) / (kills + 2)))
    wait_for -t 120 "$at lines written" at_least "$at"
    kill -KILL "$central"
    wait "$central" 2>/dev/null || true
    echo "central killed at $(written)" >>"$run/events"
    more_lines $((rate / 2))
    start_central
    echo "central started at $(written)" >>"$run/events"

    wait "$pipeline" || fail "produce.py | logpipe failed"
    pipeline=
    # Everything arrives: the last line is there.
    wait_for -t 600 "line $lines at the central rsyslogd" arrived
    # Clean stops: ship.sh (the follower saves its cursor, logger sends
    # what is left), the senders, then the central one (it writes all).
    if [ "$way" = 1 ]; then
        kill -TERM "$sender"
        wait "$sender" || fail "the sending rsyslogd exited with $? on SIGTERM"
        sender=
    else
        stop_ship
        # It saved its cursor at the end: nothing more to read from it.
        [ -z "$("$LOGPIPE" --read --cursor "$run/cursor" "$logdir/" | head -c 1)" ] ||
            fail "the cursor saved at ship.sh's stop is not at the end"
        kill -TERM "$relay"
        wait "$relay" || fail "the relaying rsyslogd exited with $? on SIGTERM"
        relay=
    fi
    kill -TERM "$central"
    wait "$central" || fail "the central rsyslogd exited with $? on SIGTERM"
    central=

    # logpipe's own output, the local buffer: every line, byte for byte.
    check "$logdir/" --state "$state" --min-segments $((lines / 4000))
    local segments=${result#*segments=}
    segments=${segments%% *}
    echo "way $way: logpipe wrote $(written) lines in $segments segments and current; events:" \
        "$(paste -sd, "$run/events")"
}

# figures OPTION...: sets figures to received.py's figures for $run, or fails.
figures() {
    figures=$(python3 "$repo/contrib/harness/received.py" "$run/received" --state "$state" "$@") ||
        fail "way $way: $figures"
}

for way in $ways; do
    run_way "$way"
    if [ "$way" = 1 ]; then
        # Lines may be lost only around the sender's kills (while it was
        # down, and what its memory held), and the central one's (plain
        # TCP): from a second's worth of lines before each kill to a
        # second's worth after the restart.
        spans=$(awk -v r="$rate" '/killed at/ { a = $NF - r } /started at/ { printf "%s%d-%d", s, (a < 1 ? 1 : a), $NF + r; s = "," }' "$run/events")
        figures --lost-within "$spans"
        figures_1=$figures
        echo "way 1 (imfile, omfwd): $figures_1"
    else
        # Where each follower started again: the line after the cursor
        # saved last before its kill, as logpipe reads it.
        resumes=
        for i in $(seq "$kills") clean; do
            first=$("$LOGPIPE" --follow --cursor "$run/cursor.$i" "$logdir/" | head -n 1) ||
                true
            n=$(awk '{ print $2 + 0 }' <<<"$first")
            [ -n "$n" ] || fail "logpipe --follow --cursor cursor.$i printed nothing"
            [ "$i" = clean ] && clean=$n || resumes=$resumes${resumes:+,}$n
        done
        # After the clean stop: line $clean once, right after the one before.
        figures --max-lost 0 --max-resumes $((kills + 1)) --resume-at "$resumes" \
            --max-other-repeat "$relp_window" --exact-at "$clean"
        figures_2=$figures
        echo "way 2 (logpipe --follow, RELP): resumed at $resumes after kills, at $clean after the clean stop: $figures_2"
    fi
done
echo "PASS $name: $lines lines, sender killed $kills times and the central rsyslogd once a way;" \
    "${figures_1:+way 1: $figures_1; }${figures_2:+way 2: $figures_2}"
