"""Checks the lines a central system received against what produce.py wrote.

    received.py FILE --state DIR [--max-lost N] [--max-resumes N]
                [--max-repeat N] [--resume-at N,... [--max-other-repeat N]]
                [--lost-within A-B,...] [--exact-at N,...]

FILE holds the lines as received, one a line, in the order they arrived
(the text of each message: contrib/rsyslog writes that). Every line must
be, byte for byte, one that produce.py wrote with the state directory
DIR; lines may be missing or repeated, within the limits given:

  --max-lost N     at most N of the lines written are missing (default:
                   no limit; the figure is printed)
  --max-resumes N  at most N jumps back (a sender resuming from an
                   earlier position): the lines arrive in order otherwise
  --max-repeat N   no jump back repeats more than N lines
  --resume-at N,...  where senders resumed (the line after each saved
                   position): a jump back must land on one of these
                   lines, or be one of the others below
  --max-other-repeat N  a jump back that lands on none of those repeats at
                   most N lines

  --exact-at N,...  each of these lines arrives once, right after the
                   line before it (where a sender stopped cleanly and
                   started again)
  --lost-within A-B,...  every line missing is in one of these ranges of
                   line numbers (where a sender was down)

With --max-lost 0 the received lines, each taken once, must be the lines
written, in order: their sha256 is compared with that of the lines
written.

Prints one line of figures: received=, distinct=, lost=, repeated=,
resumes= (jumps back), longest_repeat=, and lost_ranges= (the first
ranges of missing numbers); exits 1, saying why, if a limit is broken.
"""

import argparse
import hashlib
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import produce  # noqa: E402 (the line function)


def ranges(numbers):
    """[1, 2, 3, 7] -> ['1-3', '7']."""
    out, start, prev = [], None, None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
    return out


def check(args):
    line = produce.line_maker(*produce.params(args.state))
    with open(f"{args.state}/written") as f:
        written = [int(x) for x in f.read().split()]
    with open(args.file, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        return None, f"{args.file} does not end with a newline"
    got, texts, broken = [], {}, []
    for i, text in enumerate(data.split(b"\n")[:-1], 1):
        m = re.match(rb"line (\d{8}) ", text)
        if m and line(int(m[1])) == text + b"\n":
            got.append(int(m[1]))
            texts.setdefault(int(m[1]), text + b"\n")
        else:
            broken.append((i, text[:90]))
    if broken:
        return None, f"{len(broken)} received lines are not lines written {broken[:3]}"
    seen, first = set(), []
    for n in got:
        if n not in seen:
            seen.add(n)
            first.append(n)
    extra = seen - set(written)
    if extra:
        return None, f"{len(extra)} lines received that were never written {sorted(extra)[:5]}"
    lost = sorted(set(written) - seen)
    repeats = [prev - n + 1 for prev, n in zip(got, got[1:]) if n <= prev]
    figures = (f"received={len(got)} distinct={len(seen)} lost={len(lost)} "
               f"repeated={len(got) - len(seen)} resumes={len(repeats)} "
               f"longest_repeat={max(repeats, default=0)} "
               f"lost_ranges={','.join(ranges(lost)[:8]) or '-'}")
    if args.max_lost is not None and len(lost) > args.max_lost:
        return figures, f"{len(lost)} lines lost, want at most {args.max_lost}"
    if args.lost_within is not None:
        spans = [tuple(int(x) for x in r.split("-")) for r in args.lost_within.split(",")]
        outside = [n for n in lost if not any(a <= n <= b for a, b in spans)]
        if outside:
            return figures, (f"{len(outside)} lines lost outside {args.lost_within}: "
                             f"{','.join(ranges(outside)[:8])}")
    if args.exact_at is not None:
        for n in (int(x) for x in args.exact_at.split(",")):
            k = [i for i, x in enumerate(got) if x == n]
            if len(k) != 1 or (k[0] > 0 and got[k[0] - 1] != n - 1):
                before = [got[i - 1] for i in k if i > 0]
                return figures, f"line {n} arrived {len(k)} times, after {before[:3]}, not once after {n - 1}"
    if args.max_resumes is not None and len(repeats) > args.max_resumes:
        return figures, f"{len(repeats)} jumps back, want at most {args.max_resumes}"
    if args.max_repeat is not None and max(repeats, default=0) > args.max_repeat:
        return figures, f"a jump back repeats {max(repeats)} lines, want at most {args.max_repeat}"
    if args.resume_at is not None:
        at = {int(x) for x in args.resume_at.split(",")}
        for prev, n in zip(got, got[1:]):
            if n <= prev and n not in at and prev - n + 1 > args.max_other_repeat:
                return figures, (f"a jump back from {prev} to {n}, {prev - n + 1} lines, lands "
                                 f"on no resume point {sorted(at)}")
        if at - seen:
            return figures, f"resume points {sorted(at - seen)} never arrived"
    if args.max_lost == 0:
        if first != sorted(written):
            return figures, "the lines, each taken once, are not in the order written"
        want = b"".join(line(n) for n in sorted(written))
        have = b"".join(texts[n] for n in first)
        if hashlib.sha256(have).digest() != hashlib.sha256(want).digest():
            return figures, "sha256 of the lines received differs from the lines written"
    return figures, None


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("file", metavar="FILE", help="the lines received")
    ap.add_argument("--state", required=True, metavar="DIR",
                    help="produce.py's state directory")
    ap.add_argument("--max-lost", type=int, metavar="N")
    ap.add_argument("--max-resumes", type=int, metavar="N")
    ap.add_argument("--max-repeat", type=int, metavar="N")
    ap.add_argument("--resume-at", metavar="N,...")
    ap.add_argument("--max-other-repeat", type=int, default=0, metavar="N")
    ap.add_argument("--lost-within", metavar="A-B,...")
    ap.add_argument("--exact-at", metavar="N,...")
    args = ap.parse_args()
    try:
        figures, error = check(args)
    except OSError as e:
        figures, error = None, str(e)
    if error:
        print(f"received.py {args.file}: {error}" + (f" ({figures})" if figures else ""))
        return 1
    print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
