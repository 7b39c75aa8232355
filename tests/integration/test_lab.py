# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The namespace lab of inventory/lab, for real: one lab per module, tests in file order.

Up; every pair the inventory connects reaches each other on the underlay; a second up
changes nothing; impairments are measured (ranges, not values: the userspace delay
element adds ~1 ms and some jitter, LAB_NOTES); status names what is missing; an up
after a crash recovers; down leaves nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Tuple

import yaml

from npms.cli import main as npms_main
from npms.inventory import load_inventory
from npms.runner import LocalRunner, NetnsRunner
from npms_lab.frr import crash_dirs
from npms_lab.procs import pids_with_path, read_pid

INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "lab"
INV = load_inventory(INVENTORY)
WAN_KINDS = ("core", "access", "direct")
# A 4 ms (one-way) core link; its far end has no other role in the tests below.
IMPAIRED = ("core-fra", "core-lon")


# --------------------------------------------------------------------------- helpers
_RTT_RE = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_SENT_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(netns: str, dst: str, count: int = 3, interval: float = 0.2, src: str = "", wait: float = 3.0,
         ) -> Tuple[int, int, List[float]]:
    """(sent, received, [min, avg, max, mdev] ms) of a ping from inside ``netns``."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if src:
        argv += ["-I", src]
    res = NetnsRunner(netns).run(argv + [dst], check=False, timeout=count * interval + wait + 30)
    sent = _SENT_RE.search(res.stdout)
    rtt = _RTT_RE.search(res.stdout)
    return (int(sent.group(1)) if sent else count, int(sent.group(2)) if sent else 0,
            [float(x) for x in rtt.groups()] if rtt else [])


_MAIN = "import sys; from npms.cli import main; sys.exit(main(sys.argv[1:]))"


def npms(*args: str, check: bool = False):
    return LocalRunner().run([sys.executable, "-c", _MAIN, "lab"] + list(args), check=check, timeout=300)


def netns_list() -> List[str]:
    out = LocalRunner().run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ns(lab, node: str) -> str:
    return lab.prefix + node


def iface(lab, node: str, peer: str) -> str:
    for lk in lab.recorded_plan().links:
        if (lk.a, lk.b) == (node, peer):
            return lk.a_port.ifname
        if (lk.b, lk.a) == (node, peer):
            return lk.b_port.ifname
    raise KeyError((node, peer))


# --------------------------------------------------------------------------- up
def test_up_builds_every_node_and_status_is_clean(lab):
    st = lab.status()
    assert st.ok, st.problems
    assert {n["name"] for n in st.nodes} >= set(INV.nodes)
    present = set(netns_list())
    for node in INV.nodes:
        assert lab.prefix + node in present
    customers = [n for n in INV.nodes.values() if n.role == "customer"]
    assert {n["netns"] for n in st.nodes if n["role"] == "host"} == {f"{lab.prefix}h-{c.name}" for c in customers}
    daemons = {(d["node"], d["daemon"]) for d in st.daemons if d["running"]}
    for node in INV.nodes.values():
        for daemon in ("zebra", "staticd", "bgpd"):
            assert ((node.name, daemon) in daemons) == (node.role in ("edge", "customer"))
    res = npms("status", "--prefix", lab.prefix)
    assert res.rc == 0, res.stdout + res.stderr
    assert "all present" in res.stdout


def test_every_wan_link_carries_its_peers_wan_addresses(lab):
    """A tunnel between two WAN addresses crosses exactly that link, both ways."""
    jobs = []
    for lk in INV.links:
        if lk.kind not in WAN_KINDS:
            continue
        a, b = INV.nodes[lk.a], INV.nodes[lk.b]
        for src, dst in ((a, b), (b, a)):
            route = NetnsRunner(ns(lab, src.name)).run(["ip", "-j", "route", "get", dst.wan_address]).stdout
            got = json.loads(route)[0]
            assert got["dev"] == iface(lab, src.name, dst.name), f"{src.name} -> {dst.name}: {got}"
            assert got["prefsrc"] == src.wan_address
        jobs.append((ns(lab, a.name), b.wan_address, a.wan_address, f"{lk.a}~{lk.b}"))

    def one(job):
        netns, dst, src, name = job
        # direct links lose 0.5 % per direction: a few packets, one answer is enough
        sent, received = ping(netns, dst, count=4, interval=0.2, src=src)[:2]
        return name, received

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, jobs))
    unreachable = [name for name, received in results if received == 0]
    assert not unreachable, f"no answer across: {unreachable}"
    assert len(results) == sum(1 for lk in INV.links if lk.kind in WAN_KINDS)


def test_attachments_answer_on_ipv4_ipv6_and_link_local(lab):
    for lk in INV.links:
        if lk.kind != "attachment":
            continue
        edge, cust = INV.nodes[lk.a], INV.nodes[lk.b]
        (cif,) = [i for i in cust.interfaces if i.peer == edge.name]
        (eif,) = [i for i in edge.interfaces if i.peer == cust.name]
        for addr in cif.addresses:
            ip = ipaddress.ip_interface(addr).ip
            dst = f"{ip}%{eif.name}" if ip.is_link_local else str(ip)
            sent, received = ping(ns(lab, edge.name), dst, count=2, interval=0.2)[:2]
            assert received == sent, f"{edge.name} -> {cust.name} {dst}"


def test_hosts_reach_their_customer_router(lab):
    hosts = lab.recorded_plan()
    count = 0
    for host in hosts.nodes:
        if host.role != "host":
            continue
        router = hosts.node(host.behind)
        assert host.addresses, host.name
        lan = [lk for lk in hosts.links if lk.b == host.name][0]
        for addr in lan.a_port.addresses:
            ip = ipaddress.ip_interface(addr).ip
            if ip.is_link_local:
                continue
            # the host's address is in the customer's prefix, the router is its gateway
            assert any(ipaddress.ip_interface(h).network == ipaddress.ip_interface(addr).network for h in host.addresses)
            sent, received = ping(host.netns, str(ip), count=2, interval=0.2)[:2]
            assert received == sent, f"{host.name} -> {router.name} {ip}"
            count += 1
    assert count == 2 * sum(1 for n in INV.nodes.values() if n.role == "customer")


def test_frr_answers_vtysh_in_every_bgp_namespace(lab):
    for node in INV.nodes.values():
        if node.role not in ("edge", "customer"):
            continue
        out = LocalRunner().run(["vtysh", "-N", ns(lab, node.name), "-c", "show version"]).stdout
        assert "FRRouting" in out and f"({node.name})" in out, out


def test_front_end_inventories(lab):
    data = json.loads(open(lab.lab_file, encoding="utf-8").read())
    assert data["prefix"] == lab.prefix and data["inventory"] == str(INVENTORY)
    assert data["nodes"]["core-lon"] == {"netns": lab.prefix + "core-lon", "role": "core"}
    assert data["hosts"]["h-cust-acme-ber"]["behind"] == "cust-acme-ber"
    assert "10.10.1.2/24" in data["hosts"]["h-cust-acme-ber"]["addresses"]
    link = [lk for lk in data["links"] if {lk["a"], lk["b"]} == {"core-fra", "core-sin"}][0]
    assert link["name"] == "fra-sin-red-sea" and link["impairment"]["delay_ms"] == 38
    assert {lk["kind"] for lk in data["links"]} == {"core", "access", "direct", "attachment"}
    overlay = yaml.safe_load(open(lab.ansible_file, encoding="utf-8").read())
    hosts = overlay["all"]["hosts"]
    assert set(hosts) == set(INV.nodes)
    assert hosts["edge-ber"] == {"ansible_connection": "galactic.npms.netns", "ansible_host": lab.prefix + "edge-ber"}
    behind = overlay["all"]["children"]["lab_hosts"]["hosts"]
    assert behind["h-cust-globex-syd"]["ansible_host"] == lab.prefix + "h-cust-globex-syd"


def test_second_up_changes_nothing(lab):
    before = {p: read_pid(p) for p in _frr_pid_files(lab)}
    inode = os.stat(f"/run/netns/{lab.prefix}core-lon").st_ino
    res = npms("up", str(INVENTORY), "--prefix", lab.prefix)
    assert res.rc == 0 and "nothing changed" in res.stdout, res.stdout + res.stderr
    assert {p: read_pid(p) for p in _frr_pid_files(lab)} == before
    assert os.stat(f"/run/netns/{lab.prefix}core-lon").st_ino == inode


def _frr_pid_files(lab) -> List[str]:
    base = os.path.join(lab.state_dir, "frr")
    return sorted(os.path.join(base, n, f) for n in os.listdir(base) for f in os.listdir(os.path.join(base, n))
                  if f.endswith(".pid"))


# --------------------------------------------------------------------------- impairments
def _rtt(lab, count: int = 20, interval: float = 0.05) -> Tuple[float, List[float]]:
    a, b = (INV.nodes[n] for n in IMPAIRED)
    sent, received, rtt = ping(ns(lab, a.name), b.wan_address, count=count, interval=interval, src=a.wan_address)
    return 100.0 * (sent - received) / sent, rtt


def test_impair_delay_and_jitter_then_restore(lab):
    name = "~".join(IMPAIRED)
    loss, rtt = _rtt(lab)
    assert loss == 0 and 8.0 <= rtt[1] <= 14.0, rtt  # nominal: 4 ms each way

    res = npms("impair", name, "--prefix", lab.prefix, "--delay", "20", "--jitter", "0")
    assert res.rc == 0, res.stderr
    loss, rtt = _rtt(lab)
    assert loss == 0 and 40.0 <= rtt[1] <= 47.0 and rtt[0] >= 39.5, rtt

    lab.impair(name, jitter_ms=5)  # delay stays 20
    loss, rtt = _rtt(lab, count=40)
    assert 36.0 <= rtt[1] <= 52.0 and 2.0 <= rtt[3] <= 14.0, rtt  # RTT sd ~ 5 * sqrt(2)

    st = json.loads(npms("status", "--prefix", lab.prefix, "--format", "json").stdout)
    (entry,) = [lk for lk in st["links"] if lk["name"] == name]
    assert entry["impairment"]["delay_ms"] == 20 and entry["impairment"]["jitter_ms"] == 5
    assert entry["nominal"]["delay_ms"] == 4

    res = npms("restore", name, "--prefix", lab.prefix)
    assert res.rc == 0, res.stderr
    loss, rtt = _rtt(lab)
    assert loss == 0 and 8.0 <= rtt[1] <= 14.0, rtt
    assert lab.status().ok


def test_impair_loss_then_restore(lab):
    name = "~".join(IMPAIRED)
    lab.impair(name, loss_pct=20)
    loss, _rtt_ms = _rtt(lab, count=300, interval=0.01)
    # 20 % each way: 1 - 0.8 ** 2 = 36 % of round trips lost (n = 300: sd ~ 2.8 %)
    assert 24.0 <= loss <= 48.0, loss
    lab.restore()
    loss, _rtt_ms = _rtt(lab, count=100, interval=0.01)
    assert loss <= 2.0, loss


def test_impair_rate_then_restore(lab):
    name = "~".join(IMPAIRED)
    a, b = (INV.nodes[n] for n in IMPAIRED)
    lab.impair(name, rate_mbps=10)
    server = NetnsRunner(ns(lab, b.name))
    server.run(["iperf3", "-s", "-1", "-D", "-B", b.wan_address])
    try:
        out = NetnsRunner(ns(lab, a.name)).run(
            ["iperf3", "-c", b.wan_address, "-B", a.wan_address, "-t", "3", "-J"], timeout=60).stdout
    finally:
        lab.restore(name)
    mbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
    assert 5.0 <= mbps <= 11.0, mbps


def test_impair_names_the_known_links_when_unknown(lab):
    res = npms("impair", "core-lon~edge-syd", "--prefix", lab.prefix, "--delay", "5")
    assert res.rc == 2
    assert "unknown link 'core-lon~edge-syd'" in res.stderr and "fra-sin-red-sea" in res.stderr
    res = npms("impair", "edge-ber~cust-acme-ber", "--prefix", lab.prefix, "--delay", "5")
    assert res.rc == 2 and "attachment link" in res.stderr


# --------------------------------------------------------------------------- damage and recovery
def test_status_names_a_missing_namespace_and_a_dead_daemon_then_up_recovers(lab):
    bgpd = read_pid(os.path.join(lab.state_dir, "frr", "edge-tok", "bgpd.pid"))
    assert crash_dirs("bgpd", bgpd)
    os.kill(bgpd, signal.SIGKILL)
    LocalRunner().run(["ip", "netns", "del", lab.prefix + "core-par"])
    res = npms("status", "--prefix", lab.prefix)
    assert res.rc == 1
    assert f"namespace {lab.prefix}core-par (node core-par) is missing" in res.stdout
    assert "daemon bgpd of node edge-tok" in res.stdout

    res = npms("up", str(INVENTORY), "--prefix", lab.prefix)
    assert res.rc == 0 and "rebuilding" in res.stdout, res.stdout + res.stderr
    assert lab.status().ok
    assert crash_dirs("bgpd", bgpd) == []  # the killed daemon's /var/tmp/frr log buffers went too
    par, lon = INV.nodes["core-par"], INV.nodes["core-lon"]
    sent, received = ping(ns(lab, "core-par"), lon.wan_address, count=2, src=par.wan_address)[:2]
    assert received == sent


def test_up_cleans_up_when_the_state_is_gone(lab):
    # as after a reboot of /run or an rm -rf: namespaces and daemons are left without state
    shutil.rmtree(lab.state_dir)
    res = npms("up", str(INVENTORY), "--prefix", lab.prefix)
    assert res.rc == 0 and "cleaning up leftovers" in res.stdout, res.stdout + res.stderr
    assert lab.status().ok


# --------------------------------------------------------------------------- down
def test_down_leaves_nothing(lab, lab_metrics):
    daemons = [(os.path.basename(f).split(".")[0], read_pid(f)) for f in _frr_pid_files(lab)]
    start = time.monotonic()
    res = npms("down", str(INVENTORY), "--prefix", lab.prefix)
    lab_metrics["down_s"] = time.monotonic() - start
    assert res.rc == 0, res.stderr
    assert [n for n in netns_list() if n.startswith(lab.prefix)] == []
    assert pids_with_path(lab.state_dir) == []
    assert not os.path.exists(lab.state_dir)
    assert [d for daemon, pid in daemons for d in crash_dirs(daemon, pid)] == []
    for base in ("/run/frr", "/etc/frr"):
        assert [n for n in os.listdir(base) if n.startswith(lab.prefix)] == []
    res = npms("status", "--prefix", lab.prefix)
    assert res.rc == 1 and "not up" in res.stdout
    # down again: nothing to do, still fine
    assert npms("down", str(INVENTORY), "--prefix", lab.prefix).rc == 0


def test_not_root_is_refused_by_name(lab_host, monkeypatch, capsys):
    # in-process as "uid 65534": a real setpriv run cannot read a checkout under a
    # private directory (CI clones into mktemp -d), which would test permissions instead
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    rc = npms_main(["lab", "up", str(INVENTORY), "--prefix", "t3-never-"])
    err = capsys.readouterr().err
    assert rc == 1 and "needs root" in err, err
    assert [n for n in netns_list() if n.startswith("t3-never-")] == []
