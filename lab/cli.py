# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``npms lab up | down | status | impair | restore``: a thin front end on :class:`npms_lab.Lab`.

Exit codes as for every ``npms`` command: 0 success, 1 failure while running (and
``status`` when something is missing), 2 bad input (unknown link, invalid inventory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, List

from npms.cli import EXIT_FAILED, EXIT_OK, CliError

from .core import DEFAULT_INVENTORY, Lab, LabError, LabStatus

PREFIX_ENV = "NPMS_LAB_PREFIX"


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def setup(parser: argparse.ArgumentParser) -> Callable:
    """Adds the lab's sub-commands to ``npms lab``'s parser; returns the function that runs them."""
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.required = True

    def common(sp: argparse.ArgumentParser, inventory: bool = False) -> None:
        if inventory:
            sp.add_argument("inventory", metavar="INVENTORY", nargs="?", default=DEFAULT_INVENTORY,
                            help=f"inventory directory or file (default: {DEFAULT_INVENTORY})")
        sp.add_argument("--prefix", "-p", default=os.environ.get(PREFIX_ENV, ""),
                        help=f"namespace name prefix, so several labs can coexist (default: ${PREFIX_ENV}, else none: "
                             "namespaces are named after the nodes)")

    sp = sub.add_parser("up", help="build the lab (idempotent; cleans up a crashed lab first)",
                        description="Build every inventory node as a network namespace, with WAN links, "
                                    "impairments and FRR daemons. A second up changes nothing.")
    common(sp, inventory=True)
    sp = sub.add_parser("down", help="remove everything the lab made",
                        description="Remove the lab's namespaces, processes, sockets and state directory.")
    common(sp, inventory=True)
    sp = sub.add_parser("status", help="nodes, links, impairments and daemons; exit 1 when something is missing",
                        description="Show the lab; exit 1 (naming it) when something is missing.")
    common(sp)
    sp.add_argument("--format", "-f", choices=("table", "json"), default="table", help="output format (default: table)")
    sp = sub.add_parser("impair", help="change a WAN link's delay, jitter, loss or rate at run time",
                        description="Change a WAN link's impairment, in both directions; values not given stay as they are.")
    common(sp)
    sp.add_argument("link", metavar="LINK", help="link name, or its two ends: core-lon~core-fra (also a:b, a/b, a,b)")
    sp.add_argument("--delay", type=float, metavar="MS", help="one-way delay, ms")
    sp.add_argument("--jitter", type=float, metavar="MS", help="jitter (standard deviation of the delay), ms")
    sp.add_argument("--loss", type=float, metavar="PCT", help="packet loss, percent, each direction")
    sp.add_argument("--rate", type=float, metavar="MBPS", help="rate limit, Mbit/s")
    sp = sub.add_parser("restore", help="back to the inventory's values (one link, or all)",
                        description="Set one WAN link (or every WAN link) back to the inventory's values.")
    common(sp)
    sp.add_argument("link", metavar="LINK", nargs="?", help="link name or ends (default: every WAN link)")
    return run


def run(args: argparse.Namespace) -> int:
    try:
        lab = Lab(getattr(args, "inventory", None), args.prefix, echo=_write)
        action = args.lab_command
        if action == "up":
            lab.up()
        elif action == "down":
            lab.down()
        elif action == "status":
            return _status(lab, args.format)
        elif action == "impair":
            values = (args.delay, args.jitter, args.loss, args.rate)
            if all(v is None for v in values):
                raise CliError("npms lab impair: give at least one of --delay, --jitter, --loss, --rate")
            lab.impair(args.link, delay_ms=args.delay, jitter_ms=args.jitter, loss_pct=args.loss, rate_mbps=args.rate)
        elif action == "restore":
            lab.restore(args.link)
    except LabError as exc:
        raise CliError(str(exc).splitlines(), exc.code) from None
    return EXIT_OK


def _status(lab: Lab, fmt: str) -> int:
    st = lab.status()
    if fmt == "json":
        _write(json.dumps(st.to_data(), indent=2, sort_keys=True))
    else:
        for line in format_status(st):
            _write(line)
    return EXIT_OK if st.ok else EXIT_FAILED


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _imp_text(imp) -> str:
    if not imp:
        return "-"
    rate = "-" if imp.get("rate_mbps") is None else "%g" % imp["rate_mbps"]
    return "%g / %g / %g / %s" % (imp["delay_ms"], imp["jitter_ms"], imp["loss_pct"], rate)


def format_status(st: LabStatus) -> List[str]:
    if not st.up:
        return list(st.problems)
    daemons = {}
    for d in st.daemons:
        if d["node"]:
            daemons.setdefault(d["node"], []).append(d["daemon"] + ("" if d["running"] else " (DOWN)"))
    lines = [f"lab {st.prefix or '(default)'}: {len(st.nodes)} namespaces, {len(st.links)} links, "
             f"{sum(1 for d in st.daemons if d['running'])}/{len(st.daemons)} daemons; "
             f"{st.processes} processes, {st.rss_mib:.0f} MiB RSS; state {st.state_dir}", ""]
    rows = [["NODE", "ROLE", "NETNS", "STATE", "DAEMONS"]]
    for n in st.nodes:
        rows.append([n["name"], n["role"], n["netns"], "ok" if n["present"] else "MISSING",
                     " ".join(daemons.get(n["name"], [])) or "-"])
    lines += _table(rows) + [""]
    rows = [["LINK", "KIND", "A", "B", "STATE", "DELAY/JITTER ms / LOSS % / RATE Mb/s (each direction)"]]
    for lk in st.links:
        if lk["kind"] == "lan":
            continue
        imp = lk.get("impairment")
        text = _imp_text(imp)
        if imp and lk.get("nominal") and imp != lk["nominal"]:
            text += "  (impaired; inventory: %s)" % _imp_text(lk["nominal"])
        rows.append([lk["name"], lk["kind"], f"{lk['a']}:{lk['a_if']}", f"{lk['b']}:{lk['b_if']}",
                     "up" if lk["up"] else "DOWN", text])
    lines += _table(rows)
    engine = [d for d in st.daemons if not d["node"]]
    if engine:
        lines += [""] + ["%s: %s" % (d["daemon"], "pid %s" % d["pid"] if d["running"] else "NOT RUNNING") for d in engine]
    if st.problems:
        lines += ["", f"{len(st.problems)} problem{'s' if len(st.problems) != 1 else ''}:"] + [f"  {p}" for p in st.problems]
    else:
        lines += ["", "all present"]
    return lines
