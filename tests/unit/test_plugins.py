# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The galactic.npms.paths lookup and filter, loaded the way Ansible loads them, return
exactly what npms.pce.compute_paths returns; the playbook and ansible-doc work."""

from __future__ import annotations

import json

import pytest

from npms.inventory import load_inventory
from npms.pce import compute_paths

from npms_testlib import COLLECTIONS, LAB, link_collection, run, write_tiny_inventory


@pytest.fixture(scope="module")
def loaders():
    link_collection()
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.plugins.loader import filter_loader, init_plugin_loader, lookup_loader  # pylint: disable=import-outside-toplevel

    init_plugin_loader([COLLECTIONS])
    lookup = lookup_loader.get("galactic.npms.paths", loader=DataLoader(), templar=None)
    filt = filter_loader.get("galactic.npms.paths")
    assert lookup is not None and filt is not None
    return lookup, filt.j2_function


@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


def core_window(inv):
    """Measurements that make the first core link slow and lossy in both directions, and
    one tenant-specific edge measurement."""
    core = [lk for lk in inv.links if lk.kind == "core"][0]
    tenant = sorted(inv.tenants)[0]
    edge = inv.tenants[tenant].edges[0]
    access = [lk for lk in inv.links if lk.kind == "access" and edge in lk.ends][0]
    pop = access.b if access.a == edge else access.a
    return [
        {"src": core.a, "dst": core.b, "latency_ms": 300.0, "jitter_ms": 9.0, "loss_pct": 5.0, "bandwidth_mbps": 50.0},
        {"src": core.b, "dst": core.a, "latency_ms": 300.0, "jitter_ms": 9.0, "loss_pct": 5.0, "bandwidth_mbps": 50.0},
        {"src": edge, "dst": pop, "tenant": tenant, "latency_ms": 80.0, "latency_p95_ms": 95.0, "loss_pct": 1.0},
    ]


def test_lookup_is_compute_paths(loaders, lab):
    lookup, _filt = loaders
    assert lookup.run([], {}, inventory=LAB) == compute_paths(lab).to_list()


def test_lookup_inventory_as_term(loaders, lab):
    lookup, _filt = loaders
    assert lookup.run([LAB], {}) == compute_paths(lab).to_list()


def test_filter_is_compute_paths(loaders, lab):
    _lookup, filt = loaders
    assert filt(LAB) == compute_paths(lab).to_list()


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_lookup_and_filter_with_measurements(loaders, lab, engine):
    lookup, filt = loaders
    window = core_window(lab)
    expected = compute_paths(lab, measurements=window, engine=engine).to_list()
    assert expected != compute_paths(lab, engine=engine).to_list()  # the window matters
    assert lookup.run([], {}, inventory=LAB, measurements=window, engine=engine) == expected
    assert filt(LAB, measurements=window, engine=engine) == expected


def test_measurements_from_file(loaders, lab, tmp_path):
    lookup, filt = loaders
    window = core_window(lab)
    mfile = tmp_path / "window.json"
    mfile.write_text(json.dumps(window))
    expected = compute_paths(lab, measurements=window).to_list()
    assert lookup.run([], {}, inventory=LAB, measurements=str(mfile)) == expected
    assert filt(LAB, measurements={"measurements": window}) == expected


def test_tenant_class_and_current(loaders, lab):
    lookup, filt = loaders
    tenant = sorted(lab.tenants)[-1]
    tclass = lab.tenants[tenant].traffic_classes[-1].name
    window = core_window(lab)
    current = compute_paths(lab, tenants=[tenant]).to_list()
    expected = compute_paths(lab, measurements=window, current=current, tenants=[tenant],
                             traffic_classes=[tclass]).to_list()
    assert expected and all(r["tenant"] == tenant and r["traffic_class"] == tclass for r in expected)
    assert lookup.run([], {}, inventory=LAB, measurements=window, tenant=tenant, traffic_class=tclass,
                      current=current) == expected
    assert filt(LAB, measurements=window, tenant=[tenant], traffic_class=[tclass], current=current) == expected


def test_inventory_as_mapping(loaders, lab):
    """The merged inventory mapping (what inventory_to_data writes) is accepted too."""
    from npms import inventory as inventory_mod  # pylint: disable=import-outside-toplevel

    to_data = getattr(inventory_mod, "inventory_to_data", None)
    if to_data is None:
        pytest.fail("npms.inventory.inventory_to_data is missing")
    _lookup, filt = loaders
    assert filt(to_data(lab)) == compute_paths(lab).to_list()


def test_errors_name_file_and_field(loaders, tmp_path):
    from ansible.errors import AnsibleFilterError, AnsibleLookupError  # pylint: disable=import-outside-toplevel

    lookup, filt = loaders
    broken = write_tiny_inventory(tmp_path, voice_sla="platinum")
    with pytest.raises(AnsibleLookupError, match=r"(?s)group_vars/all\.yml.*platinum"):
        lookup.run([], {}, inventory=broken)
    with pytest.raises(AnsibleFilterError, match=r"(?s)group_vars/all\.yml.*platinum"):
        filt(broken)
    with pytest.raises(AnsibleLookupError, match="latency_ms"):
        lookup.run([], {}, inventory=LAB, measurements=[{"src": "a", "dst": "b"}])
    with pytest.raises(AnsibleLookupError, match="no inventory"):
        lookup.run([], {})
    with pytest.raises(AnsibleFilterError, match="nobody"):
        filt(LAB, tenant="nobody")


def test_playbook_shows_lab_paths(lab):
    link_collection()
    proc = run(["ansible-playbook", "playbooks/paths.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = compute_paths(lab).to_list()
    first = rows[0]
    assert "%s %s %s->%s %s" % (first["tenant"], first["traffic_class"], first["src"], first["dst"],
                                first["verdict"]) in proc.stdout
    for tenant in lab.tenants:
        assert "- %s " % tenant in proc.stdout
    assert "failed=0" in proc.stdout
    assert "[WARNING]" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("plugin_type", ["lookup", "filter"])
def test_ansible_doc(plugin_type):
    link_collection()
    proc = run(["ansible-doc", "-t", plugin_type, "galactic.npms.paths"])
    assert proc.returncode == 0, proc.stderr
    assert "galactic.npms.paths" in proc.stdout
    assert "measurements" in proc.stdout
