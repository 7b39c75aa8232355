# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The probe step's notes (npms.loop.probe_summary): how the edges' tunnel targets were
probed, the same in both loops - ``npms loop`` (Nornir) and playbooks/control_loop.yml,
whose module galactic.npms.loop_step is run here in-process from ingest to report."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from npms.loop import probe_summary, read_probe_dir, read_samples_dir
from npms_testlib import COLLECTIONS, link_collection, write_tiny_inventory

TUNNEL = {"dst": "core-lon", "tenant": "shop", "via": "tunnel", "address": "fe80::2%wg1-1-2"}
STALE = {"dst": "core-ams", "tenant": "shop", "via": "underlay", "address": "192.0.2.1",
         "reason": "wg1-1-1: latest handshake 412 s ago"}
NO_IF = {"dst": "edge-ber", "tenant": "shop", "via": "underlay", "address": "192.0.2.12",
         "reason": "wg1-11-12: no such interface here"}
CORE = {"dst": "core-lon", "tenant": None, "via": "underlay", "address": "192.0.2.2"}  # no tunnel: not counted

SUMMARY_CASES = [
    # (results by node, via, underlay_because)
    ({"edge-dub": {"paths": [TUNNEL]}}, {"tunnel": 1}, []),
    ({"edge-dub": {"paths": [STALE]}}, {"underlay": 1},
     ["edge-dub -> core-ams (shop): wg1-1-1: latest handshake 412 s ago"]),
    ({"core-ams": {"paths": [CORE]}}, {}, []),
    ({"edge-dub": None, "edge-ber": RuntimeError("probe failed"), "core-ams": "not a result"}, {}, []),
    ({"edge-dub": {"paths": [TUNNEL, STALE, NO_IF]}, "core-ams": {"paths": [CORE]}, "edge-ber": None,
      "edge-xyz": {"samples": []}},
     {"tunnel": 1, "underlay": 2},
     ["edge-dub -> core-ams (shop): wg1-1-1: latest handshake 412 s ago",
      "edge-dub -> edge-ber (shop): wg1-11-12: no such interface here"]),
    ({"edge-ber": {"paths": [dict(NO_IF, dst="core-ams")]}, "edge-dub": {"paths": [NO_IF, TUNNEL, dict(TUNNEL, dst="core-ams")]}},
     {"tunnel": 2, "underlay": 2},
     ["edge-ber -> core-ams (shop): wg1-11-12: no such interface here",
      "edge-dub -> edge-ber (shop): wg1-11-12: no such interface here"]),
]


@pytest.mark.parametrize("results,via,because", SUMMARY_CASES,
                         ids=["tunnel", "underlay-with-reason", "underlay-without-reason", "failed-nodes", "mixed", "sorted"])
def test_probe_summary(results, via, because):
    assert probe_summary(results) == {"via": via, "underlay_because": because}


def _sample(src, dst, tenant):
    return {"src": src, "dst": dst, "tenant": tenant, "kind": "udp", "ts": time.time() - 5,
            "sent": 10, "received": 10, "rtt_ms": 5.0, "jitter_ms": 0.2}


def _probe_files(directory):
    """What playbooks/probe.yml writes for two edges and a core."""
    os.makedirs(directory)
    files = {
        "edge-dub": {"samples": [_sample("edge-dub", "core-lon", "shop")], "paths": [TUNNEL, NO_IF]},
        "edge-ber": {"samples": [_sample("edge-ber", "core-ams", "shop")], "paths": [dict(STALE, address="192.0.2.1")]},
        "core-ams": {"samples": [_sample("core-ams", "core-lon", None)], "paths": [CORE]},
    }
    for node, data in files.items():
        with open(os.path.join(directory, f"{node}.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(data, node=node, failed_targets=[], errors=[]), fh)
    return files


def test_probe_files_are_read_whole_and_as_samples(tmp_path):
    files = _probe_files(tmp_path / "samples")
    assert read_samples_dir(str(tmp_path / "samples")) == {n: d["samples"] for n, d in files.items()}
    assert {n: d["paths"] for n, d in read_probe_dir(str(tmp_path / "samples")).items()} == {n: d["paths"] for n, d in files.items()}
    assert read_probe_dir(str(tmp_path / "nowhere")) == {}


@pytest.fixture()
def loop_step(monkeypatch):
    """The module, imported from the linked collection; what that imported under
    ``ansible_collections`` is forgotten afterwards, so that a later test's Ansible
    collection loader (test_plugins.py) finds the package unloaded."""
    link_collection()
    before = set(sys.modules)
    monkeypatch.syspath_prepend(COLLECTIONS)
    yield importlib.import_module("ansible_collections.galactic.npms.plugins.modules.loop_step")
    for name in set(sys.modules) - before:
        if name.split(".", 1)[0] == "ansible_collections":
            del sys.modules[name]


def _run(loop_step, capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        loop_step.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 0, result
    return result


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check"])
def test_the_ansible_loop_reports_how_tunnel_targets_were_probed(loop_step, capsys, tmp_path, check_mode):
    """ingest notes via / underlay_because from the probe files; the report's probe step
    carries them (as ``npms loop`` does) and the note is gone after the report."""
    inventory = write_tiny_inventory(tmp_path / "inventory")
    _probe_files(tmp_path / "samples")
    state = tmp_path / "state"
    common = {"state_dir": str(state), "_ansible_check_mode": check_mode}
    epoch = _run(loop_step, capsys, dict(common, step="epoch"))["epoch"]
    ingest = _run(loop_step, capsys, dict(common, step="ingest", epoch=epoch, samples_dir=str(tmp_path / "samples")))
    want = {"via": {"tunnel": 1, "underlay": 2},
            "underlay_because": ["edge-ber -> core-ams (shop): wg1-1-1: latest handshake 412 s ago",
                                 "edge-dub -> edge-ber (shop): wg1-11-12: no such interface here"]}
    assert ingest["probe"] == want
    assert ingest["ingested"]["samples"] == 3
    assert ingest["changed"] is (not check_mode) and ingest["ingested"].get("accepted", 0) == (0 if check_mode else 3)
    _run(loop_step, capsys, dict(common, step="compute", epoch=epoch, inventory=inventory))
    report = _run(loop_step, capsys, dict(common, step="report", epoch=epoch, steps={"deploy": {"seconds": 1.0}}))["report"]
    assert report["steps"]["probe"] == dict(want, **ingest["ingested"])
    assert report["steps"]["deploy"] == {"seconds": 1.0}
    assert not [n for n in os.listdir(state) if n.startswith("probe-")]
    if not check_mode:  # the saved report has them too
        with open(state / "report.json", encoding="utf-8") as fh:
            assert json.load(fh)["steps"]["probe"]["via"] == want["via"]


def test_a_loop_without_probe_files_reports_no_tunnel_targets(loop_step, capsys, tmp_path):
    inventory = write_tiny_inventory(tmp_path / "inventory")
    common = {"state_dir": str(tmp_path / "state")}
    epoch = _run(loop_step, capsys, dict(common, step="epoch"))["epoch"]
    ingest = _run(loop_step, capsys, dict(common, step="ingest", epoch=epoch, samples={}))
    assert ingest["probe"] == {"via": {}, "underlay_because": []}
    _run(loop_step, capsys, dict(common, step="compute", epoch=epoch, inventory=inventory))
    report = _run(loop_step, capsys, dict(common, step="report", epoch=epoch))["report"]
    assert report["steps"]["probe"]["via"] == {} and report["steps"]["probe"]["underlay_because"] == []
