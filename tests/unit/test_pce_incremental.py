# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``FastEngine.update`` after a sequence of link changes equals a fresh full compute.

Small random networks (a few seeds of the benchmark generator, down-scaled): one engine
lives through latency up, loss up, link down and link back on the core link its answer
uses most (both directions), then an access link of one tenant; after every step its
answer must equal a fresh fast compute and the reference engine on the same
measurements.  The changes must move paths, else the test would prove nothing.

The update recomputes only the pairs a change can reach: the other tests check a change
that moves some paths (and recomputes some pairs, not all), a change on a link no path
uses (every result stays equal), a pruned link becoming admissible, and that a result set
not looked at before an update keeps the measurements it was computed from.
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


def _net_and_engine(seed, ms=None):
    inv = synth.build(pops=10, tenants=2, edges_per_tenant=5, seed=seed)
    ms = synth.core_measurements(inv, seed=seed) if ms is None else ms
    return inv, ms, FastEngine(Network(inv, ms))


def _used_core_links(results):
    """Core links (sorted name pairs) on any primary or backup path."""
    used = set()
    for r in results:
        for path in (r["path"], r["backup_path"]):
            for u, v in zip(path, path[1:]):
                if u.startswith("pop") and v.startswith("pop"):
                    used.add(tuple(sorted((u, v))))
    return used


def _check_against_fresh(inv, state, got, what):
    now = list(state.values())
    problem = _diff(got, FastEngine(Network(inv, now)).compute().to_list())
    assert not problem, "%s: update vs fresh compute: %s" % (what, problem)
    problem = _diff(got, compute_paths(inv, now, engine="reference").to_list())
    assert not problem, "%s: update vs reference: %s" % (what, problem)


@pytest.mark.parametrize("seed", [3, 7, 19])
def test_update_moves_some_paths_and_recomputes_only_some_pairs(seed):
    """A slower core link moves the paths that used it and no others; the update
    recomputes a part of the pairs, not all of them, and still equals a full compute."""
    inv, ms, eng = _net_and_engine(seed)
    first = eng.compute().to_list()
    a, b = _most_used_core_link(first)
    state = _keyed(ms)
    change = _both_ways(state, a, b, latency_factor=3.0)
    for m in change:
        state[(None, m["src"], m["dst"])] = m
    paths = eng.update(change)
    got = paths.to_list()
    _check_against_fresh(inv, state, got, "seed %d, %s-%s slower" % (seed, a, b))
    moved = [g for g, f in zip(got, first) if g["path"] != f["path"]]
    assert moved, "seed %d: no path moved off %s-%s" % (seed, a, b)
    for g, f in zip(got, first):
        on_link = any({u, v} == {a, b} for u, v in zip(f["path"], f["path"][1:]))
        if not on_link:  # a path that avoided the link cannot have got better by it
            assert g["path"] == f["path"], "seed %d: %s>%s moved without using %s-%s" % (
                seed, f["src"], f["dst"], a, b)
    assert 0 < paths.stats["pairs"] < len(got), "seed %d: recomputed %d of %d pairs" % (
        seed, paths.stats["pairs"], len(got))


@pytest.mark.parametrize("seed", [3, 7, 19])
def test_update_on_an_unused_link_changes_no_result(seed):
    """Worse measurements on a core link that no primary or backup path uses leave
    every result equal to the previous one."""
    inv, ms, eng = _net_and_engine(seed)
    before = eng.compute()
    first = before.to_list()
    used = _used_core_links(first)
    links = sorted(tuple(sorted((lk.a, lk.b))) for lk in inv.links if lk.kind == "core")
    unused = [lk for lk in links if lk not in used]
    assert unused, "seed %d: every core link is used" % seed
    a, b = unused[len(unused) // 2]
    state = _keyed(ms)
    change = _both_ways(state, a, b, latency_factor=5.0, loss_pct=3.0)
    for m in change:
        state[(None, m["src"], m["dst"])] = m
    after = eng.update(change)
    assert after.results == before.results, "seed %d: a change on unused %s-%s changed results" % (seed, a, b)
    _check_against_fresh(inv, state, after.to_list(), "seed %d, unused %s-%s" % (seed, a, b))


@pytest.mark.parametrize("seed", [3, 7, 19])
def test_update_makes_a_pruned_link_admissible(seed):
    """A core link that was down (pruned everywhere) comes back fast and clean: paths
    move onto it, and the answer equals a full compute."""
    inv, ms, _eng = _net_and_engine(seed)
    state = _keyed(ms)
    first = FastEngine(Network(inv, ms)).compute().to_list()
    a, b = _most_used_core_link(first)
    down = _both_ways(state, a, b, loss_pct=100.0)
    for m in down:
        state[(None, m["src"], m["dst"])] = m
    _inv, _ms, eng = _net_and_engine(seed, list(state.values()))
    pruned = eng.compute().to_list()
    assert all({a, b} != {u, v} for r in pruned for u, v in zip(r["path"], r["path"][1:]))
    back = _both_ways(state, a, b, latency_factor=0.2, loss_pct=0.0, jitter_ms=0.05)
    for m in back:
        state[(None, m["src"], m["dst"])] = m
    got = eng.update(back).to_list()
    _check_against_fresh(inv, state, got, "seed %d, %s-%s back" % (seed, a, b))
    assert any({a, b} == {u, v} for r in got for u, v in zip(r["path"], r["path"][1:])), \
        "seed %d: no path uses %s-%s once admissible" % (seed, a, b)


def _computed_then_updated(seed):
    """An engine's full compute, not looked at, then an update (the most used core link
    slower and lossy): (inv, eng, state after the change, link, first, what a fresh compute
    of the first measurements gives, second)."""
    inv, ms, eng = _net_and_engine(seed)
    first = eng.compute()  # not materialised before the update
    state = _keyed(ms)
    expected_first = FastEngine(Network(inv, ms)).compute().to_list()
    a, b = _most_used_core_link(expected_first)
    change = _both_ways(state, a, b, latency_factor=4.0, loss_pct=2.5)
    for m in change:
        state[(None, m["src"], m["dst"])] = m
    return inv, eng, state, (a, b), first, expected_first, eng.update(change)


def test_results_are_a_snapshot_of_their_measurements():
    """A result set not yet looked at when ``update`` runs still gives the answer for the
    measurements it was computed from (and an update's answer for the new ones)."""
    inv, eng, state, (a, b), first, expected_first, second = _computed_then_updated(7)
    third = eng.update(_both_ways(state, a, b, loss_pct=100.0))  # before second is looked at
    assert not _diff(first.to_list(), expected_first)
    _check_against_fresh(inv, state, second.to_list(), "second of three")
    assert third.to_list() != second.to_list()


@pytest.mark.parametrize("seed", [3, 7])  # both seeds have batches that mix tenants
def test_searches_batched_across_blocks_equal_block_by_block(seed, monkeypatch):
    """compute() and update() run the exact searches of every block (tenants, classes) in
    shared rounds; each pair must get what its block computed alone gives, and the shared
    rounds must really mix tenants (else this would test nothing)."""
    from npms import pce_fast

    inv = synth.build(pops=10, tenants=4, edges_per_tenant=6, seed=seed)
    ms = synth.core_measurements(inv, seed=seed)
    tenants_per_batch = []
    real = pce_fast._search_batch

    def spy(eng, variant, sol, queries, limit):
        tenants_per_batch.append(len({id(q[5]) for q in queries}))
        return real(eng, variant, sol, queries, limit)
    monkeypatch.setattr(pce_fast, "_search_batch", spy)
    eng = FastEngine(Network(inv, ms))
    batched = eng.compute()
    assert batched.stats["slow_pairs"] > 0 and max(tenants_per_batch) > 1
    alone = FastEngine(Network(inv, ms))
    views = []
    for view in batched._blocks:  # the same blocks, each built (and searched) on its own
        blk = pce_fast._Block(alone, view.tname, view.tc, {}, {"slow_pairs": 0, "pairs": 0})
        views.append(pce_fast._BlockView.full(blk))
    one_by_one = sorted((r for v in views for r in v.results()), key=lambda r: r.key)
    assert not _diff([r.to_dict() for r in one_by_one], batched.to_list())
    # an update's recomputed pairs of all blocks are batched too
    a, b = _most_used_core_link(batched.to_list())
    change = _both_ways(_keyed(ms), a, b, latency_factor=3.0, loss_pct=2.0)
    tenants_per_batch.clear()
    got = eng.update(change).to_list()
    state = _keyed(ms)
    for m in change:
        state[(m.get("tenant"), m["src"], m["dst"])] = m
    assert not _diff(got, compute_paths(inv, list(state.values()), engine="reference").to_list())


@pytest.mark.parametrize("seed", [3, 7])
def test_failure_reasons_of_an_older_result_set_keep_its_measurements(seed):
    """Why a pair fell back (``no path meets <profile> (...)``) is put into words only when
    a result is materialised, from the diagnosis the block computed: a result set first
    looked at after an update must still give the words (and everything else) of the
    measurements it was computed from, and the update's set those of the new ones."""
    inv, _eng, state, _link, first, expected_first, second = _computed_then_updated(seed)
    got_first = first.to_list()
    assert not _diff(got_first, expected_first)
    after = second.to_list()
    _check_against_fresh(inv, state, after, "seed %d, after the update" % seed)
    failed = [r["reason"] for r in got_first if "no path meets" in r["reason"]]
    assert failed, "seed %d: no pair fell back, nothing tested" % seed
    assert any("no path meets" in r["reason"] for r in after)


@pytest.mark.parametrize("seed", [5, 16, 17])
def test_random_update_sequence_equals_fresh_compute(seed):
    """Twelve updates in a row on one engine (core links slower, lossy, down, back, faster,
    often on the links its paths use), each equal to a fresh compute.  An update recomputes
    a pair's choice and its backup separately: the sequence must include pairs whose backup
    alone was recomputed (the choice kept from an older layer) and pairs whose choice was
    recomputed but whose backup was kept, else those paths would be untested.  With seeds
    16 and 17, exact searches are kept because the worse arcs crossed only partial paths that
    decided nothing (``_search_batch``'s decisive paths)."""
    import random

    rnd = random.Random(seed)
    inv = synth.build(pops=16, tenants=3, edges_per_tenant=8, seed=seed)
    ms = synth.core_measurements(inv, seed=seed)
    state = _keyed(ms)
    eng = FastEngine(Network(inv, ms))
    got = eng.compute().to_list()
    links = sorted(tuple(sorted((lk.a, lk.b))) for lk in inv.links if lk.kind == "core")
    original = {key: dict(m) for key, m in state.items()}
    backup_only = choice_only = 0
    for step in range(12):
        used = sorted(_used_core_links(got))
        a, b = rnd.choice(used if used and rnd.random() < 0.8 else links)
        kind = rnd.choice(["slower", "lossy", "down", "back", "faster"])
        change = {
            "slower": lambda: _both_ways(state, a, b, latency_factor=rnd.choice([1.5, 3.0, 6.0])),
            "lossy": lambda: _both_ways(state, a, b, loss_pct=rnd.choice([0.5, 2.0, 4.0])),
            "down": lambda: _both_ways(state, a, b, loss_pct=100.0),
            "back": lambda: [original[(None, a, b)], original[(None, b, a)]],
            "faster": lambda: _both_ways(state, a, b, latency_factor=0.5),
        }[kind]()
        for m in change:
            state[(None, m["src"], m["dst"])] = m
        paths = eng.update(change)
        got = paths.to_list()
        _check_fresh_only(inv, state, got, "seed %d, step %d, %s %s-%s" % (seed, step, kind, a, b))
        st = paths.stats
        if st.get("choice_pairs") is not None:
            backup_only += st["pairs"] - st["choice_pairs"]
            choice_only += st["pairs"] - st["backup_pairs"]
    assert backup_only > 0, "seed %d: no update recomputed a backup alone" % seed
    assert choice_only > 0, "seed %d: no update kept a backup for a recomputed choice" % seed


def _check_fresh_only(inv, state, got, what):
    problem = _diff(got, FastEngine(Network(inv, list(state.values()))).compute().to_list())
    assert not problem, "%s: update vs fresh compute: %s" % (what, problem)
