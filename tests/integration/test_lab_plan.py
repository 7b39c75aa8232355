# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab would build from inventory/lab (no root, nothing is touched)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from npms.inventory import inventory_from_data, inventory_to_data, load_inventory
from npms_lab import Lab, LabError, Plan, PlanError, build_plan

INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "lab"
INV = load_inventory(INVENTORY)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(INV, "t3-x-", str(INVENTORY))


def test_one_namespace_per_node_and_per_customer_host(plan):
    customers = sorted(n for n, node in INV.nodes.items() if node.role == "customer")
    assert [n.netns for n in plan.nodes] == [f"t3-x-{n}" for n in sorted(INV.nodes)] + [f"t3-x-h-{c}" for c in customers]
    assert [n.name for n in plan.nodes if n.frr] == sorted(n for n, node in INV.nodes.items() if node.role in ("edge", "customer"))
    assert all(len(port.ifname) <= 15 for lk in plan.links for port in (lk.a_port, lk.b_port))


def test_wan_links_route_peer_wan_addresses_symmetrically(plan):
    wan = {(lk.a, lk.b): lk for lk in plan.wan_links}
    assert len(wan) == sum(1 for lk in INV.links if lk.kind != "attachment")
    for (a, b), lk in wan.items():
        for node, peer, port in ((a, b, lk.a_port), (b, a, lk.b_port)):
            routes = [r for r in plan.node(node).routes if r.dst == INV.nodes[peer].wan_address + "/32"]
            assert len(routes) == 1 and routes[0].dev == port.ifname == peer
            assert routes[0].src == INV.nodes[node].wan_address
    red_sea = plan.find_link("fra-sin-red-sea")
    assert (red_sea.nominal.delay_ms, red_sea.nominal.jitter_ms, red_sea.nominal.rate_mbps) == (38, 0.8, 200)


def test_attachments_use_the_inventory_interfaces(plan):
    lk = [lk for lk in plan.links if lk.kind == "attachment" and lk.b == "cust-acme-ber"][0]
    assert lk.a_port.ifname == "cust-acme-ber" and lk.b_port.ifname == "edge-ber"
    assert lk.a_port.addresses == ("192.0.2.0/31", "2001:db8:ffff:1::1/64", "fe80::1/64")
    host = plan.node("h-cust-acme-ber")
    assert host.behind == "cust-acme-ber" and host.addresses == ("10.10.1.2/24", "2001:db8:1::2/48")
    assert [(r.dst, r.via) for r in host.routes] == [("default", "10.10.1.1"), ("::/0", "2001:db8:1::1")]


def test_links_are_found_by_name_or_ends_in_any_order(plan):
    assert plan.find_link("core-lon~core-fra").name == "core-fra~core-lon"
    for ref in ("core-fra:core-lon", "core-lon/core-fra", "core-fra,core-lon", "core-fra<->core-lon"):
        assert plan.find_link(ref).name == "core-fra~core-lon"
    assert plan.find_link("core-sin~core-fra").name == "fra-sin-red-sea"
    with pytest.raises(PlanError, match=r"unknown link 'core-lon~core-tok'; the WAN links are: .*fra-sin-red-sea"):
        plan.find_link("core-lon~core-tok")
    with pytest.raises(PlanError, match="only WAN links"):
        plan.find_link("edge-ber~cust-acme-ber")


def test_plan_round_trips_through_the_state_file(plan):
    assert Plan.from_data(json.loads(json.dumps(plan.to_data()))) == plan


def test_ipv6_wan_addresses_route_via_the_peers_link_local():
    data = inventory_to_data(INV)
    for i, name in enumerate(sorted(n for n, h in data["hosts"].items() if h["npms_wan_address"])):
        data["hosts"][name]["npms_wan_address"] = str(ipaddress.ip_address("2001:db8:ee::") + i + 1)
    inv6 = inventory_from_data(data, "v6")
    plan6 = build_plan(inv6)
    # core-fra is the link's a side (fe80::1), core-lon the b side (fe80::2)
    route = [r for r in plan6.node("core-lon").routes if r.dev == "core-fra"][0]
    assert route.via == "fe80::1" and route.dst.endswith("/128")
    route = [r for r in plan6.node("core-fra").routes if r.dev == "core-lon"][0]
    assert route.via == "fe80::2"


def test_bad_prefix_and_interface_clash_are_named():
    with pytest.raises(LabError, match="prefix 'a b'"):
        Lab(str(INVENTORY), "a b")
    data = inventory_to_data(INV)
    data["hosts"]["core-lon"]["npms_interfaces"] = [{"name": "core-fra", "addresses": [], "peer": "core-par", "mtu": 1500}]
    with pytest.raises(PlanError, match="node 'core-lon': interface 'core-fra' would carry both"):
        build_plan(inventory_from_data(data, "clash"))
