# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probes in the namespace lab (conftest ``lab``: prefix ``t3-<pid>-``, underlay only, no
WireGuard): what they measure matches the emulated WAN, the store's windows show an
impairment in the next window, tenant tagging holds, the window aggregates feed the path
engine, and ``playbooks/probe.yml`` produces samples on every core and edge.

Responders run with pidfiles under ``/run/npms/<prefix>...`` (never the defaults), so that
another lab's responders on the machine (same node names, shared ``/run``) are left alone;
every responder started here is stopped at the end and its directory removed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Sequence

import pytest
import uvicorn
from nornir import InitNornir
from nornir.core.filter import F

from npms.api import TokenStore, create_app
from npms.inventory import load_inventory
from npms.pce import VERDICTS, Network, compute_paths
from npms.probe import probe_targets
from npms.store import Store
from npms_nornir.tasks import probe, probe_responder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventory", "lab")
BIN = os.path.dirname(sys.executable)
INV = load_inventory(INVENTORY)

LINK = ("core-lon", "core-fra")  # core link: 4 ms one way, jitter 0.2 ms, no loss
EDGE = "edge-ber"  # access links to core-fra (2 ms) and core-lon (5 ms), tenants acme and globex
RESPONDERS = ("core-lon", "core-fra", EDGE)
WINDOW_S = 20
ROUNDS, COUNT, INTERVAL, TIMEOUT = 4, 50, 0.02, 0.5  # per window: 4 x (icmp 50 + udp 50) core-lon -> core-fra
IMPAIRMENT = {"delay_ms": 24.0, "jitter_ms": 4.0, "loss_pct": 10.0}  # one way: +20 ms, jitter 4 ms, 10 % loss


# --------------------------------------------------------------------------- helpers
def _netns_inode(lab, node: str) -> int:
    return os.stat(f"/run/netns/{lab.prefix}{node}").st_ino


def _pid_netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _alive(pid: int) -> bool:
    """Running: a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _responder_task(task, state: str, pidfile: str):
    """Nornir probe_responder with a per-host pidfile (``{host}`` filled in)."""
    return probe_responder(task, state=state, pidfile=pidfile.format(host=task.host.name))


def _probe_task(task, targets: Dict[str, List[Dict[str, Any]]], **options):
    """Nornir probe with this host's own target list."""
    return probe(task, targets=targets[task.host.name], **options)


def _check(result) -> None:
    assert not result.failed, {h: str(r[0].exception) for h, r in result.items() if r.failed}


def _results(result) -> Dict[str, Any]:
    return {h: r[0].result for h, r in result.items()}


def _wait_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def _window_measurements(store: Store, start: float) -> List[Any]:
    """Every aggregate of the window at ``start``: shared pairs and each tenant's own."""
    out = {}
    for tenant in [None] + sorted(INV.tenants):
        for m in store.windows(tenant, start, start + WINDOW_S):
            out[m.key] = m
    return list(out.values())


def _start_responders(nr, lab, nodes: Sequence[str], pidfile: str) -> Dict[str, int]:
    res = nr.filter(filter_func=lambda h: h.name in nodes).run(task=_responder_task, state="started", pidfile=pidfile)
    _check(res)
    pids = {h: r["pid"] for h, r in _results(res).items()}
    assert set(pids) == set(nodes)
    for node, pid in pids.items():  # running, and in the node's own namespace
        assert pid and _alive(pid) and _pid_netns_inode(pid) == _netns_inode(lab, node), (node, pid)
    return pids


def _stop_responders(nr, nodes: Sequence[str], pidfile: str, pids: Dict[str, int]) -> None:
    res = nr.filter(filter_func=lambda h: h.name in nodes).run(task=_responder_task, state="stopped", pidfile=pidfile)
    _check(res)
    for node, pid in pids.items():
        assert not _alive(pid), f"responder of {node} (pid {pid}) still runs after state=stopped"
        assert not os.path.exists(pidfile.format(host=node))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nr(lab):
    return InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": lab.prefix}},
                      runner={"plugin": "threaded", "options": {"num_workers": 4}}, logging={"enabled": False})


@pytest.fixture()
def responders(lab, nr):
    """Responders on core-lon, core-fra and edge-ber through the Nornir task; stopped after.

    One directory per host: the responder script is written next to the pidfile, and
    tasks of one Nornir run write it from the same process."""
    run_dir = f"/run/npms/{lab.prefix}nornir"
    pidfile = run_dir + "/{host}/probe-responder.pid"
    pids = _start_responders(nr, lab, RESPONDERS, pidfile)
    try:
        yield pids
    finally:
        try:
            _stop_responders(nr, RESPONDERS, pidfile, pids)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- the link, two windows
def test_probes_match_the_link_and_the_next_window_shows_the_impairment(lab, nr, responders, tmp_path):
    """core-lon probes core-fra over their core link (nominal 4 ms one way, jitter 0.2 ms,
    no loss) in one 20 s window, then ``lab.impair`` sets 24 ms, jitter 4 ms and 10 % loss
    each way and core-lon probes again in the next window; edge-ber probes its POPs
    core-fra (2 ms) and core-lon (5 ms) per tenant in the first window.  Samples go to a
    real Store (SQLite, window 20 s) and its aggregates (one way = RTT / 2) are checked:

    * latency p50: nominal + 0 .. +2 ms.  The userspace delay element adds ~+1 ms (LAB_NOTES;
      0.2-0.5 ms one way measured here) and its own 0.5-1.8 ms standard deviation, which
      the p50 of 8 probe means (50 packets each) all but removes: first window 3.9-6.0 ms,
      second 23.0-27.5 ms, and the change 18.5-23.0 ms for the +20 ms added.
    * loss: first window <= 1 % (nominal 0); second 12-29 % - a round trip crosses two
      10 % drops, so 1 - 0.9^2 = 19 % of packets are lost; with >= 400 packets in the
      window (asserted: 4 rounds of 50 UDP and >= 50 ICMP) the binomial standard deviation
      is <= 2.0 points: the range is 19 +-3.5 of them (a false failure ~ 5e-4), plus up to
      +2.7 points on top because ``ping -c 50 -w`` sends until 50 replies are back and
      counts the <= 3 requests still in flight then (RTT ~50 ms / 20 ms interval, 4 runs,
      ~450 packets) as lost; measured 18-23.5 %.
    * jitter (RFC 3550, forward direction): an iid delay of std s gives E[J] = 2 s / sqrt(pi)
      = 1.13 s, each sample's J (gain 1/16) scattering by ~15 % of that: 0.2 ms -> 0.23 ms,
      plus the element's own 0.5-1.8 ms std under load -> first window 0.05-2.1 ms;
      4 ms -> 4.5 ms -> second window 2.5-7.0 ms.
    * edge-ber -> core-fra / core-lon (per tenant, 100 packets each): 1.9-4.0 and 4.9-7.0 ms
      (nominal 2 and 5 ms, same bias), loss <= 2 % (nominal 0).
    """
    lab_link = "~".join(LINK)
    src, dst = LINK
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", window_s=WINDOW_S, inventory=INV)
    core_t = [dict(t, kinds=["icmp", "udp"]) for t in probe_targets(INV, src, core_scope="adjacent") if t["dst"] == dst]
    assert len(core_t) == 1 and core_t[0]["tenant"] is None
    edge_t = [dict(t, kinds=["icmp", "udp"]) for t in probe_targets(INV, EDGE) if t["dst"] in LINK]
    assert {(t["dst"], t["tenant"]) for t in edge_t} == {(d, t) for d in LINK for t in ("acme", "globex")}
    targets = {src: core_t * ROUNDS, EDGE: edge_t}
    options = {"kinds": ["icmp", "udp"], "interval": INTERVAL, "timeout": TIMEOUT}

    # --- window A: nominal link ------------------------------------------------------
    now = time.time()
    start_a = math.ceil(now / WINDOW_S) * WINDOW_S
    _wait_until(start_a + 0.2)
    t0 = time.monotonic()
    # edge-ber runs in parallel with core-lon (other links, other veths)
    a_samples: Dict[str, List[dict]] = {}
    res = nr.filter(F(name=src) | F(name=EDGE)).run(task=_probe_task, targets=targets, count=COUNT, **options)
    _check(res)
    for node, out in _results(res).items():
        assert out["failed_targets"] == [] and out["errors"] == [], out
        a_samples[node] = out["samples"]
    took_a = time.monotonic() - t0
    assert all(start_a <= s["ts"] < start_a + WINDOW_S for ss in a_samples.values() for s in ss), \
        f"probing took {took_a:.1f} s and left the {WINDOW_S} s window (machine overloaded?)"

    # tenant tagging: core to core none, edge to POP the tenant of the tunnel
    assert {s["tenant"] for s in a_samples[src]} == {None}
    assert {(s["dst"], s["tenant"]) for s in a_samples[EDGE]} == {(d, t) for d in LINK for t in ("acme", "globex")}
    for node, samples in a_samples.items():
        got = store.ingest(node, f"{node}-a", samples)
        assert got["rejected"] == [] and got["accepted"] == len(samples), got

    # --- window B: impaired link -------------------------------------------------------
    try:
        lab.impair(lab_link, **IMPAIRMENT)
        start_b = start_a + WINDOW_S
        assert time.time() < start_b, "window A's probes and ingest overran the window"
        _wait_until(start_b + 0.2)
        t0 = time.monotonic()
        res = nr.filter(name=src).run(task=_probe_task, targets=targets, count=COUNT, **options)
        took_b = time.monotonic() - t0
    finally:
        lab.restore(lab_link)
    _check(res)
    b_samples = _results(res)[src]["samples"]
    assert all(start_b <= s["ts"] < start_b + WINDOW_S for s in b_samples), \
        f"probing took {took_b:.1f} s and left the {WINDOW_S} s window (machine overloaded?)"
    got = store.ingest(src, f"{src}-b", b_samples)
    assert got["rejected"] == [] and got["accepted"] == len(b_samples), got
    sent_b = sum(s["sent"] for s in b_samples)
    assert len(b_samples) == 2 * ROUNDS and sent_b >= 2 * ROUNDS * COUNT, b_samples

    # --- the windows -------------------------------------------------------------------
    shared = store.windows(None, start_a, start_b + WINDOW_S)
    assert {m.tenant for m in shared} == {None} and {(m.src, m.dst) for m in shared} == {LINK}
    wa, wb = ({(m.src, m.dst): m for m in shared if m.window_start == w} for w in (start_a, start_b))
    ma, mb = wa[LINK], wb[LINK]
    assert ma.samples == mb.samples == 2 * ROUNDS
    assert store.latest(None, now=start_b + WINDOW_S) == [mb]  # what the engine reads next

    figures = (f"{src}->{dst}: A latency {ma.latency_ms:.2f} ms jitter {ma.jitter_ms:.2f} ms loss {ma.loss_pct:.1f} %;"
               f" B latency {mb.latency_ms:.2f} ms jitter {mb.jitter_ms:.2f} ms loss {mb.loss_pct:.1f} %"
               f" ({sent_b} packets); probing {took_a:.1f} s / {took_b:.1f} s")
    print(figures)
    assert 3.9 <= ma.latency_ms <= 6.0, figures
    assert ma.loss_pct <= 1.0, figures
    assert 0.05 <= ma.jitter_ms <= 2.1, figures
    assert 23.0 <= mb.latency_ms <= 27.5, figures
    assert 18.5 <= mb.latency_ms - ma.latency_ms <= 23.0, figures
    assert 12.0 <= mb.loss_pct <= 29.0, figures
    assert 2.5 <= mb.jitter_ms <= 7.0, figures
    assert ma.latency_p95_ms >= ma.latency_ms and mb.latency_p99_ms >= mb.latency_p95_ms >= mb.latency_ms

    # --- tenants: edge data only in its tenant's view ------------------------------------
    for tenant, other in (("acme", "globex"), ("globex", "acme")):
        view = store.windows(tenant, start_a, start_a + WINDOW_S)
        assert {m.tenant for m in view} == {None, tenant}, view
        edge = {m.dst: m for m in view if m.tenant == tenant}
        assert set(edge) == set(LINK) and all(m.src == EDGE for m in edge.values())
        assert 1.9 <= edge["core-fra"].latency_ms <= 4.0, edge["core-fra"]
        assert 4.9 <= edge["core-lon"].latency_ms <= 7.0, edge["core-lon"]
        assert all(m.loss_pct <= 2.0 for m in edge.values()), edge
        assert not [m for m in view if m.tenant == other]

    # --- the path engine takes the windows as they are ---------------------------------
    nominal = compute_paths(INV)
    for start, m_link in ((start_a, ma), (start_b, mb)):
        ms = _window_measurements(store, start)
        paths = compute_paths(INV, ms)
        assert [r.key for r in paths] == [r.key for r in nominal] and len(paths) > 0
        assert all(r.verdict in VERDICTS for r in paths)
        assert paths.to_list() == compute_paths(INV, ms).to_list()  # same numbers in, same paths out
        net = Network(INV, ms)
        arc = net.core_arcs[LINK]
        assert arc.measured and arc.latency_ms == m_link.latency_ms and arc.loss == pytest.approx(m_link.loss_pct / 100)
        assert arc.jitter_ms == m_link.jitter_ms
        if start == start_a:
            for m in ms:
                if m.tenant is not None:
                    tarc = net.arcs_for(m.tenant)[(m.src, m.dst)]
                    assert tarc.measured and tarc.latency_ms == m.latency_ms, (m, tarc)


# --------------------------------------------------------------------------- the playbook
def _ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, check=False)


def _recap(proc: subprocess.CompletedProcess) -> Dict[str, Dict[str, int]]:
    """``{host: {ok, changed, unreachable, failed, ...}}`` from the PLAY RECAP."""
    assert "PLAY RECAP" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    recap = proc.stdout[proc.stdout.index("PLAY RECAP"):]
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(.*)$", recap, re.M)}


def _pidfile_pids(pidfile: str, nodes: Sequence[str]) -> Dict[str, int]:
    out = {}
    for node in nodes:
        with open(pidfile.format(host=node), encoding="ascii") as fh:
            out[node] = int(fh.read().strip())
    return out


def test_probe_playbook_writes_samples_for_every_core_and_edge(lab, nr, tmp_path):
    """``playbooks/probe.yml`` against the lab (``-i inventory/lab -i <lab hosts.yml>``,
    modules inside each namespace through galactic.npms.netns): one JSON file per core and
    edge whose samples cover exactly that node's targets (galactic.npms.probe_targets,
    adjacent cores), every target answered, samples the store accepts whole and the path
    engine takes; a second run leaves the responders as they are."""
    out_dir = tmp_path / "samples"
    out_dir.mkdir()
    run_dir = f"/run/npms/{lab.prefix}playbook"
    routers = sorted(n.name for n in INV.nodes.values() if n.role in ("core", "edge"))
    # the playbook names pidfiles after the lab namespace (labs share /run)
    pidfile = run_dir + "/probe-responder-" + lab.prefix + "{host}.pid"
    args = ["-i", INVENTORY, "-i", lab.ansible_file, "playbooks/probe.yml", "-e", f"probe_output_dir={out_dir}",
            "-e", f"probe_run_dir={run_dir}", "-e", "probe_count=5"]
    try:
        t0 = time.monotonic()
        proc = _ansible_playbook(*args)
        took = time.monotonic() - t0
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        recap = _recap(proc)
        assert set(recap) == set(routers), recap
        assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
        pids = _pidfile_pids(pidfile, routers)
        for node, pid in pids.items():  # a responder per node, each in its own namespace
            assert _alive(pid) and _pid_netns_inode(pid) == _netns_inode(lab, node), node
        print(f"playbook: {len(routers)} nodes in {took:.1f} s")

        assert sorted(p.name for p in out_dir.iterdir()) == [f"{n}.json" for n in routers]
        store = Store(f"sqlite:///{tmp_path / 'store.db'}", inventory=INV)
        for node in routers:
            data = json.loads((out_dir / f"{node}.json").read_text(encoding="utf-8"))
            samples = data["samples"]
            want = probe_targets(INV, node, core_scope="adjacent")
            assert want and data["node"] == node
            assert sorted((s["dst"], s["tenant"] or "", s["kind"]) for s in samples) == \
                sorted((t["dst"], t["tenant"] or "", k) for t in want for k in ("icmp", "udp")), node
            assert data["failed_targets"] == [] and data["errors"] == [], data
            assert all(s["src"] == node and s["sent"] >= 5 and s["received"] > 0 for s in samples), samples
            if INV.nodes[node].role == "core":
                adjacent = {lk.b if lk.a == node else lk.a for lk in INV.links if lk.kind == "core" and node in lk.ends}
                assert {s["dst"] for s in samples} == adjacent and {s["tenant"] for s in samples} == {None}
            else:
                assert all(s["tenant"] in INV.tenants for s in samples)
            got = store.ingest(node, f"{node}-playbook", samples)
            assert got["rejected"] == [] and got["accepted"] == len(samples), got

        ms = {}
        for tenant in [None] + sorted(INV.tenants):
            for m in store.windows(tenant, 0, time.time() + 1):
                ms[m.key] = m  # the last window of each pair
        net = Network(INV, list(ms.values()))
        core_links = [(lk.a, lk.b) for lk in INV.links if lk.kind == "core"]
        assert all(net.core_arcs[(a, b)].measured and net.core_arcs[(b, a)].measured for a, b in core_links)
        assert len(compute_paths(INV, list(ms.values()))) == len(compute_paths(INV))

        again = _ansible_playbook(*args)
        assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
        assert _pidfile_pids(pidfile, routers) == pids  # the responders were left running, not restarted
    finally:
        try:
            stop = nr.filter(F(groups__contains="core") | F(groups__contains="edge")).run(
                task=_responder_task, state="stopped", pidfile=pidfile)
            _check(stop)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


def test_probe_playbook_pushes_to_the_api_with_each_nodes_token(lab, nr, tmp_path):
    """With ``probe_api_url`` and a token per node (``probe_api_token: {node: token}`` from a
    vars file), ``playbooks/probe.yml`` posts each node's samples to the push API
    (``npms.api``, served here on 127.0.0.1 over a real Store): everything is accepted,
    under the node the token names, and no token shows in the playbook's output."""
    routers = sorted(n.name for n in INV.nodes.values() if n.role in ("core", "edge"))
    store = Store(f"sqlite:///{tmp_path / 'api.db'}", inventory=INV)
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    secrets = {node: tokens.issue(node) for node in routers}
    token_vars = tmp_path / "tokens.json.vars"
    token_vars.write_text(json.dumps({"probe_api_token": secrets}), encoding="utf-8")
    os.chmod(token_vars, 0o600)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store, tokens), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    run_dir = f"/run/npms/{lab.prefix}push"
    pidfile = run_dir + "/probe-responder-" + lab.prefix + "{host}.pid"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
            time.sleep(0.05)
        proc = _ansible_playbook("-i", INVENTORY, "-i", lab.ansible_file, "playbooks/probe.yml",
                                 "-e", f"probe_api_url=http://127.0.0.1:{port}/", "-e", f"@{token_vars}",
                                 "-e", f"probe_run_dir={run_dir}", "-e", "probe_count=3")
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        recap = _recap(proc)
        assert set(recap) == set(routers) and all(r["failed"] == 0 for r in recap.values()), recap
        assert not [n for n, t in secrets.items() if t in proc.stdout or t in proc.stderr], "a token in the output"
        want = {n: 2 * len(probe_targets(INV, n, core_scope="adjacent")) for n in routers}
        assert store.stats()["accepted"] == sum(want.values()) and store.stats()["rejected_by_reason"] == {}
        got: Dict[str, int] = {}
        for tenant in [None] + sorted(INV.tenants):
            for m in store.windows(tenant, 0, time.time() + 1):
                got[m.src] = got.get(m.src, 0) + (m.samples if m.tenant == tenant else 0)
        assert got == want
        assert re.search(r"\d+ samples accepted, 0 rejected", proc.stdout), proc.stdout[-3000:]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        try:
            _check(nr.filter(F(groups__contains="core") | F(groups__contains="edge")).run(
                task=_responder_task, state="stopped", pidfile=pidfile))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
