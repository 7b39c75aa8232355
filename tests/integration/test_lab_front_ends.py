# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real lab (`npms lab up`, the conftest's `lab` fixture) through both front ends:
`ansible -m ping` with the inventory the lab writes reaches every node and host through
galactic.npms.netns, and a Nornir task with NpmsInventory(lab_state=<prefix>) runs on
every node inside its namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from nornir import InitNornir

from npms.inventory import load_inventory
from npms_nornir.tasks import command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventory", "lab")
BIN = os.path.dirname(sys.executable)


def test_ansible_ping_reaches_every_lab_namespace(lab):
    tree = tempfile.mkdtemp(prefix="tc-tree-")
    try:
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree", ANSIBLE_CALLBACK_TREE_DIR=tree,
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        proc = subprocess.run(["ansible", "-i", INVENTORY, "-i", lab.ansible_file, "all", "-m", "ansible.builtin.ping"],
                              cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results = {}
        for host in os.listdir(tree):
            with open(os.path.join(tree, host), encoding="utf-8") as fh:
                results[host] = json.load(fh)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    with open(lab.lab_file, encoding="utf-8") as fh:
        state = json.load(fh)
    assert set(results) == set(state["nodes"]) | set(state["hosts"])
    assert all(r.get("ping") == "pong" for r in results.values())


def test_nornir_task_runs_in_every_lab_node(lab):
    inv = load_inventory(INVENTORY)
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": lab.prefix}},
                    runner={"plugin": "threaded", "options": {"num_workers": 16}}, logging={"enabled": False})
    result = nr.run(task=command, argv=["ip", "-o", "addr", "show", "dev", "lo"], read_only=True)
    assert not result.failed, {h: str(r[0].exception) for h, r in result.items() if r.failed}
    assert set(result) == set(inv.nodes)
    for name, node in inv.nodes.items():
        # each namespace shows its own loopback on lo, and no other node's
        assert f" {node.loopback}/" in result[name][0].result
        others = [n.loopback for m, n in inv.nodes.items() if m != name and n.loopback]
        assert not any(f" {other}/" in result[name][0].result for other in others)
