# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probes against a real responder on loopback (127.0.0.1 and ::1 only), the statistics
with hand-checked numbers, ping parsing, who probes whom in the lab inventory, the two
modules (argspec = documentation; probe_responder idempotent) and the Nornir tasks
through a local runner."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from nornir import InitNornir
from nornir.core.filter import F
from nornir.core.plugins.connections import ConnectionPluginRegister

from npms import probe
from npms.inventory import load_inventory
from npms.runner import LocalRunner, Result
from npms_nornir import tasks

from npms_testlib import COLLECTIONS, LAB, link_collection

LOOPBACKS = ["127.0.0.1", "::1"]


@pytest.fixture(scope="module")
def responder():
    with probe.Responder("::", 0, 0) as r:
        yield r


def closed_port(family=socket.AF_INET, kind=socket.SOCK_DGRAM):
    """A port nothing listens on (bound, then closed: the kernel answers port unreachable / RST)."""
    with socket.socket(family, kind) as s:
        s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        return s.getsockname()[1]


def assert_wire_format(sample):
    assert set(sample) <= set(probe.SAMPLE_FIELDS), set(sample) - set(probe.SAMPLE_FIELDS)
    assert {"src", "dst", "kind", "ts", "tenant", "sent", "received"} <= set(sample)
    assert [k for k, v in sample.items() if v is None and k not in ("tenant", "rtt_ms")] == []
    assert isinstance(sample["sent"], int) and isinstance(sample["received"], int)
    if sample["kind"] in ("icmp", "udp"):
        assert "rtt_ms" in sample and (sample["rtt_ms"] is None) == (sample["received"] == 0)


# ------------------------------------------------------------------ UDP
@pytest.mark.parametrize("address", LOOPBACKS)
def test_udp_probe_against_the_responder(responder, address):
    out = probe.udp_probe(address, responder.udp_port, count=20, interval_s=0.005, timeout_s=1.0)
    assert (out["sent"], out["received"], out["reordered"]) == (20, 20, 0)
    assert 0 < out["rtt_min_ms"] <= out["rtt_ms"] <= out["rtt_max_ms"] < 50
    assert 0 <= out["jitter_ms"] < 20
    # done as soon as every reply is back, not at the timeout
    assert out["duration_s"] < 0.9


@pytest.mark.parametrize("address", LOOPBACKS)
def test_udp_probe_to_a_closed_port_is_total_loss(address):
    port = closed_port(socket.AF_INET if "." in address else socket.AF_INET6)
    out = probe.udp_probe(address, port, count=3, interval_s=0.01, timeout_s=0.2)
    assert (out["sent"], out["received"], out["rtt_ms"]) == (3, 0, None)
    assert "jitter_ms" not in out and "rtt_min_ms" not in out
    assert out["duration_s"] >= 0.2  # waited the timeout for late replies


def test_responder_ignores_what_is_not_a_probe(responder):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(b"hello, not a probe at all, but long enough to parse......", ("127.0.0.1", responder.udp_port))
        with pytest.raises(socket.timeout):
            s.recvfrom(100)
    # replies to a session are only ours: another session id is not counted
    reply = probe.make_reply(probe.pack_request(1, 42, 0.5), 10.0, 10.001)
    assert probe.parse_reply(reply, 42)[:2] == (1, 0.5)
    assert probe.parse_reply(reply, 43) is None


@pytest.mark.parametrize("transits,expected", [
    # D = 2, 1, 4 (ms): J = 2/16 = 0.125; 0.125 + (1 - 0.125)/16 = 0.1796875;
    # 0.1796875 + (4 - 0.1796875)/16 = 0.41845703125
    ([10.0, 12.0, 11.0, 15.0], 0.41845703125),
    ([5.0, 5.0, 5.0], 0.0),
    ([7.0], 0.0),
    ([], 0.0),
    # one step of 16 ms: J = 1
    ([0.0, 16.0], 1.0),
])
def test_rfc3550_jitter_by_hand(transits, expected):
    assert probe.rfc3550_jitter(transits) == pytest.approx(expected)
    # only differences count: a clock offset between prober and responder cancels
    assert probe.rfc3550_jitter([t + 1234.5 for t in transits]) == pytest.approx(expected)


@pytest.mark.parametrize("seqs,reordered", [
    ([0, 1, 2, 3], 0),
    ([0, 2, 1, 3, 5, 4], 2),
    ([3, 0, 1, 2], 3),
    ([0, 1, 1, 2], 0),  # a duplicate is not a reordering
])
def test_reordering_counted(seqs, reordered):
    assert probe.count_reordered(seqs) == reordered


def test_summarize_out_of_order_replies():
    """Replies as the prober received them: (seq, prober send, responder receive,
    responder send, prober receive); the responder's clock is 1000 s off."""
    replies = [
        (0, 0.000, 1000.005, 1000.006, 0.012),  # rtt 12 - 1 (turnaround) = 11 ms; transit 1000.005
        (2, 0.020, 1000.026, 1000.026, 0.030),  # rtt 10 ms; transit 1000.006
        (1, 0.010, 1000.019, 1000.019, 0.031),  # rtt 21 ms; transit 1000.009 (reordered)
        (1, 0.010, 1000.019, 1000.019, 0.032),  # duplicate: ignored
    ]
    out = probe.summarize_udp(4, replies)
    assert (out["sent"], out["received"], out["reordered"]) == (4, 3, 1)
    assert out["rtt_ms"] == pytest.approx((11 + 10 + 21) / 3, abs=1e-3)
    assert (out["rtt_min_ms"], out["rtt_max_ms"]) == (pytest.approx(10, abs=1e-3), pytest.approx(21, abs=1e-3))
    # forward transits in the responder's receive order: 5, 9, 6 ms (+1000 s):
    # D = 4, 3 -> J = 4/16 = 0.25; 0.25 + (3 - 0.25)/16 = 0.421875 ms
    assert out["jitter_ms"] == pytest.approx(0.421875, abs=1e-3)


# ------------------------------------------------------------------ TCP / HTTP
@pytest.mark.parametrize("address", LOOPBACKS)
def test_tcp_connect_time(responder, address):
    out = probe.tcp_probe(address, responder.tcp_port, timeout_s=1.0)
    assert (out["sent"], out["received"]) == (1, 1)
    assert 0 < out["connect_ms"] < 100
    refused = probe.tcp_probe(address, closed_port(socket.AF_INET if "." in address else socket.AF_INET6,
                                                   socket.SOCK_STREAM), timeout_s=1.0)
    assert (refused["received"], "connect_ms" in refused) == (0, False)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_http_time_to_first_byte(responder, host):
    out = probe.http_probe(f"http://{host}:{responder.tcp_port}/probe", timeout_s=1.0)
    assert (out["sent"], out["received"]) == (1, 1)
    assert 0 < out["ttfb_ms"] < 100
    missing = probe.http_probe(f"http://{host}:{responder.tcp_port}/nothing-here", timeout_s=1.0)
    assert (missing["received"], "ttfb_ms" in missing) == (0, False)  # a 404 is no success
    with socket.create_connection(("127.0.0.1", responder.tcp_port), timeout=1) as s:
        s.sendall(b"GET /probe HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200 OK")


# ------------------------------------------------------------------ ICMP
IPUTILS_OK = """\
PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.

--- 192.0.2.1 ping statistics ---
5 packets transmitted, 4 received, 20% packet loss, time 806ms
rtt min/avg/max/mdev = 4.012/4.250/4.611/0.226 ms
"""
IPUTILS_LOST = """\
PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.

--- 192.0.2.1 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2040ms
"""
BUSYBOX_OK = """\
PING 192.0.2.1 (192.0.2.1): 56 data bytes

--- 192.0.2.1 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.058/0.073/0.088 ms
"""
PER_PACKET = """\
PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.
64 bytes from 192.0.2.1: icmp_seq=1 ttl=64 time=2.00 ms
64 bytes from 192.0.2.1: icmp_seq=2 ttl=64 time=4.00 ms

--- 192.0.2.1 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms
rtt min/avg/max/mdev = 2.000/3.000/4.000/1.000 ms
"""


@pytest.mark.parametrize("text,expected", [
    (IPUTILS_OK, {"sent": 5, "received": 4, "rtt_ms": 4.25, "rtt_min_ms": 4.012, "rtt_max_ms": 4.611}),
    (IPUTILS_LOST, {"sent": 3, "received": 0, "rtt_ms": None}),
    (BUSYBOX_OK, {"sent": 3, "received": 3, "rtt_ms": 0.073, "rtt_min_ms": 0.058, "rtt_max_ms": 0.088}),
    (PER_PACKET, {"sent": 3, "received": 2, "rtt_ms": 3.0, "rtt_min_ms": 2.0, "rtt_max_ms": 4.0}),
])
def test_parse_ping(text, expected):
    assert probe.parse_ping(text) == expected


def test_parse_ping_without_statistics_fails():
    with pytest.raises(probe.ProbeError, match="unknown host"):
        probe.parse_ping("ping: nosuchhost: unknown host\n")


class CannedRunner:
    """Answers every command with one canned result and records the argv."""

    def __init__(self, rc, stdout, stderr=""):
        self.rc, self.stdout, self.stderr, self.calls = rc, stdout, stderr, []

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        self.calls.append((tuple(argv), timeout))
        return Result(tuple(argv), self.rc, self.stdout, self.stderr)


def test_icmp_probe_real_ping_on_loopback():
    out = probe.icmp_probe("127.0.0.1", count=3, interval_s=0.2, timeout_s=1.0, runner=LocalRunner())
    assert (out["sent"], out["received"]) == (3, 3)
    assert 0 < out["rtt_min_ms"] <= out["rtt_ms"] <= out["rtt_max_ms"] < 50


def test_icmp_probe_is_bounded_and_total_loss_is_a_measurement():
    runner = CannedRunner(1, IPUTILS_LOST)
    out = probe.icmp_probe("192.0.2.1", count=3, interval_s=0.5, timeout_s=1.0, runner=runner)
    assert (out["received"], out["rtt_ms"]) == (0, None)
    argv, timeout = runner.calls[0]
    assert argv[:3] == ("ping", "-n", "-q") and argv[-1] == "192.0.2.1"
    assert argv[argv.index("-c") + 1] == "3" and "-w" not in argv  # exactly 3 requests: no in-flight counted lost
    assert timeout == 3 + 5  # bounded by the caller: 3 x 0.5 s + 1 s, rounded up, plus slack
    with pytest.raises(probe.ProbeError, match="exit 2"):
        probe.icmp_probe("nosuchhost", runner=CannedRunner(2, "", "ping: nosuchhost: Name or service not known"))


# ------------------------------------------------------------------ iperf
def test_iperf_against_a_local_server(tmp_path):
    port = closed_port(kind=socket.SOCK_STREAM)
    pidfile = tmp_path / "iperf.pid"
    LocalRunner().run(probe.iperf_server_argv(str(pidfile), port))
    try:
        for _attempt in range(50):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        out = probe.iperf_probe("127.0.0.1", seconds=1, port=port)
        assert (out["sent"], out["received"]) == (1, 1) and out["bandwidth_mbps"] > 10
    finally:
        os.kill(int(pidfile.read_text().strip().strip("\0")), 15)
    refused = probe.run_iperf([{"dst": "x", "address": "127.0.0.1"}], src="me", seconds=1, port=port)
    assert refused[0]["received"] == 0 and "bandwidth_mbps" not in refused[0]
    with pytest.raises(probe.ProbeError, match="1..10"):
        probe.iperf_probe("127.0.0.1", seconds=11)


# ------------------------------------------------------------------ a run
def test_run_probes_samples_in_wire_format(responder):
    closed = closed_port()
    targets = [
        {"dst": "core-a", "address": "127.0.0.1", "kinds": ["icmp", "udp", "tcp", "http"]},
        {"dst": "core-b", "address": "::1", "tenant": "acme"},
    ]
    samples = probe.run_probes(targets, src="me", kinds=["udp"], count=5, interval_s=0.01,
                               udp_port=responder.udp_port, tcp_port=responder.tcp_port)
    assert [(s["dst"], s["kind"], s["tenant"]) for s in samples] == [
        ("core-a", "icmp", None), ("core-a", "udp", None), ("core-a", "tcp", None), ("core-a", "http", None),
        ("core-b", "udp", "acme")]
    for s in samples:
        assert_wire_format(s)
        assert s["src"] == "me" and s["received"] == s["sent"]
        assert abs(s["ts"] - time.time()) < 30
    lost = probe.run_request([{"dst": "gone", "address": "127.0.0.1"}], src="me", kinds=["udp"], count=2,
                             interval_s=0.01, timeout_s=0.2, udp_port=closed)
    assert_wire_format(lost["samples"][0])
    assert lost["samples"][0]["rtt_ms"] is None and "jitter_ms" not in lost["samples"][0]
    assert lost["failed_targets"] == [{"dst": "gone", "tenant": None, "address": "127.0.0.1", "reason": "no reply"}]
    with pytest.raises(probe.ProbeError, match="unknown kind 'iperf'"):
        probe.run_probes([{"dst": "x", "address": "127.0.0.1", "kinds": ["iperf"]}], src="me")


def test_cli_run_prints_samples(responder, capsys):
    from npms import cli  # pylint: disable=import-outside-toplevel

    targets = json.dumps([{"dst": "peer", "address": "127.0.0.1"}])
    code = cli.main(["probe", "run", "--targets", targets, "--src", "me", "--kinds", "udp,tcp", "--count", "3",
                     "--interval", "0.01", "--udp-port", str(responder.udp_port), "--tcp-port", str(responder.tcp_port)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(s["kind"], s["received"]) for s in out["samples"]] == [("udp", 3), ("tcp", 1)]


# ------------------------------------------------------------------ who probes whom
@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


def test_a_core_probes_every_other_core(lab):
    targets = probe.probe_targets(lab, "core-lon")
    assert {t["dst"] for t in targets} == {"core-fra", "core-par", "core-bom", "core-sin", "core-nyc"}
    assert all(t["tenant"] is None for t in targets)
    assert {t["dst"]: t["address"] for t in targets}["core-fra"] == "198.51.100.2"
    adjacent = probe.probe_targets(lab, "core-lon", core_scope="adjacent")
    assert {t["dst"] for t in adjacent} == {"core-fra", "core-par", "core-bom", "core-nyc"}


def test_an_edge_probes_its_pops_and_its_tenants_other_edges(lab):
    targets = probe.probe_targets(lab, "edge-ber")
    got = {(t["tenant"], t["dst"]) for t in targets}
    assert got == {
        # acme: edge-ber's POPs, and acme's other edges (tok, bos) over the direct tunnels
        ("acme", "core-fra"), ("acme", "core-lon"), ("acme", "core-par"), ("acme", "edge-tok"), ("acme", "edge-bos"),
        # globex: the same POPs, and globex's other edges (syd, bos)
        ("globex", "core-fra"), ("globex", "core-lon"), ("globex", "core-par"), ("globex", "edge-syd"),
        ("globex", "edge-bos"),
    }
    assert len(targets) == len(got)
    # each tunnel's far end at the tunnel's endpoint (its WAN address)
    assert {t["dst"]: t["address"] for t in targets}["edge-bos"] == "198.51.100.10"
    syd = probe.probe_targets(lab, "edge-syd")
    assert {(t["tenant"], t["dst"]) for t in syd} == {
        ("globex", "core-sin"), ("globex", "core-bom"), ("globex", "core-nyc"), ("globex", "edge-ber"), ("globex", "edge-bos")}


def test_targets_cli_and_unknown_node(lab, capsys):
    from npms import cli  # pylint: disable=import-outside-toplevel

    assert cli.main(["probe", "targets", LAB, "edge-tok"]) == 0
    assert json.loads(capsys.readouterr().out) == probe.probe_targets(lab, "edge-tok")
    with pytest.raises(probe.ProbeError, match="nobody"):
        probe.probe_targets(lab, "nobody")


# ------------------------------------------------------------------ modules
@pytest.fixture(autouse=True, scope="module")
def collection_path():
    """Modules import as ansible_collections.galactic.npms...: put collections/ on the path."""
    link_collection()
    before = {k for k in sys.modules if k.startswith("ansible_collections")}
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(COLLECTIONS)
        yield
    # imported without Ansible's collection finder: forget them, or a later
    # init_plugin_loader (tests/unit/test_plugins.py) finds a foreign ansible_collections
    for name in [k for k in sys.modules if k.startswith("ansible_collections") and k not in before]:
        del sys.modules[name]


def module_spec(name):
    module = importlib.import_module(f"ansible_collections.galactic.npms.plugins.modules.{name}")
    return module, yaml.safe_load(module.DOCUMENTATION)


def _doc_matches_spec(doc_options, spec, where):
    assert set(doc_options) == set(spec), where
    for name, opt in spec.items():
        doc = doc_options[name]
        here = f"{where}.{name}"
        assert doc.get("type", "str") == opt.get("type", "str"), here
        assert doc.get("required", False) == opt.get("required", False), here
        assert doc.get("default") == opt.get("default"), here
        assert doc.get("choices") == opt.get("choices"), here
        assert doc.get("elements") == opt.get("elements"), here
        if "options" in opt:
            _doc_matches_spec(doc["suboptions"], opt["options"], here)


@pytest.mark.parametrize("name", ["probe", "probe_responder"])
def test_module_documentation_matches_argspec(name):
    module, doc = module_spec(name)
    _doc_matches_spec(doc["options"], module.ARGUMENT_SPEC, name)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)


def run_module(capsys, name, args):
    module, _doc = module_spec(name)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        module.main()
    return exit_.value.code, json.loads(capsys.readouterr().out)


def test_probe_module_in_check_mode(responder, capsys):
    code, out = run_module(capsys, "probe", {
        "src": "edge-x", "_ansible_check_mode": True, "kinds": ["udp", "http"], "count": 3, "interval": 0.01,
        "udp_port": responder.udp_port, "tcp_port": responder.tcp_port,
        "targets": [{"dst": "core-y", "address": "127.0.0.1", "tenant": "acme"}],
    })
    assert code == 0 and out["changed"] is False and out["failed_targets"] == []
    assert [(s["kind"], s["tenant"], s["received"]) for s in out["samples"]] == [("udp", "acme", 3), ("http", "acme", 1)]
    for s in out["samples"]:
        assert_wire_format(s)
    code, out = run_module(capsys, "probe", {"src": "x", "targets": [], "iperf": True, "iperf_seconds": 30})
    assert code == 1 and "iperf_seconds" in out["msg"]


def test_probe_module_takes_a_tunnel_and_reports_the_path(responder, capsys):
    # the tunnel's interface does not exist here: the target's underlay address is probed
    tunnel = {"interface": "wg-no-such0", "address": "fe80::2"}
    code, out = run_module(capsys, "probe", {
        "src": "edge-x", "kinds": ["udp"], "count": 3, "interval": 0.01, "udp_port": responder.udp_port,
        "targets": [{"dst": "core-y", "address": "::1", "tenant": "acme", "tunnel": tunnel}, {"dst": "core-z", "address": "::1"}],
    })
    assert code == 0 and out["failed_targets"] == [], out
    assert [(s["dst"], s["received"]) for s in out["samples"]] == [("core-y", 3), ("core-z", 3)]
    assert [(p["dst"], p["tenant"], p["via"], p["address"]) for p in out["paths"]] == [
        ("core-y", "acme", "underlay", "::1"), ("core-z", None, "underlay", "::1")]
    assert "wg-no-such0" in out["paths"][0]["reason"]
    code, out = run_module(capsys, "probe", {"src": "x", "targets": [{"dst": "y", "address": "::1", "tunnel": {"interface": "wg0"}}]})
    assert code == 1 and "address" in out["msg"]


@pytest.fixture()
def resp_pidfile(tmp_path):
    pidfile = str(tmp_path / "run" / "responder.pid")
    yield pidfile
    probe.responder_state(LocalRunner(), "stopped", pidfile=pidfile)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_probe_responder_is_idempotent(resp_pidfile, capsys):
    udp, tcp = closed_port(), closed_port(kind=socket.SOCK_STREAM)
    args = {"pidfile": resp_pidfile, "udp_port": udp, "tcp_port": tcp, "_ansible_diff": True}
    code, planned = run_module(capsys, "probe_responder", dict(args, _ansible_check_mode=True))
    assert code == 0 and planned["changed"] and planned["pid"] is None and not os.path.exists(resp_pidfile)
    assert "responder: stopped" in planned["diff"]["before"]
    code, first = run_module(capsys, "probe_responder", args)
    assert code == 0 and first["changed"] and _alive(first["pid"])
    assert probe.udp_probe("127.0.0.1", udp, count=3, interval_s=0.01)["received"] == 3
    assert probe.tcp_probe("::1", tcp)["received"] == 1
    code, second = run_module(capsys, "probe_responder", args)
    assert code == 0 and not second["changed"] and second["pid"] == first["pid"] and second["commands"] == []
    # other options: restarted
    code, moved = run_module(capsys, "probe_responder", dict(args, bind="127.0.0.1"))
    assert moved["changed"] and moved["pid"] != first["pid"] and not _alive(first["pid"])
    # stopped in check mode changes nothing
    code, planned = run_module(capsys, "probe_responder", dict(args, state="stopped", _ansible_check_mode=True))
    assert planned["changed"] and _alive(moved["pid"])
    code, stopped = run_module(capsys, "probe_responder", dict(args, state="stopped"))
    assert stopped["changed"] and stopped["pid"] is None
    assert not _alive(moved["pid"]) and not os.path.exists(resp_pidfile)
    assert probe.udp_probe("127.0.0.1", udp, count=2, interval_s=0.01, timeout_s=0.2)["received"] == 0
    code, again = run_module(capsys, "probe_responder", dict(args, state="stopped"))
    assert not again["changed"]


def test_a_stale_pidfile_is_not_our_responder(resp_pidfile):
    os.makedirs(os.path.dirname(resp_pidfile))
    with open(resp_pidfile, "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")  # alive, but pytest, not a responder
    out = probe.responder_state(LocalRunner(), "stopped", pidfile=resp_pidfile)
    assert not out["changed"] and _alive(os.getpid())


# ------------------------------------------------------------------ Nornir
class LocalConnection:
    def open(self, hostname, username, password, port, platform, extras=None, configuration=None):
        self.connection = LocalRunner()

    def close(self):
        self.connection = None


@pytest.fixture()
def local_nr():
    ConnectionPluginRegister.register("npms_probe_local", LocalConnection)
    nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"inventory": LAB}},
                    runner={"plugin": "threaded", "options": {"num_workers": 2}}, logging={"enabled": False})
    nr = nr.filter(F(name="core-lon") | F(name="edge-ber"))
    for host in nr.inventory.hosts.values():
        host.data["npms_connection"] = "npms_probe_local"
    yield nr
    ConnectionPluginRegister.deregister("npms_probe_local")


def test_nornir_probe_task_runs_on_the_node(local_nr, responder):
    targets = [{"dst": "peer", "address": "127.0.0.1", "tenant": None},
               {"dst": "peer6", "address": "::1", "tunnel": {"interface": "wg-no-such0", "address": "fe80::2"}}]
    result = local_nr.run(task=tasks.probe, targets=targets, kinds=["udp", "tcp"], count=3, interval=0.01,
                          udp_port=responder.udp_port, tcp_port=responder.tcp_port, dry_run=True)
    assert not result.failed
    for name, res in result.items():
        out = res[0].result
        assert not res[0].changed
        assert [(s["src"], s["dst"], s["kind"], s["received"]) for s in out["samples"]] == [
            (name, "peer", "udp", 3), (name, "peer", "tcp", 1), (name, "peer6", "udp", 3), (name, "peer6", "tcp", 1)]
        for s in out["samples"]:
            assert_wire_format(s)
        assert [(p["dst"], p["via"], p["address"]) for p in out["paths"]] == [
            ("peer", "underlay", "127.0.0.1"), ("peer6", "underlay", "::1")]


def test_nornir_probe_task_default_targets_come_from_the_inventory(local_nr, lab, monkeypatch):
    seen = {}

    class Recorder(LocalRunner):
        def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
            seen[argv[argv.index("--src") + 1]] = json.loads(stdin)
            return Result(tuple(argv), 0, json.dumps({"samples": [], "failed_targets": [], "errors": []}), "")

    monkeypatch.setattr(tasks, "get_runner", lambda task, connection=None: Recorder())
    result = local_nr.run(task=tasks.probe)
    assert not result.failed
    assert seen == {"core-lon": probe.probe_targets(lab, "core-lon"), "edge-ber": probe.probe_targets(lab, "edge-ber")}


def test_nornir_probe_responder_task(local_nr, tmp_path):
    nr = local_nr.filter(name="core-lon")
    pidfile = str(tmp_path / "nr.pid")
    udp, tcp = closed_port(), closed_port(kind=socket.SOCK_STREAM)
    try:
        dry = nr.run(task=tasks.probe_responder, pidfile=pidfile, udp_port=udp, tcp_port=tcp, dry_run=True)
        assert dry["core-lon"][0].changed and not os.path.exists(pidfile)
        first = nr.run(task=tasks.probe_responder, pidfile=pidfile, udp_port=udp, tcp_port=tcp, dry_run=False)
        assert first["core-lon"][0].changed and "responder: running" in first["core-lon"][0].diff
        second = nr.run(task=tasks.probe_responder, pidfile=pidfile, udp_port=udp, tcp_port=tcp, dry_run=False)
        assert not second["core-lon"][0].changed
        assert second["core-lon"][0].result["pid"] == first["core-lon"][0].result["pid"]
    finally:
        stopped = nr.run(task=tasks.probe_responder, state="stopped", pidfile=pidfile, dry_run=False)
    assert stopped["core-lon"][0].changed and not os.path.exists(pidfile)
