# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Nornir front end without namespaces: NpmsInventory builds hosts and groups from
the same loader Ansible uses, lab_state moves hosts onto the netns connection, and the
command task honours dry run (run here through a local runner connection).
Entering real namespaces is tests/integration/test_nornir_netns.py."""

from __future__ import annotations

import json

import npms_lab.core
import pytest
from nornir import InitNornir
from nornir.core.filter import F
from nornir.core.plugins.connections import ConnectionPluginRegister

from npms.inventory import load_inventory
from npms.runner import LocalRunner
from npms_nornir import inventory as nornir_inventory
from npms_nornir.connections import NetnsConnection, NetnsConnectionError
from npms_nornir.tasks import command

from npms_testlib import LAB, write_tiny_inventory


def init(**options):
    return InitNornir(
        inventory={"plugin": "NpmsInventory", "options": options},
        runner={"plugin": "threaded", "options": {"num_workers": 4}},
        logging={"enabled": False},
    )


def fake_lab(tmp_path, inv, prefix="tcu-", drop=(), hosts=None):
    state = {
        "prefix": prefix,
        "inventory": inv.source,
        "state_dir": str(tmp_path),
        "nodes": {n: {"netns": prefix + n, "role": node.role} for n, node in inv.nodes.items() if n not in drop},
        "hosts": hosts or {},
        "links": [],
    }
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(state))
    return path


def test_hosts_and_groups_carry_the_model():
    inv = load_inventory(LAB)
    nr = init(inventory=LAB)
    assert set(nr.inventory.hosts) == set(inv.nodes)
    for role in ("core", "edge", "customer"):
        assert set(nr.filter(F(groups__contains=role)).inventory.hosts) == {n.name for n in inv.nodes_by_role(role)}
    edge = inv.nodes_by_role("edge")[0]
    host = nr.inventory.hosts[edge.name]
    assert (host["role"], host["site"], host["node_id"], host["locator"]) == ("edge", edge.site, edge.node_id, str(edge.locator))
    assert host.hostname == edge.wan_address
    # site data comes through the site group, as Nornir users expect
    assert host["country"] == inv.sites[edge.site].country
    tenant = next(t for t in inv.tenants.values() if edge.name in t.edges)
    assert host.has_parent_group(f"tenant_{tenant.name}")
    assert {lk["peer"] for lk in host["links"]} == {lk.b if lk.a == edge.name else lk.a for lk in inv.links_of(edge.name)}
    assert "npms_connection" not in host.data and host.connection_options == {}
    assert nornir_inventory.inventory_model(host) == inv


def test_invalid_inventory_fails_with_file_and_field(tmp_path):
    broken = write_tiny_inventory(tmp_path, voice_sla="platinum")
    with pytest.raises(ValueError, match=r"(?s)group_vars/all\.yml.*platinum"):
        init(inventory=broken)


def test_lab_state_puts_every_host_in_its_namespace(tmp_path):
    inv = load_inventory(LAB)
    hosts = {"h-x": {"netns": "tcu-h-x", "behind": inv.nodes_by_role("customer")[0].name, "addresses": ["10.9.9.2/24"]}}
    state = fake_lab(tmp_path, inv, hosts=hosts)
    nr = init(lab_state=str(state))  # the inventory comes from the lab state
    assert set(nr.inventory.hosts) == set(inv.nodes)
    for name, host in nr.inventory.hosts.items():
        assert host.hostname == "tcu-" + name
        assert host["netns"] == "tcu-" + name and host["npms_connection"] == "netns"
        params = host.get_connection_parameters("netns")
        assert params.extras == {"netns": "tcu-" + name}
    with_hosts = init(lab_state=str(tmp_path), lab_hosts=True)  # the directory works too
    assert with_hosts.inventory.hosts["h-x"]["behind"] == hosts["h-x"]["behind"]
    assert with_hosts.inventory.hosts["h-x"].hostname == "tcu-h-x"


def test_lab_state_by_prefix(tmp_path, monkeypatch):
    inv = load_inventory(LAB)
    lab_dir = tmp_path / "tcu-"
    lab_dir.mkdir()
    fake_lab(lab_dir, inv)
    monkeypatch.setattr(npms_lab.core, "RUN_DIR", str(tmp_path))
    nr = init(inventory=LAB, lab_state="tcu-")
    assert all(h.hostname.startswith("tcu-") for h in nr.inventory.hosts.values())
    with pytest.raises(nornir_inventory.LabStateError, match="is the lab up"):
        init(inventory=LAB, lab_state="tcu-nothing-")


def test_lab_state_from_another_inventory_is_refused(tmp_path):
    inv = load_inventory(LAB)
    node = sorted(inv.nodes)[0]
    state = fake_lab(tmp_path, inv, drop=(node,))
    with pytest.raises(nornir_inventory.LabStateError, match=f"no namespace for node.*{node}"):
        init(inventory=LAB, lab_state=str(state))


class LocalConnection:
    """A Nornir connection whose runner runs commands on this machine (tests only)."""

    def __init__(self):
        self.connection = None

    def open(self, hostname, username, password, port, platform, extras=None, configuration=None):
        self.connection = LocalRunner()

    def close(self):
        self.connection = None


@pytest.fixture()
def local_nr():
    ConnectionPluginRegister.register("npms_test_local", LocalConnection)
    nr = init(inventory=LAB).filter(F(groups__contains="core"))
    for host in nr.inventory.hosts.values():
        host.data["npms_connection"] = "npms_test_local"
    yield nr
    ConnectionPluginRegister.deregister("npms_test_local")


def test_command_runs_and_reports(local_nr, tmp_path):
    marker = tmp_path / "ran"
    result = local_nr.run(task=command, argv=["sh", "-c", f'echo "$0" >> {marker}; echo out; echo err >&2', "x"])
    assert not result.failed
    for res in result.values():
        assert (res[0].result, res[0].stdout, res[0].stderr, res[0].rc, res[0].changed) == ("out\n", "out\n", "err\n", 0, True)
    assert len(marker.read_text().splitlines()) == len(local_nr.inventory.hosts)


def test_command_honours_dry_run(local_nr, tmp_path):
    marker = tmp_path / "ran"
    result = local_nr.run(task=command, argv=["touch", str(marker)], dry_run=True)
    assert not result.failed and not marker.exists()
    assert all(r[0].dry_run and r[0].rc is None and not r[0].changed for r in result.values())
    # a read-only command still runs in a dry run, and never reports a change
    result = local_nr.run(task=command, argv="echo looked", read_only=True, dry_run=True)
    assert all(r[0].result == "looked\n" and not r[0].changed for r in result.values())


def test_command_failure_keeps_output(local_nr):
    result = local_nr.run(task=command, argv=["sh", "-c", "echo partial; echo 'RTNETLINK answers: File exists' >&2; exit 2"])
    assert result.failed
    res = next(iter(result.values()))[0]
    assert (res.rc, res.stdout) == (2, "partial\n")
    assert "File exists" in str(res.exception)
    tolerated = local_nr.run(task=command, argv=["false"], check=False)
    assert not tolerated.failed and all(r[0].rc == 1 and not r[0].changed for r in tolerated.values())


def test_netns_connection_refuses_a_missing_namespace():
    conn = NetnsConnection()
    with pytest.raises(NetnsConnectionError, match="'tcu-no-such-ns' does not exist"):
        conn.open(hostname="x", extras={"netns": "tcu-no-such-ns"})
    with pytest.raises(NetnsConnectionError, match="not open"):
        conn.connection  # pylint: disable=pointless-statement


def test_plugins_are_registered_as_entry_points():
    from nornir.core.plugins.inventory import InventoryPluginRegister  # pylint: disable=import-outside-toplevel

    ConnectionPluginRegister.auto_register()
    InventoryPluginRegister.auto_register()
    assert ConnectionPluginRegister.available["netns"] is NetnsConnection
    assert InventoryPluginRegister.available["NpmsInventory"] is nornir_inventory.NpmsInventory
