# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource engine (npms.resources.base) on an in-memory resource: every state verb,
check mode, diff, all-or-nothing apply, secrets, and input checks before any change."""

from __future__ import annotations

import base64
import json

import pytest

from npms.resources import base
from npms.resources.srv6 import Srv6LocalSid, Srv6Steering
from npms.resources.wireguard import Wireguard


class MemLocalSids(Srv6LocalSid):
    """Local SIDs kept in a dict; ``fail_on`` makes applying that SID fail."""

    dataplane = "memory"

    def __init__(self, items=None, fail_on=None):
        super().__init__(None)
        self.items = {i["sid"]: dict(i) for i in (items or [])}
        self.fail_on = fail_on
        self.applied = []

    def gather(self):
        return [dict(self.items[k]) for k in sorted(self.items)]

    def render_change(self, change):
        return [f"{change.op} {change.key[0]}"]

    def apply_change(self, change):
        if change.key[0] == self.fail_on and change.op != base.DELETE:
            raise RuntimeError("device said no")
        self.applied.append((change.op, change.key[0]))
        if change.op == base.DELETE:
            del self.items[change.key[0]]
        else:
            self.items[change.key[0]] = dict(change.after)


END = {"sid": "fc00::1", "behavior": "End"}
DX4 = {"sid": "fc00::d4", "behavior": "End.DX4", "nexthop": "192.0.2.1", "interface": "eth0"}


def test_merged_adds_then_second_run_changes_nothing():
    res = MemLocalSids()
    first = base.run(res, [END, DX4], "merged")
    assert first.changed and first.commands == ["add fc00::1", "add fc00::d4"]
    assert res.gather() == [END, DX4]
    second = base.run(res, [END, DX4], "merged")
    assert not second.changed and second.commands == [] and not res.applied[2:]


def test_check_mode_plans_but_changes_nothing_and_shows_the_diff():
    res = MemLocalSids([END])
    out = base.run(res, [DX4], "merged", check_mode=True)
    assert out.changed and out.commands == ["add fc00::d4"]
    assert res.gather() == [END] and res.applied == []
    assert "fc00::d4" in out.diff["after"] and "fc00::d4" not in out.diff["before"]


def test_sids_compare_after_normalizing():
    res = MemLocalSids([END])
    assert not base.run(res, [{"sid": "FC00:0:0::1", "behavior": "End"}], "merged").changed


def test_replaced_leaves_other_items_and_overridden_deletes_them():
    res = MemLocalSids([END, DX4])
    new_dx4 = dict(DX4, nexthop="192.0.2.3")
    out = base.run(res, [new_dx4], "replaced")
    assert out.commands == ["modify fc00::d4"] and res.gather() == [END, new_dx4]
    out = base.run(res, [new_dx4], "overridden")
    assert out.commands == ["delete fc00::1"] and res.gather() == [new_dx4]


def test_deleted_by_key_and_deleted_all():
    res = MemLocalSids([END, DX4])
    assert base.run(res, [{"sid": "fc00::1"}], "deleted").commands == ["delete fc00::1"]
    assert base.run(res, [{"sid": "fc00::1"}], "deleted").changed is False
    assert base.run(res, [], "deleted").commands == ["delete fc00::d4"] and res.gather() == []


def test_merged_with_a_new_behaviour_replaces_the_behaviours_fields():
    res = MemLocalSids([DX4])
    base.run(res, [{"sid": "fc00::d4", "behavior": "End"}], "merged")
    assert res.gather() == [{"sid": "fc00::d4", "behavior": "End"}]


def test_a_failed_change_undoes_the_earlier_ones():
    res = MemLocalSids([END], fail_on="fc00::d4")
    with pytest.raises(base.ResourceError) as err:
        base.run(res, [{"sid": "fc00::2"}, DX4], "overridden")
    assert err.value.rolled_back
    assert "add sid=fc00::d4 failed: device said no" in str(err.value)
    assert res.gather() == [END]  # fc00::1 deleted then restored, fc00::2 added then removed


def test_bad_item_is_refused_before_the_node_is_touched():
    res = MemLocalSids([END])
    with pytest.raises(base.ResourceError) as err:
        base.run(res, [DX4, {"sid": "fc00::9", "behavior": "End.DX4", "nexthop": "2001:db8::1", "interface": "eth0"}], "merged")
    assert "config[1] (sid fc00::9): nexthop" in str(err.value) and "IPv4 is needed" in str(err.value)
    assert res.applied == []


@pytest.mark.parametrize("item, words", [
    ({"behavior": "End"}, "sid is required"),
    ({"sid": "10.0.0.1"}, "sid: '10.0.0.1' is IPv4"),
    ({"sid": "fc00::1", "behavior": "End.Y"}, "behavior: 'End.Y' is not one of"),
    ({"sid": "fc00::1", "behavior": "End.X", "interface": "eth0"}, "nexthop is required for End.X"),
    ({"sid": "fc00::1", "behavior": "End.DX4", "nexthop": "192.0.2.1"}, "interface is required for End.DX4"),
    ({"sid": "fc00::1", "behavior": "End.DT6"}, "table is required for End.DT6"),
    ({"sid": "fc00::1", "behavior": "End", "table": 5}, "End takes no table"),
    ({"sid": "fc00::1", "colour": "red"}, "unknown field(s) colour"),
    ({"sid": "fc00::1", "behavior": "End.X", "nexthop": "fe80::1", "interface": "this-name-is-too-long"}, "is not an interface name"),
])
def test_localsid_input_errors_name_the_field(item, words):
    with pytest.raises(base.ResourceError) as err:
        base.run(MemLocalSids(), [item], "merged")
    assert words in str(err.value) and "config[0]" in str(err.value)


def test_the_same_key_twice_is_refused():
    with pytest.raises(base.ResourceError, match=r"config\[1\]: sid=fc00::1 is already given by config\[0\]"):
        base.run(MemLocalSids(), [END, {"sid": "fc00:0::1"}], "merged")


def test_gathered_rendered_and_unknown_state():
    res = MemLocalSids([END])
    assert base.run(res, None, "gathered").gathered == [END]
    assert base.run(res, [DX4], "rendered").rendered == ["add fc00::d4"]
    with pytest.raises(base.ResourceError, match="unknown state 'present'"):
        base.run(res, [END], "present")
    with pytest.raises(base.ResourceError, match="state parsed is not supported"):
        base.run(res, None, "parsed", running_config="x")


def test_steering_classes_must_be_consistent():
    item = {"tenant": "acme", "tenant_id": 1, "traffic_class": "ef", "class_id": 3, "dscp": [46],
            "ingress_interfaces": ["c1"], "prefix": "10.0.0.0/24", "bsid": "fc00::b1"}
    steer = Srv6Steering(None)
    with pytest.raises(base.ResourceError, match="dscp 46 is claimed by classes ef and voice"):
        base.normalize_all(steer, [item, dict(item, traffic_class="voice", class_id=4, prefix="10.0.1.0/24")])
    with pytest.raises(base.ResourceError, match="class ef of tenant acme has .*one value per class"):
        base.normalize_all(steer, [item, dict(item, prefix="10.0.1.0/24", dscp=[46, 40])])
    with pytest.raises(base.ResourceError, match="tenant_id: 1 is already tenant acme's"):
        base.normalize_all(steer, [item, dict(item, tenant="globex")])
    with pytest.raises(base.ResourceError, match="prefix: '10.0.0.1/24' is not a network prefix"):
        base.normalize_all(steer, [dict(item, prefix="10.0.0.1/24")])


class MemWireguard(Wireguard):
    """Keeps a private key per interface, as a node would; it must never come out."""

    secret_fields = ("private_key",)

    def __init__(self):
        super().__init__(None)
        self.items = {}

    def gather(self):
        return [dict(v) for _k, v in sorted(self.items.items())]

    def render_change(self, change):
        return [f"{change.op} {change.key[0]}"]

    def apply_change(self, change):
        if change.op == base.DELETE:
            del self.items[change.key[0]]
        else:
            self.items[change.key[0]] = dict(change.after, private_key="SECRET-KEY-MATERIAL")

    def defaults(self, item):
        item = super().defaults(item)
        existing = self.items.get(item["name"])
        if existing:
            item["private_key"] = existing["private_key"]
        return item


PEER_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


def test_wireguard_peers_merge_by_public_key_and_secrets_never_come_out():
    res = MemWireguard()
    wg = {"name": "wg0", "listen_port": 51820, "peers": [{"public_key": PEER_KEY, "endpoint": "192.0.2.1:51820"}]}
    out = base.run(res, [wg], "merged")
    other = OTHER_KEY
    out2 = base.run(res, [{"name": "wg0", "peers": [{"public_key": other}]}], "merged")
    peers = res.items["wg0"]["peers"]
    assert [p["public_key"] for p in peers] == sorted([PEER_KEY, other])
    for result in (out, out2, base.run(res, None, "gathered")):
        text = json.dumps(result.to_dict()) + json.dumps(result.diff)
        assert "SECRET-KEY-MATERIAL" not in text


@pytest.mark.parametrize("item, words", [
    ({"name": "wg0", "listen_port": 1, "private_key": "abc"}, "private_key: keys are generated on the node"),
    ({"name": "wg0", "listen_port": 70000}, "listen_port: 70000 is out of range"),
    ({"name": "wg0", "listen_port": 5, "peers": [{"public_key": "short"}]}, "is not a WireGuard key"),
    ({"name": "wg0", "listen_port": 5, "peers": [{"public_key": PEER_KEY, "endpoint": "host.example:1"}]}, "names are not resolved"),
    ({"name": "wg0", "listen_port": 5, "peers": [{"public_key": PEER_KEY, "preshared_key": "k"}]}, "are not passed in"),
    ({"name": "wg0"}, "listen_port is required to create"),
])
def test_wireguard_input_errors_name_the_field(item, words):
    with pytest.raises(base.ResourceError) as err:
        base.run(MemWireguard(), [item], "merged")
    assert words in str(err.value)
