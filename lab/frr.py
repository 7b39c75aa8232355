# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""FRR per lab namespace: zebra, staticd and bgpd with ``-N <netns>``.

Everything a node's daemons write (config, pid files, vty and zserv sockets, log) is in
one directory under the lab's state directory.  ``/run/frr/<netns>`` and
``/etc/frr/<netns>`` are symlinks to it, because that is where ``vtysh -N <netns>`` and
``frr-reload.py -N <netns>`` look: the lab node behaves like an FRR host started with
``-N``.  Without ``-f`` the daemons would start with an empty configuration (LAB_NOTES).
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import time
from typing import Dict, List, Optional, Tuple

from npms.runner import CommandError, LocalRunner, NetnsRunner

from .procs import alive, cmdline, read_pid, terminate

DAEMONS = ("zebra", "staticd", "bgpd")
FRR_LIB_DIR = os.environ.get("NPMS_FRR_DIR", "/usr/lib/frr")
RUN_DIR = "/run/frr"
ETC_DIR = "/etc/frr"
CRASH_DIR = "/var/tmp/frr"  # per-daemon log buffers, removed on a clean exit
CONFIG = "frr.conf"
LOG = "frr.log"
# vtysh shows its own hostname (the machine's) unless vtysh.conf names one.
VTYSH_CONF = "service integrated-vtysh-config\nhostname %s\n"


def binaries() -> List[str]:
    """Paths of the daemons and vtysh; the missing ones are the caller's error to report."""
    return [os.path.join(FRR_LIB_DIR, d) for d in DAEMONS] + [shutil.which("vtysh") or "vtysh"]


def missing_binaries() -> List[str]:
    return [b for b in binaries() if not (os.path.isfile(b) and os.access(b, os.X_OK))]


def config_text(hostname: str, node_dir: str) -> str:
    # Minimal on purpose: BGP is configured by the collection (frr-reload / vtysh), not the lab.
    return "\n".join([
        "frr defaults traditional",
        f"hostname {hostname}",
        f"log file {os.path.join(node_dir, LOG)}",
        "!",
        "",
    ])


def _ids():
    try:
        return pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid
    except KeyError:
        return None


def _chown(path: str, ids) -> None:
    if ids:
        os.chown(path, *ids)


def _link(link: str, target: str) -> None:
    """Point ``link`` at ``target``, replacing a stale symlink (never a real directory)."""
    if os.path.islink(link):
        os.unlink(link)
    elif os.path.isdir(link):
        # left by a daemon started with -N before the symlink existed: empty -> replace
        os.rmdir(link)
    os.symlink(target, link)


def unlink_paths(netns: str, node_dir: str) -> None:
    """Remove the /run/frr and /etc/frr symlinks of ``netns`` if they point at ``node_dir``."""
    for base in (RUN_DIR, ETC_DIR):
        path = os.path.join(base, netns)
        if os.path.islink(path) and os.path.realpath(path) == os.path.realpath(node_dir):
            os.unlink(path)
        elif os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
            os.rmdir(path)  # an empty dir FRR made for this namespace


def prepare(netns: str, hostname: str, node_dir: str) -> None:
    """Config, vtysh.conf and the -N symlinks; the directory belongs to the frr user."""
    ids = _ids()
    os.makedirs(node_dir, mode=0o755, exist_ok=True)
    _chown(node_dir, ids)
    for name, text in ((CONFIG, config_text(hostname, node_dir)), ("vtysh.conf", VTYSH_CONF % hostname)):
        path = os.path.join(node_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o640)
        _chown(path, ids)
    os.makedirs(RUN_DIR, exist_ok=True)
    _link(os.path.join(RUN_DIR, netns), node_dir)
    _link(os.path.join(ETC_DIR, netns), node_dir)


def start(netns: str, node_dir: str) -> Dict[str, int]:
    """Start the daemons (zebra first: the others connect to it); their pids."""
    runner = NetnsRunner(netns)
    pids = {}
    for daemon in DAEMONS:
        pid_file = os.path.join(node_dir, f"{daemon}.pid")
        argv = [os.path.join(FRR_LIB_DIR, daemon), "-d", "-N", netns,
                "-f", os.path.join(node_dir, CONFIG), "-i", pid_file,
                "--vty_socket", node_dir, "-z", os.path.join(node_dir, "zserv.api")]
        runner.run(argv, timeout=30)
        pid = _wait_pid(pid_file)
        if pid is None:
            raise CommandError(netns, argv, 1, "", f"{daemon} wrote no pid file {pid_file}; see {os.path.join(node_dir, LOG)}")
        pids[daemon] = pid
    return pids


def _wait_pid(pid_file: str, timeout: float = 5.0) -> Optional[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(pid_file)
        if pid and alive(pid):
            return pid
        time.sleep(0.02)
    return None


def running(node_dir: str) -> Dict[str, Optional[int]]:
    """daemon -> pid when it runs from this node directory, else None."""
    out: Dict[str, Optional[int]] = {}
    for daemon in DAEMONS:
        pid = read_pid(os.path.join(node_dir, f"{daemon}.pid"))
        # guard against a recycled pid: the process must be this node's daemon
        ok = bool(pid) and alive(pid) and os.path.join(node_dir, CONFIG) in cmdline(pid)
        out[daemon] = pid if ok else None
    return out


def vtysh(netns: str, command: str, timeout: float = 10.0) -> str:
    return LocalRunner().run(["vtysh", "-N", netns, "-c", command], timeout=timeout).stdout


def stop(nodes: List[Tuple[str, str]]) -> List[int]:
    """Stop the daemons of every ``(netns, node_dir)`` at once; the pids signalled.

    SIGTERM lets a daemon remove its /var/tmp/frr/<daemon>.<pid> directory; one that had
    to be killed (or had crashed) leaves it, so it is removed here.
    """
    pids = [p for _netns, node_dir in nodes for p in running(node_dir).values() if p]
    signalled = terminate(pids)
    for netns, node_dir in nodes:
        for daemon in DAEMONS:
            pid = read_pid(os.path.join(node_dir, f"{daemon}.pid"))
            if pid and not alive(pid):
                remove_crash_dir(daemon, pid)
        unlink_paths(netns, node_dir)
    return signalled


def crash_dirs(daemon: str, pid: int) -> List[str]:
    """The /var/tmp/frr directories of the daemon that ran as ``pid``.

    FRR names the directory after its pid *before* it daemonizes (so not the pid in the
    pid file); the daemon's own log buffer in it, ``logbuf.<pid>``, names the process.
    """
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(CRASH_DIR, f"{daemon}.*", f"logbuf.{pid}")))


def remove_crash_dir(daemon: str, pid: int) -> None:
    for path in crash_dirs(daemon, pid):
        shutil.rmtree(path, ignore_errors=True)
