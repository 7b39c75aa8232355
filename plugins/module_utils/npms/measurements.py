# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Window aggregates per directed node pair: what the path engine reads.

One ``Measurement`` is the aggregate of one window for one directed pair (src -> dst),
optionally for one tenant (edge links are measured inside a tenant's tunnels; core links
are shared by all tenants and carry no tenant).  Latency is one-way (RTT / 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, List, Mapping, Optional

_FIELDS = {
    "src": "node name",
    "dst": "node name",
    "tenant": "tenant name or null (core links)",
    "latency_ms": "one-way latency p50, ms (alias latency_p50_ms)",
    "latency_p50_ms": "alias of latency_ms",
    "latency_p95_ms": "one-way latency p95, ms",
    "latency_p99_ms": "one-way latency p99, ms",
    "jitter_ms": "RFC 3550 interarrival jitter, ms",
    "loss_pct": "loss, percent 0..100",
    "bandwidth_mbps": "available bandwidth, Mbit/s",
    "cost": "administrative cost",
    "samples": "number of samples in the window",
    "window_start": "window start (epoch seconds)",
    "window_s": "window length, seconds",
}


class MeasurementError(ValueError):
    """A bad measurement, named by its source, its position and its field."""

    def __init__(self, problems: List[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Measurement:
    src: str
    dst: str
    latency_ms: float
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    latency_p95_ms: Optional[float] = None
    latency_p99_ms: Optional[float] = None
    bandwidth_mbps: Optional[float] = None
    cost: Optional[float] = None
    tenant: Optional[str] = None
    samples: int = 0
    window_start: Optional[float] = None
    window_s: Optional[float] = None

    @property
    def key(self):
        return (self.tenant, self.src, self.dst)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _number(value: Any, where: str, field: str, problems: List[str], *, lo=0.0, hi=None,
            integer=False) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append("%s field '%s': expected a number, got %r" % (where, field, value))
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append("%s field '%s': %r is not a finite number" % (where, field, value))
        return None
    if integer and int(value) != value:
        problems.append("%s field '%s': expected an integer, got %r" % (where, field, value))
        return None
    if value < lo or (hi is not None and value > hi):
        rng = ">= %s" % lo if hi is None else "%s..%s" % (lo, hi)
        problems.append("%s field '%s': %r is out of range (%s)" % (where, field, value, rng))
        return None
    return int(value) if integer else float(value)


def parse_measurement(item: Any, where: str, problems: List[str]) -> Optional[Measurement]:
    """Validate one mapping; append problems and return None when it is bad."""
    if isinstance(item, Measurement):
        # built in code rather than read from a file: the same checks, on its fields
        item = item.to_dict()
    if not isinstance(item, Mapping):
        problems.append("%s: expected a mapping, got %s" % (where, type(item).__name__))
        return None
    before = len(problems)
    unknown = sorted(set(item) - set(_FIELDS))
    for key in unknown:
        problems.append("%s field '%s': unknown field (known: %s)" % (where, key, ", ".join(sorted(_FIELDS))))
    names = {}
    for field in ("src", "dst"):
        val = item.get(field)
        if not isinstance(val, str) or not val:
            problems.append("%s field '%s': required node name, got %r" % (where, field, val))
        names[field] = val
    if names.get("src") and names["src"] == names.get("dst"):
        problems.append("%s field 'dst': src and dst are the same node %r" % (where, names["src"]))
    tenant = item.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        problems.append("%s field 'tenant': expected a tenant name or null, got %r" % (where, tenant))
    if "latency_ms" in item and "latency_p50_ms" in item:
        problems.append("%s field 'latency_p50_ms': give latency_ms or latency_p50_ms, not both" % where)
    lat_key = "latency_ms" if "latency_ms" in item else "latency_p50_ms"
    if lat_key not in item:
        problems.append("%s field 'latency_ms': required" % where)
        lat = None
    else:
        lat = _number(item[lat_key], where, lat_key, problems)
    values = {}
    for field, kwargs in (("latency_p95_ms", {}), ("latency_p99_ms", {}), ("jitter_ms", {}),
                          ("loss_pct", {"hi": 100.0}), ("bandwidth_mbps", {}), ("cost", {}),
                          ("samples", {"integer": True}), ("window_start", {}), ("window_s", {})):
        if item.get(field) is not None:
            values[field] = _number(item[field], where, field, problems, **kwargs)
    p95 = values.get("latency_p95_ms")
    if lat is not None and p95 is not None and p95 < lat:
        problems.append("%s field 'latency_p95_ms': p95 %.3f is below p50 %.3f" % (where, p95, lat))
    p99 = values.get("latency_p99_ms")
    if p95 is not None and p99 is not None and p99 < p95:
        problems.append("%s field 'latency_p99_ms': p99 %.3f is below p95 %.3f" % (where, p99, p95))
    if len(problems) != before:
        return None
    return Measurement(src=names["src"], dst=names["dst"], latency_ms=lat,
                       jitter_ms=values.get("jitter_ms") or 0.0,
                       loss_pct=values.get("loss_pct") or 0.0,
                       latency_p95_ms=p95, latency_p99_ms=p99,
                       bandwidth_mbps=values.get("bandwidth_mbps"), cost=values.get("cost"),
                       tenant=tenant, samples=int(values.get("samples") or 0),
                       window_start=values.get("window_start"), window_s=values.get("window_s"))


def parse_measurements(items: Iterable[Any], source: str = "measurements") -> List[Measurement]:
    """Validate a batch; any bad item rejects the whole batch, every problem listed.

    The path engine must not act on half a picture, so it takes all or nothing; the
    ingestion layer (which keeps the good samples of a batch) filters before this.
    """
    if isinstance(items, Mapping) and "measurements" in items:
        items = items["measurements"]
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise MeasurementError(["%s: expected a list of measurements, got %s" % (source, type(items).__name__)])
    problems: List[str] = []
    out: List[Measurement] = []
    seen = {}
    for i, item in enumerate(items):
        where = "%s: measurement #%d" % (source, i)
        if isinstance(item, Mapping) and item.get("src") and item.get("dst"):
            where += " (%s->%s%s)" % (item.get("src"), item.get("dst"),
                                      ", tenant %s" % item["tenant"] if item.get("tenant") else "")
        m = parse_measurement(item, where, problems)
        if m is None:
            continue
        if m.key in seen:
            problems.append("%s: duplicate of measurement #%d for the same pair and tenant" % (where, seen[m.key]))
            continue
        seen[m.key] = i
        out.append(m)
    if problems:
        raise MeasurementError(problems)
    return out
