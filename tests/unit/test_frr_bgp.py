# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""frr_bgp (npms.resources.frr_bgp) and the controller's BGP side (npms.bgp), without FRR:
input checks, rendering, reading real `show running-config` captures with the TextFSM
template, the apply flow through frr-reload (scripted), and the route table.  With FRR in
the lab: tests/integration/test_bgp_lab.py."""

from __future__ import annotations

import os
import re

import pytest

from npms.bgp import customer_bgp_config, edge_bgp_config, inventory_routes, remote_prefixes, route_table
from npms.inventory import load_inventory
from npms.overlay import node_overlay
from npms.resources import base
from npms.resources.base import ResourceError
from npms.resources.frr_bgp import FrrBgp, guard_reason, strip_owned
from npms.runner import Result, Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "frr")
LAB = load_inventory(os.path.join(ROOT, "inventory", "lab"))


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


class FakeFrr(Runner):
    """A node whose FRR configuration is ``running`` (vtysh's banner included); a
    frr-reload of a file makes that file the running configuration."""

    where = "fake-frr"

    def __init__(self, running, fail_reload=0):
        self.running = running
        self.files = {}
        self.calls = []
        self.fail_reload = fail_reload

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        rc, out, err = 0, "", ""
        if argv == ("ip", "netns", "identify"):
            out = ""
        elif argv[:1] == ("vtysh",) and argv[-1] == "show running-config":
            out = self.running
        elif argv[:2] == ("sh", "-c") and "mktemp" in argv[2]:
            path = f"/tmp/npms-frr.{len(self.files)}"
            self.files[path] = stdin
            out = path + "\n"
        elif argv[:1] == ("python3",) and "--reload" in argv:
            if self.fail_reload:
                self.fail_reload -= 1
                rc, err = 1, "line 12: % Unknown command\n"
            else:
                self.running = "Building configuration...\n\nCurrent configuration:\n" + self.files[argv[-1]]
        result = Result(argv, rc, out, err)
        if check and rc:
            from npms.runner import CommandError  # pylint: disable=import-outside-toplevel
            raise CommandError(self.where, argv, rc, out, err)
        return result

    def reloads(self):
        return [c for c in self.calls if c[:1] == ("python3",)]


ACME = {"tenant": "acme", "asn": 65001, "router_id": "100.64.0.7",
        "neighbors": [{"peer": "cust-acme-ber", "remote_as": 64511}],
        "accept": [{"prefix": "10.10.1.0/24", "le": 24}, {"prefix": "2001:db8:1::/48"}],
        "advertise": ["10.10.3.0/24", "10.10.2.0/24", "2001:db8:3::/48"]}


# --- input checks --------------------------------------------------------------------------
BAD = [
    ({"asn": 1}, "tenant is required"),
    ({"tenant": "Acme!"}, "tenant: 'Acme!' is not a tenant name"),
    ({"tenant": "acme", "colour": 1}, "unknown field(s) colour"),
    ({"tenant": "acme", "asn": 0}, "out of range 1..4294967295"),
    ({"tenant": "acme", "router_id": "2001:db8::1"}, "router_id: '2001:db8::1' is not an IPv4 address"),
    ({"tenant": "acme", "view": "yes"}, "view: 'yes' is not a boolean"),
    ({"tenant": "acme", "neighbors": [{"peer": "not an interface", "remote_as": 1}]}, "neighbors[0]: peer: 'not an interface' is neither"),
    ({"tenant": "acme", "neighbors": [{"peer": "192.0.2.1", "remote_as": "elsewhere"}]}, "neighbors[0]: remote_as: 'elsewhere'"),
    ({"tenant": "acme", "neighbors": [{"peer": "192.0.2.1", "remote_as": 1, "address_families": ["ipv6"]}]},
     "a session to 192.0.2.1 carries ipv4 only"),
    ({"tenant": "acme", "neighbors": [{"peer": "192.0.2.1", "remote_as": 1}, {"peer": "192.0.2.1", "remote_as": 2}]},
     "neighbors[1]: peer 192.0.2.1 is listed twice"),
    ({"tenant": "acme", "neighbors": [{"remote_as": 1}]}, "neighbors[0]: peer is required"),
    ({"tenant": "acme", "accept": [{"prefix": "10.10.1.0/24", "le": 16}]}, "accept[0]: le: 16 must be 24..32"),
    ({"tenant": "acme", "accept": [{"prefix": "10.10.1.1/24"}]}, "accept[0]: '10.10.1.1/24' is not a prefix"),
    ({"tenant": "acme", "advertise": ["10.10.300.0/24"]}, "advertise[0]: '10.10.300.0/24' is not a prefix"),
]


@pytest.mark.parametrize("item,message", BAD, ids=[m for _i, m in BAD])
def test_bad_items_are_named_before_the_node_is_touched(item, message):
    runner = FakeFrr(fixture("edge_running.txt"))
    with pytest.raises(ResourceError) as err:
        base.run(FrrBgp(runner), [item], "merged")
    assert message in str(err.value) and "frr_bgp config[0]" in str(err.value)
    assert runner.calls == []


def test_one_default_instance_per_router():
    items = [{"tenant": "a", "view": False, "asn": 1, "router_id": "1.1.1.1"},
             {"tenant": "b", "view": False, "asn": 2, "router_id": "1.1.1.1"}]
    with pytest.raises(ResourceError, match="tenants a, b all ask for the default BGP instance"):
        base.run(FrrBgp(FakeFrr("")), items, "merged")


# --- rendering and reading -----------------------------------------------------------------
def test_rendered_configuration_is_a_view_with_its_guards():
    out = base.run(FrrBgp(FakeFrr("")), [ACME], "rendered").rendered
    text = "\n".join(out)
    assert out[0] == "router bgp 65001 view acme"
    assert " neighbor cust-acme-ber interface remote-as 64511" in out
    assert re.search(r" address-family ipv4 unicast\n  network 10.10.2.0/24\n  network 10.10.3.0/24\n"
                     r"  neighbor cust-acme-ber activate\n  neighbor cust-acme-ber soft-reconfiguration inbound\n"
                     r"  neighbor cust-acme-ber route-map npms-acme-in in\n  neighbor cust-acme-ber route-map npms-acme-out out", text)
    assert "ip prefix-list npms-acme-in-v4 seq 10 permit 10.10.1.0/24" in out  # le 24 on a /24 is the prefix itself
    assert "ipv6 prefix-list npms-acme-in-v6 seq 10 permit 2001:db8:1::/48" in out
    assert "ip prefix-list npms-acme-out-v4 seq 20 permit 10.10.3.0/24" in out
    # every route map ends in a deny: an empty guard lets nothing through
    assert out.count("route-map npms-acme-in deny 100") == 1 and out.count("route-map npms-acme-out deny 100") == 1


def test_a_customer_router_item_is_the_default_instance():
    cust = dict(ACME, tenant="acme", view=False, asn=64511, neighbors=[{"peer": "edge-ber", "remote_as": 65001}])
    out = base.run(FrrBgp(FakeFrr("")), [cust], "rendered").rendered
    assert out[0] == "router bgp 64511"


def test_reading_the_running_configuration_with_textfsm():
    items = base.run(FrrBgp(FakeFrr("")), None, "parsed", running_config=fixture("edge_running.txt")).parsed
    assert [i["tenant"] for i in items] == ["acme", "globex"]
    acme = items[0]
    assert acme["asn"] == 65001 and acme["view"] is True and acme["router_id"] == "100.64.0.7"
    assert acme["neighbors"] == [{"peer": "cust-acme-ber", "remote_as": 64511, "address_families": ["ipv4", "ipv6"]}]
    assert acme["accept"] == [{"prefix": "10.10.1.0/24"}, {"prefix": "2001:db8:1::/48"}]
    assert acme["advertise"] == ["10.10.2.0/24", "10.10.3.0/24", "2001:db8:3::/48"]
    globex = items[1]
    assert [(n["peer"], n["address_families"]) for n in globex["neighbors"]] == [
        ("192.0.2.3", ["ipv4"]), ("2001:db8:ffff:2::2", ["ipv6"])]
    # the customer's default instance is npms's: its neighbour uses npms-acme-in
    cust = base.run(FrrBgp(FakeFrr("")), None, "parsed", running_config=fixture("customer_running.txt")).parsed
    assert [(i["tenant"], i["view"], i["asn"]) for i in cust] == [("acme", False, 64511)]


def test_render_then_read_gives_the_item_back():
    res = FrrBgp(FakeFrr(""))
    for item in (ACME, dict(ACME, tenant="b", neighbors=[{"peer": "192.0.2.3", "remote_as": "external"}], accept=[]),
                 dict(ACME, tenant="c", view=False, asn=64511)):
        want = res.defaults(res.normalize(item, "x"))
        assert res.parse(res.render_item(want)) == [want]


def test_strip_owned_keeps_what_npms_does_not_own():
    kept = strip_owned(fixture("edge_running.txt"))
    assert "hostname edge-ber" in kept and "ip prefix-list other-list seq 5 permit 10.0.0.0/8" in kept
    assert "route-map other-policy permit 10" in kept
    assert "view" not in kept and "npms-" not in kept and "Building configuration" not in kept
    unmanaged = "router bgp 64999\n neighbor 192.0.2.9 remote-as 1\nexit\n"
    assert "router bgp 64999" in strip_owned(unmanaged)


# --- the apply flow --------------------------------------------------------------------------
def test_check_mode_plans_and_reloads_nothing_then_apply_then_no_change():
    runner = FakeFrr(fixture("edge_running.txt"))
    want = [ACME, {"tenant": "globex", "asn": 65002, "router_id": "100.64.0.7"}]
    dry = base.run(FrrBgp(runner), want, "overridden", check_mode=True)
    assert dry.changed and runner.reloads() == []
    assert "router bgp 65002 view globex" in dry.diff["before"] and "neighbor 192.0.2.3" not in dry.diff["after"]
    assert "network 10.10.2.0/24" in dry.diff["after"]
    done = base.run(FrrBgp(runner), want, "overridden")
    assert done.changed and not done.warnings and len(runner.reloads()) == 1
    text = list(runner.files.values())[-1]
    assert "ip prefix-list other-list seq 5 permit 10.0.0.0/8" in text and "route-map other-policy permit 10" in text
    again = base.run(FrrBgp(runner), want, "overridden")
    assert not again.changed and len(runner.reloads()) == 1


def test_deleted_removes_only_what_npms_owns():
    runner = FakeFrr(fixture("edge_running.txt"))
    res = base.run(FrrBgp(runner), [{"tenant": "globex"}], "deleted")
    assert res.changed and res.commands[0] == "no router bgp 65002 view globex"
    assert [i["tenant"] for i in base.run(FrrBgp(runner), None, "gathered").gathered] == ["acme"]
    base.run(FrrBgp(runner), None, "deleted")
    assert base.run(FrrBgp(runner), None, "gathered").gathered == []
    assert "other-list" in runner.running and "other-policy" in runner.running and "hostname edge-ber" in runner.running


def test_a_failed_reload_restores_the_previous_configuration():
    runner = FakeFrr(fixture("edge_running.txt"), fail_reload=1)
    before = runner.running
    with pytest.raises(ResourceError) as err:
        base.run(FrrBgp(runner), [dict(ACME, advertise=["10.10.9.0/24"])], "replaced")
    assert err.value.rolled_back and "frr-reload failed, the previous configuration is back" in str(err.value)
    assert len(runner.reloads()) == 2
    assert FrrBgp(FakeFrr(before)).parse(before) == FrrBgp(runner).parse(runner.running)


# --- why an announcement is dropped ---------------------------------------------------------
@pytest.mark.parametrize("prefix,reason", [
    ("10.99.0.0/16", "outside the tenant's allowed prefixes (10.10.1.0/24, 2001:db8:1::/48)"),
    ("10.10.1.128/25", "longer than /24, the longest the tenant accepts within 10.10.1.0/24"),
    ("2001:db8:1:1::/64", "longer than /48"),
    ("10.10.0.0/16", "outside the tenant's allowed prefixes"),
])
def test_guard_reasons(prefix, reason):
    item = FrrBgp(FakeFrr("")).normalize(ACME, "x")
    assert reason in guard_reason(item, prefix)


# --- the controller's side: config from the inventory, the route table -------------------------
def test_edge_views_follow_the_inventory():
    items = {i["tenant"]: i for i in edge_bgp_config(LAB, "edge-ber")}
    assert sorted(items) == ["acme", "globex"]
    assert items["acme"]["neighbors"] == [{"peer": "cust-acme-ber", "remote_as": 64511, "description": "cust-acme-ber (unnumbered)"}]
    assert [n["peer"] for n in items["globex"]["neighbors"]] == ["192.0.2.3", "2001:db8:ffff:2::2"]
    assert items["acme"]["advertise"] == ["10.10.2.0/24", "10.10.3.0/24", "2001:db8:2::/48", "2001:db8:3::/48"]
    assert {"prefix": "10.10.1.0/24", "le": 24} in items["acme"]["accept"]
    cust = customer_bgp_config(LAB, "cust-globex-ber")[0]
    assert cust["view"] is False and cust["asn"] == 64514 and cust["advertise"] == ["10.10.1.0/24", "2001:db8:1::/48"]
    assert [n["peer"] for n in cust["neighbors"]] == ["192.0.2.2", "2001:db8:ffff:2::1"]
    # every rendered item is valid for the resource
    res = FrrBgp(FakeFrr(""))
    for item in list(items.values()) + [cust]:
        res.normalize(item, "x")


def test_route_table_keeps_what_each_tenant_may_announce_where():
    collected = {
        "edge-ber": {"acme": {"learned": [{"prefix": "10.10.1.0/24"}, {"prefix": "10.10.3.0/24"}]},
                     "globex": {"learned": [{"prefix": "10.10.1.0/24"}]}},
        "edge-bos": {"acme": {"learned": []}, "globex": {"learned": [{"prefix": "10.10.3.0/24"}]}},
    }
    table = route_table(LAB, collected)
    # 10.10.3.0/24 is acme's only behind edge-bos: announced at edge-ber it is dropped
    assert table["acme"]["edge-ber"] == ["10.10.1.0/24"]
    assert table["acme"]["edge-bos"] == []
    assert table["globex"]["edge-ber"] == ["10.10.1.0/24"] and table["globex"]["edge-bos"] == ["10.10.3.0/24"]
    # the edges advertise the other edges' learned prefixes; steering follows the table
    assert remote_prefixes(LAB, "acme", "edge-tok", table) == ["10.10.1.0/24"]
    paths = [{"tenant": "acme", "traffic_class": "be", "src": "edge-tok", "dst": d, "sid_list": ["fcbb:1000:7::d4"]}
             for d in ("edge-ber", "edge-bos")]
    steering = node_overlay(LAB, "edge-tok", paths, routes=table)["srv6_steering"]
    assert sorted({s["prefix"] for s in steering}) == ["10.10.1.0/24"]
    everything = node_overlay(LAB, "edge-tok", paths)["srv6_steering"]
    assert "10.10.3.0/24" in {s["prefix"] for s in everything}
    assert inventory_routes(LAB)["acme"]["edge-bos"] == ["10.10.3.0/24", "2001:db8:3::/48"]


def test_route_table_uses_the_inventory_where_nothing_could_be_read():
    # acme's view at edge-ber learned nothing (withdrawn): none; edge-bos has no acme view
    # yet (the first loop collects before it deploys): the inventory's prefixes stand in
    table = route_table(LAB, {"edge-ber": {"acme": {"learned": []}}, "edge-bos": {"globex": {"learned": []}}})
    assert table["acme"]["edge-ber"] == []
    assert table["acme"]["edge-bos"] == inventory_routes(LAB)["acme"]["edge-bos"]
    assert table["globex"]["edge-bos"] == []
    assert route_table(LAB, {}) == inventory_routes(LAB)
