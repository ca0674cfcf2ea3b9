#!/usr/bin/env bash
# End-to-end test of the gunicorn recipe: real gunicorn (4 sync workers)
# under load from real wrk, its logs through logpipe (--size 64K, gzip), then
# a graceful stop. Three ways of running it:
#   one    run.sh, access and error log in one logpipe; SIGTERM to run.sh
#          (what a supervisor sends), which passes it to gunicorn's master
#   split  run.sh with SPLIT=1, a logpipe for each log; SIGHUP to run.sh
#          under load (gunicorn reloads: new workers); SIGTERM straight to
#          gunicorn's master
#   pipe   the README's one-liner, gunicorn ... 2>&1 | logpipe ...; SIGTERM
#          to gunicorn's master
# Each checks: every request the application answered (app.py appends its
# request id to COUNTER_FILE) has exactly one access line, and there is no
# other access line; each worker's lines are in its order; every line is
# whole (an access line or a gunicorn error log line); gunicorn's last line
# ("Shutting down: Master") was kept; several segments, all gzip-valid;
# every logpipe exited 0; no process of the group is left.
set -euo pipefail

name=gunicorn
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
recipe=$repo/contrib/gunicorn

need gunicorn gunicorn
need wrk wrk
need gzip gzip
need setsid util-linux
need pgrep procps
find_logpipe
logpipe=$LOGPIPE

work=$(mktemp -d)
groups=() # process groups started (each run is a session of its own)
cleanup() {
    local g p
    for p in $(jobs -p); do # wrk, if it is still running
        kill -TERM "$p" 2>/dev/null || :
    done
    for g in "${groups[@]}"; do
        kill -TERM -- "-$g" 2>/dev/null || :
    done
    sleep 0.5
    for g in "${groups[@]}"; do
        kill -KILL -- "-$g" 2>/dev/null || :
    done
    rm -rf "$work"
}
trap cleanup EXIT
forget() { # forget GROUP: it has ended, do not signal its id again
    local g keep=()
    for g in "${groups[@]}"; do
        [ "$g" = "$1" ] || keep+=("$g")
    done
    groups=("${keep[@]}")
}

# The access log format: gunicorn's default plus the request id app.py sends.
format='%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" rid=%({x-request-id}o)s'
access_re='^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] "GET / HTTP/1\.1" 200 [0-9]+ "-" "-" rid=[0-9]+-[0-9]+$'
error_re='^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] \[[0-9]+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] .+$'

figures=()

# run_case CASE: start gunicorn and logpipe, load, stop, check.
run_case() {
    local case_name=$1 case_dir=$work/$1
    local logs=$case_dir/logs access_dir error_dir nsinks
    mkdir -p "$case_dir"
    cp "$recipe/app.py" "$recipe/run.sh" "$case_dir/"
    # LOGPIPE for run.sh: the binary under test, recording its exit status.
    cat >"$case_dir/logpipe" <<EOF
#!/bin/sh
"$logpipe" "\$@"
rc=\$?
echo "\$rc" >>"$case_dir/logpipe.rc"
exit "\$rc"
EOF
    chmod +x "$case_dir/logpipe"

    cd "$case_dir"
    export COUNTER_FILE=$case_dir/answered LOGDIR=$logs \
        LOGPIPE=$case_dir/logpipe LOGPIPE_OPTS="--size 64K"
    # Port 0: the kernel picks a free port, gunicorn logs it.
    local gargs=(-w 4 -b 127.0.0.1:0 --access-logformat "$format")
    case $case_name in
    one)
        SPLIT=0 setsid ./run.sh "${gargs[@]}" >run.out 2>run.err &
        access_dir=$logs error_dir=$logs nsinks=1
        ;;
    split)
        SPLIT=1 setsid ./run.sh "${gargs[@]}" >run.out 2>run.err &
        access_dir=$logs/access error_dir=$logs/error nsinks=2
        ;;
    pipe)
        # The README's one-liner, with the test's options added.
        # shellcheck disable=SC2016 # expanded by that bash
        setsid bash -c 'gunicorn --access-logfile - --error-logfile - "$@" app:app 2>&1 |
            "$LOGPIPE" $LOGPIPE_OPTS "$LOGDIR/"' bash "${gargs[@]}" >run.out 2>run.err &
        access_dir=$logs error_dir=$logs nsinks=1
        ;;
    esac
    # setsid did not fork (a background job is no group leader), so this is
    # the session's and the process group's id.
    local leader=$!
    groups+=("$leader")
    cd "$repo"

    context() {
        echo "--- $case_dir:"
        ls -lR "$case_dir"
        echo "--- stderr of run (logpipe's included):"
        cat "$case_dir/run.err"
        echo "--- end of the error log:"
        tail -n 20 "$error_dir/current" 2>/dev/null || :
    }
    case_fail() {
        context
        fail "$case_name: $*"
    }

    # Ready when gunicorn says where it listens and all 4 workers booted.
    local deadline=$((SECONDS + 30)) listen=""
    while :; do
        listen=$(grep -oE 'Listening at: http://127\.0\.0\.1:[0-9]+ \([0-9]+\)' "$error_dir/current" 2>/dev/null || :)
        if [ -n "$listen" ] && [ "$(grep -c 'Booting worker' "$error_dir/current")" -ge 4 ]; then
            break
        fi
        kill -0 "$leader" 2>/dev/null || case_fail "gunicorn did not start"
        [ "$SECONDS" -lt "$deadline" ] || case_fail "gunicorn not ready after 30 s"
        sleep 0.2
    done
    local port master
    port=$(sed -E 's/.*:([0-9]+) .*/\1/' <<<"$listen")
    master=$(sed -E 's/.*\(([0-9]+)\)$/\1/' <<<"$listen")

    wrk -t2 -c16 -d5s "http://127.0.0.1:$port/" >"$case_dir/wrk.out" 2>&1 &
    local wrk_pid=$!
    if [ "$case_name" = split ]; then
        # A reload under load, through run.sh: new workers, same pipes.
        sleep 2
        kill -HUP "$leader"
    fi
    wait "$wrk_pid" || case_fail "wrk failed: $(cat "$case_dir/wrk.out")"
    local wrk_count
    wrk_count=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$case_dir/wrk.out")
    [ -n "$wrk_count" ] || case_fail "no request count in wrk's output: $(cat "$case_dir/wrk.out")"

    # Graceful stop; the pipeline ends by itself. A watchdog ends a hang.
    if [ "$case_name" = one ]; then
        kill -TERM "$leader"
    else
        kill -TERM "$master"
    fi
    # (In a group of its own, so that its sleep goes too when it is ended.)
    # shellcheck disable=SC2016 # expanded by that sh
    setsid sh -c 'sleep 60; kill -KILL -- "-$1"' sh "$leader" >/dev/null 2>&1 &
    local watchdog=$! rc=0
    groups+=("$watchdog")
    wait "$leader" || rc=$?
    kill -- "-$watchdog" 2>/dev/null || :
    wait "$watchdog" 2>/dev/null || :
    forget "$watchdog"
    [ "$rc" = 0 ] || case_fail "the run exited with status $rc (137: killed after 60 s)"
    if pgrep -g "$leader" >/dev/null; then
        case_fail "processes left in the group: $(pgrep -a -g "$leader")"
    fi
    forget "$leader"

    # Every logpipe exited 0.
    if [ "$(grep -c . "$case_dir/logpipe.rc")" != "$nsinks" ] || grep -qv '^0$' "$case_dir/logpipe.rc"; then
        case_fail "logpipe exit statuses: $(tr '\n' ' ' <"$case_dir/logpipe.rc")"
    fi

    # Segments: several, all compressed, all gzip-valid.
    local nseg=0 seg dir dirs=("$access_dir")
    [ "$error_dir" = "$access_dir" ] || dirs+=("$error_dir")
    for dir in "${dirs[@]}"; do
        for seg in $(segments "$dir"); do
            case $seg in
            *.gz) gzip -t "$dir/$seg" || case_fail "$dir/$seg is not valid gzip" ;;
            *) case_fail "$dir/$seg was left uncompressed" ;;
            esac
            nseg=$((nseg + 1))
        done
    done
    [ "$nseg" -ge 3 ] || case_fail "only $nseg segments"

    # Reassemble and sort the lines out.
    collate "$access_dir" >"$case_dir/access.all"
    [ "$error_dir" = "$access_dir" ] || collate "$error_dir" >"$case_dir/error.all"
    local f
    for f in "$case_dir"/*.all; do
        [ -z "$(tail -c1 "$f")" ] || case_fail "$f does not end with a newline"
    done
    grep -E "$access_re" "$case_dir/access.all" >"$case_dir/access.lines" || :
    if [ "$error_dir" = "$access_dir" ]; then
        grep -vE "$access_re" "$case_dir/access.all" >"$case_dir/error.lines" || :
    else
        grep -vE "$access_re" "$case_dir/access.all" >"$case_dir/stray.lines" || :
        [ ! -s "$case_dir/stray.lines" ] ||
            case_fail "lines in the access log that are no access lines: $(head -n 5 "$case_dir/stray.lines")"
        cp "$case_dir/error.all" "$case_dir/error.lines"
    fi
    if grep -vE "$error_re" "$case_dir/error.lines" >"$case_dir/broken.lines"; then
        case_fail "lines that are neither access nor error log lines (cut or fused?): $(head -n 5 "$case_dir/broken.lines")"
    fi
    grep -q '\[INFO\] Handling signal: term$' "$case_dir/error.lines" ||
        case_fail "no 'Handling signal: term' in the error log"
    tail -n 1 "$case_dir/error.lines" | grep -q "\[$master\] \[INFO\] Shutting down: Master$" ||
        case_fail "the error log does not end with the master's 'Shutting down: Master': $(tail -n 1 "$case_dir/error.lines")"

    # The access lines are exactly the requests answered: same ids, each once.
    local lines answered
    lines=$(wc -l <"$case_dir/access.lines")
    answered=$(wc -l <"$COUNTER_FILE")
    sed -E 's/.* rid=//' "$case_dir/access.lines" | sort >"$case_dir/logged.ids"
    sort "$COUNTER_FILE" >"$case_dir/answered.ids"
    if ! diff "$case_dir/answered.ids" "$case_dir/logged.ids" >"$case_dir/ids.diff"; then
        echo "< answered but not logged, > logged but not answered (or twice):"
        head -n 20 "$case_dir/ids.diff"
        case_fail "$answered requests answered, $lines access lines"
    fi
    [ -z "$(uniq -d "$case_dir/logged.ids")" ] || case_fail "duplicated access lines: $(uniq -d "$case_dir/logged.ids" | head -n 5)"
    # Each worker answers one request at a time and logs it before the next,
    # so its request numbers must come out in increasing order.
    sed -E 's/.* rid=//' "$case_dir/access.lines" |
        awk -F- '$2 <= last[$1] { print "worker " $1 ": request " $2 " after " last[$1]; bad = 1; exit }
                 { last[$1] = $2 } END { exit bad }' >"$case_dir/order.out" ||
        case_fail "access lines out of order: $(cat "$case_dir/order.out")"
    [ "$lines" -ge "$wrk_count" ] || case_fail "wrk counted $wrk_count responses but there are $lines access lines"
    local workers
    workers=$(sed -E 's/.* rid=([0-9]+)-.*/\1/' "$case_dir/access.lines" | sort -u | wc -l)
    if [ "$case_name" = split ]; then
        grep -q '\[INFO\] Hang up: Master$' "$case_dir/error.lines" || case_fail "no reload in the error log"
        [ "$workers" -gt 4 ] || case_fail "only $workers workers answered, none after the reload"
    fi

    echo "ok $case_name: wrk $wrk_count responses, app answered $answered, $lines access lines from $workers workers, $nseg segments"
    figures+=("$case_name $answered requests, $lines access lines, $nseg segments")
}

run_case one
run_case split
run_case pipe

summary=$(printf '%s; ' "${figures[@]}")
echo "PASS gunicorn: ${summary%; }"
