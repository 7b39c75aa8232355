# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Path computation engine (PCE).

Input: an ``Inventory`` and window aggregates per directed node pair.  Output: for every
tenant, traffic class and ordered pair of the tenant's edges, the chosen node path, its
SRv6 SID list, a disjoint backup, the path's metrics, an SLA verdict and a reason.

This module holds the semantics (one implementation) and the *reference* engine, which
computes each pair with networkx.  ``pce_fast`` computes the same thing with numpy over
all pairs at once and must agree with this module exactly (tests check it).

Semantics, in the order they are applied
----------------------------------------
Graph (per tenant): every core node, the tenant's edges; core links, the tenant's access
links, and its direct edge-to-edge links, each in both directions.  Edges never carry
transit traffic: a path is ``src -> core* -> dst`` or the direct ``src -> dst``.

Arc metrics: the tenant's measurement for the directed pair, else the shared (tenant-less)
measurement, else the link's nominal inventory values.  Core links only take shared
measurements (core data is shared by all tenants).

Pruning (per SLA profile): transit nodes in an excluded country or region, links whose
``via_countries`` are excluded, arcs below the bandwidth the class needs (times the FEC
overhead when FEC is on), arcs at 100 % loss, direct arcs unless the profile allows them,
and arcs whose own latency, jitter or loss already exceeds the path bound.  Source and
destination edges are exempt from geo exclusions: an exclusion forbids *transit*.

Objective (per mode), as (primary, secondary):
  lowest_cost (cost, latency); lowest_latency (latency, cost); zero_loss (loss, latency);
  lossless_fec (latency, cost); sustained_bandwidth (sum of 100 Gbit/s / bandwidth, latency)
Loss composes multiplicatively (it is minimised as a sum of -ln(1 - loss)); latency,
jitter, cost and hops add; bandwidth is the bottleneck.  Weights are quantised to integers
(primary: 1 us, 0.001 cost, 1e-8 of -ln(1-loss), 0.001 of 100G/bw; secondary: 0.1 ms or 0.1
cost) so that both engines compare exactly the same numbers.

Ties: lower primary, then lower secondary, then fewer hops, then the lexicographically
smallest sequence of node names.

Admission: the path's latency (p50), jitter, loss, hop count must be within the profile's
bounds.  If the direct edge-to-edge path is allowed and admitted, it is chosen; otherwise
the best admitted path through the core.  When the least-weight path breaks a bound, the
best path within the bounds is searched for exactly (``constrained_best``); the search
gives up after ``PceSettings.max_candidates`` partial paths and then reports none admitted.  ``lossless_fec`` considers the path without FEC
(loss within the target) and, when the class has FEC, the path with FEC on (residual loss
after FEC within the target, bandwidth and cost charged by the FEC overhead), and takes the
better; ties go to no FEC.

Fallback: the class's SLA profile (verdict ``met``), its fallback profile
(``met_fallback``), then best effort under the SLA profile's mode, geo exclusions and
direct-path policy with no bounds (``unmet_best_effort``); ``unreachable`` when not even
that exists.

Backup: the best path under the same profile that shares no transit node and no link with
the primary (``PceSettings.backup``: node, link or none); best effort when no admitted one.

Hysteresis: when the current path (from the previous run) is still admitted under the
newly chosen profile (without FEC, else with it), it is kept unless the best candidate
improves the primary objective by more than ``hysteresis_pct`` percent of the current
value and by more than ``hysteresis_min`` (a gain equal to the margin keeps it).  A current path that visits a node twice is never kept, and the
direct-path rule wins over hysteresis (an admitted direct path is always taken).
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .measurements import Measurement, MeasurementError, parse_measurements
from .model import Inventory, SlaProfile, TrafficClass

try:
    import numpy as np
except ImportError:  # pragma: no cover - the sanity import test has no numpy
    np = None

try:
    import networkx as nx
except ImportError:  # pragma: no cover
    nx = None


MET = "met"
MET_FALLBACK = "met_fallback"
BEST_EFFORT = "unmet_best_effort"
UNREACHABLE = "unreachable"
VERDICTS = (MET, MET_FALLBACK, BEST_EFFORT, UNREACHABLE)

REF_BANDWIDTH_MBPS = 100000.0  # sustained_bandwidth: arc weight = REF / bandwidth (OSPF style)
DEFAULT_LOSSLESS_TARGET_PCT = 0.01  # lossless_fec residual loss target when the profile names none
BOUND_EPS = 1e-9

# Composite integer weight: primary << SHIFT | secondary << HOP_BITS | 1 (one per hop).
HOP_BITS = 6
SEC_BITS = 22
SHIFT = HOP_BITS + SEC_BITS
PRIMARY_CAP = (1 << 27) - 1  # per arc; 64 hops of it stay below INF
SECONDARY_CAP = (1 << 16) - 1  # per arc; 64 hops of it stay inside SEC_BITS
INF = 1 << 61  # "no arc"; a + b of two values <= INF never overflows int64
MAX_HOPS_HARD = 63


def _need_numpy():
    if np is None:
        raise RuntimeError("galactic.npms path engine needs numpy: pip install numpy")


def _need_networkx():
    if nx is None:
        raise RuntimeError("galactic.npms reference path engine needs networkx: pip install networkx")


# --------------------------------------------------------------------------------------
# Arc metrics and weights (one implementation, array-capable, used by both engines)
# --------------------------------------------------------------------------------------

OBJECTIVES = {
    # mode: (primary, secondary)
    "lowest_cost": ("cost", "latency"),
    "lowest_latency": ("latency", "cost"),
    "zero_loss": ("loss", "latency"),
    "lossless_fec": ("latency", "cost"),
    "sustained_bandwidth": ("inv_bw", "latency"),
}
OBJECTIVE_UNITS = {"cost": "", "latency": " ms", "loss": " %", "inv_bw": ""}


def _primary_q(kind, lat, cost, loss, bw):
    if kind == "latency":
        q = np.rint(lat * 1000.0)
    elif kind == "cost":
        q = np.rint(cost * 1000.0)
    elif kind == "loss":
        with np.errstate(divide="ignore"):
            q = np.rint(-np.log1p(-np.minimum(loss, 1.0)) * 1e8)
    elif kind == "inv_bw":
        with np.errstate(divide="ignore"):
            q = np.rint(REF_BANDWIDTH_MBPS / np.maximum(bw, 1e-12) * 1000.0)
    else:  # pragma: no cover
        raise ValueError(kind)
    return np.minimum(np.nan_to_num(q, nan=PRIMARY_CAP, posinf=PRIMARY_CAP), PRIMARY_CAP).astype(np.int64)


def _secondary_q(kind, lat, cost):
    q = np.rint((lat if kind == "latency" else cost) * 10.0)
    return np.minimum(q, SECONDARY_CAP).astype(np.int64)


def arc_weight(mode: str, lat, cost, loss, bw):
    """Composite integer weight of arcs (numpy arrays or scalars) for a mode.

    ``loss`` is a fraction (0..1).  Cost is the cost as charged (FEC overhead included).
    """
    _need_numpy()
    primary, secondary = OBJECTIVES[mode]
    lat = np.asarray(lat, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    bw = np.asarray(bw, dtype=np.float64)
    p = _primary_q(primary, lat, cost, loss, bw)
    s = _secondary_q(secondary, lat, cost)
    return (p << SHIFT) | (s << HOP_BITS) | 1


@functools.lru_cache(maxsize=1 << 16)
def scalar_arc_weight(mode: str, lat: float, cost: float, loss: float, bw: float) -> int:
    """``arc_weight`` of one arc as a Python int (cached: paths reuse the same arcs).

    Plain float arithmetic for the quantisations that are only IEEE multiplications and
    divisions (Python's ``round`` and ``np.rint`` both round half to even), so the same
    int comes out as from the array version; the loss objective (log1p) and anything not
    finite and non-negative go through numpy.
    """
    primary, secondary = OBJECTIVES[mode]
    lat, cost, bw = float(lat), float(cost), float(bw)
    if not (0.0 <= lat < math.inf and 0.0 <= cost < math.inf and 0.0 <= bw < math.inf):
        return int(arc_weight(mode, lat, cost, loss, bw))
    if primary == "loss":
        loss = float(loss)
        if not 0.0 <= loss < 1.0:
            return int(arc_weight(mode, lat, cost, loss, bw))
        _need_numpy()  # numpy's log1p, as the array version (libm's may round differently)
        p = round(float(-np.log1p(np.float64(-loss))) * 1e8)
    elif primary == "latency":
        p = round(lat * 1000.0)
    elif primary == "cost":
        p = round(cost * 1000.0)
    else:  # inv_bw
        p = round(REF_BANDWIDTH_MBPS / max(bw, 1e-12) * 1000.0)
    sec = round((lat if secondary == "latency" else cost) * 10.0)
    return (min(p, PRIMARY_CAP) << SHIFT) | (min(sec, SECONDARY_CAP) << HOP_BITS) | 1


def weight_primary(weight: int) -> int:
    return int(weight) >> SHIFT


@dataclass(frozen=True)
class Arc:
    """Metrics of one directed arc as the engine sees them."""

    u: str
    v: str
    kind: str  # core | access | direct
    latency_ms: float
    latency_p95_ms: float
    jitter_ms: float
    loss: float  # fraction
    bandwidth_mbps: float
    cost: float
    via: Tuple[str, ...] = ()
    measured: bool = False


# --------------------------------------------------------------------------------------
# Network: inventory + measurements -> arcs per tenant
# --------------------------------------------------------------------------------------

class Network:
    """Nodes and arcs of the path graph, with the measured metrics applied.

    ``names`` sorts all core and edge nodes by name; the index of a node is its rank,
    which is what the lexicographic tie-break compares.
    """

    def __init__(self, inventory: Inventory, measurements: Iterable[Any] = ()):
        self.inventory = inventory
        self.names: List[str] = sorted(n.name for n in inventory.nodes.values() if n.role in ("core", "edge"))
        self.index: Dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.cores: List[str] = [n for n in self.names if inventory.nodes[n].role == "core"]
        self.country: Dict[str, str] = {}
        self.region: Dict[str, str] = {}
        for name in self.names:
            site = inventory.site_of(name)
            self.country[name] = site.country
            self.region[name] = site.region
        self.core_arcs: Dict[Tuple[str, str], Arc] = {}
        self.edge_arcs: Dict[Tuple[str, str], Arc] = {}  # nominal access/direct arcs
        self.tenant_arcs: Dict[str, Dict[Tuple[str, str], Arc]] = {}
        self._links: Dict[Tuple[str, str], Any] = {}
        for link in inventory.links:
            if link.kind == "attachment":
                continue
            for u, v in ((link.a, link.b), (link.b, link.a)):
                arc = Arc(u, v, link.kind, link.latency_ms, link.latency_ms, link.jitter_ms,
                          link.loss_pct / 100.0, link.bandwidth_mbps, link.cost,
                          tuple(link.via_countries))
                self._links[(u, v)] = link
                (self.core_arcs if link.kind == "core" else self.edge_arcs)[(u, v)] = arc
        self.measurements: Dict[Tuple[Optional[str], str, str], Measurement] = {}
        self.apply_measurements(measurements)

    # -- measurements -------------------------------------------------------------------
    def check_measurements(self, items: Iterable[Measurement]) -> None:
        """Reject measurements that name unknown nodes, tenants or pairs with no link."""
        problems = []
        for m in items:
            where = "measurement %s->%s%s" % (m.src, m.dst, " (tenant %s)" % m.tenant if m.tenant else "")
            link = self._links.get((m.src, m.dst))
            if m.src not in self.index or m.dst not in self.index:
                bad = m.src if m.src not in self.index else m.dst
                problems.append("%s: unknown core/edge node %r" % (where, bad))
            elif link is None:
                problems.append("%s: no core, access or direct link joins these nodes in the inventory" % where)
            elif m.tenant is not None and m.tenant not in self.inventory.tenants:
                problems.append("%s field 'tenant': unknown tenant %r" % (where, m.tenant))
            elif m.tenant is not None and link.kind == "core":
                problems.append("%s field 'tenant': core links are shared by all tenants; "
                                "core measurements carry no tenant" % where)
            elif m.tenant is not None and not {m.src, m.dst} <= set(
                    self.inventory.tenants[m.tenant].edges) | set(self.cores):
                problems.append("%s field 'tenant': the pair is not in tenant %r" % (where, m.tenant))
        if problems:
            raise MeasurementError(problems)

    def apply_measurements(self, measurements: Iterable[Any]) -> List[Tuple[str, str]]:
        """Add or replace window aggregates; return the directed pairs that changed."""
        items = parse_measurements(measurements, source="measurements")
        self.check_measurements(items)
        changed = []
        for m in items:
            self.measurements[m.key] = m
            changed.append((m.src, m.dst))
        self.tenant_arcs.clear()
        for key in set(changed):
            if key in self.core_arcs:
                self.core_arcs[key] = self._measured_arc(self._nominal(key), None)
        return changed

    def _nominal(self, key):
        link = self._links[key]
        return Arc(key[0], key[1], link.kind, link.latency_ms, link.latency_ms, link.jitter_ms,
                   link.loss_pct / 100.0, link.bandwidth_mbps, link.cost, tuple(link.via_countries))

    def _measured_arc(self, nominal: Arc, tenant: Optional[str]) -> Arc:
        m = None
        if tenant is not None:
            m = self.measurements.get((tenant, nominal.u, nominal.v))
        if m is None:
            m = self.measurements.get((None, nominal.u, nominal.v))
        if m is None:
            return nominal
        p95 = m.latency_p95_ms if m.latency_p95_ms is not None else m.latency_ms
        return Arc(nominal.u, nominal.v, nominal.kind, m.latency_ms, p95, m.jitter_ms,
                   m.loss_pct / 100.0,
                   m.bandwidth_mbps if m.bandwidth_mbps is not None else nominal.bandwidth_mbps,
                   m.cost if m.cost is not None else nominal.cost, nominal.via, True)

    def arcs_for(self, tenant: str) -> Dict[Tuple[str, str], Arc]:
        """Every arc a tenant's paths may use, with its measurements applied."""
        cached = self.tenant_arcs.get(tenant)
        if cached is not None:
            return cached
        edges = set(self.inventory.tenants[tenant].edges)
        arcs = dict(self.core_arcs)
        for (u, v), nominal in self.edge_arcs.items():
            if nominal.kind == "access" and (u in edges or v in edges):
                arcs[(u, v)] = self._measured_arc(nominal, tenant)
            elif nominal.kind == "direct" and u in edges and v in edges:
                arcs[(u, v)] = self._measured_arc(nominal, tenant)
        self.tenant_arcs[tenant] = arcs
        return arcs

    def link_of(self, u: str, v: str):
        return self._links.get((u, v))


# --------------------------------------------------------------------------------------
# Profiles, variants, pruning, admission
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One way of carrying a class: a profile, with or without FEC.  Hashable: it is the
    cache key of everything computed on a pruned graph."""

    profile: str
    mode: str
    level: str  # MET | MET_FALLBACK | BEST_EFFORT
    exclude_countries: Tuple[str, ...]
    exclude_regions: Tuple[str, ...]
    allow_direct: bool
    min_bandwidth_mbps: float  # already multiplied by the FEC overhead
    max_latency_ms: Optional[float]
    max_jitter_ms: Optional[float]
    max_loss: Optional[float]  # fraction, on the path loss before FEC
    max_hops: Optional[int]
    fec_overhead: float = 1.0  # > 1 when FEC is on
    fec_data: int = 0
    fec_parity: int = 0
    target_loss: Optional[float] = None  # lossless_fec: residual target (fraction)

    @property
    def fec(self) -> bool:
        return self.fec_overhead > 1.0

    @property
    def prune_key(self):
        """What decides which arcs exist and their weights (not the path bounds)."""
        return (self.mode, self.exclude_countries, self.exclude_regions, self.allow_direct,
                self.min_bandwidth_mbps, self.max_latency_ms, self.max_jitter_ms, self.max_loss,
                self.fec_overhead)

    def bounds(self) -> Dict[str, float]:
        out = {}
        if self.max_latency_ms is not None:
            out["latency"] = self.max_latency_ms
        if self.max_jitter_ms is not None:
            out["jitter"] = self.max_jitter_ms
        if self.max_loss is not None:
            out["loss"] = self.max_loss
        if self.max_hops is not None:
            out["hops"] = self.max_hops
        return out


def fec_residual_loss(loss: float, data: int, parity: int) -> float:
    """Residual loss of a (data + parity) block code under independent loss ``loss``.

    A packet is lost for good when it is lost and at least ``parity`` of the other
    ``data + parity - 1`` packets of its block are lost too.
    """
    if loss <= 0.0:
        return 0.0
    if loss >= 1.0:
        return 1.0
    n = data + parity
    tail = 0.0
    for j in range(parity, n):
        tail += math.comb(n - 1, j) * loss ** j * (1.0 - loss) ** (n - 1 - j)
    return loss * tail


def fec_loss_bound(target: float, data: int, parity: int) -> float:
    """Largest path loss whose residual after FEC is within ``target`` (bisection)."""
    if target <= 0.0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _step in range(100):
        mid = (lo + hi) / 2.0
        if fec_residual_loss(mid, data, parity) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def variants_for(profile: SlaProfile, tc: TrafficClass, level: str) -> List[Variant]:
    """The variants to try for a class under one profile (FEC adds one for lossless_fec)."""
    bounded = level != BEST_EFFORT
    base_bw = (profile.min_bandwidth_mbps or 0.0) if bounded else 0.0
    max_loss = None
    if bounded:
        if profile.max_loss_pct is not None:
            max_loss = profile.max_loss_pct / 100.0
        elif profile.mode == "zero_loss":
            max_loss = 0.0
    common = dict(profile=profile.name, mode=profile.mode, level=level,
                  exclude_countries=tuple(sorted(profile.exclude_countries)),
                  exclude_regions=tuple(sorted(profile.exclude_regions)),
                  allow_direct=bool(profile.allow_direct),
                  max_latency_ms=profile.max_latency_ms if bounded else None,
                  max_jitter_ms=profile.max_jitter_ms if bounded else None,
                  max_hops=profile.max_hops if bounded else None)
    if profile.mode != "lossless_fec" or not bounded:
        return [Variant(min_bandwidth_mbps=base_bw, max_loss=max_loss, **common)]
    target = max_loss if max_loss is not None else DEFAULT_LOSSLESS_TARGET_PCT / 100.0
    out = [Variant(min_bandwidth_mbps=base_bw, max_loss=target, target_loss=target, **common)]
    if tc.fec is not None:
        out.append(Variant(min_bandwidth_mbps=base_bw * tc.fec.overhead,
                           max_loss=fec_loss_bound(target, tc.fec.data, tc.fec.parity),
                           fec_overhead=tc.fec.overhead, fec_data=tc.fec.data,
                           fec_parity=tc.fec.parity, target_loss=target, **common))
    return out


def profile_chain(inventory: Inventory, tc: TrafficClass) -> List[Tuple[SlaProfile, str]]:
    sla = inventory.sla_profiles[tc.sla]
    chain = [(sla, MET)]
    if tc.fallback:
        chain.append((inventory.sla_profiles[tc.fallback], MET_FALLBACK))
    chain.append((sla, BEST_EFFORT))
    return chain


def node_allowed(net: Network, variant: Variant, node: str) -> bool:
    return (net.country[node] not in variant.exclude_countries
            and net.region[node] not in variant.exclude_regions)


def arc_allowed(net: Network, variant: Variant, arc: Arc, src: str, dst: str) -> bool:
    """Whether an arc may appear on a src->dst path under a variant (pruning rules)."""
    if arc.kind == "direct" and not variant.allow_direct:
        return False
    if arc.loss >= 1.0:
        return False
    if arc.bandwidth_mbps + BOUND_EPS < variant.min_bandwidth_mbps:
        return False
    if variant.exclude_countries and set(arc.via) & set(variant.exclude_countries):
        return False
    for end in (arc.u, arc.v):
        if end not in (src, dst) and not node_allowed(net, variant, end):
            return False
    if variant.max_latency_ms is not None and arc.latency_ms > variant.max_latency_ms + BOUND_EPS:
        return False
    if variant.max_jitter_ms is not None and arc.jitter_ms > variant.max_jitter_ms + BOUND_EPS:
        return False
    if variant.max_loss is not None and arc.loss > variant.max_loss + BOUND_EPS:
        return False
    return True


def arc_cost(arc: Arc, variant: Variant) -> float:
    return arc.cost * variant.fec_overhead


# --------------------------------------------------------------------------------------
# Path metrics
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PathMetrics:
    latency_ms: float
    latency_p95_ms: float
    jitter_ms: float
    loss: float  # fraction, before FEC
    residual_loss: float  # fraction, after FEC (== loss without FEC)
    bandwidth_mbps: float
    cost: float  # FEC overhead included
    hops: int
    weight: int

    def primary_value(self, mode: str) -> float:
        kind = OBJECTIVES[mode][0]
        if kind == "latency":
            return self.latency_ms
        if kind == "cost":
            return self.cost
        if kind == "loss":
            return self.loss * 100.0
        return weight_primary(self.weight) / 1000.0

    def to_dict(self) -> dict:
        return {
            "latency_ms": round(self.latency_ms, 3),
            "latency_p95_ms": round(self.latency_p95_ms, 3),
            "jitter_ms": round(self.jitter_ms, 3),
            "loss_pct": round(self.loss * 100.0, 4),
            "residual_loss_pct": round(self.residual_loss * 100.0, 6),
            "bandwidth_mbps": round(self.bandwidth_mbps, 3),
            "cost": round(self.cost, 3),
            "hops": self.hops,
        }


def path_metrics(arcs: Mapping[Tuple[str, str], Arc], path: Sequence[str], variant: Variant) -> PathMetrics:
    lat = lat95 = jit = cost = 0.0
    keep = 1.0
    bw = math.inf
    weight = 0
    for u, v in zip(path, path[1:]):
        a = arcs[(u, v)]
        lat += a.latency_ms
        lat95 += a.latency_p95_ms
        jit += a.jitter_ms
        keep *= 1.0 - a.loss
        bw = min(bw, a.bandwidth_mbps)
        c = arc_cost(a, variant)
        cost += c
        weight += scalar_arc_weight(variant.mode, a.latency_ms, c, a.loss, a.bandwidth_mbps)
    loss = 1.0 - keep
    residual = fec_residual_loss(loss, variant.fec_data, variant.fec_parity) if variant.fec else loss
    return PathMetrics(lat, lat95, jit, loss, residual, bw, cost, len(path) - 1, weight)


def violations(metrics: PathMetrics, variant: Variant) -> List[str]:
    """Bounds a path breaks, in words (empty when admitted)."""
    out = []
    if variant.max_latency_ms is not None and metrics.latency_ms > variant.max_latency_ms + BOUND_EPS:
        out.append("latency %.1f ms > %.1f ms" % (metrics.latency_ms, variant.max_latency_ms))
    if variant.max_jitter_ms is not None and metrics.jitter_ms > variant.max_jitter_ms + BOUND_EPS:
        out.append("jitter %.1f ms > %.1f ms" % (metrics.jitter_ms, variant.max_jitter_ms))
    if variant.max_loss is not None and metrics.loss > variant.max_loss + BOUND_EPS:
        if variant.fec:
            out.append("loss %.3f%% leaves %.4f%% after FEC > %.4f%%" % (
                metrics.loss * 100, metrics.residual_loss * 100, (variant.target_loss or 0) * 100))
        else:
            out.append("loss %.3f%% > %.3f%%" % (metrics.loss * 100, variant.max_loss * 100))
    if variant.max_hops is not None and metrics.hops > variant.max_hops:
        out.append("%d hops > %d" % (metrics.hops, variant.max_hops))
    return out


METRIC_ATTR = {"latency": "latency_ms", "jitter": "jitter_ms", "loss": "loss"}
LB_EPS = 1e-6  # lower bounds are float sums in different orders in the two engines


def arc_metric(arc: Arc, attr: str) -> float:
    """Additive form of an arc metric (loss as -ln(1 - loss))."""
    if attr == "loss":
        return -math.log1p(-min(arc.loss, 1.0 - 1e-15))
    return getattr(arc, attr)


def path_key(net: Network, metrics_weight: int, path: Sequence[str]):
    """Total order of candidate paths: weight, then node-name sequence."""
    return (metrics_weight, tuple(net.index[n] for n in path))


def bounds_infeasible(lbs: Mapping[str, Mapping[str, float]], variant: Variant, src: str) -> bool:
    """True when the least possible value of some bounded metric from ``src`` breaks its bound.

    ``lbs[metric][node]``: least sum of the metric from node to the destination (loss as
    -ln(1 - loss), hops as a count); a node missing from a map cannot reach it.
    """
    for metric, bound in variant.bounds().items():
        lb = lbs.get(metric, {}).get(src, math.inf)
        if metric == "hops":
            if lb > bound:
                return True
            continue
        if metric == "loss":
            lb = -math.expm1(-lb)
        if lb > bound + LB_EPS:
            return True
    return False


def constrained_best(net: Network, arcs: Mapping[Tuple[str, str], Arc], variant: Variant, src: str, dst: str,
                     successors, lbs: Mapping[str, Mapping[str, float]], limit: int):
    """The least (weight, name sequence) simple path from src to dst within the variant's bounds.

    Label setting (A*): partial paths leave a heap in order of (weight so far + the least
    weight from their last node to ``dst``, then node-name sequence), so the first one to
    reach ``dst`` within the bounds is the answer.  ``lbs["weight"]`` gives that least
    weight per node (any consistent lower bound keeps the answer exact; 0 makes it plain
    Dijkstra order).  A partial path is dropped when an earlier one ended at the same node
    using no more of every bounded metric (it can do anything the later one can, at no
    greater weight and an earlier name order), or when the lower bounds ``lbs`` (see
    ``bounds_infeasible``) prove that it cannot reach ``dst`` within a bound.
    ``successors(node)`` yields ``(next node, arc weight)``.

    Returns ``(Choice or None, why)``; ``why`` says so when ``limit`` partial paths were
    expanded without an answer.
    """
    bounds = variant.bounds()
    max_lat = bounds.get("latency")
    max_jit = bounds.get("jitter")
    max_loss = bounds.get("loss")
    max_hops = bounds.get("hops")
    lb_lat = lbs.get("latency", {})
    lb_jit = lbs.get("jitter", {})
    lb_loss = lbs.get("loss", {})
    lb_hops = lbs.get("hops", {})
    slack = BOUND_EPS + LB_EPS
    lb_w = lbs.get("weight", {})
    index = net.index
    heap = [(0, 0, (index[src],), (src,), 0.0, 0.0, 1.0)]
    settled: Dict[str, List[Tuple[float, float, float, int]]] = {}
    expanded = 0
    while heap:
        _f, weight, ranks, path, lat, jit, keep = heapq.heappop(heap)
        node = path[-1]
        hops = len(path) - 1
        if node == dst:
            m = path_metrics(arcs, path, variant)
            if not violations(m, variant):
                return Choice(variant, list(path), m), ""
            continue
        # the resources a bound cares about (unbounded ones count as equal)
        res = (lat if max_lat is not None else 0.0, jit if max_jit is not None else 0.0,
               -keep if max_loss is not None else 0.0, hops if max_hops is not None else 0)
        here = settled.setdefault(node, [])
        if any(o[0] <= res[0] and o[1] <= res[1] and o[2] <= res[2] and o[3] <= res[3] for o in here):
            continue
        here.append(res)
        expanded += 1
        if expanded > limit:
            return None, "no admitted path found within the search limit (%d partial paths)" % limit
        for nxt, arc_w in successors(node):
            if nxt in path:
                continue
            arc = arcs[(node, nxt)]
            nlat = lat + arc.latency_ms
            njit = jit + arc.jitter_ms
            nkeep = keep * (1.0 - arc.loss)
            if max_lat is not None and nlat + lb_lat.get(nxt, math.inf) > max_lat + slack:
                continue
            if max_jit is not None and njit + lb_jit.get(nxt, math.inf) > max_jit + slack:
                continue
            if max_loss is not None and -math.expm1(math.log(nkeep) - lb_loss.get(nxt, math.inf)) > max_loss + slack:
                continue
            if max_hops is not None and hops + 1 + lb_hops.get(nxt, math.inf) > max_hops:
                continue
            if nxt in settled:  # an earlier partial path at nxt may already do better
                nres = (nlat if max_lat is not None else 0.0, njit if max_jit is not None else 0.0,
                        -nkeep if max_loss is not None else 0.0, hops + 1 if max_hops is not None else 0)
                if any(o[0] <= nres[0] and o[1] <= nres[1] and o[2] <= nres[2] and o[3] <= nres[3]
                       for o in settled[nxt]):
                    continue
            nweight = weight + arc_w
            heapq.heappush(heap, (nweight + lb_w.get(nxt, 0), nweight, ranks + (index[nxt],), path + (nxt,),
                                  nlat, njit, nkeep))
    return None, ""


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

@dataclass
class PathResult:
    tenant: str
    traffic_class: str
    src: str
    dst: str
    verdict: str
    profile: Optional[str]
    mode: Optional[str]
    path: List[str]
    sid_list: List[str]
    metrics: Optional[PathMetrics]
    backup_path: List[str] = field(default_factory=list)
    backup_sid_list: List[str] = field(default_factory=list)
    backup_metrics: Optional[PathMetrics] = None
    fec: bool = False
    direct: bool = False
    reason: str = ""
    kept: bool = False  # hysteresis kept the current path
    changed: bool = False  # differs from the current path given as input

    @property
    def key(self):
        return (self.tenant, self.traffic_class, self.src, self.dst)

    def to_dict(self) -> dict:
        return {
            "tenant": self.tenant,
            "traffic_class": self.traffic_class,
            "src": self.src,
            "dst": self.dst,
            "path": list(self.path),
            "sid_list": list(self.sid_list),
            "backup_path": list(self.backup_path),
            "backup_sid_list": list(self.backup_sid_list),
            "metrics": self.metrics.to_dict() if self.metrics else {},
            "backup_metrics": self.backup_metrics.to_dict() if self.backup_metrics else {},
            "verdict": self.verdict,
            "profile": self.profile,
            "mode": self.mode,
            "fec": self.fec,
            "direct": self.direct,
            "kept": self.kept,
            "changed": self.changed,
            "reason": self.reason,
        }


class PathSet:
    """The engine's answer: results in a stable order (tenant, class, src, dst)."""

    def __init__(self, results: Iterable[PathResult] = (), stats: Optional[dict] = None):
        self.results: List[PathResult] = sorted(results, key=lambda r: r.key)
        self.stats = dict(stats or {})

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)

    def get(self, tenant, traffic_class, src, dst) -> Optional[PathResult]:
        for r in self.results:
            if r.key == (tenant, traffic_class, src, dst):
                return r
        return None

    def to_list(self) -> List[dict]:
        return [r.to_dict() for r in self.results]

    def verdict_counts(self) -> Dict[str, int]:
        out = {v: 0 for v in VERDICTS}
        for r in self.results:
            out[r.verdict] += 1
        return out


def sid_list(inventory: Inventory, tenant: str, path: Sequence[str]) -> List[str]:
    """SIDs to reach the path's destination: each transit node's End SID for the tenant,
    then the destination edge's decapsulation SID for the tenant (IPv4 service)."""
    if not path:
        return []
    sids = [inventory.tenant_end_sid(tenant, n) for n in path[1:-1]]
    sids.append(inventory.decap_sid(tenant, path[-1], 4))
    return sids


CURRENT_KEYS = ("tenant", "traffic_class", "src", "dst", "path")


def normalise_current(current: Any) -> Dict[Tuple[str, str, str, str], List[str]]:
    """Accept a previous PathSet, its to_list() (bare or as ``{"paths": [...]}``), or
    {(t, c, s, d): path}; a malformed list is a ValueError naming the item."""
    if not current:
        return {}
    if isinstance(current, PathSet):
        return {r.key: list(r.path) for r in current.results if r.path}
    if isinstance(current, Mapping) and "paths" in current:
        current = current["paths"]
    if isinstance(current, Mapping):
        return {tuple(k): list(v) for k, v in current.items()}
    if not isinstance(current, list) or not all(isinstance(c, Mapping) for c in current):
        raise ValueError("current: expected the list of path results of a previous run")
    out = {}
    for i, item in enumerate(current):
        missing = [k for k in CURRENT_KEYS if k not in item]
        if missing:
            raise ValueError("current: item #%d: missing %s" % (i, ", ".join(missing)))
        if item["path"]:
            out[(item["tenant"], item["traffic_class"], item["src"], item["dst"])] = list(item["path"])
    return out


# --------------------------------------------------------------------------------------
# Pair-level decisions shared by both engines
# --------------------------------------------------------------------------------------

@dataclass
class Choice:
    """A path chosen under one variant (before hysteresis)."""

    variant: Variant
    path: List[str]
    metrics: PathMetrics


def better(net: Network, a: Optional[Choice], b: Optional[Choice]) -> Optional[Choice]:
    """Between the choices of two variants of one profile: lower weight wins (FEC variant
    charges its overhead in cost); ties go to the first (no FEC)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if path_key(net, b.metrics.weight, b.path) < path_key(net, a.metrics.weight, a.path) else a


def prefer_direct(arcs, net: Network, variant: Variant, src: str, dst: str) -> Optional[Choice]:
    """The direct edge-to-edge path, when the profile allows it and it is admitted."""
    arc = arcs.get((src, dst))
    if arc is None or arc.kind != "direct" or not arc_allowed(net, variant, arc, src, dst):
        return None
    m = path_metrics(arcs, [src, dst], variant)
    if violations(m, variant):
        return None
    return Choice(variant, [src, dst], m)


def choose_chain(net: Network, tenant: str, tc: TrafficClass, src: str, dst: str, best_fn):
    """Walk the profile chain for one pair.

    ``best_fn(variant) -> (Choice | None, why)`` is the engine's exact search.  Per
    profile: an admitted direct path wins (any variant, in order); else the better of the
    variants' best core paths.  Returns (choice, verdict, failures in words).
    """
    arcs = net.arcs_for(tenant)
    failures = []
    for profile, level in profile_chain(net.inventory, tc):
        variants = variants_for(profile, tc, level)
        found = None
        for variant in variants:
            found = prefer_direct(arcs, net, variant, src, dst)
            if found is not None:
                break
        why = ""
        if found is None:
            for variant in variants:
                choice, w = best_fn(variant)
                if choice is None and not why:
                    why = w
                found = better(net, found, choice)
        if found is not None:
            return found, level, failures
        if level != BEST_EFFORT:
            if why in ("", "no path"):
                why = diagnose(variants[0], best_fn)
            failures.append("no path meets %s (%s)" % (profile.name, why))
    return None, UNREACHABLE, failures


def diagnose(variant: Variant, best_fn) -> str:
    """Why no path meets a variant, in words: relax it step by step and say what broke."""
    loose = _unbounded(variant, keep_bandwidth=True)
    choice, _why = best_fn(loose)
    if choice is not None:
        broken = violations(choice.metrics, variant)
        return "best path %s: %s" % (">".join(choice.path), "; ".join(broken) or "pruned by a per-link bound")
    if variant.min_bandwidth_mbps > 0:
        choice, _why = best_fn(_unbounded(variant))
        if choice is not None:
            return "no path with %.0f Mbit/s available" % variant.min_bandwidth_mbps
    excluded = list(variant.exclude_countries) + list(variant.exclude_regions)
    if excluded:
        return "no path avoiding %s" % ", ".join(excluded)
    return "no path"


def hysteresis(net: Network, arcs, settings, chosen: Choice, current_path: Optional[List[str]],
               src: str, dst: str, tc: Optional[TrafficClass] = None) -> Tuple[Choice, bool, str]:
    """Keep the current path unless it is no longer admitted or the new one is better by
    the configured margin.  Returns (choice, kept, note).

    The current path is judged under the chosen profile and level, with or without FEC
    (``tc`` gives the class's FEC; without FEC first, so FEC stays off when the path does
    not need it).  It is never kept when it visits a node twice, nor over a direct path
    (an admitted direct path is always taken: the direct-path rule wins).
    """
    if not current_path or list(current_path) == list(chosen.path):
        return chosen, False, ""
    path = list(current_path)
    if path[0] != src or path[-1] != dst:
        return chosen, False, ""
    if len(set(path)) != len(path):
        return chosen, False, "current path %s visits a node twice" % ">".join(path)
    if len(chosen.path) == 2:
        return chosen, False, ""
    for u in path[1:-1]:
        node = net.inventory.nodes.get(u)  # an unknown node is reported below: no link to it
        if node is not None and node.role != "core":
            return chosen, False, ""
    if tc is None:
        variants = [chosen.variant]
    else:
        variants = variants_for(net.inventory.sla_profiles[chosen.variant.profile], tc, chosen.variant.level)
    whys: Dict[Variant, str] = {}
    kept = None
    for variant in variants:
        bad = next(((u, v) for u, v in zip(path, path[1:])
                    if arcs.get((u, v)) is None or not arc_allowed(net, variant, arcs[(u, v)], src, dst)), None)
        if bad is not None:
            whys[variant] = "current path %s is no longer usable (%s)" % (
                ">".join(path), _why_arc_unusable(net, variant, arcs.get(bad), bad[0], bad[1], src, dst))
            continue
        cur = path_metrics(arcs, path, variant)
        broken = violations(cur, variant)
        if broken:
            whys[variant] = "current path %s violates %s: %s%s" % (
                ">".join(path), variant.profile, "; ".join(broken), _culprit(arcs, path, broken))
            continue
        kept = Choice(variant, path, cur)
        break
    if kept is None:
        return chosen, False, whys.get(chosen.variant) or next(iter(whys.values()), "")
    mode = chosen.variant.mode
    kind = OBJECTIVES[mode][0]
    old = kept.metrics.primary_value(mode)
    new = chosen.metrics.primary_value(mode)
    gain = old - new
    margin = max(abs(old) * settings.hysteresis_pct / 100.0, settings.hysteresis_min)
    if gain <= margin + BOUND_EPS:
        return kept, True, (
            "kept current path: best candidate improves %s by %.3g%s, within the hysteresis margin %.3g%s"
            % (kind, gain, OBJECTIVE_UNITS[kind], margin, OBJECTIVE_UNITS[kind]))
    return chosen, False, "moved: %s improves by %.3g%s over current %s" % (
        kind, gain, OBJECTIVE_UNITS[kind], ">".join(path))


def _why_arc_unusable(net, variant, arc, u, v, src, dst) -> str:
    if arc is None:
        return "no link %s to %s" % (u, v)
    if arc.bandwidth_mbps + BOUND_EPS < variant.min_bandwidth_mbps:
        return "bandwidth %.0f Mbit/s on %s to %s < %.0f" % (arc.bandwidth_mbps, u, v, variant.min_bandwidth_mbps)
    if arc.loss >= 1.0:
        return "%s to %s is down (100%% loss)" % (u, v)
    if variant.max_loss is not None and arc.loss > variant.max_loss + BOUND_EPS:
        return "loss %.2f%% on %s to %s over the last window" % (arc.loss * 100, u, v)
    if variant.max_latency_ms is not None and arc.latency_ms > variant.max_latency_ms + BOUND_EPS:
        return "latency %.1f ms on %s to %s over the last window" % (arc.latency_ms, u, v)
    if variant.max_jitter_ms is not None and arc.jitter_ms > variant.max_jitter_ms + BOUND_EPS:
        return "jitter %.1f ms on %s to %s over the last window" % (arc.jitter_ms, u, v)
    for end in (u, v):
        if end not in (src, dst) and not node_allowed(net, variant, end):
            return "%s is in an excluded country or region" % end
    return "excluded by policy"


def _culprit(arcs, path, broken) -> str:
    """Name the arc that contributes most to the first broken bound."""
    first = broken[0]
    metric = {"latency": "latency_ms", "jitter": "jitter_ms", "loss": "loss"}.get(first.split()[0])
    if metric is None:
        return ""
    worst = max(zip(path, path[1:]), key=lambda uv: getattr(arcs[uv], metric))
    val = getattr(arcs[worst], metric)
    if metric == "loss":
        return " (loss %.1f%% on %s to %s over the last window)" % (val * 100, worst[0], worst[1])
    unit = "ms"
    return " (%s %.1f %s on %s to %s over the last window)" % (first.split()[0], val, unit, worst[0], worst[1])


def describe(choice: Choice, verdict: str, failures: List[str]) -> str:
    m = choice.metrics
    parts = ["latency %.1f ms" % m.latency_ms, "jitter %.1f ms" % m.jitter_ms,
             "loss %.3f%%" % (m.loss * 100), "bottleneck %.0f Mbit/s" % m.bandwidth_mbps,
             "%d hops" % m.hops]
    if choice.variant.fec:
        parts.append("FEC %d+%d on (residual loss %.4f%%)" % (
            choice.variant.fec_data, choice.variant.fec_parity, m.residual_loss * 100))
    # a two-node path is edge -> edge: edges never transit, so it is the direct arc
    how = "direct internet path" if len(choice.path) == 2 else "%s path" % choice.variant.mode.replace("_", " ")
    head = {MET: "meets %s" % choice.variant.profile,
            MET_FALLBACK: "meets fallback %s" % choice.variant.profile,
            BEST_EFFORT: "best effort (%s)" % choice.variant.mode.replace("_", " ")}[verdict]
    text = "%s: %s, %s" % (head, how, ", ".join(parts))
    if failures:
        text += "; " + "; ".join(failures)
    return text


# --------------------------------------------------------------------------------------
# Reference engine (networkx, one pair at a time)
# --------------------------------------------------------------------------------------

class ReferenceEngine:
    """Exact and simple: builds a networkx graph per (tenant, variant) and searches each
    pair on its own.  Slow; it is the specification the fast engine is tested against."""

    def __init__(self, net: Network):
        _need_networkx()
        _need_numpy()
        self.net = net
        self._graphs: Dict[Any, Any] = {}

    def graph(self, tenant: str, variant: Variant):
        key = (tenant, variant.prune_key)
        g = self._graphs.get(key)
        if g is None:
            g = nx.DiGraph()
            arcs = self.net.arcs_for(tenant)
            g.add_nodes_from(self.net.cores)
            g.add_nodes_from(self.net.inventory.tenants[tenant].edges)
            for (u, v), arc in arcs.items():
                # geo rules depend on the pair's endpoints: checked per pair in view()
                if arc.kind == "direct" and not variant.allow_direct:
                    continue
                if arc.loss >= 1.0 or arc.bandwidth_mbps + BOUND_EPS < variant.min_bandwidth_mbps:
                    continue
                if not arc_allowed(self.net, variant, arc, u, v):
                    continue
                g.add_edge(u, v, w=scalar_arc_weight(variant.mode, arc.latency_ms, arc_cost(arc, variant),
                                                     arc.loss, arc.bandwidth_mbps))
            self._graphs[key] = g
        return g

    def view(self, tenant: str, variant: Variant, src: str, dst: str,
             drop_nodes: Iterable[str] = (), drop_links: Iterable[Tuple[str, str]] = ()):
        """The graph a src->dst path may use: other edges and excluded transit nodes hidden."""
        g = self.graph(tenant, variant)
        net = self.net
        drop_nodes = set(drop_nodes)
        drop_links = set(drop_links)

        def node_ok(n):
            if n in (src, dst):
                return True
            return n in net.index and net.inventory.nodes[n].role == "core" and n not in drop_nodes \
                and node_allowed(net, variant, n)

        def edge_ok(u, v):
            return (u, v) not in drop_links

        return nx.subgraph_view(g, filter_node=node_ok, filter_edge=edge_ok)

    def lex_shortest(self, view, src: str, dst: str) -> Optional[List[str]]:
        """The least-weight path; ties go to the lexicographically smallest by node name."""
        if src not in view or dst not in view:
            return None
        try:
            dist = nx.single_source_dijkstra_path_length(view.reverse(copy=False), dst, weight="w")
        except nx.NodeNotFound:
            return None
        if src not in dist:
            return None
        path = [src]
        node = src
        while node != dst:
            best = None
            for nxt in view.successors(node):
                if nxt in dist and view[node][nxt]["w"] + dist[nxt] == dist[node]:
                    if best is None or self.net.index[nxt] < self.net.index[best]:
                        best = nxt
            path.append(best)
            node = best
        return path

    def exact_best(self, tenant, variant, src, dst, drop_nodes=(), drop_links=(), cap=256) -> Tuple[Optional[Choice], str]:
        """Best admitted path (by weight, then name sequence) or (None, why)."""
        arcs = self.net.arcs_for(tenant)
        view = self.view(tenant, variant, src, dst, drop_nodes, drop_links)
        first = self.lex_shortest(view, src, dst)
        if first is None:
            return None, "no path"
        m = path_metrics(arcs, first, variant)
        broken = violations(m, variant)
        if not broken:
            return Choice(variant, first, m), ""
        # bounds from the graph without the drops: what the fast engine has at hand, so that
        # both expand the same partial paths (and stop at the same search limit)
        lbs = self.lower_bounds(self.view(tenant, variant, src, dst) if drop_nodes or drop_links else view,
                                arcs, variant, dst)
        if bounds_infeasible(lbs, variant, src):
            return None, "best path: %s" % "; ".join(broken)

        def successors(node):
            return ((nxt, data["w"]) for nxt, data in view[node].items())
        best, why = constrained_best(self.net, arcs, variant, src, dst, successors, lbs, cap)
        if best is None:
            return None, "best path: %s" % "; ".join([*broken, why] if why else broken)
        return best, ""

    def lower_bounds(self, view, arcs, variant, dst) -> Dict[str, Dict[str, float]]:
        """Per bounded metric, the least sum from every node to ``dst`` (see bounds_infeasible)."""
        rev = view.reverse(copy=False)
        out: Dict[str, Dict[str, float]] = {"weight": dict(nx.single_source_dijkstra_path_length(rev, dst, weight="w"))}
        for metric in variant.bounds():
            if metric == "hops":
                out[metric] = dict(nx.single_source_shortest_path_length(rev, dst))
                continue
            attr = METRIC_ATTR[metric]

            def w(u, v, _d, attr=attr):
                return arc_metric(arcs[(v, u)], attr)
            out[metric] = dict(nx.single_source_dijkstra_path_length(rev, dst, weight=w))
        return out

    def choose(self, tenant, tc, src, dst, cap) -> Tuple[Optional[Choice], str, List[str]]:
        return choose_chain(self.net, tenant, tc, src, dst,
                            lambda variant: self.exact_best(tenant, variant, src, dst, cap=cap))

    def backup(self, tenant, chosen: Choice, src, dst, cap, mode="node") -> Optional[Choice]:
        if mode == "none" or not chosen.path:
            return None
        drop_nodes = set(chosen.path[1:-1]) if mode == "node" else set()
        links = set()
        for u, v in zip(chosen.path, chosen.path[1:]):
            links.add((u, v))
            links.add((v, u))
        variant = chosen.variant
        choice, _why = self.exact_best(tenant, variant, src, dst, drop_nodes, links, cap=cap)
        if choice is None and variant.level != BEST_EFFORT:
            loose = _unbounded(variant)
            choice, _why = self.exact_best(tenant, loose, src, dst, drop_nodes, links, cap=cap)
        return choice

    def compute(self, tenants=None, traffic_classes=None, current=None) -> PathSet:
        inv = self.net.inventory
        settings = inv.pce
        current = normalise_current(current)
        results = []
        for tname in sorted(tenants or inv.tenants):
            tenant = inv.tenants[tname]
            arcs = self.net.arcs_for(tname)
            for tc in sorted(tenant.traffic_classes, key=lambda c: c.name):
                if traffic_classes and tc.name not in traffic_classes:
                    continue
                for src in sorted(tenant.edges):
                    for dst in sorted(tenant.edges):
                        if src == dst:
                            continue
                        results.append(self._pair(tname, tc, src, dst, arcs, settings, current))
        return PathSet(results, {"engine": "reference"})

    def _pair(self, tname, tc, src, dst, arcs, settings, current) -> PathResult:
        choice, verdict, failures = self.choose(tname, tc, src, dst, settings.max_candidates)
        return finish_pair(self.net, arcs, settings, tname, tc, src, dst, choice, verdict, failures,
                           current.get((tname, tc.name, src, dst)),
                           lambda ch: self.backup(tname, ch, src, dst, settings.max_candidates, settings.backup))


def _unbounded(variant: Variant, keep_bandwidth: bool = False) -> Variant:
    """The variant without its path bounds (best effort keeps geo and direct policy)."""
    return Variant(profile=variant.profile, mode=variant.mode, level=BEST_EFFORT,
                   exclude_countries=variant.exclude_countries, exclude_regions=variant.exclude_regions,
                   allow_direct=variant.allow_direct,
                   min_bandwidth_mbps=variant.min_bandwidth_mbps if keep_bandwidth else 0.0,
                   max_latency_ms=None, max_jitter_ms=None, max_loss=None, max_hops=None,
                   fec_overhead=variant.fec_overhead if keep_bandwidth else 1.0,
                   fec_data=variant.fec_data if keep_bandwidth else 0,
                   fec_parity=variant.fec_parity if keep_bandwidth else 0)


def finish_pair(net, arcs, settings, tname, tc, src, dst, choice, verdict, failures, current_path,
                backup_fn) -> PathResult:
    """Hysteresis, backup, SIDs and the reason for one pair (the reference engine's path)."""
    note = ""
    kept = False
    if choice is not None and current_path:
        choice, kept, note = hysteresis(net, arcs, settings, choice, current_path, src, dst, tc)
    bk = backup_fn(choice) if choice is not None else None
    return make_result(net, tname, tc.name, src, dst, choice, verdict, failures, kept, note, bk, current_path)


def make_result(net, tname, cname, src, dst, choice, verdict, failures, kept, note, bk,
                current_path) -> PathResult:
    """The one place a PathResult is built (both engines)."""
    inv = net.inventory
    if choice is None:
        reason = "; ".join(failures) if failures else "no path"
        reason += "; no best-effort path either (geo exclusions or no links)"
        return PathResult(tname, cname, src, dst, UNREACHABLE, None, None, [], [], None,
                          reason=reason, changed=bool(current_path))
    reason = describe(choice, verdict, failures)
    if note:
        reason += "; " + note
    return PathResult(
        tname, cname, src, dst, verdict, choice.variant.profile, choice.variant.mode,
        list(choice.path), sid_list(inv, tname, choice.path), choice.metrics,
        backup_path=list(bk.path) if bk else [],
        backup_sid_list=sid_list(inv, tname, bk.path) if bk else [],
        backup_metrics=bk.metrics if bk else None,
        fec=choice.variant.fec, direct=len(choice.path) == 2, reason=reason, kept=kept,
        changed=bool(current_path) and list(current_path) != list(choice.path))


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------

def _require_known(kind: str, given: Optional[List[str]], known) -> None:
    for name in given or ():
        if name not in known:
            raise ValueError("unknown %s %r (known: %s)" % (kind, name, ", ".join(sorted(known))))


def compute_paths(inventory: Inventory, measurements: Iterable[Any] = (), current: Any = None,
                  tenants: Optional[Iterable[str]] = None,
                  traffic_classes: Optional[Iterable[str]] = None,
                  engine: str = "fast") -> PathSet:
    """Compute every path for the inventory; see the module docstring for the rules.

    ``measurements``: window aggregates (dicts or ``Measurement``); a bad one raises
    ``MeasurementError`` before anything is computed.  ``current``: the previous run's
    paths (for hysteresis).  ``engine``: ``fast`` (numpy, all pairs at once) or
    ``reference`` (networkx, pair by pair).
    """
    tenants = list(tenants) if tenants else None
    traffic_classes = list(traffic_classes) if traffic_classes else None
    _require_known("tenant", tenants, inventory.tenants)
    _require_known("traffic class", traffic_classes,
                   {tc.name for t in (tenants or inventory.tenants) for tc in inventory.tenants[t].traffic_classes})
    net = Network(inventory, measurements)
    if engine == "reference":
        return ReferenceEngine(net).compute(tenants, traffic_classes, current)
    if engine == "fast":
        from .pce_fast import FastEngine
        return FastEngine(net).compute(tenants, traffic_classes, current)
    raise ValueError("unknown engine %r (fast or reference)" % engine)


__all__ = [
    "MET", "MET_FALLBACK", "BEST_EFFORT", "UNREACHABLE", "VERDICTS", "Arc", "Network", "Variant",
    "PathMetrics", "PathResult", "PathSet", "ReferenceEngine", "arc_weight", "compute_paths",
    "fec_residual_loss", "fec_loss_bound", "variants_for", "profile_chain", "path_metrics",
    "violations", "sid_list", "MeasurementError",
]
