# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab and example inventories load, round-trip, and have the designed topology."""

from __future__ import annotations

import copy
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest

from npms.inventory import inventory_from_data, inventory_to_data, load_inventory
from npms.model import Inventory, Link

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"
MINIMAL = ROOT / "inventory" / "examples" / "minimal"
SMALL = ROOT / "tests" / "fixtures" / "inventory" / "small.yml"
GOLDEN = ROOT / "tests" / "fixtures" / "inventory" / "lab.json"


@pytest.fixture(scope="module")
def lab() -> Inventory:
    return load_inventory(LAB)


# --------------------------------------------------------------------------------------
# A tiny path enumerator (the real engine is npms.pce): simple paths between two
# nodes whose intermediate hops are POPs, optionally avoiding countries.
# --------------------------------------------------------------------------------------
def _paths(
    inv: Inventory, src: str, dst: str, exclude: Sequence[str] = (), direct: bool = False
) -> Iterator[List[Link]]:
    def usable(lk: Link) -> bool:
        if lk.kind == "attachment" or (lk.kind == "direct" and not direct):
            return False
        countries = {inv.site_of(n).country for n in lk.ends} | set(lk.via_countries)
        return not countries & set(exclude)

    adj: Dict[str, List[Tuple[str, Link]]] = {}
    for lk in inv.links:
        if usable(lk):
            adj.setdefault(lk.a, []).append((lk.b, lk))
            adj.setdefault(lk.b, []).append((lk.a, lk))

    def walk(node: str, seen: Tuple[str, ...], acc: List[Link]) -> Iterator[List[Link]]:
        for nxt, lk in adj.get(node, []):
            if nxt in seen:
                continue
            if nxt == dst:
                yield acc + [lk]
            elif inv.nodes[nxt].role == "core":
                yield from walk(nxt, seen + (nxt,), acc + [lk])

    yield from walk(src, (src,), [])


def _ranked(inv: Inventory, src: str, dst: str, weight: str, **kw: object) -> List[Tuple[float, Tuple[str, ...]]]:
    out = []
    for path in _paths(inv, src, dst, **kw):  # type: ignore[arg-type]
        hops = [src]
        for lk in path:
            hops.append(lk.b if lk.a == hops[-1] else lk.a)
        out.append((round(sum(getattr(lk, weight) for lk in path), 6), tuple(hops)))
    return sorted(out)


def _best(inv: Inventory, src: str, dst: str, weight: str = "latency_ms", **kw: object) -> Tuple[str, ...]:
    ranked = _ranked(inv, src, dst, weight, **kw)
    assert ranked, f"no path {src} -> {dst}"
    if len(ranked) > 1:
        assert ranked[0][0] < ranked[1][0], f"tie for best {weight} path {src}->{dst}: {ranked[:2]}"
    return ranked[0][1]


# --------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------
def test_lab_nodes(lab: Inventory) -> None:
    assert [n.name for n in lab.nodes_by_role("core")] == [
        "core-bom",
        "core-fra",
        "core-lon",
        "core-nyc",
        "core-par",
        "core-sin",
    ]
    assert [n.name for n in lab.nodes_by_role("edge")] == ["edge-ber", "edge-bos", "edge-syd", "edge-tok"]
    assert [n.name for n in lab.nodes_by_role("customer")] == [
        "cust-acme-ber",
        "cust-acme-bos",
        "cust-acme-tok",
        "cust-globex-ber",
        "cust-globex-bos",
        "cust-globex-syd",
    ]
    countries = {lab.site_of(n.name).country for n in lab.nodes_by_role("core")}
    assert countries == {"GB", "DE", "FR", "IN", "SG", "US"}
    assert lab.site_of("core-bom").city == "Mumbai"
    assert all(n.dataplane == "linux" for n in lab.nodes.values())
    # every node has a loopback, core/edge a WAN address and a locator; node ids unique
    assert len({n.node_id for n in lab.nodes.values()}) == 16
    for n in lab.nodes.values():
        assert ipaddress.ip_address(n.loopback) in ipaddress.ip_network("100.64.0.0/10")
        if n.role != "customer":
            assert n.locator is not None and n.locator.subnet_of(ipaddress.ip_network("fcbb::/32"))
            assert ipaddress.ip_address(n.wan_address) in ipaddress.ip_network("198.51.100.0/24")
        else:
            assert n.locator is None and n.asn is not None and 64511 <= n.asn <= 64516


def test_lab_links(lab: Inventory) -> None:
    by_kind: Dict[str, List[Link]] = {}
    for lk in lab.links:
        by_kind.setdefault(lk.kind, []).append(lk)
    assert {k: len(v) for k, v in by_kind.items()} == {"core": 10, "access": 12, "direct": 5, "attachment": 6}
    access = {
        e: sorted(lk.b for lk in by_kind["access"] if lk.a == e)
        for e in ("edge-ber", "edge-tok", "edge-syd", "edge-bos")
    }
    assert access == {
        "edge-ber": ["core-fra", "core-lon", "core-par"],
        "edge-tok": ["core-bom", "core-nyc", "core-sin"],
        "edge-syd": ["core-bom", "core-nyc", "core-sin"],
        "edge-bos": ["core-lon", "core-nyc", "core-par"],
    }
    # direct links: exactly the pairs of edges that share a tenant
    pairs = {frozenset(p) for t in lab.tenants.values() for p in itertools.combinations(t.edges, 2)}
    assert {frozenset(lk.ends) for lk in by_kind["direct"]} == pairs
    assert max(lk.latency_ms for lk in lab.links) <= 40
    assert all(lk.loss_pct == 0 for lk in by_kind["core"])
    assert all(100 <= lk.bandwidth_mbps <= 1000 for lk in lab.links)


def test_lab_tenants(lab: Inventory) -> None:
    acme, globex = lab.tenants["acme"], lab.tenants["globex"]
    assert acme.edges == ("edge-ber", "edge-bos", "edge-tok")
    assert globex.edges == ("edge-ber", "edge-bos", "edge-syd")
    for t in (acme, globex):
        assert [(a.edge, a.customer) for a in t.attachments] == [
            (e, f"cust-{t.name}-{e.split('-')[1]}") for e in t.edges
        ]
        classes = {c.name: c for c in t.traffic_classes}
        assert sorted(classes) == ["af11", "af41", "be", "ef"]
        assert classes["ef"].dscp == (46,) and classes["ef"].fallback == "business"
        assert classes["af41"].dscp == (34,) and (classes["af41"].fec.data, classes["af41"].fec.parity) == (10, 2)
        assert lab.sla_profiles[classes["af41"].sla].mode == "lossless_fec"
        assert lab.sla_profiles[classes["af11"].sla].mode == "sustained_bandwidth"
        be = lab.sla_profiles[classes["be"].sla]
        assert classes["be"].default and be.mode == "lowest_cost" and be.allow_direct
    # overlapping customer prefixes across tenants, by design
    assert sorted(acme.prefixes) == sorted(globex.prefixes)
    assert "10.10.1.0/24" in acme.prefixes
    # acme's voice never traverses India
    assert lab.sla_profiles[acme.traffic_class("ef").sla].exclude_countries == ("IN",)
    assert lab.sla_profiles[globex.traffic_class("ef").sla].exclude_countries == ()


def test_lab_srv6_space_is_disjoint(lab: Inventory) -> None:
    nets = [n.locator for n in lab.nodes.values() if n.locator is not None]
    nets += [lab.tenant_edge_locator(t.name, e) for t in lab.tenants.values() for e in t.edges]
    assert all(not a.overlaps(b) for a, b in itertools.combinations(nets, 2))
    assert str(lab.tenant_edge_locator("acme", "edge-bos")) == "fcbb:1000:a::/48"
    assert lab.decap_sid("globex", "edge-syd") == "fcbb:2000:9::d4"


def test_lab_designed_paths(lab: Inventory) -> None:
    # Europe -> Singapore is fastest through Mumbai; excluding India changes the path.
    for pop in ("core-fra", "core-lon", "core-par"):
        assert "core-bom" in _best(lab, pop, "core-sin")
        assert "core-bom" not in _best(lab, pop, "core-sin", exclude=["IN"])
    assert _best(lab, "core-fra", "core-sin") == ("core-fra", "core-bom", "core-sin")
    assert _best(lab, "core-fra", "core-sin", exclude=["IN"]) == ("core-fra", "core-sin")
    assert _best(lab, "core-fra", "core-sin", weight="cost") == ("core-fra", "core-sin")
    # acme voice Berlin -> Tokyo
    assert _best(lab, "edge-ber", "edge-tok") == ("edge-ber", "core-fra", "core-bom", "edge-tok")
    assert _best(lab, "edge-ber", "edge-tok", exclude=["IN"]) == ("edge-ber", "core-fra", "core-sin", "edge-tok")
    # best-effort (lowest cost, direct allowed) takes the internet path
    assert _best(lab, "edge-ber", "edge-bos", weight="cost", direct=True) == ("edge-ber", "edge-bos")
    # no ties between best paths of any tenant's edge pair, so expectations are stable
    for t in lab.tenants.values():
        for a, b in itertools.combinations(t.edges, 2):
            for weight in ("latency_ms", "cost"):
                for excl in ((), ("IN",)):
                    _best(lab, a, b, weight=weight, exclude=excl)


def test_lab_golden(lab: Inventory) -> None:
    data = json.loads(json.dumps(inventory_to_data(lab)))
    if os.environ.get("NPMS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    assert data == json.loads(GOLDEN.read_text()), "lab inventory changed: NPMS_UPDATE_GOLDEN=1 pytest ... to accept"


# --------------------------------------------------------------------------------------
# Round trip, determinism, normalisation
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [LAB, MINIMAL, SMALL], ids=["lab", "minimal", "small"])
def test_round_trip(path: Path) -> None:
    inv = load_inventory(path)
    data = inventory_to_data(inv)
    again = inventory_from_data(json.loads(json.dumps(data)), inv.source)
    assert again == inv
    assert inventory_to_data(again) == data


def test_order_of_input_does_not_matter(lab: Inventory) -> None:
    data = inventory_to_data(lab)
    shuffled = copy.deepcopy(data)
    shuffled["hosts"] = dict(reversed(list(shuffled["hosts"].items())))
    shuffled["npms_links"] = [dict(lk, a=lk["b"], b=lk["a"]) for lk in reversed(shuffled["npms_links"])]
    for t in shuffled["npms_tenants"].values():
        t["edges"].reverse()
        t["attachments"].reverse()
        t["traffic_classes"] = dict(reversed(list(t["traffic_classes"].items())))
        for a in t["attachments"]:
            a["prefixes"].reverse()
    assert inventory_from_data(shuffled, lab.source) == lab


def test_links_are_normalised(lab: Inventory) -> None:
    for lk in lab.links:
        roles = (lab.nodes[lk.a].role, lab.nodes[lk.b].role)
        expected = {
            "core": ("core", "core"),
            "access": ("edge", "core"),
            "direct": ("edge", "edge"),
            "attachment": ("edge", "customer"),
        }[lk.kind]
        assert roles == expected
        if roles[0] == roles[1]:
            assert lk.a < lk.b
    kinds = [lk.kind for lk in lab.links]
    assert kinds == sorted(kinds, key=["core", "access", "direct", "attachment"].index)


def test_kind_is_inferred_and_defaults_apply() -> None:
    inv = load_inventory(MINIMAL)
    data = inventory_to_data(inv)
    for lk in data["npms_links"]:
        del lk["kind"], lk["jitter_ms"]
    again = inventory_from_data(data, "x")
    assert [lk.kind for lk in again.links] == [lk.kind for lk in inv.links]
    assert again.pce == inv.pce and inv.pce.backup == "node"
    # lossless_fec without an explicit fec block gets the model's default block
    small = inventory_to_data(load_inventory(SMALL))
    small["npms_tenants"]["x"]["traffic_classes"]["af41"]["fec"] = None
    af41 = inventory_from_data(small, "x").tenants["x"].traffic_class("af41")
    assert (af41.fec.data, af41.fec.parity) == (10, 2)


def test_minimal_example() -> None:
    inv = load_inventory(MINIMAL)
    assert len(inv.nodes_by_role("core")) == 2 and len(inv.nodes_by_role("edge")) == 2
    assert list(inv.tenants) == ["shop"]
    default = [c for c in inv.tenants["shop"].traffic_classes if c.default]
    assert [c.name for c in default] == ["default"] and default[0].dscp == ()


def test_multihomed_customer_may_repeat_its_prefix() -> None:
    data = inventory_to_data(load_inventory(SMALL))
    data["npms_links"].append({"a": "edge-2", "b": "cust-x-1", "kind": "attachment"})
    data["npms_tenants"]["x"]["attachments"].append(
        {"edge": "edge-2", "customer": "cust-x-1", "prefixes": ["10.0.1.0/24"]}
    )
    inv = inventory_from_data(data, "x")
    assert [(a.edge, a.customer) for a in inv.tenants["x"].attachments] == [
        ("edge-1", "cust-x-1"),
        ("edge-2", "cust-x-1"),
        ("edge-2", "cust-x-2"),
    ]


# --------------------------------------------------------------------------------------
# Fidelity with Ansible itself
# --------------------------------------------------------------------------------------
def _ansible_list(inventory: Path, tmp_path: Path) -> str:
    exe = Path(sys.executable).with_name("ansible-inventory")
    found = str(exe) if exe.exists() else shutil.which("ansible-inventory")
    if not found:
        pytest.fail("ansible-inventory is not installed (it comes with ansible-core: make setup)", pytrace=False)
    cfg = tmp_path / "ansible.cfg"  # isolate from the repository's and the user's config
    cfg.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg))
    return subprocess.run(
        [found, "-i", str(inventory), "--list"], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    ).stdout


@pytest.mark.slow
def test_same_as_ansible_inventory_list(tmp_path: Path, lab: Inventory) -> None:
    """Ansible's own merge of the lab (ansible-inventory --list) gives the same model."""
    out = _ansible_list(LAB, tmp_path)
    listed = tmp_path / "list.json"
    listed.write_text(out)
    assert inventory_to_data(load_inventory(listed)) == inventory_to_data(lab)


@pytest.mark.slow
def test_group_precedence_matches_ansible(tmp_path: Path) -> None:
    """all < parent group < child group < host_vars, exactly as Ansible merges them."""
    inv_dir = tmp_path / "inv"
    shutil.copytree(MINIMAL, inv_dir)
    hosts = (inv_dir / "hosts.yml").read_text()
    hosts = hosts.replace(
        "    core:\n      hosts:\n",
        "    core:\n      children:\n        core_uk:\n          hosts:\n"
        '            core-lon: {npms_site: lon, npms_node_id: 2, npms_locator: "fcbb:0:2::/48", '
        "npms_wan_address: 192.0.2.2}\n      hosts:\n",
    )
    hosts = hosts.replace(
        '        core-lon: {npms_site: lon, npms_node_id: 2, npms_locator: "fcbb:0:2::/48", '
        "npms_wan_address: 192.0.2.2}\n    edge:",
        "    edge:",
    )
    (inv_dir / "hosts.yml").write_text(hosts)
    (inv_dir / "group_vars" / "core.yml").write_text("npms_dataplane: vpp\nnpms_loopback: 100.64.9.9\n")
    (inv_dir / "group_vars" / "core_uk.yml").write_text("npms_dataplane: linux\n")
    (inv_dir / "host_vars").mkdir()
    (inv_dir / "host_vars" / "core-ams.yml").write_text("npms_loopback: 100.64.0.1\n")
    ours = load_inventory(inv_dir)
    assert ours.nodes["core-lon"].role == "core"
    assert (ours.nodes["core-lon"].dataplane, ours.nodes["core-lon"].loopback) == ("linux", "100.64.9.9")
    assert (ours.nodes["core-ams"].dataplane, ours.nodes["core-ams"].loopback) == ("vpp", "100.64.0.1")
    out = _ansible_list(inv_dir, tmp_path)
    theirs = inventory_from_data(json.loads(out), "list")
    assert inventory_to_data(theirs) == inventory_to_data(ours)
