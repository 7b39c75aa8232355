# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control loop (npms_nornir.loop.run_once) on the namespace lab: real probes through
the lab's WAN emulation, a real store, the path engine, bundles deployed with the
resources.  After `lab.impair` degrades a link of acme's EF path, the next loop moves EF
off it and the report names the cause; best effort stays; late bundles are refused; runs
never overlap; each node ends up on the loop's bundle or, when its deploy fails, on its
previous one with the failure in the report.  With packets: after one loop a customer host
reaches its tenant's other site through the overlay (a core on the way sees the SRv6
header); EF and best-effort pings from one host leave the edge by different tunnels; a
customer ping keeps working while the EF path is impaired and moved.  Needs root.

The window is 30 s here (600 s in production) so that two loops see two windows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from nornir import InitNornir
from nornir.core.filter import F

from npms.bgp import customer_bgp_config
from npms.bundle import BundleRepo
from npms.inventory import load_inventory
from npms.loop import LoopBusy, loop_lock
from npms.overlay import tunnel_name
from npms_lab import LabError
from npms_nornir.loop import LoopSettings, run_once
from npms_nornir.tasks import bgp_routes, deploy_bundle, resource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventory", "lab")
WINDOW_S = 30
EF = ("acme", "ef", "edge-ber", "edge-bos")
BE = ("acme", "be", "edge-ber", "edge-bos")

pytestmark = pytest.mark.usefixtures("needs_root")


def path_of(report, key):
    return next(p for p in report["paths"] if (p["tenant"], p["traffic_class"], p["src"], p["dst"]) == key)


def ns_run(world, node, *argv, timeout=60):
    return subprocess.run(["ip", "netns", "exec", world["lab"].prefix + node, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def tx_packets(world, node, dev):
    out = ns_run(world, node, "ip", "-j", "-s", "link", "show", "dev", dev)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["stats64"]["tx"]["packets"]


def replies(ping) -> int:
    found = re.search(r"(\d+) received", ping.stdout)
    return int(found.group(1)) if found else 0


def next_window():
    """Sleep into the next window, so that a loop's probes fill a window of their own."""
    time.sleep(WINDOW_S - time.time() % WINDOW_S + 0.5)


@pytest.fixture(scope="module")
def world(lab, tmp_path_factory):
    inv = load_inventory(INVENTORY)
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": lab.prefix}},
                    runner={"plugin": "threaded", "options": {"num_workers": 20}}, logging={"enabled": False})
    settings = LoopSettings(state_dir=str(tmp_path_factory.mktemp("loop")), window_s=WINDOW_S, probe_count=10)
    next_window()
    first = run_once(nr, inv, settings)
    return {"inv": inv, "nr": nr, "settings": settings, "lab": lab, "first": first}


def test_a_loop_reports_paths_and_where_every_node_stands(world):
    report = world["first"]
    assert report["epoch"] == 1 and set(report["steps"]) >= {"probe", "collect", "compute", "render", "deploy", "verify"}
    assert report["measurements"] > 0 and report["steps"]["probe"]["samples"] > 0
    assert len(report["paths"]) == len([1 for t in world["inv"].tenants.values() for _c in t.traffic_classes
                                        for s in t.edges for d in t.edges if s != d])
    assert path_of(report, EF)["path"] != path_of(report, BE)["path"], "EF and best effort take different paths"
    for node, r in report["nodes"].items():
        assert not r["error"] and (r["running"] or {}).get("epoch") == 1, (node, r)
    customers = [n for n, x in world["inv"].nodes.items() if x.role == "customer"]
    assert all(report["nodes"][c]["running"]["epoch"] == 1 for c in customers)


def test_customers_reach_their_other_site_through_the_overlay_after_one_loop(world):
    """acme's host at edge-ber pings acme's host at edge-bos (10.10.3.2, which globex also
    uses) over the EF path; tcpdump on the path's first core shows SRv6 packets (routing
    header type 4) carrying the customer's ping."""
    ef = path_of(world["first"], EF)["path"]
    core = ef[1]
    assert world["inv"].nodes[core].role == "core", ef
    # the edge announces the other site's prefix once its BGP session is up (seconds)
    deadline = time.monotonic() + 60
    while "10.10.3.0/24" not in ns_run(world, "cust-acme-ber", "ip", "route", "show", "10.10.3.0/24").stdout:
        assert time.monotonic() < deadline, ns_run(world, "cust-acme-ber", "ip", "route").stdout
        time.sleep(1)
    capture = subprocess.Popen(["ip", "netns", "exec", world["lab"].prefix + core, "timeout", "20", "tcpdump", "-l", "-nn",
                                "-v", "-i", "any", "-c", "3", "ip6 proto 43"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2)  # tcpdump is listening
    ping = ns_run(world, "h-cust-acme-ber", "ping", "-n", "-c", "5", "-i", "0.3", "-W", "2", "-Q", "0xb8", "10.10.3.2")
    seen = capture.communicate(timeout=30)[0]
    # the lab's WAN links lose a little (as emulated): most replies, not all
    assert replies(ping) >= 4, ping.stdout + ping.stderr
    assert "RT6" in seen and "type=4" in seen and "10.10.1.2 > 10.10.3.2: ICMP echo request" in seen, seen


def test_ef_and_best_effort_pings_leave_the_edge_by_different_tunnels(world):
    ef, be = path_of(world["first"], EF)["path"], path_of(world["first"], BE)["path"]
    tunnels = {cls: tunnel_name(world["inv"], "acme", "edge-ber", p[1]) for cls, p in (("ef", ef), ("be", be))}
    assert tunnels["ef"] != tunnels["be"], tunnels
    for tos in ("0xb8", "0"):
        # the first packets on a tunnel may wait for a WireGuard handshake (both directions)
        warm = ns_run(world, "h-cust-acme-ber", "ping", "-n", "-c", "1", "-w", "15", "-Q", tos, "10.10.3.2")
        assert warm.returncode == 0, warm.stdout + ns_run(world, "edge-ber", "ip", "-br", "link").stdout
    for cls, tos in (("ef", "0xb8"), ("be", "0")):
        before = {c: tx_packets(world, "edge-ber", t) for c, t in tunnels.items()}
        ping = ns_run(world, "h-cust-acme-ber", "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-Q", tos, "10.10.3.2")
        assert replies(ping) >= 15, ping.stdout
        delta = {c: tx_packets(world, "edge-ber", t) - before[c] for c, t in tunnels.items()}
        other = "be" if cls == "ef" else "ef"
        assert delta[cls] >= 20 and delta[other] < 5, (cls, delta)


def test_impairing_the_ef_path_moves_ef_and_the_report_names_the_cause(world):
    background = subprocess.Popen(["ip", "netns", "exec", world["lab"].prefix + "h-cust-acme-ber", "ping", "-n", "-q",
                                   "-i", "0.5", "10.10.3.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _impair_and_loop(world)
    finally:
        background.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
        out = background.communicate(timeout=10)[0]
    sent, received = (int(x) for x in re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent > 20 and received >= 0.9 * sent, out  # the direct path loses ~1% as emulated: no outage


def _impair_and_loop(world):
    ef_before = path_of(world["first"], EF)["path"]
    be_before = path_of(world["first"], BE)["path"]
    a, b = ef_before[1], ef_before[2] if len(ef_before) > 3 else ef_before[-1]
    lab = world["lab"]
    try:
        link = f"{a}~{b}"
        lab.impair(link, loss_pct=30.0)
    except LabError:
        link = f"{b}~{a}"
        lab.impair(link, loss_pct=30.0)
    try:
        next_window()
        report = run_once(world["nr"], world["inv"], world["settings"])
    finally:
        lab.restore(link)
    ef_after = path_of(report, EF)["path"]
    assert ef_after != ef_before, "EF moved off the lossy link"
    assert (a, b) not in set(zip(ef_after, ef_after[1:])) and (b, a) not in set(zip(ef_after, ef_after[1:]))
    change = next(c for c in report["changes"] if (c["tenant"], c["traffic_class"], c["src"], c["dst"]) == EF)
    assert "loss" in change["reason"] and a in change["reason"] and b in change["reason"], change["reason"]
    assert path_of(report, BE)["path"] == be_before, "best effort (the direct path) stays"
    assert report["epoch"] == 2
    world["second"] = report


def test_edges_probe_inside_their_tunnels_once_the_overlay_is_up(world):
    """The first loop probes before any tunnel exists (the underlay stands in); the loops
    after it probe the edges' POPs and peers through the tunnels' link-locals."""
    assert world["first"]["steps"]["probe"]["via"].get("tunnel", 0) == 0
    later = world["second"]["steps"]["probe"]["via"]
    assert later.get("tunnel", 0) > 0 and later.get("underlay", 0) == 0, world["second"]["steps"]["probe"]


def test_a_late_bundle_is_refused_and_runs_never_overlap(world):
    repo = BundleRepo(os.path.join(world["settings"].state_dir, "bundles"))
    cust = world["nr"].filter(name="cust-acme-ber")
    old = repo.get("cust-acme-ber", 1)
    res = cust.run(task=deploy_bundle, bundles={"cust-acme-ber": old})
    assert res.failed and "refused bundle epoch 1: the node runs epoch 2" in res["cust-acme-ber"][0].result["error"]
    with loop_lock(world["settings"].state_dir):
        with pytest.raises(LoopBusy):
            run_once(world["nr"], world["inv"], world["settings"])


def test_a_loop_with_nothing_new_changes_nothing_on_the_nodes_it_deployed(world):
    report = run_once(world["nr"], world["inv"], world["settings"])
    ok = [n for n, r in report["nodes"].items() if not r["error"]]
    assert ok and all(not report["nodes"][n]["changed"] for n in ok if world["inv"].nodes[n].role == "customer")
    everyone = world["nr"].filter(F(groups__contains="customer") | F(groups__contains="edge") | F(groups__contains="core"))
    plan_settings = LoopSettings(state_dir=world["settings"].state_dir, window_s=WINDOW_S, check_mode=True, probes=False)
    plan = run_once(everyone, world["inv"], plan_settings)
    # the plan is of the next loop, whose epoch check mode does not hand out
    repo = BundleRepo(os.path.join(world["settings"].state_dir, "bundles"))
    assert plan["epoch"] == report["epoch"] + 1 and repo.peek_epoch() == plan["epoch"]
    assert plan["check_mode"] and all(not plan["nodes"][n]["changed"] for n in plan["nodes"]
                                      if world["inv"].nodes[n].role == "customer")


def steered(world, node):
    """(tenant, prefix) pairs the node's srv6_steering holds."""
    res = world["nr"].filter(name=node).run(task=resource, resource_name="srv6_steering", config=None, state="gathered")
    assert not res.failed, res[node][0].exception
    return {(s["tenant"], s["prefix"]) for s in res[node][0].result["gathered"]}


def test_a_withdrawn_prefix_loses_its_forwarding_at_the_next_loop_and_the_other_tenant_keeps_its_own(world):
    """acme's customer at edge-bos stops announcing 10.10.3.0/24; after the next loop no
    edge steers acme's 10.10.3.0/24 any more and acme's ping fails, while globex's
    identical prefix stays steered and globex's ping runs throughout."""
    inv, nr = world["inv"], world["nr"]
    assert {("acme", "10.10.3.0/24"), ("globex", "10.10.3.0/24")} <= steered(world, "edge-ber")
    cust = nr.filter(name="cust-acme-bos")
    config = customer_bgp_config(inv, "cust-acme-bos")
    withdrawn = [dict(config[0], advertise=[p for p in config[0]["advertise"] if p != "10.10.3.0/24"])]
    background = subprocess.Popen(["ip", "netns", "exec", world["lab"].prefix + "h-cust-globex-ber", "ping", "-n", "-q",
                                   "-i", "0.5", "10.10.3.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        res = cust.run(task=resource, resource_name="frr_bgp", config=withdrawn, state="replaced")
        assert not res.failed, res["cust-acme-bos"][0].exception
        deadline = time.monotonic() + 60
        while True:  # the edge's acme view has dropped the route
            got = nr.filter(name="edge-bos").run(task=bgp_routes)["edge-bos"][0].result
            if "10.10.3.0/24" not in {r["prefix"] for r in got["acme"]["learned"]}:
                break
            assert time.monotonic() < deadline, got["acme"]
            time.sleep(1)
        report = run_once(nr, inv, world["settings"])
        assert not report["failed_nodes"], report["failed_nodes"]
        now = steered(world, "edge-ber")
        assert ("acme", "10.10.3.0/24") not in now and ("globex", "10.10.3.0/24") in now, now
        ping = ns_run(world, "h-cust-acme-ber", "ping", "-n", "-q", "-c", "3", "-W", "1", "10.10.3.2")
        assert replies(ping) == 0, ping.stdout
    finally:
        back = cust.run(task=resource, resource_name="frr_bgp", config=config, state="replaced")
        background.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
        out = background.communicate(timeout=10)[0]
        assert not back.failed, back["cust-acme-bos"][0].exception
    sent, got_back = (int(x) for x in re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent > 20 and got_back >= 0.9 * sent, out


def test_the_ansible_control_loop_runs_the_same_steps(world, tmp_path):
    """playbooks/control_loop.yml against the same lab: every step, a report with the same
    shape, every node on the loop's bundle or failed with the reason; --check changes
    nothing (no epoch handed out, no bundle published)."""
    lab = world["lab"]
    state = tmp_path / "ansible-loop"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    argv = ["ansible-playbook", "-i", INVENTORY, "-i", lab.ansible_file, "playbooks/control_loop.yml",
            "-e", f"npms_loop_state={state}", "-e", f"npms_loop_window={WINDOW_S}"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    with open(state / "report.json", encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["epoch"] == 1 and report["measurements"] > 0
    assert set(report["nodes"]) == set(world["inv"].nodes)
    for node, r in report["nodes"].items():
        assert (r.get("running") or {}).get("epoch") == 1 or r["error"], (node, r)
    nornir_keys = {(p["tenant"], p["traffic_class"], p["src"], p["dst"]) for p in world["first"]["paths"]}
    assert {(p["tenant"], p["traffic_class"], p["src"], p["dst"]) for p in report["paths"]} == nornir_keys
    check = subprocess.run(argv + ["--check"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert sorted(os.listdir(state / "reports")) == ["1.json"]
    assert not [f for f in os.listdir(state) if f.startswith("paths-")], "check mode leaves no scratch in the state"
    assert json.loads((state / "bundles" / "epoch").read_text()) == 1
