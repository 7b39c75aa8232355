# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The galactic.npms.netns connection plugin as Ansible loads it: which variable names
the namespace, the errors a user meets before anything runs, and its documentation.
Running modules in real namespaces is tests/integration/test_netns_connection.py."""

from __future__ import annotations

import json
import sys

from npms_testlib import COLLECTIONS, link_collection, run

# Runs in a fresh interpreter: Ansible's collection loader can be configured once per
# process, and test_plugins.py configures it in-process too.
PROBE = """
import json, sys
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader, init_plugin_loader

init_plugin_loader([sys.argv[1]])
out = []
for host_vars in json.loads(sys.argv[2]):
    conn = connection_loader.get("galactic.npms.netns", PlayContext(), new_stdin=None)
    conn.set_options(var_options=host_vars)
    try:
        conn.exec_command("true")
        error = None
    except AnsibleConnectionFailure as exc:
        error = str(exc)
    out.append({"netns": conn.netns, "error": error})
print(json.dumps(out))
"""


def probe(*host_vars):
    """(namespace chosen, connection error) for each set of host variables."""
    link_collection()
    proc = run([sys.executable, "-c", PROBE, COLLECTIONS, json.dumps(host_vars)])
    assert proc.returncode == 0, proc.stderr
    return [(r["netns"], r["error"]) for r in json.loads(proc.stdout)]


def test_namespace_comes_from_host_name_ansible_host_then_netns_name():
    chosen = probe(
        {"inventory_hostname": "core-lon"},
        {"inventory_hostname": "core-lon", "ansible_host": "lab-core-lon"},
        {"inventory_hostname": "core-lon", "ansible_host": "lab-core-lon", "ansible_netns_name": "other"},
    )
    assert [netns for netns, _error in chosen] == ["core-lon", "lab-core-lon", "other"]


def test_missing_or_bad_namespace_is_a_clear_connection_failure():
    (missing, error), (bad, bad_error) = probe(
        {"inventory_hostname": "x", "ansible_host": "tcu-no-such-ns"},
        {"inventory_hostname": "../../etc"},
    )
    assert missing == "tcu-no-such-ns"
    assert "'tcu-no-such-ns' does not exist (no /run/netns/tcu-no-such-ns); is the lab up (npms lab up)?" in error
    assert "'../../etc' is not a valid network namespace name" in bad_error


def test_ansible_doc_shows_options_and_examples():
    link_collection()
    proc = run(["ansible-doc", "-t", "connection", "galactic.npms.netns"])
    assert proc.returncode == 0, proc.stderr
    for text in ("galactic.npms.netns", "ansible_netns_name", "ansible_host", "pipelining", "EXAMPLES"):
        assert text in proc.stdout
