"""Checks what logpipe wrote for TARGET, after it has exited.

    check.py TARGET [--state DIR [--killed] [--starts N] [--after-term N]]
             [--compressed] [--max-size BYTES] [--segments N | --min-segments N]
             [--tee FILE] [--lines RE]... [--has RE]... [--last RE]
             [--requests FILE [--min-requests N] [--min-workers N]]
             [--output FILE]

TARGET is logpipe's: DIR/ (the active file is DIR/current) or the active
file's path. The output is the finished segments, ACTIVE.DATE.N or
ACTIVE.DATE.N.gz, in (date, N) order, decompressed, then the active file.
Always checked: the active file is there; no temporary is left and no
segment is there both plain and compressed; every .gz passes `gzip -t`;
every segment holds whole lines (not empty, ends with a newline); the
output is not empty and ends with a newline.

With --state, the output must be, byte for byte and by sha256, the lines
produce.py wrote with that state directory, in order, each once: every
line the kernel took, and no other. Without --killed, every line the
producer attempted must also have been taken (it was never killed inside a
write); with it, such a line may be in the output or not.

On success prints one line of figures (lines=, bytes=, segments=, sha256=,
...) and exits 0; else prints what is wrong and exits 1.
"""

import argparse
import collections
import gzip
import hashlib
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import produce  # noqa: E402 (the line function)


class Failed(Exception):
    pass


def read_target(target):
    """The names of TARGET's finished segments in order, their contents
    (decompressed), and the active file's content."""
    if target.endswith("/") or os.path.isdir(target):
        directory, active = target, "current"
    else:
        directory, active = os.path.split(target)
    directory = directory or "."
    seg = re.compile(re.escape(active) + r"\.(\d{4}-\d{2}-\d{2})\.(\d+)(\.gz)?")
    ours = re.compile(re.escape(active) + r"\.\d{4}-\d{2}-\d{2}\.\d+.*")
    found = []
    for name in os.listdir(directory):
        if m := seg.fullmatch(name):
            found.append((m[1], int(m[2]), name))
        elif ours.fullmatch(name):
            raise Failed(f"{name} left in {directory}: a temporary of a segment")
    found.sort()
    ids = [(d, n) for d, n, _ in found]
    if len(set(ids)) != len(ids):
        raise Failed(f"a segment is there both plain and compressed: {[f for *_, f in found]}")
    names, contents = [f for *_, f in found], []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".gz"):
            t = subprocess.run(["gzip", "-t", path], capture_output=True, text=True)
            if t.returncode != 0:
                raise Failed(f"{name} fails gzip -t: {t.stderr.strip()}")
        try:
            with (gzip.open if name.endswith(".gz") else open)(path, "rb") as f:
                contents.append(f.read())
        except (OSError, EOFError) as e:
            raise Failed(f"{name} cannot be read: {e}")
    try:
        with open(os.path.join(directory, active), "rb") as f:
            current = f.read()
    except FileNotFoundError:
        raise Failed(f"no active file {active} in {directory}")
    return names, contents, current


def check_segments(args, names, contents):
    if args.segments is not None and len(names) != args.segments:
        raise Failed(f"{len(names)} segments, want {args.segments}: {names}")
    if len(names) < args.min_segments:
        raise Failed(f"only {len(names)} segments, want {args.min_segments} or more: "
                     "did --size take effect?")
    for name, data in zip(names, contents):
        if args.compressed and not name.endswith(".gz"):
            raise Failed(f"segment {name} left uncompressed")
        if not data.endswith(b"\n"):
            raise Failed(f"segment {name} holds {len(data)} bytes, "
                         "not whole lines (empty, or no newline at its end)")
        if args.max_size is not None and len(data) > args.max_size:
            raise Failed(f"segment {name} holds {len(data)} bytes, over {args.max_size}")


def read_ints(path):
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def check_state(args, data):
    """The output against the lines produce.py wrote; returns figures."""
    state = args.state
    line = produce.line_maker(*produce.params(state))
    written = read_ints(f"{state}/written")
    attempted = read_ints(f"{state}/attempted")[0]
    with open(f"{state}/starts") as f:
        starts = len(f.readlines())
    doubt = set(range(1, attempted + 1)) - set(written)
    if not args.killed and doubt:
        raise Failed(f"{len(doubt)} lines attempted but not confirmed {sorted(doubt)[:10]}: "
                     "the producer was killed inside a write")
    got, bad = [], []
    for i, l in enumerate(data.split(b"\n")[:-1], 1):
        m = re.match(rb"line (\d{8}) ", l)
        if m and line(int(m[1])) == l + b"\n":
            got.append(int(m[1]))
        else:
            bad.append((i, l[:90]))
    kept = sorted(set(got) & doubt)
    want = b"".join(line(n) for n in sorted(set(written) | set(kept)))
    have_sum, want_sum = (hashlib.sha256(b).hexdigest()[:16] for b in (data, want))
    if data != want or have_sum != want_sum:
        missing = sorted(set(written) - set(got))
        twice = sorted(n for n, c in collections.Counter(got).items() if c > 1)
        order = [(a, b) for a, b in zip(got, got[1:]) if b <= a]
        raise Failed(
            f"the output is not the lines written: {len(data)} bytes, want {len(want)} "
            f"(sha256 {have_sum}, want {want_sum}); {len(got)} lines, {len(written)} written; "
            f"{len(bad)} broken lines {bad[:3]}; missing {len(missing)} {missing[:10]}; "
            f"twice {len(twice)} {twice[:10]}; out of order {len(order)} {order[:5]}")
    if args.starts is not None and starts != args.starts:
        raise Failed(f"the producer started {starts} times, want {args.starts}")
    after = sum(read_ints(f"{state}/after-term")) if os.path.exists(f"{state}/after-term") else 0
    if args.after_term is not None and after != args.after_term:
        raise Failed(f"{after} lines written after SIGTERM, want {args.after_term}: "
                     "a graceful shutdown was cut short")
    return (f"starts={starts} after_term={after} in_doubt={len(doubt)} "
            f"kept_in_doubt={len(kept)}")


def check_requests(args, lines):
    """Access lines (ending in rid=W-N) against the request ids answered."""
    with open(args.requests) as f:
        answered = collections.Counter(f.read().split())
    ids = []
    for l in lines:
        if m := re.search(rb" rid=(\d+)-(\d+)$", l):
            ids.append((int(m[1]), int(m[2])))
    logged = collections.Counter(f"{w}-{n}" for w, n in ids)
    if logged != answered:
        raise Failed(f"{sum(answered.values())} requests answered, {len(ids)} access lines; "
                     f"answered, not logged: {sorted(answered - logged)[:10]}; "
                     f"logged, not answered (or twice): {sorted(logged - answered)[:10]}")
    last = {}
    for w, n in ids:  # a worker answers and logs one request at a time
        if n <= last.get(w, 0):
            raise Failed(f"access lines out of order: worker {w}: request {n} after {last[w]}")
        last[w] = n
    if len(ids) < args.min_requests:
        raise Failed(f"{len(ids)} access lines, but the client counted {args.min_requests} responses")
    if len(last) < args.min_workers:
        raise Failed(f"only {len(last)} workers answered, want {args.min_workers} or more")
    return f"requests={len(ids)} workers={len(last)}"


def check(args):
    names, contents, current = read_target(args.target)
    check_segments(args, names, contents)
    data = b"".join(contents) + current
    if not data.endswith(b"\n"):
        raise Failed("the output is empty or does not end with a newline")
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    lines = data.split(b"\n")[:-1]
    figures = [f"lines={len(lines)} bytes={len(data)} segments={len(names)} "
               f"sha256={hashlib.sha256(data).hexdigest()[:16]}"]
    if args.state:
        figures.append(check_state(args, data))
    if args.tee:
        with open(args.tee, "rb") as f:
            tee = f.read()
        if tee != data:
            raise Failed(f"the --tee copy differs: {len(tee)} bytes, the files {len(data)}")
    if args.lines:
        regexes = [re.compile(os.fsencode(r)) for r in args.lines]
        broken = [l for l in lines if not any(r.fullmatch(l) for r in regexes)]
        if broken:
            raise Failed(f"{len(broken)} lines of none of the expected forms (cut or fused?): "
                         f"{broken[:5]}")
    for r in args.has:
        if not any(re.search(os.fsencode(r), l) for l in lines):
            raise Failed(f"no line matches {r}")
    if args.last and not re.search(os.fsencode(args.last), lines[-1]):
        raise Failed(f"the last line does not match {args.last}: {lines[-1][:200]}")
    if args.requests:
        figures.append(check_requests(args, lines))
    return " ".join(figures)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("target", metavar="TARGET", help="logpipe's target")
    ap.add_argument("--state", metavar="DIR", help="produce.py's state directory")
    ap.add_argument("--killed", action="store_true",
                    help="the producer may have died inside a write")
    ap.add_argument("--starts", type=int, metavar="N", help="produce.py ran N times")
    ap.add_argument("--after-term", type=int, metavar="N",
                    help="produce.py wrote N lines after SIGTERM, in all")
    ap.add_argument("--compressed", action="store_true",
                    help="every finished segment is .gz")
    ap.add_argument("--max-size", type=int, metavar="BYTES",
                    help="no segment holds more than BYTES, decompressed")
    ap.add_argument("--segments", type=int, metavar="N", help="exactly N finished segments")
    ap.add_argument("--min-segments", type=int, default=0, metavar="N",
                    help="at least N finished segments")
    ap.add_argument("--tee", metavar="FILE", help="FILE holds the output's bytes too")
    ap.add_argument("--lines", action="append", default=[], metavar="RE",
                    help="every line matches one of these, whole")
    ap.add_argument("--has", action="append", default=[], metavar="RE",
                    help="some line matches RE")
    ap.add_argument("--last", metavar="RE", help="the last line matches RE")
    ap.add_argument("--requests", metavar="FILE",
                    help="ids W-N answered, one a line: the lines ending in rid=W-N "
                         "must be these, each once, each W's in increasing order")
    ap.add_argument("--min-requests", type=int, default=0, metavar="N",
                    help="at least N lines ending in rid=W-N")
    ap.add_argument("--min-workers", type=int, default=0, metavar="N",
                    help="at least N distinct W in them")
    ap.add_argument("--output", metavar="FILE", help="write the output to FILE")
    args = ap.parse_args()
    if not args.state and (args.killed or args.starts is not None or args.after_term is not None):
        ap.error("--killed, --starts and --after-term need --state")
    if not args.requests and (args.min_requests or args.min_workers):
        ap.error("--min-requests and --min-workers need --requests")
    try:
        print(check(args))
    except (Failed, OSError) as e:
        print(f"check.py {args.target}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
