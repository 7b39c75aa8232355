# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast engine gives exactly the reference engine's answer on real-shaped inputs.

(a) the lab inventory (``inventory/lab``): nominal values, measured values (including a
    degraded core link, a tenant-specific access measurement, a dead link), and with a
    previous result as ``current`` (hysteresis);
(b) a down-scaled benchmark network (``tests/bench/synth.py``) with a measurement per
    directed core pair, also with ``current``;
(c) incremental updates: ``FastEngine.update`` after one changed core measurement gives
    the same answer as a fresh full computation on the updated measurements.

Results are compared with ``to_list()``, field by field, pair by pair.
"""

import os
import random
import sys

import pytest

from npms.pce import Network, ReferenceEngine, compute_paths

from npms_testlib import LAB, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))

import synth  # noqa: E402  (tests/bench/synth.py)


def fast_engine(net):
    from npms.pce_fast import FastEngine

    return FastEngine(net)


def assert_same(fast, ref, what):
    """Equal to_list(); on a difference, name the first differing pair and field."""
    assert len(fast) == len(ref), "%s: %d fast results, %d reference" % (what, len(fast), len(ref))
    for f, r in zip(fast, ref):
        if f != r:
            key = (r["tenant"], r["traffic_class"], r["src"], r["dst"])
            fields = sorted(k for k in set(f) | set(r) if f.get(k) != r.get(k))
            pytest.fail("%s: %s differs in %s\n  fast:      %s\n  reference: %s" % (
                what, "/".join(key), ", ".join(fields),
                {k: f.get(k) for k in fields}, {k: r.get(k) for k in fields}))


def both(inv, measurements=(), current=None, what=""):
    ref = compute_paths(inv, measurements, current=current, engine="reference").to_list()
    fast = compute_paths(inv, measurements, current=current, engine="fast").to_list()
    assert_same(fast, ref, what)
    return ref


# --------------------------------------------------------------------------------------
# (a) the lab inventory
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    try:
        from npms.inventory import load_inventory
    except ImportError as exc:  # not a skip: the lab must be checked
        pytest.fail("npms.inventory.load_inventory is missing (%s): cannot check the engines on the lab" % exc)
    if not os.path.isdir(LAB):
        pytest.fail("the lab inventory %s is missing: cannot check the engines on it" % LAB)
    return load_inventory(LAB)


def lab_measurements(inv, seed=3):
    """Every tunnel and core link measured near its nominal values, then some trouble:
    a lossy transatlantic core link (realtime's 1 % fails; video needs FEC), a slow
    Mumbai-Singapore link, a jittery Tokyo access link for acme only, and a dead link."""
    rnd = random.Random(seed)
    out = {}
    for link in inv.links:
        if link.kind == "attachment":
            continue
        for src, dst in ((link.a, link.b), (link.b, link.a)):
            lat = round(link.latency_ms * rnd.uniform(0.95, 1.1), 3)
            out[(None, src, dst)] = {"src": src, "dst": dst, "latency_ms": lat,
                                     "latency_p95_ms": round(lat * 1.2, 3),
                                     "jitter_ms": round(link.jitter_ms * rnd.uniform(0.5, 2.0), 3),
                                     "loss_pct": link.loss_pct, "samples": 60}
    trouble = [(None, "core-lon", "core-nyc", {"loss_pct": 1.5}),
               (None, "core-nyc", "core-lon", {"loss_pct": 1.5}),
               (None, "core-bom", "core-sin", {"latency_ms": 70.0, "latency_p95_ms": 90.0}),
               (None, "core-fra", "core-par", {"loss_pct": 100.0})]
    for tenant, src, dst, change in trouble:
        if (None, src, dst) in out:
            out[(None, src, dst)].update(change)
    acme = inv.tenants.get("acme")
    if acme is not None:
        for link in inv.links:
            if link.kind == "access" and link.a in acme.edges and link.a.endswith("tok"):
                out[("acme", link.a, link.b)] = {"src": link.a, "dst": link.b, "tenant": "acme",
                                                 "latency_ms": link.latency_ms, "jitter_ms": 8.0,
                                                 "loss_pct": 0.2}
    return [dict(m) for _key, m in sorted(out.items(), key=lambda kv: (kv[0][0] or "", kv[0][1], kv[0][2]))]


def test_lab_nominal(lab):
    ref = both(lab, what="lab, nominal")
    assert ref, "the lab has no tenant pairs"


def test_lab_measured(lab):
    ms = lab_measurements(lab)
    ref = both(lab, ms, what="lab, measured")
    # the trouble changes something: not every answer is the nominal one
    nominal = compute_paths(lab, engine="reference").to_list()
    assert [r["path"] for r in ref] != [r["path"] for r in nominal]


def test_lab_with_current(lab):
    ms = lab_measurements(lab)
    previous = compute_paths(lab, engine="reference").to_list()
    ref = both(lab, ms, current=previous, what="lab, measured, current = nominal result")
    assert any(r["kept"] for r in ref) or any(r["changed"] for r in ref)


def test_lab_with_odd_current_paths(lab):
    """A hand-edited ``current``: reversed, through an edge, unknown node, wrong ends."""
    ms = lab_measurements(lab, seed=4)
    previous = compute_paths(lab, engine="reference").to_list()
    edges = sorted(n.name for n in lab.nodes_by_role("edge"))
    odd = []
    for i, row in enumerate(previous):
        row = dict(row)
        path = list(row["path"])
        if i % 5 == 0 and path:
            path = list(reversed(path))
        elif i % 5 == 1 and len(path) > 2:
            other = [e for e in edges if e not in path]
            path = [path[0], other[0]] + path[1:] if other else path
        elif i % 5 == 2 and len(path) > 2:
            path = [path[0], "core-nowhere"] + path[1:]
        elif i % 5 == 3:
            path = path[:-1]
        row["path"] = path
        odd.append(row)
    both(lab, ms, current=odd, what="lab, odd current")


def test_lab_one_tenant_and_class(lab):
    tenant = sorted(lab.tenants)[0]
    tc = sorted(c.name for c in lab.tenants[tenant].traffic_classes)[0]
    ms = lab_measurements(lab)
    ref = compute_paths(lab, ms, tenants=[tenant], traffic_classes=[tc], engine="reference").to_list()
    fast = compute_paths(lab, ms, tenants=[tenant], traffic_classes=[tc], engine="fast").to_list()
    assert ref and {(r["tenant"], r["traffic_class"]) for r in ref} == {(tenant, tc)}
    assert_same(fast, ref, "lab, %s %s only" % (tenant, tc))


# --------------------------------------------------------------------------------------
# (b) a down-scaled benchmark network
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_synth():
    inv = synth.build(pops=12, tenants=2, edges_per_tenant=6)
    return inv, synth.core_measurements(inv)


def test_synth_nominal(small_synth):
    inv, _ms = small_synth
    both(inv, what="synth 12 POPs, nominal")


def test_synth_measured(small_synth):
    inv, ms = small_synth
    ref = both(inv, ms, what="synth 12 POPs, measured")
    assert len(ref) == 2 * 6 * 5 * 5


def test_synth_with_current(small_synth):
    inv, ms = small_synth
    previous = compute_paths(inv, synth.core_measurements(inv, seed=5, scale=1.3), engine="reference").to_list()
    both(inv, ms, current=previous, what="synth 12 POPs, current from other measurements")


def test_synth_degraded(small_synth):
    """A few core links lossy, slow or down: fallbacks, FEC and detours."""
    inv, ms = small_synth
    rnd = random.Random(9)
    ms = [dict(m) for m in ms]
    for m in rnd.sample(ms, 20):
        slower = {"latency_ms": m["latency_ms"] * 4, "latency_p95_ms": m["latency_ms"] * 5}
        m.update(rnd.choice(({"loss_pct": 1.2}, {"loss_pct": 100.0}, slower,
                             {"jitter_ms": 40.0}, {"bandwidth_mbps": 100.0})))
    ref = both(inv, ms, what="synth 12 POPs, degraded")
    assert {r["verdict"] for r in ref} - {"met"}, "the degraded links changed no verdict"


def test_synth_denser_edges():
    inv = synth.build(pops=8, tenants=1, edges_per_tenant=12, seed=3)
    both(inv, synth.core_measurements(inv, seed=2), what="synth 8 POPs, 12 edges")


# --------------------------------------------------------------------------------------
# (c) incremental updates
# --------------------------------------------------------------------------------------

def _core_pair(ms, i):
    core = [m for m in ms if m["src"].startswith("pop") and m["dst"].startswith("pop")]
    return core[i % len(core)]


def _replace(ms, new):
    keyed = {(m.get("tenant"), m["src"], m["dst"]): m for m in ms}
    for m in new:
        keyed[(m.get("tenant"), m["src"], m["dst"])] = m
    return list(keyed.values())


def fresh(inv, ms, current=None):
    return fast_engine(Network(inv, ms)).compute(current=current).to_list()


@pytest.mark.parametrize("change", [
    {"latency_factor": 3.0, "loss_pct": 2.0},
    {"latency_factor": 0.2},
    {"loss_pct": 100.0},
    {"bandwidth_mbps": 150.0, "jitter_ms": 35.0},
], ids=["slow-lossy", "much-faster", "down", "thin-jittery"])
def test_update_after_one_core_measurement_equals_full_compute(small_synth, change):
    inv, ms = small_synth
    eng = fast_engine(Network(inv, ms))
    before = eng.compute().to_list()
    assert_same(before, compute_paths(inv, ms, engine="reference").to_list(), "before the update")
    # the core link most used by the current answer: the change is felt
    used = {}
    for r in before:
        for u, v in zip(r["path"], r["path"][1:]):
            if u.startswith("pop") and v.startswith("pop"):
                used[(u, v)] = used.get((u, v), 0) + 1
    u, v = max(sorted(used), key=lambda uv: used[uv])
    old = next(m for m in ms if (m["src"], m["dst"]) == (u, v))
    new = dict(old)
    if "latency_factor" in change:
        new["latency_ms"] = round(old["latency_ms"] * change["latency_factor"], 3)
        new["latency_p95_ms"] = round(new["latency_ms"] * 1.1, 3)
    for k in ("loss_pct", "bandwidth_mbps", "jitter_ms"):
        if k in change:
            new[k] = change[k]
    after = eng.update([new]).to_list()
    updated = _replace(ms, [new])
    assert_same(after, fresh(inv, updated), "update vs fresh fast compute")
    assert_same(after, compute_paths(inv, updated, engine="reference").to_list(), "update vs reference")
    assert [r["path"] for r in after] != [r["path"] for r in before], "the change moved no path"


def test_update_both_directions_then_revert(small_synth):
    inv, ms = small_synth
    eng = fast_engine(Network(inv, ms))
    before = eng.compute().to_list()
    fwd = dict(_core_pair(ms, 7))
    rev = dict(next(m for m in ms if (m["src"], m["dst"]) == (fwd["dst"], fwd["src"])))
    changed = []
    for m in (fwd, rev):
        m = dict(m, latency_ms=round(m["latency_ms"] * 3, 3), loss_pct=2.0)
        m["latency_p95_ms"] = round(m["latency_ms"] * 1.1, 3)
        changed.append(m)
    after = eng.update(changed).to_list()
    assert_same(after, fresh(inv, _replace(ms, changed)), "update of both directions")
    # a second, unrelated update on top of the first
    other = dict(_core_pair(ms, 31), loss_pct=100.0)
    after2 = eng.update([other]).to_list()
    assert_same(after2, fresh(inv, _replace(ms, changed + [other])), "second update")
    # putting the original values back gives the original answer
    reverted = eng.update([fwd, rev, _core_pair(ms, 31)]).to_list()
    assert_same(reverted, before, "update back to the original values")


def test_update_keeps_current_and_selection(small_synth):
    inv, ms = small_synth
    previous = compute_paths(inv, synth.core_measurements(inv, seed=5, scale=1.3), engine="reference").to_list()
    tenant = sorted(inv.tenants)[1]
    eng = fast_engine(Network(inv, ms))
    eng.compute(tenants=[tenant], traffic_classes=["ef", "af41"], current=previous)
    new = dict(_core_pair(ms, 3), latency_ms=_core_pair(ms, 3)["latency_ms"] * 3, loss_pct=2.0)
    new.pop("latency_p95_ms")
    after = eng.update([new]).to_list()
    updated = _replace(ms, [new])
    ref = ReferenceEngine(Network(inv, updated)).compute(
        tenants=[tenant], traffic_classes=["ef", "af41"], current=previous).to_list()
    assert {(r["tenant"], r["traffic_class"]) for r in after} == {(tenant, "ef"), (tenant, "af41")}
    assert_same(after, ref, "update with a selection and a current")


def test_update_of_a_tenant_access_measurement(small_synth):
    inv, ms = small_synth
    tenant = sorted(inv.tenants)[0]
    edge = inv.tenants[tenant].edges[0]
    link = next(lk for lk in inv.links if lk.kind == "access" and edge in lk.ends)
    eng = fast_engine(Network(inv, ms))
    eng.compute()
    new = {"src": link.a, "dst": link.b, "tenant": tenant, "latency_ms": link.latency_ms + 80.0,
           "loss_pct": 0.7}
    after = eng.update([new]).to_list()
    assert_same(after, compute_paths(inv, ms + [new], engine="reference").to_list(), "tenant access update")


def test_update_rejects_a_bad_measurement_and_keeps_working(small_synth):
    from npms.measurements import MeasurementError

    inv, ms = small_synth
    eng = fast_engine(Network(inv, ms))
    before = eng.compute().to_list()
    with pytest.raises(MeasurementError):
        eng.update([{"src": "pop000", "dst": "nowhere", "latency_ms": 1.0}])
    assert_same(eng.compute().to_list(), before, "after a rejected update")
