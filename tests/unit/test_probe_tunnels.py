# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edges probe through their WireGuard tunnels: the tunnels carry link-locals
(npms.overlay), the edges' targets name the tunnel and the far end's link-local
(npms.probe.probe_targets), and a run probes through a tunnel that is up and over the
underlay otherwise, saying which in ``paths``.

No tunnel exists here: the interface check (``socket.if_nametoindex``) and ``wg`` are
faked, and the "tunnel" address of a target is ``::1``, where a real responder listens
(bound to ``::1`` only, so the IPv4 underlay address of the same target is dead: which
address answered shows which path was taken).  Scoped link-locals are checked where they
are turned into socket addresses and URLs; with a real WireGuard tunnel they are the
lab's business."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from npms import probe
from npms.inventory import load_inventory
from npms.overlay import LINK_LOCAL_A, LINK_LOCAL_B, tunnel_name, tunnels, wireguard_config
from npms.resources import base
from npms.runner import CommandError, LocalRunner, Result

from npms_testlib import LAB
from test_wireguard_linux import ScriptedRunner, node_with, resource

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PEER_KEY = "fCoRuRGk0tb52xzutEKcF9WGfk8AADUgzey1foxQmXU="
ALL_KINDS = ["icmp", "udp", "tcp", "http"]


@pytest.fixture(scope="module")
def lab():
    return load_inventory(LAB)


def _keys(inv):
    """Every node's public key for every one of its tunnels (what the keys step publishes)."""
    nodes = [n for n, x in inv.nodes.items() if x.role in ("core", "edge")]
    return {n: {wg["name"]: KEY for wg in wireguard_config(inv, n)} for n in nodes}


# ------------------------------------------------------------------ the overlay side
def test_each_tunnel_end_holds_the_a_or_b_link_local(lab):
    keys = _keys(lab)
    seen = 0
    for node in keys:
        items = {wg["name"]: wg for wg in wireguard_config(lab, node, keys)}
        for tenant, peer, link in tunnels(lab, node):
            mine = items[tunnel_name(lab, tenant, node, peer)]
            want = LINK_LOCAL_A if link.a == node else LINK_LOCAL_B
            assert mine["addresses"] == [f"{want}/64"], (node, mine["name"])
            # the twin on the peer holds the other one: one link, two ends
            twin = {wg["name"]: wg for wg in wireguard_config(lab, peer, keys)}[tunnel_name(lab, tenant, peer, node)]
            assert {mine["addresses"][0], twin["addresses"][0]} == {f"{LINK_LOCAL_A}/64", f"{LINK_LOCAL_B}/64"}
            assert mine["peers"][0]["allowed_ips"] == ["::/0"]  # so fe80:: traffic enters the tunnel
            seen += 1
    assert seen > 20


def test_vpp_ends_get_no_link_local_and_are_probed_over_the_underlay(lab):
    inv = dataclasses.replace(lab, nodes={**lab.nodes, "core-fra": dataclasses.replace(lab.nodes["core-fra"], dataplane="vpp")})
    assert all("addresses" not in wg for wg in wireguard_config(inv, "core-fra"))
    by_dst = {(t["tenant"], t["dst"]): t for t in probe.probe_targets(inv, "edge-ber")}
    assert "tunnel" not in by_dst[("acme", "core-fra")]
    assert by_dst[("acme", "core-lon")]["tunnel"]["interface"] == tunnel_name(inv, "acme", "edge-ber", "core-lon")


def _edge_item(lab, node="edge-ber", peer="core-fra"):
    keys = _keys(lab)
    keys[peer] = {name: PEER_KEY for name in keys[peer]}
    return next(wg for wg in wireguard_config(lab, node, keys) if wg["name"] == tunnel_name(lab, "acme", node, peer))


def _node_holding(item, addresses):
    runner = node_with(name=item["name"], listen_port=item["listen_port"], peers=item["peers"], addresses=addresses)
    return runner


def test_a_new_tunnel_gets_its_link_local_and_a_second_run_changes_nothing(lab):
    item = _edge_item(lab)
    (address,) = item["addresses"]
    res = base.run(resource(ScriptedRunner()), [item], "merged")
    assert res.changed and f"ip addr add {address} dev {item['name']}" in res.commands
    # the node as the first run left it (ip -j addr show reports the link-local as fe80::N/64)
    again = _node_holding(item, (address,))
    for state in ("merged", "replaced", "overridden"):
        res = base.run(resource(again), [item], state)
        assert not res.changed and res.commands == [], (state, res.commands)
    assert again.changing() == []


def test_a_tunnel_made_before_link_locals_only_gains_its_address(lab):
    """Upgrading a running overlay: no re-created interface, no new key, no peer change."""
    item = _edge_item(lab)
    (address,) = item["addresses"]
    runner = _node_holding(item, ())
    res = base.run(resource(runner), [item], "replaced")
    assert res.commands == [f"ip addr add {address} dev {item['name']}"]
    assert [" ".join(c) for c in runner.changing()] == res.commands


# ------------------------------------------------------------------ who probes whom
def test_edge_targets_name_their_tunnel_and_keep_the_underlay(lab):
    keys = _keys(lab)
    for edge in (n for n, x in lab.nodes.items() if x.role == "edge"):
        targets = probe.probe_targets(lab, edge)
        assert targets
        own = {wg["name"]: wg for wg in wireguard_config(lab, edge, keys)}
        for t in targets:
            interface = tunnel_name(lab, t["tenant"], edge, t["dst"])
            assert t["tunnel"]["interface"] == interface and interface in own
            # the far end's link-local: the address its own tunnel interface holds
            twin = {wg["name"]: wg for wg in wireguard_config(lab, t["dst"], keys)}[tunnel_name(lab, t["tenant"], t["dst"], edge)]
            assert twin["addresses"] == [t["tunnel"]["address"] + "/64"]
            assert own[interface]["addresses"] != twin["addresses"]
            assert t["address"] == str(lab.nodes[t["dst"]].wan_address)  # the underlay fallback


def test_core_targets_have_no_tunnel(lab):
    targets = probe.probe_targets(lab, "core-lon")
    assert targets and all("tunnel" not in t for t in targets)


# ------------------------------------------------------------------ is the tunnel up?
class WgRunner(LocalRunner):
    """Runs everything locally except ``wg``, whose answer is given; records wg's argv."""

    def __init__(self, handshakes=None, rc=0, stderr=""):
        self.handshakes = handshakes  # [epoch, ...] per peer
        self.rc, self.stderr = rc, stderr
        self.wg_calls = []
        self.ping_calls = []

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(str(a) for a in argv)
        if argv[0] == "wg":
            self.wg_calls.append(argv)
            out = "".join(f"{PEER_KEY}\t{int(h)}\n" for h in self.handshakes or [])
            res = Result(argv, self.rc, out if self.rc == 0 else "", self.stderr)
            if check and self.rc:
                raise CommandError("local", argv, self.rc, "", self.stderr)
            return res
        if argv[0] == "ping":
            self.ping_calls.append(argv)
        return super().run(argv, stdin=stdin, check=check, timeout=timeout, env=env)


@pytest.fixture()
def interfaces(monkeypatch):
    """The tunnel interfaces that exist here (the rest of the names are real)."""
    present = {"wg1-7-2", "wgtest0"}
    real = socket.if_nametoindex

    def if_nametoindex(name):
        if name in present:
            return 4242
        return real(name)

    monkeypatch.setattr(probe.socket, "if_nametoindex", if_nametoindex)
    return present


NOW = 1_800_000_000.0
STATES = [
    # (interface, latest handshakes, wg rc, up, why)
    ("wg1-7-2", [NOW - 30], 0, True, "handshake 30 s ago"),
    ("wg1-7-2", [0, NOW - 5], 0, True, "handshake 5 s ago"),  # the youngest of the peers counts
    ("wg1-7-2", [NOW - 179], 0, True, "handshake 179 s ago"),
    ("wg1-7-2", [NOW - 180], 0, False, "latest handshake 180 s ago"),  # WireGuard rejects the session now
    ("wg1-7-2", [NOW - 4000], 0, False, "latest handshake 4000 s ago"),
    ("wg1-7-2", [0], 0, False, "no handshake yet"),
    ("wg1-7-2", [], 0, False, "no handshake yet"),  # no peer: its key is not known yet
    ("wg1-7-2", [NOW - 5], 1, False, "wg show: Unable to access interface: Operation not permitted"),
    ("wg9-9-9", [NOW - 5], 0, False, "wg9-9-9: no such interface here"),
]


@pytest.mark.parametrize("interface, handshakes, rc, up, why", STATES)
def test_tunnel_state(interfaces, interface, handshakes, rc, up, why):
    runner = WgRunner(handshakes, rc, "Unable to access interface: Operation not permitted\n")
    got_up, got_why = probe.tunnel_state(interface, runner, now=NOW)
    assert (got_up, why in got_why) == (up, True), got_why
    if interface in interfaces:
        # exactly one wg command, for this interface only (never `wg show` / `wg show all`)
        assert runner.wg_calls == [("wg", "show", interface, "latest-handshakes")]
    else:
        assert runner.wg_calls == []  # a missing interface is not asked about


def test_without_a_runner_wg_runs_locally_for_that_interface_only(interfaces, tmp_path, monkeypatch):
    log = tmp_path / "wg.log"
    wg = tmp_path / "wg"
    wg.write_text("#!/bin/sh\n"
                  f"echo \"$@\" >> {log}\n"
                  "[ \"$1 $3\" = 'show latest-handshakes' ] || exit 9\n"
                  f"printf '{PEER_KEY}\\t%s\\n' \"$(( $(date +%s) - 20 ))\"\n")
    wg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    up, why = probe.tunnel_state("wg1-7-2")
    assert up, why
    assert log.read_text() == "show wg1-7-2 latest-handshakes\n"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    up, why = probe.tunnel_state("wg1-7-2")
    assert not up and "wg show" in why


# ------------------------------------------------------------------ the standalone script
def test_in_the_package_the_local_runner_is_npms_runner():
    assert isinstance(probe._local_runner(), LocalRunner)


RUNNER_CASES = [
    # (argv, check, rc, stdout, stderr, raised)
    (["true"], True, 0, "", "", None),
    (["sh", "-c", "echo out; echo err >&2; exit 3"], False, 3, "out\n", "err\n", None),
    (["sh", "-c", "echo out; echo err >&2; exit 3"], True, None, None, None, "exit 3: err"),
    (["npms-no-such-command"], False, None, None, None, "exit 127: command not found: npms-no-such-command"),
    (["sleep", "5"], False, None, None, None, "exit 124: timed out after 0.2 s"),
]


@pytest.mark.parametrize("argv, check, rc, stdout, stderr, raised", RUNNER_CASES,
                         ids=["ok", "failed", "failed-checked", "missing", "timeout"])
def test_the_scripts_runner_keeps_local_runners_contract(argv, check, rc, stdout, stderr, raised):
    """What the script runs (wg, ping, iperf3) is read the same as through LocalRunner."""
    results = []
    for runner in (LocalRunner(), probe._ScriptRunner()):
        if raised:
            with pytest.raises(Exception, match=raised) as err:
                runner.run(argv, check=check, timeout=0.2)
            results.append(str(err.value))
        else:
            res = runner.run(argv, check=check, timeout=0.2)
            assert (res.argv, res.rc, res.stdout, res.stderr, res.ok) == (tuple(argv), rc, stdout, stderr, rc == 0)
            results.append(res)
    assert str(results[0]) == str(results[1]) if raised else results[0].stdout == results[1].stdout


def _script(tmp_path):
    """probe.py copied alone, as probe_responder copies it to a node."""
    script = tmp_path / probe.SCRIPT_NAME
    with open(probe.__file__, encoding="utf-8") as src:
        script.write_text(src.read())
    return script


def _fake_wg(bin_dir, log, age_s):
    bin_dir.mkdir(exist_ok=True)
    wg = bin_dir / "wg"
    wg.write_text("#!/bin/sh\n"
                  f"echo \"$@\" >> {log}\n"
                  f"printf '{PEER_KEY}\\t%s\\n' \"$(( $(date +%s) - {age_s} ))\"\n")
    wg.chmod(0o755)


@pytest.mark.parametrize("wg_age_s, via, address, reason", [
    (20, "tunnel", "::1", None),
    (4000, "underlay", "127.0.0.1", "lo: latest handshake"),
    (None, "underlay", "127.0.0.1", "lo: wg show: local: wg show lo latest-handshakes: exit 127: command not found: wg"),
], ids=["fresh-handshake", "stale-handshake", "no-wg"])
def test_the_standalone_script_checks_the_tunnel_and_pings(tmp_path, wg_age_s, via, address, reason):
    """``python npms_probe.py run`` with no npms package to import from: wg and ping
    still run (through the script's own runner), the tunnel is checked and the path
    reported.  The "tunnel" is ``lo`` at ``::1``; its underlay ``127.0.0.1``."""
    bin_dir, log = tmp_path / "bin", tmp_path / "wg.log"
    bin_dir.mkdir()
    for tool in ("ping", "date"):  # and no wg but the fake one
        os.symlink(shutil.which(tool), bin_dir / tool)
    if wg_age_s is not None:
        _fake_wg(bin_dir, log, wg_age_s)
    target = {"dst": "core-lon", "tenant": "acme", "address": "127.0.0.1", "kinds": ["icmp"],
              "tunnel": {"interface": "lo", "address": "::1"}}
    proc = subprocess.run([sys.executable, str(_script(tmp_path)), "run", "--src", "edge-ber", "--count", "2",
                           "--interval", "0.2", "--targets", json.dumps([target])],
                          cwd=tmp_path, env=dict(os.environ, PATH=str(bin_dir)), capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["errors"] == [] and out["failed_targets"] == []
    (path,) = out["paths"]
    assert (path["via"], path["address"]) == (via, address)
    assert reason is None and "reason" not in path or reason in path["reason"]
    (sample,) = out["samples"]
    assert (sample["kind"], sample["src"], sample["dst"], sample["sent"], sample["received"]) == ("icmp", "edge-ber", "core-lon", 2, 2)
    if wg_age_s is not None:
        assert log.read_text() == "show lo latest-handshakes\n"  # this interface only


# ------------------------------------------------------------------ the probe's address
def test_link_locals_are_scoped_to_the_tunnel(interfaces):
    fresh = WgRunner([NOW - 10])
    t = {"dst": "core-fra", "tenant": "acme", "address": "198.51.100.2", "tunnel": {"interface": "wg1-7-2", "address": "fe80::2"}}
    assert probe.choose_path(t, fresh, now=NOW) == {"via": "tunnel", "address": "fe80::2%wg1-7-2"}
    # a tunnel address that is not a link-local needs no zone
    ula = dict(t, tunnel={"interface": "wg1-7-2", "address": "fd00::2"})
    assert probe.choose_path(ula, fresh, now=NOW) == {"via": "tunnel", "address": "fd00::2"}
    stale = probe.choose_path(t, WgRunner([NOW - 600]), now=NOW)
    assert stale["via"] == "underlay" and stale["address"] == "198.51.100.2" and "600 s ago" in stale["reason"]
    assert probe.choose_path({"dst": "core-par", "address": "198.51.100.3"}) == {"via": "underlay", "address": "198.51.100.3"}


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_a_scoped_link_local_keeps_its_interface_in_the_socket_address(kind):
    # Python's ("fe80::2%lo", port) tuple would carry scope id 0: EINVAL on connect
    family, sockaddr = probe._sockaddr("fe80::2%lo", 9876, kind)  # pylint: disable=protected-access
    assert family == socket.AF_INET6 and sockaddr == ("fe80::2", 9876, 0, socket.if_nametoindex("lo"))
    assert probe._sockaddr("127.0.0.1", 9876, kind) == (socket.AF_INET, ("127.0.0.1", 9876))  # pylint: disable=protected-access
    with pytest.raises(probe.ProbeError, match="cannot resolve"):
        probe._sockaddr("fe80::2%no-such-if0", 9876, kind)  # pylint: disable=protected-access


URLS = [
    # (address, url, (host, port, path, Host header))
    ("fe80::2%wg1-7-2", "http://[fe80::2%25wg1-7-2]:9877/probe", ("fe80::2%wg1-7-2", 9877, "/probe", "[fe80::2]:9877")),
    ("fe80::2%WG0", "http://[fe80::2%25WG0]:9877/probe", ("fe80::2%WG0", 9877, "/probe", "[fe80::2]:9877")),
    ("::1", "http://[::1]:9877/probe", ("::1", 9877, "/probe", "[::1]:9877")),
    ("127.0.0.1", "http://127.0.0.1:9877/probe", ("127.0.0.1", 9877, "/probe", "127.0.0.1:9877")),
]


@pytest.mark.parametrize("address, url, parsed", URLS)
def test_http_urls_carry_the_zone_rfc_6874(address, url, parsed):
    assert probe.http_url(address, 9877) == url
    assert probe.parse_http_url(url) == parsed
    # an unescaped zone is taken too
    if "%" in address:
        assert probe.parse_http_url(url.replace("%25", "%")) == parsed


# ------------------------------------------------------------------ a run
@pytest.fixture(scope="module")
def responder6():
    """Listening on ::1 only: a target's IPv4 underlay address 127.0.0.1 is dead."""
    with probe.Responder("::1", 0, 0) as r:
        yield r


def _run(responder, targets, runner, **kw):
    return probe.run_request(targets, src="edge-ber", kinds=ALL_KINDS, count=3, interval_s=0.01, timeout_s=0.3,
                             udp_port=responder.udp_port, tcp_port=responder.tcp_port, runner=runner, **kw)


def test_an_up_tunnel_is_probed_through_and_source_applies_to_the_underlay_only(interfaces, responder6):
    runner = WgRunner([time.time() - 10])
    target = {"dst": "core-fra", "tenant": "acme", "address": "127.0.0.1", "tunnel": {"interface": "wgtest0", "address": "::1"}}
    # an IPv4 source would fail every IPv6 socket: it must not be applied through the tunnel
    out = _run(responder6, [target], runner, source="127.0.0.1")
    assert out["errors"] == [] and out["failed_targets"] == []
    assert [(s["kind"], s["received"]) for s in out["samples"]] == [("icmp", 3), ("udp", 3), ("tcp", 1), ("http", 1)]
    assert out["paths"] == [{"dst": "core-fra", "tenant": "acme", "via": "tunnel", "address": "::1"}]
    assert runner.ping_calls and all(c[-1] == "::1" and "-I" not in c for c in runner.ping_calls)
    assert set(out["samples"][0]) <= set(probe.SAMPLE_FIELDS)  # the wire format has no path
    # the same target over the underlay (the tunnel's handshake is stale) reaches the dead IPv4 address
    down = _run(responder6, [target], WgRunner([time.time() - 900]))
    assert down["paths"][0]["via"] == "underlay" and down["paths"][0]["address"] == "127.0.0.1"
    assert [s["received"] for s in down["samples"] if s["kind"] in ("udp", "tcp", "http")] == [0, 0, 0]


@pytest.mark.parametrize("interface, handshakes, reason", [
    ("wg-missing0", [time.time() - 10], "no such interface"),  # the first loop: no tunnel yet
    ("wgtest0", [0], "no handshake yet"),
    ("wgtest0", [time.time() - 900], "latest handshake"),
])
def test_a_tunnel_that_is_not_up_falls_back_to_the_underlay_without_a_loss_sample(interfaces, responder6, interface,
                                                                                  handshakes, reason):
    # the tunnel's address is dead (nothing answers 127.0.0.1): probed, it would read 100 % loss
    target = {"dst": "edge-bos", "tenant": "acme", "address": "::1", "tunnel": {"interface": interface, "address": "127.0.0.1"}}
    out = _run(responder6, [target], WgRunner(handshakes))
    assert [(s["kind"], s["received"] == s["sent"]) for s in out["samples"]] == [(k, True) for k in ALL_KINDS]
    assert out["failed_targets"] == [] and out["errors"] == []
    (path,) = out["paths"]
    assert (path["via"], path["address"]) == ("underlay", "::1") and reason in path["reason"]


def test_targets_are_decided_one_by_one_and_failures_name_the_address_probed(interfaces, responder6):
    closed = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    closed.bind(("::1", 0))
    port = closed.getsockname()[1]
    closed.close()
    targets = [
        {"dst": "core-fra", "tenant": "acme", "address": "127.0.0.1", "tunnel": {"interface": "wgtest0", "address": "::1"}},
        {"dst": "core-lon", "tenant": "acme", "address": "::1", "tunnel": {"interface": "wg-missing0", "address": "fe80::2"}},
        {"dst": "core-par", "tenant": None, "address": "::1"},
    ]
    out = probe.run_request(targets, src="edge-ber", kinds=["udp"], count=2, interval_s=0.01, timeout_s=0.2, udp_port=port,
                            runner=WgRunner([time.time() - 10]))
    assert [(p["dst"], p["via"], p["address"]) for p in out["paths"]] == [
        ("core-fra", "tunnel", "::1"), ("core-lon", "underlay", "::1"), ("core-par", "underlay", "::1")]
    assert "reason" not in out["paths"][2]  # no tunnel named, nothing to explain
    assert [(f["dst"], f["address"]) for f in out["failed_targets"]] == [("core-fra", "::1"), ("core-lon", "::1"),
                                                                         ("core-par", "::1")]


def test_iperf_only_runs_report_no_paths(monkeypatch):
    monkeypatch.setattr(probe, "run_iperf", lambda targets, **kw: [])
    out = probe.run_request([{"dst": "x", "address": "::1", "tunnel": {"interface": "wgtest0", "address": "::1"}}],
                            src="me", iperf_only=True)
    assert out["paths"] == []


@pytest.mark.parametrize("tunnel", [{"interface": "wg1-7-2"}, {"address": "fe80::2"}, "wg1-7-2"])
def test_a_malformed_tunnel_is_refused_before_probing(tunnel):
    with pytest.raises(probe.ProbeError, match="tunnel needs interface and address"):
        probe.run_probes([{"dst": "x", "address": "::1", "tunnel": tunnel}], src="me")
