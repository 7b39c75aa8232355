# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab builds from an inventory: a pure function, nothing touches the machine.

:func:`build_plan` turns a validated :class:`npms.model.Inventory` and a namespace prefix
into a :class:`Plan`: one namespace per node and per host behind a customer router, one
veth pair per link, the addresses and routes of every namespace, the nominal impairment
of every WAN link and the nodes that run FRR.  ``Plan.to_data()`` is what the state file
records, so a later ``up`` can tell whether anything would change.

Addressing (see docs/lab.md):

* ``npms_loopback`` and ``npms_wan_address`` of a node sit on its ``lo`` (host routes);
* a WAN link (core / access / direct) is a veth pair named after the peer on each side
  (``core-fra`` inside ``core-lon``), link-locals ``fe80::1`` (a side) / ``fe80::2``
  (b side), and a host route to the peer's WAN address over it with the node's own WAN
  address as ``src`` -- both ends symmetric, so a WireGuard tunnel between two WAN
  addresses crosses exactly that link (and its impairment);
* an attachment link (edge - customer router) takes names and addresses from the
  ``npms_interfaces`` entries of both ends whose ``peer`` is the other end;
* behind each customer router one host namespace ``h-<customer>``: the router's ``lan0``
  holds the first address of each prefix the customer is attached with, the host's
  ``eth0`` the second, and the host's default routes point at the router.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Interface names inside the namespaces the lab makes (Linux: at most 15 characters).
LAN_IF = "lan0"
HOST_IF = "eth0"
HOST_PREFIX = "h-"
WAN_LINK_KINDS = ("core", "access", "direct")
FRR_ROLES = ("edge", "customer")
LINK_LOCAL_A = "fe80::1/64"
LINK_LOCAL_B = "fe80::2/64"

_IFNAME_RE = re.compile(r"^[^/:\s]{1,15}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
_LINK_SEPARATORS = ("~", "<->", ":", "/", ",")


class PlanError(ValueError):
    """The inventory cannot be built as a lab (the message names the node / link)."""


@dataclass(frozen=True)
class Impairment:
    """What a WAN link does to each direction: one-way delay and jitter (ms), loss (% of
    packets, per direction) and rate (Mbit/s, None: unlimited)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbps: Optional[float] = None

    def to_data(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Optional[Dict[str, Any]]) -> Optional["Impairment"]:
        if data is None:
            return None
        return cls(
            delay_ms=float(data.get("delay_ms") or 0.0),
            jitter_ms=float(data.get("jitter_ms") or 0.0),
            loss_pct=float(data.get("loss_pct") or 0.0),
            rate_mbps=None if data.get("rate_mbps") is None else float(data["rate_mbps"]),
        )

    def text(self) -> str:
        rate = "unlimited" if self.rate_mbps is None else "%g Mbit/s" % self.rate_mbps
        return "delay %g ms, jitter %g ms, loss %g %%, rate %s" % (self.delay_ms, self.jitter_ms, self.loss_pct, rate)


@dataclass(frozen=True)
class Route:
    dst: str  # CIDR or "default"
    dev: str
    via: Optional[str] = None
    src: Optional[str] = None

    def ip_args(self) -> List[str]:
        args = [self.dst]
        if self.via:
            args += ["via", self.via]
        args += ["dev", self.dev]
        if self.src:
            args += ["src", self.src]
        return args


@dataclass(frozen=True)
class Port:
    """One end of a veth pair, inside a namespace."""

    ifname: str
    addresses: Tuple[str, ...] = ()
    mtu: int = 1500


@dataclass(frozen=True)
class LabLink:
    name: str  # what `npms lab impair` takes: the inventory name, else "a~b"
    a: str  # node (or host) names, as in the inventory
    b: str
    kind: str  # core | access | direct | attachment | lan
    a_port: Port
    b_port: Port
    nominal: Optional[Impairment] = None  # WAN links only

    @property
    def is_wan(self) -> bool:
        return self.kind in WAN_LINK_KINDS


@dataclass(frozen=True)
class LabNode:
    name: str  # node (or host) name
    netns: str
    role: str  # core | edge | customer | host
    lo_addresses: Tuple[str, ...] = ()
    routes: Tuple[Route, ...] = ()
    router: bool = True  # forwarding and seg6 on
    frr: bool = False
    behind: Optional[str] = None  # hosts: the customer router
    addresses: Tuple[str, ...] = ()  # hosts: their LAN addresses


@dataclass(frozen=True)
class Plan:
    prefix: str
    inventory: str  # absolute path of the inventory it was built from
    nodes: Tuple[LabNode, ...]  # inventory nodes, then hosts
    links: Tuple[LabLink, ...]  # WAN links, attachments, then host LANs

    # --- lookups -----------------------------------------------------------------
    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def namespaces(self) -> Tuple[str, ...]:
        return tuple(n.netns for n in self.nodes)

    @property
    def wan_links(self) -> Tuple[LabLink, ...]:
        return tuple(lk for lk in self.links if lk.is_wan)

    def find_link(self, ref: str) -> LabLink:
        """A WAN link by name or by its two ends (``a~b``, ``a:b``, ``a/b``, ``a,b``, ``a<->b``,
        either order); PlanError lists the known ones otherwise."""
        ref = ref.strip()
        for lk in self.links:
            if ref == lk.name:
                return self._wan_only(lk)
        for sep in _LINK_SEPARATORS:
            if sep in ref:
                left, right = (part.strip() for part in ref.split(sep, 1))
                for lk in self.links:
                    if {left, right} == {lk.a, lk.b}:
                        return self._wan_only(lk)
        known = ", ".join(lk.name for lk in self.wan_links)
        raise PlanError(f"unknown link {ref!r}; the WAN links are: {known}")

    @staticmethod
    def _wan_only(link: LabLink) -> LabLink:
        if not link.is_wan:
            raise PlanError(f"link {link.name} is {'an attachment' if link.kind == 'attachment' else 'a host LAN'} link: "
                            "only WAN links (core, access, direct) carry impairments")
        return link

    # --- (de)serialisation -----------------------------------------------------------
    def to_data(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Dict[str, Any]) -> "Plan":
        def port(d: Dict[str, Any]) -> Port:
            return Port(ifname=d["ifname"], addresses=tuple(d.get("addresses") or ()), mtu=int(d.get("mtu") or 1500))

        nodes = tuple(
            LabNode(
                name=n["name"], netns=n["netns"], role=n["role"],
                lo_addresses=tuple(n.get("lo_addresses") or ()),
                routes=tuple(Route(**r) for r in n.get("routes") or ()),
                router=bool(n.get("router", True)), frr=bool(n.get("frr")),
                behind=n.get("behind"), addresses=tuple(n.get("addresses") or ()),
            )
            for n in data["nodes"]
        )
        links = tuple(
            LabLink(
                name=lk["name"], a=lk["a"], b=lk["b"], kind=lk["kind"],
                a_port=port(lk["a_port"]), b_port=port(lk["b_port"]),
                nominal=Impairment.from_data(lk.get("nominal")),
            )
            for lk in data["links"]
        )
        return cls(prefix=data["prefix"], inventory=data["inventory"], nodes=nodes, links=links)


def check_prefix(prefix: str) -> str:
    """A namespace prefix: empty, or letters, digits, '.', '_' and '-' (at most 31)."""
    if prefix and not _PREFIX_RE.match(prefix):
        raise PlanError(f"prefix {prefix!r}: use letters, digits, '.', '_' and '-' (at most 31 characters), "
                        "starting with a letter or digit")
    return prefix


def _host_cidr(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    return f"{ip}/{ip.max_prefixlen}"


def _bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def _is_link_local(cidr: str) -> bool:
    return ipaddress.ip_interface(cidr).ip.is_link_local


def _port_for(node, peer: str, used: Dict[str, str], link_label: str) -> Port:
    """The node's end of the link to ``peer``: its declared interface, else one named after the peer."""
    declared = [i for i in node.interfaces if i.peer == peer]
    if declared:
        iface = declared[0]
        name, addresses, mtu = iface.name, tuple(iface.addresses), iface.mtu
    else:
        name, addresses, mtu = peer, (), 1500
        if not _IFNAME_RE.match(name) or name in used or name in ("lo", LAN_IF):
            name = "l%d" % len(used)
    if not _IFNAME_RE.match(name):
        raise PlanError(f"node {node.name!r}: interface name {name!r} of link {link_label} is not a Linux interface name "
                        "(1-15 characters, no '/', ':' or spaces)")
    if name in used:
        raise PlanError(f"node {node.name!r}: interface {name!r} would carry both {used[name]} and {link_label}")
    used[name] = link_label
    return Port(ifname=name, addresses=addresses, mtu=mtu)


def _with_link_local(port: Port, default: str) -> Port:
    if any(_is_link_local(a) for a in port.addresses if ":" in a):
        return port
    return Port(ifname=port.ifname, addresses=port.addresses + (default,), mtu=port.mtu)


def _nominal(link) -> Impairment:
    return Impairment(delay_ms=float(link.latency_ms), jitter_ms=float(link.jitter_ms),
                      loss_pct=float(link.loss_pct), rate_mbps=float(link.bandwidth_mbps))


def _lan_addresses(prefixes: Sequence[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(router, host) addresses on a customer LAN: the first and second address of each
    prefix, with the prefix's own length, so the connected routes are the prefixes."""
    router: List[str] = []
    host: List[str] = []
    for prefix in prefixes:
        net = ipaddress.ip_network(prefix)
        if net.num_addresses < 4:
            raise PlanError(f"customer prefix {prefix}: too small for a router and a host")
        router.append(f"{net.network_address + 1}/{net.prefixlen}")
        host.append(f"{net.network_address + 2}/{net.prefixlen}")
    return tuple(router), tuple(host)


def build_plan(inv, prefix: str = "", inventory_path: str = "") -> Plan:
    """The lab for ``inv`` (an :class:`npms.model.Inventory`) with namespaces ``<prefix><node>``."""
    check_prefix(prefix)
    used_ifs: Dict[str, Dict[str, str]] = {name: {} for name in inv.nodes}
    routes: Dict[str, List[Route]] = {name: [] for name in inv.nodes}
    links: List[LabLink] = []
    wan: List[LabLink] = []
    for lk in inv.links:
        label = lk.name or f"{lk.a}~{lk.b}"
        a_node, b_node = inv.nodes[lk.a], inv.nodes[lk.b]
        a_port = _with_link_local(_port_for(a_node, lk.b, used_ifs[lk.a], label), LINK_LOCAL_A)
        b_port = _with_link_local(_port_for(b_node, lk.a, used_ifs[lk.b], label), LINK_LOCAL_B)
        if lk.kind in WAN_LINK_KINDS:
            for node, peer, port, peer_port in ((a_node, b_node, a_port, b_port), (b_node, a_node, b_port, a_port)):
                if not node.wan_address or not peer.wan_address:
                    continue
                ip, peer_ip = ipaddress.ip_address(node.wan_address), ipaddress.ip_address(peer.wan_address)
                if ip.version != peer_ip.version:
                    raise PlanError(f"link {label}: {node.name} and {peer.name} have WAN addresses of different families")
                # IPv4: the peer answers ARP for the address on its lo.  IPv6 neighbour
                # discovery does not, so route via the peer's link-local.
                via = None
                if ip.version == 6:
                    via = next(_bare(a) for a in peer_port.addresses if ":" in a and _is_link_local(a))
                routes[node.name].append(Route(dst=_host_cidr(peer.wan_address), dev=port.ifname, via=via,
                                               src=node.wan_address))
            wan.append(LabLink(label, lk.a, lk.b, lk.kind, a_port, b_port, _nominal(lk)))
        else:
            links.append(LabLink(label, lk.a, lk.b, lk.kind, a_port, b_port))

    # Customers: the prefixes of every attachment they are in, one host behind each.
    customer_prefixes: Dict[str, List[str]] = {}
    for tenant in inv.tenants.values():
        for att in tenant.attachments:
            bucket = customer_prefixes.setdefault(att.customer, [])
            bucket.extend(p for p in att.prefixes if p not in bucket)

    nodes: List[LabNode] = []
    hosts: List[LabNode] = []
    lans: List[LabLink] = []
    for name, node in sorted(inv.nodes.items()):
        lo = tuple(_host_cidr(a) for a in (node.loopback, node.wan_address) if a)
        node_routes = list(routes[name])
        if node.role == "customer" and customer_prefixes.get(name):
            if LAN_IF in used_ifs[name]:
                raise PlanError(f"node {name!r}: interface {LAN_IF!r} is reserved for the lab's host LAN")
            router_addrs, host_addrs = _lan_addresses(customer_prefixes[name])
            host_name = HOST_PREFIX + name
            host_routes = []
            for family in (4, 6):
                gateway = next((_bare(a) for a in router_addrs if ipaddress.ip_interface(a).version == family), None)
                if gateway:
                    host_routes.append(Route(dst="default" if family == 4 else "::/0", dev=HOST_IF, via=gateway))
            hosts.append(LabNode(name=host_name, netns=prefix + host_name, role="host", routes=tuple(host_routes),
                                 router=False, behind=name, addresses=host_addrs))
            lans.append(LabLink(f"{name}~{host_name}", name, host_name, "lan",
                                Port(LAN_IF, router_addrs + (LINK_LOCAL_A,)), Port(HOST_IF, host_addrs + (LINK_LOCAL_B,))))
        nodes.append(LabNode(name=name, netns=prefix + name, role=node.role, lo_addresses=lo, routes=tuple(node_routes),
                             router=True, frr=node.role in FRR_ROLES))
    source = inventory_path or inv.source
    return Plan(prefix=prefix, inventory=source, nodes=tuple(nodes + hosts), links=tuple(wan + links + lans))
