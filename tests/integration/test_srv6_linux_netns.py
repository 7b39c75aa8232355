# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Linux SRv6 resources against the real kernel (root): every state, check mode,
diff, ownership and rollback on a sandbox namespace; then packets through a small SRv6
network; then the Ansible modules through the galactic.npms.netns connection.

Namespaces are this run's own, ``t4s-<pid>-*``, removed by the fixtures' finalizers;
traffic only flows between them.

Packet topology (``h`` hosts, ``r1`` ingress, ``t1`` / ``t2`` transit, ``e`` egress)::

    h1 --c0-- r1 --a0---w0-- t1 --e0---a0-- e --x0-- h2
               |  --b0---w0-- t2 --e0---b0-- |
               +--m0-- h3  (reachable from r1's main table only)

Tenant ``acme`` enters on r1's c0: DSCP 46 (gold) is steered into policy A
(t1's End SID, then e's End.DX4), everything else (best) into policy B (through t2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from npms.resources import base
from npms.resources.base import ResourceError
from npms.resources.registry import build
from npms.runner import CommandError, NetnsRunner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PREFIX = f"t4s-{os.getpid()}-"
TOOLS = ("ip", "nft", "ping")

pytestmark = pytest.mark.usefixtures("needs_root", "tools")


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"needs {', '.join(missing)} (apt-get install iproute2 nftables iputils-ping)", pytrace=False)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def nsx(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def new_ns(name: str, made: List[str]) -> str:
    ns = PREFIX + name
    sh("ip", "netns", "add", ns)
    made.append(ns)
    nsx(ns, "ip", "link", "set", "lo", "up")
    nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.seg6_enabled=1",
        "net.ipv6.conf.default.seg6_enabled=1", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    return ns


def run(ns: str, name: str, config: Optional[List[Dict[str, Any]]], state: str = "merged", check_mode: bool = False,
        runner: Optional[NetnsRunner] = None) -> base.ResourceResult:
    return base.run(build(name, "linux", runner=runner or NetnsRunner(ns)), config, state, check_mode=check_mode)


def gathered(ns: str, name: str) -> List[Dict[str, Any]]:
    return run(ns, name, None, "gathered").gathered


def snapshot(ns: str, tunsrc: bool = True) -> str:
    """Everything a resource could touch on the node, as text."""
    parts = []
    commands = [("ip", "-6", "route", "show", "table", "all"), ("ip", "-4", "route", "show", "table", "all"),
                ("ip", "-4", "rule", "show"), ("ip", "-6", "rule", "show"), ("nft", "list", "ruleset")]
    if tunsrc:
        commands.append(("ip", "sr", "tunsrc", "show"))
    for argv in commands:
        parts.append("$ " + " ".join(argv) + "\n" + nsx(ns, *argv).stdout)
    return "\n".join(parts)


class FailingRunner(NetnsRunner):
    """A namespace runner whose first command containing ``fail`` fails (for failures the
    kernel would not produce from valid input)."""

    def __init__(self, netns: str, fail: str):
        super().__init__(netns)
        self.fail: Optional[str] = fail

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        if self.fail and self.fail in " ".join(str(a) for a in argv):
            self.fail = None
            raise CommandError(self.where, argv, 2, "", "injected failure")
        return super().run(argv, stdin=stdin, check=check, timeout=timeout, env=env)


# --- one node: states, check mode, diff, ownership, rollback --------------------------------------
@pytest.fixture()
def sandbox() -> Iterator[str]:
    """A namespace with links a0 / b0 (IPv6) and c0 (IPv4), routes to two remote
    locators (static, not npms's), and foreign things that must survive: a route, an ip
    rule and an nft table."""
    made: List[str] = []
    try:
        ns = new_ns("sb", made)
        for a, b in (("a0", "a1"), ("b0", "b1"), ("c0", "c1")):
            nsx(ns, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
            nsx(ns, "ip", "link", "set", a, "up")
            nsx(ns, "ip", "link", "set", b, "up")
        nsx(ns, "ip", "-6", "addr", "add", "fc00:12::1/64", "dev", "a0", "nodad")
        nsx(ns, "ip", "-6", "addr", "add", "fc00:13::1/64", "dev", "b0", "nodad")
        nsx(ns, "ip", "addr", "add", "10.1.0.1/24", "dev", "c0")
        nsx(ns, "ip", "-6", "route", "add", "fc00:0:2::/48", "via", "fc00:12::2", "dev", "a0", "proto", "static")
        nsx(ns, "ip", "-6", "route", "add", "fc00:0:3::/48", "via", "fc00:13::2", "dev", "b0", "proto", "static")
        nsx(ns, "ip", "-6", "route", "add", "fc00:99::/48", "via", "fc00:12::2", "dev", "a0")
        nsx(ns, "ip", "rule", "add", "pref", "100", "fwmark", "0x5", "lookup", "100")
        nsx(ns, "nft", "add", "table", "inet", "t4s_foreign")
        nsx(ns, "nft", "add", "chain", "inet", "t4s_foreign", "input", "{ type filter hook input priority 0; policy accept; }")
        nsx(ns, "nft", "add", "rule", "inet", "t4s_foreign", "input", "ip", "saddr", "192.0.2.1", "drop")
        yield ns
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


POL_A = {"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"]}]}
POL_B = {"bsid": "fc00:0:1:b::b", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d4"]}]}
ACME = {"tenant": "acme", "tenant_id": 1, "ingress_interfaces": ["c0"]}

CASES: Dict[str, Dict[str, Any]] = {
    "srv6_localsid": {
        "merged": [{"sid": "fc00:0:1::1"}, {"sid": "fc00:0:1::2", "behavior": "End.X", "nexthop": "fc00:12::2", "interface": "a0"},
                   {"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.2", "interface": "c0"},
                   {"sid": "fc00:0:1::d6", "behavior": "End.DX6", "nexthop": "fc00:13::2", "interface": "b0"},
                   {"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 100}],
        "replaced": [{"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.3", "interface": "c0"}],
        "replaced_check": ("fc00:0:1::d4", "nexthop", "10.1.0.3"),
        "overridden": [{"sid": "fc00:0:1::1"}],
        "bad": [{"sid": "fc00:0:1::7"}, {"sid": "fc00:0:1::8", "behavior": "End.X", "nexthop": "fc00:12::2", "interface": "nosuch0"}],
        "bad_message": "add sid=fc00:0:1::8 failed",
    },
    "srv6_route": {
        "merged": [{"prefix": "fc00:0:5::/48", "via": "fc00:12::2", "interface": "a0"}, {"prefix": "fc00:0:6::/48", "interface": "b0"}],
        "replaced": [{"prefix": "fc00:0:6::/48", "via": "fc00:13::2", "interface": "b0"}],
        "replaced_check": ("fc00:0:6::/48", "via", "fc00:13::2"),
        "overridden": [{"prefix": "fc00:0:5::/48", "via": "fc00:12::2", "interface": "a0"}],
        "bad": [{"prefix": "fc00:0:7::/48", "interface": "a0"}, {"prefix": "fc00:0:8::/48", "interface": "nosuch0"}],
        "bad_message": "add prefix=fc00:0:8::/48 failed",
    },
    "srv6_policy": {
        "merged": [dict(POL_A, encap_source="fc00:12::1"),
                   {"bsid": "fc00:0:1:b::c", "encap_source": "fc00:12::1",
                    "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 1},
                                      {"segments": ["fc00:0:3::1", "fc00:0:4::d4"], "weight": 3}]}],
        "replaced": [{"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:3::1"]}]}],
        "replaced_check": ("fc00:0:1:b::a", "segment_lists", [{"segments": ["fc00:0:3::1"], "weight": 1}]),
        "overridden": [{"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:3::1"]}]}],
        # the second policy's first segment has no route: found when it is applied
        "bad": [dict(POL_B, encap_source="fc00:13::1"),
                {"bsid": "fc00:0:1:b::e", "segment_lists": [{"segments": ["fc00:77::1"]}], "encap_source": "fc00:13::1"}],
        "bad_message": "no route to its first segment fc00:77::1",
    },
    "srv6_steering": {
        "setup": ("srv6_policy", [POL_A, POL_B]),
        "merged": [dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="10.2.0.0/24", bsid="fc00:0:1:b::a"),
                   dict(ACME, traffic_class="best", class_id=1, prefix="10.2.0.0/24", bsid="fc00:0:1:b::b"),
                   dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="fd00:2::/48", bsid="fc00:0:1:b::a")],
        "replaced": [dict(ACME, traffic_class="gold", class_id=0, dscp=[46, 34], prefix="10.2.0.0/24", bsid="fc00:0:1:b::b"),
                     dict(ACME, traffic_class="gold", class_id=0, dscp=[46, 34], prefix="fd00:2::/48", bsid="fc00:0:1:b::a")],
        "replaced_check": ("10.2.0.0/24", "bsid", "fc00:0:1:b::b"),
        "overridden": [dict(ACME, traffic_class="best", class_id=1, prefix="10.2.0.0/24", bsid="fc00:0:1:b::b")],
        # the kernel takes any rule the schema allows: inject the failure at the runner
        "bad": [{"tenant": "beta", "tenant_id": 2, "traffic_class": "x", "class_id": 0, "ingress_interfaces": ["b1"],
                 "prefix": "10.8.0.0/24", "bsid": "fc00:0:1:b::a"},
                {"tenant": "beta", "tenant_id": 2, "traffic_class": "x", "class_id": 0, "ingress_interfaces": ["b1"],
                 "prefix": "10.9.0.0/24", "bsid": "fc00:0:1:b::b"}],
        "bad_fail": "to 10.9.0.0/24",
        "bad_message": "injected failure",
    },
}


def _find(items: List[Dict[str, Any]], name: str, key: str) -> Dict[str, Any]:
    res = build(name, "linux")
    for item in items:
        if key in [str(v) for v in (item.get(f) for f in res.key_fields)]:
            return item
    raise AssertionError(f"{key} not in {items}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_lifecycle(sandbox, name):
    ns, case = sandbox, CASES[name]
    if "setup" in case:
        assert run(ns, *case["setup"]).changed

    def keys(items: List[Dict[str, Any]]) -> List[str]:
        return sorted(repr(base.item_key(i, build(name, "linux").key_fields)) for i in items)

    untouched = snapshot(ns)

    # check mode: the plan, and not one change on the node
    out = run(ns, name, case["merged"], check_mode=True)
    assert out.changed and out.commands and out.diff["before"] != out.diff["after"]
    assert snapshot(ns) == untouched

    # merged, then again: no change
    out = run(ns, name, case["merged"])
    assert out.changed and out.diff and not out.warnings, out.warnings
    assert keys(gathered(ns, name)) == keys(case["merged"])
    assert all("incomplete" not in i for i in gathered(ns, name))
    again = run(ns, name, case["merged"])
    assert not again.changed and again.commands == [] and again.diff is None

    # replaced: that item becomes exactly as given; again: no change
    out = run(ns, name, case["replaced"], "replaced")
    assert out.changed and not out.warnings, out.warnings
    key, field, value = case["replaced_check"]
    assert _find(gathered(ns, name), name, key)[field] == value
    assert not run(ns, name, case["replaced"], "replaced").changed

    # overridden: only these items are left
    out = run(ns, name, case["overridden"], "overridden")
    assert out.changed and not out.warnings, out.warnings
    assert keys(gathered(ns, name)) == keys(case["overridden"])
    assert not run(ns, name, case["overridden"], "overridden").changed

    # deleted: exactly what npms made goes; the foreign route, rule and table stay
    out = run(ns, name, None, "deleted")
    assert out.changed and gathered(ns, name) == []
    assert not run(ns, name, None, "deleted").changed
    assert snapshot(ns, tunsrc=name != "srv6_policy") == snapshot_without_tunsrc(untouched, name)
    after = snapshot(ns)
    assert "fc00:99::/48 via fc00:12::2 dev a0" in after and "fwmark 0x5 lookup 100" in after and "table inet t4s_foreign" in after

    # a failing change undoes the ones made before it
    before = snapshot(ns)
    runner = FailingRunner(ns, case["bad_fail"]) if "bad_fail" in case else NetnsRunner(ns)
    with pytest.raises(ResourceError) as err:
        run(ns, name, case["bad"], runner=runner)
    assert err.value.rolled_back, str(err.value)
    assert case["bad_message"] in str(err.value)
    assert snapshot(ns) == before


def snapshot_without_tunsrc(text: str, name: str) -> str:
    if name != "srv6_policy":
        return text
    return text[:text.index("\n$ ip sr tunsrc show")]


def test_policy_encap_source_is_the_nodes_one(sandbox):
    ns = sandbox
    assert run(ns, "srv6_policy", [dict(POL_A, encap_source="fc00:12::1")]).changed
    assert "tunsrc addr fc00:12::1" in nsx(ns, "ip", "sr", "tunsrc", "show").stdout
    # a policy given without a source reports the node's, so a second run changes nothing
    assert not run(ns, "srv6_policy", [POL_A], "replaced").changed
    with pytest.raises(ResourceError, match="one SRv6 encapsulation source per node"):
        run(ns, "srv6_policy", [dict(POL_B, encap_source="fc00:13::1")])
    assert [p["bsid"] for p in gathered(ns, "srv6_policy")] == ["fc00:0:1:b::a"]


def test_policy_repairs_a_route_deleted_by_hand(sandbox):
    ns = sandbox
    run(ns, "srv6_policy", [POL_A])
    nsx(ns, "ip", "-4", "route", "del", "default", "table", "268435466")
    item = gathered(ns, "srv6_policy")[0]
    assert "no IPv4 default route in table 268435466" in item["incomplete"]
    out = run(ns, "srv6_policy", [POL_A])
    assert out.changed and not out.warnings
    assert "incomplete" not in gathered(ns, "srv6_policy")[0]
    assert not run(ns, "srv6_policy", [POL_A]).changed


def test_steering_nft_failure_puts_everything_back(sandbox):
    ns = sandbox
    run(ns, "srv6_policy", [POL_A, POL_B])
    run(ns, "srv6_steering", CASES["srv6_steering"]["merged"][:1])
    before = snapshot(ns)
    with pytest.raises(ResourceError) as err:
        run(ns, "srv6_steering", CASES["srv6_steering"]["bad"], runner=FailingRunner(ns, "nft -f -"))
    assert err.value.rolled_back and "rolled back 2 change(s)" in str(err.value)
    assert snapshot(ns) == before


def test_a_foreign_route_in_the_way_is_not_overwritten(sandbox):
    ns = sandbox
    nsx(ns, "ip", "-6", "route", "add", "fc00:0:9::/48", "dev", "b0")
    with pytest.raises(ResourceError, match="npms does not own"):
        run(ns, "srv6_route", [{"prefix": "fc00:0:9::/48", "interface": "a0"}])
    assert "fc00:0:9::/48 dev b0" in nsx(ns, "ip", "-6", "route", "show").stdout


# --- packets -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net() -> Iterator[Dict[str, str]]:
    made: List[str] = []
    try:
        ns = {n: new_ns(n, made) for n in ("h1", "r1", "t1", "t2", "e", "h2", "h3")}

        def link(a: str, ia: str, b: str, ib: str) -> None:
            sh("ip", "link", "add", ia, "netns", ns[a], "type", "veth", "peer", "name", ib, "netns", ns[b])
            nsx(ns[a], "ip", "link", "set", ia, "up")
            nsx(ns[b], "ip", "link", "set", ib, "up")

        for a, ia, b, ib in (("h1", "eth0", "r1", "c0"), ("r1", "a0", "t1", "w0"), ("r1", "b0", "t2", "w0"), ("t1", "e0", "e", "a0"),
                             ("t2", "e0", "e", "b0"), ("e", "x0", "h2", "eth0"), ("r1", "m0", "h3", "eth0")):
            link(a, ia, b, ib)
        for n, dev, addr in (("h1", "eth0", "10.1.0.2/24"), ("r1", "c0", "10.1.0.1/24"), ("e", "x0", "10.2.0.1/24"),
                             ("h2", "eth0", "10.2.0.2/24"), ("r1", "m0", "10.7.0.1/24"), ("h3", "eth0", "10.7.0.2/24"),
                             ("h1", "eth0", "fd00:1::2/64"), ("r1", "c0", "fd00:1::1/64"), ("e", "x0", "fd00:2::1/64"),
                             ("h2", "eth0", "fd00:2::2/64"), ("r1", "a0", "fc00:12::1/64"), ("t1", "w0", "fc00:12::2/64"),
                             ("r1", "b0", "fc00:13::1/64"), ("t2", "w0", "fc00:13::2/64"), ("t1", "e0", "fc00:24::1/64"),
                             ("e", "a0", "fc00:24::2/64"), ("t2", "e0", "fc00:34::1/64"), ("e", "b0", "fc00:34::2/64")):
            nsx(ns[n], "ip", "addr", "add", addr, "dev", dev, *(["nodad"] if ":" in addr else []))
        for n, gw4, gw6 in (("h1", "10.1.0.1", "fd00:1::1"), ("h2", "10.2.0.1", "fd00:2::1"), ("h3", "10.7.0.1", None)):
            nsx(ns[n], "ip", "route", "add", "default", "via", gw4)
            if gw6:
                nsx(ns[n], "ip", "-6", "route", "add", "default", "via", gw6)
        for n in ("r1", "t1", "t2", "e"):  # seg6_enabled is per interface: set it on those that exist now
            for ifname in json.loads(nsx(ns[n], "ip", "-j", "link", "show").stdout):
                nsx(ns[n], "sysctl", "-qw", f"net.ipv6.conf.{ifname['ifname']}.seg6_enabled=1")
        # counters of packets arriving for each transit node's End SID (a foreign nft table)
        for n, sid in (("t1", "fc00:0:2::1"), ("t2", "fc00:0:3::1")):
            proc = subprocess.run(["ip", "netns", "exec", ns[n], "nft", "-f", "-"], text=True, capture_output=True, check=False,
                                  input=("table inet t4s_count {\n chain pre {\n  type filter hook prerouting priority 0; policy accept;\n"
                                         f"  ip6 daddr {sid} counter\n }}\n}}\n"))
            assert proc.returncode == 0, proc.stderr
        configure(ns)
        yield ns
    finally:
        for name in made:
            sh("ip", "netns", "del", name, check=False)


def configure(ns: Dict[str, str]) -> None:
    """The SRv6 network, all through the resources (each twice: the second changes nothing)."""
    config = [
        ("r1", "srv6_route", [{"prefix": "fc00:0:2::/48", "via": "fc00:12::2", "interface": "a0"},
                              {"prefix": "fc00:0:3::/48", "via": "fc00:13::2", "interface": "b0"}]),
        ("t1", "srv6_route", [{"prefix": "fc00:0:4::/48", "via": "fc00:24::2", "interface": "e0"},
                              {"prefix": "fc00:0:1::/48", "via": "fc00:12::1", "interface": "w0"}]),
        ("t2", "srv6_route", [{"prefix": "fc00:0:4::/48", "via": "fc00:34::2", "interface": "e0"},
                              {"prefix": "fc00:0:1::/48", "via": "fc00:13::1", "interface": "w0"}]),
        ("e", "srv6_route", [{"prefix": "fc00:0:1::/48", "via": "fc00:24::1", "interface": "a0"}]),
        ("r1", "srv6_localsid", [{"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.2", "interface": "c0"},
                                 {"sid": "fc00:0:1::d6", "behavior": "End.DX6", "nexthop": "fd00:1::2", "interface": "c0"}]),
        ("t1", "srv6_localsid", [{"sid": "fc00:0:2::1"}]),
        ("t2", "srv6_localsid", [{"sid": "fc00:0:3::1"}]),
        ("e", "srv6_localsid", [{"sid": "fc00:0:4::d4", "behavior": "End.DX4", "nexthop": "10.2.0.2", "interface": "x0"},
                                {"sid": "fc00:0:4::d6", "behavior": "End.DX6", "nexthop": "fd00:2::2", "interface": "x0"}]),
        ("r1", "srv6_policy", [POL_A, POL_B,
                               {"bsid": "fc00:0:1:b::a6", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d6"]}]},
                               {"bsid": "fc00:0:1:b::b6", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d6"]}]}]),
        ("e", "srv6_policy", [{"bsid": "fc00:0:4:b::1", "segment_lists": [{"segments": ["fc00:0:1::d4"]}]},
                              {"bsid": "fc00:0:4:b::6", "segment_lists": [{"segments": ["fc00:0:1::d6"]}]}]),
        ("r1", "srv6_steering", [
            dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="10.2.0.0/24", bsid="fc00:0:1:b::a"),
            dict(ACME, traffic_class="best", class_id=1, prefix="10.2.0.0/24", bsid="fc00:0:1:b::b"),
            dict(ACME, traffic_class="gold", class_id=0, dscp=[46], prefix="fd00:2::/64", bsid="fc00:0:1:b::a6"),
            dict(ACME, traffic_class="best", class_id=1, prefix="fd00:2::/64", bsid="fc00:0:1:b::b6")]),
        ("e", "srv6_steering", [
            {"tenant": "acme", "tenant_id": 1, "traffic_class": "best", "class_id": 1, "ingress_interfaces": ["x0"],
             "prefix": "10.1.0.0/24", "bsid": "fc00:0:4:b::1"},
            {"tenant": "acme", "tenant_id": 1, "traffic_class": "best", "class_id": 1, "ingress_interfaces": ["x0"],
             "prefix": "fd00:1::/64", "bsid": "fc00:0:4:b::6"}]),
    ]
    for node, name, items in config:
        out = run(ns[node], name, items)
        assert out.changed and not out.warnings, (node, name, out.warnings)
    for node, name, items in config:
        assert not run(ns[node], name, items).changed, (node, name)


def counters(ns: Dict[str, str]) -> Dict[str, int]:
    out = {}
    for n in ("t1", "t2"):
        doc = json.loads(nsx(ns[n], "nft", "-j", "list", "table", "inet", "t4s_count").stdout)
        rules = [e["rule"] for e in doc["nftables"] if "rule" in e]
        out[n] = sum(x["counter"]["packets"] for r in rules for x in r["expr"] if "counter" in x)
    return out


def ping(ns: str, dst: str, count: int = 5, tos: Optional[str] = None) -> subprocess.CompletedProcess:
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2"] + (["-Q", tos] if tos else []) + [dst]
    return nsx(ns, *argv, check=False)


@pytest.mark.parametrize("dst", ["10.2.0.2", "fd00:2::2"], ids=["ipv4", "ipv6"])
def test_dscp_classes_take_different_segment_lists(net, dst):
    """EF (DSCP 46) goes through t1, everything else through t2: the End SID counters of
    the transit nodes prove which segment list each ping took; replies prove the path
    works end to end (egress End.DX4 / End.DX6, and steering back at the egress)."""
    start = counters(net)
    gold = ping(net["h1"], dst, tos="0xb8")  # TOS byte 0xb8 = DSCP 46
    assert gold.returncode == 0, gold.stdout + gold.stderr
    mid = counters(net)
    assert (mid["t1"] - start["t1"], mid["t2"] - start["t2"]) == (5, 0)
    best = ping(net["h1"], dst, tos="0x28")  # DSCP 10: no class claims it, so the default class
    assert best.returncode == 0, best.stdout + best.stderr
    end = counters(net)
    assert (end["t1"] - mid["t1"], end["t2"] - mid["t2"]) == (0, 5)


def test_tenant_traffic_without_steering_does_not_leak(net):
    """h3 is in r1's main table; the tenant's packets towards it match no steering rule
    and hit the tenant's prohibit rule (ICMP administratively prohibited) instead of
    being routed; r1 itself reaches h3, so the route is there."""
    control = ping(net["r1"], "10.7.0.2", count=1)
    assert control.returncode == 0, control.stdout
    leak = ping(net["h1"], "10.7.0.2", count=3)
    assert leak.returncode != 0
    assert "Packet filtered" in leak.stdout or "Communication prohibited" in leak.stdout, leak.stdout
    assert "0 received" in leak.stdout


# --- the Ansible modules ---------------------------------------------------------------------
def ansible(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(list(args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture()
def inventory(sandbox, tmp_path) -> str:
    subprocess.run([os.path.join(ROOT, "scripts", "link-collection")], check=True, capture_output=True)
    inv = {"all": {"hosts": {"sb": {"ansible_host": sandbox}},
                   "vars": {"ansible_connection": "galactic.npms.netns", "ansible_python_interpreter": sys.executable}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


@pytest.mark.slow
def test_ansible_adhoc_check_and_diff(sandbox, inventory):
    args = json.dumps({"config": [{"prefix": "fc00:0:5::/48", "via": "fc00:12::2", "interface": "a0"}]})
    before = snapshot(sandbox)
    proc = ansible("ansible", "-i", inventory, "sb", "-m", "galactic.npms.srv6_route", "-a", args, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CHANGED" in proc.stdout and '+{"interface": "a0", "prefix": "fc00:0:5::/48", "via": "fc00:12::2"}' in proc.stdout
    assert snapshot(sandbox) == before
    proc = ansible("ansible", "-i", inventory, "sb", "-m", "galactic.npms.srv6_route", "-a", args, "--diff")
    assert proc.returncode == 0 and "CHANGED" in proc.stdout, proc.stdout + proc.stderr
    assert "fc00:0:5::/48 via fc00:12::2 dev a0 proto 202" in nsx(sandbox, "ip", "-6", "route", "show").stdout
    proc = ansible("ansible", "-i", inventory, "sb", "-m", "galactic.npms.srv6_route", "-a", args)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout and "changed: false" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_ansible_playbook_all_four_modules(sandbox, inventory):
    play = os.path.join(os.path.dirname(os.path.abspath(__file__)), "srv6_linux_play.yml")
    proc = ansible("ansible-playbook", "-i", inventory, play)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    recap = proc.stdout[proc.stdout.index("PLAY RECAP"):]
    assert "failed=0" in recap and "unreachable=0" in recap
    # the play ends by deleting everything it made
    for name in ("srv6_localsid", "srv6_route", "srv6_policy", "srv6_steering"):
        assert gathered(sandbox, name) == [], name
