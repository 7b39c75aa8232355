# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the CLI, plugin and resource tests: paths, a tiny inventory to break,
captured command outputs and a fake node that answers with them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from npms.runner import CommandError, Result, Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "inventory", "lab")
COLLECTIONS = os.path.join(ROOT, "collections")
VENV_BIN = os.path.dirname(sys.executable)

TINY_HOSTS = """\
---
all:
  children:
    core:
      hosts:
        core-ams: {npms_site: ams, npms_node_id: 1, npms_locator: "fcbb:0:1::/48", npms_wan_address: 192.0.2.1}
        core-lon: {npms_site: lon, npms_node_id: 2, npms_locator: "fcbb:0:2::/48", npms_wan_address: 192.0.2.2}
    edge:
      hosts:
        edge-dub: {npms_site: dub, npms_node_id: 11, npms_locator: "fcbb:0:b::/48", npms_wan_address: 192.0.2.11}
        edge-ber: {npms_site: ber, npms_node_id: 12, npms_locator: "fcbb:0:c::/48", npms_wan_address: 192.0.2.12}
    customer:
      hosts:
        cust-shop-dub: {npms_site: dub, npms_node_id: 101, npms_asn: 64501}
        cust-shop-ber: {npms_site: ber, npms_node_id: 102, npms_asn: 64502}
"""

TINY_VARS = """\
---
npms_sites:
  ams: {country: NL, region: europe, city: Amsterdam, lat: 52.37, lon: 4.90}
  lon: {country: GB, region: europe, city: London, lat: 51.51, lon: -0.13}
  dub: {country: IE, region: europe, city: Dublin, lat: 53.35, lon: -6.26}
  ber: {country: DE, region: europe, city: Berlin, lat: 52.52, lon: 13.40}
npms_links:
  - {a: core-ams, b: core-lon, kind: core, cost: 10, latency_ms: 4}
  - {a: edge-dub, b: core-lon, kind: access, cost: 10, latency_ms: 5}
  - {a: edge-ber, b: core-ams, kind: access, cost: 10, latency_ms: 4}
  - {a: edge-dub, b: cust-shop-dub, kind: attachment, latency_ms: 0.5}
  - {a: edge-ber, b: cust-shop-ber, kind: attachment, latency_ms: 0.5}
npms_sla_profiles:
  voice: {mode: lowest_latency, max_latency_ms: 30, max_jitter_ms: 5}
  standard: {mode: lowest_cost, allow_direct: true}
npms_tenants:
  shop:
    asn: 65010
    tenant_id: 1
    locator_block: "fcbb:1000::/32"
    edges: [edge-dub, edge-ber]
    attachments:
      - {edge: edge-dub, customer: cust-shop-dub, prefixes: [10.1.0.0/24]}
      - {edge: edge-ber, customer: cust-shop-ber, prefixes: [10.2.0.0/24]}
    traffic_classes:
      voice: {dscp: [46], sla: VOICE_SLA, fallback: standard}
      default: {sla: standard, default: true}
"""


def write_tiny_inventory(directory, voice_sla="voice"):
    """A tiny Ansible-layout inventory; ``voice_sla`` names the voice class's SLA profile
    (an unknown name makes it invalid in group_vars/all.yml, field ...voice.sla)."""
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    with open(os.path.join(directory, "hosts.yml"), "w", encoding="utf-8") as fh:
        fh.write(TINY_HOSTS)
    with open(os.path.join(directory, "group_vars", "all.yml"), "w", encoding="utf-8") as fh:
        fh.write(TINY_VARS.replace("VOICE_SLA", voice_sla))
    return str(directory)


def run(cmd, **kwargs):
    """Run a command from the repository root with the project's ansible.cfg; no stdin."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    return subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 300), check=False, **kwargs)


def link_collection():
    """collections/ansible_collections/galactic/npms -> repository root (idempotent)."""
    proc = subprocess.run([os.path.join(ROOT, "scripts", "link-collection")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def capture(directory: str, name: str) -> str:
    """A captured output file ``tests/fixtures/<directory>/<name>.txt``."""
    with open(os.path.join(ROOT, "tests", "fixtures", directory, name + ".txt"), encoding="utf-8") as fh:
        return fh.read()


def outputs_of(text: str) -> Dict[Tuple[str, ...], str]:
    """``# command`` sections of a capture -> {argv: output}."""
    out: Dict[Tuple[str, ...], str] = {}
    current: Optional[Tuple[str, ...]] = None
    for line in text.splitlines():
        if line.startswith("# "):
            current = tuple(shlex.split(line[2:]))
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


class FakeRunner(Runner):
    """A node that answers show commands from captures and records every other command.

    ``captures`` are ``tests/fixtures/<directory>/<name>.txt`` files, after the ``base``
    ones (``node``: the SRv6 tests' node), then ``overrides`` (``{argv: output}``).  As
    on a node where npms made nothing that is not captured: ``ip -j -6 route get`` of
    another address is unreachable, and ``nft ... list`` of another table or map is
    "No such file or directory".  Every other command succeeds with no output and is
    recorded in ``ran`` (its text, with its input as a here-document) and ``argvs``;
    the first command containing each string of ``fail`` fails once (so that its undo
    works) with a real iproute2 message.  ``reads`` are the show commands answered."""

    where = "fake"

    def __init__(self, *captures: str, overrides: Optional[Dict[Tuple[str, ...], str]] = None, fail: Sequence[str] = (),
                 directory: str = "srv6_linux", base: Sequence[str] = ("node",)):
        self.outputs: Dict[Tuple[str, ...], str] = {}
        for name in tuple(base) + captures:
            self.outputs.update(outputs_of(capture(directory, name)))
        self.outputs.update(overrides or {})
        self.fail = list(fail)
        self.ran: List[str] = []
        self.argvs: List[Tuple[str, ...]] = []
        self.reads: List[Tuple[str, ...]] = []

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(str(a) for a in argv)
        if argv in self.outputs:
            self.reads.append(argv)
            return Result(argv, 0, self.outputs[argv], "")
        if argv[:5] == ("ip", "-j", "-6", "route", "get"):
            self.reads.append(argv)
            return self._result(argv, 2, "RTNETLINK answers: Network is unreachable", check)
        if argv[0] == "nft" and "list" in argv:
            self.reads.append(argv)
            listed = " ".join(argv[argv.index("list"):])  # nft names the object it did not find
            return self._result(argv, 1, f"Error: No such file or directory\n{listed}\n", check)
        text = shlex.join(argv) + (f" <<'EOF'\n{stdin}EOF" if stdin is not None else "")
        self.ran.append(text)
        self.argvs.append(argv)
        for pattern in self.fail:
            if pattern in text:
                self.fail.remove(pattern)  # once: the undo of the same command works
                return self._result(argv, 2, "RTNETLINK answers: File exists", check)
        return Result(argv, 0, "", "")

    def _result(self, argv, rc, stderr, check):
        if check:
            raise CommandError(self.where, argv, rc, "", stderr)
        return Result(argv, rc, "", stderr)
