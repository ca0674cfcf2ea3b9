"""The application in the recipes' tests: numbered lines on standard output.

    produce.py --state DIR [--rate N] [--length MIN:MAX] [--seed N]
               [--count N] [--graceful K]

Writes `line NNNNNNNN <filler>` lines, one write(2) per line, numbered on
from the last number a run with the same DIR attempted, so that the runs
of a restarted service continue one sequence. A line is at most PIPE_BUF
bytes, so that a write to a pipe is atomic: a restart never leaves half a
line in the pipe. The filler is hex digits, its length and digits from
--seed and the line's number, so check.py can rebuild every line.

It keeps in DIR, for check.py and the test's shell:
  params      the line options (a run with other options refuses to start)
  attempted   the number of the line being written, put there before the write
  written     one number a line, appended once the kernel took the line
  starts      `PID FIRST-1` for each run
  after-term  for each run stopped by SIGTERM with --graceful, the lines
              it wrote after the signal

A line counts as written only once write(2) returned; a run killed inside
a write leaves a line that check.py --killed takes as in doubt.

SIGTERM, without --graceful, kills at once (its default action). With
--graceful K it is a graceful shutdown that logs: K more lines, then exit
0 (K may be 0: stop between two lines).
"""

import argparse
import hashlib
import json
import os
import select
import signal
import sys
import time

PREFIX = len(b"line 00000000 ")


def line_maker(seed, shortest, longest):
    """The function from a line's number to its bytes, newline included."""

    def line(n):
        h = hashlib.sha256(b"%d:%d" % (seed, n)).hexdigest().encode()
        size = shortest + int(h[:8], 16) % (longest - shortest + 1)
        filler = (h * (size // len(h) + 1))[: size - PREFIX - 1]
        return b"line %08d %s\n" % (n, filler)

    return line


def length_range(text):
    """MIN:MAX (or N) bytes a line, newline included."""
    low, _, high = text.partition(":")
    low, high = int(low), int(high or low)
    if not PREFIX + 2 <= low <= high <= select.PIPE_BUF:
        raise argparse.ArgumentTypeError(
            f"want {PREFIX + 2} <= MIN <= MAX <= {select.PIPE_BUF} (PIPE_BUF)")
    return low, high


def params(state):
    """The line options DIR's producer recorded: seed, shortest, longest."""
    with open(f"{state}/params") as f:
        p = json.load(f)
    return p["seed"], p["shortest"], p["longest"]


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--state", required=True, metavar="DIR",
                    help="where the counters are kept (must exist)")
    ap.add_argument("--rate", type=int, default=5000, metavar="N",
                    help="lines a second, about (default 5000)")
    ap.add_argument("--length", type=length_range, default=(24, 180),
                    metavar="MIN:MAX", help="bytes a line (default 24:180)")
    ap.add_argument("--seed", type=int, default=0, help="for the filler (default 0)")
    ap.add_argument("--count", type=int, metavar="N",
                    help="exit 0 once line N is written (default: never)")
    ap.add_argument("--graceful", type=int, metavar="K",
                    help="on SIGTERM, write K more lines, then exit 0")
    args = ap.parse_args()
    state = args.state

    mine = {"seed": args.seed, "shortest": args.length[0], "longest": args.length[1]}
    try:
        with open(f"{state}/params", "x") as f:
            json.dump(mine, f)
    except FileExistsError:
        if params(state) != tuple(mine.values()):
            sys.exit(f"produce.py: {state} holds lines of other options {params(state)}")
    line = line_maker(*params(state))

    stop = []
    if args.graceful is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    attempted = os.open(f"{state}/attempted", os.O_RDWR | os.O_CREAT, 0o644)
    written = os.open(f"{state}/written", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = int(os.pread(attempted, 32, 0) or b"0")
    with open(f"{state}/starts", "a") as f:
        f.write(f"{os.getpid()} {n}\n")
    batch = max(1, args.rate // 100)  # then sleep 10 ms
    after = 0  # lines begun after SIGTERM
    while not stop or after < args.graceful:
        if args.count is not None and n >= args.count:
            break
        after += bool(stop)
        n += 1
        data = line(n)
        os.pwrite(attempted, b"%20d\n" % n, 0)
        try:
            if os.write(1, data) != len(data):
                sys.exit(f"produce.py: short write of line {n}")
        except BrokenPipeError:
            sys.exit(f"produce.py: broken pipe at line {n}")
        os.write(written, b"%d\n" % n)
        if not stop and n % batch == 0:
            time.sleep(0.01)
    if stop:
        with open(f"{state}/after-term", "a") as f:
            f.write(f"{after}\n")


if __name__ == "__main__":
    main()
