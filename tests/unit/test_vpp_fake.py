# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake VPP checks every call against the transcribed .api definitions: the tests of the
driver are only worth what this check is worth."""

from __future__ import annotations

import ipaddress

import pytest

from npms.drivers.vpp import fib_path, ip_route, label_stack, sid_list

from vppfake import ApiSchema, FakeVpp, FakeVppRejected


@pytest.fixture()
def api():
    fake = FakeVpp()
    papi = fake.client_factory()(server_address="/run/vpp/api.sock", bootstrapapi=True)
    papi.connect("test")
    return papi.api


def policy_fields(**over):
    fields = {"bsid_addr": "fc00:1::100", "weight": 1, "is_encap": True, "type": 0, "fib_table": 0,
              "sids": sid_list(["fc00:2::1"]), "encap_src": "::"}
    fields.update(over)
    return fields


def test_rejects_unknown_message():
    fake = FakeVpp()
    with pytest.raises(FakeVppRejected, match="sr_policy_add_v3: no such message"):
        fake.handle("sr_policy_add_v3", {})
    papi = fake.client_factory()()
    papi.connect("test")
    assert not hasattr(papi.api, "sr_policy_add_v3")


def test_rejects_a_wrong_field_name(api):
    with pytest.raises(FakeVppRejected, match=r"sr_policy_add_v2: unknown field\(s\) encap_source"):
        api.sr_policy_add_v2(**policy_fields(encap_source="::"))
    bad = policy_fields()
    bad["sids"] = dict(bad["sids"], segments=bad["sids"]["sids"])
    with pytest.raises(FakeVppRejected, match=r"sr_policy_add_v2\.sids: unknown field\(s\) segments"):
        api.sr_policy_add_v2(**bad)


def test_rejects_a_short_sids_array(api):
    short = {"num_sids": 1, "weight": 1, "sids": ["fc00:2::1"]}
    with pytest.raises(FakeVppRejected, match=r"sr_policy_add_v2\.sids\.sids: 1 element\(s\), the array is fixed at 16"):
        api.sr_policy_add_v2(**policy_fields(sids=short))
    assert api.sr_policy_add_v2(**policy_fields()).retval == 0


def test_rejects_a_missing_field_and_a_short_label_stack(api):
    path = fib_path(1, "2001:db8::1")
    del path["label_stack"]
    with pytest.raises(FakeVppRejected, match=r"paths\[0\]\.label_stack: missing"):
        api.ip_route_add_del(is_add=True, is_multipath=False, route=ip_route("fc00:2::/48", [path]))
    path["label_stack"] = label_stack()[:1]
    with pytest.raises(FakeVppRejected, match="fixed at 16"):
        api.ip_route_add_del(is_add=True, is_multipath=False, route=ip_route("fc00:2::/48", [path]))
    with pytest.raises(FakeVppRejected, match=r"sr_localsid_add_del\.end_psp: missing"):
        api.sr_localsid_add_del(localsid="fc00:1::1", behavior=1, vlan_index=0, fib_table=0, nh_addr="::")


def test_rejects_bad_values(api):
    with pytest.raises(FakeVppRejected, match="is not a value of vl_api_sr_behavior_t"):
        api.sr_localsid_add_del(is_del=False, localsid="fc00:1::1", end_psp=False, behavior=42, sw_if_index=0, vlan_index=0,
                                fib_table=0, nh_addr="::")
    with pytest.raises(FakeVppRejected, match="not an IPv6 address"):
        api.sr_policy_add_v2(**policy_fields(bsid_addr="10.0.0.1"))
    with pytest.raises(FakeVppRejected, match="out of range for u8"):
        api.sr_policy_add_v2(**policy_fields(sids=dict(sid_list(["fc00:2::1"]), num_sids=300)))
    with pytest.raises(FakeVppRejected, match=r"paths: 1 element\(s\), its count field says 2"):
        api.ip_route_add_del(is_add=True, is_multipath=False, route=dict(ip_route("fc00:2::/48", [fib_path(0, None)]), n_paths=2))
    with pytest.raises(FakeVppRejected, match="at most 63 characters"):
        api.ip_table_add_del(is_add=True, table={"table_id": 5, "is_ip6": True, "name": "x" * 64})
    with pytest.raises(FakeVppRejected, match="expected 16 bytes"):
        api.classify_add_del_table(is_add=True, del_chain=False, mask_len=16, mask=b"\xff" * 15)


def test_replies_are_vpp_papi_namedtuples_and_retval_is_not_raised(api):
    assert api.sr_policy_add_v2(**policy_fields()).retval == 0
    again = api.sr_policy_add_v2(**policy_fields())
    assert type(again).__name__ == "sr_policy_add_v2_reply" and again.retval == -12
    details = api.sr_policies_v2_dump()
    assert isinstance(details, list) and len(details) == 1
    assert details[0].bsid == ipaddress.IPv6Address("fc00:1::100")
    assert len(details[0].sid_lists[0].sids) == 16 and details[0].sid_lists[0].num_sids == 1


def test_absent_message_is_not_on_api_but_known():
    fake = FakeVpp()
    fake.absent.add("sr_policy_mod_v2")
    papi = fake.client_factory()()
    papi.connect("test")
    assert not hasattr(papi.api, "sr_policy_mod_v2")
    assert "sr_policy_mod_v2" in papi.messages


def test_transcription_holds_the_facts_seen_on_a_real_vpp():
    """../shared/VPP_NOTES.md: END=1, DT6=8, DT4=9; 16 SIDs; 16-entry label stacks; steer 4/6."""
    schema = ApiSchema()
    assert schema.enums["vl_api_sr_behavior_t"]["SR_BEHAVIOR_API_END"] == 1
    assert schema.enums["vl_api_sr_behavior_t"]["SR_BEHAVIOR_API_DT6"] == 8
    assert schema.enums["vl_api_sr_behavior_t"]["SR_BEHAVIOR_API_DT4"] == 9
    assert schema.enums["vl_api_sr_steer_t"] == {"SR_STEER_API_L2": 2, "SR_STEER_API_IPV4": 4, "SR_STEER_API_IPV6": 6}
    assert ["vl_api_ip6_address_t", "sids", 16] in schema.types["vl_api_srv6_sid_list_t"]
    assert ["vl_api_fib_mpls_label_t", "label_stack", 16] in schema.types["vl_api_fib_path_t"]
    assert schema.enums["vl_api_classify_action_t"]["CLASSIFY_API_ACTION_SET_IP4_FIB_INDEX"] == 1
    assert schema.flags["vl_api_wireguard_peer_flags_t"]["WIREGUARD_PEER_ESTABLISHED"] == 2
