# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe samples: the wire format, its validation, and window aggregation.

A *sample* is one probe run from ``src`` to ``dst`` (a JSON object; probes emit it, the
push API posts lists of it).  ``validate_samples`` keeps the good samples of a batch and
rejects each bad one with a reason that names the sample's index and the field, so that
one broken probe does not cost the rest of the batch.  ``aggregate`` turns samples into
one ``Measurement`` per (window, src, dst, tenant): what the path engine reads.

Pure (no I/O).  numpy is imported guardedly so that ``ansible-test sanity`` can import
this module with PyYAML only; validation works without numpy, aggregation needs it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .measurements import Measurement

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised by ansible-test sanity only
    np = None

SAMPLE_KINDS = ("icmp", "udp", "tcp", "http", "iperf")
KIND_CODE = {k: i for i, k in enumerate(SAMPLE_KINDS)}  # icmp 0, udp 1: the latency kinds

# Every field of the wire format, in Sample order.
FIELDS = ("src", "dst", "kind", "ts", "tenant", "sent", "received", "rtt_ms", "rtt_min_ms",
          "rtt_max_ms", "jitter_ms", "reordered", "connect_ms", "ttfb_ms", "bandwidth_mbps",
          "duration_s")
_KNOWN = frozenset(FIELDS)
_REQUIRED = ("src", "dst", "kind", "ts", "sent", "received")

# Optional measurement fields each kind may carry (null is accepted for any known field:
# a probe that always emits every key must not be rejected for it).
KIND_FIELDS = {
    "icmp": frozenset(("rtt_ms", "rtt_min_ms", "rtt_max_ms", "duration_s")),
    "udp": frozenset(("rtt_ms", "rtt_min_ms", "rtt_max_ms", "jitter_ms", "reordered", "duration_s")),
    "tcp": frozenset(("connect_ms", "duration_s")),
    "http": frozenset(("connect_ms", "ttfb_ms", "duration_s")),
    "iperf": frozenset(("bandwidth_mbps", "jitter_ms", "duration_s")),
}
# The field a kind must report when something came back (received > 0); icmp/udp must
# also leave it null when nothing came back.
KIND_RESULT = {"icmp": "rtt_ms", "udp": "rtt_ms", "tcp": "connect_ms", "http": "ttfb_ms",
               "iperf": "bandwidth_mbps"}
# Upper bounds: a value beyond these is a unit error (seconds for ms, bit/s for Mbit/s).
_MAX = {"rtt_ms": 60000.0, "rtt_min_ms": 60000.0, "rtt_max_ms": 60000.0, "jitter_ms": 60000.0,
        "connect_ms": 60000.0, "ttfb_ms": 600000.0, "bandwidth_mbps": 1.0e7, "duration_s": 86400.0}
_FLOAT_FIELDS = ("rtt_ms", "rtt_min_ms", "rtt_max_ms", "jitter_ms", "connect_ms", "ttfb_ms",
                 "bandwidth_mbps", "duration_s")


@dataclass(frozen=True)
class Sample:
    """One probe run, validated.  ``ts`` is the end of the run (epoch seconds)."""

    src: str
    dst: str
    kind: str
    ts: float
    tenant: Optional[str] = None
    sent: int = 0
    received: int = 0
    rtt_ms: Optional[float] = None
    rtt_min_ms: Optional[float] = None
    rtt_max_ms: Optional[float] = None
    jitter_ms: Optional[float] = None
    reordered: Optional[int] = None
    connect_ms: Optional[float] = None
    ttfb_ms: Optional[float] = None
    bandwidth_mbps: Optional[float] = None
    duration_s: Optional[float] = None

    @property
    def key(self) -> Tuple[Optional[str], str, str]:
        """(tenant, src, dst): the pair a window aggregate is kept for."""
        return (self.tenant, self.src, self.dst)

    def to_dict(self) -> dict:
        """The wire format (null fields left out, ``tenant`` always present)."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["tenant"] = self.tenant
        return d


@dataclass(frozen=True)
class Rejection:
    """A rejected sample: its index in the batch and why (index and field named).

    ``code`` is a short machine key for counting (``stats()['rejected_by_reason']``).
    """

    index: int
    reason: str
    code: str = "invalid"

    def to_dict(self) -> dict:
        return {"index": self.index, "reason": self.reason}


def window_start(ts: float, window_s: float) -> float:
    """Start of the window holding ``ts``: windows are aligned on the epoch."""
    return math.floor(ts / window_s) * window_s


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------

class _InventoryView:
    """What validation needs from an Inventory, precomputed once per batch."""

    def __init__(self, inventory: Any):
        self.role = {n: node.role for n, node in inventory.nodes.items()}
        self.tenant_edges = {t: frozenset(ten.edges) for t, ten in inventory.tenants.items()}

    def problems(self, src: str, dst: str, tenant: Optional[str], where: str) -> List[Tuple[str, str]]:
        out = []
        for field, name in (("src", src), ("dst", dst)):
            role = self.role.get(name)
            if role is None:
                out.append(("unknown_node", "%s field '%s': unknown node %r" % (where, field, name)))
            elif role not in ("core", "edge"):
                out.append(("unknown_node", "%s field '%s': %r is a %s node; only core and edge nodes "
                            "are probed" % (where, field, name, role)))
        if out:
            return out
        edges = [n for n in (src, dst) if self.role[n] == "edge"]
        if tenant is None:
            if edges:
                out.append(("tenant_required", "%s field 'tenant': required for a pair involving edge %r "
                            "(edge data belongs to a tenant)" % (where, edges[0])))
        elif tenant not in self.tenant_edges:
            out.append(("unknown_tenant", "%s field 'tenant': unknown tenant %r" % (where, tenant)))
        elif not edges:
            out.append(("tenant_not_allowed", "%s field 'tenant': core-to-core data is shared by all "
                        "tenants and carries no tenant (got %r)" % (where, tenant)))
        else:
            for e in edges:
                if e not in self.tenant_edges[tenant]:
                    out.append(("tenant_not_served", "%s field 'tenant': edge %r does not serve tenant %r"
                                % (where, e, tenant)))
        return out


def _bad_number(v: Any) -> Optional[str]:
    """None when ``v`` is a finite real number, else what is wrong with it."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "expected a number, got %r" % (v,)
    if not math.isfinite(v):
        return "%r is not a finite number" % (v,)
    return None


def _check(item: Any, where: str, source: str, lo_ts: float, hi_ts: float,
           inv: Optional[_InventoryView]) -> Tuple[Optional[dict], List[Tuple[str, str]]]:
    """Every problem of one sample as (code, text); the cleaned fields when there is none."""
    if not isinstance(item, Mapping):
        return None, [("not_an_object", "%s: expected a JSON object, got %s" % (where, type(item).__name__))]
    probs: List[Tuple[str, str]] = []
    add = probs.append
    for key in item:
        if key not in _KNOWN:
            add(("unknown_field", "%s field '%s': unknown field (known: %s)" % (where, key, ", ".join(FIELDS))))
    for key in _REQUIRED:
        if item.get(key) is None:
            add(("missing_field", "%s field '%s': required" % (where, key)))
    src, dst, kind, tenant = item.get("src"), item.get("dst"), item.get("kind"), item.get("tenant")
    for field, val in (("src", src), ("dst", dst)):
        if val is not None and (not isinstance(val, str) or not val):
            add(("bad_type", "%s field '%s': expected a node name, got %r" % (where, field, val)))
    if isinstance(src, str) and src and src != source:
        add(("wrong_source", "%s field 'src': %r is not the sending node %r (a node reports only its own "
             "probes)" % (where, src, source)))
    if isinstance(src, str) and src and src == dst:
        add(("same_node", "%s field 'dst': src and dst are the same node %r" % (where, src)))
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        add(("bad_type", "%s field 'tenant': expected a tenant name or null, got %r" % (where, tenant)))
    if kind is not None and kind not in KIND_FIELDS:
        add(("bad_kind", "%s field 'kind': %r is not one of %s" % (where, kind, ", ".join(SAMPLE_KINDS))))
    ts = item.get("ts")
    if ts is not None:
        msg = _bad_number(ts)
        if msg:
            add(("bad_type", "%s field 'ts': %s" % (where, msg)))
        elif ts < lo_ts:
            add(("too_old", "%s field 'ts': %r is older than the accepted age (before %.0f)" % (where, ts, lo_ts)))
        elif ts > hi_ts:
            add(("in_future", "%s field 'ts': %r is in the future (after %.0f; check the node's clock)"
                 % (where, ts, hi_ts)))
    counts = {}
    for field in ("sent", "received", "reordered"):
        v = item.get(field)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            add(("bad_type", "%s field '%s': expected an integer, got %r" % (where, field, v)))
        elif v < 0:
            add(("out_of_range", "%s field '%s': %r is negative" % (where, field, v)))
        else:
            counts[field] = v
    if "sent" in counts and "received" in counts and counts["received"] > counts["sent"]:
        add(("received_gt_sent", "%s field 'received': %d is more than sent (%d)"
             % (where, counts["received"], counts["sent"])))
    if "reordered" in counts and "received" in counts and counts["reordered"] > counts["received"]:
        add(("out_of_range", "%s field 'reordered': %d is more than received (%d)"
             % (where, counts["reordered"], counts["received"])))
    values: Dict[str, float] = {}
    for field in _FLOAT_FIELDS:
        v = item.get(field)
        if v is None:
            continue
        msg = _bad_number(v)
        if msg:
            add(("bad_type", "%s field '%s': %s" % (where, field, msg)))
        elif v < 0 or v > _MAX[field]:
            add(("out_of_range", "%s field '%s': %r is out of range (0..%g)" % (where, field, v, _MAX[field])))
        else:
            values[field] = float(v)
    allowed = KIND_FIELDS.get(kind) if isinstance(kind, str) else None
    if allowed is not None:
        for field in _FLOAT_FIELDS + ("reordered",):
            if item.get(field) is not None and field not in allowed:
                add(("field_not_for_kind", "%s field '%s': not reported by %s probes (their fields: %s)"
                     % (where, field, kind, ", ".join(sorted(allowed)))))
        result = KIND_RESULT[kind]
        got = counts.get("received")
        if got is not None and got > 0 and item.get(result) is None:
            add(("missing_result", "%s field '%s': required when received > 0 (%s probe)" % (where, result, kind)))
        if got == 0 and result == "rtt_ms" and item.get("rtt_ms") is not None:
            add(("result_without_reply", "%s field 'rtt_ms': must be null when nothing came back "
                 "(received 0)" % where))
    rtt = values.get("rtt_ms")
    if rtt is not None:
        lo, hi = values.get("rtt_min_ms"), values.get("rtt_max_ms")
        if lo is not None and lo > rtt:
            add(("rtt_order", "%s field 'rtt_min_ms': %g is above rtt_ms %g" % (where, lo, rtt)))
        if hi is not None and hi < rtt:
            add(("rtt_order", "%s field 'rtt_max_ms': %g is below rtt_ms %g" % (where, hi, rtt)))
    if inv is not None and not probs:
        probs.extend(inv.problems(src, dst, tenant, where))
    if probs:
        return None, probs
    values.update(counts)
    values.update(src=src, dst=dst, kind=kind, ts=float(ts), tenant=tenant)
    return values, probs


_BASE = frozenset(_REQUIRED + ("tenant",))
# per kind: (every field it may carry, its optional number fields, its result field)
_FAST_KIND = {k: (_BASE | f, tuple(x for x in _FLOAT_FIELDS if x in f), KIND_RESULT[k], "reordered" in f)
              for k, f in KIND_FIELDS.items()}
_NUM = (float, int)


def _fast(item: Any, source: str, lo_ts: float, hi_ts: float) -> Optional[Sample]:
    """The common case, checked with few operations: a good sample, or None.

    None means "not obviously good": ``_check`` then runs every check and names every
    problem.  Both accept exactly the same samples (the unit tests run the bad-sample
    table through both); this one exists because validation is per-sample Python and
    the store must ingest tens of thousands of samples per second on one core.
    """
    # Exact types on purpose: a bool is not a count, and isinstance() costs more here.
    # pylint: disable=unidiomatic-typecheck
    if type(item) is not dict:
        return None
    spec = _FAST_KIND.get(item.get("kind"))
    if spec is None or not item.keys() <= spec[0]:
        return None
    src, dst, tenant, ts = item.get("src"), item.get("dst"), item.get("tenant"), item.get("ts")
    if src != source or type(dst) is not str or not dst or dst == src:
        return None
    if tenant is not None and (type(tenant) is not str or not tenant):
        return None
    if type(ts) not in _NUM or not lo_ts <= ts <= hi_ts:  # NaN fails the comparison
        return None
    sent, received = item.get("sent"), item.get("received")
    if type(sent) is not int or type(received) is not int or not 0 <= received <= sent:
        return None
    vals = {}
    for f in spec[1]:
        v = item.get(f)
        if v is not None:
            if type(v) not in _NUM or not 0 <= v <= _MAX[f]:
                return None
            vals[f] = float(v)
    result = spec[2]
    if received > 0:
        if result not in vals:
            return None
    elif result == "rtt_ms" and "rtt_ms" in vals:
        return None
    rtt = vals.get("rtt_ms")
    if rtt is not None and (vals.get("rtt_min_ms", rtt) > rtt or vals.get("rtt_max_ms", rtt) < rtt):
        return None
    reordered = item.get("reordered")
    if reordered is not None and (not spec[3] or type(reordered) is not int or not 0 <= reordered <= received):
        return None
    g = vals.get
    return Sample(src, dst, item["kind"], float(ts), tenant, sent, received, rtt, g("rtt_min_ms"),
                  g("rtt_max_ms"), g("jitter_ms"), reordered, g("connect_ms"), g("ttfb_ms"),
                  g("bandwidth_mbps"), g("duration_s"))


def validate_samples(items: Iterable[Any], source: str, *, inventory: Any = None,
                     now: Optional[float] = None, max_age_s: float = 86400,
                     max_future_s: float = 60) -> Tuple[List[Sample], List[Rejection]]:
    """Split a batch into good samples and rejections; nothing good is dropped.

    ``source`` is the sending node: a sample's ``src`` must be it (a node reports its own
    probes only, so one compromised or misconfigured node cannot forge another's data).
    With an ``inventory``: both nodes exist and are core/edge nodes, the tenant exists and
    is served by the edge(s) of the pair, and core-to-core pairs carry no tenant.  A
    sample identical in (src, dst, tenant, kind, ts) to an earlier one of the batch is
    rejected as a duplicate.  A rejection's reason names the sample index and the field;
    when a sample has several problems they are all listed, joined by "; ".
    """
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise TypeError("samples: expected a list of sample objects, got %s" % type(items).__name__)
    if not isinstance(source, str) or not source:
        raise TypeError("source: expected the sending node's name, got %r" % (source,))
    now = time.time() if now is None else float(now)
    lo_ts, hi_ts = now - max_age_s, now + max_future_s
    inv = _InventoryView(inventory) if inventory is not None else None
    good: List[Sample] = []
    bad: List[Rejection] = []
    seen: Dict[tuple, int] = {}
    ok_pairs: set = set()
    for i, item in enumerate(items):
        sample = _fast(item, source, lo_ts, hi_ts)
        if sample is not None and inv is not None and sample.key not in ok_pairs:
            if inv.problems(sample.src, sample.dst, sample.tenant, ""):
                sample = None  # the slow path below names the problem
            else:
                ok_pairs.add(sample.key)
        where = "sample #%d" % i
        if sample is None:
            values, probs = _check(item, where, source, lo_ts, hi_ts, inv)
            if values is not None:
                sample = Sample(**values)
        if sample is not None:
            key = (sample.src, sample.dst, sample.tenant, sample.kind, sample.ts)
            first = seen.setdefault(key, i)
            if first == i:
                good.append(sample)
                continue
            probs = [("duplicate", "%s field 'ts': duplicate of sample #%d (same src, dst, tenant, kind "
                      "and ts)" % (where, first))]
        if isinstance(item, Mapping) and isinstance(item.get("src"), str) and isinstance(item.get("dst"), str):
            probs = [(c, m.replace(where, "%s (%s->%s)" % (where, item["src"], item["dst"]), 1)) for c, m in probs]
        bad.append(Rejection(i, "; ".join(m for _c, m in probs), probs[0][0]))
    return good, bad


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------

QUANTILES = (0.50, 0.95, 0.99)


def _need_numpy() -> None:
    if np is None:
        raise ImportError("npms.telemetry aggregation needs numpy (pip install 'numpy>=1.26')")


def _sorted_group_quantiles(values: "np.ndarray", mask: "np.ndarray", starts: "np.ndarray",
                            counts: "np.ndarray", qs: Sequence[float]) -> Tuple["np.ndarray", "np.ndarray"]:
    """Quantiles of ``values[mask]`` per group of a group-contiguous array, and the counts.

    Same numbers as ``np.percentile(..., method='linear')`` on each group, without a
    Python loop: the values are scattered into a (groups x longest group) grid padded
    with +inf and the grid is sorted along its rows in one call (a window holds tens of
    samples, so rows are short and the sort is cheap); when group sizes are too uneven
    for a grid, one lexsort of (group, value) does it.  Groups with no value get NaN.
    """
    ngroups = len(starts)
    out = np.full((ngroups, len(qs)), np.nan)
    if mask.all():
        vals, cnt = values, counts
    else:
        vals = values[mask]
        cnt = np.add.reduceat(mask.astype(np.int64), starts) if len(mask) else np.zeros(ngroups, np.int64)
    m = len(vals)
    if m == 0:
        return out, cnt
    nz = cnt > 0
    rc = cnt[nz]
    rows = len(rc)
    maxc = int(rc.max())
    offs = np.zeros(rows, dtype=np.int64)
    np.cumsum(rc[:-1], out=offs[1:])
    if rows * maxc <= 4 * m + 4096:
        if int(rc.min()) == maxc:
            grid = vals.reshape(rows, maxc).copy()
        else:
            idx = np.arange(m, dtype=np.int64)
            idx += np.repeat(np.arange(rows, dtype=np.int64) * maxc - offs, rc)
            flat = np.full(rows * maxc, np.inf)
            flat[idx] = vals
            grid = flat.reshape(rows, maxc)
        grid.sort(axis=1)
        flat = grid.ravel()
        base = np.arange(rows, dtype=np.int64) * maxc
    else:
        gid = np.repeat(np.arange(rows), rc)
        flat = vals[np.lexsort((vals, gid))]
        base = offs
    last = rc - 1
    res = np.empty((rows, len(qs)))
    for j, q in enumerate(qs):
        virt = q * last
        lo = np.floor(virt).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = virt - lo
        a, b = flat[base + lo], flat[base + hi]
        d = b - a
        # numpy's 'linear' interpolation, bit for bit (it switches form at 0.5)
        res[:, j] = np.where(frac >= 0.5, b - d * (1.0 - frac), a + d * frac)
    out[nz] = res
    return out, cnt


def aggregate_columns(pair: "np.ndarray", ts: "np.ndarray", kind: "np.ndarray", sent: "np.ndarray",
                      received: "np.ndarray", rtt_ms: "np.ndarray", jitter_ms: "np.ndarray",
                      bandwidth_mbps: "np.ndarray", window_s: float = 600) -> Dict[str, "np.ndarray"]:
    """Window aggregates over columns (the engine of ``aggregate``; the store calls it directly).

    ``pair``: non-negative int code of (tenant, src, dst); ``kind``: ``KIND_CODE`` ints;
    missing floats are NaN.  Returns arrays, one row per (pair, window) that has at least
    one icmp/udp sample (the path engine needs a latency or a loss figure): ``pair``,
    ``window_start``, ``p50``/``p95``/``p99`` (one-way ms, RTT/2), ``jitter`` (mean of udp
    jitter_ms, 0 when none), ``loss_pct``, ``bandwidth`` (median of iperf, NaN when none),
    ``samples`` (every kind), in (pair, window) order.  A window where every probe was lost
    has loss 100 % and latency 0 (the engine prunes a 100 %-loss arc; the latency is unused).

    Grouping: an integer key pair x window; input already in (pair, time) order, as the
    store reads it, is used as it is (one linear check), other input costs one stable
    argsort.  Per-group sums are ``np.add.reduceat`` over the group starts.
    """
    _need_numpy()
    n = len(ts)
    if n == 0:
        e = np.empty(0)
        return {"pair": np.empty(0, np.int64), "window_start": e, "p50": e, "p95": e, "p99": e,
                "jitter": e, "loss_pct": e, "bandwidth": e, "samples": np.empty(0, np.int64)}
    ts = np.asarray(ts, dtype=np.float64)
    w = ts / float(window_s)
    np.floor(w, out=w)
    widx = w.astype(np.int64)
    del w
    wmin = int(widx.min())
    span = int(widx.max()) - wmin + 1
    key = np.asarray(pair, dtype=np.int64)
    if n and (int(key.min()) < 0 or int(key.max()) >= (1 << 62) // span):
        raise ValueError("aggregate: pair codes must be >= 0 and pair x window must fit 62 bits")
    key = key * span
    widx -= wmin
    key += widx
    del widx
    if n > 1 and not bool((key[1:] >= key[:-1]).all()):
        order = np.argsort(key, kind="stable")
        key = key[order]

        def take(a, dtype=None):
            return np.asarray(a, dtype=dtype)[order]
    else:
        def take(a, dtype=None):
            return np.asarray(a, dtype=dtype)
    head = np.empty(n, dtype=bool)
    head[0] = True
    np.not_equal(key[1:], key[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    del head
    counts = np.diff(np.append(starts, n))
    kind_s = take(kind)
    lat_kind = kind_s <= 1
    rtt_s = take(rtt_ms, np.float64)
    lat, n_lat = _sorted_group_quantiles(rtt_s, lat_kind & ~np.isnan(rtt_s), starts, counts, QUANTILES)
    del rtt_s
    zero = 0.0
    sent_l = np.add.reduceat(np.where(lat_kind, take(sent, np.float64), zero), starts)
    recv_l = np.add.reduceat(np.where(lat_kind, take(received, np.float64), zero), starts)
    jit_s = take(jitter_ms, np.float64)
    has_jit = (kind_s == 1) & ~np.isnan(jit_s)
    n_jit = np.add.reduceat(has_jit.astype(np.int64), starts)
    sum_jit = np.add.reduceat(np.where(has_jit, jit_s, zero), starts)
    del jit_s, has_jit
    bw_s = take(bandwidth_mbps, np.float64)
    bw = _sorted_group_quantiles(bw_s, (kind_s == 4) & ~np.isnan(bw_s), starts, counts, (0.5,))[0][:, 0]
    keep = (n_lat > 0) | (sent_l > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.where(sent_l > 0, 100.0 * (1.0 - recv_l / sent_l), 0.0)
        jitter = np.where(n_jit > 0, sum_jit / np.maximum(n_jit, 1), 0.0)
    np.clip(loss, 0.0, 100.0, out=loss)
    lat = lat[keep]
    lat[np.isnan(lat)] = 0.0
    lat *= 0.5  # one-way; exact (a power of two), so the quantiles of RTT/2 are these
    gkey = key[starts][keep]
    return {
        "pair": gkey // span,
        "window_start": (gkey % span + wmin) * float(window_s),
        "p50": lat[:, 0].copy(), "p95": lat[:, 1].copy(), "p99": lat[:, 2].copy(),
        "jitter": jitter[keep], "loss_pct": loss[keep], "bandwidth": bw[keep],
        "samples": counts[keep],
    }


def columns_of(samples: Sequence[Sample]) -> Tuple[Dict[str, "np.ndarray"], List[Tuple[Optional[str], str, str]]]:
    """Samples -> the columns ``aggregate_columns`` takes, and the (tenant, src, dst) of each pair code."""
    _need_numpy()
    codes: Dict[tuple, int] = {}
    pair = [codes.setdefault((s.tenant, s.src, s.dst), len(codes)) for s in samples]
    nan = float("nan")
    cols = {
        "pair": np.array(pair, dtype=np.int64),
        "ts": np.array([s.ts for s in samples], dtype=np.float64),
        "kind": np.array([KIND_CODE[s.kind] for s in samples], dtype=np.int8),
        "sent": np.array([s.sent for s in samples], dtype=np.float64),
        "received": np.array([s.received for s in samples], dtype=np.float64),
        "rtt_ms": np.array([nan if s.rtt_ms is None else s.rtt_ms for s in samples], dtype=np.float64),
        "jitter_ms": np.array([nan if s.jitter_ms is None else s.jitter_ms for s in samples], dtype=np.float64),
        "bandwidth_mbps": np.array([nan if s.bandwidth_mbps is None else s.bandwidth_mbps for s in samples],
                                   dtype=np.float64),
    }
    return cols, list(codes)


def measurements_from(agg: Mapping[str, "np.ndarray"], keys: Sequence[Tuple[Optional[str], str, str]],
                      window_s: float) -> List[Measurement]:
    """Rows of ``aggregate_columns`` -> Measurements (``keys[code]`` = (tenant, src, dst))."""
    out = []
    cols = [agg[k].tolist() for k in ("pair", "window_start", "p50", "p95", "p99", "jitter", "loss_pct", "bandwidth", "samples")]
    ws = float(window_s)
    for code, start, p50, p95, p99, jit, loss, bw, cnt in zip(*cols):
        tenant, src, dst = keys[code]
        out.append(Measurement(src=src, dst=dst, latency_ms=p50, jitter_ms=jit, loss_pct=loss,
                               latency_p95_ms=p95, latency_p99_ms=p99,
                               bandwidth_mbps=None if math.isnan(bw) else bw, tenant=tenant,
                               samples=cnt, window_start=start, window_s=ws))
    return out


def aggregate(samples: Sequence[Sample], window_s: int = 600) -> List[Measurement]:
    """One ``Measurement`` per (window_start, src, dst, tenant) that has icmp/udp samples.

    latency = one-way (RTT / 2) p50 / p95 / p99 over icmp/udp ``rtt_ms``; jitter = mean
    udp ``jitter_ms``; loss_pct = 100 * (1 - sum received / sum sent) over icmp/udp;
    bandwidth_mbps = median of iperf; samples = every sample of the pair in the window.
    Sorted by (pair code, window): pairs in order of first appearance.
    """
    if not samples:
        return []
    cols, keys = columns_of(samples)
    return measurements_from(aggregate_columns(window_s=window_s, **cols), keys, window_s)


__all__ = [
    "SAMPLE_KINDS", "KIND_CODE", "FIELDS", "KIND_FIELDS", "Sample", "Rejection", "validate_samples",
    "window_start", "aggregate", "aggregate_columns", "columns_of", "measurements_from",
]
