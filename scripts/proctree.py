"""Stop a process and all its descendants, found by a command-line pattern.

Flower's local SuperLink runs detached and spawns SuperExec and simulation processes; killing
only the SuperLink can leave a simulation behind. Used by scripts/run.sh and the tests.

    python -m scripts.proctree 'flower-superlink.*/my/flwr/home/'
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


def kill_tree(pattern: str, grace: float = 5.0) -> list[int]:
    """SIGTERM every process whose command line matches ``pattern`` plus its descendants,
    then SIGKILL what is left after ``grace`` seconds. Returns the pids signalled."""
    procs = _processes()
    rx = re.compile(pattern)
    me = os.getpid()
    targets = {pid for pid, (_, cmd) in procs.items() if rx.search(cmd) and pid != me}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in targets} - targets
        grew = bool(children)
        targets |= children
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in targets):
            time.sleep(0.1)
    return sorted(targets)


if __name__ == "__main__":
    kill_tree(sys.argv[1])
