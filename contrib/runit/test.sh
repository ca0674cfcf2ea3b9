#!/usr/bin/env bash
# End-to-end test of contrib/runit under a real runsv (Debian's runit).
#
# The shipped run and log/run are copied into a temporary service directory
# with only the user (nobody), the paths and --size (64K, for many
# rotations) substituted; ./run starts a producer that writes numbered
# lines, one write(2) per line, and continues its numbering from a counter
# file across restarts. While it writes, the service is restarted with
# `sv restart` and the log service with `sv restart SVC/log`, alternately.
# Then the service is taken down and runsv told to exit, which closes the
# pipe so logpipe sees end of input. Checks: the segments in order, then
# current, equal byte for byte the lines 1..last the producer wrote; every
# segment is a valid gzip of at most 64 KiB of whole lines; the pipe, held
# by runsv, is the same one for every producer and every logpipe; each
# logpipe leaves quietly on runsv's TERM.
#
# Needs root (chpst -u, install -o). Run from anywhere; LOGPIPE overrides
# the binary under test.
set -euo pipefail

name=runit
restarts=5
cd "$(dirname "$0")/../.."
repo=$PWD
tmp=
runsv_pid=

fail() {
    echo "FAIL $name: $*"
    if [ -n "$tmp" ] && [ -d "$tmp/logs/app" ]; then
        echo "--- log directory:"
        ls -la "$tmp/logs/app"
        echo "--- the end of current:"
        tail -n 5 "$tmp/logs/app/current" 2>&1 | cut -c 1-200
    fi
    if [ -n "$tmp" ] && [ -s "$tmp/runsv.err" ]; then
        echo "--- runsv stderr (logpipe's messages):"
        tail -n 20 "$tmp/runsv.err"
    fi
    if [ -n "$tmp" ] && [ -s "$tmp/state/starts" ]; then
        echo "--- producer starts (pid, first number - 1):"
        cat "$tmp/state/starts"
    fi
    if [ -n "$runsv_pid" ]; then
        sv status "$tmp/svc" "$tmp/svc/log" 2>&1 || true
    fi
    exit 1
}

# Every process this test started runs with its working directory in $tmp
# (runsv chdirs to the service directory, ./run and ./log/run inherit it),
# so that is how leftovers are found: no name matching.
leftovers() {
    local p cwd
    [ -n "$tmp" ] || return 0
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        case $cwd in "$tmp" | "$tmp"/*) echo "${p#/proc/}" ;; esac
    done
}

cleanup() {
    local i pid
    if [ -n "$runsv_pid" ] && kill -0 "$runsv_pid" 2>/dev/null; then
        kill -TERM "$runsv_pid" # runsv treats TERM as `sv exit`
        for ((i = 0; i < 50; i++)); do
            kill -0 "$runsv_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if [ -n "$tmp" ]; then
        for pid in $(leftovers); do kill -KILL "$pid" 2>/dev/null || true; done
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "must run as root (the recipe uses chpst -u and install -o)"

install_pkg() { # install_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    echo "$name: installing $2" >&2
    apt-get install -y -q "$2" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; } ||
        true
    command -v "$1" >/dev/null || fail "could not install $2"
}
install_pkg runsv runit
install_pkg sv runit
install_pkg chpst runit
install_pkg gzip gzip
# The producer runs as nobody, so it needs the system python, not a shim
# in root's home.
[ -x /usr/bin/python3 ] || install_pkg /usr/bin/python3 python3-minimal
id nobody >/dev/null 2>&1 || fail "no user nobody"

if [ -z "${LOGPIPE:-}" ]; then
    LOGPIPE=$repo/target/release/logpipe
    [ -x "$LOGPIPE" ] || cargo build --release -q || fail "cargo build --release failed"
fi
[ -x "$LOGPIPE" ] || fail "no logpipe binary at $LOGPIPE"

tmp=$(mktemp -d)
chmod 0755 "$tmp" # nobody must reach the files below
svc=$tmp/svc
state=$tmp/state
logdir=$tmp/logs/app
mkdir -p "$tmp/bin" "$svc/log" "$state" "$tmp/logs"
chown nobody "$state"
# A copy, so that nobody can run it wherever the build tree is.
cp "$LOGPIPE" "$tmp/bin/logpipe"

# The producer (also the checker, with --check). One os.write per line:
# a pipe write of at most PIPE_BUF bytes is atomic, so a restart never
# leaves half a line in the pipe. It records the last number written after
# each line and stops between lines on TERM, so that it never writes a
# number twice or skips one.
cat >"$tmp/bin/app" <<EOF
#!/usr/bin/python3
import hashlib, os, re, signal, sys, time

STATE = "$state"
ALPHA = b"abcdefghijklmnopqrstuvwxyz" * 8

def line(n):
    return b"%08d %s end\n" % (n, ALPHA[: 20 + n * 7 % 150])

def produce():
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fd = os.open(STATE + "/last", os.O_RDWR | os.O_CREAT, 0o644)
    n = int(os.pread(fd, 32, 0) or b"0")
    with open(STATE + "/starts", "a") as f:
        f.write("%d %d\n" % (os.getpid(), n))
    while not stop:
        for _ in range(20):  # at most 2000 lines a second
            n += 1
            data = line(n)
            if os.write(1, data) != len(data):
                sys.exit("short write")
            os.pwrite(fd, b"%012d\n" % n, 0)
        time.sleep(0.01)

def check(path, last):
    data = open(path, "rb").read()
    want = b"".join(line(n) for n in range(1, last + 1))
    if data == want:
        return 0
    lines = data.split(b"\n")
    if lines[-1]:
        print("output does not end with a newline")
    seen, bad = [], []
    for i, l in enumerate(lines[:-1]):
        m = re.fullmatch(rb"(\d{8}) [a-z]+ end", l)
        if m and line(int(m[1])) == l + b"\n":
            seen.append(int(m[1]))
        else:
            bad.append((i + 1, l[:80]))
    missing = sorted(set(range(1, last + 1)) - set(seen))
    dups = len(seen) - len(set(seen))
    order = sum(1 for a, b in zip(seen, seen[1:]) if b != a + 1)
    print("%d bytes, want %d (sha256 %s, want %s)" % (len(data), len(want),
          hashlib.sha256(data).hexdigest()[:16], hashlib.sha256(want).hexdigest()[:16]))
    print("%d broken lines %s" % (len(bad), bad[:5]))
    print("%d missing numbers %s, %d duplicates, %d breaks in order"
          % (len(missing), missing[:10], dups, order))
    return 1

if len(sys.argv) == 4 and sys.argv[1] == "--check":
    sys.exit(check(sys.argv[2], int(sys.argv[3])))
produce()
EOF
chmod 0755 "$tmp/bin/app"

# The recipe as shipped, with the placeholders replaced.
sed -e 's|chpst -u app |chpst -u nobody |' \
    -e "s|/usr/local/bin/app|$tmp/bin/app|" contrib/runit/run >"$svc/run"
sed -e 's|-o log |-o nobody |' -e 's|chpst -u log |chpst -u nobody |' \
    -e "s|/var/log/app|$logdir|g" -e "s|/usr/local/bin/logpipe|$tmp/bin/logpipe|" \
    -e 's|--size 64M|--size 64K|' contrib/runit/log/run >"$svc/log/run"
grep -q "^exec chpst -u nobody $tmp/bin/app\$" "$svc/run" ||
    fail "contrib/runit/run no longer has the line the test substitutes"
grep -q "^exec chpst -u nobody $tmp/bin/logpipe --size 64K $logdir/\$" "$svc/log/run" ||
    fail "contrib/runit/log/run no longer has the line the test substitutes"
chmod 0755 "$svc/run" "$svc/log/run"

counter() { # the last number the producer wrote
    local v
    v=$(tr -dc 0-9 2>/dev/null <"$state/last") || true
    echo $((10#${v:-0}))
}
pid_of() { # pid_of SERVICEDIR: the pid runsv runs there, or nothing
    cat "$1/supervise/pid" 2>/dev/null || true
}
wait_for() { # wait_for WHAT COMMAND...: poll for up to 30 s
    local what=$1 i
    shift
    for ((i = 0; i < 300; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out after 30 s waiting for $what"
}
running() { [ -n "$(pid_of "$svc")" ] && [ -n "$(pid_of "$svc/log")" ]; }
past() { (($(counter) >= $1)); }
changed() { local p; p=$(pid_of "$1") && [ -n "$p" ] && [ "$p" != "$2" ]; }
stopped() { ! kill -0 "$runsv_pid" 2>/dev/null; }
# The producer's stdout and logpipe's stdin are the same pipe, and runsv's
# TERM reaches logpipe itself (log/run execs all the way down).
same_pipe() {
    local p l out in
    p=$(pid_of "$svc") l=$(pid_of "$svc/log")
    out=$(readlink "/proc/$p/fd/1") in=$(readlink "/proc/$l/fd/0")
    [[ $out == pipe:* && $out == "$in" ]] ||
        fail "producer $p writes to $out but logpipe $l reads $in"
    [ "$(readlink "/proc/$l/exe")" = "$tmp/bin/logpipe" ] ||
        fail "pid $l in the log service is $(readlink "/proc/$l/exe"), not logpipe"
    [ -n "$pipe" ] || pipe=$out
    [ "$out" = "$pipe" ] || fail "the pipe changed from $pipe to $out"
}

runsv "$svc" </dev/null >/dev/null 2>"$tmp/runsv.err" &
runsv_pid=$!
wait_for "runsv to start both services" running
wait_for "the first 1000 lines" past 1000
pipe=
same_pipe

for ((i = 1; i <= restarts; i++)); do
    # The service: a new producer on the same pipe, logpipe untouched.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log") n=$(counter)
    sv -w 30 restart "$svc" >/dev/null || fail "sv restart $svc failed"
    wait_for "a new producer" changed "$svc" "$p"
    wait_for "500 more lines after restart $i" past $((n + 500))
    [ "$(pid_of "$svc/log")" = "$l" ] || fail "the log service restarted with the service"
    same_pipe

    # The log service: TERM, logpipe writes what was in the pipe and exits
    # 0, runsv starts a new one on the same pipe; the producer never waits
    # for long and never notices.
    p=$(pid_of "$svc") l=$(pid_of "$svc/log") n=$(counter)
    sv -w 30 restart "$svc/log" >/dev/null || fail "sv restart $svc/log failed"
    wait_for "a new logpipe" changed "$svc/log" "$l"
    wait_for "500 more lines after log restart $i" past $((n + 500))
    [ "$(pid_of "$svc")" = "$p" ] || fail "the service restarted with its log service"
    same_pipe
done

# The end: the service down first, then runsv told to exit, which closes
# its end of the pipe; logpipe reads to end of input and exits 0.
sv -w 30 down "$svc" >/dev/null || fail "sv down $svc failed"
last=$(counter)
sv exit "$svc" >/dev/null || fail "sv exit $svc failed"
wait_for "runsv to exit" stopped
wait "$runsv_pid" || fail "runsv exited $?"
runsv_pid=
[ -z "$(leftovers)" ] || fail "processes left after runsv exited: $(leftovers)"

# runsv runs no log/finish, so logpipe's exit codes cannot be seen without
# wrapping it; but logpipe never exits non-zero without a message, and it
# is to say nothing at all here.
[ ! -s "$tmp/runsv.err" ] || fail "logpipe (or runsv) wrote to stderr"
starts=$(wc -l <"$state/starts")
[ "$starts" = $((restarts + 1)) ] || fail "$starts producer starts, want $((restarts + 1))"

# Reassemble: finished segments by (date, N), then the active file.
mapfile -t segs < <(find "$logdir" -maxdepth 1 -name 'current.*' -printf '%f\n' |
    sed -nE 's/^current\.([0-9]{4}-[0-9]{2}-[0-9]{2})\.([0-9]+)(\.gz)?$/\1 \2 &/p' |
    sort -k1,1 -k2,2n | cut -d' ' -f3)
((${#segs[@]} >= 5)) || fail "only ${#segs[@]} segments: --size 64K did not take effect?"
: >"$tmp/all"
for s in "${segs[@]}"; do
    [[ $s == *.gz ]] || fail "segment $s left uncompressed"
    gzip -t "$logdir/$s" || fail "segment $s is not a valid gzip file"
    size=$(zcat "$logdir/$s" | wc -c)
    ((size > 0 && size <= 65536)) || fail "segment $s holds $size bytes, not 1..65536"
    [ "$(zcat "$logdir/$s" | tail -c 1 | od -An -c | tr -d ' ')" = '\n' ] ||
        fail "segment $s does not end with a whole line"
    zcat "$logdir/$s" >>"$tmp/all"
done
cat "$logdir/current" >>"$tmp/all"
/usr/bin/python3 "$tmp/bin/app" --check "$tmp/all" "$last" ||
    fail "the output is not lines 1..$last as written"

echo "PASS $name: $last lines ($(wc -c <"$tmp/all") bytes) whole and in order through" \
    "$restarts service restarts and $restarts log restarts (one pipe throughout," \
    "logpipe silent), ${#segs[@]} gzipped segments of <= 64 KiB + current"
