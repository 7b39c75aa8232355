# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Linux SRv6 resources without a node: input checks, rendered commands, parsing of
real iproute2 / nft output (captured on kernel 6.18 with iproute2 6.1 and nft 1.0.6 into
tests/fixtures/srv6_linux/), and the plan and commands of every state against a fake
runner that answers the show commands with those captures.

The node in the captures (``r1`` of the integration test's topology) has:
local SIDs End fc00:0:1::1, End.X ::2, End.DT6 ::6 (table 100), End.DX4 ::d4, End.DX6 ::d6;
routes fc00:0:2::/48 via a0, fc00:0:3::/48 via b0; policies fc00:0:1:b::a (one list via
t1), ::b (one list via t2), ::c (weights 1 and 3 over both), encap source fc00:12::1;
steering for tenants acme (gold = DSCP 46, best = the rest; interface c0) and beta (m0);
and a foreign ip rule (pref 100) that is not npms's.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import shlex
from typing import Optional

import pytest

from npms.resources import base
from npms.resources import srv6_linux as L
from npms.resources.base import ResourceError
from npms.resources.registry import build
from npms.runner import Runner
from npms_testlib import FakeRunner, capture, outputs_of


@pytest.fixture(autouse=True)
def seg6_mode(monkeypatch):
    """These tests check the seg6 / seg6local realisation: pin it, whatever this machine's
    kernel would choose (tests/unit/test_srv6_bpf.py covers the eBPF mode)."""
    monkeypatch.setenv(L.srv6_bpf.ENV_MODE, "seg6")


def fixture(name: str) -> str:
    return capture("srv6_linux", name)


def resource(name: str, runner: Optional[Runner] = None) -> base.Resource:
    return build(name, "linux", runner=runner or FakeRunner())


NODE_SIDS = [
    {"sid": "fc00:0:1::1", "behavior": "End"},
    {"sid": "fc00:0:1::2", "behavior": "End.X", "nexthop": "fc00:12::2", "interface": "a0"},
    {"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 100},
    {"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.2", "interface": "c0"},
    {"sid": "fc00:0:1::d6", "behavior": "End.DX6", "nexthop": "fc00:13::2", "interface": "b0"},
]
NODE_ROUTES = [
    {"prefix": "fc00:0:2::/48", "interface": "a0", "via": "fc00:12::2"},
    {"prefix": "fc00:0:3::/48", "interface": "b0", "via": "fc00:13::2"},
]
SRC = "fc00:12::1"
NODE_POLICIES = [
    {"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 1}], "encap_source": SRC},
    {"bsid": "fc00:0:1:b::b", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d4"], "weight": 1}], "encap_source": SRC},
    {"bsid": "fc00:0:1:b::c", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 1},
                                                {"segments": ["fc00:0:3::1", "fc00:0:4::d4"], "weight": 3}], "encap_source": SRC},
]
ACME = {"tenant": "acme", "tenant_id": 1, "ingress_interfaces": ["c0"]}
DELTA = {"tenant": "delta", "tenant_id": 9, "ingress_interfaces": ["d9"]}
NODE_STEERING = [
    dict(ACME, traffic_class="best", class_id=1, dscp=[], prefix="10.2.0.0/24", bsid="fc00:0:1:b::b"),
    dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="10.2.0.0/24", bsid="fc00:0:1:b::a"),
    dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="fd00:2::/48", bsid="fc00:0:1:b::c"),
    {"tenant": "beta", "tenant_id": 2, "traffic_class": "any", "class_id": 3, "dscp": [], "ingress_interfaces": ["m0"],
     "prefix": "10.2.0.0/16", "bsid": "fc00:0:1:b::b"},
]


def key_sorted(items, fields):
    return sorted(items, key=lambda i: tuple(str(i.get(f)) for f in fields))


# --- parsing real output ---------------------------------------------------------------------
@pytest.mark.parametrize("name,capture,expected", [
    ("srv6_localsid", "localsid_route", NODE_SIDS),
    ("srv6_route", "localsid_route", NODE_ROUTES),
    ("srv6_policy", "policy", NODE_POLICIES),
    ("srv6_steering", "steering", NODE_STEERING),
])
def test_parse_captured_output(name, capture, expected):
    res = resource(name)
    assert key_sorted(res.parse(fixture(capture)), res.key_fields) == key_sorted(expected, res.key_fields)
    # state parsed is the same function, through the engine
    out = base.run(resource(name), None, "parsed", running_config=fixture(capture))
    assert key_sorted(out.parsed, res.key_fields) == key_sorted(expected, res.key_fields)


@pytest.mark.parametrize("name,capture,expected", [
    ("srv6_localsid", "localsid_route", NODE_SIDS),
    ("srv6_route", "localsid_route", NODE_ROUTES),
    ("srv6_policy", "policy", NODE_POLICIES),
    ("srv6_steering", "steering", NODE_STEERING),
])
def test_gather_is_show_commands_then_parse(name, capture, expected):
    runner = FakeRunner(capture)
    res = resource(name, runner)
    out = base.run(res, None, "gathered")
    assert key_sorted(out.gathered, res.key_fields) == key_sorted(expected, res.key_fields)
    assert runner.ran == [], "gathered changed the node"
    assert set(runner.reads) == set(type(res).SHOW)


def test_localsid_bare_json_is_accepted_for_parsed():
    """One show command: its output without the '# command' line parses too."""
    text = fixture("localsid_route").split("\n", 1)[1]
    assert resource("srv6_localsid").parse(text) == NODE_SIDS


def test_localsid_and_route_never_claim_each_other_or_the_bsid_routes():
    sids = {i["sid"] for i in resource("srv6_localsid").parse(fixture("localsid_route"))}
    assert not any(s.startswith("fc00:0:1:b::") for s in sids)  # End.B6.Encaps: the policy's
    routes = {i["prefix"] for i in resource("srv6_route").parse(fixture("localsid_route"))}
    assert routes == {"fc00:0:2::/48", "fc00:0:3::/48"}


@pytest.mark.parametrize("name,text,message", [
    ("srv6_policy", "# ip -j -6 route show table all proto 202\n[]\n", "missing the output of 'ip -j -4 route show table all proto 202'"),
    ("srv6_policy", "[]\n", "output before the first '# <command>' line"),
    ("srv6_steering", "# ip -j -4 rule show\n[]\n# ip link\n", "unknown section '# ip link'"),
    ("srv6_localsid", "# ip -j -6 route show table main proto 202\nnot json\n", "is not JSON"),
])
def test_parse_errors_name_the_command(name, text, message):
    with pytest.raises(ResourceError, match="running_config") as err:
        resource(name).parse(text)
    assert message in str(err.value)


def test_parse_ignores_other_protocols_in_unfiltered_output():
    routes = json.loads(fixture("localsid_route").split("\n", 1)[1])
    routes.append({"dst": "fc00:0:9::1", "encap": "seg6local", "action": "End", "dev": "a0", "protocol": "static"})
    routes.append({"dst": "fc00:0:9::/48", "dev": "a0", "protocol": "kernel"})
    text = "# ip -j -6 route show table main proto 202\n" + json.dumps(routes) + "\n"
    assert resource("srv6_localsid").parse(text) == NODE_SIDS
    assert resource("srv6_route").parse(text) == NODE_ROUTES


def _policy_capture(edit) -> str:
    sec = outputs_of(fixture("policy"))
    v6 = json.loads(sec[L.ALL_V6])
    v4 = json.loads(sec[L.ALL_V4])
    v6, v4 = edit(v6, v4)
    return (f"# {shlex.join(L.ALL_V6)}\n{json.dumps(v6)}\n# {shlex.join(L.ALL_V4)}\n{json.dumps(v4)}\n"
            f"# {shlex.join(L.TUNSRC)}\n{sec[L.TUNSRC]}")


@pytest.mark.parametrize("what,edit,note", [
    ("no IPv4 route", lambda v6, v4: (v6, [r for r in v4 if r.get("table") != "268435466"]), "no IPv4 default route in table 268435466"),
    ("no BSID route", lambda v6, v4: ([r for r in v6 if r.get("dst") != "fc00:0:1:b::a" or "encap" not in r], v4), "no End.B6.Encaps route for the BSID"),
    ("lists differ", lambda v6, v4: (v6, [dict(r, segs=["fc00:0:3::1"]) if r.get("table") == "268435466" else r for r in v4]),
     "the IPv4 and IPv6 routes have different segment lists"),
])
def test_policy_with_missing_parts_is_incomplete_and_repaired(what, edit, note):
    text = _policy_capture(edit)
    items = {i["bsid"]: i for i in resource("srv6_policy").parse(text)}
    assert note in items["fc00:0:1:b::a"]["incomplete"], what
    assert "incomplete" not in items["fc00:0:1:b::b"]
    # merged with what the node should have rewrites that policy (replace), nothing else
    runner = FakeRunner(overrides=outputs_of(text))
    out = base.run(resource("srv6_policy", runner), [NODE_POLICIES[0]], "merged")
    assert out.changed and all("fc00:0:1:b::a" in c or "268435466" in c or "tunsrc" in c for c in out.commands), out.commands
    assert out.commands[0] == "ip -6 route replace throw fc00:0:1:b::a/128 table 268435466 proto 202"


def test_policy_table_without_marker_is_not_claimed():
    text = _policy_capture(lambda v6, v4: ([r for r in v6 if r.get("type") != "throw" or r["dst"] != "fc00:0:1:b::a"], v4))
    assert [i["bsid"] for i in resource("srv6_policy").parse(text)] == ["fc00:0:1:b::b", "fc00:0:1:b::c"]


def test_steering_without_classification_is_incomplete_with_placeholder_names():
    sec = outputs_of(fixture("steering"))
    sec[L.NFT_SHOW] = ""
    text = "".join(f"# {shlex.join(c)}\n{sec[c]}\n" for c in L.Srv6SteeringLinux.SHOW)
    items = {(i["tenant"], i["traffic_class"], i["prefix"]): i for i in resource("srv6_steering").parse(text)}
    item = items[("tenant-2", "class-3", "10.2.0.0/16")]
    assert "no nftables classification for mark 0x204" in item["incomplete"]
    assert item["bsid"] == "fc00:0:1:b::b" and item["tenant_id"] == 2 and item["class_id"] == 3


def test_steering_tenant_rule_missing_is_noted():
    sec = outputs_of(fixture("steering"))
    rules = [r for r in json.loads(sec[L.RULES_V6]) if not (r.get("fwmark") == "0x200" and r.get("ipproto") == "ipv6")]
    sec[L.RULES_V6] = json.dumps(rules)
    text = "".join(f"# {shlex.join(c)}\n{sec[c]}\n" for c in L.Srv6SteeringLinux.SHOW)
    items = {i["tenant"]: i for i in resource("srv6_steering").parse(text)}
    assert "missing tenant rule(s): IPv6 pref 19999 ipproto 41" in items["beta"]["incomplete"]
    assert "incomplete" not in items["acme"]


# --- bad input: refused before the node is touched ----------------------------------------------
@pytest.mark.parametrize("name,config,message", [
    ("srv6_localsid", [{"sid": "fc00::1", "behavior": "End.DT4", "table": 10}],
     "srv6_localsid config[0] (sid fc00::1): behavior: End.DT4 is not supported by the linux dataplane"),
    ("srv6_localsid", [{"sid": "fc00::1", "behavior": "End.DX4", "interface": "c0"}], "config[0] (sid fc00::1): nexthop is required"),
    ("srv6_localsid", [{"sid": "10.0.0.1"}], "config[0]: sid: '10.0.0.1' is IPv4"),
    ("srv6_localsid", [{"sid": "fc00::1"}, {"sid": "fc00:0::1"}], "config[1]: sid=fc00::1 is already given by config[0]"),
    ("srv6_route", [{"prefix": "fc00::1/48", "interface": "a0"}], "config[0]: prefix: 'fc00::1/48' is not a network prefix"),
    ("srv6_policy", [{"bsid": "fc00::1", "segment_lists": [{"segments": []}]}], "config[0] (bsid fc00::1) segment_lists[0]: segments"),
    ("srv6_policy", [{"bsid": "fc00::1", "segment_lists": [{"segments": ["fc00::2"]}]},
                     {"bsid": "fc01::1", "segment_lists": [{"segments": ["fc00::2"]}]}],
     "bsid fc01::1: its routing table 268435457 (0x10000001, from the BSID's low 28 bits) is also that of bsid fc00::1"),
    ("srv6_policy", [{"bsid": "fc00::1", "segment_lists": [{"segments": ["fc00::2"]}], "encap_source": "fc00::a"},
                     {"bsid": "fc00::2", "segment_lists": [{"segments": ["fc00::2"]}], "encap_source": "fc00::b"}],
     "encap_source: Linux has one SRv6 encapsulation source per node"),
    ("srv6_steering", [dict(ACME, traffic_class="a", class_id=0, prefix="10.0.0.0/8", bsid="fc00::1"),
                       {"tenant": "beta", "tenant_id": 2, "traffic_class": "a", "class_id": 0, "ingress_interfaces": ["c0"],
                        "prefix": "10.0.0.0/8", "bsid": "fc00::1"}],
     "ingress interface c0 is given to tenants acme and beta"),
    ("srv6_steering", [dict(DELTA, traffic_class="a", class_id=0, prefix="10.0.0.0/8", bsid="fc00::1"),
                       dict(DELTA, traffic_class="b", class_id=1, prefix="10.0.0.0/8", bsid="fc00::1")],
     "tenant delta: classes a and b both have no dscp"),
    ("srv6_steering", [dict(ACME, traffic_class="a", class_id=0, dscp=[46], prefix="10.0.0.0/8", bsid="fc00::1"),
                       dict(ACME, traffic_class="b", class_id=1, dscp=[46, 10], prefix="10.1.0.0/16", bsid="fc00::1")],
     "tenant acme: dscp 46 is claimed by classes a and b"),
    ("srv6_steering", [dict(ACME, traffic_class="a", class_id=0, dscp=[64], prefix="10.0.0.0/8", bsid="fc00::1")],
     "dscp[0]: 64 is out of range 0..63"),
])
@pytest.mark.parametrize("state", ["merged", "rendered"])
def test_bad_input_is_refused_before_the_node_is_touched(name, config, message, state):
    runner = FakeRunner("localsid_route", "policy", "steering")
    with pytest.raises(ResourceError) as err:
        base.run(resource(name, runner), config, state)
    assert message in str(err.value)
    assert runner.ran == [] and runner.reads == []


def test_conflicts_with_what_is_on_the_node_are_refused_in_check_mode_too():
    # a source other than the node's, for one policy only
    runner = FakeRunner("policy")
    with pytest.raises(ResourceError, match="bsid fc00:0:1:b::a would use fc00:12::1 and bsid fc00:0:1:b::d fc00:99::1"):
        base.run(resource("srv6_policy", runner), [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:2::1"]}],
                                                    "encap_source": "fc00:99::1"}], "merged", check_mode=True)
    # a BSID whose table is that of a policy on the node
    with pytest.raises(ResourceError, match="is also that of bsid fc00:0:1:b::a"):
        base.run(resource("srv6_policy", FakeRunner("policy")),
                 [{"bsid": "fc00:9::a", "segment_lists": [{"segments": ["fc00:0:2::1"]}]}], "merged", check_mode=True)
    # a class whose DSCP values differ from the node's entries of that class
    with pytest.raises(ResourceError) as err:
        base.run(resource("srv6_steering", FakeRunner("steering")),
                 [dict(ACME, traffic_class="gold", class_id=0, dscp=[10], prefix="10.9.0.0/16", bsid="fc00:0:1:b::a")],
                 "merged", check_mode=True)
    assert "class gold of tenant acme has" in str(err.value) and "already on the node" in str(err.value)
    assert "config[" not in str(err.value)
    assert runner.ran == []


# --- rendered: no node access -------------------------------------------------------------------
RENDERED = [
    ("srv6_localsid", [{"sid": "fc00:0:1::1"}, {"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.2", "interface": "c0"},
                       {"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 100},
                       {"sid": "fc00:0:1::2", "behavior": "End.X", "nexthop": "fe80::1", "interface": "a0"}],
     ["ip -6 route add fc00:0:1::1/128 proto 202 encap seg6local action End dev '<resolved at apply>'",
      "ip -4 route replace 10.1.0.2/32 table main proto 203 via 10.1.0.2 dev c0 onlink",
      "ip -6 route add fc00:0:1::d4/128 proto 202 encap seg6local action End.DX4 nh4 10.1.0.2 dev c0",
      "ip -6 route add fc00:0:1::6/128 proto 202 encap seg6local action End.DT6 table 100 dev '<resolved at apply>'",
      "ip -6 route add fc00:0:1::2/128 proto 202 encap seg6local action End.X nh6 fe80::1 dev a0"]),
    ("srv6_route", [{"prefix": "fc00:0:2::/48", "via": "fe80::2", "interface": "a0"}, {"prefix": "fc00:0:3::/48", "interface": "wg0"}],
     ["ip -6 route add fc00:0:2::/48 proto 202 via fe80::2 dev a0", "ip -6 route add fc00:0:3::/48 proto 202 dev wg0"]),
    ("srv6_policy", [{"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 5}],
                      "encap_source": "fc00:12::1"}],
     ["ip -6 route add throw fc00:0:1:b::a/128 table 268435466 proto 202",
      "ip -6 route add default table 268435466 proto 202 encap seg6 mode encap segs fc00:0:2::1,fc00:0:4::d4 dev '<resolved at apply>'",
      "ip -4 route add default table 268435466 proto 202 encap seg6 mode encap segs fc00:0:2::1,fc00:0:4::d4 dev '<resolved at apply>'",
      "ip -6 route add fc00:0:1:b::a/128 table main proto 202 encap seg6local action End.B6.Encaps srh segs "
      "fc00:0:2::1,fc00:0:4::d4 dev '<resolved at apply>'",
      "ip sr tunsrc set fc00:12::1"]),
    ("srv6_policy", [{"bsid": "fc00:0:1:b::c", "segment_lists": [{"segments": ["fc00:0:3::1"], "weight": 3},
                                                                 {"segments": ["fc00:0:2::1"], "weight": 1}]}],
     ["ip -6 route add throw fc00:0:1:b::c/128 table 268435468 proto 202",
      "ip -6 route add default table 268435468 proto 202 nexthop via '<resolved at apply>' encap seg6 mode encap segs fc00:0:2::1 "
      "dev '<resolved at apply>' weight 1 nexthop via '<resolved at apply>' encap seg6 mode encap segs fc00:0:3::1 "
      "dev '<resolved at apply>' weight 3",
      "ip -4 route add default table 268435468 proto 202 nexthop encap seg6 mode encap segs fc00:0:2::1 dev '<resolved at apply>' "
      "weight 1 nexthop encap seg6 mode encap segs fc00:0:3::1 dev '<resolved at apply>' weight 3",
      "ip -6 route add fc00:0:1:b::c/128 table main proto 202 encap seg6local action End.B6.Encaps srh segs fc00:0:3::1 "
      "dev '<resolved at apply>'"]),
    ("srv6_steering", [dict(ACME, traffic_class="gold", class_id=0, dscp=[46, 34], prefix="10.2.0.0/24", bsid="fc00:0:1:b::a"),
                       dict(ACME, traffic_class="best", class_id=1, prefix="fd00:2::/48", bsid="fc00:0:1:b::b")],
     ["ip -4 rule add pref 10008 fwmark 0x101/0xffff to 10.2.0.0/24 lookup 268435466 proto 202",
      "ip -6 rule add pref 10080 fwmark 0x102/0xffff to fd00:2::/48 lookup 268435467 proto 202",
      "ip -4 rule add pref 20000 fwmark 0x100/0xff00 prohibit proto 202",
      "ip -6 rule add pref 19999 fwmark 0x100/0xff00 ipproto 4 lookup main proto 202",
      "ip -6 rule add pref 19999 fwmark 0x100/0xff00 ipproto 41 lookup main proto 202",
      "ip -6 rule add pref 20000 fwmark 0x100/0xff00 prohibit proto 202",
      "nft -f - <<'EOF'\n"
      "table inet npms_steering {}\n"
      "delete table inet npms_steering\n"
      "table inet npms_steering {\n"
      "\tchain prerouting {\n"
      "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
      "\t\tiifname { \"c0\" } meta nfproto ipv6 meta l4proto { 4, 41 } drop comment \"acme\"\n"
      "\t\tiifname { \"c0\" } ip dscp { 34, 46 } meta mark set 0x00000101 accept comment \"acme/gold\"\n"
      "\t\tiifname { \"c0\" } ip6 dscp { 34, 46 } meta mark set 0x00000101 accept comment \"acme/gold\"\n"
      "\t\tiifname { \"c0\" } meta mark set 0x00000102 accept comment \"acme/best\"\n"
      "\t\tiifname { \"c0\" } meta mark set 0x00000100 accept comment \"acme\"\n"
      "\t}\n}\nEOF"]),
]


@pytest.mark.parametrize("name,config,commands", RENDERED, ids=[f"{r[0]}-{i}" for i, r in enumerate(RENDERED)])
def test_rendered_commands_without_node_access(name, config, commands):
    runner = FakeRunner()
    out = base.run(resource(name, runner), config, "rendered")
    assert out.rendered == commands
    assert runner.ran == [] and runner.reads == []


def test_policy_table_is_deterministic_and_in_range():
    assert L.policy_table("fc00:0:1:b::a") == 0x1000000A
    assert L.policy_table("fcbb:0:1:b:ffff:ffff:ffff:ffff") == 0x1FFFFFFF
    base_sid = ipaddress.IPv6Address("fc00::")
    assert all(L.is_policy_table(L.policy_table(str(base_sid + i * 7919))) for i in range(0, 70000, 997))


# --- plans against the captured node ------------------------------------------------------------
PLANS = [
    # (resource, capture, state, config, commands)
    ("srv6_localsid", "localsid_route", "merged", NODE_SIDS, []),
    ("srv6_localsid", "localsid_route", "replaced", [{"sid": "fc00:0:1::1"}], []),
    ("srv6_localsid", "localsid_route", "merged", [{"sid": "fc00:0:1::7"}],
     ["ip -6 route add fc00:0:1::7/128 proto 202 encap seg6local action End dev c0"]),
    ("srv6_localsid", "localsid_route", "merged", [{"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 200}],
     ["ip -6 route replace fc00:0:1::6/128 proto 202 encap seg6local action End.DT6 table 200 dev c0"]),
    ("srv6_localsid", "localsid_route", "overridden", NODE_SIDS[:1],
     [f"ip -6 route del {s['sid']}/128 table main proto 202" for s in NODE_SIDS[1:4]]
     + ["ip -4 route del 10.1.0.2/32 table main proto 203 dev c0",  # End.DX4's next-hop route goes with it
        "ip -6 route del fc00:0:1::d6/128 table main proto 202",
        "ip -6 route del fc00:13::2/128 table main proto 203 dev b0"]),
    ("srv6_localsid", "localsid_route", "deleted", [{"sid": "fc00:0:1::d4"}, {"sid": "fc00:0:1::99"}],
     ["ip -6 route del fc00:0:1::d4/128 table main proto 202", "ip -4 route del 10.1.0.2/32 table main proto 203 dev c0"]),
    ("srv6_localsid", "localsid_route", "deleted", None,
     [f"ip -6 route del {s['sid']}/128 table main proto 202" for s in NODE_SIDS[:4]]
     + ["ip -4 route del 10.1.0.2/32 table main proto 203 dev c0",
        "ip -6 route del fc00:0:1::d6/128 table main proto 202",
        "ip -6 route del fc00:13::2/128 table main proto 203 dev b0"]),
    ("srv6_route", "localsid_route", "merged", NODE_ROUTES, []),
    ("srv6_route", "localsid_route", "merged", [{"prefix": "fc00:0:2::/48", "via": "fc00:12::9"}],
     ["ip -6 route replace fc00:0:2::/48 proto 202 via fc00:12::9 dev a0"]),
    ("srv6_route", "localsid_route", "replaced", [{"prefix": "fc00:0:2::/48", "interface": "a0"}],
     ["ip -6 route replace fc00:0:2::/48 proto 202 dev a0"]),
    ("srv6_route", "localsid_route", "deleted", None,
     ["ip -6 route del fc00:0:2::/48 table main proto 202", "ip -6 route del fc00:0:3::/48 table main proto 202"]),
    ("srv6_policy", "policy", "merged", NODE_POLICIES, []),
    # no encap_source given: the node's is what the policy has
    ("srv6_policy", "policy", "replaced", [{k: v for k, v in NODE_POLICIES[0].items() if k != "encap_source"}], []),
    ("srv6_policy", "policy", "merged", [{"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:3::1"]}]}],
     ["ip -6 route replace throw fc00:0:1:b::a/128 table 268435466 proto 202",
      "ip -6 route replace default table 268435466 proto 202 encap seg6 mode encap segs fc00:0:3::1 dev b0",
      "ip -4 route replace default table 268435466 proto 202 encap seg6 mode encap segs fc00:0:3::1 dev b0",
      "ip -6 route replace fc00:0:1:b::a/128 table main proto 202 encap seg6local action End.B6.Encaps srh segs fc00:0:3::1 dev b0",
      "ip sr tunsrc set fc00:12::1"]),
    ("srv6_policy", "policy", "deleted", [{"bsid": "fc00:0:1:b::c"}],
     ["ip -6 route del fc00:0:1:b::c/128 table main proto 202",
      "ip -4 route del default table 268435468 proto 202",
      "ip -6 route del default table 268435468 proto 202",
      "ip -6 route del throw fc00:0:1:b::c/128 table 268435468 proto 202"]),
    ("srv6_steering", "steering", "merged", NODE_STEERING, []),
    ("srv6_steering", "steering", "merged", [{"tenant": "acme", "traffic_class": "gold", "prefix": "10.2.0.0/24", "bsid": "fc00:0:1:b::b"}],
     ["ip -4 rule del fwmark 0x101/0xffff to 10.2.0.0/24 proto 202",
      "ip -4 rule add pref 10008 fwmark 0x101/0xffff to 10.2.0.0/24 lookup 268435467 proto 202"]),
    # deleting tenant beta: its rule, its tenant rules, and its nft rules (one transaction)
    ("srv6_steering", "steering", "deleted", [{"tenant": "beta", "traffic_class": "any", "prefix": "10.2.0.0/16"}],
     ["ip -4 rule del fwmark 0x204/0xffff to 10.2.0.0/16 proto 202",
      "nft -f - <<'EOF'\ntable inet npms_steering {}\ndelete table inet npms_steering\ntable inet npms_steering {\n"
      "\tchain prerouting {\n\t\ttype filter hook prerouting priority mangle; policy accept;\n"
      "\t\tiifname { \"c0\" } meta nfproto ipv6 meta l4proto { 4, 41 } drop comment \"acme\"\n"
      "\t\tiifname { \"c0\" } ip dscp { 46 } meta mark set 0x00000101 accept comment \"acme/gold\"\n"
      "\t\tiifname { \"c0\" } ip6 dscp { 46 } meta mark set 0x00000101 accept comment \"acme/gold\"\n"
      "\t\tiifname { \"c0\" } meta mark set 0x00000102 accept comment \"acme/best\"\n"
      "\t\tiifname { \"c0\" } meta mark set 0x00000100 accept comment \"acme\"\n\t}\n}\nEOF",
      "ip -4 rule del pref 20000 fwmark 0x200/0xff00 prohibit proto 202",
      "ip -6 rule del pref 19999 fwmark 0x200/0xff00 ipproto 4 lookup main proto 202",
      "ip -6 rule del pref 19999 fwmark 0x200/0xff00 ipproto 41 lookup main proto 202",
      "ip -6 rule del pref 20000 fwmark 0x200/0xff00 prohibit proto 202"]),
    # everything: the table goes too; the foreign rule (pref 100) is not touched
    ("srv6_steering", "steering", "deleted", None,
     ["ip -4 rule del fwmark 0x102/0xffff to 10.2.0.0/24 proto 202",
      "ip -4 rule del fwmark 0x101/0xffff to 10.2.0.0/24 proto 202",
      "ip -6 rule del fwmark 0x101/0xffff to fd00:2::/48 proto 202",
      "ip -4 rule del fwmark 0x204/0xffff to 10.2.0.0/16 proto 202",
      "nft -f - <<'EOF'\ntable inet npms_steering {}\ndelete table inet npms_steering\nEOF"]
     + [f"ip -{f} rule del pref {p} fwmark 0x{t}00/0xff00 {w} proto 202"
        for f, t, p, w in sorted((f, t, p, w) for t in (1, 2) for f, p, w in (
            (4, 20000, "prohibit"), (6, 19999, "ipproto 4 lookup main"), (6, 19999, "ipproto 41 lookup main"), (6, 20000, "prohibit")))]),
]


@pytest.mark.parametrize("name,capture,state,config,commands", PLANS, ids=[f"{p[0]}-{p[2]}-{i}" for i, p in enumerate(PLANS)])
@pytest.mark.parametrize("check_mode", [True, False], ids=["check", "apply"])
def test_plan_and_commands(name, capture, state, config, commands, check_mode):
    runner = FakeRunner(capture)
    out = base.run(resource(name, runner), copy.deepcopy(config), state, check_mode=check_mode)
    assert out.commands == commands
    assert out.changed == bool(commands)
    # check mode runs nothing; a real run runs exactly the commands it reports
    assert runner.ran == ([] if check_mode else commands)
    if commands:
        assert out.diff["before"] != out.diff["after"]
    else:
        assert out.diff is None


def test_steering_overlapping_tenants_sort_longer_prefixes_first():
    items = [dict(ACME, traffic_class="a", class_id=0, prefix=p, bsid="fc00::1") for p in ("10.0.0.0/8", "10.1.0.0/16", "0.0.0.0/0")]
    out = base.run(resource("srv6_steering"), items, "rendered")
    prefs = {c.split(" to ")[1].split()[0]: int(c.split(" pref ")[1].split()[0]) for c in out.rendered if " to " in c}
    assert prefs["10.1.0.0/16"] < prefs["10.0.0.0/8"] < prefs["0.0.0.0/0"] < L.TENANT_PREF - 1


# --- all or nothing -------------------------------------------------------------------------
def test_failed_change_is_rolled_back_in_reverse_order():
    runner = FakeRunner("localsid_route", fail=["fc00:0:1::8/128"])
    with pytest.raises(ResourceError) as err:
        base.run(resource("srv6_localsid", runner), [{"sid": "fc00:0:1::7"}, {"sid": "fc00:0:1::8"}], "merged")
    assert err.value.rolled_back
    assert "add sid=fc00:0:1::8 failed" in str(err.value) and "a route or rule that npms does not own" in str(err.value)
    assert runner.ran == ["ip -6 route add fc00:0:1::7/128 proto 202 encap seg6local action End dev c0",
                          "ip -6 route add fc00:0:1::8/128 proto 202 encap seg6local action End dev c0",
                          "ip -6 route del fc00:0:1::7/128 table main proto 202"]


def test_a_kernel_without_srv6_is_named():
    class NoSeg6(FakeRunner):
        def _result(self, argv, rc, stderr, check):
            return super()._result(argv, rc, "Error: lwt encapsulation type not supported.", check)

    runner = NoSeg6("localsid_route", fail=["fc00:0:1::7/128"])
    with pytest.raises(ResourceError) as err:
        base.run(resource("srv6_localsid", runner), [{"sid": "fc00:0:1::7"}], "merged")
    assert "this kernel has no SRv6 lightweight tunnels" in str(err.value)
    assert "CONFIG_IPV6_SEG6_LWTUNNEL" in str(err.value)


def test_failed_policy_step_undoes_the_steps_of_its_own_change():
    runner = FakeRunner("policy", fail=["ip -4 route add default table 268435469"])
    with pytest.raises(ResourceError) as err:
        base.run(resource("srv6_policy", runner), [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:2::1"]}]}], "merged")
    assert err.value.rolled_back
    assert runner.ran[-2:] == ["ip -6 route del default table 268435469 proto 202",
                               "ip -6 route del throw fc00:0:1:b::d/128 table 268435469 proto 202"]


def test_failed_policy_route_lookup_is_named():
    runner = FakeRunner("policy")
    with pytest.raises(ResourceError, match=r"segment_lists\[0\]: no route to its first segment fc00:77::1"):
        base.run(resource("srv6_policy", runner), [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:77::1"]}]}], "merged")
    assert runner.ran == []
    # check mode shows where the interface is missing instead of failing
    out = base.run(resource("srv6_policy", FakeRunner("policy")),
                   [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:77::1"]}]}], "merged", check_mode=True)
    assert "dev '<no route to fc00:77::1>'" in out.commands[1]


def test_failed_nft_transaction_rolls_back_the_rules():
    runner = FakeRunner("steering", fail=["nft -f -"])
    config = [{"tenant": "gamma", "tenant_id": 3, "traffic_class": "x", "class_id": 0, "ingress_interfaces": ["g0"],
               "prefix": "10.3.0.0/24", "bsid": "fc00:0:1:b::a"}]
    with pytest.raises(ResourceError) as err:
        base.run(resource("srv6_steering", runner), config, "merged")
    assert err.value.rolled_back and "rolled back 1 change(s)" in str(err.value)
    added = [c for c in runner.ran if " add " in c and "nft" not in c]
    assert added[0] == "ip -4 rule add pref 10008 fwmark 0x301/0xffff to 10.3.0.0/24 lookup 268435466 proto 202"
    # every rule added is deleted again
    for command in added:
        assert command.replace(" add ", " del ", 1).replace(" lookup 268435466", "").replace(" pref 10008", "") in runner.ran \
            or command.replace(" add ", " del ", 1) in runner.ran
    # the table is put back as it was (the fake cannot list it as text: from what gather read)
    assert runner.ran[-1].startswith("nft -f - <<'EOF'\ntable inet npms_steering {}\ndelete table inet npms_steering\n")
    assert runner.ran[-1].count("comment") == 8 and 'comment "acme/gold"' in runner.ran[-1] and "gamma" not in runner.ran[-1]


def test_commands_have_no_shell_needs():
    """render and apply are one list of argv: the strings are shlex-quoted argv."""
    out = base.run(resource("srv6_policy", FakeRunner("policy")),
                   [{"bsid": "fc00:0:1:b::e", "segment_lists": [{"segments": ["fc00:0:2::1"]}]}], "merged", check_mode=True)
    for command in out.commands:
        assert shlex.split(command)[0] == "ip"


def test_registry_builds_the_linux_classes():
    assert isinstance(resource("srv6_localsid"), L.Srv6LocalSidLinux)
    assert isinstance(resource("srv6_route"), L.Srv6RouteLinux)
    assert isinstance(resource("srv6_policy"), L.Srv6PolicyLinux)
    assert isinstance(resource("srv6_steering"), L.Srv6SteeringLinux)
    assert L.Srv6LocalSidLinux.behaviors == ("End", "End.X", "End.DX4", "End.DX6", "End.DT6")
