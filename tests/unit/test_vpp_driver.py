# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""npms.drivers.vpp: connect, checked calls, field builders, interface names."""

from __future__ import annotations

import os
import re
import sys

import pytest
import vpp_papi

from npms.drivers import vpp as drv
from npms.resources.base import ResourceError

from vppfake import ApiSchema, FakeVpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def fake(monkeypatch):
    vpp = FakeVpp()
    monkeypatch.setattr(vpp_papi, "VPPApiClient", vpp.client_factory())
    return vpp


def test_connect_bootstraps_the_api_from_vpp_without_api_dir(fake):
    client = drv.connect()
    papi = fake.connected_clients[0]
    assert papi.kwargs == {"server_address": "/run/vpp/api.sock", "bootstrapapi": True}
    assert client.papi is papi and client.where == "/run/vpp/api.sock"


def test_connect_with_api_dir_loads_the_json_files(fake):
    drv.connect("/tmp/vpp.sock", api_dir="/usr/share/vpp/api")
    assert fake.connected_clients[0].kwargs == {"apidir": "/usr/share/vpp/api", "server_address": "/tmp/vpp.sock"}


def test_connect_fails_naming_a_missing_message(fake):
    fake.absent.update({"sr_policy_add_v2", "wireguard_peer_add"})
    with pytest.raises(drv.VppError) as err:
        drv.connect()
    assert "sr_policy_add_v2 (CRC differs from the loaded API definitions)" in str(err.value)
    assert "wireguard_peer_add" in str(err.value)
    assert fake.connected_clients[0]._api is None  # disconnected again


def test_connect_without_vpp_papi_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "vpp_papi", None)
    with pytest.raises(drv.VppError, match=r"needs the Python package vpp_papi \(pip install vpp_papi\)"):
        drv.connect()


def test_connect_failure_names_the_socket(monkeypatch):
    def refuse(**_kwargs):
        raise vpp_papi.VPPIOError(2, "Connect failed")
    monkeypatch.setattr(vpp_papi, "VPPApiClient", refuse)
    with pytest.raises(drv.VppError, match="VPP /run/vpp/api.sock: cannot connect to the API socket"):
        drv.connect()


def test_non_zero_retval_raises_naming_the_call(fake):
    client = drv.connect()
    fields = {"localsid": "fc00:1::1", "end_psp": False, "behavior": 1, "sw_if_index": drv.NO_INDEX, "vlan_index": 0,
              "fib_table": 0, "nh_addr": "::"}
    assert client.call("sr_localsid_add_del", is_del=False, **fields).retval == 0
    with pytest.raises(drv.VppError) as err:
        client.call("sr_localsid_add_del", is_del=False, **fields)
    assert isinstance(err.value, ResourceError)
    assert err.value.msg_name == "sr_localsid_add_del" and err.value.retval == -1
    assert str(err.value) == ("VPP /run/vpp/api.sock: sr_localsid_add_del failed: retval -1 "
                              "(a local SID with this address already exists)")
    with pytest.raises(drv.VppError, match=r"sw_interface_set_flags failed: retval -2 \(invalid sw_if_index\)"):
        client.call("sw_interface_set_flags", sw_if_index=77, flags=1)


def test_a_refused_request_is_a_vpp_error_without_the_values(fake):
    client = drv.connect()
    with pytest.raises(drv.VppError, match="wireguard_interface_create: the request was refused before sending") as err:
        client.call("wireguard_interface_create", generate_key=False, interface={
            "user_instance": 0, "sw_if_index": drv.NO_INDEX, "private_key": b"\x01" * 31, "public_key": bytes(32), "port": 1,
            "src_ip": "10.0.0.1"})
    assert "\\x01" not in str(err.value)
    assert not fake.mutating_calls()


def test_dump_returns_lists_old_and_new_style(fake):
    client = drv.connect()
    assert client.dump("sr_localsids_dump") == []
    details = client.dump("sw_interface_dump", sw_if_index=drv.NO_INDEX, name_filter_valid=False, name_filter="")
    assert [d.interface_name for d in details] == ["local0"]

    class Reply:  # a "modern" stream: (reply, details)
        retval = 0

    class Api:
        @staticmethod
        def thing_get(**_kw):
            return Reply(), ["a", "b"]

    class Papi:
        api = Api()
        messages = {}

    assert drv.VppClient(Papi()).dump("thing_get") == ["a", "b"]


def test_interface_lookup_picks_the_exact_name(fake):
    fake.add_interface("loop1")
    loop10 = fake.add_interface("loop10")
    client = drv.connect()
    assert client.interface_index("loop10") == loop10
    assert client.interface_index("loop1") == fake.index_of("loop1")
    with pytest.raises(drv.VppError, match="no interface named 'loop'"):
        client.interface_index("loop")
    assert client.interface_name(loop10) == "loop10"


def test_fixed_arrays_are_built_at_full_length():
    sl = drv.sid_list(["fc00:1::1", "fc00:2::1"], 3)
    assert sl == {"num_sids": 2, "weight": 3, "sids": ["fc00:1::1", "fc00:2::1"] + ["::"] * 14}
    with pytest.raises(ResourceError, match="at most 16 SIDs"):
        drv.sid_list(["fc00::1"] * 17)
    path = drv.fib_path(3, "fe80::1")
    assert len(path["label_stack"]) == 16 and path["nh"]["address"] == {"ip6": "fe80::1"}
    lookup = drv.fib_path(is_ip6=False, table_id=7)
    assert lookup["sw_if_index"] == drv.NO_INDEX and lookup["nh"]["address"] == {"ip4": "0.0.0.0"} and lookup["table_id"] == 7


def test_journal_undoes_newest_first():
    done = []
    journal = drv.Journal()
    journal.do("a", lambda: 1, lambda r: done.append(("undo a", r)))
    journal.do("b", lambda: 2, lambda r: done.append(("undo b", r)))
    assert journal.rollback() == [] and done == [("undo b", 2), ("undo a", 1)]


def test_every_message_the_resources_send_is_required_and_transcribed():
    schema = ApiSchema()
    used = set()
    for name in ("drivers/vpp.py", "resources/srv6_vpp.py", "resources/wireguard_vpp.py"):
        with open(os.path.join(ROOT, "plugins", "module_utils", "npms", name), encoding="utf-8") as handle:
            used |= set(re.findall(r'\.(?:call|dump)\(\s*"([a-z0-9_]+)"', handle.read()))
    assert used, "no call found: the pattern no longer matches the driver"
    assert used <= set(drv.REQUIRED_MESSAGES), sorted(used - set(drv.REQUIRED_MESSAGES))
    assert set(drv.REQUIRED_MESSAGES) <= set(schema.services), sorted(set(drv.REQUIRED_MESSAGES) - set(schema.services))
