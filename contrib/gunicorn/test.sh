#!/usr/bin/env bash
# End-to-end test of the gunicorn recipe: real gunicorn (4 sync workers)
# under load from real wrk, its logs through logpipe (--size 64K, gzip), then
# a graceful stop. Four ways of running it:
#   one    run.sh, access and error log in one logpipe; SIGTERM to run.sh
#          (what a supervisor sends), which passes it to gunicorn's master
#   split  run.sh with SPLIT=1, a logpipe for each log; SIGHUP to run.sh
#          under load (gunicorn reloads: new workers); SIGTERM straight to
#          gunicorn's master
#   pipe   the README's one-liner, gunicorn ... 2>&1 | logpipe ...; SIGTERM
#          to gunicorn's master
#   filter the README's line stage example (drop, route with tracebacks,
#          redact) against requests of each kind; see filter_case
# Each of the first three checks: every request the application answered
# (app.py appends its request id to COUNTER_FILE) has exactly one access
# line, and there is no
# other access line; each worker's lines are in its order; every line is
# whole (an access line or a gunicorn error log line); gunicorn's last line
# ("Shutting down: Master") was kept and is the last; several segments,
# all gzip-valid; every logpipe exited 0; no process of the group is left.
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

tmp=$(mktemp -d)
case_dir=
error_dir=
on_fail() {
    [ -n "$case_dir" ] || return 0
    echo "--- $case_dir:"
    ls -lR "$case_dir"
    echo "--- stderr of run (logpipe's included):"
    cat "$case_dir/run.err"
    echo "--- end of the error log:"
    tail -n 20 "$error_dir/current"
}
group= # the running case's process group (each run is a session of its own)
cleanup() {
    local p
    for p in $(jobs -p); do # wrk, if it is still running
        kill -TERM "$p" 2>/dev/null || :
    done
    if [ -n "$group" ]; then
        kill -TERM -- "-$group" 2>/dev/null || :
        sleep 0.5
        kill -KILL -- "-$group" 2>/dev/null || :
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# The access log format: gunicorn's default plus the request id app.py sends.
format='%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" rid=%({x-request-id}o)s'
access_re='^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] "GET / HTTP/1\.1" 200 [0-9]+ "-" "-" rid=[0-9]+-[0-9]+$'
error_re='^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] \[[0-9]+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] .+$'

figures=()

# run_case CASE: start gunicorn and logpipe, load, stop, check.
run_case() {
    local case_name=$1 logs access_dir nsinks
    case_dir=$tmp/$1 logs=$tmp/$1/logs
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
        # HUP at its default action: a shell cannot trap a signal that was
        # ignored when it started (as under nohup), and run.sh must pass
        # the HUP on.
        SPLIT=1 setsid env --default-signal=HUP ./run.sh "${gargs[@]}" >run.out 2>run.err &
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
    group=$leader
    cd "$repo"

    # Ready when gunicorn says where it listens and all 4 workers booted.
    local listen
    ready() {
        exited "$leader" && fail "$case_name: gunicorn did not start"
        listen=$(grep -oE 'Listening at: http://127\.0\.0\.1:[0-9]+ \([0-9]+\)' "$error_dir/current" 2>/dev/null) &&
            [ "$(grep -c 'Booting worker' "$error_dir/current")" -ge 4 ]
    }
    wait_for "gunicorn to listen with 4 workers" ready
    local port master
    port=$(sed -E 's/.*:([0-9]+) .*/\1/' <<<"$listen")
    master=$(sed -E 's/.*\(([0-9]+)\)$/\1/' <<<"$listen")

    wrk -t2 -c16 -d5s "http://127.0.0.1:$port/" >"$case_dir/wrk.out" 2>&1 &
    local wrk_pid=$!
    if [ "$case_name" = split ]; then
        # A reload under load, through run.sh: new workers, same pipes.
        sleep 2
        kill -HUP "$leader"
        hup_seen() { grep -q 'Handling signal: hup' "$error_dir/current"; }
        wait_for -t 30 "$case_name: gunicorn to act on the HUP run.sh passes on" hup_seen
    fi
    wait "$wrk_pid" || fail "$case_name: wrk failed: $(cat "$case_dir/wrk.out")"
    local wrk_count
    wrk_count=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$case_dir/wrk.out")
    [ -n "$wrk_count" ] || fail "$case_name: no request count in wrk's output: $(cat "$case_dir/wrk.out")"
    if [ "$case_name" = split ]; then
        # On a loaded machine the new workers may boot after the first load
        # ended: once all 4 have, a second round makes them answer too.
        reloaded() { [ "$(grep -c 'Booting worker' "$error_dir/current")" -ge 8 ]; }
        wait_for -t 60 "$case_name: 4 new workers after the reload" reloaded
        wrk -t1 -c8 -d2s "http://127.0.0.1:$port/" >"$case_dir/wrk2.out" 2>&1 ||
            fail "$case_name: wrk failed: $(cat "$case_dir/wrk2.out")"
        local more
        more=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$case_dir/wrk2.out")
        [ -n "$more" ] || fail "$case_name: no request count in wrk's output: $(cat "$case_dir/wrk2.out")"
        wrk_count=$((wrk_count + more))
    fi

    # Graceful stop, through run.sh or to the master; the pipeline ends by
    # itself, all of it, with status 0.
    if [ "$case_name" = one ]; then
        kill -TERM "$leader"
    else
        kill -TERM "$master"
    fi
    wait_for -t 60 "$case_name: the run to end after SIGTERM" exited "$leader"
    wait "$leader" || fail "$case_name: the run exited with status $?"
    ! pgrep -g "$leader" >/dev/null || fail "$case_name: processes left in the group: $(pgrep -a -g "$leader")"
    group=
    if [ "$(grep -c . "$case_dir/logpipe.rc")" != "$nsinks" ] || grep -qv '^0$' "$case_dir/logpipe.rc"; then
        fail "$case_name: logpipe exit statuses: $(tr '\n' ' ' <"$case_dir/logpipe.rc")"
    fi

    # The output: several segments, all gzip-valid; every line whole, an
    # access line or an error log line; the access lines exactly the
    # requests answered, each worker's in its order; the master's last
    # lines kept.
    local stop='\[INFO\] Handling signal: term$' last="\[$master\] \[INFO\] Shutting down: Master$"
    if [ "$case_name" = split ]; then
        check "$access_dir/" --compressed --min-segments 3 --lines "$access_re" \
            --requests "$COUNTER_FILE" --min-requests "$wrk_count" --min-workers 5
        local access=$result
        check "$error_dir/" --compressed --lines "$error_re" \
            --has "$stop" --has '\[INFO\] Hang up: Master$' --last "$last"
        result="access: $access; error: $result"
    else
        check "$access_dir/" --compressed --min-segments 3 --lines "$access_re" --lines "$error_re" \
            --requests "$COUNTER_FILE" --min-requests "$wrk_count" --has "$stop" --last "$last"
    fi
    echo "ok $case_name: wrk $wrk_count responses, app answered $(wc -l <"$COUNTER_FILE"), $result"
    figures+=("$case_name $result")
    case_dir=
}

# The line stage example of the README: one stream, health checks
# dropped, errors with their tracebacks routed to their own target,
# credentials and bearer tokens redacted. A client makes requests of each
# kind; the check reads every segment of both targets.
filter_case() {
    case_dir=$tmp/filter error_dir=$tmp/filter/logs/app
    local logs=$case_dir/logs
    mkdir -p "$case_dir"
    cp "$recipe/app.py" "$case_dir/"
    cd "$case_dir"
    # The access format with the Authorization header, as some set it up.
    export LOGDIR=$logs LOGPIPE=$logpipe FORMAT='%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%({authorization}i)s"'
    # shellcheck disable=SC2016 # expanded by that bash
    setsid bash -c 'gunicorn -w 2 -b 127.0.0.1:0 --access-logformat "$FORMAT" \
        --access-logfile - --error-logfile - app:app 2>&1 |
        "$LOGPIPE" --size 4K --drop "GET /healthz" \
            --route "\[ERROR\]=$LOGDIR/errors/" \
            --continuation "^(\s|Traceback |\w+(Error|Exception): )" \
            --redact @credentials --redact @auth "$LOGDIR/app/"
        echo "$?" >"$LOGDIR/logpipe.rc"' >run.out 2>run.err &
    local leader=$!
    group=$leader
    cd "$repo"
    local listen
    ready() {
        exited "$leader" && fail "filter: gunicorn did not start"
        listen=$(grep -oE 'Listening at: http://127\.0\.0\.1:[0-9]+ \([0-9]+\)' "$logs/app/current" 2>/dev/null) &&
            [ "$(grep -c 'Booting worker' "$logs/app/current")" -ge 2 ]
    }
    wait_for "gunicorn to listen with 2 workers" ready
    local port master
    port=$(sed -E 's/.*:([0-9]+) .*/\1/' <<<"$listen")
    master=$(sed -E 's/.*\(([0-9]+)\)$/\1/' <<<"$listen")
    python3 - "$port" >"$case_dir/client.out" <<'PY' || fail "filter: the client failed: $(cat "$case_dir/client.out")"
import http.client, sys
port = int(sys.argv[1])
counts = {"/": 0, "/healthz": 0, "/login": 0, "/boom": 0}
for i in range(600):
    if i % 7 == 3:
        path, headers = "/boom", {}
    elif i % 5 == 1:
        path, headers = "/login?user=u%d&password=hunter2-%d" % (i, i), {"Authorization": "Bearer tok-%d.sig" % i}
    elif i % 3 == 0:
        path, headers = "/healthz", {}
    else:
        path, headers = "/", {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    conn.getresponse().read()
    conn.close()
    counts[path.split("?")[0]] += 1
print(" ".join("%s=%d" % kv for kv in counts.items()))
PY
    kill -TERM "$master"
    wait_for -t 60 "filter: the run to end after SIGTERM" exited "$leader"
    wait "$leader" || fail "filter: the run exited with status $?"
    group=
    [ "$(cat "$logs/logpipe.rc")" = 0 ] || fail "filter: logpipe exited with status $(cat "$logs/logpipe.rc")"
    local result
    result=$(python3 - "$logs" "$(cat "$case_dir/client.out")" <<'PY'
import gzip, os, re, sys
logs, counts = sys.argv[1], dict(kv.split("=") for kv in sys.argv[2].split())
counts = {k: int(v) for k, v in counts.items()}

def content(target):
    name = re.compile(r"^current\.(\d{4}-\d{2}-\d{2})\.(\d+)(\.gz)?$")
    segs = []
    for f in os.listdir(target):
        m = name.match(f)
        if m:
            segs.append(((m.group(1), int(m.group(2))), f))
    data = b""
    for _, f in sorted(segs):
        path = os.path.join(target, f)
        data += gzip.open(path).read() if f.endswith(".gz") else open(path, "rb").read()
    return data + open(os.path.join(target, "current"), "rb").read(), len(segs)

def fail(why):
    print("FAIL " + why)
    sys.exit(1)

app, app_segs = content(os.path.join(logs, "app"))
errors, error_segs = content(os.path.join(logs, "errors"))
for secret in (b"hunter2", b"tok-"):
    if secret in app or secret in errors:
        fail("%s reached the disk" % secret.decode())
app_lines = app.decode().splitlines()
if any("/healthz" in l for l in app_lines):
    fail("a health check was written")
if any(l.startswith(("Traceback", " ")) or "Error handling request" in l for l in app_lines):
    fail("a traceback line is in the main target")
root = sum(1 for l in app_lines if '"GET / HTTP/1.1" 200' in l)
logins = sum(1 for l in app_lines if re.search(r'"GET /login\?user=u\d+&password=\[REDACTED\] HTTP/1\.1" 200 \d+ "Bearer \[REDACTED\]"$', l))
if root != counts["/"] or logins != counts["/login"]:
    fail("main target: %d of %d / lines, %d of %d redacted logins" % (root, counts["/"], logins, counts["/login"]))
# The errors target: records of a first line, the traceback, the error.
records = re.split(r"\n(?=\[\d{4}-\d{2}-\d{2} )", errors.decode().rstrip("\n"))
booms = [r for r in records if "Error handling request /boom" in r]
if len(booms) != counts["/boom"] or len(records) != len(booms):
    fail("errors target: %d records, %d of %d /boom errors" % (len(records), len(booms), counts["/boom"]))
for r in booms:
    lines = r.split("\n")
    if lines[1] != "Traceback (most recent call last):" or not lines[-1].startswith("ZeroDivisionError: "):
        fail("a traceback is not whole: %r" % r)
print("%d / and %d login lines (redacted) in %d segments; %d health checks dropped; %d tracebacks whole in %d segments of errors/"
      % (root, logins, app_segs, counts["/healthz"], len(booms), error_segs))
PY
) || fail "filter: $result"
    echo "ok filter: $result"
    figures+=("filter $result")
    case_dir=
}

run_case one
run_case split
run_case pipe
filter_case

summary=$(printf '%s; ' "${figures[@]}")
echo "PASS $name: ${summary%; }"
