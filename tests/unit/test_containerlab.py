# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The containerlab export of the lab inventory: golden files, and what containerlab
would reject, checked offline (no Docker here).

The golden files are tests/fixtures/containerlab/lab.clab.yml and lab.netem.sh, made
from inventory/lab.  After an intended change to the inventory, the lab plan or the
export, regenerate them and review the diff:

    NPMS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_containerlab.py
"""

from __future__ import annotations

import copy
import ipaddress
import os
import sys
from pathlib import Path

import pytest
import yaml

from npms.inventory import load_inventory
from npms_lab import containerlab as clab
from npms_lab.plan import build_plan

from npms_testlib import LAB, ROOT, run

GOLDEN_DIR = Path(ROOT) / "tests" / "fixtures" / "containerlab"
GOLDEN_TOPO = GOLDEN_DIR / "lab.clab.yml"
GOLDEN_NETEM = GOLDEN_DIR / "lab.netem.sh"
SMALL = os.path.join(ROOT, "tests", "fixtures", "inventory", "small.yml")


@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


@pytest.fixture(scope="module")
def topo(lab):
    return clab.topology(lab)


def golden(path: Path, text: str) -> None:
    if os.environ.get("NPMS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: NPMS_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.name} differs from the export: after an intended change, NPMS_UPDATE_GOLDEN=1 pytest tests/unit/test_containerlab.py"
    )


def test_topology_matches_golden(lab):
    golden(GOLDEN_TOPO, clab.topology_yaml(lab, source="inventory/lab"))


def test_netem_script_matches_golden(lab):
    golden(GOLDEN_NETEM, clab.netem_script(lab))


@pytest.mark.parametrize("inventory", [LAB, SMALL], ids=["lab", "small"])
def test_containerlab_would_accept_it(inventory):
    inv = load_inventory(inventory)
    topo = yaml.safe_load(clab.topology_yaml(inv))
    assert clab.check_topology(topo) == []


def test_one_node_per_lab_namespace_and_one_link_per_lab_link(lab, topo):
    plan = build_plan(lab)
    nodes = topo["topology"]["nodes"]
    assert set(nodes) == {n.name for n in plan.nodes}
    assert set(lab.nodes) <= set(nodes)
    pairs = [tuple(ep.split(":")[0] for ep in link["endpoints"]) for link in topo["topology"]["links"]]
    for lk in lab.links:
        assert pairs.count((lk.a, lk.b)) == 1, f"{lk.a}~{lk.b}"
    # Interface names are the namespace lab's, so playbooks address the same interfaces.
    first = plan.links[0]
    assert topo["topology"]["links"][0]["endpoints"] == [f"{first.a}:{first.a_port.ifname}", f"{first.b}:{first.b_port.ifname}"]


def test_kinds_follow_dataplane_and_function():
    inv = load_inventory(SMALL)
    nodes = clab.topology(inv)["topology"]["nodes"]
    vpp = [n for n, node in inv.nodes.items() if node.dataplane == "vpp"]
    assert vpp, "the small fixture has a VPP node"
    for name, node in nodes.items():
        if name in vpp:
            assert (node["kind"], node["image"]) == ("fdio_vpp", clab.DEFAULT_IMAGES["vpp"])
            assert "exec" not in node  # VPP owns its interfaces
        elif name in inv.nodes and inv.nodes[name].role in ("edge", "customer"):
            assert (node["kind"], node["image"]) == ("linux", clab.DEFAULT_IMAGES["frr"])
        else:
            assert (node["kind"], node["image"]) == ("linux", clab.DEFAULT_IMAGES["linux"])
    custom = clab.topology(inv, images={"frr": "frr:local"})["topology"]["nodes"]
    assert {n["image"] for n in custom.values() if n["labels"].get("npms-frr") == "true"} == {"frr:local"}


def test_management_addresses_follow_node_id(lab, topo):
    nodes = topo["topology"]["nodes"]
    for name, node in lab.nodes.items():
        assert nodes[name]["mgmt-ipv4"] == str(ipaddress.ip_address("172.31.0.0") + node.node_id)
    host = next(n for n in nodes.values() if n["labels"]["npms-role"] == "host")
    behind = lab.nodes[host["labels"]["npms-behind"]]
    assert host["mgmt-ipv4"] == str(ipaddress.ip_address("172.31.128.0") + behind.node_id)
    with pytest.raises(clab.ContainerlabError, match="larger subnet"):
        clab.topology(lab, mgmt_ipv4="172.31.0.0/29")


def test_linux_nodes_get_the_lab_addresses_and_routes(lab, topo):
    plan = build_plan(lab)
    for lnode in plan.nodes:
        execs = topo["topology"]["nodes"][lnode.name].get("exec", [])
        for addr in lnode.lo_addresses:
            assert f"ip addr add {addr} dev lo" in execs
        assert len([c for c in execs if " route replace " in c]) == len(lnode.routes)
    # eth0 is containerlab's management interface: the hosts' LAN port moves to eth1
    host = next(n for n in plan.nodes if n.role == "host")
    execs = topo["topology"]["nodes"][host.name]["exec"]
    assert any(c.startswith("ip route replace default via") and c.endswith("dev eth1") for c in execs)
    assert not any(ep.endswith(":eth0") for link in topo["topology"]["links"] for ep in link["endpoints"])


def test_impairments_travel_with_the_wan_links(lab, topo):
    wan = [lk for lk in lab.links if lk.kind in ("core", "access", "direct")]
    with_vars = [link for link in topo["topology"]["links"] if "vars" in link]
    assert len(with_vars) == len(wan)
    for lk, link in zip(wan, with_vars):
        assert link["vars"]["npms"] == {"delay_ms": lk.latency_ms, "jitter_ms": lk.jitter_ms, "loss_pct": lk.loss_pct,
                                        "rate_mbps": lk.bandwidth_mbps}
    commands = clab.netem_commands(lab)
    assert len(commands) == 2 * len(wan)
    lossy = next(lk for lk in wan if lk.loss_pct > 0)
    port = next(pl.a_port.ifname for pl in build_plan(lab).links if (pl.a, pl.b) == (lossy.a, lossy.b))
    cmd = next(c for c in commands if c[5:8] == [f"clab-npms-{lossy.a}", "-i", port])
    assert cmd[cmd.index("--delay") + 1] == f"{lossy.latency_ms:g}ms"
    assert cmd[cmd.index("--loss") + 1] == f"{lossy.loss_pct:g}"
    assert cmd[cmd.index("--rate") + 1] == str(int(lossy.bandwidth_mbps * 1000))


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda t: t["topology"]["links"][1].update(endpoints=t["topology"]["links"][0]["endpoints"]), "already used"),
        (lambda t: t["topology"]["links"][0]["endpoints"].__setitem__(0, "core-bom:eth0"), "management interface"),
        (lambda t: t["topology"]["links"][0]["endpoints"].__setitem__(0, "nowhere:eth1"), "names no node"),
        (lambda t: t["topology"]["links"][0]["endpoints"].__setitem__(0, "core-bom:much-too-long-name"), "not a Linux interface"),
        (lambda t: t["topology"]["nodes"]["core-bom"].update(kind="docker"), "kind 'docker'"),
        (lambda t: t["topology"]["nodes"]["core-bom"].update(sysctl={}), "unknown property"),
        (lambda t: t["topology"]["nodes"]["core-bom"].update({"mgmt-ipv4": "10.0.0.1"}), "outside"),
        (lambda t: t["topology"]["nodes"]["core-bom"].update({"mgmt-ipv4": t["topology"]["nodes"]["core-fra"]["mgmt-ipv4"]}), "also"),
        (lambda t: t["topology"]["nodes"].update({"-bad": {"kind": "linux", "image": "x"}}), "container name"),
        (lambda t: t["topology"]["nodes"].update({"macvlan": {"kind": "linux", "image": "x"}}), "link type"),
        (lambda t: t.update(name="my-lab"), "lab name"),
    ],
)
def test_check_topology_names_what_containerlab_would_reject(topo, breakage, message):
    broken = copy.deepcopy(topo)
    breakage(broken)
    problems = clab.check_topology(broken)
    assert any(message in p for p in problems), problems


def test_cli_writes_topology_and_netem_script(tmp_path):
    out, netem = tmp_path / "lab.clab.yml", tmp_path / "lab.netem.sh"
    proc = run([os.path.join(os.path.dirname(sys.executable), "npms"), "containerlab", "inventory/lab",
                "-o", str(out), "--netem", str(netem)])
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(GOLDEN_TOPO.read_text())
    assert netem.read_text() == GOLDEN_NETEM.read_text()
    bad = run([os.path.join(os.path.dirname(sys.executable), "npms"), "containerlab", "inventory/lab", "--name", "a-b"])
    assert bad.returncode == 2 and "lab name" in bad.stderr
