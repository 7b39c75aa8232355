#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: probe_responder
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Start or stop the probe responder (and an iperf3 server) on a node
description:
  - The responder is what M(galactic.npms.probe) measures against, on every core and edge
    node; it answers UDP probes with its receive and send timestamps (O(udp_port)), and
    accepts TCP connections and C(GET /probe) (HTTP, C(200 ok)) on O(tcp_port).
  - O(state=started) copies the responder (one Python file, standard library only) to
    C(npms_probe.py) next to O(pidfile) and starts it detached (its own session, stdio on
    C(/dev/null)); it returns once the sockets are bound. Idempotent - when the pidfile
    names a live responder started from the same file with the same options nothing
    changes; other options or a newer file restart it.
  - With O(iperf=true) it also keeps an C(iperf3 -s -D) server (pidfile C(<pidfile
    without .pid>-iperf3.pid)) for the bandwidth runs of M(galactic.npms.probe); with
    O(iperf=false) a server it started before is stopped.
  - O(state=stopped) stops both (TERM, then KILL after 5 s) and removes their pidfiles.
  - On long-lived nodes a systemd unit is the better home for the responder (restarted on
    failure and at boot); docs/probes.md has one. This module suits the lab and nodes
    without systemd.
options:
  state:
    description: Whether the responder runs.
    type: str
    choices: [started, stopped]
    default: started
  pidfile:
    description:
      - The responder's pid file; the responder script is written to the same directory.
        Nodes sharing a filesystem (network namespaces of the lab) need one each.
    type: path
    default: /run/npms/probe-responder.pid
  bind:
    description: Address to listen on; C(::) is dual stack (IPv4 too).
    type: str
    default: "::"
  udp_port:
    description: UDP echo port.
    type: int
    default: 9876
  tcp_port:
    description: TCP connect and HTTP port.
    type: int
    default: 9877
  iperf:
    description: Also keep an C(iperf3 -s -D) server running (needs C(iperf3)).
    type: bool
    default: false
  iperf_port:
    description: The iperf3 server's port.
    type: int
    default: 5201
attributes:
  check_mode:
    description: Says what would change (RV(commands), diff); starts, stops and writes nothing.
    support: full
  diff_mode:
    description: Before and after - what runs, with its command line.
    support: full
notes:
  - Linux nodes (reads C(/proc)); needs C(sh), C(kill) and, with O(iperf), C(iperf3).
  - A pid file naming a responder in another network namespace is an error, so two lab
    nodes cannot take over each other's responder.
seealso:
  - module: galactic.npms.probe
"""

EXAMPLES = r"""
- name: Keep the probe responder running, with an iperf3 server for the hourly bandwidth runs
  galactic.npms.probe_responder:
    state: started
    iperf: true

# changed: true
# pid: 48211
# iperf_pid: 48230
# commands:
#   - sh -c 'mkdir -p "$1" && cat > "$2" && mv -f "$2" "$3"' sh /run/npms /run/npms/npms_probe.py.4711.tmp /run/npms/npms_probe.py
#   - /usr/bin/python3 /run/npms/npms_probe.py responder --daemon --pidfile /run/npms/probe-responder.pid
#       --bind :: --udp-port 9876 --tcp-port 9877
#   - iperf3 -s -D -p 5201 -I /run/npms/probe-responder-iperf3.pid

- name: In the lab, one pidfile per node (the namespaces share /run)
  galactic.npms.probe_responder:
    pidfile: "/run/npms/probe-responder-{{ inventory_hostname }}.pid"

- name: Stop it
  galactic.npms.probe_responder:
    state: stopped
"""

RETURN = r"""
pid:
  description: The responder's pid after the task (null when stopped, or not started yet in check mode).
  returned: always
  type: int
  sample: 48211
iperf_pid:
  description: The iperf3 server's pid after the task (null when none runs).
  returned: always
  type: int
  sample: 48230
commands:
  description: What was run on the node (in check mode, what would run).
  returned: always
  type: list
  elements: str
  sample:
    - /usr/bin/python3 /run/npms/npms_probe.py responder --daemon --pidfile /run/npms/probe-responder.pid --bind :: --udp-port 9876 --tcp-port 9877
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.galactic.npms.plugins.module_utils.npms.probe import (
    DEFAULT_IPERF_PORT,
    DEFAULT_PIDFILE,
    DEFAULT_TCP_PORT,
    DEFAULT_UDP_PORT,
    ProbeError,
    responder_state,
)
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import CommandError, LocalRunner

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
    "pidfile": {"type": "path", "default": DEFAULT_PIDFILE},
    "bind": {"type": "str", "default": "::"},
    "udp_port": {"type": "int", "default": DEFAULT_UDP_PORT},
    "tcp_port": {"type": "int", "default": DEFAULT_TCP_PORT},
    "iperf": {"type": "bool", "default": False},
    "iperf_port": {"type": "int", "default": DEFAULT_IPERF_PORT},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    try:
        out = responder_state(LocalRunner(), p["state"], pidfile=p["pidfile"], bind=p["bind"], udp_port=p["udp_port"],
                              tcp_port=p["tcp_port"], iperf=p["iperf"], iperf_port=p["iperf_port"],
                              check_mode=module.check_mode)
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    except CommandError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc)
    diff = out.pop("diff")
    if module._diff and out["changed"]:  # pylint: disable=protected-access
        out["diff"] = diff
    module.exit_json(**out)


if __name__ == "__main__":
    main()
