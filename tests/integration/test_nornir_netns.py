# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir over the lab inventory with a lab state that points every node at a namespace
this test made (tcn<pid>-<node>, each with its own address): the netns connection runs
each task in its host's namespace, dry run leaves a namespace alone, and a host whose
namespace is gone fails with the reason.  Only the test's own namespaces are touched.
Needs root (ip netns)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest
from nornir import InitNornir
from nornir.core.filter import F

from npms.inventory import load_inventory
from npms.runner import NetnsRunner
from npms_nornir.connections import get_runner
from npms_nornir.tasks import command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "inventory", "lab")
PREFIX = "tcn%d-" % os.getpid()
HOST = "h-tc"

pytestmark = pytest.mark.usefixtures("needs_root")


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


def address_of(node_id):
    return str(ipaddress.ip_address("198.18.0.0") + node_id)


@pytest.fixture(scope="module")
def fake_lab(tmp_path_factory):
    inv = load_inventory(LAB)
    namespaces = {name: PREFIX + name for name in inv.nodes}
    namespaces[HOST] = PREFIX + HOST
    made = []
    try:
        for name, ns in namespaces.items():
            sh("ip", "netns", "add", ns)
            made.append(ns)
            node_id = inv.nodes[name].node_id if name in inv.nodes else 9999
            sh("ip", "-n", ns, "link", "add", "tcid0", "type", "veth", "peer", "name", "tcid1")
            sh("ip", "-n", ns, "addr", "add", address_of(node_id) + "/32", "dev", "tcid0")
        state_dir = tmp_path_factory.mktemp("lab")
        state = {
            "prefix": PREFIX,
            "inventory": LAB,
            "state_dir": str(state_dir),
            "nodes": {n: {"netns": namespaces[n], "role": node.role} for n, node in inv.nodes.items()},
            "hosts": {HOST: {"netns": namespaces[HOST], "behind": inv.nodes_by_role("customer")[0].name,
                             "addresses": [address_of(9999) + "/32"]}},
            "links": [],
        }
        (state_dir / "lab.json").write_text(json.dumps(state))
        yield {"inv": inv, "state": str(state_dir / "lab.json"), "dir": state_dir}
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def init(**options):
    return InitNornir(inventory={"plugin": "NpmsInventory", "options": options},
                      runner={"plugin": "threaded", "options": {"num_workers": 8}}, logging={"enabled": False})


def test_a_task_runs_on_every_node_in_its_namespace(fake_lab):
    nr = init(inventory=LAB, lab_state=fake_lab["state"])
    result = nr.run(task=command, argv=["ip", "-o", "addr", "show"], read_only=True)
    assert not result.failed, {h: str(r[0].exception) for h, r in result.items() if r.failed}
    assert set(result) == set(fake_lab["inv"].nodes)
    for name, node in fake_lab["inv"].nodes.items():
        out = result[name][0].result
        assert address_of(node.node_id) + "/32" in out
        others = [address_of(n.node_id) + "/32" for m, n in fake_lab["inv"].nodes.items() if m != name]
        assert not any(a in out for a in others)
        assert not result[name][0].changed


def test_lab_hosts_are_reachable_too(fake_lab):
    nr = init(lab_state=fake_lab["state"], lab_hosts=True).filter(F(groups__contains="lab_host"))
    result = nr.run(task=command, argv="ip -o addr show dev tcid0", read_only=True)
    assert not result.failed and address_of(9999) in result[HOST][0].result


def test_the_connection_is_the_core_librarys_netns_runner(fake_lab):
    nr = init(lab_state=fake_lab["state"]).filter(name=sorted(fake_lab["inv"].nodes)[0])

    def runner_task(task):
        runner = get_runner(task)
        return runner

    result = nr.run(task=runner_task)
    runner = next(iter(result.values()))[0].result
    assert isinstance(runner, NetnsRunner) and runner.netns == PREFIX + sorted(fake_lab["inv"].nodes)[0]


def test_dry_run_leaves_the_namespace_alone(fake_lab):
    name = sorted(fake_lab["inv"].nodes)[0]
    nr = init(lab_state=fake_lab["state"]).filter(name=name)
    add = ["ip", "link", "add", "tcdry0", "type", "veth", "peer", "name", "tcdry1"]
    runner = NetnsRunner(PREFIX + name)
    result = nr.run(task=command, argv=add, dry_run=True)
    assert not result.failed and result[name][0].dry_run
    assert not runner.run(["ip", "link", "show", "tcdry0"], check=False).ok
    result = nr.run(task=command, argv=add)
    assert not result.failed and result[name][0].changed
    assert runner.run(["ip", "link", "show", "tcdry0"], check=False).ok
    again = nr.run(task=command, argv=add)  # the kernel refuses a second one: the result says why
    assert again.failed and "File exists" in str(again[name][0].exception)


def test_a_vanished_namespace_fails_that_host_only(fake_lab):
    state = json.loads(open(fake_lab["state"], encoding="utf-8").read())
    gone = sorted(fake_lab["inv"].nodes)[1]
    state["nodes"][gone]["netns"] = PREFIX + "vanished"
    path = fake_lab["dir"] / "vanished.json"
    path.write_text(json.dumps(state))
    result = init(lab_state=str(path)).run(task=command, argv=["true"], read_only=True)
    assert set(result.failed_hosts) == {gone}
    assert f"'{PREFIX}vanished' does not exist" in str(result[gone][0].exception)
