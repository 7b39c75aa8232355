# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ansible modules with dataplane=vpp, run in-process (main()) against the fake VPP:
vpp_papi.VPPApiClient is replaced by the fake, so the module's own path (argspec,
registry.build, drivers.vpp.connect, the engine, exit_json) runs unchanged."""

from __future__ import annotations

import base64
import importlib
import json

import pytest
import vpp_papi
from ansible.module_utils.testing import patch_module_args

from npms_testlib import COLLECTIONS, link_collection
from vppfake import FakeVpp


@pytest.fixture()
def fake(monkeypatch):
    link_collection()
    monkeypatch.syspath_prepend(COLLECTIONS)
    vpp = FakeVpp()
    vpp.add_interface("host-cust-acme", addresses=["10.1.0.1/24"])
    vpp.add_interface("host-wan", addresses=["192.0.2.1/24"])
    monkeypatch.setattr(vpp_papi, "VPPApiClient", vpp.client_factory())
    yield vpp
    assert vpp.violations == []


def run_module(capsys, name, args):
    module = importlib.import_module(f"ansible_collections.galactic.npms.plugins.modules.{name}")
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        module.main()
    out = capsys.readouterr().out
    return exit_.value.code, json.loads(out), out


def test_srv6_localsid_module_on_vpp(fake, capsys):
    args = {"dataplane": "vpp", "vpp_api_socket": "/run/vpp/api.sock", "state": "merged",
            "config": [{"sid": "fc00:1::1", "behavior": "End"},
                       {"sid": "fc00:1::2", "behavior": "End.DX4", "interface": "host-cust-acme", "nexthop": "10.1.0.2"}]}
    code, result, _out = run_module(capsys, "srv6_localsid", args)
    assert code == 0 and result["changed"] and "failed" not in result
    assert fake.connected_clients[0].kwargs == {"server_address": "/run/vpp/api.sock", "bootstrapapi": True}
    assert sorted(fake.localsids) == ["fc00:1::1", "fc00:1::2"]
    code, result, _out = run_module(capsys, "srv6_localsid", args)
    assert code == 0 and not result["changed"]
    code, result, _out = run_module(capsys, "srv6_localsid", {"dataplane": "vpp", "state": "gathered"})
    assert result["gathered"] == [{"sid": "fc00:1::1", "behavior": "End"},
                                  {"sid": "fc00:1::2", "behavior": "End.DX4", "interface": "host-cust-acme", "nexthop": "10.1.0.2"}]


def test_module_fails_cleanly_when_vpp_lacks_a_message(fake, capsys):
    fake.absent.add("sr_localsid_add_del")
    code, result, _out = run_module(capsys, "srv6_localsid", {"dataplane": "vpp", "state": "gathered"})
    assert code == 1 and result["failed"]
    assert "required API message(s) missing: sr_localsid_add_del" in result["msg"]


def test_module_rolls_back_on_a_vpp_error(fake, capsys):
    fake.fail("sr_localsid_add_del", retval=-3, match=lambda f: str(f["localsid"]) == "fc00:1::2")
    args = {"dataplane": "vpp", "config": [{"sid": "fc00:1::1"}, {"sid": "fc00:1::2"}]}
    code, result, _out = run_module(capsys, "srv6_localsid", args)
    assert code == 1 and result["rolled_back"] is True
    assert "sr_localsid_add_del failed: retval -3" in result["msg"]
    assert fake.localsids == {}


def test_wireguard_module_on_vpp_keeps_the_private_key_on_vpp(fake, capsys):
    peer = base64.b64encode(bytes([1]) * 32).decode()
    args = {"dataplane": "vpp", "config": [{"name": "wg0", "listen_port": 51820, "addresses": ["10.200.0.1/31"],
                                            "peers": [{"public_key": peer, "endpoint": "192.0.2.2:51820", "allowed_ips": ["10.200.0.0/31"]}]}]}
    code, result, out = run_module(capsys, "wireguard", args)
    assert code == 0 and result["changed"], result
    public = base64.b64encode(fake.wg[fake.index_of("wg0")]["public_key"]).decode()
    assert result["facts"] == {"wg0": {"public_key": public}}
    code, result2, out2 = run_module(capsys, "wireguard", args)
    assert code == 0 and not result2["changed"]
    for secret in fake.private_keys():
        assert secret not in out and secret not in out2
