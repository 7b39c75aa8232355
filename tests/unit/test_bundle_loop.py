# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundles (npms.bundle) and the loop's pure parts (npms.loop): versions, hashes, refusal
of late bundles, rollback to the previous bundle, the report and the lock.  Resources are
a small in-memory stand-in (the real ones are tested on their own and in the lab)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from npms.bundle import (BUNDLE_ORDER, BundleError, BundleRepo, StaleBundle, apply_bundle, bundle_content,
                         check_bundle, etag, make_bundle)
from npms.inventory import load_inventory
from npms.loop import LoopBusy, build_report, loop_lock, loop_measurements, summary_text
from npms.measurements import Measurement
from npms.pce import compute_paths
from npms.resources import base
from npms.runner import Result, Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = load_inventory(os.path.join(ROOT, "inventory", "lab"))
PATHS = [r.to_dict() for r in compute_paths(LAB)]


class FileRunner(Runner):
    """`cat` and the state-file writer against a dict of files."""

    where = "fake-node"

    def __init__(self):
        self.files = {}

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(argv)
        if argv[0] == "cat":
            if argv[1] in self.files:
                return Result(argv, 0, self.files[argv[1]], "")
            return Result(argv, 1, "", "No such file")
        if argv[:2] == ("sh", "-c") and "mv" in argv[2]:
            path = argv[2].rsplit(" ", 1)[1]
            self.files[path] = stdin
            return Result(argv, 0, "", "")
        raise AssertionError(f"unexpected command {argv}")


class Node:
    """In-memory resources: what the node holds, per resource name."""

    def __init__(self, fail=None):
        self.held = {}
        self.applied = []
        self.fail = dict(fail or {})

    def factory(self, name):
        node = self

        class Mem(base.Resource):
            key_fields = ("key",)

            def __init__(self):
                super().__init__(None)
                self.name = name

            def normalize(self, item, where):
                return {"key": json.dumps(item, sort_keys=True)}

            def gather(self):
                return [dict(i) for i in node.held.get(name, [])]

            def render_change(self, change):
                return [f"{change.op} {name}"]

            def apply_change(self, change):
                if node.fail.get(name):
                    node.fail[name] -= 1
                    raise base.ResourceError(f"{name} refused")
                items = [i for i in node.held.get(name, []) if i["key"] != change.key[0]]
                if change.op != base.DELETE:
                    items.append(change.after)
                node.held[name] = items
                node.applied.append(name)

        return Mem()


def bundle_for(node, epoch, paths=PATHS):
    return make_bundle(node, bundle_content(LAB, node, paths), epoch)


# --- bundles ----------------------------------------------------------------------------------
def test_content_and_hash_are_deterministic_and_cover_what_the_node_needs():
    a, b = bundle_for("edge-ber", 1), bundle_for("edge-ber", 7)
    assert a["hash"] == b["hash"] and a["epoch"] == 1 and b["epoch"] == 7
    content = a["content"]
    assert set(content["resources"]) == {"wireguard", "srv6_localsid", "srv6_route", "srv6_policy", "srv6_steering",
                                         "nftables", "frr_bgp"}
    assert content["fec"]["acme"]["af41"] == {"data": 10, "parity": 2} and content["fec"]["acme"]["be"] is None
    assert content["sla_profiles"]["realtime_no_in"]["exclude_countries"] == ["IN"]
    assert set(bundle_for("cust-acme-ber", 1)["content"]["resources"]) == {"frr_bgp"}
    # other paths, other content, other hash
    moved = [dict(p, sid_list=p["sid_list"][::-1]) if p["src"] == "edge-ber" else p for p in PATHS]
    assert bundle_for("edge-ber", 1, moved)["hash"] != a["hash"]
    assert etag(a) == f'"1-{a["hash"][:32]}"'


@pytest.mark.parametrize("spoil,message", [
    (lambda b: b.update(format=2), "format 2"),
    (lambda b: b.pop("epoch"), "field 'epoch' missing"),
    (lambda b: b["content"]["fec"].update(acme=None), "content does not match its hash"),
    (lambda b: b.update(content=[]), "field 'content' missing or not a dict"),
])
def test_a_damaged_bundle_is_refused(spoil, message):
    b = json.loads(json.dumps(bundle_for("edge-ber", 3)))
    spoil(b)
    with pytest.raises(BundleError, match=message):
        check_bundle(b)


def test_repo_epochs_are_monotonic_and_old_bundles_are_pruned(tmp_path):
    repo = BundleRepo(str(tmp_path), keep=2)
    epochs = [repo.next_epoch() for _loop in range(3)]
    assert epochs == [1, 2, 3]
    for e in epochs:
        repo.save(bundle_for("edge-ber", e))
    assert repo.get("edge-ber")["epoch"] == 3 and repo.get("edge-ber", 1) is None
    assert repo.previous("edge-ber", 3)["epoch"] == 2
    assert BundleRepo(str(tmp_path)).next_epoch() == 4  # a new process carries on


# --- on the node --------------------------------------------------------------------------------
def test_apply_in_order_then_up_to_date_then_refuse_a_late_bundle():
    runner, node = FileRunner(), Node()
    b1 = bundle_for("edge-ber", 1)
    out = apply_bundle(runner, b1, resource_factory=node.factory, state_path="/s.json")
    assert out["changed"] and not out["error"] and out["running"] == {"epoch": 1, "hash": b1["hash"]}
    order = [n for n in BUNDLE_ORDER if n in b1["content"]["resources"]]
    assert list(dict.fromkeys(node.applied)) == order  # wireguard first, frr_bgp last
    again = apply_bundle(runner, b1, resource_factory=node.factory, state_path="/s.json")
    assert again.get("up_to_date") and not again["changed"]
    verify = apply_bundle(runner, b1, resource_factory=node.factory, state_path="/s.json", check_mode=True, force=True)
    assert not verify["changed"] and not verify["error"]
    b3 = bundle_for("edge-ber", 3)
    assert apply_bundle(runner, b3, resource_factory=node.factory, state_path="/s.json")["running"]["epoch"] == 3
    with pytest.raises(StaleBundle, match="refused bundle epoch 2: the node runs epoch 3"):
        apply_bundle(runner, bundle_for("edge-ber", 2), resource_factory=node.factory, state_path="/s.json")


def test_check_mode_changes_nothing_and_shows_the_plan():
    runner, node = FileRunner(), Node()
    out = apply_bundle(runner, bundle_for("edge-ber", 1), resource_factory=node.factory, state_path="/s.json",
                       check_mode=True)
    assert out["changed"] and node.held == {} and runner.files == {}
    assert out["resources"]["wireguard"]["commands"] and out["resources"]["wireguard"]["diff"]["after"]


def test_a_failed_resource_puts_the_previous_bundle_back():
    runner, node = FileRunner(), Node()
    b1 = bundle_for("edge-ber", 1)
    apply_bundle(runner, b1, resource_factory=node.factory, state_path="/s.json")
    held_before = json.dumps(node.held, sort_keys=True)
    moved = [dict(p, sid_list=p["sid_list"][::-1]) if p["src"] == "edge-ber" else p for p in PATHS]
    b2 = make_bundle("edge-ber", bundle_content(LAB, "edge-ber", moved), 2)
    node.fail = {"srv6_policy": 1}
    out = apply_bundle(runner, b2, previous=b1, resource_factory=node.factory, state_path="/s.json")
    assert out["error"].startswith("srv6_policy:") and out["rolled_back"]
    assert out["running"] == {"epoch": 1, "hash": b1["hash"]}
    assert json.dumps(node.held, sort_keys=True) == held_before
    assert json.loads(runner.files["/s.json"])["epoch"] == 1


# --- the loop's pure parts --------------------------------------------------------------------------
class FakeStore:
    window_s = 60

    def __init__(self, ms):
        self.ms = ms

    def windows(self, tenant, start, end):
        return [m for m in self.ms if m.tenant == tenant and start <= m.window_start < end]


def test_loop_reads_the_newest_window_of_linked_pairs_only():
    now = 10_000.0
    ms = [Measurement("core-lon", "core-fra", 5.0, window_start=now - 120, window_s=60),
          Measurement("core-lon", "core-fra", 9.0, window_start=now - 30, window_s=60),
          Measurement("core-lon", "core-sin", 1.0, window_start=now - 30, window_s=60),  # no such link
          Measurement("edge-ber", "core-fra", 3.0, tenant="acme", window_start=now - 30, window_s=60)]
    ms.append(Measurement("core-fra", "core-lon", 7.0, window_start=now - 30, window_s=60))
    got = loop_measurements(FakeStore(ms), LAB, now)
    # core-fra <-> core-lon measured both ways; edge-ber -> core-fra only: it stands for both
    assert [(m.src, m.dst, m.tenant, m.latency_ms) for m in got] == [
        ("core-fra", "core-lon", None, 7.0), ("core-fra", "edge-ber", "acme", 3.0),
        ("core-lon", "core-fra", None, 9.0), ("edge-ber", "core-fra", "acme", 3.0)]


def test_report_names_each_change_and_its_cause():
    ef = next(p for p in PATHS if (p["tenant"], p["traffic_class"], p["src"], p["dst"]) == ("acme", "ef", "edge-ber", "edge-bos"))
    a, b = ef["path"][1], ef["path"][2]
    bad = [{"src": a, "dst": b, "latency_ms": 5, "loss_pct": 3.1}, {"src": b, "dst": a, "latency_ms": 5, "loss_pct": 3.1}]
    new = [r.to_dict() for r in compute_paths(LAB, bad, current=PATHS)]
    report = build_report(2, new, PATHS, {"edge-ber": {"changed": True, "error": None}}, {"compute": {"seconds": 0.1}}, 2)
    change = next(c for c in report["changes"] if (c["tenant"], c["traffic_class"], c["src"], c["dst"]) == ("acme", "ef", "edge-ber", "edge-bos"))
    assert change["from"] == ef["path"] and change["to"] != ef["path"]
    assert f"loss 3.10% on {a} to {b} over the last window" in change["reason"]
    text = summary_text(report)
    assert "path changes:" in text and f"loss 3.10% on {a} to {b}" in text and "epoch 2" in text


def test_runs_never_overlap(tmp_path):
    held, release = threading.Event(), threading.Event()

    def first():
        with loop_lock(str(tmp_path)):
            held.set()
            release.wait(5)

    t = threading.Thread(target=first)
    t.start()
    assert held.wait(5)
    try:
        with pytest.raises(LoopBusy, match="another control loop is running"):
            with loop_lock(str(tmp_path)):
                pass
    finally:
        release.set()
        t.join()
    with loop_lock(str(tmp_path)):  # free again
        time.sleep(0)
