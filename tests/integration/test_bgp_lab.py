# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BGP at the edge in the namespace lab, with real FRR (npms_nornir.tasks.bgp and
bgp_routes over npms.resources.frr_bgp): sessions over IPv4, IPv6 and unnumbered IPv6,
learned prefixes that never become forwarding entries on the edge, the guard's filtered
announcements reported, the route table the controller builds, withdrawal, and the
resource's idempotence, check mode, diff and ownership.  Needs root."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from nornir import InitNornir
from nornir.core.filter import F

from npms.bgp import customer_bgp_config, inventory_routes, route_table
from npms.inventory import load_inventory
from npms.overlay import node_overlay
from npms_nornir.tasks import bgp, bgp_routes, resource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventory", "lab")
SESSION_WAIT_S = 60

pytestmark = pytest.mark.usefixtures("needs_root")


def failures(result):
    return {h: str(r[0].exception) for h, r in result.items() if r.failed}


def vtysh(prefix, node, command):
    ns = prefix + node
    return subprocess.run(["ip", "netns", "exec", ns, "vtysh", "-N", ns, "-c", command],
                          check=True, capture_output=True, text=True, timeout=30).stdout


def collect(world, until=None):
    """Route collection on the edges, retried until ``until(results)`` holds (sessions
    take a few seconds to come up and to exchange routes)."""
    deadline = time.monotonic() + SESSION_WAIT_S
    while True:
        res = world["edges"].run(task=bgp_routes)
        assert not res.failed, failures(res)
        out = {h: r[0].result for h, r in res.items()}
        if until is None or until(out) or time.monotonic() > deadline:
            return out
        time.sleep(1)


def converged(inv):
    """Every session established and every customer's prefixes learned at its edge."""
    expected = inventory_routes(inv)

    def check(out):
        return all(t["sessions"] and all(s["established"] for s in t["sessions"])
                   and sorted(r["prefix"] for r in t["learned"]) == expected[tenant][edge]
                   for edge, tenants in out.items() for tenant, t in tenants.items())
    return check


@pytest.fixture(scope="module")
def world(lab):
    inv = load_inventory(INVENTORY)
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": lab.prefix}},
                    runner={"plugin": "threaded", "options": {"num_workers": 10}}, logging={"enabled": False})
    speakers = nr.filter(F(groups__contains="edge") | F(groups__contains="customer"))
    first = speakers.run(task=bgp, inventory=inv)
    assert not first.failed, failures(first)
    world = {"inv": inv, "nr": nr, "speakers": speakers, "edges": nr.filter(F(groups__contains="edge")),
             "prefix": lab.prefix, "first": first}
    world["routes"] = collect(world, converged(inv))
    return world


def test_sessions_come_up_over_ipv4_ipv6_and_unnumbered(world):
    sessions = {(edge, tenant): t["sessions"] for edge, tenants in world["routes"].items() for tenant, t in tenants.items()}
    assert sessions and all(s["established"] for ss in sessions.values() for s in ss), sessions
    # acme's customer routers peer unnumbered (one session named by the interface, both families)
    assert [s["peer"] for s in sessions[("edge-ber", "acme")]] == ["cust-acme-ber"]
    # globex's over the link's IPv4 and IPv6 addresses
    assert sorted(s["peer"] for s in sessions[("edge-ber", "globex")]) == ["192.0.2.3", "2001:db8:ffff:2::2"]


def test_learned_prefixes_are_in_bgp_but_not_in_the_edges_forwarding_table(world):
    learned = {(edge, tenant): sorted(r["prefix"] for r in t["learned"])
               for edge, tenants in world["routes"].items() for tenant, t in tenants.items()}
    assert learned[("edge-ber", "acme")] == ["10.10.1.0/24", "2001:db8:1::/48"]
    assert learned[("edge-ber", "globex")] == ["10.10.1.0/24", "2001:db8:1::/48"]  # the same prefix, another tenant
    prefix = world["prefix"]
    for family in ("-4", "-6"):
        routes = subprocess.run(["ip", "-n", prefix + "edge-ber", family, "-j", "route", "show", "table", "all"],
                                check=True, capture_output=True, text=True).stdout
        dsts = {r.get("dst") for r in json.loads(routes)}
        assert not dsts & {"10.10.1.0/24", "2001:db8:1::/48"}, "BGP must never install a forwarding entry on an edge"
    # the customer routers do install the tenant's other sites (return traffic)
    cust = json.loads(subprocess.run(["ip", "-n", prefix + "cust-acme-ber", "-j", "route", "show", "proto", "bgp"],
                                     check=True, capture_output=True, text=True).stdout)
    assert {"10.10.2.0/24", "10.10.3.0/24"} <= {r["dst"] for r in cust}


def test_a_second_run_changes_nothing_and_check_mode_shows_the_frr_diff(world):
    again = world["speakers"].run(task=bgp, inventory=world["inv"])
    assert not again.failed, failures(again)
    assert {h: r[0].diff for h, r in again.items() if r[0].changed} == {}
    # a planned change: edge-ber would advertise one more acme prefix
    table = {"acme": {"edge-ber": ["10.10.1.0/24"], "edge-bos": ["10.10.3.0/24", "10.10.33.0/24"]}}
    edge = world["nr"].filter(name="edge-ber")
    dry = edge.run(task=bgp, inventory=world["inv"], routes=table, dry_run=True)
    assert not dry.failed, failures(dry)
    before, after = dry["edge-ber"][0].diff.split("+++ after\n")
    assert dry["edge-ber"][0].changed and "  network 10.10.33.0/24" in after and "10.10.33.0" not in before
    assert "10.10.33.0" not in vtysh(world["prefix"], "edge-ber", "show running-config")


def test_unexpected_announcements_are_filtered_and_reported(world):
    prefix = world["prefix"]
    cust = world["nr"].filter(name="cust-acme-ber")
    config = customer_bgp_config(world["inv"], "cust-acme-ber")
    bad = [dict(config[0], advertise=config[0]["advertise"] + ["10.99.0.0/16", "10.10.1.128/25"])]
    res = cust.run(task=resource, resource_name="frr_bgp", config=bad, state="replaced")
    assert not res.failed, failures(res)
    try:
        out = collect(world, lambda o: len(o["edge-ber"]["acme"]["filtered"]) >= 2 and len(o["edge-ber"]["acme"]["learned"]) == 2)
        filtered = {r["prefix"]: r["reason"] for r in out["edge-ber"]["acme"]["filtered"]}
        assert "outside the tenant's allowed prefixes" in filtered["10.99.0.0/16"]
        assert "longer than /24" in filtered["10.10.1.128/25"]
        assert sorted(r["prefix"] for r in out["edge-ber"]["acme"]["learned"]) == ["10.10.1.0/24", "2001:db8:1::/48"]
        table = vtysh(prefix, "edge-ber", "show bgp view acme ipv4 unicast")
        assert "10.99.0.0" not in table and "10.10.1.128" not in table
    finally:
        back = cust.run(task=resource, resource_name="frr_bgp", config=config, state="replaced")
        assert not back.failed, failures(back)


def test_withdrawal_leaves_the_route_table_and_the_other_tenant_alone(world):
    inv = world["inv"]
    before = route_table(inv, world["routes"])
    assert "10.10.1.0/24" in before["acme"]["edge-ber"] and "10.10.1.0/24" in before["globex"]["edge-ber"]
    cust = world["nr"].filter(name="cust-acme-ber")
    config = customer_bgp_config(inv, "cust-acme-ber")
    withdrawn = [dict(config[0], advertise=[p for p in config[0]["advertise"] if p != "10.10.1.0/24"])]
    res = cust.run(task=resource, resource_name="frr_bgp", config=withdrawn, state="replaced")
    assert not res.failed, failures(res)
    try:
        def withdrawn_only(o):  # the session is up and exchanged routes, without 10.10.1.0/24
            learned = {r["prefix"] for r in o["edge-ber"]["acme"]["learned"]}
            return "10.10.1.0/24" not in learned and "2001:db8:1::/48" in learned

        out = collect(world, withdrawn_only)
        assert withdrawn_only(out), out["edge-ber"]["acme"]
        after = route_table(inv, out)
        assert "10.10.1.0/24" not in after["acme"]["edge-ber"]
        assert after["globex"] == before["globex"], "tenant B's identical prefix is untouched"
        # what the next loop programs: edge-bos no longer steers acme's 10.10.1.0/24, globex's still is
        paths = [{"tenant": t, "traffic_class": "be", "src": "edge-bos", "dst": "edge-ber", "sid_list": ["fcbb::1"]}
                 for t in ("acme", "globex")]
        steering = node_overlay(inv, "edge-bos", paths, routes=after)["srv6_steering"]
        assert ("acme", "10.10.1.0/24") not in {(s["tenant"], s["prefix"]) for s in steering}
        assert ("globex", "10.10.1.0/24") in {(s["tenant"], s["prefix"]) for s in steering}
    finally:
        back = cust.run(task=resource, resource_name="frr_bgp", config=config, state="replaced")
        assert not back.failed, failures(back)


def test_deleted_removes_exactly_what_npms_owns(world):
    prefix = world["prefix"]
    edge = world["nr"].filter(name="edge-syd")
    subprocess.run(["ip", "netns", "exec", prefix + "edge-syd", "vtysh", "-N", prefix + "edge-syd", "-c", "conf t",
                    "-c", "ip prefix-list ops-list seq 5 permit 10.0.0.0/8", "-c", "route-map ops-map permit 10"],
                   check=True, capture_output=True, timeout=30)
    gone = edge.run(task=resource, resource_name="frr_bgp", config=None, state="deleted")
    assert not gone.failed and gone["edge-syd"][0].changed, failures(gone)
    running = vtysh(prefix, "edge-syd", "show running-config")
    assert "view globex" not in running
    assert "npms-globex" not in running
    assert "ip prefix-list ops-list seq 5 permit 10.0.0.0/8" in running and "route-map ops-map permit 10" in running
    assert not edge.run(task=resource, resource_name="frr_bgp", config=None, state="deleted")["edge-syd"][0].changed
    back = edge.run(task=bgp, inventory=world["inv"])
    assert not back.failed and back["edge-syd"][0].changed, failures(back)
