# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRv6 resources on VPP, through the engine (npms.resources.base.run), against the fake VPP.

Each resource: merged twice (the second run changes nothing), check mode changes nothing,
replaced, overridden and deleted touch exactly what npms owns (objects another tool made
on the VPP survive), gathered, rendered (no VPP call), and a failing call (non-zero
retval) rolls everything back."""

from __future__ import annotations

import json

import pytest

from npms.drivers import vpp as drv
from npms.drivers.vpp import NO_INDEX, fib_path, ip_route, ip_table, sid_list
from npms.resources import base, registry
from npms.resources.base import ResourceError

from vppfake import FakeVpp

FOREIGN_SID = "fc00:99::1"
FOREIGN_BSID = "fc00:99::100"
FOREIGN_ROUTE = "fc00:99::/48"


@pytest.fixture()
def fake():
    vpp = FakeVpp()
    vpp.add_interface("GigabitEthernet0/8/0", addresses=["2001:db8:1::1/64"])
    vpp.add_interface("host-core2", addresses=["2001:db8:2::1/64"])
    vpp.add_interface("host-cust-acme", addresses=["10.1.0.1/24", "fd00:1::1/64"])
    vpp.add_interface("host-cust-bolt", addresses=["10.2.0.1/24"])
    vpp.add_interface("host-other", addresses=["10.3.0.1/24"])
    yield vpp
    assert vpp.violations == []


@pytest.fixture()
def client(fake):
    papi = fake.client_factory()(server_address="/run/vpp/api.sock", bootstrapapi=True)
    papi.connect("test")
    return drv.VppClient(papi)


@pytest.fixture()
def foreign(fake):
    """What another tool made on the VPP: npms must never gather, change or delete it."""
    papi = fake.client_factory()()
    papi.connect("other-tool")
    api = papi.api
    assert api.sr_localsid_add_del(is_del=False, localsid=FOREIGN_SID, end_psp=False, behavior=1, sw_if_index=NO_INDEX,
                                   vlan_index=0, fib_table=0, nh_addr="::").retval == 0
    assert api.sr_policy_add_v2(bsid_addr=FOREIGN_BSID, weight=1, is_encap=True, type=0, fib_table=0,
                                sids=sid_list(["fc00:98::1"]), encap_src="::").retval == 0
    assert api.ip_route_add_del(is_add=True, is_multipath=False,
                                route=ip_route(FOREIGN_ROUTE, [fib_path(fake.index_of("host-core2"), "2001:db8:2::2")])).retval == 0
    assert api.sr_steering_add_del(is_del=False, bsid_addr=FOREIGN_BSID, sr_policy_index=NO_INDEX, table_id=0, prefix="10.99.0.0/16",
                                   sw_if_index=NO_INDEX, traffic_type=4).retval == 0
    table = api.classify_add_del_table(is_add=True, del_chain=False, mask_len=16, mask=b"\xff" * 16).new_table_index
    assert api.input_acl_set_interface(sw_if_index=fake.index_of("host-other"), ip4_table_index=table, ip6_table_index=NO_INDEX,
                                       l2_table_index=NO_INDEX, is_add=True).retval == 0
    assert api.ip_table_add_del(is_add=True, table=ip_table(300, False, "vrf-of-someone")).retval == 0
    fake.calls.clear()
    return {"localsid": FOREIGN_SID, "policy": FOREIGN_BSID, "route": FOREIGN_ROUTE, "classify": table}


def assert_foreign_intact(fake, foreign):
    assert FOREIGN_SID in fake.localsids
    assert FOREIGN_BSID in fake.policies
    assert FOREIGN_ROUTE in fake.routes[(True, 0)]
    assert (0, "10.99.0.0/16", 4) in fake.steering
    assert fake.inacl[(fake.index_of("host-other"), 4)] == foreign["classify"]
    assert (False, 300) in fake.tables


def run(resource, config, state="merged", check_mode=False):
    result = base.run(resource, config, state, check_mode=check_mode)
    assert result.warnings == []
    return result


# --- the configurations of each resource: initial, changed -------------------------------------------
LOCALSIDS = [
    {"sid": "fc00:1::1", "behavior": "End"},
    {"sid": "fc00:1::2", "behavior": "End.X", "interface": "GigabitEthernet0/8/0", "nexthop": "2001:db8:1::2"},
    {"sid": "fc00:1::3", "behavior": "End.DX4", "interface": "host-cust-acme", "nexthop": "10.1.0.2"},
    {"sid": "fc00:1::4", "behavior": "End.DX6", "interface": "host-cust-acme", "nexthop": "fd00:1::2"},
    {"sid": "fc00:1::5", "behavior": "End.DT6", "table": 0},
    {"sid": "fc00:1::6", "behavior": "End.DT4", "table": 0},
]
LOCALSIDS_CHANGED = [
    {"sid": "fc00:1::1", "behavior": "End"},
    {"sid": "fc00:1::2", "behavior": "End.X", "interface": "host-core2", "nexthop": "2001:db8:2::2"},
    {"sid": "fc00:1::7", "behavior": "End"},
]
ROUTES = [
    {"prefix": "fc00:2::/48", "interface": "GigabitEthernet0/8/0", "via": "2001:db8:1::2"},
    {"prefix": "fc00:3::/48", "interface": "host-core2"},
]
ROUTES_CHANGED = [
    {"prefix": "fc00:2::/48", "interface": "host-core2", "via": "2001:db8:2::2"},
    {"prefix": "fc00:4::/48", "interface": "host-core2", "via": "2001:db8:2::2"},
]
POLICIES = [
    {"bsid": "fc00:1::100", "segment_lists": [{"segments": ["fc00:2::1", "fc00:3::1"], "weight": 2}, {"segments": ["fc00:4::1"]}],
     "encap_source": "2001:db8:1::1"},
    {"bsid": "fc00:1::101", "segment_lists": [{"segments": ["fc00:3::1"]}]},
]
POLICIES_CHANGED = [
    {"bsid": "fc00:1::100", "segment_lists": [{"segments": ["fc00:2::1", "fc00:3::1"], "weight": 5}, {"segments": ["fc00:5::1"]}],
     "encap_source": "2001:db8:1::1"},
    {"bsid": "fc00:1::102", "segment_lists": [{"segments": ["fc00:2::1"]}]},
]
CASES = {
    "srv6_localsid": (LOCALSIDS, LOCALSIDS_CHANGED),
    "srv6_route": (ROUTES, ROUTES_CHANGED),
    "srv6_policy": (POLICIES, POLICIES_CHANGED),
}


def canon(resource, items):
    return [resource.defaults(i) for i in base.normalize_all(resource, items)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_merged_twice_then_nothing_changes(fake, client, foreign, name):
    resource = registry.build(name, "vpp", vpp=client)
    config = CASES[name][0]
    first = run(resource, config)
    assert first.changed and first.commands and first.diff
    assert sorted(first.after, key=repr) == sorted(canon(resource, config), key=repr)
    fake.calls.clear()
    second = run(resource, config)
    assert not second.changed and second.commands == []
    assert fake.mutating_calls() == []
    assert_foreign_intact(fake, foreign)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_mode_changes_nothing(fake, client, foreign, name):
    resource = registry.build(name, "vpp", vpp=client)
    run(resource, CASES[name][0])
    before = fake.snapshot()
    fake.calls.clear()
    for state, config in (("merged", CASES[name][1]), ("replaced", CASES[name][1]), ("overridden", CASES[name][1]), ("deleted", None)):
        result = run(resource, config, state, check_mode=True)
        assert result.changed and result.commands and result.diff
    assert fake.mutating_calls() == []
    assert fake.snapshot() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_replaced_overridden_deleted(fake, client, foreign, name):
    resource = registry.build(name, "vpp", vpp=client)
    initial, changed = CASES[name]
    run(resource, initial)
    replaced = run(resource, changed, "replaced")
    assert replaced.changed
    assert not run(resource, changed, "replaced").changed
    keys = {base.item_key(i, resource.key_fields) for i in canon(resource, changed)}
    gathered = run(resource, None, "gathered").gathered
    # replaced leaves the items it was not given alone
    assert {base.item_key(i, resource.key_fields) for i in gathered} >= keys
    assert len(gathered) > len(keys)
    overridden = run(resource, changed, "overridden")
    assert overridden.changed
    assert sorted(run(resource, None, "gathered").gathered, key=repr) == sorted(canon(resource, changed), key=repr)
    assert not run(resource, changed, "overridden").changed
    one = [canon(resource, changed)[0]]
    deleted_one = run(resource, [{k: one[0][k] for k in resource.key_fields}], "deleted")
    assert deleted_one.changed and len(run(resource, None, "gathered").gathered) == len(changed) - 1
    deleted = run(resource, None, "deleted")
    assert deleted.changed and run(resource, None, "gathered").gathered == []
    assert not run(resource, None, "deleted").changed
    assert_foreign_intact(fake, foreign)
    assert fake.routes.get((True, drv.REGISTRY_TABLES[name]), {}).keys() <= {"::/0", "fe80::/10"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gathered_shows_only_what_npms_made(fake, client, foreign, name):
    resource = registry.build(name, "vpp", vpp=client)
    assert run(resource, None, "gathered").gathered == []
    run(resource, CASES[name][0])
    gathered = run(resource, None, "gathered").gathered
    assert sorted(gathered, key=repr) == sorted(canon(resource, CASES[name][0]), key=repr)
    assert FOREIGN_SID not in json.dumps(gathered) and FOREIGN_BSID not in json.dumps(gathered) and FOREIGN_ROUTE not in json.dumps(gathered)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_talks_to_nobody(fake, client, name):
    resource = registry.build(name, "vpp", vpp=client)
    fake.calls.clear()
    result = run(resource, CASES[name][0], "rendered")
    assert fake.calls == []
    assert result.rendered and all(isinstance(line, str) for line in result.rendered)
    assert any(line.startswith(("sr_localsid_add_del", "ip_route_add_del", "sr_policy_add_v2")) for line in result.rendered)


@pytest.mark.parametrize("name, failing", [
    ("srv6_localsid", "sr_localsid_add_del"),
    ("srv6_route", "ip_route_add_del"),
    ("srv6_policy", "sr_policy_mod_v2"),
])
def test_a_failing_call_rolls_everything_back(fake, client, foreign, name, failing):
    resource = registry.build(name, "vpp", vpp=client)
    run(resource, CASES[name][0])
    # (an undone policy deletion is the same policy with new VPP indexes)
    before = fake.snapshot(indexes=False)
    calls = []

    def third(_fields):
        calls.append(1)
        return len(calls) == 3
    fake.fail(failing, retval=-7, match=third)
    with pytest.raises(ResourceError) as err:
        base.run(resource, CASES[name][1], "overridden")
    assert err.value.rolled_back
    assert f"{failing} failed: retval -7 (invalid value)" in str(err.value)
    assert fake.snapshot(indexes=False) == before
    assert not run(resource, CASES[name][0], "overridden").changed


def test_localsid_behaviours_as_vpp_has_them(fake, client):
    resource = registry.build("srv6_localsid", "vpp", vpp=client)
    run(resource, LOCALSIDS)
    ls = fake.localsids
    assert ls["fc00:1::1"]["behavior"] == 1
    assert ls["fc00:1::2"] == dict(ls["fc00:1::2"], behavior=2, sw_if_index=fake.index_of("GigabitEthernet0/8/0"), nh="2001:db8:1::2")
    assert ls["fc00:1::3"]["behavior"] == 7 and ls["fc00:1::3"]["nh"] == "10.1.0.2"
    assert ls["fc00:1::4"]["behavior"] == 6
    assert ls["fc00:1::5"]["behavior"] == 8 and ls["fc00:1::5"]["sw_if_index"] == 0
    assert ls["fc00:1::6"]["behavior"] == 9


def test_localsid_errors_before_touching_the_node(fake, client):
    resource = registry.build("srv6_localsid", "vpp", vpp=client)
    with pytest.raises(ResourceError, match=r"config\[0\]: interface: 'bad name' is not a VPP interface name"):
        base.run(resource, [{"sid": "fc00:1::9", "behavior": "End.X", "interface": "bad name", "nexthop": "fe80::1"}])
    with pytest.raises(ResourceError, match="no interface named 'host-nope'"):
        base.run(resource, [{"sid": "fc00:1::9", "behavior": "End.X", "interface": "host-nope", "nexthop": "fe80::1"}])
    assert fake.mutating_calls() == []


def test_duplicate_of_a_foreign_sid_is_reported_not_adopted(fake, client, foreign):
    resource = registry.build("srv6_localsid", "vpp", vpp=client)
    with pytest.raises(ResourceError, match=r"sr_localsid_add_del failed: retval -1 \(a local SID with this address already exists\)"):
        base.run(resource, [{"sid": FOREIGN_SID, "behavior": "End"}])
    assert run(resource, None, "gathered").gathered == []


def test_route_vpp_own_entries_are_refused(client):
    resource = registry.build("srv6_route", "vpp", vpp=client)
    with pytest.raises(ResourceError, match="VPP keeps its own entry for ::/0"):
        base.run(resource, [{"prefix": "::/0", "interface": "host-core2"}])


def test_route_paths_as_vpp_has_them(fake, client):
    resource = registry.build("srv6_route", "vpp", vpp=client)
    run(resource, ROUTES)
    route = fake.routes[(True, 0)]["fc00:2::/48"]["api"]
    assert route == [{"sw_if_index": fake.index_of("GigabitEthernet0/8/0"), "table_id": 0, "type": 0, "proto": 1, "nh": "2001:db8:1::2", "weight": 1}]
    assert fake.routes[(True, drv.REGISTRY_TABLES["srv6_route"])]["fc00:2::/48"]["api"][0]["type"] == 2  # drop: never forwards


def test_policy_segment_lists_as_vpp_has_them(fake, client):
    resource = registry.build("srv6_policy", "vpp", vpp=client)
    run(resource, POLICIES)
    policy = fake.policies["fc00:1::100"]
    assert policy["encap_src"] == "2001:db8:1::1" and policy["is_encap"] and policy["type"] == 0
    assert sorted((sl["segments"], sl["weight"]) for sl in policy["sls"]) == [(["fc00:2::1", "fc00:3::1"], 2), (["fc00:4::1"], 1)]
    sl_before = {tuple(sl["segments"]): sl["sl_index"] for sl in policy["sls"]}
    run(resource, POLICIES_CHANGED, "replaced")
    policy = fake.policies["fc00:1::100"]
    assert sorted((sl["segments"], sl["weight"]) for sl in policy["sls"]) == [(["fc00:2::1", "fc00:3::1"], 5), (["fc00:5::1"], 1)]
    # modified in place: the kept list is the same VPP segment list, re-weighted
    assert {tuple(sl["segments"]): sl["sl_index"] for sl in policy["sls"]}[("fc00:2::1", "fc00:3::1")] == sl_before[("fc00:2::1", "fc00:3::1")]
    assert "sr_policy_del" not in fake.names_called()


def test_policy_encap_source_change_is_refused_before_anything_changes(fake, client):
    resource = registry.build("srv6_policy", "vpp", vpp=client)
    run(resource, POLICIES)
    fake.calls.clear()
    changed = [dict(POLICIES[0], encap_source="2001:db8:1::99")]
    with pytest.raises(ResourceError, match="encap_source cannot be changed on an existing VPP policy"):
        base.run(resource, changed, "merged")
    assert fake.mutating_calls() == []


def test_policy_in_use_by_steering_is_not_deleted(fake, client, foreign):
    resource = registry.build("srv6_policy", "vpp", vpp=client)
    run(resource, POLICIES)
    steering = registry.build("srv6_steering", "vpp", vpp=client)
    run(steering, [dict(STEER_GOLD, bsid="fc00:1::101")])
    fake.calls.clear()
    with pytest.raises(ResourceError, match=r"bsid fc00:1::101: SR steering still sends traffic into this policy"):
        base.run(resource, None, "deleted")
    assert fake.mutating_calls() == []


# --- steering -----------------------------------------------------------------------------------
STEER_GOLD = {"tenant": "acme", "tenant_id": 1, "traffic_class": "gold", "class_id": 1, "dscp": [46, 34],
              "ingress_interfaces": ["host-cust-acme"], "prefix": "10.9.0.0/16", "bsid": "fc00:1::100"}
STEER_BE = {"tenant": "acme", "tenant_id": 1, "traffic_class": "best-effort", "class_id": 0, "dscp": [],
            "ingress_interfaces": ["host-cust-acme"], "prefix": "10.9.0.0/16", "bsid": "fc00:1::101"}
STEER_GOLD6 = dict(STEER_GOLD, prefix="fd00:9::/48")
STEER_BE6 = dict(STEER_BE, prefix="fd00:9::/48")
STEER_BOLT = {"tenant": "bolt", "tenant_id": 2, "traffic_class": "gold", "class_id": 1, "dscp": [46],
              "ingress_interfaces": ["host-cust-bolt"], "prefix": "10.9.0.0/16", "bsid": "fc00:1::101"}
STEERING = [STEER_GOLD, STEER_BE, STEER_GOLD6, STEER_BE6, STEER_BOLT]


@pytest.fixture()
def policies(client):
    run(registry.build("srv6_policy", "vpp", vpp=client), POLICIES)


@pytest.fixture()
def steering(client, policies):
    return registry.build("srv6_steering", "vpp", vpp=client)


def test_steering_two_dscp_two_segment_lists(fake, steering, foreign):
    first = run(steering, STEERING)
    assert first.changed
    assert not run(steering, STEERING).changed
    # acme: EF and AF41 into fc00:1::100, everything else (default class) into fc00:1::101, v4 and v6
    for dst in ("10.9.1.1", "fd00:9::1"):
        assert fake.forward("host-cust-acme", dst, 46)[:2] == ("sr", "fc00:1::100")
        assert fake.forward("host-cust-acme", dst, 34)[:2] == ("sr", "fc00:1::100")
        assert fake.forward("host-cust-acme", dst, 0)[:2] == ("sr", "fc00:1::101")
        assert fake.forward("host-cust-acme", dst, 10)[:2] == ("sr", "fc00:1::101")
    # traffic of a class to other destinations is looked up in the tenant's own table
    assert fake.forward("host-cust-acme", "10.2.0.7", 46) == ("via", "host-cust-bolt", 0)
    # bolt: only EF is steered; its other traffic is not classified
    assert fake.forward("host-cust-bolt", "10.9.1.1", 46)[:2] == ("sr", "fc00:1::101")
    assert fake.forward("host-cust-bolt", "10.9.1.1", 0) == ("drop", 0)
    # the class tables are npms's, named
    assert fake.tables[(False, 0x0102)] == "npms:acme/gold" and fake.tables[(True, 0x0101)] == "npms:acme/best-effort"
    assert_foreign_intact(fake, foreign)


def test_steering_classifier_is_input_acl_from_the_ip_header(fake, steering):
    run(steering, [STEER_GOLD, STEER_BE])
    sw = fake.index_of("host-cust-acme")
    head4 = fake.classify[fake.inacl[(sw, 4)]]
    assert head4["current_data_flag"] == 1 and head4["mask"] == bytes([0, 0xFC]) + bytes(14)
    assert sorted(s["metadata"] for s in head4["sessions"].values()) == [0x0102, 0x0102]
    assert all(s["action"] == 1 for s in head4["sessions"].values())
    catch_all = fake.classify[head4["next_table_index"]]
    assert catch_all["mask"] == bytes(16) and [s["metadata"] for s in catch_all["sessions"].values()] == [0x0101]
    head6 = fake.classify[fake.inacl[(sw, 6)]]
    assert head6["mask"] == bytes([0x0F, 0xC0]) + bytes(14) and all(s["action"] == 2 for s in head6["sessions"].values())


def test_steering_gathered_is_the_normalized_items(steering):
    run(steering, STEERING)
    gathered = run(steering, None, "gathered").gathered
    assert sorted(gathered, key=repr) == sorted(canon(steering, STEERING), key=repr)


def test_steering_change_of_dscp_rebuilds_the_classifier(fake, steering):
    run(steering, STEERING)
    old_tables = set(fake.classify)
    moved = [dict(i, dscp=[10]) if i["traffic_class"] == "gold" and i["tenant"] == "acme" else i for i in STEERING]
    result = run(steering, moved, "replaced")
    assert result.changed
    assert not run(steering, moved, "replaced").changed
    assert fake.forward("host-cust-acme", "10.9.1.1", 10)[:2] == ("sr", "fc00:1::100")
    assert fake.forward("host-cust-acme", "10.9.1.1", 46)[:2] == ("sr", "fc00:1::101")
    acme_old = old_tables - set(fake.classify)
    assert acme_old, "the replaced classifier tables are deleted"
    assert fake.forward("host-cust-bolt", "10.9.1.1", 46)[:2] == ("sr", "fc00:1::101")


def test_steering_check_mode_and_rendered(fake, steering):
    run(steering, STEERING[:2])
    before = fake.snapshot()
    fake.calls.clear()
    result = run(steering, STEERING, "overridden", check_mode=True)
    assert result.changed and result.diff and fake.mutating_calls() == [] and fake.snapshot() == before
    result = run(steering, None, "deleted", check_mode=True)
    assert result.changed and fake.mutating_calls() == [] and fake.snapshot() == before
    fake.calls.clear()
    rendered = run(steering, STEERING, "rendered").rendered
    assert fake.calls == [] and any("sr_steering_add_del is_del=0" in line for line in rendered)


def test_steering_overridden_and_deleted_keep_foreign_objects(fake, steering, foreign):
    run(steering, STEERING)
    result = run(steering, [STEER_BOLT], "overridden")
    assert result.changed
    assert sorted(run(steering, None, "gathered").gathered, key=repr) == canon(steering, [STEER_BOLT])
    sw = fake.index_of("host-cust-acme")
    assert (sw, 4) not in fake.inacl and (sw, 6) not in fake.inacl
    assert (False, 0x0102) not in fake.tables and (True, 0x0101) not in fake.tables
    run(steering, None, "deleted")
    assert run(steering, None, "gathered").gathered == []
    assert not [t for t, name in fake.tables.items() if name.startswith("npms:")]
    assert list(fake.classify) == [foreign["classify"]]
    assert_foreign_intact(fake, foreign)


@pytest.mark.parametrize("failing, when", [
    ("input_acl_set_interface", 2),
    ("sr_steering_add_del", 3),
    ("classify_add_del_session", 3),
    ("ip_table_add_del", 2),
])
def test_steering_failure_rolls_back_everything(fake, steering, foreign, failing, when):
    run(steering, [STEER_GOLD, STEER_BOLT])
    before = fake.snapshot()
    seen = []

    def nth(fields):
        seen.append(fields)
        return len(seen) == when
    fake.fail(failing, retval=-7, match=nth)
    with pytest.raises(ResourceError) as err:
        base.run(steering, STEERING, "overridden")
    assert err.value.rolled_back and f"{failing} failed: retval -7" in str(err.value)
    assert "rolled back" in str(err.value)
    assert fake.snapshot() == before
    assert not run(steering, [STEER_GOLD, STEER_BOLT], "overridden").changed


def test_steering_refuses_what_vpp_cannot_hold(fake, steering, foreign):
    with pytest.raises(ResourceError, match="all classes of a tenant share one classifier per interface"):
        base.run(steering, [STEER_GOLD, dict(STEER_BE, ingress_interfaces=["host-cust-acme", "host-core2"])])
    with pytest.raises(ResourceError, match="interface host-cust-acme is given to tenants acme and bolt"):
        base.run(steering, [STEER_GOLD, dict(STEER_BOLT, ingress_interfaces=["host-cust-acme"])])
    with pytest.raises(ResourceError, match="on VPP a tenant has one default class"):
        base.run(steering, [STEER_BE, dict(STEER_BE, traffic_class="bronze", class_id=5)])
    with pytest.raises(ResourceError, match="interface host-other already has an input ACL classifier table that npms does not own"):
        base.run(steering, [dict(STEER_BOLT, ingress_interfaces=["host-other"])])
    with pytest.raises(ResourceError, match="table 300 exists on this VPP and is not npms's"):
        base.run(steering, [dict(STEER_GOLD, class_id=43)])
    with pytest.raises(ResourceError, match="at most 63 characters"):
        base.run(steering, [dict(STEER_GOLD, tenant="t" * 40, traffic_class="c" * 30)])
    assert fake.mutating_calls() == []
    run(steering, [STEER_GOLD])
    fake.calls.clear()
    with pytest.raises(ResourceError, match="table 258 is class acme/gold on this VPP"):
        base.run(steering, [dict(STEER_GOLD, traffic_class="premium")], "overridden")
    assert fake.mutating_calls() == []


def test_steering_follows_the_tenant_table(fake, client, policies):
    fake.add_interface("host-cust-vrf", addresses=[], table4=42, table6=42)
    papi = fake.client_factory()()
    papi.connect("setup")
    papi.api.ip_table_add_del(is_add=True, table=ip_table(42, False, "tenant-vrf"))
    papi.api.ip_table_add_del(is_add=True, table=ip_table(42, True, "tenant-vrf"))
    steering = registry.build("srv6_steering", "vpp", vpp=client)
    run(steering, [dict(STEER_GOLD, ingress_interfaces=["host-cust-vrf"])])
    default = fake.routes[(False, 0x0102)]["0.0.0.0/0"]["api"][0]
    assert default["sw_if_index"] == NO_INDEX and default["table_id"] == 42


def test_policy_default_encap_source_is_vpps_and_stays_idempotent(fake, client):
    """A policy made without encap_source takes the source set with sr_set_encap_source
    (VPP stores it in the policy); replaced / overridden must not see a change in that."""
    fake.encaps_source = "2001:db8:ffff::1"
    resource = registry.build("srv6_policy", "vpp", vpp=client)
    run(resource, POLICIES, "overridden")
    assert fake.policies["fc00:1::101"]["encap_src"] == "2001:db8:ffff::1"
    for state in ("merged", "replaced", "overridden"):
        assert not run(resource, POLICIES, state).changed, state
    changed = [dict(POLICIES[1], segment_lists=[{"segments": ["fc00:3::1"]}, {"segments": ["fc00:6::1"], "weight": 3}])]
    assert run(resource, changed, "replaced").changed
    assert not run(resource, changed, "replaced").changed
