# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``FastEngine.update`` after a sequence of link changes equals a fresh full compute.

Small random networks (a few seeds of the benchmark generator, down-scaled): one engine
lives through latency up, loss up, link down and link back on the core link its answer
uses most (both directions), then an access link of one tenant; after every step its
answer must equal a fresh fast compute and the reference engine on the same
measurements.  The changes must move paths, else the test would prove nothing.
"""

import os
import sys

import pytest

from npms.pce import Network, compute_paths
from npms.pce_fast import FastEngine

from npms_testlib import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))

import synth  # noqa: E402  (tests/bench/synth.py)


def _keyed(ms):
    return {(m.get("tenant"), m["src"], m["dst"]): m for m in ms}


def _most_used_core_link(results):
    used = {}
    for r in results:
        for u, v in zip(r["path"], r["path"][1:]):
            if u.startswith("pop") and v.startswith("pop"):
                key = tuple(sorted((u, v)))
                used[key] = used.get(key, 0) + 1
    return max(sorted(used), key=lambda k: used[k])


def _both_ways(state, a, b, **change):
    """The measurements of a-b and b-a with ``change`` applied (latency_factor scales)."""
    out = []
    for key in ((None, a, b), (None, b, a)):
        m = dict(state[key])
        factor = change.get("latency_factor")
        if factor is not None:
            m["latency_ms"] = round(m["latency_ms"] * factor, 3)
            m["latency_p95_ms"] = round(m["latency_ms"] * 1.1, 3)
        for k in ("loss_pct", "jitter_ms", "bandwidth_mbps"):
            if k in change:
                m[k] = change[k]
        out.append(m)
    return out


def _diff(got, want):
    """First differing result as text (or "")."""
    if len(got) != len(want):
        return "%d results, expected %d" % (len(got), len(want))
    for g, w in zip(got, want):
        if g != w:
            fields = sorted(k for k in w if g.get(k) != w.get(k))
            return "%s/%s %s>%s differs in %s: %s vs %s" % (
                w["tenant"], w["traffic_class"], w["src"], w["dst"], ", ".join(fields),
                {k: g.get(k) for k in fields}, {k: w.get(k) for k in fields})
    return ""


@pytest.mark.parametrize("seed", [3, 7, 19])
def test_update_sequence_equals_fresh_compute(seed):
    inv = synth.build(pops=10, tenants=2, edges_per_tenant=5, seed=seed)
    ms = synth.core_measurements(inv, seed=seed)
    eng = FastEngine(Network(inv, ms))
    first = eng.compute().to_list()
    a, b = _most_used_core_link(first)
    state = _keyed(ms)
    original = _both_ways(state, a, b)
    tenant = sorted(inv.tenants)[0]
    edge = inv.tenants[tenant].edges[0]
    access = next(lk for lk in inv.links if lk.kind == "access" and edge in (lk.a, lk.b))
    steps = [
        ("latency up", _both_ways(state, a, b, latency_factor=4.0)),
        ("loss up", _both_ways(state, a, b, latency_factor=4.0, loss_pct=2.5)),
        ("link down", _both_ways(state, a, b, loss_pct=100.0)),
        ("link back", original),
        ("tenant access link slower and lossy",
         [{"src": access.a, "dst": access.b, "tenant": tenant, "latency_ms": access.latency_ms + 90.0,
           "loss_pct": 0.8}]),
    ]
    previous = first
    moved = 0
    for what, change in steps:
        for m in change:
            state[(m.get("tenant"), m["src"], m["dst"])] = m
        got = eng.update(change).to_list()
        now = list(state.values())
        fresh = FastEngine(Network(inv, now)).compute().to_list()
        problem = _diff(got, fresh)
        assert not problem, "seed %d, after %s: update vs fresh compute: %s" % (seed, what, problem)
        problem = _diff(got, compute_paths(inv, now, engine="reference").to_list())
        assert not problem, "seed %d, after %s: update vs reference: %s" % (seed, what, problem)
        moved += sum(1 for g, p in zip(got, previous) if g["path"] != p["path"])
        if what == "link back":
            assert not _diff(got, first), "seed %d: the original values did not give the original answer" % seed
        previous = got
    assert moved, "seed %d: no step moved any path" % seed
