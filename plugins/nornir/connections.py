# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir connection plugin ``netns``: a host is a network namespace on this machine.

``host.get_connection("netns", nr.config)`` returns an :class:`npms.runner.NetnsRunner`,
the same runner the core library's resources and the lab use, so a Nornir task hands it
straight to ``resource.gather(runner)`` / ``apply(runner, ...)`` or runs commands with it.

The namespace is ``extras["netns"]`` of the host's ``netns`` connection options, else the
host's ``hostname`` (``NpmsInventory`` with ``lab_state`` sets both).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from npms.runner import NETNS_RUN_DIR, NetnsRunner, Runner

CONNECTION_NAME = "netns"


class NetnsConnectionError(ConnectionError):
    """The namespace cannot be entered: it does not exist, or we are not root."""


class NetnsConnection:
    """Opens nothing: checks that the namespace exists and can be entered, and hands out
    a :class:`~npms.runner.NetnsRunner` for it as ``.connection``."""

    def __init__(self) -> None:
        self._runner: Optional[NetnsRunner] = None

    def open(
        self,
        hostname: Optional[str],
        username: Optional[str] = None,
        password: Optional[str] = None,
        port: Optional[int] = None,
        platform: Optional[str] = None,
        extras: Optional[Dict[str, Any]] = None,
        configuration: Any = None,
    ) -> None:
        netns = (extras or {}).get("netns") or hostname
        if not netns:
            raise NetnsConnectionError("netns connection: no namespace (set connection_options.netns.extras.netns or hostname)")
        runner = NetnsRunner(str(netns))
        if not runner.exists():
            raise NetnsConnectionError(
                f"netns connection: network namespace {netns!r} does not exist "
                f"(no {os.path.join(NETNS_RUN_DIR, str(netns))}); is the lab up (npms lab up)?"
            )
        if os.geteuid() != 0:
            raise NetnsConnectionError(
                f"netns connection: entering network namespace {netns!r} needs root (ip netns exec needs CAP_SYS_ADMIN)"
            )
        self._runner = runner

    def close(self) -> None:
        self._runner = None

    @property
    def connection(self) -> NetnsRunner:
        if self._runner is None:
            raise NetnsConnectionError("netns connection: not open")
        return self._runner


def get_runner(task: Any, connection: Optional[str] = None) -> Runner:
    """The runner of ``task.host``: its ``connection`` (default: the host's
    ``npms_connection`` data, else ``netns``), opened on first use."""
    name = connection or task.host.get("npms_connection") or CONNECTION_NAME
    runner = task.host.get_connection(name, task.nornir.config)
    if not isinstance(runner, Runner):
        raise TypeError(
            f"host {task.host.name}: connection {name!r} gives {type(runner).__name__}, not an npms runner; "
            f"use the {CONNECTION_NAME!r} connection (NpmsInventory with lab_state sets it)"
        )
    return runner
