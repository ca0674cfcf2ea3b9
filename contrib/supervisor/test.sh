#!/usr/bin/env bash
# End-to-end test of contrib/supervisor/app.conf under a real supervisord:
# a producer of numbered lines runs as the program's application, is
# restarted several times mid-stream with `supervisorctl restart`, and logs
# $tail_lines lines while it shuts down each time. Then: every line the
# producer wrote must be in logpipe's output once, whole, in order, and
# every segment must be valid gzip.
set -euo pipefail
name=supervisor
restarts=5
tail_lines=300   # lines the application writes after its SIGTERM

cd "$(dirname "$0")/../.."
root=$PWD
tmp=
fail() {
    echo "FAIL $name: $*"
    if [ -n "$tmp" ]; then
        ls -la "$tmp/log" || true
        tail -n 20 "$tmp/app-logpipe.log" "$tmp/supervisord.log" 2>/dev/null || true
    fi
    exit 1
}
need() { # command, Debian package
    command -v "$1" >/dev/null && return
    [ "$(id -u)" = 0 ] || fail "could not install $2: not root (apt-get install $2)"
    apt-get install -y -qq "$2" >/dev/null 2>&1 || fail "could not install $2"
    command -v "$1" >/dev/null || fail "could not install $2"
}
need supervisord supervisor
need python3 python3
need setsid util-linux
need gzip gzip
if [ -z "${LOGPIPE:-}" ]; then
    LOGPIPE=$root/target/release/logpipe
    [ -x "$LOGPIPE" ] || cargo build --release --quiet || fail "cargo build failed"
fi

tmp=$(mktemp -d)
sv_pid=
# Every process below $1 (through parent pids), children first, then $1.
kill_tree() {
    local kid
    for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        kill_tree "$kid"
    done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    # On success supervisord is gone already; on failure this also gets
    # logpipe, which runs outside supervisord's process groups.
    [ -z "$sv_pid" ] || kill_tree "$sv_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/state"

# The producer and the checker (the same helper in each recipe's test).
cat >"$tmp/numbered.py" <<'PY'
"""Numbered lines in, numbered lines checked out.

produce STATE [K]: writes lines `line NNNNNNNN <filler>`, one write(2) per
  line, numbering on from STATE/attempted (so runs after a restart continue
  it). Before each write the number goes to STATE/attempted, after a full
  write to STATE/written: a line is "written" only once the kernel took it.
  Without K, SIGTERM kills it at once (default action). With K, SIGTERM is
  a graceful shutdown that logs: K more lines, counted in STATE/after-term,
  then exit 0.
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

if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        check(*sys.argv[2:])
PY

# The recipe as shipped, with only its paths replaced.
sed -e "s|/usr/local/bin/app|python3 $tmp/numbered.py produce $tmp/state $tail_lines|" \
    -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
    -e "s|/var/log/app/|$tmp/log/|" \
    -e "s|/var/log/supervisor/|$tmp/|" \
    contrib/supervisor/app.conf >"$tmp/app.conf"
cat >"$tmp/supervisord.conf" <<CONF
[unix_http_server]
file=$tmp/supervisor.sock
[supervisord]
logfile=$tmp/supervisord.log
pidfile=$tmp/supervisord.pid
childlogdir=$tmp
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$tmp/supervisor.sock
[include]
files = $tmp/app.conf
CONF
ctl() { supervisorctl -c "$tmp/supervisord.conf" "$@"; }

written() { if [ -e "$tmp/state/written" ]; then wc -l <"$tmp/state/written"; else echo 0; fi; }
wait_for() { # what, command...: poll up to 30 s
    local what=$1 _
    shift
    for _ in $(seq 300); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out waiting for $what"
}
more_lines() { [ "$(written)" -ge "$target" ]; }
# The running logpipe's pid, from its lock file, once it is a new one.
logpipe_pid() {
    lp=$(cat "$tmp/log/current.lock" 2>/dev/null) &&
        [ "$lp" != "$old_lp" ] && [ "$(cat "/proc/$lp/comm" 2>/dev/null)" = logpipe ]
}

supervisord -n -c "$tmp/supervisord.conf" >/dev/null 2>&1 &
sv_pid=$!
old_lp=
segments=0
for run in $(seq 0 "$restarts"); do
    wait_for "logpipe to start (run $run)" logpipe_pid
    old_lp=$lp
    target=$(($(written) + 1500)); wait_for "lines" more_lines
    kill -USR1 "$lp"   # roll now: each run leaves a finished segment
    segments=$((segments + 1))
    target=$(($(written) + 1500)); wait_for "lines" more_lines
    if [ "$run" -lt "$restarts" ]; then
        ctl restart app >"$tmp/ctl.out" || fail "supervisorctl restart: $(cat "$tmp/ctl.out")"
    fi
done
ctl stop app >"$tmp/ctl.out" || fail "supervisorctl stop: $(cat "$tmp/ctl.out")"
grep -q 'app: stopped' "$tmp/ctl.out" || fail "supervisorctl stop said: $(cat "$tmp/ctl.out")"
# The program counts as stopped only once the shell, hence logpipe, exited.
[ "$(cat "/proc/$lp/comm" 2>/dev/null)" != logpipe ] || fail "logpipe $lp still running after stop"
kill -TERM "$sv_pid"
wait "$sv_pid" || fail "supervisord exited with $?"
sv_pid=

# Each stop: the shell exited 0 after logpipe did, never on the signal.
stops=$(grep -c 'stopped: app (exit status 0)' "$tmp/supervisord.log" || true)
[ "$stops" -eq $((restarts + 1)) ] || fail "$stops clean stops, expected $((restarts + 1))"
! grep -E 'exited: app|terminated by|FATAL|BACKOFF' "$tmp/supervisord.log" || fail "unexpected program states"
[ ! -s "$tmp/app-logpipe.log" ] || fail "logpipe said: $(cat "$tmp/app-logpipe.log")"
for f in "$tmp"/log/current.*.gz; do
    gzip -t "$f" || fail "$f is not valid gzip"
done
result=$(python3 "$tmp/numbered.py" check "$tmp/log" "$tmp/state" 2>&1) || fail "$result"
[ "$(grep -o 'segments=[0-9]*' <<<"$result")" = "segments=$segments" ] || fail "expected $segments segments, one per SIGUSR1: $result"
after=$(grep -o 'after_term=[0-9]*' <<<"$result")
[ "$after" = "after_term=$(((restarts + 1) * tail_lines))" ] || fail "$after: the shutdown lines were not all written"
echo "PASS $name: $((restarts)) restarts, $result"
