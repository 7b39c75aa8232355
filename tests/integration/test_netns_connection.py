# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""galactic.npms.netns against real network namespaces: ansible ad-hoc commands and a
playbook run inside the namespace each host names, files go back and forth, and a
missing namespace is reported as such.

The test makes its own namespaces (tc-<pid>-*, each with an interface and address of its
own) and removes exactly those; other namespaces on the machine are never touched.
Needs root (ip netns)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PREFIX = "tc-%d-" % os.getpid()
HOSTS = {"n0": "198.18.77.10", "n1": "198.18.77.11", "n2": "198.18.77.12"}

pytestmark = pytest.mark.usefixtures("needs_root")


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


def ansible(*args, pipelining=False, **extra_env):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PIPELINING="1" if pipelining else "0", PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
               **extra_env)
    return subprocess.run(list(args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300, check=False)


def adhoc(inventory, pattern, module, module_args=None, pipelining=False):
    """`ansible PATTERN -m MODULE`: (process, {host: result}); the results come from the
    tree callback (one JSON file per host), not from parsing the screen output."""
    tree = tempfile.mkdtemp(prefix="tc-tree-")
    try:
        cmd = ["ansible", "-i", inventory, pattern, "-m", module] + (["-a", module_args] if module_args else [])
        proc = ansible(*cmd, pipelining=pipelining, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                       ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree", ANSIBLE_CALLBACK_TREE_DIR=tree)
        results = {}
        for host in os.listdir(tree):
            with open(os.path.join(tree, host), encoding="utf-8") as fh:
                results[host] = json.load(fh)
        return proc, results
    finally:
        shutil.rmtree(tree, ignore_errors=True)


@pytest.fixture(scope="module")
def netns_hosts(tmp_path_factory):
    """Three namespaces, each with a veth `tcid0` holding its host's address, and an
    inventory that reaches them through galactic.npms.netns."""
    subprocess.run([os.path.join(ROOT, "scripts", "link-collection")], check=True, capture_output=True)
    made = []
    try:
        for host, addr in HOSTS.items():
            ns = PREFIX + host
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "add", "tcid0", "type", "veth", "peer", "name", "tcid1")
            sh("ip", "-n", ns, "addr", "add", addr + "/32", "dev", "tcid0")
            sh("ip", "-n", ns, "link", "set", "tcid0", "up")
        base = tmp_path_factory.mktemp("netns")
        hosts = {
            "n0": {"ansible_host": PREFIX + "n0", "tc_addr": HOSTS["n0"]},
            "n1": {"ansible_host": PREFIX + "n1", "tc_addr": HOSTS["n1"]},
            # ansible_netns_name wins over ansible_host
            "n2": {"ansible_host": PREFIX + "n0", "ansible_netns_name": PREFIX + "n2", "tc_addr": HOSTS["n2"]},
        }
        inventory = {
            "all": {
                "vars": {"ansible_connection": "galactic.npms.netns", "ansible_python_interpreter": sys.executable},
                "children": {
                    "ok": {"hosts": hosts},
                    "gone": {"hosts": {"missing": {"ansible_host": PREFIX + "missing"}}},
                },
            }
        }
        path = base / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory))
        yield {"inventory": str(path), "dir": base}
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.mark.parametrize("pipelining", [False, True], ids=["files", "pipelining"])
def test_ping(netns_hosts, pipelining):
    proc, results = adhoc(netns_hosts["inventory"], "ok", "ansible.builtin.ping", pipelining=pipelining)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(results) == set(HOSTS)
    assert all(r.get("ping") == "pong" for r in results.values()), results


def test_commands_run_inside_each_hosts_namespace(netns_hosts):
    proc, results = adhoc(netns_hosts["inventory"], "ok", "ansible.builtin.command", "ip -o addr show")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host, addr in HOSTS.items():
        out = results[host]["stdout"]
        assert addr + "/32" in out, out
        others = [a for h, a in HOSTS.items() if h != host]
        assert not any(a + "/32" in out for a in others), out


def test_files_round_trip(netns_hosts):
    out = netns_hosts["dir"] / "copied"
    fetched = netns_hosts["dir"] / "fetched"
    out.mkdir()
    proc, results = adhoc(netns_hosts["inventory"], "ok", "ansible.builtin.copy",
                          "content='{{ inventory_hostname }} in {{ ansible_netns_name | default(ansible_host) }}\n' "
                          "dest=%s/{{ inventory_hostname }}.txt mode=0644" % out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(r["changed"] for r in results.values())
    for host in HOSTS:
        assert (out / f"{host}.txt").read_text() == f"{host} in {PREFIX}{host}\n"
    proc, results = adhoc(netns_hosts["inventory"], "ok", "ansible.builtin.fetch",
                          "src=%s/{{ inventory_hostname }}.txt dest=%s/ flat=false" % (out, fetched))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in HOSTS:
        copy = fetched / host / str(out).lstrip("/") / f"{host}.txt"
        assert copy.read_text() == (out / f"{host}.txt").read_text()


def test_missing_namespace_is_unreachable_with_the_reason(netns_hosts):
    proc, results = adhoc(netns_hosts["inventory"], "missing", "ansible.builtin.ping")
    assert proc.returncode != 0
    assert results["missing"].get("unreachable") is True
    assert f"network namespace '{PREFIX}missing' does not exist" in results["missing"]["msg"]
    assert "npms lab up" in results["missing"]["msg"]


PLAY = """\
- name: Facts and commands of namespaced hosts
  hosts: ok
  gather_facts: true
  gather_subset: [network]
  tasks:
    - name: Facts were gathered inside the namespace
      ansible.builtin.assert:
        that:
          - tc_addr in ansible_facts.all_ipv4_addresses
          - ansible_facts.interfaces | sort == ['lo', 'tcid0', 'tcid1']

    - name: Read the address with iproute2
      ansible.builtin.command: ip -j -4 addr show dev tcid0
      register: addr
      changed_when: false

    - name: It is this host's address
      ansible.builtin.assert:
        that: (addr.stdout | from_json)[0].addr_info[0].local == tc_addr

    - name: Write a file
      ansible.builtin.copy:
        content: "{{ tc_addr }}\\n"
        dest: "{{ out }}/{{ inventory_hostname }}.addr"
        mode: "0644"

    - name: Read it back
      ansible.builtin.slurp:
        src: "{{ out }}/{{ inventory_hostname }}.addr"
      register: back

    - name: Same content
      ansible.builtin.assert:
        that: (back.content | b64decode) == tc_addr ~ '\\n'
"""


def test_playbook(netns_hosts):
    play = netns_hosts["dir"] / "play.yml"
    play.write_text(PLAY)
    out = netns_hosts["dir"] / "play-out"
    out.mkdir()
    proc = ansible("ansible-playbook", "-i", netns_hosts["inventory"], str(play), "-e", f"out={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in HOSTS:
        assert f"{host} " in proc.stdout and "failed=0" in proc.stdout
    recap = proc.stdout[proc.stdout.index("PLAY RECAP"):]
    assert "unreachable=0" in recap and "failed=1" not in recap
    assert {p.name for p in out.iterdir()} == {f"{h}.addr" for h in HOSTS}
