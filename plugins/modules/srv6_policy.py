#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: srv6_policy
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Manage SRv6 policies (binding SID, weighted segment lists)
description:
  - Manages SR policies, each a binding SID (BSID) and one or more weighted segment lists
    that traffic steered into the policy is encapsulated with (M(galactic.npms.srv6_steering)
    steers traffic into a policy by BSID).
  - On O(dataplane=vpp) a policy is a VPP SR policy (C(sr_policy_add_v2)).
  - On O(dataplane=linux), which has no SR policy object, a policy is a routing table of
    its own, number C(0x10000000) plus the low 28 bits of the BSID (two BSIDs whose low 28 bits are
    equal are refused). It holds C(default) routes for IPv4 and IPv6 with
    C(encap seg6 mode encap segs <list>); several segment lists become a multipath route
    with one C(nexthop ... weight <weight>) per list, over which the kernel hashes flows.
    A route C(throw <bsid>/128) in the table names its policy. In the main table,
    C(<bsid>/128 encap seg6local action End.B6.Encaps srh segs <list>) with the segment list
    of highest weight encapsulates a packet whose active segment is the BSID into the
    policy (End.B6.Encaps takes one list). All these routes have the npms route protocol,
    C(proto 202); nothing else is read, changed or deleted.
  - The C(dev) of these routes is the interface of C(ip -6 route get <first segment>) when
    the task runs (IPv6 multipath nexthops also get its gateway, or the segment itself when
    it is on-link), so create the M(galactic.npms.srv6_route) towards the first segments
    first. With O(state=rendered) the node is not asked and the commands show
    C(<resolved at apply>) there. The kernel looks the encapsulated packet up again, so the
    interface only has to be up.
  - On O(dataplane=linux) the module uses the eBPF mode instead of C(seg6) routes when the
    target's kernel was built without C(CONFIG_IPV6_SEG6_LWTUNNEL), or when the environment
    variable C(NPMS_SRV6_ENCAP=bpf) is set for the task (C(environment:));
    C(NPMS_SRV6_ENCAP=seg6) forces the routes. RV(facts.srv6_encap) says which one ran.
    See the notes for how it works and its limits.
options:
  config:
    description:
      - The policies.
    type: list
    elements: dict
    suboptions:
      bsid:
        description:
          - Binding SID, an IPv6 address (the item's key).
        type: str
        required: true
      segment_lists:
        description:
          - The segment lists, at least one. Required to create or replace a policy.
        type: list
        elements: dict
        suboptions:
          segments:
            description:
              - The SIDs in order, first segment first (at most 16; at most 13 in the Linux
                eBPF mode).
            type: list
            elements: str
            required: true
          weight:
            description:
              - Share of the flows for this list, relative to the other lists' weights.
                Defaults to 1. With a single list the weight is not kept (it is 1).
            type: int
      encap_source:
        description:
          - Source address of the outer IPv6 header.
          - On Linux there is one per node (network namespace), C(ip sr tunsrc); it applies to
            every policy of the node. Policies with different sources are refused, and a
            source given for one policy is what the others report. Policies without one
            report the node's source, if it has one. Deleting policies leaves it as it is.
        type: str
notes:
  - "eBPF mode (Linux): the C(default) routes of the policy's table are
    C(encap bpf xmit pinned /run/npms/bpf/npms_srv6_<4|6>=<source>=<segments>) routes. For
    each segment list the module builds a small eBPF program (no compiler is needed on the
    node) that pushes an outer IPv6 header and a Segment Routing Header with the list,
    clears the packet's firewall mark and has the kernel route the result; it loads it
    with the C(bpf) system call and pins it under C(/run/npms/bpf) (a bpf filesystem it
    mounts there) only while the route is made. The route keeps the program, and the
    program's name, which C(ip route) shows, says what it pushes: that is what
    O(state=gathered) reads back."
  - "eBPF mode: the outer source is O(config[].encap_source) (set as C(ip sr tunsrc)),
    else the node's C(ip sr tunsrc), else the address the kernel picks towards the first
    segment (C(prefsrc) of C(ip -6 route get <first segment>)). The outer header carries
    traffic class 0 and flow label 0."
  - "eBPF mode limits: there is no C(End.B6.Encaps) route for the BSID (it needs
    C(seg6local)), so only traffic steered into the policy (M(galactic.npms.srv6_steering))
    is encapsulated, not packets whose active segment is the BSID. Packets that arrive as
    one GSO/GRO aggregate cannot be encapsulated this way (the kernel only lets GRE, UDP
    and IP-in-IP encapsulations of such packets through) and are dropped: keep GRO off on
    the attachment interfaces (C(ethtool -K <interface> gro off)). A segment list has at
    most 13 segments (the pushed headers must fit the kernel's 256 bytes of headroom), and
    the program's name, source and segments spelled out, must fit in what iproute2 keeps
    with the route (246 characters). The kernel needs C(CONFIG_LWTUNNEL_BPF), the module
    must run as root (it calls C(bpf) and C(mount)), and the target must be x86_64 or
    aarch64."
extends_documentation_fragment:
  - galactic.npms.resource
  - galactic.npms.resource.DATAPLANE
"""

EXAMPLES = r"""
# Before state (Linux):
# -------------
# $ ip -6 route show table all proto 202
# fcbb:0:2::/48 via fe80::2 dev core0 metric 1024 pref medium

- name: A policy with two weighted segment lists
  galactic.npms.srv6_policy:
    config:
      - bsid: fcbb:0:1:b::100
        segment_lists:
          - segments: [fcbb:0:2::1, fcbb:0:4::d4]
            weight: 3
          - segments: [fcbb:0:3::1, fcbb:0:4::d4]
            weight: 1
        encap_source: "fcbb:0:1::"
    state: merged

# Commands:
# ---------
# ip -6 route add throw fcbb:0:1:b::100/128 table 268435712 proto 202
# ip -6 route add default table 268435712 proto 202
#   nexthop via fe80::2 encap seg6 mode encap segs fcbb:0:2::1,fcbb:0:4::d4 dev core0 weight 3
#   nexthop via fe80::3 encap seg6 mode encap segs fcbb:0:3::1,fcbb:0:4::d4 dev core1 weight 1
# ip -4 route add default table 268435712 proto 202
#   nexthop encap seg6 mode encap segs fcbb:0:2::1,fcbb:0:4::d4 dev core0 weight 3
#   nexthop encap seg6 mode encap segs fcbb:0:3::1,fcbb:0:4::d4 dev core1 weight 1
# ip -6 route add fcbb:0:1:b::100/128 table main proto 202 encap seg6local action End.B6.Encaps
#   srh segs fcbb:0:2::1,fcbb:0:4::d4 dev core0
# ip sr tunsrc set fcbb:0:1::
# (each command is one line)
#
# After state:
# ------------
# $ ip -6 route show table 268435712
# throw fcbb:0:1:b::100 dev lo proto 202 metric 1024 pref medium
# default proto 202 metric 1024 pref medium
#   nexthop encap seg6 mode encap segs 2 [ fcbb:0:2::1 fcbb:0:4::d4 ] via fe80::2 dev core0 weight 3
#   nexthop encap seg6 mode encap segs 2 [ fcbb:0:3::1 fcbb:0:4::d4 ] via fe80::3 dev core1 weight 1

- name: Commands for a policy, without touching the node
  galactic.npms.srv6_policy:
    config:
      - bsid: fcbb:0:1:b::101
        segment_lists:
          - segments: [fcbb:0:3::1]
    state: rendered

# rendered:
# - ip -6 route add throw fcbb:0:1:b::101/128 table 268435713 proto 202
# - ip -6 route add default table 268435713 proto 202 encap seg6 mode encap segs fcbb:0:3::1 dev '<resolved at apply>'
# - (and the IPv4 default route and the BSID route likewise)

- name: A policy on a kernel without seg6 routes (eBPF mode)
  galactic.npms.srv6_policy:
    config:
      - bsid: fcbb:0:1:b::101
        segment_lists:
          - segments: [fcbb:0:3::1]
        encap_source: "fcbb:0:1::"
  environment:
    NPMS_SRV6_ENCAP: bpf  # only to force it: such a kernel gets it anyway

# Commands:
# ---------
# ip -6 route add throw fcbb:0:1:b::101/128 table 268435713 proto 202
# ip -6 route add default table 268435713 proto 202
#   encap bpf xmit pinned /run/npms/bpf/npms_srv6_6=fcbb:0:1::=fcbb:0:3::1 dev core1
# ip -4 route add default table 268435713 proto 202
#   encap bpf xmit pinned /run/npms/bpf/npms_srv6_4=fcbb:0:1::=fcbb:0:3::1 dev core1
# ip sr tunsrc set fcbb:0:1::
# (no BSID route)
#
# After state:
# ------------
# $ ip -6 route show table 268435713
# throw fcbb:0:1:b::101 dev lo proto 202 metric 1024 pref medium
# default encap bpf xmit npms_srv6_6=fcbb:0:1::=fcbb:0:3::1:[*fsobj] dev core1 proto 202 metric 1024 pref medium

- name: Read the policies (the result also names the commands gathered reads)
  galactic.npms.srv6_policy:
    state: gathered
  register: policies

- name: Save those commands' outputs, each under its '# <command>' line
  ansible.builtin.shell: |
    {% for c in policies.facts.show_commands %}
    echo '# {{ c }}'; {{ c }}
    {% endfor %}
  register: saved
  changed_when: false

- name: Parse the saved output (on any host, later)
  galactic.npms.srv6_policy:
    running_config: "{{ saved.stdout }}"
    state: parsed

- name: Delete every policy npms made
  galactic.npms.srv6_policy:
    state: deleted
"""

RETURN = r"""
before:
  description:
    - The policies npms managed on the node before the task.
    - A policy whose routes are not all as npms makes them (one deleted by hand, say) has a
      field C(incomplete) saying what is wrong; merged, replaced and overridden repair it.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample: [{"bsid": "fcbb:0:1:b::100", "segment_lists": [{"segments": ["fcbb:0:2::1"], "weight": 1}]}]
after:
  description: The policies after the task (in check mode, what they would be).
  returned: when changed
  type: list
  elements: dict
  sample: [{"bsid": "fcbb:0:1:b::100", "segment_lists": [{"segments": ["fcbb:0:2::1"], "weight": 1}]}]
commands:
  description: The commands run (in check mode, that would run), in order.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["ip -6 route add throw fcbb:0:1:b::100/128 table 268435712 proto 202"]
gathered:
  description: The policies on the node.
  returned: when O(state=gathered)
  type: list
  elements: dict
  sample: [{"bsid": "fcbb:0:1:b::100", "segment_lists": [{"segments": ["fcbb:0:2::1"], "weight": 1}]}]
rendered:
  description: The commands that would create O(config).
  returned: when O(state=rendered)
  type: list
  elements: str
  sample: ["ip -6 route add throw fcbb:0:1:b::100/128 table 268435712 proto 202"]
parsed:
  description:
    - The policies in O(running_config). On Linux that is the output of each command of
      RV(facts.show_commands) (C(ip -j -6 route show table all proto 202),
      C(ip -j -4 route show table all proto 202) and C(ip -j sr tunsrc show)), each under a
      line C(# <command>).
  returned: when O(state=parsed)
  type: list
  elements: dict
  sample: [{"bsid": "fcbb:0:1:b::100", "segment_lists": [{"segments": ["fcbb:0:2::1"], "weight": 1}]}]
facts:
  description: What the task found out about the node's SRv6 realisation (O(dataplane=linux)).
  returned: when O(state) is merged, replaced, overridden, deleted or gathered, on O(dataplane=linux)
  type: dict
  contains:
    srv6_encap:
      description: C(seg6) (seg6 routes) or C(bpf) (the eBPF mode, see the notes).
      type: str
      sample: seg6
    show_commands:
      description:
        - The commands gathered reads, in order. Their outputs, each under a line
          C(# <command>), are what O(state=parsed) takes as O(running_config).
      type: list
      elements: str
      sample: ["ip -j -6 route show table all proto 202", "ip -j -4 route show table all proto 202",
               "ip -j sr tunsrc show"]
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "bsid": {"type": "str", "required": True},
    "segment_lists": {
        "type": "list",
        "elements": "dict",
        "options": {
            "segments": {"type": "list", "elements": "str", "required": True},
            "weight": {"type": "int"},
        },
    },
    "encap_source": {"type": "str"},
}


def main():
    resource_module.main("srv6_policy", CONFIG_OPTIONS)


if __name__ == "__main__":
    main()
