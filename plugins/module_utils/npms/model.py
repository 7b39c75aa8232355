# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed inventory objects.

These are plain frozen dataclasses: they hold already-validated values.  Building them
from files (and naming the file, object and field of every bad value) is the job of
``inventory.load_inventory``; nothing here touches a node.

Units are the ones a network engineer writes in an inventory: milliseconds, percent
(0-100) for loss, Mbit/s for bandwidth.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

ROLES = ("core", "edge", "customer")
DATAPLANES = ("linux", "vpp")
LINK_KINDS = ("core", "access", "direct", "attachment")
# access (edge-POP) and direct (edge-edge) links are carried in WireGuard tunnels.
TUNNEL_LINK_KINDS = ("access", "direct")
UPSTREAM_MODES = ("static", "auto")
BGP_SESSIONS = ("dual", "unnumbered")  # attachments: how the edge peers with the customer router  # npms_upstreams: declared access links, or triangulation
SLA_MODES = ("lowest_cost", "lowest_latency", "zero_loss", "lossless_fec", "sustained_bandwidth")
# Width of the per-tenant, per-edge SRv6 locator carved from a tenant's locator block;
# the edge's node_id selects which one.
TENANT_EDGE_LOCATOR_LEN = 48


@dataclass(frozen=True)
class Site:
    name: str
    country: str  # ISO 3166-1 alpha-2, upper case
    region: str  # free-form, lower case (europe, asia, north-america, ...)
    lat: float
    lon: float
    city: str = ""


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: Tuple[str, ...] = ()  # CIDR strings, IPv4 and/or IPv6
    peer: Optional[str] = None  # node at the other end, when the interface is a link end
    mtu: int = 1500


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # one of ROLES
    site: str
    node_id: int  # unique, 1..65535; used for SIDs, router ids, tenant locators
    dataplane: str = "linux"  # one of DATAPLANES (customer routers: always linux)
    locator: Optional[ipaddress.IPv6Network] = None  # core and edge only
    loopback: Optional[str] = None  # IPv4 or IPv6 address used as router id / probe source
    wan_address: Optional[str] = None  # underlay address (WireGuard endpoint)
    asn: Optional[int] = None  # customer routers: the customer's own ASN
    interfaces: Tuple[Interface, ...] = ()
    auto_upstreams: bool = False  # edges: the controller picks its POPs (npms.triangulate)

    @functools.cached_property
    def end_sid(self) -> Optional[str]:
        """The node's End SID: the first address after the locator prefix."""
        if self.locator is None:
            return None
        return str(self.locator.network_address + 1)


@dataclass(frozen=True)
class Link:
    """A link between two nodes, with the nominal characteristics the inventory declares.

    For the path engine these are priors: a measured window aggregate for the same
    directed pair replaces them.  For the lab they are what the WAN emulation applies.
    """

    a: str
    b: str
    kind: str  # one of LINK_KINDS
    cost: float = 10.0
    latency_ms: float = 1.0  # one-way
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bandwidth_mbps: float = 1000.0
    via_countries: Tuple[str, ...] = ()  # countries the link itself traverses (cables, transit)
    name: str = ""

    @property
    def is_tunnel(self) -> bool:
        return self.kind in TUNNEL_LINK_KINDS

    @property
    def ends(self) -> Tuple[str, str]:
        return (self.a, self.b)


@dataclass(frozen=True)
class SlaProfile:
    name: str
    mode: str  # one of SLA_MODES
    max_latency_ms: Optional[float] = None
    max_jitter_ms: Optional[float] = None
    max_loss_pct: Optional[float] = None  # zero_loss defaults to 0; lossless_fec: residual target
    min_bandwidth_mbps: Optional[float] = None  # sustained_bandwidth requires it
    max_hops: Optional[int] = None
    exclude_countries: Tuple[str, ...] = ()
    exclude_regions: Tuple[str, ...] = ()
    allow_direct: bool = False  # the direct edge-to-edge internet path may carry the class


@dataclass(frozen=True)
class Fec:
    """Block FEC: ``data`` packets protected by ``parity`` repair packets."""

    data: int = 10
    parity: int = 2

    @property
    def overhead(self) -> float:
        """Bandwidth multiplier when FEC is on."""
        return (self.data + self.parity) / self.data


@dataclass(frozen=True)
class TrafficClass:
    name: str
    dscp: Tuple[int, ...]  # 0..63; the default class may list none
    sla: str  # SlaProfile name
    fallback: Optional[str] = None  # SlaProfile name
    fec: Optional[Fec] = None
    rate_limit_mbps: Optional[float] = None  # policer at the edge
    default: bool = False  # traffic matching no other class


@dataclass(frozen=True)
class Attachment:
    """A customer router behind an edge, with the prefixes it may announce."""

    edge: str
    customer: str  # node (role customer)
    prefixes: Tuple[str, ...]  # allowed customer prefixes (CIDR)
    max_prefix_len_v4: int = 24
    max_prefix_len_v6: int = 48
    #: dual: an IPv4 session for IPv4 and an IPv6 session for IPv6 (over the link's
    #: addresses); unnumbered: one session over IPv6 link-local for both (RFC 5549)
    bgp_session: str = "dual"


@dataclass(frozen=True)
class Tenant:
    name: str
    asn: int
    locator_block: ipaddress.IPv6Network  # per-tenant SRv6 block, prefix length <= 32
    edges: Tuple[str, ...]
    attachments: Tuple[Attachment, ...]
    traffic_classes: Tuple[TrafficClass, ...]
    tenant_id: int = 0

    def traffic_class(self, name: str) -> TrafficClass:
        for tc in self.traffic_classes:
            if tc.name == name:
                return tc
        raise KeyError(name)

    @property
    def prefixes(self) -> Tuple[str, ...]:
        return tuple(p for att in self.attachments for p in att.prefixes)


@dataclass(frozen=True)
class PceSettings:
    """Tunables of the path engine (inventory ``npms_pce``)."""

    hysteresis_pct: float = 10.0  # a candidate must beat the current path by this much ...
    hysteresis_min: float = 1.0  # ... and by more than this much in the objective's unit
    max_candidates: int = 100000  # partial paths the bounded (constrained) search may expand per pair
    backup: str = "node"  # node | link | none: disjointness of the backup path


@dataclass(frozen=True)
class Inventory:
    sites: Dict[str, Site]
    nodes: Dict[str, Node]
    links: Tuple[Link, ...]
    sla_profiles: Dict[str, SlaProfile]
    tenants: Dict[str, Tenant]
    pce: PceSettings = field(default_factory=PceSettings)
    source: str = ""  # directory or file it was loaded from
    # (tenant, node, function) -> SID: results ask for the same few SIDs again and again,
    # and building one from the ipaddress objects costs microseconds
    _sids: Dict[Tuple[str, str, int], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    # --- lookups used by every consumer -------------------------------------------------
    def nodes_by_role(self, role: str) -> Tuple[Node, ...]:
        return tuple(n for _name, n in sorted(self.nodes.items()) if n.role == role)

    def site_of(self, node: str) -> Site:
        return self.sites[self.nodes[node].site]

    def links_of(self, node: str) -> Tuple[Link, ...]:
        return tuple(lk for lk in self.links if node in lk.ends)

    def tenant_edge_locator(self, tenant: str, edge: str) -> ipaddress.IPv6Network:
        """The tenant's locator on one edge: the edge's node_id-th /48 of the tenant block."""
        block = self.tenants[tenant].locator_block
        node_id = self.nodes[edge].node_id
        shift = 128 - TENANT_EDGE_LOCATOR_LEN
        base = int(block.network_address) | (node_id << shift)
        return ipaddress.IPv6Network((base, TENANT_EDGE_LOCATOR_LEN))

    def tenant_end_sid(self, tenant: str, node: str) -> str:
        """A transit node's End SID for one tenant: the first address of the tenant's
        locator on that node (the node_id-th /48 of the tenant block).  Per-tenant transit
        SIDs let every hop pick the tenant's own tunnel by destination alone."""
        return self._tenant_sid(tenant, node, 1)

    def decap_sid(self, tenant: str, edge: str, family: int = 4) -> str:
        """Egress SID that hands a tenant's packet to its customer (End.DX4 / End.DT6)."""
        return self._tenant_sid(tenant, edge, 0xD4 if family == 4 else 0xD6)

    def _tenant_sid(self, tenant: str, node: str, function: int) -> str:
        key = (tenant, node, function)
        sid = self._sids.get(key)
        if sid is None:
            block = int(self.tenants[tenant].locator_block.network_address)
            base = block | (self.nodes[node].node_id << (128 - TENANT_EDGE_LOCATOR_LEN))
            sid = self._sids[key] = str(ipaddress.IPv6Address(base + function))
        return sid
