# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAN impairment engine (npms_lab.wan) measured on two namespaces joined by a veth.

Namespaces ``tw-<pid>-a`` / ``tw-<pid>-b`` (192.0.2.1/30 and 2001:db8::1/64 on ``twa``,
.2 / ::2 on ``twb``), and a host ``tw-<pid>-h`` behind A (198.51.100.2/30) whose packets
A forwards; every packet stays between them.  Ranges, not values: the
userspace delay element adds a fraction of a millisecond and some spread (LAB_NOTES).
The figures measured are written to tests/output/wan_figures.json and to the summary.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from npms.runner import LocalRunner, NetnsRunner, netns_argv

ROOT = Path(__file__).resolve().parents[2]
NS_A = f"tw-{os.getpid()}-a"
NS_B = f"tw-{os.getpid()}-b"
NS_H = f"tw-{os.getpid()}-h"  # a host behind A: its packets are forwarded by A
IF_A, IF_B = "twa", "twb"
ADDR_A, ADDR_B = "192.0.2.1", "192.0.2.2"
ADDR6_A, ADDR6_B = "2001:db8::1", "2001:db8::2"
ADDR_H, ADDR_AH, NET_H = "198.51.100.2", "198.51.100.1", "198.51.100.0/30"
FIGURES: Dict[str, Any] = {}

_REPLY_RE = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")
_SENT_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")


# --------------------------------------------------------------------------- helpers
def _host_ready() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc", "iptables-legacy-restore", "ip6tables-legacy-restore", "ping", "iperf3"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make setup)"
    try:
        import netfilterqueue  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return "NetfilterQueue not installed (make setup)"
    return ""


def ping(src_ns: str, dst: str, count: int, interval: float = 0.01, wait: float = 2.0) -> Tuple[int, List[Tuple[int, float]]]:
    """(sent, [(icmp_seq, rtt ms)] in arrival order) of a ping from inside ``src_ns``."""
    res = NetnsRunner(src_ns).run(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), dst],
                                  check=False, timeout=count * interval + wait + 10)
    replies = [(int(m.group(1)), float(m.group(2))) for m in _REPLY_RE.finditer(res.stdout)]
    sent = _SENT_RE.search(res.stdout)
    return (int(sent.group(1)) if sent else count), replies


def rtts(replies: List[Tuple[int, float]]) -> List[float]:
    return [rtt for _seq, rtt in replies]


def reordered(replies: List[Tuple[int, float]]) -> int:
    """Replies that arrived after one with a higher sequence number."""
    highest, late = -1, 0
    for seq, _rtt in replies:
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    return late


def iperf_mbps(seconds: int = 3) -> float:
    """TCP goodput A -> B (Mbit/s, as the receiver counted it)."""
    server = subprocess.Popen(netns_argv(NS_B, ["iperf3", "-s", "-1", "-B", ADDR_B, "-p", "5301"]),  # pylint: disable=consider-using-with
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        res = NetnsRunner(NS_A).run(["iperf3", "-c", ADDR_B, "-p", "5301", "-t", str(seconds), "-J"],
                                    check=False, timeout=seconds + 15)
        data = json.loads(res.stdout or "{}")
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        server.kill()
        server.wait(timeout=5)


def udp_send_errors(count: int = 500) -> int:
    """How many of ``count`` UDP datagrams A -> B the sender saw fail (a WAN never says)."""
    code = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "bad = 0\n"
            f"for i in range({count}):\n"
            "    try:\n"
            f"        s.sendto(b'x' * 64, ('{ADDR_B}', 9))\n"
            "    except OSError:\n"
            "        bad += 1\n"
            "print(bad)\n")
    res = NetnsRunner(NS_A).run(["python3", "-c", code], timeout=30)
    return int(res.stdout.strip())


def npms_wan_rules(netns: str) -> str:
    out = ""
    for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
        out += NetnsRunner(netns).run([tool, "-t", "mangle"]).stdout
    return "\n".join(line for line in out.splitlines() if "NPMS-WAN" in line or "npms-wan" in line)


def root_qdisc(netns: str, ifname: str) -> str:
    return LocalRunner().run(["tc", "-n", netns, "qdisc", "show", "dev", ifname, "root"]).stdout


def both(emu, imp) -> None:
    emu.set(NS_A, IF_A, imp)
    emu.set(NS_B, IF_B, imp)


def processes_naming(path: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if path.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def link() -> Iterator[None]:
    why = _host_ready()
    if why:
        pytest.fail(why, pytrace=False)
    local = LocalRunner()
    for ns in (NS_A, NS_B, NS_H):
        local.run(["ip", "netns", "add", ns])
    try:
        local.run(["ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B, "netns", NS_B])
        for ns, ifname, addr, addr6 in ((NS_A, IF_A, ADDR_A, ADDR6_A), (NS_B, IF_B, ADDR_B, ADDR6_B)):
            local.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])
            local.run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ifname])
            local.run(["ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", ifname, "nodad"])
            local.run(["ip", "-n", ns, "link", "set", "lo", "up"])
            local.run(["ip", "-n", ns, "link", "set", ifname, "up"])
        local.run(["ip", "link", "add", "twh", "netns", NS_H, "type", "veth", "peer", "name", "twah", "netns", NS_A])
        local.run(["ip", "-n", NS_H, "addr", "add", f"{ADDR_H}/30", "dev", "twh"])
        local.run(["ip", "-n", NS_A, "addr", "add", f"{ADDR_AH}/30", "dev", "twah"])
        for ns, ifname in ((NS_H, "twh"), (NS_A, "twah"), (NS_H, "lo")):
            local.run(["ip", "-n", ns, "link", "set", ifname, "up"])
        local.run(["ip", "-n", NS_H, "route", "add", "default", "via", ADDR_AH])
        local.run(["ip", "-n", NS_B, "route", "add", NET_H, "via", ADDR_A])
        local.run(["ip", "netns", "exec", NS_A, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        yield
    finally:
        for ns in (NS_A, NS_B, NS_H):
            for pid in local.run(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # only processes inside our own namespaces
                except (ProcessLookupError, ValueError):
                    pass
            local.run(["ip", "netns", "del", ns], check=False)
        out = ROOT / "tests" / "output"
        out.mkdir(parents=True, exist_ok=True)
        (out / "wan_figures.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


@pytest.fixture()
def emu(link, tmp_path) -> Iterator[Any]:
    from npms_lab.wan import WanEmulator  # pylint: disable=import-outside-toplevel

    state_dir = tmp_path / "wan"
    emulator = WanEmulator(str(state_dir))
    yield emulator
    emulator.shutdown()


# --------------------------------------------------------------------------- tests
def test_bad_values_name_the_field_and_value(emu):
    from npms_lab.wan import Impairment, ImpairmentError  # pylint: disable=import-outside-toplevel

    cases = [
        (Impairment(delay_ms=-1.0), "delay_ms", "-1.0"),
        (Impairment(jitter_ms=-0.5), "jitter_ms", "-0.5"),
        (Impairment(loss_pct=101.0), "loss_pct", "101.0"),
        (Impairment(loss_pct=float("nan")), "loss_pct", "nan"),
        (Impairment(rate_mbps=0.0), "rate_mbps", "0.0"),
        (Impairment(rate_mbps=-10.0), "rate_mbps", "-10.0"),
        (Impairment(delay_ms="20"), "delay_ms", "'20'"),
    ]
    for imp, field, value in cases:
        with pytest.raises(ValueError) as exc:
            emu.set(NS_A, IF_A, imp)
        assert isinstance(exc.value, ImpairmentError)
        assert field in str(exc.value) and value in str(exc.value), str(exc.value)
    with pytest.raises(ValueError, match="netns.*'tw-no-such-ns'"):
        emu.set("tw-no-such-ns", IF_A, Impairment(delay_ms=5))
    with pytest.raises(ValueError, match="ifname.*'nosuch0'"):
        emu.set(NS_A, "nosuch0", Impairment(delay_ms=5))
    # Nothing was made on the way.
    assert emu.get() == {} and npms_wan_rules(NS_A) == ""
    assert not os.path.exists(emu.state_dir) or os.listdir(emu.state_dir) in ([], ["wan.lock"])


def test_delay_20ms_each_way_gives_40ms_rtt(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    _sent, base = ping(NS_A, ADDR_B, 20)
    FIGURES["rtt_unimpaired_ms"] = round(statistics.mean(rtts(base)), 3)
    start = time.monotonic()
    both(emu, Impairment(delay_ms=20))
    FIGURES["set_two_ends_s"] = round(time.monotonic() - start, 3)
    sent, replies = ping(NS_A, ADDR_B, 100)
    values = rtts(replies)
    FIGURES["rtt_asked_40_ms"] = {"mean": round(statistics.mean(values), 3), "min": min(values), "max": max(values),
                                  "stdev": round(statistics.pstdev(values), 3)}
    # Typical RTT within 2 ms of what was asked (never below it); a busy machine adds rare spikes.
    assert len(replies) == sent == 100
    assert 40.0 <= min(values) and 40.0 <= statistics.median(values) <= 42.0
    assert statistics.mean(values) <= 44.0
    _sent6, replies6 = ping(NS_A, ADDR6_B, 30)
    FIGURES["rtt6_asked_40_ms"] = round(statistics.median(rtts(replies6)), 3)
    assert len(replies6) == 30 and 40.0 <= statistics.median(rtts(replies6)) <= 42.0
    stats = emu.stats()
    FIGURES["daemon_rss_kib"] = stats["rss_kib"]
    assert stats["rss_kib"] < 64 * 1024


def test_forwarded_traffic_is_delayed_too(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=20))
    sent, replies = ping(NS_H, ADDR_B, 50)
    values = rtts(replies)
    FIGURES["rtt_forwarded_asked_40_ms"] = round(statistics.median(values), 3)
    assert len(replies) == sent and 40.0 <= statistics.median(values) <= 42.0 and reordered(replies) == 0


def test_tcp_through_delayed_link_reaches_tens_of_mbits(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=20))
    mbps = iperf_mbps(3)
    FIGURES["tcp_mbps_40ms_rtt"] = round(mbps, 1)
    assert mbps >= 20.0


def test_jitter_spreads_rtt_without_reordering(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=20, jitter_ms=5))
    sent, replies = ping(NS_A, ADDR_B, 200)
    values = rtts(replies)
    # Two independent one-way spreads of 5 ms: sqrt(2) x 5 = 7.1 ms; FIFO release trims it a little.
    stdev = statistics.pstdev(values)
    FIGURES["rtt_jitter_5ms_each_way"] = {"mean": round(statistics.mean(values), 3), "stdev": round(stdev, 3),
                                          "expected_stdev": round(math.sqrt(2) * 5, 2), "reordered": reordered(replies)}
    assert len(replies) == sent
    assert 5.0 <= stdev <= 9.0
    assert 38.0 <= statistics.mean(values) <= 47.0
    assert reordered(replies) == 0


def test_loss_10pct_each_way_is_silent_and_in_range(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(loss_pct=10))
    sent, replies = ping(NS_A, ADDR_B, 300, wait=1.0)
    lost = 100.0 * (sent - len(replies)) / sent
    # Round trip: 1 - 0.9^2 = 19 %; 300 pings: sd 2.3 %, so 10..28 % is about +-4 sd.
    FIGURES["ping_loss_asked_10pct_each_way"] = {"expected_pct": 19.0, "measured_pct": round(lost, 1)}
    assert 10.0 <= lost <= 28.0
    # The namespace's own senders are not told (as on a WAN): no EPERM / ENOBUFS.
    assert udp_send_errors() == 0


def test_rate_10mbit_limits_tcp(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    emu.set(NS_A, IF_A, Impairment(rate_mbps=10))
    mbps = iperf_mbps(3)
    FIGURES["tcp_mbps_rate_10"] = round(mbps, 2)
    assert 7.0 <= mbps <= 10.5


def test_change_at_run_time_keeps_the_link_and_the_daemon(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=5))
    pid = emu.stats()["pid"]
    proc = subprocess.Popen(netns_argv(NS_A, ["ping", "-n", "-c", "150", "-i", "0.01", "-W", "2", ADDR_B]),  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.6)
    both(emu, Impairment(delay_ms=50))
    out, _err = proc.communicate(timeout=20)
    replies = [(int(m.group(1)), float(m.group(2))) for m in _REPLY_RE.finditer(out)]
    values = rtts(replies)
    before, after = statistics.median(values[:20]), statistics.median(values[-20:])
    FIGURES["runtime_change_5_to_50"] = {"before_ms": before, "after_ms": after, "replies": len(replies)}
    assert len(replies) == 150  # nothing lost while it changed
    assert 10.0 <= before <= 12.0 and 100.0 <= after <= 102.0
    assert reordered(replies) == 0
    assert emu.stats()["pid"] == pid  # same daemon: nothing restarted
    assert emu.check() == []


def test_get_reads_back_from_the_live_system(emu):
    from npms_lab.wan import Impairment, same  # pylint: disable=import-outside-toplevel

    want_a = Impairment(delay_ms=12.5, jitter_ms=1.5, loss_pct=2.25, rate_mbps=40)
    want_b = Impairment(loss_pct=0.5)
    assert emu.set(NS_A, IF_A, want_a) is True
    assert emu.set(NS_B, IF_B, want_b) is True
    assert emu.set(NS_A, IF_A, want_a) is False  # idempotent
    got = emu.get()
    assert set(got) == {(NS_A, IF_A), (NS_B, IF_B)}
    assert same(got[(NS_A, IF_A)], want_a) and same(got[(NS_B, IF_B)], want_b)
    assert emu.check() == []
    # Someone removes the loss rule by hand: get() and check() see it, the file does not matter.
    NetnsRunner(NS_B).run(["iptables-legacy", "-w", "5", "-t", "mangle", "-F", "NPMS-WAN"])
    assert (NS_B, IF_B) not in emu.get()
    assert f"{NS_B}/{IF_B}: loss rule missing (IPv4)" in emu.check()
    assert emu.set(NS_B, IF_B, want_b) is True  # repaired
    assert emu.check() == []


def test_check_reports_a_killed_daemon_and_set_restarts_it(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=20))
    pid = emu.stats()["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    problems = emu.check()
    assert any("daemon not running" in p for p in problems), problems
    # The link stays up, undelayed (queue bypass), until the daemon is back.
    _sent, replies = ping(NS_A, ADDR_B, 10)
    assert len(replies) == 10 and max(rtts(replies)) < 5.0
    assert emu.get() == {}
    assert emu.set(NS_A, IF_A, Impairment(delay_ms=20)) is True  # restarts it, re-pushes both ends
    assert emu.check() == []
    _sent, replies = ping(NS_A, ADDR_B, 20)
    assert 40.0 <= statistics.median(rtts(replies)) <= 42.0


def test_clear_restores_the_unimpaired_link(emu):
    from npms_lab.wan import Impairment  # pylint: disable=import-outside-toplevel

    both(emu, Impairment(delay_ms=20, loss_pct=1, rate_mbps=50))
    assert emu.clear(NS_A, IF_A) is True
    assert emu.clear(NS_B, IF_B) is True
    assert emu.clear(NS_B, IF_B) is False
    _sent, replies = ping(NS_A, ADDR_B, 50)
    FIGURES["rtt_after_clear_ms"] = round(statistics.mean(rtts(replies)), 3)
    assert len(replies) == 50 and statistics.mean(rtts(replies)) < 1.0
    assert emu.get() == {} and emu.check() == []
    assert npms_wan_rules(NS_A) == "" and npms_wan_rules(NS_B) == ""
    assert "tbf" not in root_qdisc(NS_A, IF_A)
    assert processes_naming(emu.state_dir) == []  # no delay left: no daemon either


def test_shutdown_leaves_nothing_even_after_a_crash(emu):
    from npms_lab.wan import Impairment, WanEmulator  # pylint: disable=import-outside-toplevel

    emu.set(NS_A, IF_A, Impairment(delay_ms=10, jitter_ms=1, loss_pct=5, rate_mbps=20))
    emu.set(NS_B, IF_B, Impairment(delay_ms=10))
    pid = emu.stats()["pid"]
    os.kill(pid, signal.SIGKILL)  # a crash: rules, qdisc, socket and files left behind
    time.sleep(0.1)
    fresh = WanEmulator(emu.state_dir)  # as a new process would see it
    fresh.shutdown()
    assert processes_naming(emu.state_dir) == []
    assert npms_wan_rules(NS_A) == "" and npms_wan_rules(NS_B) == ""
    assert "tbf" not in root_qdisc(NS_A, IF_A)
    assert not os.path.exists(emu.state_dir) or os.listdir(emu.state_dir) == []
    fresh.shutdown()  # again: nothing to do, no error
    never = os.path.join(emu.state_dir, "never-used")
    WanEmulator(never).shutdown()
    assert not os.path.exists(never)
    _sent, replies = ping(NS_A, ADDR_B, 10)
    assert len(replies) == 10 and max(rtts(replies)) < 5.0
