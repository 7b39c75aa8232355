# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BGP at the edge, from the controller's side: what each edge and customer router is
configured with, and the routes the edges collect.

Reachability only.  Each edge runs one BGP view per tenant
(:mod:`npms.resources.frr_bgp`): customer routers announce their prefixes there, the
controller collects them (:func:`route_table`) and decides forwarding, which it programs
as SRv6 steering on the tenant's other edges (``npms.overlay.node_overlay(...,
routes=...)``).  Each edge announces the tenant's prefixes behind its other edges to its
customer routers, whose default BGP instance installs them, so return traffic comes back.

Route table
  ``{tenant: {edge: [prefix, ...]}}``: the prefixes a tenant's customers announce at
  each edge, after the edge's guard.  Overlapping prefixes across tenants are normal (each
  tenant is its own table); within a tenant, a prefix learned at two edges (a multi-homed
  customer) goes to the edge the inventory lists first for it, then by name.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .model import Attachment, Inventory
from .overlay import OverlayError, _address_to, interface_to

RouteTable = Dict[str, Dict[str, List[str]]]


def _sorted_prefixes(prefixes: Sequence[str]) -> List[str]:
    nets = {ipaddress.ip_network(p) for p in prefixes}
    return [str(n) for n in sorted(nets, key=lambda n: (n.version, n))]


def _router_id(inv: Inventory, node: str) -> str:
    n = inv.nodes[node]
    for addr in (n.loopback, n.wan_address):
        if addr and ipaddress.ip_address(addr).version == 4:
            return str(addr)
    raise OverlayError(f"node {node}: BGP needs an IPv4 router id: give it an IPv4 npms_loopback")


def _attachments_at(inv: Inventory, tenant: str, edge: str) -> List[Attachment]:
    return [a for a in inv.tenants[tenant].attachments if a.edge == edge]


def _accept(att: Attachment) -> List[Dict[str, Any]]:
    out = []
    for p in att.prefixes:
        net = ipaddress.ip_network(p)
        le = att.max_prefix_len_v4 if net.version == 4 else att.max_prefix_len_v6
        out.append({"prefix": str(net), "le": max(le, net.prefixlen)})
    return out


def _neighbors(inv: Inventory, node: str, peer: str, session: str, remote_as: int) -> List[Dict[str, Any]]:
    """Sessions from ``node`` to ``peer`` on their attachment link."""
    if session == "unnumbered":
        return [{"peer": interface_to(inv.nodes[node], peer), "remote_as": remote_as,
                 "description": f"{peer} (unnumbered)"}]
    out = []
    for version in (4, 6):
        addr = _address_to(inv, node=peer, peer=node, version=version)
        if addr:
            out.append({"peer": addr, "remote_as": remote_as, "description": peer})
    if not out:
        raise OverlayError(f"attachment {node} - {peer}: no IPv4 or IPv6 address on {peer}'s side of the link for a "
                           "numbered session (declare them in npms_interfaces, or use bgp_session: unnumbered)")
    return out


def inventory_routes(inv: Inventory) -> RouteTable:
    """The route table the inventory alone implies (every allowed prefix, at its edge):
    what steering used before any route was learned."""
    table: RouteTable = {}
    for tname, ten in sorted(inv.tenants.items()):
        for att in ten.attachments:
            table.setdefault(tname, {}).setdefault(att.edge, [])
            table[tname][att.edge] = _sorted_prefixes(table[tname][att.edge] + list(att.prefixes))
    return table


def remote_prefixes(inv: Inventory, tenant: str, edge: str, routes: Optional[RouteTable] = None) -> List[str]:
    """The tenant's prefixes behind its other edges: what ``edge`` advertises to its customers."""
    table = routes if routes is not None else inventory_routes(inv)
    out: List[str] = []
    for other, prefixes in (table.get(tenant) or {}).items():
        if other != edge:
            out += prefixes
    return _sorted_prefixes(out)


def edge_bgp_config(inv: Inventory, edge: str, routes: Optional[RouteTable] = None) -> List[Dict[str, Any]]:
    """frr_bgp items for an edge: one view per tenant attached there."""
    if inv.nodes[edge].role != "edge":
        raise OverlayError(f"node {edge}: only edges run the tenants' BGP views")
    items = []
    for tname, ten in sorted(inv.tenants.items()):
        atts = _attachments_at(inv, tname, edge)
        if not atts:
            continue
        neighbors: List[Dict[str, Any]] = []
        accept: List[Dict[str, Any]] = []
        for att in atts:
            neighbors += _neighbors(inv, edge, att.customer, att.bgp_session, inv.nodes[att.customer].asn or 0)
            accept += _accept(att)
        items.append({"tenant": tname, "asn": ten.asn, "view": True, "router_id": _router_id(inv, edge),
                      "neighbors": neighbors, "accept": accept, "advertise": remote_prefixes(inv, tname, edge, routes)})
    return items


def customer_bgp_config(inv: Inventory, customer: str) -> List[Dict[str, Any]]:
    """frr_bgp item for a customer router: its default instance (which installs routes),
    announcing its prefixes and accepting the tenant's others."""
    node = inv.nodes[customer]
    if node.role != "customer":
        raise OverlayError(f"node {customer}: not a customer router")
    for tname, ten in sorted(inv.tenants.items()):
        atts = [a for a in ten.attachments if a.customer == customer]
        if not atts:
            continue
        neighbors: List[Dict[str, Any]] = []
        for att in atts:
            neighbors += _neighbors(inv, node=customer, peer=att.edge, session=att.bgp_session, remote_as=ten.asn)
        own = _sorted_prefixes([p for a in atts for p in a.prefixes])
        accept = [e for a in ten.attachments if a.customer != customer for e in _accept(a)]
        return [{"tenant": tname, "asn": node.asn, "view": False, "router_id": _router_id(inv, customer),
                 "neighbors": neighbors, "accept": accept, "advertise": own}]
    raise OverlayError(f"node {customer}: no tenant attaches this customer router")


def route_table(inv: Inventory, collected: Mapping[str, Mapping[str, Any]]) -> RouteTable:
    """The route table from what each edge's ``frr_bgp`` gather reported
    (``{edge: {tenant: {"learned": [{"prefix", ...}], ...}}}``).  A prefix outside the
    tenant's allowed set is dropped again here (the edge's guard is the first line, this
    is the second); a prefix learned at two edges stays with the first in inventory
    order.  Where nothing could be read for a tenant at an edge (no report from the edge,
    or no BGP view of the tenant there yet: the first loop collects before it deploys),
    the inventory's prefixes stand in, so that the first loop already forwards and
    advertises; a view that learned nothing (a session down, a prefix withdrawn) gives
    none."""
    table: RouteTable = {}
    claimed: Dict[str, Dict[ipaddress._BaseNetwork, str]] = {}
    for tname, ten in sorted(inv.tenants.items()):
        table[tname] = {}
        allowed = {a.edge: [ipaddress.ip_network(p) for p in a.prefixes] for a in ten.attachments}
        for edge in ten.edges:
            report = (collected.get(edge) or {}).get(tname)
            if report is None:
                report = {"learned": [{"prefix": str(p)} for p in allowed.get(edge, [])]}
            kept = []
            for entry in report.get("learned", []):
                net = ipaddress.ip_network(entry["prefix"])
                if not any(net.version == a.version and net.subnet_of(a) for a in allowed.get(edge, [])):
                    continue
                owner = claimed.setdefault(tname, {}).setdefault(net, edge)
                if owner == edge:
                    kept.append(str(net))
            if kept or edge in allowed:
                table[tname][edge] = _sorted_prefixes(kept)
    return table
