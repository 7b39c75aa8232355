#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: loop_step
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: One controller-side step of the galactic.npms control loop
description:
  - The steps of C(playbooks/control_loop.yml) that run on the controller (delegate to
    C(localhost)); the nodes' steps are M(galactic.npms.probe) and M(galactic.npms.bundle).
    The same functions as C(npms loop --once) (C(npms.loop)), so both runners give the same
    results.
  - C(epoch) starts a loop - takes the next epoch from the bundle repository in
    O(state_dir) and returns it with the time probing starts.
  - C(ingest) stores each node's samples (O(samples)) as one batch per node and epoch;
    from the probe results in O(samples_dir) it also notes how the edges' tunnel targets
    were probed (RV(probe)), which the C(report) step puts in its C(probe) step.
  - C(compute) reads the loop's measurements from the store and computes the paths
    (the previous loop's paths are the current ones, for hysteresis); they are kept in
    O(state_dir) for the next steps.
  - C(render) makes one bundle per node in O(nodes) and publishes them in the repository
    (not in check mode); returns them with the bundle each node had before.
  - C(report) writes the report (not in check mode) and returns it with a text summary;
    its C(probe) step holds what C(ingest) noted (RV(probe) and RV(ingested)).
options:
  step:
    description: The step.
    type: str
    required: true
    choices: [epoch, ingest, compute, render, report]
  state_dir:
    description: The controller's loop state (bundles, reports, paths, the default store).
    type: path
    required: true
  inventory:
    description: The NPMS inventory (directory or file). Required for compute and render.
    type: path
  store_url:
    description: The store (SQLAlchemy URL); default SQLite in O(state_dir).
    type: str
  window:
    description: Aggregation window, seconds.
    type: int
    default: 600
  epoch:
    description: This loop's epoch (from the C(epoch) step); default the loop the last C(epoch) step started (O(state_dir)/current.json).
    type: int
  since:
    description: When this loop's probing started (epoch seconds); default as for O(epoch).
    type: float
  samples:
    description: "C({node: [sample, ...]}) for C(ingest) (M(galactic.npms.probe)'s RV(galactic.npms.probe#module:samples))."
    type: dict
  samples_dir:
    description:
      - For C(ingest), a directory of C(<node>.json) files C({"node", "samples", "paths"}) as
        C(playbooks/probe.yml) writes them (read on the controller), added to O(samples);
        their C(paths) (RV(galactic.npms.probe#module:paths)) give RV(probe).
    type: path
  nodes:
    description: The nodes to render bundles for.
    type: list
    elements: str
  public_keys:
    description: "WireGuard public keys C({node: {interface: key}}) for C(render)."
    type: dict
  routes:
    description: "The BGP route table C({tenant: {edge: [prefix]}}) for C(render)."
    type: dict
  node_results:
    description: "C({node: {changed, error, rolled_back, running}}) from the deploy and verify steps, for C(report)."
    type: dict
  steps:
    description: Step timings and notes for the report.
    type: dict
notes:
  - Runs on the controller; in check mode nothing is stored, published or written, and
    the C(report) says check mode.
requirements:
  - numpy, sqlalchemy (the store) on the controller.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
"""

EXAMPLES = r"""
- name: Start a loop
  galactic.npms.loop_step:
    step: epoch
    state_dir: /var/lib/npms/controller
  delegate_to: localhost
  run_once: true
  register: npms_loop
"""

RETURN = r"""
epoch:
  description: The loop's epoch.
  returned: always
  type: int
since:
  description: When probing started (step epoch).
  returned: step epoch
  type: float
ingested:
  description: Samples, accepted, rejected, nodes (step ingest).
  returned: step ingest
  type: dict
probe:
  description:
    - How the edges' tunnel targets of the probe files in O(samples_dir) were probed (step ingest).
      C(via) counts those probed inside their tunnel (C(tunnel)) and over the underlay
      (C(underlay)); C(underlay_because) says why for each of the latter.
    - The same notes as the probe step of C(npms loop); the C(report) step adds them to its C(probe) step.
  returned: step ingest
  type: dict
  sample: {"via": {"tunnel": 6, "underlay": 2}, "underlay_because": ["edge-ber -> core-fra (acme): wg1-7-2: no such interface here"]}
measurements:
  description: Window aggregates the path engine read (step compute).
  returned: step compute
  type: int
paths:
  description: The computed paths (step compute).
  returned: step compute
  type: list
  elements: dict
bundles:
  description: Per node, its bundle (step render).
  returned: step render
  type: dict
previous:
  description: Per node, the bundle it had before (step render).
  returned: step render
  type: dict
report:
  description: The loop's report (step report).
  returned: step report
  type: dict
summary:
  description: The report as text.
  returned: step report
  type: str
"""

import hashlib
import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.galactic.npms.plugins.module_utils.npms.bundle import BundleRepo
    from ansible_collections.galactic.npms.plugins.module_utils.npms.inventory import InventoryError, load_inventory
    from ansible_collections.galactic.npms.plugins.module_utils.npms.loop import (compute_step, finish_step, ingest_step,
                                                                                  load_json, probe_summary, read_probe_dir,
                                                                                  render_step, summary_text)
    IMPORT_ERROR = None
except ImportError as exc:  # numpy, sqlalchemy...
    IMPORT_ERROR = exc


def main():
    module = AnsibleModule(
        argument_spec={
            "step": {"type": "str", "required": True, "choices": ["epoch", "ingest", "compute", "render", "report"]},
            "state_dir": {"type": "path", "required": True},
            "inventory": {"type": "path"},
            "store_url": {"type": "str"},
            "window": {"type": "int", "default": 600},
            "epoch": {"type": "int"},
            "since": {"type": "float"},
            "samples": {"type": "dict"},
            "samples_dir": {"type": "path"},
            "nodes": {"type": "list", "elements": "str"},
            "public_keys": {"type": "dict"},
            "routes": {"type": "dict"},
            "node_results": {"type": "dict"},
            "steps": {"type": "dict"},
        },
        required_if=[("step", "compute", ("inventory",)), ("step", "render", ("inventory", "nodes"))],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=f"galactic.npms.loop_step needs the npms core library's dependencies: {IMPORT_ERROR}")
    p = module.params
    state_dir = p["state_dir"]
    os.makedirs(state_dir, exist_ok=True)
    repo = BundleRepo(os.path.join(state_dir, "bundles"))
    step = p["step"]
    current_path = os.path.join(state_dir, "current.json")
    if step == "epoch":
        since = time.time()
        if module.check_mode:  # the plan of the next loop; no epoch is handed out
            module.exit_json(changed=False, epoch=repo.peek_epoch(), since=since)
        epoch = repo.next_epoch()
        with open(current_path, "w", encoding="utf-8") as fh:
            json.dump({"epoch": epoch, "since": since}, fh)
        module.exit_json(changed=False, epoch=epoch, since=since)
    # a step run on its own (its own playbook) continues the loop the epoch step started
    current = load_json(current_path, {})
    if p["epoch"] is None:
        p["epoch"] = current.get("epoch")
    if p["since"] is None:
        p["since"] = current.get("since")
    if p["epoch"] is None:
        module.fail_json(msg=f"step {step}: no epoch given and no loop started in {state_dir} (run step epoch first)")
    pending = os.path.join(state_dir, f"paths-{p['epoch']}.json")
    probe_notes = os.path.join(state_dir, f"probe-{p['epoch']}.json")  # from ingest, for the report's probe step
    if module.check_mode:  # scratch outside the state directory: check mode leaves it as it was
        tag = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:16]
        pending = os.path.join(tempfile.gettempdir(), f"npms-loop-check-{tag}-{p['epoch']}.json")
        probe_notes = os.path.join(tempfile.gettempdir(), f"npms-loop-check-{tag}-probe-{p['epoch']}.json")
    inv = None
    if p["inventory"]:
        try:
            inv = load_inventory(p["inventory"])
        except InventoryError as exc:
            module.fail_json(msg=str(exc))
    if step in ("ingest", "compute"):
        from ansible_collections.galactic.npms.plugins.module_utils.npms.store import Store  # pylint: disable=import-outside-toplevel

        store = Store(p["store_url"] or f"sqlite:///{state_dir}/store.db", window_s=p["window"])
        try:
            if step == "ingest":
                samples = dict(p["samples"] or {})
                results = {}
                if p["samples_dir"]:
                    try:
                        results = read_probe_dir(p["samples_dir"])
                    except ValueError as exc:
                        module.fail_json(msg=str(exc))
                    samples.update({node: r["samples"] for node, r in results.items()})
                p["samples"] = samples
                probed = probe_summary(results)
                if module.check_mode:
                    got = {"samples": sum(len(v or []) for v in (p["samples"] or {}).values())}
                else:
                    got = ingest_step(store, p["samples"] or {}, p["epoch"])
                with open(probe_notes, "w", encoding="utf-8") as fh:
                    json.dump(dict(probed, **got), fh)
                module.exit_json(changed=got.get("accepted", 0) > 0, epoch=p["epoch"], ingested=got, probe=probed)
            computed = compute_step(inv, store, state_dir, time.time(), since=p["since"])
        finally:
            store.close()
        with open(pending, "w", encoding="utf-8") as fh:
            json.dump({"paths": computed["paths"], "previous": computed["previous"], "measurements": computed["measurements"]}, fh)
        module.exit_json(changed=False, epoch=p["epoch"], measurements=computed["measurements"], paths=computed["paths"])
    computed = load_json(pending, None)
    if computed is None:
        module.fail_json(msg=f"step {step}: no computed paths for epoch {p['epoch']} in {state_dir}; run step compute first")
    if step == "render":
        rendered = render_step(inv, repo, p["epoch"], p["nodes"], computed["paths"], p["public_keys"], p["routes"],
                               publish=not module.check_mode)
        module.exit_json(changed=not module.check_mode, epoch=p["epoch"], bundles=rendered["bundles"], previous=rendered["previous"])
    steps = dict(p["steps"] or {})
    noted = load_json(probe_notes, None)
    if isinstance(noted, dict):  # what ingest noted; notes given in O(steps) win
        steps["probe"] = dict(noted, **(steps.get("probe") or {}))
    report = finish_step(state_dir, p["epoch"], computed["paths"], computed["previous"], p["node_results"] or {},
                         steps, computed["measurements"], check_mode=module.check_mode)
    os.unlink(pending)
    if noted is not None:
        os.unlink(probe_notes)
    module.exit_json(changed=not module.check_mode, epoch=p["epoch"], report=report, summary=summary_text(report))


if __name__ == "__main__":
    main()
