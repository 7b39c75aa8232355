# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control loop's pure parts, shared by every runner (Nornir: ``npms loop``, Ansible:
``playbooks/control_loop.yml``): which measurements a loop reads, the per-node bundles,
the report and the lock that keeps runs from overlapping.

The loop: **probe -> ingest -> compute -> render -> deploy -> verify -> report**.

* *ingest* stores each node's samples as one batch ``<node>-<epoch>`` (a re-run of the
  same loop counts them once);
* *compute* reads, per directed pair with an inventory link, the newest window
  (:func:`loop_measurements`: the window this loop's probes filled, even if not closed
  yet, so that a change measured now moves paths now) and keeps the previous loop's
  paths as ``current`` (hysteresis);
* *render* makes one bundle per node (:mod:`npms.bundle`), epoch one more than the last;
* *deploy* and *verify* are the runner's (``npms.bundle.apply_bundle`` per node, then a
  forced check-mode pass that must find nothing to change; a node failing either is put
  back to its previous bundle and the loop carries on);
* *report* (:func:`build_report`, :func:`summary_text`): per tenant and class the chosen
  path, its metrics and verdict, and every change with the engine's reason in words.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from .measurements import Measurement
from .model import Inventory

LOCK_NAME = "loop.lock"
ERROR_CHARS = 240  # per node in the text summary
REPORT_PATH_FIELDS = ("tenant", "traffic_class", "src", "dst", "path", "metrics", "verdict", "profile", "fec", "direct", "reason")


class LoopBusy(RuntimeError):
    """Another loop holds the lock (runs never overlap)."""


@contextmanager
def loop_lock(state_dir: str) -> Iterator[None]:
    """Exclusive, non-blocking: a second loop fails at once instead of queueing behind
    the first (the scheduler's next tick will run)."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, LOCK_NAME)
    with open(path, "a+", encoding="ascii") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoopBusy(f"another control loop is running (lock {path} is held)") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def linked_pairs(inv: Inventory) -> set:
    """Directed (src, dst) pairs the path engine takes measurements for (its links)."""
    pairs = set()
    for lk in inv.links:
        if lk.kind in ("core", "access", "direct"):
            pairs.add((lk.a, lk.b))
            pairs.add((lk.b, lk.a))
    return pairs


def loop_measurements(store: Any, inv: Inventory, now: float, since: Optional[float] = None) -> List[Measurement]:
    """Per directed linked pair (and tenant, for edge pairs), the newest window starting
    in the two windows before ``since`` (when this loop's probing started) or later: this
    loop's own when its probes landed, else the one before.  A pair measured in one
    direction only also stands for the other (round trips)."""
    start = min(now, since if since is not None else now) - 2 * float(store.window_s)
    newest: Dict[Any, Measurement] = {}
    pairs = linked_pairs(inv)
    for tenant in [None] + sorted(inv.tenants):
        for m in store.windows(tenant, start, now + 1):
            if (m.src, m.dst) not in pairs:
                continue
            key = (m.src, m.dst, m.tenant)
            if key not in newest or (m.window_start or 0) > (newest[key].window_start or 0):
                newest[key] = m
    # Probes measure round trips from one end (edges probe their POPs, not the other way
    # round): a pair measured one way only stands for both directions.
    for (src, dst, tenant), m in list(newest.items()):
        newest.setdefault((dst, src, tenant), dataclasses.replace(m, src=dst, dst=src))
    return [newest[k] for k in sorted(newest, key=lambda k: (k[0], k[1], k[2] or ""))]


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(epoch: int, paths: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]],
                 nodes: Mapping[str, Mapping[str, Any]], steps: Mapping[str, Any],
                 measurements: int, check_mode: bool = False) -> Dict[str, Any]:
    """The loop's report (JSON-able): chosen paths, changes with reasons, per-node deploy
    results, per-step timings."""
    before = {(p["tenant"], p["traffic_class"], p["src"], p["dst"]): p for p in previous}
    changes = []
    for p in paths:
        key = (p["tenant"], p["traffic_class"], p["src"], p["dst"])
        old = before.get(key)
        if old is not None and old.get("path") != p.get("path"):
            changes.append({"tenant": p["tenant"], "traffic_class": p["traffic_class"], "src": p["src"], "dst": p["dst"],
                            "from": old.get("path"), "to": p.get("path"), "verdict": p.get("verdict"),
                            "reason": _change_reason(p)})
    failed = sorted(n for n, r in nodes.items() if r.get("error"))
    return {
        "epoch": epoch, "finished": now_iso(), "check_mode": check_mode, "steps": dict(steps),
        "measurements": measurements,
        "nodes": {n: dict(r) for n, r in sorted(nodes.items())},
        "failed_nodes": failed,
        "rolled_back": sorted(n for n, r in nodes.items() if r.get("rolled_back")),
        "paths": [{k: p.get(k) for k in REPORT_PATH_FIELDS} for p in paths],
        "changes": changes,
        "verdicts": _verdict_counts(paths),
    }


def _change_reason(p: Mapping[str, Any]) -> str:
    """The engine's own words on why the path moved (it names the measurement)."""
    reason = str(p.get("reason") or "")
    for marker in ("; current path", "; the current path"):
        if marker in reason:
            return reason.split(marker, 1)[1].strip().lstrip("; ")
    return reason


def _verdict_counts(paths: Sequence[Mapping[str, Any]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for p in paths:
        out[str(p.get("verdict"))] = out.get(str(p.get("verdict")), 0) + 1
    return dict(sorted(out.items()))


def summary_text(report: Mapping[str, Any], tenants: Optional[Sequence[str]] = None) -> str:
    """The report for people: changes first, then per tenant and class its pairs."""
    lines = [f"npms control loop, epoch {report['epoch']}, {report['finished']}"
             + (" (check mode: nothing deployed)" if report.get("check_mode") else "")]
    steps = report.get("steps") or {}
    if steps:
        lines.append("steps: " + ", ".join(f"{k} {v.get('seconds', 0):.1f} s" for k, v in steps.items()))
    nodes = report.get("nodes") or {}
    changed = sorted(n for n, r in nodes.items() if r.get("changed"))
    lines.append(f"nodes: {len(nodes)}, changed {len(changed)}, failed {len(report.get('failed_nodes') or [])}, "
                 f"rolled back {len(report.get('rolled_back') or [])}")
    for n in report.get("failed_nodes") or []:
        r = nodes[n]
        error = str(r.get("error"))
        error = error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS] + "... (the JSON report has it all)"
        lines.append(f"  FAILED {n}: {error}" + (" (rolled back to its previous bundle)" if r.get("rolled_back") else ""))
    if report.get("changes"):
        lines.append(f"path changes: {len(report['changes'])}")
        for c in report["changes"]:
            lines.append(f"  {c['tenant']}/{c['traffic_class']} {c['src']} -> {c['dst']}: "
                         f"{'>'.join(c['from'] or [])} => {'>'.join(c['to'] or [])}: {c['reason']}")
    else:
        lines.append("path changes: none")
    for p in report.get("paths") or []:
        if tenants and p["tenant"] not in tenants:
            continue
        m = p.get("metrics") or {}
        lines.append(f"  {p['tenant']}/{p['traffic_class']} {p['src']} -> {p['dst']}: {'>'.join(p['path'] or []) or '-'} "
                     f"[{p['verdict']}] latency {m.get('latency_ms', 0):.1f} ms, loss {m.get('loss_pct', 0):.3f}%")
    return "\n".join(lines) + "\n"


def save_report(state_dir: str, report: Mapping[str, Any]) -> str:
    d = os.path.join(state_dir, "reports")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{report['epoch']}.json")
    for target in (path, os.path.join(state_dir, "report.json")):
        tmp = target + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, target)
    return path


def load_json(path: str, default: Any) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


# --- the steps, shared by the Nornir loop and the Ansible one (module loop_step) ---------------
def ingest_step(store: Any, samples_by_node: Mapping[str, Sequence[Any]], epoch: int) -> Dict[str, Any]:
    """Each node's samples as one batch ``<node>-<epoch>`` (a re-run of this loop counts
    them once)."""
    out = {"samples": 0, "accepted": 0, "rejected": 0, "nodes": 0}
    for node, samples in sorted(samples_by_node.items()):
        if not samples:
            continue
        res = store.ingest(node, f"{node}-{epoch}", list(samples))
        out["samples"] += len(samples)
        out["accepted"] += res["accepted"]
        out["rejected"] += len(res["rejected"])
        out["nodes"] += 1
    return out


def probe_summary(results_by_node: Mapping[str, Any]) -> Dict[str, Any]:
    """How the edges' tunnel targets were probed, for the probe step's notes:
    ``{"via": {"tunnel": n, "underlay": m}, "underlay_because": ["<node> -> <dst>
    (<tenant>): <reason>", ...]}`` from each node's probe result (``{"paths": [...]}``
    as :func:`npms.probe.run_request` returns it).

    A target probed over the underlay without a ``reason`` named no tunnel (core to
    core): not counted.  A node without a result (its probe failed: None, an error) adds
    nothing; the runner reports its error.  ``via`` holds only the ways seen."""
    via: Dict[str, int] = {}
    because: List[str] = []
    for node, result in sorted(results_by_node.items()):
        paths = result.get("paths") if isinstance(result, Mapping) else None
        for path in paths or []:
            if path.get("via") != "tunnel" and not path.get("reason"):
                continue
            way = str(path.get("via") or "underlay")  # a reason means the tunnel was not taken
            via[way] = via.get(way, 0) + 1
            if path.get("reason"):
                because.append(f"{node} -> {path.get('dst')} ({path.get('tenant')}): {path['reason']}")
    return {"via": via, "underlay_because": sorted(because)}


def read_probe_dir(directory: str) -> Dict[str, Dict[str, Any]]:
    """``{node: probe result}`` from the ``<node>.json`` files ``playbooks/probe.yml``
    writes (``{"node", "samples", "paths", ...}``); a file of another shape is a
    ValueError naming it."""
    out: Dict[str, Dict[str, Any]] = {}
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        data = load_json(os.path.join(directory, name), None)
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise ValueError(f"{directory}/{name}: not a samples file (expected {{node, samples}})")
        out[str(data.get("node") or name[:-5])] = data
    return out


def read_samples_dir(directory: str) -> Dict[str, List[Any]]:
    """``{node: samples}`` from the files :func:`read_probe_dir` reads."""
    return {node: data["samples"] for node, data in read_probe_dir(directory).items()}


def compute_step(inv: Inventory, store: Any, state_dir: str, now: float, since: Optional[float] = None) -> Dict[str, Any]:
    """Paths from the loop's measurements, with the previous loop's paths as current."""
    from .pce import compute_paths  # pylint: disable=import-outside-toplevel

    measurements = loop_measurements(store, inv, now, since=since)
    previous = load_json(os.path.join(state_dir, "paths.json"), [])
    paths = [r.to_dict() for r in compute_paths(inv, measurements, current=previous or None)]
    return {"paths": paths, "previous": previous, "measurements": len(measurements)}


def render_step(inv: Inventory, repo: Any, epoch: int, nodes: Sequence[str], paths: Sequence[Mapping[str, Any]],
                public_keys: Optional[Mapping[str, Any]] = None, routes: Optional[Mapping[str, Any]] = None,
                publish: bool = True, purger: Any = None) -> Dict[str, Any]:
    """One bundle per node; with ``publish`` they are saved in the repository (what pull
    mode serves), and a CDN in front is purged for each node whose content changed
    (``purger``, an ``npms.api.Purger``).  Also the bundle each node had before (a
    rollback target)."""
    from .api import publish as publish_bundle  # pylint: disable=import-outside-toplevel
    from .bundle import bundle_content, make_bundle  # pylint: disable=import-outside-toplevel

    previous = {n: repo.get(n) for n in nodes}
    bundles = {n: make_bundle(n, bundle_content(inv, n, paths, public_keys or {}, routes), epoch) for n in nodes}
    if publish:
        for b in bundles.values():
            publish_bundle(repo, b, purger)
    return {"bundles": bundles, "previous": {n: b for n, b in previous.items() if b is not None}}


def finish_step(state_dir: str, epoch: int, paths: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]],
                nodes: Mapping[str, Mapping[str, Any]], steps: Mapping[str, Any], measurements: int,
                check_mode: bool = False) -> Dict[str, Any]:
    """The report; outside check mode the paths become the next loop's current ones."""
    report = build_report(epoch, paths, previous, nodes, steps, measurements, check_mode=check_mode)
    if not check_mode:
        tmp = os.path.join(state_dir, "paths.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(list(paths), fh)
        os.replace(tmp, os.path.join(state_dir, "paths.json"))
        save_report(state_dir, report)
    return report


# --- npms loop ------------------------------------------------------------------------------
def setup_loop(parser: Any) -> Any:
    parser.add_argument("inventory", nargs="?", default="inventory/lab", help="inventory directory or file (default %(default)s)")
    parser.add_argument("--once", action="store_true", help="run one loop and exit (else: every --interval seconds)")
    parser.add_argument("--interval", type=int, default=600, help="seconds between loops without --once (default %(default)s)")
    parser.add_argument("--lab", metavar="PREFIX", help="run against the namespace lab of this prefix ('' for none)")
    parser.add_argument("--state-dir", default="/var/lib/npms/controller", help="bundles, reports, store (default %(default)s)")
    parser.add_argument("--store", help="store URL (default: SQLite in the state directory)")
    parser.add_argument("--window", type=int, default=600, help="aggregation window, seconds (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="plan only: probe, compute, render and show what would change")
    parser.add_argument("--diff", action="store_true", help="with --check: print every node's diff")
    parser.add_argument("--no-probe", action="store_true", help="skip probing (use what the store holds)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the summary")
    parser.add_argument("--workers", type=int, default=20, help="Nornir threads (default %(default)s)")
    return run_loop


def run_loop(args: Any) -> int:
    import sys  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    from .cli import EXIT_FAILED, CliError, _write  # pylint: disable=import-outside-toplevel

    try:
        from nornir import InitNornir  # pylint: disable=import-outside-toplevel

        from npms_nornir.loop import LoopSettings, run_once  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise CliError(f"npms loop needs nornir and the npms_nornir package: {exc}", EXIT_FAILED) from None
    from .cli import load_inventory  # pylint: disable=import-outside-toplevel

    inv = load_inventory(args.inventory)
    options: Dict[str, Any] = {"inventory": args.inventory}
    if args.lab is not None:
        options["lab_state"] = args.lab
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": options},
                    runner={"plugin": "threaded", "options": {"num_workers": args.workers}}, logging={"enabled": False})
    settings = LoopSettings(state_dir=args.state_dir, store_url=args.store, window_s=args.window,
                            check_mode=args.check, probes=not args.no_probe)
    while True:
        try:
            report = run_once(nr, inv, settings)
        except LoopBusy as exc:
            raise CliError(str(exc), EXIT_FAILED) from None
        if args.json:
            _write(json.dumps(report, indent=1, sort_keys=True))
        else:
            _write(summary_text(report).rstrip("\n"))
            if args.check and args.diff:
                for node, r in sorted(report["nodes"].items()):
                    if r.get("diff"):
                        _write(f"=== {node}\n{r['diff']}")
        sys.stdout.flush()
        if args.once:
            return EXIT_FAILED if report["failed_nodes"] else 0
        time.sleep(max(1, args.interval))
