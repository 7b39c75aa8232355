# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard on VPP through the engine, against the fake VPP: keys made on VPP and never
read, idempotence, check mode, replaced / overridden / deleted of owned interfaces only,
rollback, and the private key in no result."""

from __future__ import annotations

import base64
import json

import pytest

from npms.drivers import vpp as drv
from npms.drivers.vpp import NO_INDEX
from npms.resources import base, registry
from npms.resources.base import ResourceError

from vppfake import FakeVpp


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


PEER_A = {"public_key": key(1), "endpoint": "192.0.2.2:51820", "allowed_ips": ["10.200.0.0/31", "fd00:200::/64"], "persistent_keepalive": 25}
PEER_B = {"public_key": key(2), "endpoint": "[2001:db8:2::2]:51821", "allowed_ips": ["10.200.1.0/31"]}
PEER_C = {"public_key": key(3), "allowed_ips": ["10.200.2.0/31"]}
WG = [
    {"name": "wg0", "listen_port": 51820, "addresses": ["10.200.0.1/31", "fd00:200::1/64"], "peers": [PEER_A, PEER_C]},
    {"name": "wg1", "listen_port": 51821, "mtu": 1380, "addresses": ["10.200.1.1/31"], "peers": [PEER_B], "source_address": "2001:db8:2::1"},
]
WG_CHANGED = [
    {"name": "wg0", "listen_port": 51820, "mtu": 1400, "addresses": ["10.200.0.1/31"],
     "peers": [dict(PEER_A, endpoint="192.0.2.3:51820"), {"public_key": key(4), "allowed_ips": ["10.200.4.0/31"]}]},
    {"name": "wg2", "listen_port": 51822, "peers": [dict(PEER_B, public_key=key(5))]},
]


REGISTRY = (True, drv.REGISTRY_TABLES["wireguard"])


@pytest.fixture(params=[False, True], ids=["details-as-vpp-fills-them", "details-filled"])
def fake(request):
    """VPP's peer details leave out peer_index and persistent_keepalive; the driver must work
    with them left out, and with them filled in."""
    vpp = FakeVpp()
    vpp.fill_peer_details = request.param
    vpp.add_interface("host-wan", addresses=["192.0.2.1/24"])
    vpp.add_interface("host-wan6", addresses=["2001:db8:2::1/64"])
    yield vpp
    assert vpp.violations == []
    assert not [c for c in vpp.calls if c[0] == "wireguard_interface_dump" and c[1]["show_private_key"]]


@pytest.fixture()
def client(fake):
    papi = fake.client_factory()(server_address="/run/vpp/api.sock", bootstrapapi=True)
    papi.connect("test")
    return drv.VppClient(papi)


@pytest.fixture()
def foreign(fake):
    """A WireGuard interface and peer another tool made (untagged): never touched."""
    papi = fake.client_factory()()
    papi.connect("other-tool")
    reply = papi.api.wireguard_interface_create(generate_key=True, interface={
        "user_instance": 7, "sw_if_index": NO_INDEX, "private_key": bytes(32), "public_key": bytes(32), "port": 40000,
        "src_ip": "192.0.2.1"})
    papi.api.wireguard_peer_add(peer={"peer_index": NO_INDEX, "public_key": bytes([9]) * 32, "port": 40000, "persistent_keepalive": 0,
                                      "table_id": 0, "endpoint": "192.0.2.9", "sw_if_index": reply.sw_if_index, "flags": 0,
                                      "n_allowed_ips": 1, "allowed_ips": ["10.77.0.0/24"]})
    fake.calls.clear()
    return reply.sw_if_index


@pytest.fixture()
def wireguard(client):
    return registry.build("wireguard", "vpp", vpp=client)


def run(resource, config, state="merged", check_mode=False):
    result = base.run(resource, config, state, check_mode=check_mode)
    assert result.warnings == []
    return result


def expected(resource, config):
    return [resource.defaults(i) for i in base.normalize_all(resource, config)]


def assert_foreign_intact(fake, sw):
    assert sw in fake.wg and fake.interfaces[sw]["name"] == "wg7"
    assert [p for p in fake.peers.values() if p["sw_if_index"] == sw]


def test_merged_twice(fake, wireguard, foreign):
    first = run(wireguard, WG)
    assert first.changed and first.diff
    assert first.after == expected(wireguard, WG)
    fake.calls.clear()
    second = run(wireguard, WG)
    assert not second.changed and fake.mutating_calls() == []
    assert_foreign_intact(fake, foreign)


def test_keepalive_is_recorded_on_vpp(fake, wireguard):
    run(wireguard, WG)
    record = [p for p in fake.routes[REGISTRY] if p.startswith("fd6e:706d:7767:")]
    assert len(record) == 1 and record[0].endswith(":19/128")  # PEER_A's keepalive 25, in the last 16 bits
    assert run(wireguard, None, "gathered").gathered[0]["peers"][0]["persistent_keepalive"] == 25


def test_interfaces_as_vpp_has_them(fake, wireguard):
    run(wireguard, WG)
    sw0, sw1 = fake.index_of("wg0"), fake.index_of("wg1")
    assert fake.wg[sw0]["instance"] == 0 and fake.wg[sw0]["port"] == 51820
    assert fake.wg[sw0]["src"] == "192.0.2.1"  # the address VPP reaches the first peer's endpoint from
    assert fake.wg[sw1]["src"] == "2001:db8:2::1"  # given
    assert fake.interfaces[sw0]["tag"] == "npms" and fake.interfaces[sw0]["flags"] & 1
    assert fake.interfaces[sw0]["mtu"] == [1420] * 4 and fake.interfaces[sw1]["mtu"] == [1380] * 4
    assert sorted(fake.addresses[sw0]) == ["10.200.0.1/31", "fd00:200::1/64"]
    create = [c for c in fake.calls if c[0] == "wireguard_interface_create"]
    assert all(c[1]["generate_key"] and c[1]["interface"]["private_key"] == bytes(32) for c in create)
    peer_a = [p for p in fake.peers.values() if p["public_key"] == bytes([1]) * 32][0]
    assert peer_a == dict(peer_a, endpoint="192.0.2.2", port=51820, persistent_keepalive=25, sw_if_index=sw0,
                          allowed_ips=["10.200.0.0/31", "fd00:200::/64"])
    peer_c = [p for p in fake.peers.values() if p["public_key"] == bytes([3]) * 32][0]
    assert peer_c["endpoint"] == "0.0.0.0" and peer_c["port"] == 0


def test_facts_are_the_public_keys_and_no_private_key_anywhere(fake, wireguard, foreign):
    results = [run(wireguard, WG), run(wireguard, WG), run(wireguard, None, "gathered")]
    created = {w["instance"]: base64.b64encode(w["public_key"]).decode() for w in fake.wg.values()}
    assert results[2].facts == {"wg0": {"public_key": created[0]}, "wg1": {"public_key": created[1]}}
    assert results[0].facts == results[2].facts
    secrets = fake.private_keys()
    results += [run(wireguard, WG_CHANGED, "overridden"), run(wireguard, WG, "rendered"), run(wireguard, None, "deleted", check_mode=True)]
    created = {w["instance"]: base64.b64encode(w["public_key"]).decode() for w in fake.wg.values()}
    assert results[3].facts["wg2"]["public_key"] == created[2]
    text = json.dumps([r.to_dict() for r in results])
    secrets += fake.private_keys()
    assert len(secrets) == 12 and len(set(secrets)) == 8  # wg7 (foreign), wg0, wg1, then wg7, wg0, wg2
    for secret in secrets:
        assert secret not in text
    assert "private" not in text


def test_check_mode_changes_nothing(fake, wireguard, foreign):
    run(wireguard, WG)
    before = fake.snapshot()
    fake.calls.clear()
    for state, config in (("merged", WG_CHANGED), ("replaced", WG_CHANGED), ("overridden", WG_CHANGED), ("deleted", None)):
        result = run(wireguard, config, state, check_mode=True)
        assert result.changed and result.commands and result.diff
    assert fake.mutating_calls() == [] and fake.snapshot() == before


def test_replaced_overridden_deleted(fake, wireguard, foreign):
    run(wireguard, WG)
    keys = {w["instance"]: w["public_key"] for w in fake.wg.values()}
    replaced = run(wireguard, WG_CHANGED, "replaced")
    assert replaced.changed
    assert not run(wireguard, WG_CHANGED, "replaced").changed
    gathered = run(wireguard, None, "gathered").gathered
    assert [i["name"] for i in gathered] == ["wg0", "wg1", "wg2"]
    assert gathered[0] == expected(wireguard, WG_CHANGED)[0]
    # modified in place: same interface, same key; the changed peer was removed and added
    assert fake.wg[fake.index_of("wg0")]["public_key"] == keys[0]
    overridden = run(wireguard, WG_CHANGED, "overridden")
    assert overridden.changed and [c.split()[0] for c in overridden.commands] == ["wireguard_peer_remove", "wireguard_interface_delete"]
    assert run(wireguard, None, "gathered").gathered == expected(wireguard, WG_CHANGED)
    assert not run(wireguard, WG_CHANGED, "overridden").changed
    run(wireguard, [{"name": "wg2"}], "deleted")
    assert [i["name"] for i in run(wireguard, None, "gathered").gathered] == ["wg0"]
    run(wireguard, None, "deleted")
    assert run(wireguard, None, "gathered").gathered == []
    assert not run(wireguard, None, "deleted").changed
    assert_foreign_intact(fake, foreign)
    assert set(fake.routes.get(REGISTRY, {})) <= {"::/0", "fe80::/10"}  # no keepalive record left
    assert sorted(w["instance"] for w in fake.wg.values()) == [7]


def test_listen_port_change_recreates_with_a_new_key(fake, wireguard):
    run(wireguard, WG)
    old = fake.wg[fake.index_of("wg0")]["public_key"]
    result = run(wireguard, [dict(WG[0], listen_port=51900)])
    assert result.changed and "new key pair" in result.commands[0]
    sw = fake.index_of("wg0")
    assert fake.wg[sw]["port"] == 51900 and fake.wg[sw]["public_key"] != old
    assert result.facts["wg0"]["public_key"] == base64.b64encode(fake.wg[sw]["public_key"]).decode()
    assert not run(wireguard, [dict(WG[0], listen_port=51900)]).changed


@pytest.mark.parametrize("failing, when", [
    ("wireguard_peer_add", 1),
    ("wireguard_peer_add", 3),
    ("wireguard_peer_remove", 2),
    ("sw_interface_add_del_address", 1),
    ("sw_interface_set_mtu", 1),
    ("wireguard_interface_create", 1),
    ("sw_interface_set_flags", 1),
])
def test_failure_rolls_back(fake, wireguard, foreign, failing, when):
    """What the node has afterwards is what it had (peers put back get new indexes in VPP)."""
    run(wireguard, WG[:1])
    before = run(wireguard, None, "gathered")
    interfaces = dict(fake.interfaces)
    records = set(fake.routes.get(REGISTRY, {}))
    seen = []

    def nth(_fields):
        seen.append(1)
        return len(seen) == when
    fake.fail(failing, retval=-7, match=nth)
    with pytest.raises(ResourceError) as err:
        base.run(wireguard, WG_CHANGED, "overridden")
    assert err.value.rolled_back and f"{failing} failed: retval -7" in str(err.value)
    after = run(wireguard, None, "gathered")
    assert after.gathered == before.gathered and after.facts == before.facts
    assert fake.interfaces == interfaces
    assert set(fake.routes.get(REGISTRY, {})) == records
    assert_foreign_intact(fake, foreign)
    for secret in fake.private_keys():
        assert secret not in str(err.value)


def test_refused_before_touching_the_node(fake, wireguard):
    with pytest.raises(ResourceError, match=r"name: VPP names its WireGuard interfaces wg<instance> itself; use wg<N>"):
        base.run(wireguard, [{"name": "tun-acme", "listen_port": 1}])
    with pytest.raises(ResourceError, match="allowed_ips: VPP refuses a peer without allowed IPs"):
        base.run(wireguard, [{"name": "wg3", "listen_port": 1, "peers": [{"public_key": key(8)}]}])
    with pytest.raises(ResourceError, match="private_key: keys are generated on the node"):
        base.run(wireguard, [{"name": "wg3", "listen_port": 1, "private_key": key(8)}])
    with pytest.raises(ResourceError, match="cannot tell which local address VPP should send its WireGuard packets from"):
        base.run(wireguard, [{"name": "wg3", "listen_port": 1, "peers": [PEER_C]}])
    assert fake.mutating_calls() == []


def test_an_untagged_interface_of_the_same_name_is_not_adopted(fake, wireguard, foreign):
    with pytest.raises(ResourceError, match=r"wireguard_interface_create failed: retval -31"):
        base.run(wireguard, [{"name": "wg7", "listen_port": 40000, "source_address": "192.0.2.1"}])
    assert_foreign_intact(fake, foreign)
    assert run(wireguard, None, "gathered").gathered == []


def test_rollback_of_a_deleted_interface_brings_it_back_with_a_new_key(fake, wireguard):
    """VPP cannot be given a key: an interface deleted and put back by a rollback has a new
    key pair (its peers must learn it), everything else as before."""
    run(wireguard, WG)
    before = run(wireguard, None, "gathered")
    fake.fail("wireguard_interface_create", retval=-7)
    with pytest.raises(ResourceError) as err:
        base.run(wireguard, [WG_CHANGED[1]], "overridden")
    assert err.value.rolled_back
    after = run(wireguard, None, "gathered")
    assert after.gathered == before.gathered
    assert after.facts["wg0"] != before.facts["wg0"] and after.facts["wg1"] != before.facts["wg1"]
