# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edge triangulation: which POPs an edge without declared upstreams attaches to.

An edge with ``npms_upstreams: auto`` has no access links in the inventory.  Each loop:

1. **Candidates** (:func:`candidate_pops`): the controller geolocates the edge's WAN
   address (:class:`InventoryGeolocator` by default: an address the inventory knows is
   at its node's site; a real service plugs in through the :class:`Geolocator`
   protocol) and offers the 6 POPs nearest to it, by great-circle distance, leaving out
   POPs in countries or regions that every SLA profile of the edge's tenants excludes.
2. **Probing**: the edge pings each candidate's WAN address (the ``probe`` resource's
   ICMP prober, on the edge itself).
3. **Choice** (:func:`choose_upstreams`): the 3 answering candidates with the lowest RTT
   (ties: nearer first, then by name).  An unreachable candidate is never chosen.
4. :func:`with_upstreams` returns the inventory with access links from the edge to its
   chosen POPs (their one-way latency prior is the measured RTT / 2), so that the path
   engine, the overlay renderer (WireGuard tunnels, SIDs, routes) and the lab all use
   the result as if the links had been declared.

Distances are only a pre-filter: the measured RTT decides, because the internet's
paths are not great circles.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple

from .model import Inventory, Link

CANDIDATES = 6
UPSTREAMS = 3
EARTH_RADIUS_KM = 6371.0


class TriangulationError(ValueError):
    """Triangulation cannot give the edge upstreams (the message says why)."""


class Geolocator(Protocol):
    def locate(self, address: str) -> Optional[Tuple[float, float]]:
        """(latitude, longitude) of an IP address, or None when unknown."""


class InventoryGeolocator:
    """Addresses the inventory knows (WAN addresses, loopbacks, interface addresses) are
    where their node's site is; ``extra`` maps further prefixes to (lat, lon)."""

    def __init__(self, inv: Inventory, extra: Optional[Mapping[str, Tuple[float, float]]] = None):
        self._exact: Dict[str, Tuple[float, float]] = {}
        for node in inv.nodes.values():
            site = inv.sites.get(node.site)
            if site is None:
                continue
            where = (site.lat, site.lon)
            for addr in (node.wan_address, node.loopback):
                if addr:
                    self._exact[str(ipaddress.ip_address(addr))] = where
            for iface in node.interfaces:
                for cidr in iface.addresses:
                    self._exact.setdefault(str(ipaddress.ip_interface(cidr).ip), where)
        self._prefixes = sorted(((ipaddress.ip_network(p, strict=False), tuple(v)) for p, v in (extra or {}).items()),
                                key=lambda pv: -pv[0].prefixlen)

    def locate(self, address: str) -> Optional[Tuple[float, float]]:
        ip = ipaddress.ip_address(address)
        if str(ip) in self._exact:
            return self._exact[str(ip)]
        for net, where in self._prefixes:  # longest prefix first
            if ip.version == net.version and ip in net:
                return where  # type: ignore[return-value]
        return None


def distance_km(a: Tuple[float, float], b: Tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclasses.dataclass(frozen=True)
class Candidate:
    pop: str
    address: str  # what the edge probes: the POP's WAN address
    distance_km: float

    def to_dict(self) -> Dict[str, object]:
        return {"pop": self.pop, "address": self.address, "distance_km": round(self.distance_km, 1)}


def _excluded_everywhere(inv: Inventory, edge: str) -> Tuple[set, set]:
    """Countries and regions that every SLA profile of every tenant of ``edge`` excludes."""
    profiles = []
    for tenant in inv.tenants.values():
        if edge in tenant.edges:
            for cls in tenant.traffic_classes:
                for name in (cls.sla, cls.fallback):
                    if name and name in inv.sla_profiles:
                        profiles.append(inv.sla_profiles[name])
    if not profiles:
        return set(), set()
    countries = set.intersection(*(set(p.exclude_countries) for p in profiles))
    regions = set.intersection(*(set(p.exclude_regions) for p in profiles))
    return countries, regions


def candidate_pops(inv: Inventory, edge: str, wan_address: Optional[str] = None, *,
                   geolocator: Optional[Geolocator] = None, count: int = CANDIDATES) -> List[Candidate]:
    """The ``count`` POPs nearest to the edge's WAN address (default: its inventory one)."""
    node = inv.nodes.get(edge)
    if node is None or node.role != "edge":
        raise TriangulationError(f"{edge!r} is not an edge of the inventory")
    address = wan_address or node.wan_address
    if not address:
        raise TriangulationError(f"edge {edge}: no WAN address to geolocate (npms_wan_address)")
    where = (geolocator or InventoryGeolocator(inv)).locate(address)
    if where is None:
        raise TriangulationError(f"edge {edge}: cannot geolocate its WAN address {address}")
    countries, regions = _excluded_everywhere(inv, edge)
    pops = []
    for pop in inv.nodes_by_role("core"):
        site = inv.site_of(pop.name)
        if site.country in countries or site.region in regions or not pop.wan_address:
            continue
        pops.append(Candidate(pop.name, pop.wan_address, distance_km(where, (site.lat, site.lon))))
    pops.sort(key=lambda c: (c.distance_km, c.pop))
    return pops[:count]


def choose_upstreams(candidates: Sequence[Candidate], rtt_ms: Mapping[str, Optional[float]],
                     keep: int = UPSTREAMS) -> List[str]:
    """The ``keep`` candidates with the lowest measured RTT (None: did not answer)."""
    answered = [c for c in candidates if rtt_ms.get(c.pop) is not None]
    answered.sort(key=lambda c: (rtt_ms[c.pop], c.distance_km, c.pop))
    return [c.pop for c in answered[:keep]]


def with_upstreams(inv: Inventory, upstreams: Mapping[str, Sequence[str]],
                   rtt_ms: Optional[Mapping[str, Mapping[str, Optional[float]]]] = None) -> Inventory:
    """``inv`` with access links from each edge to its chosen POPs (``{edge: [pop, ...]}``)."""
    links = list(inv.links)
    have = {(lk.a, lk.b) for lk in links}
    for edge, pops in sorted(upstreams.items()):
        node = inv.nodes.get(edge)
        if node is None or node.role != "edge":
            raise TriangulationError(f"{edge!r} is not an edge of the inventory")
        for pop in pops:
            if pop not in inv.nodes or inv.nodes[pop].role != "core":
                raise TriangulationError(f"edge {edge}: upstream {pop!r} is not a POP of the inventory")
            if (edge, pop) in have:
                continue
            rtt = (rtt_ms or {}).get(edge, {}).get(pop)
            extra = {"latency_ms": rtt / 2.0} if rtt is not None else {}
            links.append(Link(a=edge, b=pop, kind="access", name=f"{edge}--{pop}", **extra))
            have.add((edge, pop))
    return dataclasses.replace(inv, links=tuple(links))


def triangulate(inv: Inventory, edge: str, ping: Callable[[str], Optional[float]], *,
                wan_address: Optional[str] = None, geolocator: Optional[Geolocator] = None,
                count: int = CANDIDATES, keep: int = UPSTREAMS) -> Dict[str, object]:
    """Candidates, their RTTs (``ping(address) -> RTT ms or None``, run on the edge) and
    the chosen upstreams.  Fewer than ``keep`` answering candidates is an error: the
    edge would attach with less redundancy than the design asks for."""
    candidates = candidate_pops(inv, edge, wan_address, geolocator=geolocator, count=count)
    rtts = {c.pop: ping(c.address) for c in candidates}
    chosen = choose_upstreams(candidates, rtts, keep)
    if len(chosen) < keep:
        silent = sorted(p for p, r in rtts.items() if r is None)
        raise TriangulationError(f"edge {edge}: only {len(chosen)} of {len(candidates)} candidate POPs answered "
                                 f"(no answer from {', '.join(silent) or 'none'}); {keep} are needed")
    return {"edge": edge, "candidates": [dict(c.to_dict(), rtt_ms=rtts[c.pop]) for c in candidates], "upstreams": chosen}


def upstreams_of(results: Iterable[Mapping[str, object]]) -> Dict[str, List[str]]:
    """``{edge: upstreams}`` from :func:`triangulate` results (for :func:`with_upstreams`)."""
    return {str(r["edge"]): list(r["upstreams"]) for r in results}  # type: ignore[arg-type]
