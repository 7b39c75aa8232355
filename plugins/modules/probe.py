#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: probe
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Measure RTT, jitter, loss, connect time, time to first byte and bandwidth from a node
description:
  - Runs on the probing node (as every module does) and probes each of O(targets) from
    there; returns one sample per target and kind, in the format the NPMS store ingests.
  - The targets come from C(npms.probe.probe_targets) (C(npms probe targets INVENTORY NODE));
    a core probes every other core at its underlay address; an edge probes, per tenant, the
    far end of each of its WireGuard tunnels (its POPs, the tenant's other edges) through
    the tunnel, at the far end's link-local, while the tunnel is up, else at the tunnel's
    endpoint address over the underlay.
  - "A tunnel is up when its interface exists in the node's network namespace and
    C(wg show <interface> latest-handshakes) shows a handshake younger than 180 s. A tunnel
    that is not up is not probed (no 100 % loss sample for a tunnel that does not exist
    yet): its target's O(targets[].address) is probed instead. RV(paths) says which."
  - "Kinds: C(icmp) (the node's C(ping); sent, received, RTT), C(udp) (numbered,
    timestamped packets echoed by the responder of M(galactic.npms.probe_responder); RTT
    without the responder's turnaround, RFC 3550 interarrival jitter of the forward
    direction, loss, reordering), C(tcp) (connect time to the responder's TCP port),
    C(http) (time to first byte of C(GET /probe) on the same port)."
  - With O(iperf=true) also one C(iperf3) run of O(iperf_seconds) per target address
    (tenants sharing an endpoint share the run). Run it on its own, rarer schedule (it
    loads the link); it needs the C(iperf3 -s) server that
    M(galactic.npms.probe_responder) starts with its O(galactic.npms.probe_responder#module:iperf=true).
  - A probe changes nothing on the node, so it also runs in check mode and never reports
    changed. Loss is a measurement, not a failure; the module fails only on bad input.
options:
  targets:
    description:
      - What to probe, usually C(npms.probe.probe_targets) of the node.
    type: list
    elements: dict
    required: true
    suboptions:
      dst:
        description: The target node's name (the samples' C(dst)).
        type: str
        required: true
      address:
        description: The address probed (IPv4 or IPv6).
        type: str
        required: true
      tenant:
        description: The tenant whose tunnel is measured; omitted or null for core to core.
        type: str
      kinds:
        description: Kinds to run against this target (default O(kinds)).
        type: list
        elements: str
        choices: [icmp, udp, tcp, http]
      tunnel:
        description:
          - The WireGuard tunnel to probe through while it is up; O(targets[].address) is
            then the underlay fallback. C(probe_targets) sets it on edge targets.
          - A probe through the tunnel leaves from the tunnel's own link-local address.
        type: dict
        suboptions:
          interface:
            description: This node's tunnel interface (C(wg1-7-2)).
            type: str
            required: true
          address:
            description:
              - The far end's address on the tunnel, a link-local (C(fe80::2)); the
                interface is added as its zone (C(fe80::2%wg1-7-2)).
            type: str
            required: true
  src:
    description:
      - This node's name, the samples' C(src). C(playbooks/probe.yml) passes C(inventory_hostname).
    type: str
    required: true
  kinds:
    description: Kinds for targets that name none.
    type: list
    elements: str
    choices: [icmp, udp, tcp, http]
    default: [icmp, udp]
  count:
    description: Packets per ICMP and UDP probe.
    type: int
    default: 10
  interval:
    description:
      - Seconds between packets of a probe (ICMP needs root below 0.2 s and is raised to
        0.2 s otherwise).
    type: float
    default: 0.05
  timeout:
    description: Seconds to wait for replies after the last packet, and for a TCP or HTTP answer.
    type: float
    default: 1.0
  udp_port:
    description: The responder's UDP echo port.
    type: int
    default: 9876
  tcp_port:
    description: The responder's TCP and HTTP port.
    type: int
    default: 9877
  iperf:
    description: Also measure bandwidth with one bounded C(iperf3) run per target address.
    type: bool
    default: false
  iperf_seconds:
    description: Length of an iperf3 run, 1 to 10 seconds (the run is killed 10 s after that).
    type: int
    default: 5
  iperf_port:
    description: The C(iperf3 -s) server's port.
    type: int
    default: 5201
attributes:
  check_mode:
    description: Probes run in check mode too (they change nothing); C(changed) is always false.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Needs C(ping) for O(kinds=icmp) and C(iperf3) for O(iperf); UDP, TCP and HTTP probes
    use the Python standard library.
  - Targets are probed one after the other; a run takes about O(count) x O(interval) per
    ICMP or UDP probe, plus O(timeout) where replies are lost.
  - The samples' C(ts) is the end of each probe (epoch seconds).
seealso:
  - module: galactic.npms.probe_responder
"""

EXAMPLES = r"""
- name: Probe this node's targets (computed on the controller from the inventory)
  galactic.npms.probe:
    src: "{{ inventory_hostname }}"
    targets:
      - {dst: core-fra, address: 198.51.100.2, tenant: acme}
      - dst: edge-bos
        address: 198.51.100.10          # the underlay fallback
        tenant: acme
        kinds: [icmp, udp, tcp, http]
        tunnel: {interface: wg1-7-5, address: "fe80::2"}   # probed while the tunnel is up
  register: probe

# probe.paths:
#   - {dst: core-fra, tenant: acme, via: underlay, address: 198.51.100.2}
#   - {dst: edge-bos, tenant: acme, via: tunnel, address: "fe80::2%wg1-7-5"}

# probe.samples:
#   - {src: edge-ber, dst: core-fra, kind: icmp, ts: 1767225600.1, tenant: acme,
#      sent: 10, received: 10, rtt_ms: 4.1, rtt_min_ms: 4.0, rtt_max_ms: 4.4, duration_s: 0.5}
#   - {src: edge-ber, dst: core-fra, kind: udp, ts: 1767225600.6, tenant: acme, sent: 10, received: 10,
#      rtt_ms: 4.2, rtt_min_ms: 4.0, rtt_max_ms: 4.6, jitter_ms: 0.12, reordered: 0, duration_s: 0.46}
#   ...

- name: Hourly, bandwidth only where asked (bounded to 5 s per target)
  galactic.npms.probe:
    src: "{{ inventory_hostname }}"
    targets: "{{ npms_probe_targets }}"
    kinds: [icmp]
    iperf: true
    iperf_seconds: 5
"""

RETURN = r"""
samples:
  description:
    - One per target and kind (and one C(iperf) per target with O(iperf)). Fields that do
      not apply to a kind are left out; C(rtt_ms) is null when nothing came back.
  returned: always
  type: list
  elements: dict
  contains:
    src:
      description: "The probing node (O(src))."
      type: str
      returned: "always"
    dst:
      description: "The target node."
      type: str
      returned: "always"
    kind:
      description: "C(icmp), C(udp), C(tcp), C(http) or C(iperf)."
      type: str
      returned: "always"
    ts:
      description: "End of the probe, epoch seconds."
      type: float
      returned: "always"
    tenant:
      description: "The target's tenant; null for core to core."
      type: str
      returned: "always"
    sent:
      description: "Packets sent (ICMP, UDP) or attempts (TCP, HTTP, iperf)."
      type: int
      returned: "always"
    received:
      description: "Replies received, or successful attempts."
      type: int
      returned: "always"
    rtt_ms:
      description: "Mean round-trip time; null on total loss."
      type: float
      returned: "icmp and udp"
    rtt_min_ms:
      description: "Smallest round-trip time."
      type: float
      returned: "icmp and udp, when a reply came back"
    rtt_max_ms:
      description: "Largest round-trip time."
      type: float
      returned: "icmp and udp, when a reply came back"
    jitter_ms:
      description: "RFC 3550 interarrival jitter of the forward direction (responder receive time minus prober send time, in the order received)."
      type: float
      returned: "udp, when a reply came back"
    reordered:
      description: "Replies that arrived after one with a higher sequence number."
      type: int
      returned: "udp"
    connect_ms:
      description: "TCP connect time."
      type: float
      returned: "tcp, when it connected"
    ttfb_ms:
      description: "Time from the start of the connect to the first byte of a 2xx answer."
      type: float
      returned: "http, on success"
    bandwidth_mbps:
      description: "What the iperf3 server received, Mbit/s."
      type: float
      returned: "iperf, on success"
    duration_s:
      description: "How long the probe ran, seconds."
      type: float
      returned: "when known"
  sample:
    - {src: edge-ber, dst: core-fra, kind: udp, ts: 1767225600.6, tenant: acme, sent: 10, received: 9,
       rtt_ms: 4.2, rtt_min_ms: 4.0, rtt_max_ms: 4.6, jitter_ms: 0.12, reordered: 1, duration_s: 1.45}
failed_targets:
  description:
    - Targets that answered no probe at all, with the reason (C(no reply), or why a probe
      could not run) and the address probed (the tunnel's link-local when it went through the tunnel).
  returned: always
  type: list
  elements: dict
  sample:
    - {dst: core-sin, tenant: null, address: 198.51.100.5, reason: no reply}
paths:
  description:
    - Per target of the ICMP, UDP, TCP and HTTP probes, which path they took - through the
      target's tunnel (C(via=tunnel), at the far end's scoped link-local) or over the
      underlay (C(via=underlay), at O(targets[].address)). Empty with only iperf.
    - The samples do not say it (their format is the store's); the path of every sample of
      a target is its entry here.
  returned: always
  type: list
  elements: dict
  contains:
    dst:
      description: "The target node."
      type: str
      returned: "always"
    tenant:
      description: "The target's tenant; null for core to core."
      type: str
      returned: "always"
    via:
      description: "C(tunnel) or C(underlay)."
      type: str
      returned: "always"
    address:
      description: "The address probed (C(fe80::2%wg1-7-5) through a tunnel)."
      type: str
      returned: "always"
    reason:
      description: "Why the target's tunnel was not used (no such interface, no or a stale handshake)."
      type: str
      returned: "when a target with a tunnel went over the underlay"
  sample:
    - {dst: edge-bos, tenant: acme, via: tunnel, address: "fe80::2%wg1-7-5"}
    - {dst: core-fra, tenant: acme, via: underlay, address: 198.51.100.2, reason: "wg1-7-2: latest handshake 412 s ago"}
errors:
  description: Probes that could not run at all (no C(ping), bad address, iperf3 refused), per target and kind.
  returned: always
  type: list
  elements: dict
  sample:
    - {dst: core-fra, tenant: acme, kind: iperf, error: "iperf3: unable to connect to server: Connection refused"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.galactic.npms.plugins.module_utils.npms.probe import (
    DEFAULT_IPERF_PORT,
    DEFAULT_KINDS,
    DEFAULT_TCP_PORT,
    DEFAULT_UDP_PORT,
    MAX_IPERF_S,
    PROBE_KINDS,
    ProbeError,
    run_request,
)
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import LocalRunner

ARGUMENT_SPEC = {
    "targets": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "dst": {"type": "str", "required": True},
            "address": {"type": "str", "required": True},
            "tenant": {"type": "str"},
            "kinds": {"type": "list", "elements": "str", "choices": list(PROBE_KINDS)},
            "tunnel": {
                "type": "dict",
                "options": {
                    "interface": {"type": "str", "required": True},
                    "address": {"type": "str", "required": True},
                },
            },
        },
    },
    "src": {"type": "str", "required": True},
    "kinds": {"type": "list", "elements": "str", "choices": list(PROBE_KINDS), "default": list(DEFAULT_KINDS)},
    "count": {"type": "int", "default": 10},
    "interval": {"type": "float", "default": 0.05},
    "timeout": {"type": "float", "default": 1.0},
    "udp_port": {"type": "int", "default": DEFAULT_UDP_PORT},
    "tcp_port": {"type": "int", "default": DEFAULT_TCP_PORT},
    "iperf": {"type": "bool", "default": False},
    "iperf_seconds": {"type": "int", "default": 5},
    "iperf_port": {"type": "int", "default": DEFAULT_IPERF_PORT},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    if not 1 <= p["iperf_seconds"] <= MAX_IPERF_S:
        module.fail_json(msg="iperf_seconds must be 1..%d, got %d" % (MAX_IPERF_S, p["iperf_seconds"]))
    if p["count"] < 1 or p["interval"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="count must be at least 1, interval and timeout above 0")
    targets = [{k: v for k, v in t.items() if v is not None} for t in p["targets"]]
    try:
        out = run_request(targets, src=p["src"], kinds=p["kinds"], count=p["count"], interval_s=p["interval"],
                          timeout_s=p["timeout"], udp_port=p["udp_port"], tcp_port=p["tcp_port"], iperf=p["iperf"],
                          iperf_seconds=p["iperf_seconds"], iperf_port=p["iperf_port"], runner=LocalRunner())
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
