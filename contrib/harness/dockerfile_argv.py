"""Prints what a container of a Dockerfile runs, for the Docker recipe's test.

    dockerfile_argv.py DOCKERFILE

The final stage's ENTRYPOINT then CMD, each NUL-terminated. Both must be
in exec form (JSON arrays), so that no shell of Docker's comes in between:
anything else fails.
"""

import json
import re
import sys


def main(path):
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    found = {}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            found = {}  # a new stage: only the last one's count
        elif word.upper() in ("ENTRYPOINT", "CMD"):
            found[word.upper()] = json.loads(rest)  # fails unless exec form
    argv = found["ENTRYPOINT"] + found["CMD"]
    if not all(isinstance(a, str) for a in argv):
        sys.exit(f"{path}: ENTRYPOINT and CMD must be arrays of strings")
    sys.stdout.write("".join(a + "\0" for a in argv))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
