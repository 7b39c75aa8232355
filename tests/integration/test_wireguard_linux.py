# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WireGuard resource on real wireguard-go interfaces (root).

Two namespaces ``t4w-<pid>-a`` / ``-b`` joined by a veth play two nodes.  The tests run
in file order as one scenario: both nodes create a tunnel end, exchange public keys
through the facts, ping through the tunnel, re-run without change, check mode, diff,
replaced / overridden / deleted next to a WireGuard interface made by hand, a key
rotation under a running ping, failures, the Ansible modules through the
galactic.npms.netns connection, and at the end a grep of everything the runs returned,
logged or raised for the private keys (read from the key files).

Interface names are ``t4w<pid % 100000>`` plus a letter: unique on the machine, because
wireguard-go's sockets in /var/run/wireguard are shared by all namespaces.  The fixture
deletes every interface, process (wireguard-go, ping), namespace, socket and key file it
made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import yaml

from npms.resources import base
from npms.resources.base import ResourceError
from npms.resources.wireguard_linux import OWNER_ALIAS, WireguardLinux, key_phase, rotate
from npms.runner import CommandError, NetnsRunner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PID = os.getpid()
NS_A, NS_B = f"t4w-{PID}-a", f"t4w-{PID}-b"
TAG = f"t4w{PID % 100000}"
IF_A, IF_B, IF_C, IF_F, IF_X, IF_N = (TAG + c for c in "abcfxn")
NAMES = (IF_A, IF_B, IF_C, IF_F, IF_X, IF_N)
UNDERLAY_A, UNDERLAY_B = "198.18.44.1", "198.18.44.2"
TUN_A, TUN_B = "10.77.0.1", "10.77.0.2"
PORT_A, PORT_B = 41001, 41002
ANSIBLE_KEY_DIR = "/etc/npms/wireguard"  # the modules' key directory (no option changes it)
PING_INTERVAL = 0.2
# One handshake: WireGuard retries a handshake every REKEY_TIMEOUT = 5 s (LAB_NOTES: a
# first handshake can take ~5 s), so a rotation may cost at most that much of a ping.
HANDSHAKE_S = 5.0

pytestmark = pytest.mark.usefixtures("needs_root")

# Everything the code under test returned, logged or raised, and every command output
# its runners saw: the last test greps it for private keys.
TRANSCRIPT = []
# Every private key of the run, read from the key files (and the hand-made interface).
SECRETS = set()


class RecordingRunner(NetnsRunner):
    """A namespace runner that keeps every command's output for the grep test."""

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        try:
            res = super().run(argv, stdin=stdin, check=check, timeout=timeout, env=env)
        except CommandError as exc:
            TRANSCRIPT.append(f"{exc}\n{exc.stdout}\n{exc.stderr}")
            raise
        TRANSCRIPT.append(" ".join(res.argv) + "\n" + res.stdout + "\n" + res.stderr)
        return res


def sh(*argv, check=True):
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True, timeout=60)


def in_ns(ns, *argv, check=True):
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def record(obj):
    TRANSCRIPT.append(obj if isinstance(obj, str) else json.dumps(obj, default=str, sort_keys=True))
    return obj


def run_resource(res, config, state, check_mode=False):
    """base.run, with its result (or its error) recorded."""
    try:
        out = base.run(res, config, state, check_mode=check_mode)
    except ResourceError as exc:
        record(f"ResourceError: {exc} rolled_back={exc.rolled_back}")
        raise
    record(out.to_dict())
    record(out.diff or {})
    record(out.warnings)
    return out


def read_keys(key_dir):
    """Every private key file in ``key_dir``, read directly, added to SECRETS."""
    if os.path.isdir(key_dir):
        for name in os.listdir(key_dir):
            if name.startswith(TAG):
                with open(os.path.join(key_dir, name), encoding="ascii") as fh:
                    SECRETS.add(fh.read().strip())


def dump_secrets(ns):
    """`wg show all dump` text of this test's interfaces in ``ns``, private keys and all
    (run by the test, not by the code under test); the private keys go to SECRETS.
    Built per interface: `wg show all` would also reach other namespaces' interfaces."""
    lines = []
    for name in NAMES:
        if sh("ip", "-n", ns, "link", "show", name, check=False).returncode != 0:
            continue
        for number, line in enumerate(in_ns(ns, "wg", "show", name, "dump").stdout.splitlines()):
            cols = line.split("\t")
            if number == 0 and cols[0] != "(none)":
                SECRETS.add(cols[0])
            lines.append(name + "\t" + line)
    return "\n".join(lines) + "\n"


def wg_go_pids(name):
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if fh.read().split(b"\0")[:2] == [b"wireguard-go", name.encode()]:
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def wait_gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and _state(p) != "Z" for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for tool in ("ip", "wg", "wireguard-go", "ping", "awk"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian: iproute2, wireguard-tools, wireguard-go, iputils-ping, mawk)", pytrace=False)
    base_dir = tmp_path_factory.mktemp("t4w")
    key_dir = str(base_dir / "keys")  # made by the resource (0700)
    made_etc = [d for d in ("/etc/npms", ANSIBLE_KEY_DIR) if not os.path.exists(d)]
    made = []
    try:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NS_A, "link", "add", "t4wv", "type", "veth", "peer", "name", "t4wv", "netns", NS_B)
        for ns, addr in ((NS_A, UNDERLAY_A), (NS_B, UNDERLAY_B)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "t4wv")
            sh("ip", "-n", ns, "link", "set", "t4wv", "up")
        yield {
            "dir": base_dir,
            "key_dir": key_dir,
            "a": WireguardLinux(RecordingRunner(NS_A), key_dir=key_dir),
            "b": WireguardLinux(RecordingRunner(NS_B), key_dir=key_dir),
            "state": {},
        }
    finally:
        for ns in made:
            for name in NAMES:
                sh("ip", "-n", ns, "link", "del", name, check=False)
            # what still runs in our namespaces is ours (wireguard-go, ping)
            pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pids, 3.0):
                for pid in pids:
                    if os.path.exists(f"/proc/{pid}"):
                        os.kill(pid, signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        for name in NAMES:
            for pid in wg_go_pids(name):  # a daemon of ours that outlived its namespace
                os.kill(pid, signal.SIGKILL)
            sock = f"/var/run/wireguard/{name}.sock"
            if os.path.exists(sock):
                os.unlink(sock)
            for suffix in (".key", ".key.next", ".key.tmp", ".key.next.tmp"):
                path = os.path.join(ANSIBLE_KEY_DIR, name + suffix)
                if os.path.exists(path):
                    os.unlink(path)
        for d in reversed(made_etc):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        shutil.rmtree(base_dir, ignore_errors=True)


def tunnel(name, port, address, peer_key=None, peer_endpoint=None, peer_address=None, **extra):
    item = {"name": name, "listen_port": port, "addresses": [address + "/32"], **extra}
    if peer_key:
        item["peers"] = [{"public_key": peer_key, "endpoint": peer_endpoint, "allowed_ips": [peer_address + "/32"]}]
    return item


def routes(lab):
    for ns, name, dst in ((NS_A, IF_A, TUN_B), (NS_B, IF_B, TUN_A)):
        sh("ip", "-n", ns, "route", "replace", dst + "/32", "dev", name)


def ping_until_ok(ns, dst, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if in_ns(ns, "ping", "-n", "-c", "1", "-W", "1", dst, check=False).returncode == 0:
            return True
    return False


# --- the scenario ------------------------------------------------------------------------
def test_both_nodes_create_their_end(lab):
    for node, name, port, addr in ((lab["a"], IF_A, PORT_A, TUN_A), (lab["b"], IF_B, PORT_B, TUN_B)):
        res = run_resource(node, [tunnel(name, port, addr)], "merged")
        assert res.changed
        assert res.facts[name]["public_key"]
        lab["state"][name] = res.facts[name]["public_key"]
        assert res.after == [{"name": name, "listen_port": port, "mtu": 1420, "addresses": [addr + "/32"], "peers": []}]
        assert not res.warnings
    read_keys(lab["key_dir"])
    assert len(SECRETS) == 2
    mode = stat.S_IMODE(os.stat(lab["key_dir"]).st_mode)
    assert mode == 0o700, oct(mode)
    for name in (IF_A, IF_B):
        path = os.path.join(lab["key_dir"], name + ".key")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, encoding="ascii") as fh:
            key = fh.read().strip()
        # the file holds the private key of the public key the facts returned
        derived = subprocess.run(["wg", "pubkey"], input=key + "\n", capture_output=True, text=True, check=True).stdout.strip()
        assert derived == lab["state"][name]
    link = json.loads(sh("ip", "-n", NS_A, "-j", "link", "show", IF_A).stdout)[0]
    assert link["ifalias"] == OWNER_ALIAS and "UP" in link["flags"]
    assert wg_go_pids(IF_A), "the interface is wireguard-go's on this machine"


def test_exchange_keys_and_ping_through_the_tunnel(lab):
    key_a, key_b = lab["state"][IF_A], lab["state"][IF_B]
    res_a = run_resource(lab["a"], [tunnel(IF_A, PORT_A, TUN_A, key_b, f"{UNDERLAY_B}:{PORT_B}", TUN_B)], "merged")
    res_b = run_resource(lab["b"], [tunnel(IF_B, PORT_B, TUN_B, key_a, f"{UNDERLAY_A}:{PORT_A}", TUN_A)], "merged")
    assert res_a.changed and res_b.changed
    assert res_a.commands == [f"wg set {IF_A} peer {key_b} endpoint {UNDERLAY_B}:{PORT_B} allowed-ips {TUN_B}/32 persistent-keepalive off",
                              f"wg set {IF_A} peer {key_b} persistent-keepalive 1 peer {key_b} persistent-keepalive off"]
    routes(lab)
    assert ping_until_ok(NS_A, TUN_B), "no ping through the tunnel"
    assert in_ns(NS_B, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", TUN_A, check=False).returncode == 0


def test_second_run_reports_no_change(lab):
    key_a, key_b = lab["state"][IF_A], lab["state"][IF_B]
    want_a = tunnel(IF_A, PORT_A, TUN_A, key_b, f"{UNDERLAY_B}:{PORT_B}", TUN_B)
    for state in ("merged", "replaced", "overridden"):
        res = run_resource(lab["a"], [want_a], state)
        assert not res.changed and res.commands == [], (state, res.commands)
    res = run_resource(lab["b"], [tunnel(IF_B, PORT_B, TUN_B, key_a, f"{UNDERLAY_A}:{PORT_A}", TUN_A)], "merged")
    assert not res.changed
    # a peer given without endpoint keeps the one the node has
    res = run_resource(lab["b"], [tunnel(IF_B, PORT_B, TUN_B, key_a, None, TUN_A)], "replaced")
    assert not res.changed


def test_check_mode_changes_nothing_and_shows_the_diff(lab):
    before = run_resource(lab["a"], None, "gathered").gathered
    want = tunnel(IF_A, PORT_A, TUN_A, lab["state"][IF_B], f"{UNDERLAY_B}:{PORT_B}", TUN_B, mtu=1380)
    want["addresses"].append("fd77::1/64")
    res = run_resource(lab["a"], [want], "replaced", check_mode=True)
    assert res.changed
    assert res.commands == [f"ip addr add fd77::1/64 dev {IF_A}", f"ip link set dev {IF_A} mtu 1380"]
    assert '"mtu": 1420' in res.diff["before"] and '"mtu": 1380' in res.diff["after"]
    assert "fd77::1/64" in res.diff["after"] and "fd77::1/64" not in res.diff["before"]
    assert run_resource(lab["a"], None, "gathered").gathered == before
    # a new interface in check mode: nothing created, no key file
    res = run_resource(lab["a"], [tunnel(IF_C, 41003, "10.77.0.3")], "merged", check_mode=True)
    assert res.changed and res.commands[0].startswith(f"ip link add {IF_C} type wireguard")
    assert sh("ip", "-n", NS_A, "link", "show", IF_C, check=False).returncode != 0
    assert not os.path.exists(os.path.join(lab["key_dir"], IF_C + ".key"))


def test_replaced_then_no_change(lab):
    want = tunnel(IF_A, PORT_A, TUN_A, lab["state"][IF_B], f"{UNDERLAY_B}:{PORT_B}", TUN_B, mtu=1380)
    want["addresses"].append("fd77::1/64")
    want["peers"][0]["persistent_keepalive"] = 15
    res = run_resource(lab["a"], [want], "replaced")
    assert res.changed and not res.warnings
    link = json.loads(sh("ip", "-n", NS_A, "-j", "addr", "show", IF_A).stdout)[0]
    assert link["mtu"] == 1380
    assert sorted(a["local"] for a in link["addr_info"]) == [TUN_A, "fd77::1"]  # no kernel link-local
    assert in_ns(NS_A, "wg", "show", IF_A, "persistent-keepalive").stdout.split() == [lab["state"][IF_B], "15"]
    assert not run_resource(lab["a"], [want], "replaced").changed
    assert ping_until_ok(NS_A, TUN_B)


def test_overridden_and_deleted_leave_a_hand_made_interface_alone(lab):
    # a WireGuard interface npms does not own, in the same namespace
    hand_key = os.path.join(lab["dir"], "hand.key")
    subprocess.run(["sh", "-c", f"umask 077; wg genkey > {hand_key}"], check=True)
    read_hand = open(hand_key, encoding="ascii").read().strip()
    SECRETS.add(read_hand)
    in_ns(NS_A, "wireguard-go", IF_F)
    in_ns(NS_A, "wg", "set", IF_F, "listen-port", "41009", "private-key", hand_key)
    # a second npms interface, then overridden without it
    res = run_resource(lab["a"], [tunnel(IF_C, 41003, "10.77.0.3")], "merged")
    assert res.changed
    read_keys(lab["key_dir"])
    pids_c = wg_go_pids(IF_C)
    assert pids_c
    gathered = run_resource(lab["a"], None, "gathered")
    assert sorted(i["name"] for i in gathered.gathered) == [IF_A, IF_C]  # not IF_F
    assert sorted(gathered.facts) == [IF_A, IF_C]
    current = [i for i in gathered.gathered if i["name"] == IF_A]
    res = run_resource(lab["a"], current, "overridden")
    assert res.commands == [f"ip link del dev {IF_C}", f"rm -f {lab['key_dir']}/{IF_C}.key {lab['key_dir']}/{IF_C}.key.next"]
    assert sh("ip", "-n", NS_A, "link", "show", IF_C, check=False).returncode != 0
    assert wait_gone(pids_c), "wireguard-go exits when its link is deleted"
    assert not os.path.exists(f"/var/run/wireguard/{IF_C}.sock")
    assert not os.path.exists(os.path.join(lab["key_dir"], IF_C + ".key"))
    assert in_ns(NS_A, "wg", "show", IF_F, "listen-port").stdout.strip() == "41009"
    # deleted by name: only that one; deleted without config: every npms interface, not IF_F
    run_resource(lab["a"], [tunnel(IF_C, 41003, "10.77.0.3")], "merged")
    read_keys(lab["key_dir"])
    res = run_resource(lab["a"], [{"name": IF_C}], "deleted")
    assert res.changed and res.commands[0] == f"ip link del dev {IF_C}"
    assert not run_resource(lab["a"], [{"name": IF_C}], "deleted").changed
    assert sh("ip", "-n", NS_A, "link", "show", IF_A).returncode == 0
    # the same name in the other namespace is refused (wireguard-go's socket is shared)
    with pytest.raises(ResourceError, match="exists in another network namespace"):
        run_resource(lab["b"], [tunnel(IF_F, 41009, "10.77.0.9")], "merged")
    # and npms never adopts the hand-made one
    with pytest.raises(ResourceError, match="not managed by galactic.npms"):
        run_resource(lab["a"], [tunnel(IF_F, 41009, "10.77.0.9")], "merged")
    assert in_ns(NS_A, "wg", "show", IF_F, "listen-port").stdout.strip() == "41009"


def _ping_stats(text, count):
    """(lost, longest silence in s): replies missing, and the longest time between two
    replies (``ping -D`` stamps them; WireGuard queues packets while it handshakes, so a
    gap shows as late replies rather than lost ones)."""
    seqs = {int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", text)}
    stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=", text, re.M)]
    silence = max((b - a for a, b in zip(stamps, stamps[1:])), default=float("inf"))
    return count - len(seqs), silence, max(seqs, default=0)


@pytest.mark.parametrize("rotated,pinger", [("b", "b"), ("a", "b")], ids=["traffic-from-the-rotated-node", "traffic-from-its-peer"])
def test_key_rotation_under_a_running_ping(lab, rotated, pinger):
    """Rotate one end's key (prepare, commit, then its peer) while a ping runs from one
    side only: the worst cases, as nothing from the other side starts a handshake.

    Bound: one handshake.  WireGuard retries a refused handshake after REKEY_TIMEOUT =
    5 s; a rotation must never need a second one.  Asserted: at most 5 s worth of pings
    lost, and no silence longer than 5 s plus the time the rotation itself took.  (With
    commit-then-peers and the keepalive nudge, replies are only late by about the time
    between the commit and the peer update, and none are lost.)"""
    node, name = (lab["b"], IF_B) if rotated == "b" else (lab["a"], IF_A)
    peer = lab["a"] if rotated == "b" else lab["b"]
    # the peers keep no keepalive of their own (the harder case)
    run_resource(lab["a"], [tunnel(IF_A, PORT_A, TUN_A, lab["state"][IF_B], f"{UNDERLAY_B}:{PORT_B}", TUN_B)], "merged")
    lab["a"].runner.run(["wg", "set", IF_A, "peer", lab["state"][IF_B], "persistent-keepalive", "off"])
    old = lab["state"][name]
    ns, dst = (NS_B, TUN_A) if pinger == "b" else (NS_A, TUN_B)
    assert ping_until_ok(ns, dst)
    count = 50  # 10 s at 0.2 s
    ping = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", str(PING_INTERVAL), "-c", str(count), "-W", "1", dst],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        started = time.monotonic()
        out = record(rotate(node, name, [peer]))
        took = time.monotonic() - started
        read_keys(lab["key_dir"])
        text = ping.communicate(timeout=60)[0]
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    new = out["prepare"]["public_key"]
    assert out["changed"] and new and new != old
    assert out["commit"]["public_key"] == new and out["commit"]["previous_public_key"] == old
    peer_if = IF_A if rotated == "b" else IF_B
    assert out["peers"][0]["commands"][0].startswith(f"wg set {peer_if} peer {old} remove peer {new} endpoint ")
    assert out["peers"][0]["commands"][1] == f"wg set {peer_if} peer {new} persistent-keepalive 1 peer {new} persistent-keepalive off"
    lost, silence, last = _ping_stats(text, count)
    print(f"rotation of {name} took {took:.2f} s; ping from {pinger}: lost {lost} of {count}, longest silence {silence:.2f} s")
    assert lost * PING_INTERVAL <= HANDSHAKE_S, text
    assert silence <= HANDSHAKE_S + took + PING_INTERVAL, text
    assert last >= count - 2, "the ping is back after the rotation: " + text
    # the fact changed; the key file holds the new key; the peer lists the new key only
    assert run_resource(node, None, "gathered").facts[name]["public_key"] == new
    lab["state"][name] = new
    with open(os.path.join(lab["key_dir"], name + ".key"), encoding="ascii") as fh:
        key = fh.read().strip()
    assert subprocess.run(["wg", "pubkey"], input=key + "\n", capture_output=True, text=True, check=True).stdout.strip() == new
    assert not os.path.exists(os.path.join(lab["key_dir"], name + ".key.next"))
    peer_ns = NS_A if rotated == "b" else NS_B
    assert in_ns(peer_ns, "wg", "show", peer_if, "peers").stdout.split() == [new]
    # done: committing again changes nothing
    assert not record(key_phase(node.runner, name, "commit", key_dir=lab["key_dir"]))["changed"]


def test_prepare_is_idempotent_and_abort_drops_the_pending_key(lab):
    first = record(key_phase(lab["b"].runner, IF_B, "prepare", key_dir=lab["key_dir"]))
    read_keys(lab["key_dir"])
    again = record(key_phase(lab["b"].runner, IF_B, "prepare", key_dir=lab["key_dir"]))
    assert first["changed"] and not again["changed"] and first["public_key"] == again["public_key"]
    path = os.path.join(lab["key_dir"], IF_B + ".key.next")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    checked = record(key_phase(lab["b"].runner, IF_B, "abort", check_mode=True, key_dir=lab["key_dir"]))
    assert checked["changed"] and os.path.exists(path)
    assert record(key_phase(lab["b"].runner, IF_B, "abort", key_dir=lab["key_dir"]))["changed"]
    assert not os.path.exists(path)
    assert in_ns(NS_B, "wg", "show", IF_B, "public-key").stdout.strip() == lab["state"][IF_B]


def test_failures_roll_back_and_name_the_problem(lab):
    before = run_resource(lab["a"], None, "gathered").gathered
    # the new interface's port is taken by IF_A: wg set fails, the half-made interface goes
    with pytest.raises(ResourceError) as err:
        run_resource(lab["a"], [tunnel(IF_X, PORT_A, "10.77.0.8")], "merged")
    assert f"add name={IF_X} failed" in str(err.value) and "Address already in use" in str(err.value)
    assert sh("ip", "-n", NS_A, "link", "show", IF_X, check=False).returncode != 0
    assert not os.path.exists(os.path.join(lab["key_dir"], IF_X + ".key"))
    # a modify and an add in one task: the add fails, the modify is undone
    changed = dict(before[0], mtu=1400)
    with pytest.raises(ResourceError) as err:
        run_resource(lab["a"], [changed, tunnel(IF_X, PORT_A, "10.77.0.8")], "merged")
    assert err.value.rolled_back and "rolled back 1 earlier change(s)" in str(err.value)
    assert run_resource(lab["a"], None, "gathered").gathered == before
    with pytest.raises(ResourceError, match="not managed by galactic.npms"):
        record(key_phase(lab["a"].runner, IF_F, "prepare", key_dir=lab["key_dir"]))


def test_parsed_never_returns_the_private_keys(lab):
    text = dump_secrets(NS_A)  # the real dump, private keys and all (read by the test)
    res = lab["a"]
    parsed = record(base.run(res, None, "parsed", running_config=text).to_dict())
    names = [i["name"] for i in parsed["parsed"]]
    assert IF_A in names and IF_F in names
    # a single interface's dump (no name column, the private key first) is refused by line
    single = in_ns(NS_A, "wg", "show", IF_A, "dump").stdout
    with pytest.raises(ResourceError) as err:
        base.run(res, None, "parsed", running_config=single)
    record(str(err.value))
    assert "line 1: expected the 5 columns" in str(err.value)


# --- through Ansible and Nornir -------------------------------------------------------------
def ansible_playbook(lab, play, *options):
    inventory = {"all": {"hosts": {"wga": {"ansible_host": NS_A}},
                         "vars": {"ansible_connection": "galactic.npms.netns", "ansible_python_interpreter": sys.executable}}}
    inv_path = lab["dir"] / "hosts.yml"
    inv_path.write_text(yaml.safe_dump(inventory))
    play_path = lab["dir"] / "play.yml"
    play_path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(["ansible-playbook", "-i", str(inv_path), str(play_path), "-vvv", *options], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
    TRANSCRIPT.append(proc.stdout + proc.stderr)
    return proc


def recap(proc):
    m = re.search(r"wga\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert m, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"ok": int(m.group(1)), "changed": int(m.group(2)), "unreachable": int(m.group(3)), "failed": int(m.group(4))}


def wg_task(config, state="merged"):
    return {"name": f"wireguard {state}", "galactic.npms.wireguard": {"config": config, "state": state}, "register": "wg"}


def play(*tasks):
    return [{"name": "wireguard through the netns connection", "hosts": "wga", "gather_facts": False, "tasks": list(tasks)}]


def test_ansible_modules_through_the_netns_connection(lab):
    subprocess.run([os.path.join(ROOT, "scripts", "link-collection")], check=True, capture_output=True)
    item = {"name": IF_N, "listen_port": 41005, "addresses": ["10.78.0.1/31"],
            "peers": [{"public_key": lab["state"][IF_B], "allowed_ips": ["10.78.0.0/31"]}]}
    key_file = os.path.join(ANSIBLE_KEY_DIR, IF_N + ".key")
    # --check --diff first: nothing is made
    proc = ansible_playbook(lab, play(wg_task([item])), "--check", "--diff")
    assert recap(proc) == {"ok": 1, "changed": 1, "unreachable": 0, "failed": 0}
    assert f"ip link add {IF_N} type wireguard || wireguard-go {IF_N}" in proc.stdout
    assert sh("ip", "-n", NS_A, "link", "show", IF_N, check=False).returncode != 0 and not os.path.exists(key_file)
    # for real, with the public key as a fact, and a key rotation
    assert_fact = {"name": "public key fact", "ansible.builtin.assert": {"that": [f"wg.facts['{IF_N}'].public_key | length == 44"]}}
    prepare = {"name": "prepare", "galactic.npms.wireguard_key": {"name": IF_N, "phase": "prepare"}, "register": "next_key"}
    proc = ansible_playbook(lab, play(wg_task([item]), assert_fact, prepare), "--diff")
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 2, proc.stdout[-3000:]
    read_keys(ANSIBLE_KEY_DIR)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with open(key_file, encoding="ascii") as fh:
        public = subprocess.run(["wg", "pubkey"], input=fh.read(), capture_output=True, text=True, check=True).stdout.strip()
    assert public in proc.stdout, "the public key fact is in the -vvv output"
    assert os.path.exists(key_file + ".next")
    # second run: no change (prepare keeps its pending key); a change in check mode with diff
    proc = ansible_playbook(lab, play(wg_task([item]), prepare))
    assert recap(proc) == {"ok": 2, "changed": 0, "unreachable": 0, "failed": 0}
    proc = ansible_playbook(lab, play(wg_task([dict(item, mtu=1400)], "replaced"),
                                      {"name": "commit", "galactic.npms.wireguard_key": {"name": IF_N, "phase": "commit"}}),
                            "--check", "--diff")
    assert recap(proc)["changed"] == 2 and recap(proc)["failed"] == 0
    assert '"mtu": 1400' in proc.stdout and f"ip link set dev {IF_N} mtu 1400" in proc.stdout
    assert json.loads(sh("ip", "-n", NS_A, "-j", "link", "show", IF_N).stdout)[0]["mtu"] == 1420
    assert os.path.exists(key_file + ".next")
    # commit for real, then a failing task (bad key) and deleted
    bad = {"name": "bad", "galactic.npms.wireguard": {"config": [{"name": IF_N, "peers": [{"public_key": "nope"}]}]},
           "ignore_errors": True}
    commit = {"name": "commit", "galactic.npms.wireguard_key": {"name": IF_N, "phase": "commit"}}
    proc = ansible_playbook(lab, play(commit, bad, wg_task([{"name": IF_N}], "deleted")), "--diff")
    assert "peers[0]: public_key: 'nope' is not a WireGuard key" in proc.stdout
    assert recap(proc)["changed"] == 2
    assert sh("ip", "-n", NS_A, "link", "show", IF_N, check=False).returncode != 0
    assert not os.path.exists(key_file) and not os.path.exists(key_file + ".next")
    # -vvv shows module arguments and results: no private key among them
    outputs = "\n".join(t for t in TRANSCRIPT if "PLAY RECAP" in t)
    assert lab["state"][IF_B] in outputs and public in outputs
    assert not [s for s in SECRETS if s in outputs], "a private key in ansible-playbook -vvv output"


def test_nornir_task(lab):
    """The Nornir task on a host whose connection is the namespace runner."""
    from npms_nornir.tasks import wireguard_key  # pylint: disable=import-outside-toplevel

    class Host:  # the two things get_runner needs of a Nornir host
        name = "b"

        def get(self, _key, default=None):
            return default

        def get_connection(self, _name, _config):
            return lab["b"].runner

    class Task:
        host = Host()
        nornir = type("N", (), {"config": None})()

        def is_dry_run(self, override=None):
            return bool(override)

    dry = wireguard_key(Task(), IF_B, "prepare", dry_run=True)
    assert not dry.failed and dry.changed and dry.result["public_key"] is None
    record(dry.result)
    # IF_F lives in the other namespace (wg here would reach it through its socket): refused
    res = wireguard_key(Task(), IF_F, "prepare")
    assert res.failed and f"interface {IF_F} on {NS_B}: no such interface" in str(res.exception)
    record(str(res.exception))


def test_deleted_without_config_removes_all_npms_made_and_nothing_else(lab):
    pids = wg_go_pids(IF_A) + wg_go_pids(IF_B)
    assert pids
    for node, name in ((lab["a"], IF_A), (lab["b"], IF_B)):
        res = run_resource(node, None, "deleted", check_mode=True)
        assert res.changed and res.commands[0] == f"ip link del dev {name}"
        assert os.path.exists(os.path.join(lab["key_dir"], name + ".key"))
        res = run_resource(node, None, "deleted")
        assert res.changed and res.after == []
        assert not os.path.exists(os.path.join(lab["key_dir"], name + ".key"))
        assert not run_resource(node, None, "deleted").changed
    assert wait_gone(pids)
    assert not any(os.path.exists(f"/var/run/wireguard/{n}.sock") for n in (IF_A, IF_B))
    # the hand-made interface is still there, untouched
    assert in_ns(NS_A, "wg", "show", IF_F, "listen-port").stdout.strip() == "41009"
    assert sh("ip", "-n", NS_A, "link", "show", "t4wv").returncode == 0


# --- the grep ---------------------------------------------------------------------------------
def test_no_private_key_appears_anywhere(lab):
    read_keys(lab["key_dir"])
    dump_secrets(NS_A)
    dump_secrets(NS_B)
    text = "\n".join(TRANSCRIPT)
    # the search is meaningful: the transcript is full of (public) keys in the same format
    assert len(SECRETS) >= 8, len(SECRETS)
    assert lab["state"][IF_A] in text and lab["state"][IF_B] in text
    leaked = [s[:6] + "..." for s in SECRETS if s in text]
    assert not leaked, f"private keys in results/logs/errors: {leaked}"
