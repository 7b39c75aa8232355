# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edge triangulation in the lab (npms_nornir.tasks.triangulate): an edge pings its 6
nearest POPs from its own namespace and keeps the 3 fastest that answer.  In the lab an
edge's underlay reaches only the POPs it has a link to, so the others never answer: the
choice must be exactly its linked POPs, ordered by measured RTT, and the overlay then
builds its tunnels to them.  Needs root."""

from __future__ import annotations

import os

import pytest
from nornir import InitNornir

from npms.inventory import load_inventory
from npms.overlay import node_overlay, tunnel_name
from npms.triangulate import with_upstreams
from npms_nornir.tasks import triangulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventory", "lab")

pytestmark = pytest.mark.usefixtures("needs_root")


def test_an_edge_keeps_the_three_fastest_pops_that_answer(lab):
    inv = load_inventory(INVENTORY)
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": lab.prefix}},
                    runner={"plugin": "threaded", "options": {"num_workers": 4}}, logging={"enabled": False})
    res = nr.filter(name="edge-ber").run(task=triangulate, inventory=inv, count=3)
    assert not res.failed, str(res["edge-ber"][0].exception)
    out = res["edge-ber"][0].result
    cands = {c["pop"]: c for c in out["candidates"]}
    assert len(cands) == 6
    linked = {lk.b for lk in inv.links if lk.a == "edge-ber" and lk.kind == "access"}
    answered = {p for p, c in cands.items() if c["rtt_ms"] is not None}
    assert answered == linked, "only the POPs the lab's underlay reaches answer"
    assert set(out["upstreams"]) == linked
    rtts = [cands[p]["rtt_ms"] for p in out["upstreams"]]
    assert rtts == sorted(rtts), "fastest first"
    # the lab's nominal one-way latencies: a round trip of at least twice the link's
    for pop in out["upstreams"]:
        nominal = next(lk.latency_ms for lk in inv.links if lk.a == "edge-ber" and lk.b == pop)
        assert cands[pop]["rtt_ms"] >= 2 * nominal * 0.8
    joined = with_upstreams(inv, {"edge-ber": out["upstreams"]})
    names = {t["name"] for t in node_overlay(joined, "edge-ber")["wireguard"]}
    assert {tunnel_name(joined, "acme", "edge-ber", p) for p in out["upstreams"]} <= names
