# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables resource on a real kernel, with packets.

Three namespaces of our own (``t4n-<pid>-cli``, ``-edge``, ``-srv``)::

    cli eth0 10.1.0.2/24 fd00:1::2/64 -- cust-t4n (the tenant's attachment) edge core0 -- eth0 srv 10.2.0.2/24 fd00:2::2/64

The resource runs against the edge through a NetnsRunner (and, at the end, through
ansible-playbook and the galactic.npms.netns connection).  Needs root, nft, iperf3,
setsid and ping; a missing tool fails the test naming it.  Namespaces, servers and
rollback processes made here are removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from npms.resources import base
from npms.resources.nftables import NftTables, confirm_rollback, rollback_now
from npms.runner import NetnsRunner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PREFIX = f"t4n-{os.getpid()}-"
CLI, EDGE, SRV = PREFIX + "cli", PREFIX + "edge", PREFIX + "srv"
TOOLS = ("ip", "nft", "iperf3", "setsid", "ping", "mktemp")
EF = 46 << 2  # TOS byte of DSCP 46

pytestmark = pytest.mark.usefixtures("needs_root")

# A TCP server answering "hello <port>" on each port given (one thread per port).
SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b'hello %d\\n' % port); c.close()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
"""
# Exit 0 when the server's greeting arrives (the reply came back through the edge).
CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    sys.exit(0 if c.recv(64).startswith(b'hello') else 2)
except OSError:
    sys.exit(1)
"""


def sh(*argv, stdin=None, check=True):
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=check, timeout=120)


def ns(name, *argv, **kw):
    return sh("ip", "netns", "exec", name, *argv, **kw)


@pytest.fixture(scope="module")
def lab():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"test_nftables needs {', '.join(missing)} (apt-get install nftables iperf3 util-linux iputils-ping)", pytrace=False)
    made, servers = [], []
    try:
        for name in (CLI, EDGE, SRV):
            sh("ip", "netns", "add", name)
            made.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", CLI, "link", "add", "eth0", "type", "veth", "peer", "name", "cust-t4n", "netns", EDGE)
        sh("ip", "-n", EDGE, "link", "add", "core0", "type", "veth", "peer", "name", "eth0", "netns", SRV)
        for name, dev, v4, v6 in ((CLI, "eth0", "10.1.0.2/24", "fd00:1::2/64"), (EDGE, "cust-t4n", "10.1.0.1/24", "fd00:1::1/64"),
                                  (EDGE, "core0", "10.2.0.1/24", "fd00:2::1/64"), (SRV, "eth0", "10.2.0.2/24", "fd00:2::2/64")):
            sh("ip", "-n", name, "addr", "add", v4, "dev", dev)
            sh("ip", "-n", name, "addr", "add", v6, "dev", dev, "nodad")
            sh("ip", "-n", name, "link", "set", dev, "up")
        for name, v4, v6 in ((CLI, "10.1.0.1", "fd00:1::1"), (SRV, "10.2.0.1", "fd00:2::1")):
            sh("ip", "-n", name, "route", "add", "default", "via", v4)
            sh("ip", "-n", name, "-6", "route", "add", "default", "via", v6)
        ns(EDGE, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for name, addr, ports in ((SRV, "0.0.0.0", ("8080", "8081")), (SRV, "::", ("8443",)), (EDGE, "0.0.0.0", ("179", "2222")),
                                  (CLI, "0.0.0.0", ("9090",))):
            proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER, addr, *ports],  # pylint: disable=consider-using-with
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            servers.append(proc)
            assert proc.stdout.readline().strip() == "ready"
        iperf = subprocess.Popen(["ip", "netns", "exec", SRV, "iperf3", "-s", "-B", "10.2.0.2"],  # pylint: disable=consider-using-with
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(iperf)
        # without any rule, everything passes (IPv6 once the link-local addresses left DAD)
        assert connects(CLI, "10.2.0.2", 8081), "the namespaces do not forward IPv4"
        assert _wait(lambda: ns(CLI, "ping", "-6", "-c", "1", "-W", "1", "fd00:2::2", check=False).returncode == 0, 15), \
            "the namespaces do not forward IPv6"
        assert connects(CLI, "fd00:2::2", 8443), "the namespaces do not forward IPv6 TCP"
        yield {"runner": NetnsRunner(EDGE), "cookies": []}
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in made:
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def edge(lab):
    """The edge with an empty ruleset; its rollback processes and files gone at the end."""
    ns(EDGE, "nft", "flush", "ruleset")
    yield lab
    for cookie in lab["cookies"]:
        cookie_dir = os.path.dirname(cookie)
        for pid in _pids_with(cookie_dir):
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(cookie_dir, ignore_errors=True)
    lab["cookies"].clear()


def _pids_with(text):
    """Processes whose command line contains ``text`` (a cookie directory unique to a test)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def connects(src, host, port, timeout=1.5):
    return ns(src, sys.executable, "-c", CLIENT, host, str(port), str(timeout), check=False).returncode == 0


def apply(lab, config, state="merged", check_mode=False, rollback_timeout=0):
    res = NftTables(lab["runner"], rollback_timeout=rollback_timeout)
    out = base.run(res, config, state, check_mode=check_mode)
    if res.rollback_cookie:
        lab["cookies"].append(res.rollback_cookie)
    return out, res


def gathered(lab):
    return base.run(NftTables(lab["runner"]), None, "gathered")


def tables():
    return sorted(ns(EDGE, "nft", "list", "tables").stdout.split("\n"))


ACME = {"tenant": "acme", "tenant_id": 1, "interfaces": ["cust-t4n"],
        "classes": [{"name": "voice", "dscp": [46], "rate_mbps": 5}, {"name": "default", "dscp": []}]}
WEB = {"name": "web", "rules": [
    {"protocol": "tcp", "ports": [8080, 8443], "sources": ["10.1.0.0/24", "fd00:1::/64"], "destinations": ["10.2.0.0/24", "fd00:2::/64"]},
    {"protocol": "icmp"}, {"protocol": "icmpv6"}]}
BETA = {"tenant": "beta", "interfaces": ["beta0"], "classes": [{"name": "gold", "dscp": [10]}]}


def test_merged_check_mode_diff_and_second_run(edge):
    out, _res = apply(edge, [ACME], check_mode=True)
    assert out.changed and out.commands[:2] == ["table inet npms_acme", "delete table inet npms_acme"]
    assert '"tenant": "acme"' in out.diff["after"] and out.diff["before"] == ""
    assert tables() == [""], "check mode changed the node"
    out, _res = apply(edge, [ACME])
    assert out.changed and not out.warnings
    assert gathered(edge).gathered == out.after
    again, _res = apply(edge, [ACME])
    assert not again.changed and again.commands == [] and again.diff is None
    # merged adds a class and keeps the others
    out, _res = apply(edge, [{"tenant": "acme", "classes": [{"name": "video", "dscp": [34], "rate_mbps": 20}]}])
    assert out.changed and [c["name"] for c in gathered(edge).gathered[0]["classes"]] == ["default", "video", "voice"]


FOREIGN = """\
table inet t4nforeign {
    chain t4nfwd {
        type filter hook forward priority 50; policy accept;
        iifname "core0" counter accept
    }
}
table ip t4nfilter {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 2222 counter accept
    }
}
table inet npms_unmarked {
    chain c {
        ip saddr 10.9.9.9 drop
    }
}
"""


def foreign_state():
    return [ns(EDGE, "nft", "-s", "list", "table", fam, name).stdout
            for fam, name in (("inet", "t4nforeign"), ("ip", "t4nfilter"), ("inet", "npms_unmarked"))]


def test_replaced_overridden_deleted_touch_only_owned_tables(edge):
    ns(EDGE, "nft", "-f", "-", stdin=FOREIGN)
    before = foreign_state()
    apply(edge, [ACME, BETA])
    out, _res = apply(edge, [{"tenant": "acme", "interfaces": ["cust-t4n"]}], "replaced")
    assert out.changed and [i["tenant"] for i in gathered(edge).gathered] == ["acme", "beta"]
    assert gathered(edge).gathered[0]["classes"] == []
    out, _res = apply(edge, [BETA], "overridden")
    assert out.commands[0] == "delete table inet npms_acme"
    assert [i["tenant"] for i in gathered(edge).gathered] == ["beta"]
    with pytest.raises(base.ResourceError, match="npms_unmarked exists but was not made by galactic.npms"):
        apply(edge, [{"tenant": "unmarked", "interfaces": ["x"]}])
    out, _res = apply(edge, None, "deleted")
    assert out.commands == ["delete table inet npms_beta"]
    assert gathered(edge).gathered == []
    assert foreign_state() == before
    assert tables() == ["", "table inet npms_unmarked", "table inet t4nforeign", "table ip t4nfilter"]


class BrokenNftTables(NftTables):
    """Appends a statement nft refuses to the last table it writes."""

    def render_change(self, change):
        lines = super().render_change(change)
        if change.key == ("beta",):
            lines.append("add rule inet npms_beta nosuchchain accept")
        return lines


def test_a_failing_transaction_changes_nothing(edge):
    apply(edge, [ACME])
    before = ns(EDGE, "nft", "-s", "list", "ruleset").stdout
    res = BrokenNftTables(edge["runner"])
    with pytest.raises(base.ResourceError) as err:
        base.run(res, [dict(ACME, classes=[]), BETA], "overridden")
    assert err.value.rolled_back and "changed nothing" in str(err.value) and "nosuchchain" in str(err.value)
    assert ns(EDGE, "nft", "-s", "list", "ruleset").stdout == before


def test_security_group_default_deny_stateful(edge):
    apply(edge, [dict(ACME, security_groups=[WEB])])
    assert connects(CLI, "10.2.0.2", 8080), "an allowed port is blocked"
    assert connects(CLI, "fd00:2::2", 8443), "an allowed IPv6 port is blocked"
    assert not connects(CLI, "10.2.0.2", 8081), "a port no rule allows connects"
    # inbound: nothing allowed, but replies of outbound connections passed above (stateful)
    assert not connects(SRV, "10.1.0.2", 9090), "a connection towards the site passed"
    assert ns(CLI, "ping", "-c", "1", "-W", "2", "10.2.0.2", check=False).returncode == 0
    # what the edge itself needs from the customer router passes; the rest does not
    assert connects(CLI, "10.1.0.1", 179), "BGP to the edge is blocked"
    assert not connects(CLI, "10.1.0.1", 2222), "a port on the edge no rule allows connects"
    assert ns(CLI, "ping", "-6", "-c", "1", "-W", "2", "fd00:1::1", check=False).returncode == 0
    counters = gathered(edge).facts["nftables_counters"]["acme"]
    assert counters["sg_web"]["packets"] >= 3
    assert counters["denied_outbound"]["packets"] >= 1 and counters["denied_inbound"]["packets"] >= 1
    assert counters["denied_local"]["packets"] >= 1


def test_dscp_classes_count_per_class(edge):
    apply(edge, [dict(ACME, classes=[{"name": "voice", "dscp": [46]}, {"name": "default", "dscp": []}])])
    time.sleep(0.5)
    # late packets of earlier tests' connections (a TCP reset) may still count as default
    start = {k: v["packets"] for k, v in gathered(edge).facts["nftables_counters"]["acme"].items()}
    ns(CLI, "ping", "-c", "3", "-i", "0.2", "-Q", str(EF), "10.2.0.2")
    ns(CLI, "ping", "-6", "-c", "2", "-i", "0.2", "-Q", str(EF), "fd00:2::2")
    ns(CLI, "ping", "-c", "4", "-i", "0.2", "10.2.0.2")
    count = {k: v["packets"] - start[k] for k, v in gathered(edge).facts["nftables_counters"]["acme"].items()}
    # the echo requests are what is forwarded from the tenant's interface; only they carry EF
    assert count["class_voice"] == 5
    assert 4 <= count["class_default"] <= 6
    assert count["npms"] == count["class_voice"] + count["class_default"]


def iperf_udp(tos, mbps=20, seconds=4):
    """Received Mbit/s of a UDP stream from the client to the server."""
    for _attempt in range(5):
        proc = ns(CLI, "iperf3", "-c", "10.2.0.2", "-u", "-b", f"{mbps}M", "-t", str(seconds), "-l", "1200",
                  "--tos", str(tos), "-J", check=False)
        if proc.returncode == 0:
            break
        time.sleep(1)  # the server is busy with the previous test's stream
    assert proc.returncode == 0, proc.stdout + proc.stderr
    end = json.loads(proc.stdout)["end"]["sum"]
    return end["bits_per_second"] * (1 - end["lost_percent"] / 100) / 1e6


def test_policer_limits_only_its_class(edge):
    apply(edge, [ACME])  # voice policed to 5 Mbit/s, default not policed
    voice = iperf_udp(EF)
    other = iperf_udp(0)
    # The kernel's byte limit lets one second of rate through on top: about 6 of 20 offered.
    assert 2.5 < voice < 9.0, f"voice got {voice:.1f} Mbit/s through a 5 Mbit/s policer"
    assert other > 14.0, f"the unpoliced class got only {other:.1f} of 20 Mbit/s"
    counters = gathered(edge).facts["nftables_counters"]["acme"]
    assert counters["policed_voice"]["packets"] > 1000
    assert counters["class_default"]["packets"] > 1000 and "policed_default" not in counters


def test_hand_edit_is_detected_and_repaired(edge):
    apply(edge, [dict(ACME, security_groups=[WEB])])
    assert not connects(CLI, "10.2.0.2", 8081)
    ns(EDGE, "nft", "insert", "rule", "inet", "npms_acme", "outbound", "tcp", "dport", "8081", "accept")
    assert connects(CLI, "10.2.0.2", 8081), "the hand edit did not take effect"
    [item] = gathered(edge).gathered
    assert item["drift"] == ["chain outbound: extra rule 1 `tcp dport 8081 accept`"]
    out, _res = apply(edge, [dict(ACME, security_groups=[WEB])])
    assert out.changed and "drift" in out.diff["before"] and "drift" not in out.diff["after"]
    assert "drift" not in gathered(edge).gathered[0]
    assert not connects(CLI, "10.2.0.2", 8081), "the repair did not remove the hand-made rule"
    assert not apply(edge, [dict(ACME, security_groups=[WEB])])[0].changed


def _wait(predicate, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_rollback_restores_unless_confirmed(edge):
    apply(edge, [ACME])
    before = gathered(edge).gathered
    # a change that cuts the site off, not confirmed: the edge restores the old table
    started = time.monotonic()
    out, res = apply(edge, [dict(ACME, security_groups=[{"name": "none"}]), BETA], rollback_timeout=3)
    assert out.changed and res.rollback_cookie and os.path.exists(res.rollback_cookie)
    assert not connects(CLI, "10.2.0.2", 8080)
    assert _wait(lambda: gathered(edge).gathered == before, 10), "the old tables did not come back"
    assert time.monotonic() - started >= 2.5
    assert connects(CLI, "10.2.0.2", 8080)
    assert _wait(lambda: not os.path.exists(os.path.dirname(res.rollback_cookie)), 5)
    with pytest.raises(base.ResourceError, match="rollback already restored"):
        confirm_rollback(edge["runner"], res.rollback_cookie)


def test_confirmed_change_stays(edge):
    apply(edge, [ACME])
    out, res = apply(edge, [BETA], rollback_timeout=3)
    after = gathered(edge).gathered
    confirm_rollback(edge["runner"], res.rollback_cookie)
    assert _wait(lambda: not os.path.exists(os.path.dirname(res.rollback_cookie)), 8), "the rollback process did not end"
    assert out.changed and gathered(edge).gathered == after and [i["tenant"] for i in after] == ["acme", "beta"]


def test_rollback_now(edge):
    apply(edge, [ACME])
    before = gathered(edge).gathered
    _out, res = apply(edge, [ACME], "deleted", rollback_timeout=60)
    assert gathered(edge).gathered == []
    rollback_now(edge["runner"], res.rollback_cookie)
    assert gathered(edge).gathered == before
    assert not os.path.exists(os.path.dirname(res.rollback_cookie))
    # its process still sleeps (60 s); when it wakes it finds no cookie: the edge fixture ends it now


class FakeTask:
    """What the Nornir tasks use of a task: its host's connection (the edge's runner) and dry run."""

    def __init__(self, runner, dry_run=False):
        self.host = self
        self.nornir = self
        self.config = None
        self.name = "edge"
        self._runner, self._dry_run = runner, dry_run

    def get(self, key, default=None):
        return default

    def get_connection(self, name, config):
        return self._runner

    def is_dry_run(self, override=None):
        return self._dry_run if override is None else override


def test_nornir_tasks_arm_and_confirm(edge):
    from npms_nornir.tasks import nftables, nftables_confirm  # pylint: disable=import-outside-toplevel

    task = FakeTask(edge["runner"])
    dry = nftables(FakeTask(edge["runner"], dry_run=True), [ACME], rollback_timeout=3)
    assert dry.changed and "rollback_cookie" not in dry.result and gathered(edge).gathered == []
    res = nftables(task, [ACME], rollback_timeout=3)
    assert res.changed and not res.failed and "+++ after" in res.diff
    edge["cookies"].append(res.result["rollback_cookie"])
    assert not nftables_confirm(task, res.result["rollback_cookie"]).failed
    res = nftables(task, [BETA], rollback_timeout=30)
    edge["cookies"].append(res.result["rollback_cookie"])
    assert not nftables_confirm(task, res.result["rollback_cookie"], rollback=True).failed
    assert [i["tenant"] for i in gathered(edge).gathered] == ["acme"]
    again = nftables_confirm(task, res.result["rollback_cookie"])
    assert again.failed and "gone" in str(again.exception)
    assert nftables(task, [{"tenant": "bad tenant"}]).failed


# --- through Ansible ----------------------------------------------------------------------------------
PLAY = """\
- name: nftables through the action plugin
  hosts: edge
  gather_facts: false
  tasks:
    - name: Apply with a rollback the action plugin confirms
      galactic.npms.nftables:
        config: "{{ nft_config }}"
        state: merged
        rollback_timeout: 4
      register: first

    - name: Again
      galactic.npms.nftables:
        config: "{{ nft_config }}"
        state: merged
        rollback_timeout: 4
      register: second

    - name: Confirmed, and idempotent
      ansible.builtin.assert:
        that:
          - first is changed
          - first.rollback_confirmed
          - first.rollback_cookie is search('/npms-nftables[.]')
          - second is not changed
          - second.rollback_cookie is not defined
          - first.facts.nftables_counters.acme.class_voice.packets == 0
"""


CHECK_TASK = """\
    - name: Would change, nothing armed
      ansible.builtin.assert:
        that:
          - first is changed
          - first.rollback_confirmed is not defined
          - first.rollback_cookie is not defined
"""


def ansible_playbook(*args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300, check=False)


def test_through_ansible_playbook(edge, tmp_path):
    subprocess.run([os.path.join(ROOT, "scripts", "link-collection")], check=True, capture_output=True)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "galactic.npms.netns", "ansible_python_interpreter": sys.executable},
        "hosts": {"edge": {"ansible_host": EDGE}}}}))
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"nft_config": [ACME]}))
    started = time.monotonic()
    proc = ansible_playbook("-i", str(inventory), str(play), "-e", f"@{config}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok=3" in proc.stdout and "failed=0" in proc.stdout
    applied = gathered(edge).gathered
    assert [i["tenant"] for i in applied] == ["acme"]
    # confirmed: its rollback process ends (after the 4 s) without restoring anything
    assert _wait(lambda: not [p for p in _pids_with("npms-nftables-rollback") if _in_netns(p, EDGE)], 15)
    assert time.monotonic() - started > 4
    assert gathered(edge).gathered == applied

    # --check --diff: the diff is shown, nothing changes, nothing is armed
    config.write_text(json.dumps({"nft_config": [dict(ACME, classes=[{"name": "voice", "dscp": [46], "rate_mbps": 7}])]}))
    check_play = tmp_path / "check.yml"
    check_play.write_text(PLAY.split("    - name: Again", maxsplit=1)[0] + CHECK_TASK)
    proc = ansible_playbook("-i", str(inventory), str(check_play), "-e", f"@{config}", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"rate_mbps": 7' in proc.stdout and '"rate_mbps": 5' in proc.stdout, proc.stdout
    assert any(line.startswith("+") and '"rate_mbps": 7' in line for line in proc.stdout.splitlines()), proc.stdout
    assert gathered(edge).gathered == applied


def _in_netns(pid, name):
    """Whether process ``pid`` is in network namespace ``name``."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return False
