# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one seam to a node: run a command on it.

Resources, the lab and the probes never call ``subprocess`` themselves; they are handed a
``Runner``.  ``LocalRunner`` runs on this machine, ``NetnsRunner`` inside a network
namespace on this machine (the lab), and front ends may supply others (an Ansible module
runs locally on its target; a Nornir connection hands its task a runner).

Command input (``stdin``) can carry secrets such as WireGuard private keys: it is never
stored in a ``Result`` nor put in an error message.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

NETNS_RUN_DIR = "/run/netns"


class CommandError(Exception):
    """A command exited non-zero (or could not start, or timed out)."""

    def __init__(self, where: str, argv: Sequence[str], rc: int, stdout: str, stderr: str):
        self.where = where
        self.argv = tuple(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip().splitlines()
        tail = detail[-1] if detail else "no output"
        super().__init__(f"{where}: {' '.join(self.argv)}: exit {rc}: {tail}")


@dataclass(frozen=True)
class Result:
    argv: Tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Runner:
    """Runs argv lists somewhere.  Subclasses only say how argv is wrapped."""

    #: a name for messages: the host or namespace the commands reach
    where = "local"

    def wrap(self, argv: Sequence[str]) -> Tuple[str, ...]:
        return tuple(argv)

    def run(
        self,
        argv: Sequence[str],
        stdin: Optional[str] = None,
        check: bool = True,
        timeout: float = 60.0,
        env: Optional[Dict[str, str]] = None,
    ) -> Result:
        argv = tuple(str(a) for a in argv)
        full = self.wrap(argv)
        run_env = None
        if env:
            run_env = dict(os.environ)
            run_env.update(env)
        try:
            proc = subprocess.run(
                full,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=run_env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandError(self.where, argv, 127, "", f"command not found: {exc.filename}") from None
        except subprocess.TimeoutExpired:
            raise CommandError(self.where, argv, 124, "", f"timed out after {timeout:g} s") from None
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise CommandError(self.where, argv, proc.returncode, proc.stdout, proc.stderr)
        return result


class LocalRunner(Runner):
    """Commands on this machine."""


class NetnsRunner(Runner):
    """Commands inside the network namespace ``netns`` (``ip netns exec``) on this machine."""

    def __init__(self, netns: str):
        self.netns = netns
        self.where = netns

    def wrap(self, argv: Sequence[str]) -> Tuple[str, ...]:
        return netns_argv(self.netns, argv)

    def exists(self) -> bool:
        return os.path.exists(os.path.join(NETNS_RUN_DIR, self.netns))


def netns_argv(netns: str, argv: Sequence[str]) -> Tuple[str, ...]:
    """argv that runs ``argv`` inside the named network namespace."""
    return ("ip", "netns", "exec", netns) + tuple(argv)
