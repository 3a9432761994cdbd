"""Run a command and report what its whole process tree used: wall time, CPU time and peak summed RSS.

    .venv/bin/python scripts/tree_usage.py .venv/bin/python -m pytest

Every 0.2 s it reads /proc (Linux) for the command and all its descendants, including those reparented
away from it (a server a pytest-xdist worker started, say), and sums their resident memory; the peak of
that sum is reported with the largest processes at that moment. CPU time is user+sys of every descendant
the command waited for, plus the last reading of those reparented away. Stdlib only.

A child that has not yet run a program of its own (between fork or vfork and exec: same command line as its
parent) shares its parent's pages, and its RSS is the parent's: it is not added again. Summing RSS every
0.2 s caught such a child of a 1.1 GB pytest-xdist worker, as a third "worker", at the peak.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(parent pid, start time, user+sys ticks, resident pages) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[21])


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError:
        return "?"


def _unexeced(pid: int, parent: int, known: dict[int, int | None], execed: set[int]) -> bool:
    """Whether ``pid`` is a fork of its parent (in the tree) that has not exec'd yet; once it has, it is
    remembered in ``execed`` and its command line is not read again."""
    if pid in execed:
        return False
    if parent in known and _command_line(pid) == _command_line(parent):
        return True
    execed.add(pid)
    return False


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    started = time.monotonic()
    proc = subprocess.Popen(argv)
    known: dict[int, int | None] = {proc.pid: None}  # pid -> start time (None: not read yet)
    orphan_ticks: dict[tuple[int, int], int] = {}
    peak, largest = 0, []
    execed: set[int] = {proc.pid}  # processes known to run a program of their own
    while proc.poll() is None:
        stats = {int(name): s for name in os.listdir("/proc") if name.isdigit() and (s := _stat(int(name)))}
        grew = True
        while grew:
            grew = False
            for pid, (parent, start, _, _) in stats.items():
                if pid not in known and parent in known:
                    known[pid], grew = start, True
        total, skipped = 0, set()
        for pid in list(known):
            current = stats.get(pid)
            if current is None or known[pid] not in (None, current[1]):
                del known[pid]
                execed.discard(pid)
                continue
            if _unexeced(pid, current[0], known, execed):
                skipped.add(pid)
                continue
            total += current[3] * PAGE
            if current[0] == 1 and pid != proc.pid:
                orphan_ticks[(pid, current[1])] = current[2]
        if total > peak:
            peak = total
            sizes = sorted(
                ((stats[pid][3] * PAGE, pid) for pid in known if pid in stats and pid not in skipped),
                reverse=True,
            )
            largest = [f"{rss / 2**20:6.0f} MB  {_command_line(pid)}" for rss, pid in sizes[:6]]
        time.sleep(0.2)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + sum(orphan_ticks.values()) / TICK
    with open("/proc/loadavg") as file:
        load = " ".join(file.read().split()[:3])
    print(
        f"exit {proc.returncode}: wall {wall:.0f} s, CPU (user+sys, whole tree) {cpu:.0f} s, "
        f"peak RSS summed over the tree {peak / 2**30:.2f} GiB, load average at the end {load}",
        file=sys.stderr,
    )
    print("largest processes at the peak:\n  " + "\n  ".join(largest), file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
