#!/usr/bin/env bash
# Test of contrib/systemd/ without systemd (none runs here).
# 1. `systemd-analyze verify` must accept every unit without a word.
# 2. app-with-logpipe.service: its own ExecStart command line, with only
#    its paths replaced, runs a producer of numbered lines through logpipe
#    and is stopped the way systemd stops it (SIGTERM to every process at
#    once), three times over.
# 3. app-log.socket + app-log.service + app.service.d/logpipe.conf: a FIFO
#    held open as systemd holds it, logpipe (its unit's ExecStart) reading
#    it, restarted twice while the application writes; then the
#    application is stopped, logging $tail_lines lines on its way out,
#    and logpipe after it.
# Each time: every line the producer wrote must be in the output once,
# whole, in order; every segment must be valid gzip; logpipe exits 0.
set -euo pipefail
name=systemd
runs=3
tail_lines=300   # lines the application writes after its SIGTERM
dir=contrib/systemd
single=$dir/app-with-logpipe.service

cd "$(dirname "$0")/../.."
root=$PWD
tmp=
fail() {
    echo "FAIL $name: $*"
    if [ -n "$tmp" ]; then
        ls -la "$tmp"/*/log || true
        tail -n 20 "$tmp"/*/*.journal 2>/dev/null || true
    fi
    exit 1
}
need() { # command, Debian package
    command -v "$1" >/dev/null && return
    [ "$(id -u)" = 0 ] || fail "could not install $2: not root (apt-get install $2)"
    apt-get install -y -qq "$2" >/dev/null 2>&1 || fail "could not install $2"
    command -v "$1" >/dev/null || fail "could not install $2"
}
need systemd-analyze systemd
need python3 python3
need gzip gzip
if [ -z "${LOGPIPE:-}" ]; then
    LOGPIPE=$root/target/release/logpipe
    [ -x "$LOGPIPE" ] || cargo build --release --quiet || fail "cargo build failed"
fi

tmp=$(mktemp -d)
started=()   # pids of the stand-ins for systemd still running
# Every process below $1 (through parent pids), children first, then $1.
kill_tree() {
    local kid
    for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        kill_tree "$kid"
    done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        kill_tree "$pid"
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/single/state" "$tmp/pair/state" "$tmp/units/single" "$tmp/units/pair"

# The producer, the checker and a stand-in for systemd.
cat >"$tmp/numbered.py" <<'PY'
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

# 1. Verify. Warnings do not change verify's exit status: any output fails.
verify() {
    local out
    out=$(systemd-analyze verify "$@" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
}
# Its ExecStart runs /bin/sh, which exists: nothing to replace.
cp "$single" "$tmp/units/single/"
verify "$tmp/units/single/${single##*/}"
# logpipe's path replaced, and an application unit for the drop-in.
sed "s|/usr/local/bin/logpipe|$LOGPIPE|" "$dir/app-log.service" >"$tmp/units/pair/app-log.service"
cp -r "$dir/app-log.socket" "$dir/app.service.d" "$tmp/units/pair/"
printf '[Service]\nExecStart=%s %s produce %s %s\n' "$(command -v python3)" \
    "$tmp/numbered.py" "$tmp/pair/state" "$tail_lines" >"$tmp/units/pair/app.service"
verify "$tmp/units/pair/app-log.socket" "$tmp/units/pair/app-log.service" "$tmp/units/pair/app.service"

# The ExecStart line of unit $1, with the paths replaced for part $2.
# systemd and the shell split it into words alike, unless it has $, % or \.
exec_start() {
    local cmd
    cmd=$(sed -n 's/^ExecStart=//p' "$1")
    if [ -z "$cmd" ] || [ "$(wc -l <<<"$cmd")" -ne 1 ]; then
        fail "$1: expected one ExecStart line: $cmd"
    fi
    case $cmd in *[\$%\\]*) fail "$1: ExecStart has \$, % or \\: this test's word splitting would not be systemd's" ;; esac
    sed -e "s|/usr/local/bin/app|python3 $tmp/numbered.py produce $tmp/$2/state|" \
        -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
        -e "s|/var/log/app/|$tmp/$2/log/|" <<<"$cmd"
}
written() { if [ -e "$state/written" ]; then wc -l <"$state/written"; else echo 0; fi; }
wait_for() { # what, command...: poll up to 30 s
    local what=$1 _
    shift
    for _ in $(seq 300); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out waiting for $what"
}
exited() { ! ps -o stat= -p "$1" | grep -qv Z; }   # gone, or a zombie to wait for
more_lines() { [ "$(written)" -ge "$target" ]; }
lines() { target=$(($(written) + $1)); wait_for "lines" more_lines; }
logpipe_pid() { # the running logpipe, from its lock file, once it is a new one
    lp=$(cat "$log/current.lock" 2>/dev/null) &&
        [ "$lp" != "$old_lp" ] && [ "$(cat "/proc/$lp/comm" 2>/dev/null)" = logpipe ]
}
# systemctl start: unit name $1 (file prefix), command $2...
start() {
    local unit=$1
    shift
    if [ "${STDIN:-}" = socket ]; then
        # <&0: a background command's standard input would be /dev/null.
        python3 "$tmp/numbered.py" service "$part/$unit" "$@" <&0 2>"$part/$unit.journal" &
    else
        python3 "$tmp/numbered.py" service "$part/$unit" "$@" </dev/null 2>"$part/$unit.journal" &
    fi
    started+=($!)
    eval "${unit//-/_}=\$!"
}
# systemctl stop: unit name $1; then its exit statuses must match $2.
stop() {
    local pid
    pid=$(eval "echo \$${1//-/_}")
    kill -TERM "$pid"
    wait_for "$1 to stop" exited "$pid"
    wait "$pid" || fail "the stand-in for systemd failed: $(cat "$part/$1.journal")"
    local rest=() p
    for p in "${started[@]}"; do
        [ "$p" = "$pid" ] || rest+=("$p")
    done
    started=("${rest[@]}")
    ! grep -vE "$2" "$part/$1.status" || fail "$1: unexpected exit status"
    [ ! -s "$part/$1.journal" ] || fail "$1 said: $(cat "$part/$1.journal")"
}
check() { # sets result
    for f in "$log"/current.*.gz; do
        gzip -t "$f" || fail "$f is not valid gzip"
    done
    result=$(python3 "$tmp/numbered.py" check "$log" "$state" 2>&1) || fail "$result"
    [ "$(grep -o 'segments=[0-9]*' <<<"$result")" = "segments=$runs" ] ||
        fail "expected $runs segments, one per SIGUSR1: $result"
}

# 2. The single unit: start, roll, stop, three times.
part=$tmp/single log=$part/log state=$part/state old_lp=
eval "set -- $(exec_start "$single" single)"
for run in $(seq "$runs"); do
    start app-with-logpipe "$@"
    wait_for "logpipe to start (run $run)" logpipe_pid
    old_lp=$lp
    lines 2000
    kill -USR1 "$lp"   # roll now: each run leaves a finished segment
    lines 2000
    # The shell and the producer die of SIGTERM (-15), which systemd
    # counts as a clean stop; logpipe must exit 0. Its status is seen
    # unless the shell collected it in the moment before dying; every
    # failure of logpipe says why on stderr, and that must stay empty.
    stop app-with-logpipe '^(logpipe 0|sh -15|python3 -15)$'
done
check
single_result=$result

# 3. The pair. The FIFO, held open read-write as systemd holds it while
# app-log.socket runs; the drop-in must point the application into it.
part=$tmp/pair log=$part/log state=$part/state old_lp=
fifo=$(sed -n 's/^ListenFIFO=//p' "$dir/app-log.socket")
[ "$(sed -n 's/^StandardOutput=file://p' "$dir/app.service.d/logpipe.conf")" = "$fifo" ] ||
    fail "the drop-in does not write into the socket's FIFO $fifo"
mkfifo -m 0600 "$part/fifo"
exec 9<>"$part/fifo"
eval "set -- $(exec_start "$dir/app-log.service" pair)"
STDIN=socket start app-log "$@" <&9   # StandardInput=socket
wait_for "logpipe to start" logpipe_pid
old_lp=$lp
start app python3 "$tmp/numbered.py" produce "$state" "$tail_lines" 9<&- >"$part/fifo" 2>&1
for run in $(seq "$runs"); do
    lines 2000
    kill -USR1 "$lp"
    lines 1000
    [ "$run" -eq "$runs" ] && break
    # systemctl restart app-log: the application goes on writing.
    stop app-log '^logpipe 0$'
    STDIN=socket start app-log "$@" <&9
    wait_for "logpipe to start again" logpipe_pid
    old_lp=$lp
done
# Shutdown order: the application first, then logpipe.
stop app '^python3 0$'
stop app-log '^logpipe 0$'
left=$(python3 -c 'import array, fcntl, termios; n = array.array("i", [0]); fcntl.ioctl(9, termios.FIONREAD, n); print(n[0])')
exec 9<&-
[ "$left" -eq 0 ] || fail "$left bytes left in the FIFO"
check
pair_result=$result
after=$(grep -o 'after_term=[0-9]*' <<<"$pair_result")
[ "$after" = "after_term=$tail_lines" ] || fail "$after: the shutdown lines were not all written"

echo "PASS $name: verify clean; single unit, $runs stops by SIGTERM to all: $single_result; socket pair, $((runs - 1)) logpipe restarts then the application stopped: $pair_result"
