# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding, measuring and stopping the lab's processes (by /proc, never by name).

The lab only ever signals processes it can prove are its own: those inside one of its
namespaces (``ip netns pids``) and those whose command line names its state directory.
Other people's labs and daemons on the same machine are never touched.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Dict, Iterable, List, Optional, Sequence, Set

from npms.runner import LocalRunner, Runner


def alive(pid: Optional[int]) -> bool:
    """True when ``pid`` runs (a zombie counts as gone)."""
    if not pid or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return False
    # The state letter follows the parenthesised command name (which may hold spaces).
    return stat.rpartition(")")[2].split()[0:1] != ["Z"]


def cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def read_pid(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# What the lab itself starts.  Only these are swept by command line: a user's
# `ansible-playbook -i <state>/ansible/hosts.yml` names the state dir too, and is not ours.
LAB_DAEMONS = frozenset(("zebra", "bgpd", "staticd", "mgmtd", "watchfrr", "wand.py"))


def pids_with_path(path: str) -> List[int]:
    """Lab daemons (``LAB_DAEMONS``) whose command line names ``path`` or something below it."""
    path = path.rstrip("/")
    inside = path + "/"
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        args = cmdline(int(entry))
        if not any(os.path.basename(a) in LAB_DAEMONS for a in args[:2]):
            continue
        if any(a == path or inside in a or a.endswith("=" + path) for a in args):
            found.append(int(entry))
    return sorted(found)


def pids_in_netns(netns: str, runner: Optional[Runner] = None) -> List[int]:
    res = (runner or LocalRunner()).run(["ip", "netns", "pids", netns], check=False)
    if not res.ok:
        return []
    return sorted(int(p) for p in res.stdout.split() if p.isdigit() and int(p) != os.getpid())


def terminate(pids: Iterable[int], timeout: float = 3.0) -> List[int]:
    """SIGTERM, then SIGKILL what is still there after ``timeout`` s; returns the pids signalled."""
    pending: Set[int] = {p for p in pids if alive(p)}
    signalled = sorted(pending)
    for pid in signalled:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = {p for p in pending if alive(p)}
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = {p for p in pending if alive(p)}
    return signalled


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def rss_kib(pids: Sequence[int]) -> Dict[int, int]:
    """Resident set size (KiB) of each live pid."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        out[pid] = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return out
