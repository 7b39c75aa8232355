# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overlay renderer (npms.overlay) on the lab inventory: every path the engine picks
can be forwarded hop by hop with the SIDs, routes and tunnels it renders."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from npms.inventory import load_inventory
from npms.overlay import OverlayError, node_overlay, tunnel_name, tunnel_peer
from npms.pce import compute_paths
from npms.resources import base
from npms.resources.srv6 import Srv6LocalSid, Srv6Policy, Srv6Route, Srv6Steering
from npms.resources.wireguard import Wireguard

from npms_testlib import LAB

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


@pytest.fixture(scope="module")
def paths(lab):
    return [r.to_dict() for r in compute_paths(lab)]


@pytest.fixture(scope="module")
def overlays(lab, paths):
    nodes = [n for n, node in lab.nodes.items() if node.role in ("core", "edge")]
    first = {n: node_overlay(lab, n, paths) for n in nodes}
    keys = {n: {wg["name"]: KEY for wg in first[n]["wireguard"]} for n in nodes}
    return {n: node_overlay(lab, n, paths, public_keys=keys) for n in nodes}


def test_every_rendered_config_passes_its_resource_checks(overlays):
    schemas = {"wireguard": Wireguard, "srv6_localsid": Srv6LocalSid, "srv6_route": Srv6Route,
               "srv6_policy": Srv6Policy, "srv6_steering": Srv6Steering}
    for node, overlay in overlays.items():
        for name, schema in schemas.items():
            if name in overlay:
                items = base.normalize_all(schema(None), overlay[name])
                assert items, (node, name)


def test_tunnel_names_are_unique_everywhere_and_fit_linux(overlays):
    names = [wg["name"] for o in overlays.values() for wg in o["wireguard"]]
    assert len(names) == len(set(names)) and all(len(n) <= 15 for n in names)
    for node, overlay in overlays.items():
        ports = [wg["listen_port"] for wg in overlay["wireguard"]]
        assert len(ports) == len(set(ports)), node


def test_each_tunnel_points_at_its_twin(lab, overlays):
    for node, overlay in overlays.items():
        for wg in overlay["wireguard"]:
            tid, _me, peer_id = wg["name"][2:].split("-")
            peer = next(n for n, x in lab.nodes.items() if x.node_id == int(peer_id, 16))
            twin = next(w for w in overlays[peer]["wireguard"] if w["name"] == tunnel_name(lab, _tenant(lab, tid), peer, node))
            (p,) = wg["peers"]
            assert p["endpoint"] == f"{lab.nodes[peer].wan_address}:{twin['listen_port']}"
            assert p["persistent_keepalive"] == (25 if lab.nodes[node].role == "edge" else 0)


def _tenant(lab, tid_hex):
    return next(t for t, ten in lab.tenants.items() if ten.tenant_id == int(tid_hex, 16))


def test_vpp_nodes_name_tunnels_as_vpp_does_and_peers_still_find_each_other(lab):
    inv = dataclasses.replace(lab, nodes={**lab.nodes, "core-fra": dataclasses.replace(lab.nodes["core-fra"], dataplane="vpp")})
    nodes = ("core-fra", "edge-ber")
    first = {n: node_overlay(inv, n) for n in nodes}
    keys = {n: {wg["name"]: KEY for wg in first[n]["wireguard"]} for n in nodes}
    fra = node_overlay(inv, "core-fra", public_keys=keys)["wireguard"]
    assert {w["name"] for w in fra} == {"wg65543", "wg131079"}  # tenants 1 and 2, peer edge-ber (7)
    assert all(len(w["peers"]) == 1 for w in fra)
    ber = node_overlay(inv, "edge-ber", public_keys=keys)
    assert tunnel_peer(inv, "edge-ber", "wg1-7-2") == "core-fra"
    assert next(w for w in ber["wireguard"] if w["name"] == "wg1-7-2")["peers"][0]["endpoint"].endswith(":21007")
    assert base.normalize_all(Wireguard(None), fra)


def _next_hop(lab, overlays, node, sid):
    """Where ``node`` sends a packet for ``sid``: the peer at the end of the matching
    route's interface (longest prefix match)."""
    addr = ipaddress.IPv6Address(sid)
    routes = [r for r in overlays[node]["srv6_route"] if addr in ipaddress.IPv6Network(r["prefix"])]
    assert routes, f"{node} has no route for {sid}"
    route = max(routes, key=lambda r: ipaddress.IPv6Network(r["prefix"]).prefixlen)
    ifname = route["interface"]
    if ifname.startswith("wg"):
        return tunnel_peer(lab, node, ifname)
    return ifname  # core links are named after the peer


def test_every_path_forwards_hop_by_hop_to_the_customer(lab, overlays, paths):
    walked = 0
    for r in paths:
        if not r["sid_list"]:
            continue
        node = r["src"]
        bsid = next(s["bsid"] for s in overlays[node]["srv6_steering"]
                    if s["tenant"] == r["tenant"] and s["traffic_class"] == r["traffic_class"]
                    and ipaddress.ip_network(s["prefix"]).version == 4
                    and any(s["prefix"] in a.prefixes for a in lab.tenants[r["tenant"]].attachments if a.edge == r["dst"]))
        policy = next(p for p in overlays[node]["srv6_policy"] if p["bsid"] == bsid)
        segments = policy["segment_lists"][0]["segments"]
        assert segments == r["sid_list"]
        hops = [node]
        for i, sid in enumerate(segments):
            node = _next_hop(lab, overlays, node, sid)
            hops.append(node)
            local = {s["sid"]: s for s in overlays[node]["srv6_localsid"]}
            assert sid in local, f"{r['tenant']}/{r['traffic_class']} {r['src']}->{r['dst']}: {node} has no SID {sid}"
            last = i == len(segments) - 1
            assert local[sid]["behavior"] == ("End.DX4" if last else "End")
        assert hops == r["path"]
        walked += 1
    assert walked == 2 * 4 * 3 * 2  # tenants x classes x ordered pairs of a tenant's 3 edges


def test_classes_take_different_policies_and_tenants_stay_apart(overlays):
    steer = overlays["edge-ber"]["srv6_steering"]
    by = {(s["tenant"], s["traffic_class"], s["prefix"]): s for s in steer}
    # acme ef and be from edge-ber to edge-bos's 10.10.3.0/24: different policies
    assert by[("acme", "ef", "10.10.3.0/24")]["bsid"] != by[("acme", "be", "10.10.3.0/24")]["bsid"]
    # the same prefix for globex: its own interface, its own policy in its own block
    a, g = by[("acme", "ef", "10.10.3.0/24")], by[("globex", "ef", "10.10.3.0/24")]
    assert a["ingress_interfaces"] == ["cust-acme-ber"] and g["ingress_interfaces"] == ["cust-globex-ber"]
    assert a["bsid"].startswith("fcbb:1000:") and g["bsid"].startswith("fcbb:2000:")
    assert by[("acme", "be", "10.10.3.0/24")]["dscp"] == []  # the default class takes the rest


def test_ipv6_policies_end_in_the_dx6_sid(lab, overlays):
    for p in overlays["edge-ber"]["srv6_policy"]:
        last = p["segment_lists"][0]["segments"][-1]
        assert last.endswith("::d6") == bool(int(ipaddress.IPv6Address(p["bsid"])) & 1)
    low28 = [int(ipaddress.IPv6Address(p["bsid"])) & 0x0FFFFFFF for p in overlays["edge-ber"]["srv6_policy"]]
    assert len(low28) == len(set(low28))


def test_a_peer_without_a_key_is_left_out_and_bad_nodes_are_named(lab):
    wg = node_overlay(lab, "core-fra")["wireguard"]
    assert wg and all(w["peers"] == [] for w in wg)
    with pytest.raises(OverlayError, match="role customer"):
        node_overlay(lab, "cust-acme-ber")
    with pytest.raises(OverlayError, match="'core-xyz' is not in the inventory"):
        node_overlay(lab, "core-xyz")
