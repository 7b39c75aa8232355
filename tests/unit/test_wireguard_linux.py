# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WireGuard resource (schema and Linux driver) without a node: input checks,
parsing ``wg show all dump``, the commands it renders and runs (against a scripted
runner), and key rotation's commands.

``tests/fixtures/wireguard/wg_show_all_dump.txt`` was captured with ``wg show all dump``
inside a namespace holding two wireguard-go interfaces (a third, in another namespace,
shows up too: wireguard-go's sockets are shared).  Its private keys and preshared key
were replaced by dummies (base64 of ``DUMMY-PRIVATE-KEY-<if>--...`` /
``DUMMY-PRESHARED-KEY-<if>--...``); the public keys are the real, now unused, ones."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

from npms.resources import base
from npms.resources.base import ResourceError
from npms.resources.registry import build
from npms.resources.wireguard_linux import (DUMP_SCRIPT, HIDDEN, OWNER_ALIAS, WireguardLinux, key_phase, parse_dump,
                                            rotate, swap_peer_key)
from npms.runner import CommandError, Result, Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DUMP = os.path.join(ROOT, "tests", "fixtures", "wireguard", "wg_show_all_dump.txt")
KEY_DIR = "/srv/t4w-keys"
K1 = "fCoRuRGk0tb52xzutEKcF9WGfk8AADUgzey1foxQmXU="
K2 = "HVnyavr1Mg+0W0T6wgmqX/a5idp2YUlM3kG+D223qHE="
K3 = "cZ+U9n6kSi+ePj+tefhDqyIizslO0g3vRBj/cNWgaiM="
NODE_KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
NEXT_KEY = "0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE="
B64_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def dummy(text):
    return base64.b64encode(text.ljust(32, "-").encode()).decode()


PRIVATE_DUMMIES = [dummy("DUMMY-PRIVATE-KEY-t4wc1"), dummy("DUMMY-PRIVATE-KEY-t4wc2"), dummy("DUMMY-PRIVATE-KEY-t4wc3"),
                   dummy("DUMMY-PRESHARED-KEY-t4wc3")]


class ScriptedRunner(Runner):
    """Answers the read commands from a small model of the node and records every
    command; ``fail`` maps an argv prefix to (rc, stdout, stderr)."""

    where = "fake-node"

    def __init__(self, links=None, addrs=None, dump="", fail=None, files=()):
        self.links = links or []
        self.addrs = addrs or {}
        self.dump = dump
        self.fail = dict(fail or {})
        self.files = set(files)
        self.calls = []

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        rc, out, err = 0, "", ""
        for prefix, answer in self.fail.items():
            if argv[:len(prefix)] == prefix:
                rc, out, err = answer
                break
        else:
            if argv == ("ip", "-j", "-d", "link", "show"):
                out = json.dumps(self.links)
            elif argv == ("ip", "-j", "addr", "show"):
                out = json.dumps([{"ifname": n, "addr_info": [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1])} for a in al]}
                                  for n, al in self.addrs.items()])
            elif argv[:4] == ("sh", "-c", DUMP_SCRIPT, "sh"):
                out = "".join(ln + "\n" for ln in self.dump.splitlines() if ln and ln.split("\t")[0] in argv[4:])
            elif argv[:2] == ("test", "-s"):
                rc = 0 if argv[2] in self.files else 1
            elif argv[:4] == ("ip", "-j", "link", "show"):
                out = json.dumps([lk for lk in self.links if lk["ifname"] == argv[-1]])
                rc = 0 if out != "[]" else 1
            elif argv[:3] == ("ip", "link", "show"):
                rc = 0 if any(lk["ifname"] == argv[-1] for lk in self.links) else 1
            elif argv[:2] == ("sh", "-c") and argv[2].startswith("wg pubkey < "):
                out = NEXT_KEY + "\n"
            elif argv[:2] == ("wg", "show") and argv[-1] == "public-key":
                # wg reaches wireguard-go's socket of that name in any namespace
                if argv[2] in {ln.split("\t")[0] for ln in self.dump.splitlines() if ln}:
                    out = NODE_KEY + "\n"
                else:
                    rc, err = 1, "Unable to access interface: No such device\n"
            elif argv[:1] == ("wireguard-go",) and not any(lk["ifname"] == argv[1] for lk in self.links):
                self.links.append({"ifname": argv[1], "mtu": 1420, "linkinfo": {"info_kind": "tun"}})  # its daemon makes the link
        result = Result(argv, rc, out, err)
        if check and rc != 0:
            raise CommandError(self.where, argv, rc, out, err)
        return result

    def changing(self):
        """The commands that change something (not the reads)."""
        reads = (("ip", "-j"), ("test", "-s"), ("ip", "link", "show"))
        return [c for c in self.calls if not any(c[:len(r)] == r for r in reads) and c[:3] != ("sh", "-c", DUMP_SCRIPT)
                and not (c[:2] == ("sh", "-c") and c[2].startswith("wg pubkey")) and c[:2] != ("wg", "show")]


def node_with(name="wg1", owned=True, listen_port=21001, peers=(), mtu=1420, addresses=("10.255.0.1/31",),
              extra_links=(), extra_dump=""):
    link = {"ifname": name, "mtu": mtu, "linkinfo": {"info_kind": "tun"}}
    if owned:
        link["ifalias"] = OWNER_ALIAS
    lines = [f"{name}\t{HIDDEN}\t{NODE_KEY}\t{listen_port}\toff"]
    for p in peers:
        lines.append("\t".join([name, p["public_key"], HIDDEN, p.get("endpoint", "(none)"),
                                ",".join(p.get("allowed_ips", [])) or "(none)", "0", "0", "0",
                                str(p.get("persistent_keepalive") or "off")]))
    return ScriptedRunner(links=[link] + list(extra_links), addrs={name: list(addresses)},
                          dump="\n".join(lines) + "\n" + extra_dump)


def resource(runner):
    return WireguardLinux(runner, key_dir=KEY_DIR)


ITEM = {"name": "wg1", "listen_port": 21001, "addresses": ["10.255.0.1/31"],
        "peers": [{"public_key": K1, "endpoint": "192.0.2.2:21002", "allowed_ips": ["::/0", "10.255.0.0/31"],
                   "persistent_keepalive": 25}]}


# --- input checks ------------------------------------------------------------------------
BAD = [
    ({"name": "wg1", "listen_port": 1, "private_key": NODE_KEY}, "config[0]: private_key: keys are generated on the node"),
    ({"name": "wg1", "peers": [{"public_key": "abc"}]}, "config[0] (interface wg1) peers[0]: public_key: 'abc' is not a WireGuard key"),
    ({"name": "wg1", "peers": [{"public_key": K1[:-2]}]}, "peers[0]: public_key:"),
    ({"name": "wg1", "peers": [{"public_key": K1, "preshared_key": NODE_KEY}]}, "peers[0]: keys other than the peer's public key"),
    ({"name": "wg1", "peers": [{"public_key": K1, "private_key": NODE_KEY}]}, "peers[0]: keys other than the peer's public key"),
    ({"name": "wg1", "peers": [{"public_key": K1, "endpoint": "pop1.example.net:51820"}]},
     "peers[0]: endpoint: 'pop1.example.net' is not an IP address"),
    ({"name": "wg1", "peers": [{"public_key": K1, "endpoint": "192.0.2.1"}]}, "peers[0]: endpoint: '192.0.2.1' is not host:port"),
    ({"name": "wg1", "peers": [{"public_key": K1, "endpoint": "2001:db8::1:51820"}]}, "peers[0]: endpoint:"),
    ({"name": "wg1", "peers": [{"public_key": K1, "endpoint": "192.0.2.1:70000"}]}, "peers[0]: endpoint port: 70000 is out of range 1..65535"),
    ({"name": "wg1", "peers": [{"public_key": K1, "endpoint": "[2001:db8::1]:0"}]}, "peers[0]: endpoint port: 0 is out of range"),
    ({"name": "wg1", "listen_port": 0}, "config[0] (interface wg1): listen_port: 0 is out of range 1..65535"),
    ({"name": "wg1", "listen_port": 65536}, "listen_port: 65536 is out of range 1..65535"),
    ({"name": "wg1", "listen_port": "x"}, "listen_port: 'x' is not an integer"),
    ({"name": "wg1", "mtu": 1000}, "mtu: 1000 is out of range 1280..9000"),
    ({"name": "wg1", "peers": [{"public_key": K1, "persistent_keepalive": 70000}]}, "persistent_keepalive: 70000 is out of range"),
    ({"name": "wg1", "peers": [{"public_key": K1, "allowed_ips": ["10.0.0.1/24"]}]}, "peers[0]: allowed_ips[0]: '10.0.0.1/24' is not a network prefix"),
    ({"name": "wg1", "addresses": ["10.0.0.1"]}, "addresses[0]: '10.0.0.1' needs a prefix length"),
    ({"name": "wg1", "peers": [{"public_key": K1}, {"public_key": K1}]}, "peers[1]: public_key: the same peer is listed twice"),
    ({"name": "wg1", "peers": [{"endpoint": "192.0.2.1:1"}]}, "peers[0]: public_key is required"),
    ({"name": "a-name-far-too-long"}, "config[0]: name: 'a-name-far-too-long' is not an interface name"),
    ({"name": "wg1", "colour": "red"}, "config[0]: unknown field(s) colour"),
    ({"listen_port": 1}, "config[0]: name is required"),
]


@pytest.mark.parametrize("item,message", BAD, ids=[m for _i, m in BAD])
def test_bad_items_are_refused_before_the_node_is_touched(item, message):
    runner = ScriptedRunner()
    with pytest.raises(ResourceError) as err:
        base.run(resource(runner), [item], "merged")
    assert message in str(err.value)
    assert "wireguard config[0]" in str(err.value)
    assert runner.calls == []


def test_duplicate_interfaces_are_refused():
    runner = ScriptedRunner()
    with pytest.raises(ResourceError, match=r"config\[1\]: name=wg1 is already given by config\[0\]"):
        base.run(resource(runner), [{"name": "wg1", "listen_port": 1}, {"name": "wg1", "listen_port": 2}], "merged")
    assert runner.calls == []


def test_listen_port_is_needed_to_create():
    runner = node_with(name="other")
    with pytest.raises(ResourceError, match="interface wg2: listen_port is required"):
        base.run(resource(runner), [{"name": "wg2"}], "merged")
    assert runner.changing() == []


def test_normalized_form_is_canonical():
    item = resource(None).normalize({"name": "wg1", "listen_port": "21001", "addresses": ["fd00:0::1/64", "10.0.0.1/31"],
                                     "peers": [{"public_key": K2, "endpoint": "[2001:db8:0::1]:51820",
                                                "allowed_ips": ["::/0", "10.0.0.0/31", "::/0"]},
                                               {"public_key": K1}]}, "x")
    assert item == {"name": "wg1", "listen_port": 21001, "addresses": ["10.0.0.1/31", "fd00::1/64"],
                    # sorted by key, as the node lists them
                    "peers": [{"public_key": K2, "endpoint": "[2001:db8::1]:51820", "allowed_ips": ["10.0.0.0/31", "::/0"]},
                              {"public_key": K1}]}


# --- parsed ------------------------------------------------------------------------------
def fixture_text():
    with open(DUMP, encoding="utf-8") as fh:
        return fh.read()


def test_the_fixture_holds_only_dummy_secrets():
    text = fixture_text()
    secrets = [line.split("\t")[1] for line in text.splitlines() if len(line.split("\t")) == 5]
    secrets += [line.split("\t")[2] for line in text.splitlines() if len(line.split("\t")) == 9 and line.split("\t")[2] != "(none)"]
    assert sorted(secrets) == sorted(PRIVATE_DUMMIES)


def test_parse_captured_dump():
    res = base.run(resource(None), None, "parsed", running_config=fixture_text())
    assert res.parsed == [
        {"name": "t4wc1", "listen_port": 21001, "peers": [
            {"public_key": K3, "allowed_ips": ["10.9.0.0/16"], "persistent_keepalive": 0},
            {"public_key": K1, "endpoint": "192.0.2.2:21002", "allowed_ips": ["10.255.0.2/32", "fd00:255::/64"],
             "persistent_keepalive": 25},
        ]},
        {"name": "t4wc2", "listen_port": 21002, "peers": [
            {"public_key": K2, "endpoint": "192.0.2.1:21001", "allowed_ips": ["10.255.0.1/32", "::/0"], "persistent_keepalive": 0},
        ]},
        {"name": "t4wc3", "listen_port": 21003, "peers": [
            {"public_key": K1, "endpoint": "[2001:db8::2]:21004", "allowed_ips": [], "persistent_keepalive": 0},
        ]},
    ]
    text = json.dumps(res.to_dict())
    for secret in PRIVATE_DUMMIES:
        assert secret not in text


def test_parsed_items_are_what_the_resource_accepts():
    """parse gives the normalized form: feeding it back normalizes to the same items."""
    r = resource(None)
    parsed = r.parse(fixture_text())
    assert base.normalize_all(r, parsed) == [dict(i, peers=[dict(p) for p in i["peers"]]) for i in parsed]


def test_parse_dump_reports_secrets_only_for_scrubbing():
    interfaces, secrets = parse_dump(fixture_text())
    assert sorted(secrets) == sorted(PRIVATE_DUMMIES)
    assert interfaces["t4wc1"]["public_key"] == K2
    assert "private" not in json.dumps(interfaces)
    r = resource(None)
    r.parse(fixture_text())
    assert r.scrub("oops " + PRIVATE_DUMMIES[0]) == "oops " + base.REDACTED


def test_parse_of_a_single_interface_dump_names_the_line_not_its_content():
    # `wg show <if> dump` has no interface column: 4 columns, the first a private key
    single = f"{PRIVATE_DUMMIES[0]}\t{K2}\t21001\toff\n"
    with pytest.raises(ResourceError) as err:
        base.run(resource(None), None, "parsed", running_config=single)
    assert "line 1: expected the 5 columns of an interface or the 9 of a peer" in str(err.value)
    assert "got 4" in str(err.value)
    assert PRIVATE_DUMMIES[0] not in str(err.value)


def test_parse_bad_peer_key_names_line():
    text = fixture_text().replace(K3, "not-a-key", 1)
    with pytest.raises(ResourceError, match=r"line \d+ \(interface t4wc1\): peer public key: 'not-a-key'"):
        resource(None).parse(text)


# --- rendered and commands ---------------------------------------------------------------
def test_rendered_commands_name_key_files_never_keys():
    res = base.run(resource(None), [ITEM], "rendered")
    cmds = res.rendered
    assert cmds[0] == "ip link add wg1 type wireguard || wireguard-go wg1"
    assert cmds[1] == f"ip link set dev wg1 alias {OWNER_ALIAS} addrgenmode none"
    assert cmds[2].startswith("sh -c 'umask 077 && mkdir -p /srv/t4w-keys && if [ ! -s /srv/t4w-keys/wg1.key ]; then wg genkey > ")
    assert cmds[2].endswith("chmod 600 /srv/t4w-keys/wg1.key'")
    assert cmds[3] == ("wg set wg1 listen-port 21001 private-key /srv/t4w-keys/wg1.key peer " + K1
                       + " endpoint 192.0.2.2:21002 allowed-ips 10.255.0.0/31,::/0 persistent-keepalive 25")
    assert cmds[4:] == ["ip addr add 10.255.0.1/31 dev wg1", "ip link set dev wg1 mtu 1420 up"]
    keys = set(B64_KEY_RE.findall(" ".join(cmds)))
    assert keys == {K1}


def test_registry_builds_the_linux_driver():
    assert isinstance(build("wireguard", "linux", runner=ScriptedRunner()), WireguardLinux)
    assert WireguardLinux(ScriptedRunner()).key_path("wg1") == "/etc/npms/wireguard/wg1.key"


# --- against a scripted node -------------------------------------------------------------
def test_gather_reads_only_owned_interfaces_of_this_namespace():
    foreign_here = {"ifname": "wg-admin", "mtu": 1420}
    runner = node_with(peers=ITEM["peers"], extra_links=[foreign_here, {"ifname": "eth0", "mtu": 1500}],
                       extra_dump=f"wg-admin\t{HIDDEN}\t{K3}\t51820\toff\nwg-elsewhere\t{HIDDEN}\t{K2}\t51821\toff\n")
    r = resource(runner)
    res = base.run(r, None, "gathered")
    assert res.gathered == [{"name": "wg1", "listen_port": 21001, "mtu": 1420, "addresses": ["10.255.0.1/31"],
                             "peers": [{"public_key": K1, "endpoint": "192.0.2.2:21002",
                                        "allowed_ips": ["10.255.0.0/31", "::/0"], "persistent_keepalive": 25}]}]
    assert res.facts == {"wg1": {"public_key": NODE_KEY}}
    assert runner.changing() == []
    # only the node's own interfaces are dumped (not those reached through shared sockets)
    assert ("sh", "-c", DUMP_SCRIPT, "sh", "wg1") in runner.calls


def test_second_run_changes_nothing():
    runner = node_with(peers=ITEM["peers"])
    res = base.run(resource(runner), [ITEM], "merged")
    assert not res.changed and res.commands == []
    res = base.run(resource(runner), [ITEM], "replaced")
    assert not res.changed
    assert runner.changing() == []


def test_learned_endpoint_is_no_change():
    runner = node_with(peers=[dict(ITEM["peers"][0], endpoint="198.51.100.7:40000")])
    want = dict(ITEM, peers=[{k: v for k, v in ITEM["peers"][0].items() if k != "endpoint"}])
    res = base.run(resource(runner), [want], "replaced")
    assert not res.changed, res.commands


def test_modify_swaps_peers_in_one_wg_set():
    runner = node_with(peers=ITEM["peers"])
    want = dict(ITEM, peers=[dict(ITEM["peers"][0], public_key=K2)], mtu=1380, addresses=["10.255.0.1/31", "fd00::1/64"])
    res = base.run(resource(runner), [want], "replaced")
    assert res.commands == [
        f"wg set wg1 peer {K1} remove peer {K2} endpoint 192.0.2.2:21002 allowed-ips 10.255.0.0/31,::/0 persistent-keepalive 25",
        "ip addr add fd00::1/64 dev wg1",
        "ip link set dev wg1 mtu 1380",
    ]
    assert [" ".join(c) for c in runner.changing()] == res.commands


def test_check_mode_runs_nothing_that_changes():
    runner = node_with(name="other")
    res = base.run(resource(runner), [ITEM], "merged", check_mode=True)
    assert res.changed and res.commands and res.diff["after"]
    assert runner.changing() == []


def test_add_runs_the_rendered_commands():
    runner = node_with(name="other")
    res = base.run(resource(runner), [ITEM], "merged")
    ran = runner.changing()
    assert ran[0] == ("ip", "link", "add", "wg1", "type", "wireguard")
    assert [" ".join(c) if c[:2] != ("sh", "-c") else c for c in ran[1:]][0] == res.commands[1]
    assert ("sh", "-c", res.commands[2][len("sh -c '"):-1]) in ran


def test_wireguard_go_when_the_kernel_has_no_wireguard():
    runner = node_with(name="other")
    runner.fail[("ip", "link", "add")] = (2, "", "Error: Unknown device type.\n")
    base.run(resource(runner), [ITEM], "merged")
    assert ("wireguard-go", "wg1") in runner.calls


def test_wireguard_go_failure_is_explained():
    banner = "\u250c\u2500\u2510\n\u2502 Running wireguard-go is not required \u2502\n\u2514\u2500\u2518\n"
    runner = node_with(name="other")
    runner.fail[("ip", "link", "add")] = (2, "", "Error: Unknown device type.\n")
    runner.fail[("wireguard-go",)] = (1, "ERROR: (wg1) 2026/11/23 19:35:45 UAPI listen error: unix socket in use\n", banner)
    with pytest.raises(ResourceError) as err:
        base.run(resource(runner), [ITEM], "merged")
    msg = str(err.value)
    assert "cannot create wg1: the kernel has no WireGuard (Error: Unknown device type.)" in msg
    assert "wireguard-go failed (exit 1): UAPI listen error: unix socket in use" in msg
    assert "/var/run/wireguard/wg1.sock is shared by all namespaces" in msg
    assert err.value.rolled_back


def test_names_in_use_are_refused_before_anything_changes():
    runner = node_with(name="wg9", extra_links=[{"ifname": "wg1", "mtu": 1420}])
    with pytest.raises(ResourceError, match="interface wg1 on fake-node: a link of that name exists and is not managed"):
        base.run(resource(runner), [ITEM], "merged")
    assert runner.changing() == []
    runner = node_with(name="wg9", extra_dump=f"wg1\t{HIDDEN}\t{K3}\t51820\toff\n")
    with pytest.raises(ResourceError, match="exists in another network namespace"):
        base.run(resource(runner), [ITEM], "merged")
    assert runner.changing() == []


def test_failed_add_removes_the_half_made_interface():
    runner = node_with(name="other")
    runner.fail[("ip", "addr", "add")] = (2, "", "RTNETLINK answers: Permission denied\n")
    with pytest.raises(ResourceError) as err:
        base.run(resource(runner), [ITEM], "merged")
    assert "add name=wg1 failed" in str(err.value) and "Permission denied" in str(err.value)
    assert runner.changing()[-2:] == [("ip", "link", "del", "dev", "wg1"), ("rm", "-f", KEY_DIR + "/wg1.key")]


def test_deleted_removes_link_then_key_files_and_nothing_else():
    runner = node_with(peers=ITEM["peers"], extra_links=[{"ifname": "wg-admin", "mtu": 1420}],
                       extra_dump=f"wg-admin\t{HIDDEN}\t{K3}\t51820\toff\n")
    res = base.run(resource(runner), None, "deleted")
    assert res.commands == ["ip link del dev wg1", f"rm -f {KEY_DIR}/wg1.key {KEY_DIR}/wg1.key.next"]
    assert runner.changing() == [("ip", "link", "del", "dev", "wg1"), ("rm", "-f", f"{KEY_DIR}/wg1.key", f"{KEY_DIR}/wg1.key.next")]


def test_key_files_stay_when_a_delete_is_rolled_back():
    runner = node_with(peers=ITEM["peers"])
    runner.fail[("ip", "link", "add")] = (2, "", "Error: Unknown device type.\n")
    runner.fail[("wireguard-go", "wg2")] = (1, "ERROR: (wg2) x y Failed to create TUN device: busy\n", "")
    runner.files.add(f"{KEY_DIR}/wg1.key")
    with pytest.raises(ResourceError) as err:
        base.run(resource(runner), [dict(ITEM, name="wg2")], "overridden")
    assert err.value.rolled_back and "rolled back 1 earlier change(s)" in str(err.value)
    ran = runner.changing()
    assert ran[0] == ("ip", "link", "del", "dev", "wg1")
    # the undo re-created wg1 with the key it had: its key file was not removed
    assert ("wireguard-go", "wg1") in ran
    assert any(c[:3] == ("wg", "set", "wg1") and f"{KEY_DIR}/wg1.key" in c for c in ran)
    assert not any(c[0] == "rm" for c in ran)


# --- key rotation ------------------------------------------------------------------------
def test_prepare_generates_once_and_returns_the_pending_public_key():
    runner = node_with()
    out = key_phase(runner, "wg1", "prepare", key_dir=KEY_DIR)
    assert out["changed"] and out["pending"] and out["public_key"] == NEXT_KEY and out["previous_public_key"] == NODE_KEY
    assert out["commands"] == [f"sh -c 'umask 077 && mkdir -p {KEY_DIR} && if [ ! -s {KEY_DIR}/wg1.key.next ]; then wg genkey > "
                               f"{KEY_DIR}/wg1.key.next.tmp && mv -f {KEY_DIR}/wg1.key.next.tmp {KEY_DIR}/wg1.key.next; fi "
                               f"&& chmod 600 {KEY_DIR}/wg1.key.next'"]
    runner.files.add(f"{KEY_DIR}/wg1.key.next")
    runner.calls.clear()
    again = key_phase(runner, "wg1", "prepare", key_dir=KEY_DIR)
    assert not again["changed"] and again["public_key"] == NEXT_KEY and again["commands"] == []
    assert runner.changing() == []


def test_prepare_in_check_mode_changes_nothing():
    runner = node_with()
    out = key_phase(runner, "wg1", "prepare", check_mode=True, key_dir=KEY_DIR)
    assert out["changed"] and out["public_key"] is None and not out["pending"]
    assert runner.changing() == []


def test_commit_switches_then_renames():
    runner = node_with()
    runner.files.add(f"{KEY_DIR}/wg1.key.next")
    checked = key_phase(runner, "wg1", "commit", check_mode=True, key_dir=KEY_DIR)
    assert checked["changed"] and runner.changing() == []
    runner.calls.clear()
    # the fake's interface keeps answering NODE_KEY: the commit must notice
    with pytest.raises(ResourceError, match="after commit its public key is"):
        key_phase(runner, "wg1", "commit", key_dir=KEY_DIR)
    assert runner.changing() == [("wg", "set", "wg1", "private-key", f"{KEY_DIR}/wg1.key.next"),
                                 ("mv", "-f", f"{KEY_DIR}/wg1.key.next", f"{KEY_DIR}/wg1.key")]
    assert checked["commands"] == [" ".join(c) for c in runner.changing()]


def test_commit_without_pending_key_and_abort():
    runner = node_with()
    out = key_phase(runner, "wg1", "commit", key_dir=KEY_DIR)
    assert not out["changed"] and out["public_key"] == NODE_KEY
    out = key_phase(runner, "wg1", "abort", key_dir=KEY_DIR)
    assert not out["changed"]
    runner.files.add(f"{KEY_DIR}/wg1.key.next")
    out = key_phase(runner, "wg1", "abort", key_dir=KEY_DIR)
    assert out["changed"] and out["commands"] == [f"rm -f {KEY_DIR}/wg1.key.next"]
    assert runner.changing() == [("rm", "-f", f"{KEY_DIR}/wg1.key.next")]


def test_rotation_refuses_interfaces_npms_does_not_own():
    runner = node_with(owned=False)
    with pytest.raises(ResourceError, match="wireguard_key: interface wg1 on fake-node: not managed by galactic.npms"):
        key_phase(runner, "wg1", "prepare", key_dir=KEY_DIR)
    with pytest.raises(ResourceError, match="no such interface"):
        key_phase(runner, "wg7", "commit", key_dir=KEY_DIR)
    with pytest.raises(ResourceError, match="phase: 'rollback' is not one of prepare, commit, abort"):
        key_phase(runner, "wg1", "rollback", key_dir=KEY_DIR)
    assert runner.changing() == []


def test_swap_peer_key_replaces_one_peer_and_is_idempotent():
    runner = node_with(peers=ITEM["peers"] + [{"public_key": K3, "allowed_ips": ["10.9.0.0/16"]}])
    res = swap_peer_key(resource(runner), K1, K2)
    assert res.changed
    assert res.commands == [f"wg set wg1 peer {K1} remove peer {K2} endpoint 192.0.2.2:21002 "
                            "allowed-ips 10.255.0.0/31,::/0 persistent-keepalive 25"]
    runner = node_with(peers=[dict(ITEM["peers"][0], public_key=K2)])
    res = swap_peer_key(resource(runner), K1, K2)
    assert not res.changed and res.commands == []


def test_rotate_in_check_mode_plans_the_peers():
    node = node_with()
    node.files.add(f"{KEY_DIR}/wg1.key.next")
    peer = node_with(name="wg2", peers=[{"public_key": NODE_KEY, "allowed_ips": ["::/0"]}])
    out = rotate(resource(node), "wg1", [resource(peer)], check_mode=True)
    assert out["changed"]
    assert out["peers"][0]["commands"] == [f"wg set wg2 peer {NODE_KEY} remove peer {NEXT_KEY} allowed-ips ::/0 persistent-keepalive off"]
    assert node.changing() == [] and peer.changing() == []


def test_new_peers_without_keepalive_are_sent_one_at_once():
    """A keepalive on and off in one `wg set` makes WireGuard send one now, so that the
    handshake does not wait for traffic (or for a 5-second retry)."""
    item = dict(ITEM, peers=[{"public_key": K1, "endpoint": "192.0.2.2:21002"}, {"public_key": K2},
                             {"public_key": K3, "endpoint": "192.0.2.3:1", "persistent_keepalive": 25}])
    cmds = base.run(resource(None), [item], "rendered").rendered
    assert cmds[-2] == "ip link set dev wg1 mtu 1420 up"
    # only K1: K2 has no endpoint to send to, K3 sends its own keepalive when the link comes up
    assert cmds[-1] == f"wg set wg1 peer {K1} persistent-keepalive 1 peer {K1} persistent-keepalive off"
    runner = node_with(peers=[{"public_key": K1, "endpoint": "192.0.2.2:21002", "allowed_ips": ["::/0"]}])
    res = swap_peer_key(resource(runner), K1, K2)
    assert res.commands == [
        f"wg set wg1 peer {K1} remove peer {K2} endpoint 192.0.2.2:21002 allowed-ips ::/0 persistent-keepalive off",
        f"wg set wg1 peer {K2} persistent-keepalive 1 peer {K2} persistent-keepalive off",
    ]
    assert [" ".join(c) for c in runner.changing()] == res.commands
    # a peer that only changes is not nudged
    runner = node_with(peers=[{"public_key": K1, "endpoint": "192.0.2.2:21002", "allowed_ips": ["::/0"]}])
    res = base.run(resource(runner), [dict(ITEM, peers=[{"public_key": K1, "allowed_ips": []}])], "replaced")
    assert res.commands == [f"wg set wg1 peer {K1} endpoint 192.0.2.2:21002 allowed-ips '' persistent-keepalive off"]


def test_the_dump_script_blanks_secrets_on_the_node(tmp_path):
    """DUMP_SCRIPT through a real shell and awk, with a stand-in `wg` printing what
    `wg show <if> dump` prints (private key first; a peer with a preshared key)."""
    from npms.runner import LocalRunner  # pylint: disable=import-outside-toplevel

    private, preshared = PRIVATE_DUMMIES[0], PRIVATE_DUMMIES[3]
    fake = tmp_path / "wg"
    fake.write_text("#!/bin/sh\n"
                    "[ \"$1 $3\" = \"show dump\" ] || exit 9\n"
                    "[ \"$2\" = gone ] && { echo 'Unable to access interface: No such device' >&2; exit 1; }\n"
                    f"printf '%s\\t%s\\t%s\\t%s\\n' {private} {K2} 21001 off\n"
                    f"printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' {K1} {preshared} 192.0.2.2:21002 10.0.0.0/31,::/0 0 0 0 25\n"
                    f"printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' {K3} '(none)' '(none)' '(none)' 0 0 0 off\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = LocalRunner().run(["sh", "-c", DUMP_SCRIPT, "sh", "wg1", "wg2"], env=env).stdout
    assert private not in out and preshared not in out
    lines = out.splitlines()
    assert lines[0] == f"wg1\t{HIDDEN}\t{K2}\t21001\toff"
    assert lines[1] == f"wg1\t{K1}\t{HIDDEN}\t192.0.2.2:21002\t10.0.0.0/31,::/0\t0\t0\t0\t25"
    assert len(lines) == 6 and lines[3].startswith("wg2\t")
    interfaces, secrets = parse_dump(out)
    assert sorted(interfaces) == ["wg1", "wg2"] and secrets == []
    with pytest.raises(CommandError) as err:
        LocalRunner().run(["sh", "-c", DUMP_SCRIPT, "sh", "wg1", "gone"], env=env)
    assert "No such device" in str(err.value) and private not in str(err.value) + err.value.stdout


def test_no_command_scans_every_wireguard_socket():
    """`wg show interfaces` / `wg show all` connect to every wireguard-go socket on the
    machine and unlink one caught between bind and listen, killing another namespace's
    tunnel: gather, apply and delete name their own interfaces only."""
    runner = node_with(name="other")
    runner.fail[("ip", "link", "add")] = (2, "", "Error: Unknown device type.\n")
    base.run(resource(runner), [ITEM], "merged")
    base.run(resource(runner), [ITEM], "gathered")
    base.run(resource(runner), [{"name": "wg1"}], "deleted")
    scans = [c for c in runner.calls if c[:2] == ("wg", "show") and (len(c) < 3 or c[2] in ("all", "interfaces"))]
    assert scans == []
    assert ("wireguard-go", "wg1") in runner.calls
