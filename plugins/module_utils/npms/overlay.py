# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one node's dataplane must hold: inventory (+ paths, + peers' public keys) in,
the ``config`` of every resource out.  Pure: nothing touches a node.

The overlay it describes (docs/overlay.md):

* **Tunnels.** One WireGuard interface per tenant and per tunnel link (access: edge -
  POP; direct: edge - edge, when both edges serve the tenant), on both ends.  Name
  ``wg<tenant id>-<node id>-<peer id>`` (hex; unique across all nodes, which wireguard-go
  in the lab needs; on VPP nodes ``wg<tenant id * 65536 + peer id>``), listen port ``20000 + 1000 * tenant id + peer id % 1000``, endpoint
  the peer's WAN address.  Allowed IPs are ``::/0``: routes, not allowed-ips, choose the
  tunnel.  Each tunnel interface holds a link-local address, ``fe80::1/64`` on the link's
  ``a`` end and ``fe80::2/64`` on its ``b`` end (:func:`tunnel_link_local`), so that the
  edges' probes can travel inside the tunnel (``npms.probe``); VPP ends hold none.
* **SIDs.** Every transit node has an End SID per tenant (``Inventory.tenant_end_sid``,
  in the tenant's block) so that the hop before a tunnel picks the tenant's tunnel by
  destination alone; edges decapsulate with End.DX4 / End.DX6 to the tenant's customer
  router (``Inventory.decap_sid``).  Core and edge nodes also hold their own End SID.
* **Routes.** A node routes each neighbour's tenant locators (and the neighbour's own
  locator) over the link to it: core links via the neighbour's link-local address,
  tunnels straight into the tenant's WireGuard interface.
* **Policies and steering** (edges, from the path engine's results): per tenant, class
  and destination edge one policy per address family (the IPv6 one ends in the DX6
  SID), and the destination's customer prefixes steered into it for the class's DSCP
  values arriving on the tenant's attachment interfaces.

Interface names follow the lab (and containerlab) convention: the interface towards a
peer is the one ``npms_interfaces`` declares with that ``peer``, else it is named after
the peer; link-locals are ``fe80::1`` on a link's ``a`` end and ``fe80::2`` on its ``b``
end unless declared.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .model import TUNNEL_LINK_KINDS, Inventory, Link, Node, Tenant

PORT_BASE = 20000
MAX_PORT_TENANT = 45  # 20000 + 1000 * 45 + 999 < 65536
KEEPALIVE_S = 25  # edges keep NAT state and first handshakes fresh
BSID_FUNCTION = 0xB  # binding SIDs: see binding_sid()
MAX_CLASSES = 8  # class ids fit 3 bits of a binding SID
LINK_LOCAL_A = "fe80::1"
LINK_LOCAL_B = "fe80::2"
RESOURCE_ORDER = ("wireguard", "srv6_localsid", "srv6_route", "srv6_policy", "srv6_steering", "nftables")


class OverlayError(ValueError):
    """The inventory cannot be rendered for this node (the message names what)."""


# --- names and numbers ---------------------------------------------------------------
def tunnel_name(inv: Inventory, tenant: str, node: str, peer: str) -> str:
    """``wg<tenant>-<node>-<peer>`` (hex) on Linux; on VPP, which names WireGuard
    interfaces ``wg<instance>`` itself, ``wg<tenant id * 65536 + peer id>`` (unique on
    the node, which is all VPP needs)."""
    tid, peer_id = inv.tenants[tenant].tenant_id, inv.nodes[peer].node_id
    if inv.nodes[node].dataplane == "vpp":
        return "wg%d" % (tid * 65536 + peer_id)
    return "wg%x-%x-%x" % (tid, inv.nodes[node].node_id, peer_id)


def tunnel_peer(inv: Inventory, node: str, name: str) -> str:
    """The peer at the far end of ``node``'s tunnel ``name`` (the inverse of tunnel_name)."""
    for tenant, peer, _link in tunnels(inv, node):
        if tunnel_name(inv, tenant, node, peer) == name:
            return peer
    raise OverlayError(f"node {node}: {name} is not one of its tunnels")


def tunnel_port(inv: Inventory, tenant: str, peer: str) -> int:
    """The listen port of the node's tunnel towards ``peer`` for ``tenant``."""
    tid = inv.tenants[tenant].tenant_id
    if not 0 < tid <= MAX_PORT_TENANT:
        raise OverlayError(f"tenant {tenant}: tenant_id {tid}: tunnels need 1..{MAX_PORT_TENANT} (listen ports)")
    return PORT_BASE + 1000 * tid + inv.nodes[peer].node_id % 1000


def tenant_locator(inv: Inventory, tenant: str, node: str) -> str:
    return str(inv.tenant_edge_locator(tenant, node))


def binding_sid(inv: Inventory, tenant: str, node: str, class_id: int, dst: str, family: int) -> str:
    """The policy's BSID in the tenant's locator on ``node``: function 0xb, then tenant id
    (8 bits), class id (3), destination node id (16), family (1: IPv6) in the low 28 bits,
    which are unique per policy on the node (the Linux driver's table id needs that)."""
    if class_id >= MAX_CLASSES:
        raise OverlayError(f"tenant {tenant}: at most {MAX_CLASSES} traffic classes are steered (class id {class_id})")
    base = int(inv.tenant_edge_locator(tenant, node).network_address)
    low = (inv.tenants[tenant].tenant_id << 20) | (class_id << 17) | (inv.nodes[dst].node_id << 1) | (family == 6)
    return str(ipaddress.IPv6Address(base | (BSID_FUNCTION << 28) | low))


def class_ids(tenant: Tenant) -> Dict[str, int]:
    """A class's id is its position in the tenant's class list (inventory order)."""
    return {tc.name: i for i, tc in enumerate(tenant.traffic_classes)}


def interface_to(node: Node, peer: str) -> str:
    for iface in node.interfaces:
        if iface.peer == peer:
            return iface.name
    return peer


def _link_local(inv: Inventory, link: Link, node: str) -> str:
    """``node``'s link-local on ``link``: declared, else the a/b convention."""
    n = inv.nodes[node]
    other = link.b if link.a == node else link.a
    for iface in n.interfaces:
        if iface.peer == other:
            for addr in iface.addresses:
                ip = ipaddress.ip_interface(addr).ip
                if ip.version == 6 and ip.is_link_local:
                    return str(ip)
    return LINK_LOCAL_A if link.a == node else LINK_LOCAL_B


def _address_to(inv: Inventory, node: str, peer: str, version: int) -> Optional[str]:
    """``node``'s (global) address of ``version`` on its interface towards ``peer``."""
    for iface in inv.nodes[node].interfaces:
        if iface.peer != peer:
            continue
        for addr in iface.addresses:
            ip = ipaddress.ip_interface(addr).ip
            if ip.version == version and not ip.is_link_local:
                return str(ip)
    return None


def tenants_of(inv: Inventory, node: str) -> List[str]:
    """Tenants whose traffic can cross ``node``: all for a core, the edge's for an edge."""
    n = inv.nodes[node]
    if n.role == "core":
        return sorted(inv.tenants)
    return sorted(t for t, ten in inv.tenants.items() if node in ten.edges)


def tunnels(inv: Inventory, node: str) -> List[Tuple[str, str, Link]]:
    """(tenant, peer, link) for every tunnel ending on ``node``."""
    out = []
    for link in inv.links:
        if link.kind not in TUNNEL_LINK_KINDS or node not in link.ends:
            continue
        peer = link.b if link.a == node else link.a
        for tenant, ten in sorted(inv.tenants.items()):
            ends_in_tenant = [e for e in link.ends if inv.nodes[e].role != "edge" or e in ten.edges]
            if len(ends_in_tenant) == 2:
                out.append((tenant, peer, link))
    return sorted(out, key=lambda t: (t[0], t[1]))


# --- the resources ---------------------------------------------------------------------
def tunnel_link_local(inv: Inventory, link: Link, node: str) -> Optional[str]:
    """``node``'s address on its tunnels over ``link`` (every tenant's tunnel on the link
    has the same one, each on its own interface): ``fe80::1`` on the link's ``a`` end,
    ``fe80::2`` on its ``b`` end; None on a VPP node.

    Why a link-local: the probes of an edge then run *inside* the tunnel (``ping
    fe80::2%wg1-7-2``) and see a tunnel whose handshake or keys fail, which probing the
    peer's WAN address cannot; a link-local is unique per interface by definition, needs
    no allocation and is never routed beyond the tunnel.  Declared interface addresses
    (``npms_interfaces``) are not consulted: the interface they declare towards the peer is
    the underlay one.  VPP takes an IPv6 link-local only as the interface's single ``/128``
    link-local address (``prefix length of link-local address must be 128``) and the
    ``wireguard_vpp`` driver does not manage that yet, so VPP ends stay without one and
    probes towards them use the underlay."""
    if inv.nodes[node].dataplane == "vpp":
        return None
    return LINK_LOCAL_A if link.a == node else LINK_LOCAL_B


def wireguard_config(inv: Inventory, node: str, public_keys: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Tunnels of ``node``; a peer is listed once its public key is known
    (``public_keys[peer][interface]`` is the key or ``{"public_key": key}``).  Each
    tunnel holds the node's link-local (:func:`tunnel_link_local`, ``/64``), its only
    address."""
    items = []
    n = inv.nodes[node]
    for tenant, peer, link in tunnels(inv, node):
        name = tunnel_name(inv, tenant, node, peer)
        item: Dict[str, Any] = {"name": name, "listen_port": tunnel_port(inv, tenant, peer), "peers": []}
        link_local = tunnel_link_local(inv, link, node)
        if link_local:
            item["addresses"] = [f"{link_local}/64"]
        twin = tunnel_name(inv, tenant, node=peer, peer=node)  # the peer's end of this tunnel
        key = _key((public_keys or {}).get(peer, {}), twin)
        p = inv.nodes[peer]
        if key:
            if not p.wan_address:
                raise OverlayError(f"node {peer}: npms_wan_address is needed to reach its tunnel {name} from {node}")
            ip = ipaddress.ip_address(p.wan_address)
            host = f"[{ip}]" if ip.version == 6 else str(ip)
            item["peers"].append({
                "public_key": key,
                "endpoint": f"{host}:{tunnel_port(inv, tenant, node)}",
                "allowed_ips": ["::/0"],
                "persistent_keepalive": KEEPALIVE_S if n.role == "edge" else 0,
            })
        items.append(item)
    return items


def _key(keys: Mapping[str, Any], name: str) -> Optional[str]:
    value = keys.get(name)
    if isinstance(value, Mapping):
        value = value.get("public_key")
    return str(value) if value else None


def localsid_config(inv: Inventory, node: str) -> List[Dict[str, Any]]:
    n = inv.nodes[node]
    items: List[Dict[str, Any]] = []
    if n.end_sid:
        items.append({"sid": n.end_sid, "behavior": "End"})
    if n.role == "core":
        items += [{"sid": inv.tenant_end_sid(t, node), "behavior": "End"} for t in tenants_of(inv, node)]
    if n.role == "edge":
        for tenant in tenants_of(inv, node):
            atts = [a for a in inv.tenants[tenant].attachments if a.edge == node]
            if len(atts) > 1:
                raise OverlayError(f"tenant {tenant}: edge {node} has {len(atts)} attachments; the overlay decapsulates "
                                   "to one customer router per tenant and edge")
            for att in atts:
                ifname = interface_to(n, att.customer)
                for family, behavior in ((4, "End.DX4"), (6, "End.DX6")):
                    nexthop = _address_to(inv, att.customer, node, family)
                    if nexthop:
                        items.append({"sid": inv.decap_sid(tenant, node, family), "behavior": behavior,
                                      "nexthop": nexthop, "interface": ifname})
    return sorted(items, key=lambda i: ipaddress.IPv6Address(i["sid"]))


def route_config(inv: Inventory, node: str) -> List[Dict[str, Any]]:
    items: Dict[str, Dict[str, Any]] = {}
    n = inv.nodes[node]
    for link in inv.links:
        if link.kind != "core" or node not in link.ends:
            continue
        peer = link.b if link.a == node else link.a
        p = inv.nodes[peer]
        via = _link_local(inv, link, peer)
        dev = interface_to(n, peer)
        prefixes = [str(p.locator)] if p.locator else []
        prefixes += [tenant_locator(inv, t, peer) for t in tenants_of(inv, peer)]
        for prefix in prefixes:
            items[prefix] = {"prefix": prefix, "interface": dev, "via": via}
    for tenant, peer, _link in tunnels(inv, node):
        prefix = tenant_locator(inv, tenant, peer)
        items[prefix] = {"prefix": prefix, "interface": tunnel_name(inv, tenant, node, peer)}
    return [items[k] for k in sorted(items, key=ipaddress.IPv6Network)]


def _attachment_ifs(inv: Inventory, tenant: str, node: str) -> List[str]:
    return sorted(interface_to(inv.nodes[node], a.customer) for a in inv.tenants[tenant].attachments if a.edge == node)


def policy_and_steering(inv: Inventory, node: str, paths: Iterable[Mapping[str, Any]],
                        routes: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None,
                        ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """SR policies and steering of edge ``node`` from path results (dicts as the paths
    lookup returns them); results without a path are left out (unreachable).  The
    prefixes steered towards a destination edge are those its customers announced
    (``routes``, ``{tenant: {edge: [prefix]}}``, see ``npms.bgp``), else every prefix the
    inventory allows there."""
    policies: Dict[str, Dict[str, Any]] = {}
    steering: List[Dict[str, Any]] = []
    for r in paths:
        if r.get("src") != node or not r.get("sid_list"):
            continue
        tenant, tc_name, dst = r["tenant"], r["traffic_class"], r["dst"]
        ten = inv.tenants.get(tenant)
        if ten is None or dst not in inv.nodes:
            raise OverlayError(f"path {tenant}/{tc_name} {node}->{dst}: unknown tenant or node (paths of another inventory?)")
        ids = class_ids(ten)
        if tc_name not in ids:
            raise OverlayError(f"path {tenant}/{tc_name} {node}->{dst}: tenant {tenant} has no class {tc_name}")
        tc = ten.traffic_class(tc_name)
        ingress = _attachment_ifs(inv, tenant, node)
        if not ingress:
            continue
        sids = [str(s) for s in r["sid_list"]]
        if routes is not None:
            prefixes = list((routes.get(tenant) or {}).get(dst) or [])
        else:
            prefixes = [p for a in ten.attachments if a.edge == dst for p in a.prefixes]
        for family in (4, 6):
            fam_prefixes = [p for p in prefixes if ipaddress.ip_network(p).version == family]
            if not fam_prefixes:
                continue
            segments = sids if family == 4 else sids[:-1] + [inv.decap_sid(tenant, dst, 6)]
            bsid = binding_sid(inv, tenant, node, ids[tc_name], dst, family)
            policies[bsid] = {"bsid": bsid, "segment_lists": [{"segments": segments, "weight": 1}]}
            for prefix in fam_prefixes:
                steering.append({
                    "tenant": tenant, "tenant_id": ten.tenant_id, "traffic_class": tc_name, "class_id": ids[tc_name],
                    "dscp": [] if tc.default else sorted(tc.dscp), "ingress_interfaces": ingress,
                    "prefix": str(ipaddress.ip_network(prefix)), "bsid": bsid,
                })
    ordered = [policies[k] for k in sorted(policies, key=ipaddress.IPv6Address)]
    steering.sort(key=lambda s: (s["tenant"], s["class_id"], s["prefix"]))
    return ordered, steering


def nftables_config(inv: Inventory, node: str) -> List[Dict[str, Any]]:
    """Per tenant on an edge: its attachment interfaces, classes (DSCP, policer) and the
    default security group: the tenant's own prefixes may talk to each other, both ways
    (overlay traffic is judged statelessly where it leaves the overlay)."""
    items = []
    for tenant in tenants_of(inv, node):
        ten = inv.tenants[tenant]
        ifs = _attachment_ifs(inv, tenant, node)
        if not ifs:
            continue
        classes = []
        for tc in ten.traffic_classes:
            entry: Dict[str, Any] = {"name": tc.name, "dscp": [] if tc.default else sorted(tc.dscp)}
            if tc.rate_limit_mbps:
                entry["rate_mbps"] = tc.rate_limit_mbps
            classes.append(entry)
        prefixes = sorted(set(ten.prefixes), key=lambda p: (ipaddress.ip_network(p).version, ipaddress.ip_network(p)))
        items.append({
            "tenant": tenant, "tenant_id": ten.tenant_id, "interfaces": ifs, "classes": classes,
            "security_groups": [{"name": "tenant", "rules": [
                {"direction": direction, "protocol": "any",
                 "sources": [p for p in prefixes if ipaddress.ip_network(p).version == v],
                 "destinations": [p for p in prefixes if ipaddress.ip_network(p).version == v]}
                for direction in ("outbound", "inbound")
                for v in (4, 6) if any(ipaddress.ip_network(p).version == v for p in prefixes)
            ]}],
        })
    return items


def node_overlay(
    inv: Inventory,
    node: str,
    paths: Optional[Sequence[Mapping[str, Any]]] = None,
    public_keys: Optional[Mapping[str, Mapping[str, Any]]] = None,
    routes: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None,
) -> Dict[str, List[Dict[str, Any]]]:
    """Every resource's config for ``node`` (a core or edge), keyed by resource name
    (``routes``: the collected route table, see :func:`policy_and_steering`)."""
    if node not in inv.nodes:
        raise OverlayError(f"node {node!r} is not in the inventory ({inv.source})")
    n = inv.nodes[node]
    if n.role not in ("core", "edge"):
        raise OverlayError(f"node {node}: role {n.role}: only core and edge nodes carry the overlay")
    out: Dict[str, List[Dict[str, Any]]] = {
        "wireguard": wireguard_config(inv, node, public_keys),
        "srv6_localsid": localsid_config(inv, node),
        "srv6_route": route_config(inv, node),
    }
    if n.role == "edge":
        out["srv6_policy"], out["srv6_steering"] = policy_and_steering(inv, node, paths or (), routes)
        out["nftables"] = nftables_config(inv, node)
    return out
