# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control loop with Nornir (``npms loop --once``): probe, ingest, compute, render,
deploy, verify, report, against every node at once (threaded), from the same core as
``playbooks/control_loop.yml`` (npms.loop, npms.bundle, npms.pce, the resources)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from nornir.core.filter import F

from npms.bgp import route_table
from npms.bundle import BundleRepo
from npms.loop import compute_step, finish_step, ingest_step, loop_lock, probe_summary, render_step
from npms.probe import probe_targets

from .tasks import bgp_routes, deploy_bundle, overlay_keys, probe, probe_responder


@dataclass
class LoopSettings:
    state_dir: str = "/var/lib/npms/controller"
    store_url: Optional[str] = None  # default: SQLite in state_dir
    window_s: int = 600
    probe_count: int = 10
    probe_interval_s: float = 0.05
    check_mode: bool = False
    probes: bool = True
    extra: Dict[str, Any] = field(default_factory=dict)


def _probe_adjacent(task: Any, inventory: Any, count: int, interval: float) -> Any:
    targets = probe_targets(inventory, task.host.name, core_scope="adjacent")
    return task.run(task=probe, targets=targets, count=count, interval=interval).result


def _failed(result: Any) -> Dict[str, str]:
    return {h: str(r[0].exception or r[0].result) for h, r in result.items() if r.failed}


def run_once(nr: Any, inv: Any, settings: LoopSettings, store: Any = None) -> Dict[str, Any]:
    """One loop; returns the report (also saved under ``state_dir``)."""
    from npms.store import Store  # pylint: disable=import-outside-toplevel

    os.makedirs(settings.state_dir, exist_ok=True)
    with loop_lock(settings.state_dir):
        own_store = store is None
        store = store or Store(settings.store_url or f"sqlite:///{settings.state_dir}/store.db", window_s=settings.window_s)
        try:
            return _run(nr, inv, settings, store)
        finally:
            if own_store:
                store.close()


def _run(nr: Any, inv: Any, s: LoopSettings, store: Any) -> Dict[str, Any]:
    # on_failed=True everywhere: a host that failed one step still gets the next ones
    # (Nornir skips failed hosts by default); each step reports its own failures.
    steps: Dict[str, Any] = {}
    repo = BundleRepo(os.path.join(s.state_dir, "bundles"))
    routers = nr.filter(F(groups__contains="core") | F(groups__contains="edge"))
    edges = nr.filter(F(groups__contains="edge"))
    nodes = nr.filter(F(groups__contains="core") | F(groups__contains="edge") | F(groups__contains="customer"))
    # check mode plans the next loop without handing out its epoch
    epoch = repo.peek_epoch() if s.check_mode else repo.next_epoch()
    node_results: Dict[str, Dict[str, Any]] = {}

    def step(name: str, started: float, **info: Any) -> None:
        steps[name] = dict(info, seconds=round(time.monotonic() - started, 3))

    # probe + ingest
    t = time.monotonic()
    probe_started = time.time()
    if s.probes:
        up = routers.run(on_failed=True, task=probe_responder, state="started", dry_run=False)
        res = routers.run(on_failed=True, task=_probe_adjacent, inventory=inv, count=s.probe_count, interval=s.probe_interval_s)
        results: Dict[str, Dict[str, Any]] = {}
        for host, r in res.items():
            if r.failed:
                node_results.setdefault(host, {})["probe_error"] = str(r[0].exception)
                continue
            out = r[1].result if len(r) > 1 else r[0].result
            results[host] = out if isinstance(out, dict) else {}
        samples = {host: out.get("samples", []) for host, out in results.items()}
        ingested = ingest_step(store, samples, epoch) if not s.check_mode else {"samples": sum(map(len, samples.values()))}
        step("probe", t, responders_failed=sorted(_failed(up)), **probe_summary(results), **ingested)
    now = time.time()
    # keys and routes
    t = time.monotonic()
    keys = routers.run(on_failed=True, task=overlay_keys, inventory=inv, dry_run=s.check_mode)
    public_keys = {h: r[0].result for h, r in keys.items() if not r.failed}
    collected = edges.run(on_failed=True, task=bgp_routes)
    routes = route_table(inv, {h: r[0].result for h, r in collected.items() if not r.failed})
    step("collect", t, keys_failed=sorted(_failed(keys)), routes_failed=sorted(_failed(collected)))
    # compute
    t = time.monotonic()
    computed = compute_step(inv, store, s.state_dir, now, since=probe_started)
    paths = computed["paths"]
    step("compute", t, measurements=computed["measurements"], paths=len(paths))
    # render
    t = time.monotonic()
    rendered = render_step(inv, repo, epoch, list(nodes.inventory.hosts), paths, public_keys, routes, publish=not s.check_mode)
    bundles, prev_bundles = rendered["bundles"], rendered["previous"]
    step("render", t, bundles=len(bundles))
    # deploy
    t = time.monotonic()
    deployed = nodes.run(on_failed=True, task=deploy_bundle, bundles=bundles, previous=prev_bundles, dry_run=s.check_mode)
    for host, r in deployed.items():
        out = r[0].result if isinstance(r[0].result, dict) else {}
        node_results.setdefault(host, {}).update({
            "epoch": epoch, "changed": r[0].changed, "error": out.get("error") or (str(r[0].exception) if r.failed else None),
            "rolled_back": bool(out.get("rolled_back")), "running": out.get("running"),
            "diff": r[0].diff if s.check_mode else None})
    step("deploy", t, failed=sorted(h for h, n in node_results.items() if n.get("error")))
    # verify (a forced check of every resource: nothing may be left to change)
    t = time.monotonic()
    if not s.check_mode:
        ok_hosts = [h for h in bundles if not (node_results.get(h) or {}).get("error")]
        verified = nodes.filter(filter_func=lambda h: h.name in ok_hosts).run(on_failed=True, task=deploy_bundle, bundles=bundles, verify=True)
        back = {}
        for host, r in verified.items():
            out = r[0].result if isinstance(r[0].result, dict) else {}
            if r.failed or r[0].changed:
                what = out.get("error") or "resources differ from the bundle right after deploying: " + ", ".join(
                    n for n, x in (out.get("resources") or {}).items() if x.get("changed"))
                node_results[host]["error"] = f"verification failed: {what}"
                if host in prev_bundles:
                    back[host] = prev_bundles[host]
        if back:
            again = nodes.filter(filter_func=lambda h: h.name in back)
            again.run(on_failed=True, task=deploy_bundle, bundles=back, rollback=True)
            for host in back:
                node_results[host]["rolled_back"] = True
        step("verify", t, failed=sorted(h for h in ok_hosts if node_results[h].get("error")))
    # report
    t = time.monotonic()
    report = finish_step(s.state_dir, epoch, paths, computed["previous"], node_results, steps, computed["measurements"],
                         check_mode=s.check_mode)
    report["steps"]["report"] = {"seconds": round(time.monotonic() - t, 3)}
    return report
