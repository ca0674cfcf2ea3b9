"""Stands in for systemd running a unit, in the systemd recipe's test.

    service.py PREFIX COMMAND [ARG]...

Runs COMMAND in a session of its own with standard input /dev/null, or
this process's own with STDIN=socket in the environment (as
StandardInput=socket gives the unit its socket). On SIGTERM (systemctl
stop), sends SIGTERM and SIGCONT to every process of the session at once
(KillMode=control-group), then waits until all have exited, as systemd
waits for the cgroup to empty; as a subreaper it collects the status of
processes whose parent died first (logpipe, after the shell). Writes
COMMAND's pid to PREFIX.pid and, once all have exited, `NAME STATUS` for
each process to PREFIX.status (STATUS as os.waitstatus_to_exitcode: -15
for a death by SIGTERM).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main(prefix, *argv):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
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
                with open(f"/proc/{pid}/comm") as f:
                    names[int(pid)] = f.read().strip()
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
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
