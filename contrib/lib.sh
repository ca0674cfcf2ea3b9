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
# shellcheck disable=SC2154 # name, state, logdir, log, old_lp: set by the test

# The repository's root, wherever the test is run from.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

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

# wait_for WHAT COMMAND...: poll COMMAND for up to 30 s, or fail naming
# WHAT; the tests wait on what they can see, never for a fixed time.
wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < 300; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out after 30 s waiting for $what"
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
# 64K (for many rotations); fails if a line the test substitutes changed.
copy_recipe() {
    local dir=$1 setuid=$2 svc=$3
    sed -e "s|$setuid app |$setuid nobody |" \
        -e "s|/usr/local/bin/app|$tmp/bin/app|" "$dir/run" >"$svc/run"
    sed -e 's|-o log |-o nobody |' -e "s|$setuid log |$setuid nobody |" \
        -e "s|/var/log/app|$logdir|g" -e "s|/usr/local/bin/logpipe|$tmp/bin/logpipe|" \
        -e 's|--size 64M|--size 64K|' "$dir/log/run" >"$svc/log/run"
    grep -q "^exec $setuid nobody $tmp/bin/app\$" "$svc/run" ||
        fail "$dir/run no longer has the line the test substitutes"
    grep -q "^exec $setuid nobody $tmp/bin/logpipe --size 64K $logdir/\$" "$svc/log/run" ||
        fail "$dir/log/run no longer has the line the test substitutes"
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

### numbered.py (supervisor, docker, systemd): every line written, once

# write_numbered_py FILE: write the producer, the checker and the stand-in
# for systemd to FILE (see its docstring).
write_numbered_py() {
    cat >"$1" <<'PY'
"""Numbered lines in, numbered lines checked out.

produce STATE [K]: writes lines `line NNNNNNNN <filler>`, one write(2) per
  line, numbering on from STATE/attempted (so runs after a restart continue
  it). Before each write the number goes to STATE/attempted, after a full
  write to STATE/written: a line is "written" only once the kernel took it.
  Without K, SIGTERM kills it at once (default action). With K, SIGTERM is
  a graceful shutdown that logs: K more lines, counted in STATE/after-term,
  then exit 0.
service PREFIX CMD...: runs CMD as systemd runs a unit (see below).
check LOGDIR STATE [TEE]: reassembles the output (segments by (date, N),
  .gz decompressed, then the active file) and checks it byte for byte
  against the lines written, in order, each once; a line attempted but not
  confirmed (the process died inside write) may be there or not. With TEE,
  that file must hold the same bytes.
"""
import gzip, hashlib, os, re, signal, sys, time

def line(n):
    return b"line %08d %s\n" % (n, b"%08x" % (n * 2654435761 & 0xFFFFFFFF) * (1 + n % 12))

def produce(state, graceful):
    stop = []
    if graceful:
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    att = os.open(f"{state}/attempted", os.O_RDWR | os.O_CREAT, 0o644)
    wlog = os.open(f"{state}/written", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = int(os.pread(att, 32, 0) or b"0")
    left = graceful
    while not stop or left > 0:
        left -= bool(stop)
        n += 1
        os.pwrite(att, b"%20d\n" % n, 0)
        try:
            if os.write(1, line(n)) != len(line(n)):
                sys.exit(f"short write of line {n}")
        except BrokenPipeError:
            sys.exit(f"producer: broken pipe at line {n}")
        os.write(wlog, b"%d\n" % n)
        if not stop and n % 50 == 0:
            time.sleep(0.01)  # about 5000 lines/s: a busy log, not a benchmark
    with open(f"{state}/after-term", "a") as f:
        f.write(f"{graceful}\n")

def check(logdir, state, tee=None):
    seg = re.compile(r"current\.(\d{4}-\d{2}-\d{2})\.(\d+)(\.gz)?")
    found = sorted((m[1], int(m[2]), f) for f in os.listdir(logdir) if (m := seg.fullmatch(f)))
    ids = [(d, n) for d, n, _ in found]
    if len(set(ids)) != len(ids):
        sys.exit(f"a segment is there both plain and compressed: {found}")
    data = b""
    for _, _, f in found:
        with (gzip.open if f.endswith(".gz") else open)(f"{logdir}/{f}", "rb") as fh:
            data += fh.read()
    if os.path.exists(f"{logdir}/current"):
        with open(f"{logdir}/current", "rb") as fh:
            data += fh.read()
    written = [int(x) for x in open(f"{state}/written").read().split()]
    attempted = int(open(f"{state}/attempted").read())
    doubt = set(range(1, attempted + 1)) - set(written)
    got = []
    for i, l in enumerate(data.splitlines(keepends=True), 1):
        m = re.match(rb"line (\d{8}) ", l)
        if not m or l != line(int(m[1])):
            sys.exit(f"output line {i} is not a whole line as written: {l[:90]!r}")
        got.append(int(m[1]))
    kept = sorted(set(got) & doubt)
    expected = b"".join(line(n) for n in sorted(set(written) | set(kept)))
    if data != expected:
        missing = sorted(set(written) - set(got))
        disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a][:5]
        sys.exit(f"output differs from what was written: {len(got)} lines, "
                 f"{len(written)} written, missing {len(missing)} {missing[:10]}, "
                 f"out of order or twice {disorder}")
    if tee is not None:
        t = open(tee, "rb").read()
        if t != data:
            sys.exit(f"--tee copy differs: {len(t)} bytes, file output {len(data)} bytes")
    after = sum(int(x) for x in open(f"{state}/after-term").read().split()) if os.path.exists(f"{state}/after-term") else 0
    print(f"lines={len(got)} bytes={len(data)} segments={len(found)} after_term={after} "
          f"in_doubt={len(doubt)} kept_in_doubt={len(kept)} sha256={hashlib.sha256(data).hexdigest()[:16]}")

def service(prefix, *argv):
    """Stands in for systemd running a unit: the command in a session of
    its own with standard input /dev/null (or ours, with STDIN=socket, for
    StandardInput=socket); on our SIGTERM (systemctl stop),
    SIGTERM and SIGCONT to every process of it at once
    (KillMode=control-group), then wait until all have exited, as systemd
    waits for the cgroup to empty. As a subreaper it also collects
    logpipe's status after the shell is gone. Writes PREFIX.pid, and
    `NAME STATUS` for each process in PREFIX.status."""
    import ctypes, subprocess
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    stdin = None if os.environ.get("STDIN") == "socket" else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=stdin, start_new_session=True)
    with open(f"{prefix}.pid", "w") as f:
        f.write(f"{p.pid}\n")
    while not stop:
        time.sleep(0.05)
    names = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == p.pid:
                names[int(pid)] = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            pass
    os.killpg(p.pid, signal.SIGTERM)
    os.killpg(p.pid, signal.SIGCONT)
    with open(f"{prefix}.status", "w") as f:
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            f.write(f"{names.get(pid, pid)} {os.waitstatus_to_exitcode(status)}\n")

if __name__ == "__main__":
    if sys.argv[1] == "service":
        service(*sys.argv[2:])
    elif sys.argv[1] == "produce":
        produce(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        check(*sys.argv[2:])
PY
}

# new_logpipe: sets lp to the logpipe running in $log, from its lock file,
# once it is another than $old_lp: the one just started.
new_logpipe() {
    lp=$(cat "$log/current.lock" 2>/dev/null) &&
        [ "$lp" != "$old_lp" ] && [ "$(cat "/proc/$lp/comm" 2>/dev/null)" = logpipe ]
}

# check_numbered SEGMENTS [TEE]: every segment in $log is valid gzip, the
# output is every line written to $state once, in order (and TEE holds the
# same bytes), and there are SEGMENTS segments, one per SIGUSR1 the test
# sent. Sets result to the checker's figures.
check_numbered() {
    local f
    for f in "$log"/current.*.gz; do
        gzip -t "$f" || fail "$f is not valid gzip"
    done
    result=$(python3 "$tmp/numbered.py" check "$log" "$state" "${@:2}" 2>&1) || fail "$result"
    [ "$(grep -o 'segments=[0-9]*' <<<"$result")" = "segments=$1" ] ||
        fail "expected $1 segments, one per SIGUSR1: $result"
}
# check_after_term LINES: the result of check_numbered counts LINES lines
# written after SIGTERM, all the graceful shutdowns logged.
check_after_term() {
    local after
    after=$(grep -o 'after_term=[0-9]*' <<<"$result")
    [ "$after" = "after_term=$1" ] || fail "$after: the shutdown lines were not all written"
}
