"""`python -m Microservicos.tied_to_parent PARENT_PID COMMAND [ARG ...]`: run COMMAND (exec, same PID) so
that it receives SIGTERM when its parent dies, even by SIGKILL.

start.sh starts each service through this. Without it, a supervisor killed by SIGKILL (or by a
process manager's timeout) leaves its services running in their own process groups, holding the
internal ports, and the next instance would talk to them. Linux's parent-death signal
(prctl PR_SET_PDEATHSIG) survives the exec; elsewhere the command just runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def main(argv: list[str]) -> int:
    """Arm the parent-death signal, check the parent is still the one expected, then exec the command."""
    if len(argv) < 2 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m Microservicos.tied_to_parent PARENT_PID COMMAND [ARG ...]\n")
        return 2
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            sys.stderr.write(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}\n")
            return 1
    # A parent that died before the signal was armed would never send it: do not start an orphan.
    if os.getppid() != parent:
        sys.stderr.write(f"{command[0]} not started: its supervisor (pid {parent}) is gone\n")
        return 1
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
