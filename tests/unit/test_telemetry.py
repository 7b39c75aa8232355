# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe samples: validation (bad ones named and rejected, good ones kept) and window
aggregation (hand-checked numbers; the aggregates drive the path engine unchanged)."""

import random
from pathlib import Path

import numpy as np
import pytest

from npms import telemetry
from npms.inventory import load_inventory
from npms.measurements import Measurement
from npms.pce import compute_paths
from npms.telemetry import (Rejection, Sample, aggregate, aggregate_columns, validate_samples,
                            window_start)

LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab"
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


def icmp(**kw):
    d = {"src": "edge-ber", "dst": "core-fra", "kind": "icmp", "ts": NOW - 30, "tenant": "acme",
         "sent": 10, "received": 10, "rtt_ms": 4.0}
    d.update(kw)
    return d


GOOD = [
    icmp(),
    icmp(kind="udp", jitter_ms=0.3, reordered=1, rtt_min_ms=3.5, rtt_max_ms=4.5, duration_s=10),
    icmp(kind="icmp", received=0, rtt_ms=None, ts=NOW - 20),
    {"src": "edge-ber", "dst": "core-fra", "kind": "tcp", "ts": NOW - 30, "tenant": "acme", "sent": 3,
     "received": 3, "connect_ms": 8.1},
    {"src": "edge-ber", "dst": "core-fra", "kind": "http", "ts": NOW - 30, "tenant": "acme", "sent": 1,
     "received": 1, "connect_ms": 8.0, "ttfb_ms": 25},
    {"src": "edge-ber", "dst": "core-fra", "kind": "iperf", "ts": NOW - 30, "tenant": "acme", "sent": 1,
     "received": 1, "bandwidth_mbps": 480.5, "duration_s": 5, "jitter_ms": None},
    icmp(src="edge-ber", dst="core-lon", tenant="globex", ts=NOW + 59),  # clock skew inside the bound
    icmp(ts=int(NOW) - 86400),  # oldest accepted, integer ts
]

# (what is wrong, the sample, the field its reason must name, the reason code, words the reason must hold)
BAD = [
    ("unknown field (typo)", icmp(rtt_msec=4.0), "rtt_msec", "unknown_field", "unknown field"),
    ("missing ts", {k: v for k, v in icmp().items() if k != "ts"}, "ts", "missing_field", "required"),
    ("missing received", {k: v for k, v in icmp().items() if k != "received"}, "received", "missing_field",
     "required"),
    ("bad kind", icmp(kind="ping"), "kind", "bad_kind", "'ping' is not one of"),
    ("src is not the sender", icmp(src="edge-bos", tenant="acme"), "src", "wrong_source", "sending node"),
    ("src == dst", icmp(dst="edge-ber"), "dst", "same_node", "same node"),
    ("ts is a string", icmp(ts="2024-01-01T00:00:00"), "ts", "bad_type", "expected a number"),
    ("ts is NaN", icmp(ts=float("nan")), "ts", "bad_type", "not a finite number"),
    ("ts too old", icmp(ts=NOW - 86401), "ts", "too_old", "older than"),
    ("ts in the future", icmp(ts=NOW + 61), "ts", "in_future", "future"),
    ("sent negative", icmp(sent=-1), "sent", "out_of_range", "negative"),
    ("sent is a float", icmp(sent=10.5), "sent", "bad_type", "expected an integer"),
    ("sent is a bool", icmp(sent=True), "sent", "bad_type", "expected an integer"),
    ("received > sent", icmp(received=11), "received", "received_gt_sent", "more than sent"),
    ("rtt negative", icmp(rtt_ms=-0.1), "rtt_ms", "out_of_range", "out of range"),
    ("rtt in seconds by mistake (too big)", icmp(rtt_ms=1e6), "rtt_ms", "out_of_range", "out of range"),
    ("rtt is infinite", icmp(rtt_ms=float("inf")), "rtt_ms", "bad_type", "not a finite number"),
    ("replies but no rtt", icmp(rtt_ms=None), "rtt_ms", "missing_result", "required when received > 0"),
    ("rtt without replies", icmp(received=0), "rtt_ms", "result_without_reply", "must be null"),
    ("rtt_min above rtt", icmp(rtt_min_ms=5.0), "rtt_min_ms", "rtt_order", "above rtt_ms"),
    ("rtt_max below rtt", icmp(rtt_max_ms=3.0), "rtt_max_ms", "rtt_order", "below rtt_ms"),
    ("field of another kind", icmp(bandwidth_mbps=100.0), "bandwidth_mbps", "field_not_for_kind",
     "not reported by icmp"),
    ("iperf without bandwidth", {"src": "edge-ber", "dst": "core-fra", "kind": "iperf", "ts": NOW - 1,
                                 "tenant": "acme", "sent": 1, "received": 1}, "bandwidth_mbps",
     "missing_result", "required"),
    ("reordered > received", icmp(kind="udp", reordered=20), "reordered", "out_of_range", "more than received"),
    ("tenant is not a name", icmp(tenant=7), "tenant", "bad_type", "tenant name or null"),
    ("dst empty", icmp(dst=""), "dst", "bad_type", "node name"),
]

# need the lab inventory
BAD_INV = [
    ("unknown node", icmp(dst="core-xyz"), "dst", "unknown_node", "unknown node 'core-xyz'"),
    ("customer node", icmp(dst="cust-acme-ber"), "dst", "unknown_node", "customer node"),
    ("unknown tenant", icmp(tenant="initech"), "tenant", "unknown_tenant", "unknown tenant"),
    ("edge pair without tenant", icmp(tenant=None), "tenant", "tenant_required", "required for a pair"),
    ("core pair with a tenant", icmp(src="core-fra", dst="core-lon", tenant="acme"), "tenant",
     "tenant_not_allowed", "shared by all tenants"),
    ("edge not serving the tenant", icmp(src="edge-syd", dst="core-sin", tenant="acme"), "tenant",
     "tenant_not_served", "does not serve tenant 'acme'"),
]


def _source(item):
    return item.get("src") if isinstance(item, dict) and isinstance(item.get("src"), str) and item.get("src") \
        else "edge-ber"


def test_every_good_sample_is_kept_with_its_values(lab):
    for inv in (None, lab):
        for item in GOOD:
            good, bad = validate_samples([item], item["src"], now=NOW, inventory=inv)
            assert bad == [], (item, bad)
            (s,) = good
            assert (s.src, s.dst, s.kind, s.ts, s.tenant) == (
                item["src"], item["dst"], item["kind"], float(item["ts"]), item["tenant"])
            assert s.to_dict() == {k: v for k, v in item.items() if v is not None or k == "tenant"}


@pytest.mark.parametrize("what,item,field,code,words", BAD, ids=[b[0] for b in BAD])
def test_bad_sample_is_rejected_naming_index_and_field(what, item, field, code, words):
    src = "edge-ber"
    batch = [GOOD[0], dict(GOOD[0], ts=NOW - 1), item, dict(GOOD[0], ts=NOW - 2)]
    good, bad = validate_samples(batch, src, now=NOW)
    assert len(good) == 3, "the good samples of the batch are kept"
    assert [s.ts for s in good] == [NOW - 30, NOW - 1, NOW - 2]
    (rej,) = bad
    assert isinstance(rej, Rejection) and rej.index == 2
    assert "sample #2" in rej.reason and "field '%s'" % field in rej.reason, rej.reason
    assert words in rej.reason, rej.reason
    assert rej.code == code
    assert rej.to_dict() == {"index": 2, "reason": rej.reason}
    # the fast path lets nothing through that the full check rejects
    assert telemetry._fast(item, src, NOW - 86400, NOW + 60) is None


@pytest.mark.parametrize("what,item,field,code,words", BAD_INV, ids=[b[0] for b in BAD_INV])
def test_bad_sample_against_the_inventory(lab, what, item, field, code, words):
    good_without, _rejected = validate_samples([item], _source(item), now=NOW)
    assert len(good_without) == 1, "only the inventory makes this sample bad"
    src = _source(item)
    companion = {"edge-ber": GOOD[0], "core-fra": icmp(src="core-fra", dst="core-par", tenant=None),
                 "edge-syd": icmp(src="edge-syd", dst="core-sin", tenant="globex")}[src]
    good, bad = validate_samples([companion, item], src, now=NOW, inventory=lab)
    assert [s.to_dict() for s in good] == [companion]
    (rej,) = bad
    assert rej.index == 1 and "sample #1" in rej.reason and "field '%s'" % field in rej.reason, rej.reason
    assert words in rej.reason and rej.code == code, rej.reason


def test_not_an_object_and_several_problems_are_all_named():
    good, bad = validate_samples([["edge-ber"], icmp(sent=-1, rtt_ms="x", colour="red")], "edge-ber", now=NOW)
    assert good == []
    assert bad[0].index == 0 and "sample #0" in bad[0].reason and "expected a JSON object" in bad[0].reason
    reason = bad[1].reason
    assert reason.startswith("sample #1 (edge-ber->core-fra)")
    for field in ("colour", "sent", "rtt_ms"):
        assert "field '%s'" % field in reason, reason


def test_duplicate_sample_in_a_batch_is_rejected_once():
    item = icmp()
    good, bad = validate_samples([item, dict(item), dict(item, ts=NOW - 31)], "edge-ber", now=NOW)
    assert len(good) == 2
    assert [(r.index, r.code) for r in bad] == [(1, "duplicate")]
    assert "duplicate of sample #0" in bad[0].reason and "field 'ts'" in bad[0].reason


def test_null_for_a_field_of_another_kind_is_accepted():
    good, bad = validate_samples([icmp(bandwidth_mbps=None, connect_ms=None, jitter_ms=None)], "edge-ber", now=NOW)
    assert bad == [] and len(good) == 1


def test_random_mutations_fast_and_full_check_agree():
    """The fast path and the full check accept exactly the same samples."""
    rnd = random.Random(7)
    values = [None, -1, 0, 1, 5, 10, 11, 2.5, -0.5, 1e9, float("nan"), float("inf"), True, "x", "", "edge-ber",
              "core-fra", NOW, NOW + 120, NOW - 90000, "icmp", "udp", "tcp", "iperf", "http"]
    fields = list(telemetry.FIELDS) + ["bogus"]
    for _case in range(4000):
        item = dict(rnd.choice(GOOD))
        for _change in range(rnd.randint(1, 3)):
            item[rnd.choice(fields)] = rnd.choice(values)
        fast = telemetry._fast(item, "edge-ber", NOW - 86400, NOW + 60)
        values_full, probs = telemetry._check(item, "sample #0", "edge-ber", NOW - 86400, NOW + 60, None)
        if fast is None:
            continue  # None only means "use the full check"
        assert values_full is not None, (item, probs)
        assert fast == Sample(**values_full)


def test_batch_must_be_a_list():
    with pytest.raises(TypeError):
        validate_samples({"src": "a"}, "a")


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------

def test_window_start_is_epoch_aligned():
    assert window_start(1199.999, 600) == 600
    assert window_start(1200.0, 600) == 1200
    assert window_start(1234.5, 60) == 1200


def S(kind="icmp", ts=NOW + 5, src="core-fra", dst="core-lon", tenant=None, sent=10, received=10, **kw):
    return Sample(src=src, dst=dst, kind=kind, ts=ts, tenant=tenant, sent=sent, received=received, **kw)


def test_aggregate_hand_checked_numbers():
    w0 = window_start(NOW, 600)  # NOW is 1_700_000_000 -> window 1699999800
    assert w0 == 1_699_999_800.0
    samples = [
        S(rtt_ms=10.0, ts=w0 + 1),
        S(rtt_ms=40.0, ts=w0 + 2, received=8),
        S("udp", rtt_ms=20.0, ts=w0 + 3, jitter_ms=1.0, received=9),
        S("udp", rtt_ms=30.0, ts=w0 + 599.9, jitter_ms=2.0),
        S("udp", ts=w0 + 4, received=0, jitter_ms=None),  # all lost: counts for loss, not latency
        S("iperf", ts=w0 + 5, sent=1, received=1, bandwidth_mbps=300.0),
        S("iperf", ts=w0 + 6, sent=1, received=1, bandwidth_mbps=100.0),
        S("iperf", ts=w0 + 7, sent=1, received=1, bandwidth_mbps=200.0),
        S("tcp", ts=w0 + 8, sent=1, received=1, connect_ms=9.0),
        # next window, same pair
        S(rtt_ms=8.0, ts=w0 + 600),
        # same window, other direction
        S(rtt_ms=50.0, ts=w0 + 10, src="core-lon", dst="core-fra"),
    ]
    ms = aggregate(samples, window_s=600)
    by = {(m.src, m.dst, m.window_start): m for m in ms}
    assert len(ms) == 3
    m = by[("core-fra", "core-lon", w0)]
    # one-way latencies 5, 10, 15, 20 -> p50 12.5; p95 at 2.85 -> 15 + 0.85 * 5; p99 at 2.97
    assert m.latency_ms == 12.5
    assert m.latency_p95_ms == pytest.approx(19.25)
    assert m.latency_p99_ms == pytest.approx(19.85)
    assert m.jitter_ms == 1.5  # mean of udp jitter 1.0, 2.0
    # icmp/udp: sent 50, received 10 + 8 + 9 + 10 + 0 = 37
    assert m.loss_pct == pytest.approx(26.0)
    assert m.bandwidth_mbps == 200.0  # median of 300, 100, 200
    assert m.samples == 9
    assert (m.tenant, m.window_s) == (None, 600.0)
    nxt = by[("core-fra", "core-lon", w0 + 600)]
    assert (nxt.latency_ms, nxt.latency_p99_ms, nxt.loss_pct, nxt.samples, nxt.bandwidth_mbps,
            nxt.jitter_ms) == (4.0, 4.0, 0.0, 1, None, 0.0)
    assert by[("core-lon", "core-fra", w0)].latency_ms == 25.0


def test_aggregate_keeps_tenants_apart_and_reports_total_loss():
    w0 = window_start(NOW, 600)
    samples = [S(src="edge-ber", dst="core-fra", tenant="acme", rtt_ms=4.0, ts=w0 + 1),
               S(src="edge-ber", dst="core-fra", tenant="globex", rtt_ms=40.0, ts=w0 + 1),
               S(src="edge-ber", dst="core-lon", tenant="acme", received=0, ts=w0 + 2),
               S("tcp", src="edge-ber", dst="core-par", tenant="acme", sent=1, received=1, connect_ms=3.0)]
    ms = {(m.tenant, m.dst): m for m in aggregate(samples, window_s=600)}
    assert set(ms) == {("acme", "core-fra"), ("globex", "core-fra"), ("acme", "core-lon")}, \
        "a window with no icmp/udp sample gives no aggregate (no latency to give the engine)"
    assert ms[("acme", "core-fra")].latency_ms == 2.0 and ms[("globex", "core-fra")].latency_ms == 20.0
    lost = ms[("acme", "core-lon")]
    assert lost.loss_pct == 100.0 and lost.latency_ms == 0.0


def test_window_length_is_configurable():
    samples = [S(rtt_ms=2.0 * i, ts=NOW + 10 * i) for i in range(1, 13)]  # NOW+10 .. NOW+120, every 10 s
    assert len(aggregate(samples, window_s=60)) == 3  # NOW is 20 s into a minute: minutes start at +40, +100
    assert [m.samples for m in aggregate(samples, window_s=60)] == [3, 6, 3]  # NOW+10..30, +40..90, +100..120
    assert len(aggregate(samples, window_s=600)) == 1


@pytest.mark.parametrize("sizes", [
    [1, 2, 3, 60, 59, 7],  # grid path, uneven rows
    [60] * 20,  # grid path, equal rows
    [5000, 1, 1, 2, 1, 1],  # too uneven for a grid: lexsort path
])
def test_group_quantiles_equal_numpy_percentile(sizes):
    rnd = np.random.default_rng(sum(sizes))
    pair, ts, rtt = [], [], []
    for code, size in enumerate(sizes):
        pair += [code] * size
        ts += list(NOW + rnd.uniform(0, 600, size))
        rtt += list(np.round(rnd.exponential(20.0, size), 3))
    pair, ts, rtt = np.array(pair), np.array(ts), np.array(rtt)
    ws = np.floor(ts / 600) * 600
    perm = rnd.permutation(len(ts))  # input order must not matter
    n = len(ts)
    out = aggregate_columns(pair[perm], ts[perm], np.zeros(n, np.int8), np.full(n, 10.0), np.full(n, 10.0),
                            rtt[perm], np.full(n, np.nan), np.full(n, np.nan), window_s=600)
    for i, (p, w) in enumerate(zip(out["pair"], out["window_start"])):
        vals = rtt[(pair == p) & (ws == w)] / 2.0
        expect = np.percentile(vals, [50, 95, 99])
        assert (out["p50"][i], out["p95"][i], out["p99"][i]) == tuple(expect)  # bit for bit
        assert out["samples"][i] == len(vals)


def test_aggregate_of_nothing_is_nothing():
    assert aggregate([]) == []


# --------------------------------------------------------------------------------------
# Aggregates feed the path engine unchanged
# --------------------------------------------------------------------------------------

def _lab_samples(lab):
    """10-second icmp/udp/iperf samples for every access and core link of the lab, one window."""
    rnd = random.Random(11)
    w0 = window_start(NOW, 600)
    out = []
    for link in lab.links:
        if link.kind not in ("core", "access"):
            continue
        for u, v in ((link.a, link.b), (link.b, link.a)):
            if link.kind == "core":
                tenants = [None]
            else:
                edge = u if lab.nodes[u].role == "edge" else v
                tenants = [t for t, ten in sorted(lab.tenants.items()) if edge in ten.edges]
            for tenant in tenants:
                base = link.latency_ms * 2 * (3.0 if (u, v) == ("core-fra", "core-lon") else 1.0)
                for k in range(60):
                    ts = w0 + 10 * k + rnd.random()
                    lost = rnd.random() < 0.02
                    out.append(Sample(u, v, "udp" if k % 2 else "icmp", ts, tenant, 10, 10 - int(lost),
                                      round(base + rnd.expovariate(1.0), 3),
                                      jitter_ms=round(rnd.uniform(0.1, 1.0), 3) if k % 2 else None))
                out.append(Sample(u, v, "iperf", w0 + 300.5, tenant, 1, 1,
                                  bandwidth_mbps=float(rnd.choice([150, 400, 900]))))
    return out


def test_aggregates_give_the_same_paths_as_the_same_numbers_given_directly(lab):
    samples = _lab_samples(lab)
    ms = aggregate(samples, window_s=600)
    assert all(isinstance(m, Measurement) for m in ms)
    direct = [{"src": m.src, "dst": m.dst, "tenant": m.tenant, "latency_ms": m.latency_ms,
               "latency_p95_ms": m.latency_p95_ms, "latency_p99_ms": m.latency_p99_ms,
               "jitter_ms": m.jitter_ms, "loss_pct": m.loss_pct, "bandwidth_mbps": m.bandwidth_mbps}
              for m in ms]
    from_aggregates = compute_paths(lab, ms).to_list()
    from_numbers = compute_paths(lab, direct).to_list()
    assert from_aggregates == from_numbers
    nominal = compute_paths(lab).to_list()
    assert from_aggregates != nominal, "the measured window must matter (fra->lon is three times slower)"
    for engine in ("fast", "reference"):
        assert compute_paths(lab, ms, engine=engine).to_list() == from_numbers
