#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: srv6_localsid
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Manage SRv6 local SIDs (End, End.X, End.DX4, End.DX6, End.DT4, End.DT6)
description:
  - Manages the SRv6 local SIDs of a node, the endpoint behaviours that the node runs for
    packets whose active segment is one of its SIDs.
  - On O(dataplane=linux) a SID is a C(seg6local) route in the main table with the npms
    route protocol (C(proto 202)), for example
    C(ip -6 route add fcbb:0:1::d4/128 proto 202 encap seg6local action End.DX4 nh4 10.1.0.2 dev cust0).
    Only routes with that protocol are read, changed or deleted; SIDs that other tools
    made are never touched. End.DT4 needs a VRF device, which the Linux dataplane does not
    use, and is refused there before anything changes.
  - The kernel turns an IPv6 route on C(lo) into a reject route, so on Linux End and
    End.DT6 SIDs (which name no interface) are put on the node's first interface that is
    up and not a loopback, chosen when the task runs (O(state=rendered) shows
    C(<resolved at apply>)). The behaviours do not depend on it, but the SID goes away if
    that interface is deleted (the next run puts it back).
  - On O(dataplane=vpp) a SID is a VPP SR local SID (C(sr_localsid_add_del)).
  - On O(dataplane=linux) the module uses the eBPF mode instead of C(seg6local) routes
    when the target's kernel was built without C(CONFIG_IPV6_SEG6_LWTUNNEL), or when the
    environment variable C(NPMS_SRV6_ENCAP=bpf) is set for the task (C(environment:));
    C(NPMS_SRV6_ENCAP=seg6) forces the routes. RV(facts.srv6_encap) says which one ran.
    See the notes.
options:
  config:
    description:
      - The local SIDs.
    type: list
    elements: dict
    suboptions:
      sid:
        description:
          - The SID, an IPv6 address (the item's key).
        type: str
        required: true
      behavior:
        description:
          - The endpoint behaviour. When left out, C(End).
          - C(End.X) and C(End.DX6) need O(config[].nexthop) (IPv6) and O(config[].interface);
            C(End.DX4) needs an IPv4 O(config[].nexthop) and O(config[].interface);
            C(End.DT6) and C(End.DT4) need O(config[].table).
          - The Linux dataplane supports End, End.X, End.DX4, End.DX6 and End.DT6.
        type: str
        choices: [End, End.X, End.DX4, End.DX6, End.DT4, End.DT6]
      nexthop:
        description:
          - Next hop of the decapsulated (DX) or forwarded (X) packet.
        type: str
      interface:
        description:
          - Interface towards O(config[].nexthop).
        type: str
      table:
        description:
          - Table to look the inner packet up in (DT behaviours).
        type: int
notes:
  - "eBPF mode (Linux): a kernel without SRv6 lightweight tunnels still processes a Segment
    Routing Header addressed to one of its local addresses: with segments left it does
    End, with none left it decapsulates and receives the inner packet again. So a SID is a
    C(local) route, C(ip -6 route add local <sid>/128 dev lo table local proto 202), and
    C(seg6_enabled) is turned on for every interface (the kernel drops SRv6 packets
    arriving where it is off; O(state=gathered) reports an interface where it is off)."
  - "eBPF mode, End.X, End.DX4, End.DX6 and End.DT6: the SID's packets are marked by the
    nftables map C(inet npms_sids sids) (SID to mark, 28 bits of a hash of the SID plus
    C(0x20000000)); the mark survives the decapsulation, and an ip rule (priority 9000,
    End.X 9001, protocol 202) sends marked packets to the SID's own table, which holds
    C(default via <nexthop> dev <interface>), or, for End.DT6, to O(config[].table). The
    table C(inet npms_sids) is deleted with the last SID that needs it. Two such SIDs whose
    marks collide are refused."
  - "eBPF mode: a SID whose route, rule or map element is missing is returned with a field
    C(incomplete) saying what is wrong; O(state=merged), O(state=replaced) and O(state=overridden) repair it."
extends_documentation_fragment:
  - galactic.npms.resource
  - galactic.npms.resource.DATAPLANE
"""

EXAMPLES = r"""
# Before state (Linux):
# -------------
# $ ip -6 route show table main proto 202
# (nothing)

- name: Merge local SIDs
  galactic.npms.srv6_localsid:
    config:
      - sid: fcbb:0:1::1
        behavior: End
      - sid: fcbb:0:1::d4
        behavior: End.DX4
        nexthop: 10.1.0.2
        interface: cust0
    state: merged

# Commands (returned in "commands"):
# ----------------------------------
# ip -6 route add fcbb:0:1::1/128 proto 202 encap seg6local action End dev core0
# ip -6 route add fcbb:0:1::d4/128 proto 202 encap seg6local action End.DX4 nh4 10.1.0.2 dev cust0
#
# After state:
# ------------
# $ ip -6 route show table main proto 202
# fcbb:0:1::1  encap seg6local action End dev core0 metric 1024 pref medium
# fcbb:0:1::d4  encap seg6local action End.DX4 nh4 10.1.0.2 dev cust0 metric 1024 pref medium

- name: Make the SIDs exactly these (other npms SIDs are deleted)
  galactic.npms.srv6_localsid:
    config:
      - sid: fcbb:0:1::1
    state: overridden

# Commands:
# ---------
# ip -6 route del fcbb:0:1::d4/128 table main proto 202

- name: Read the SIDs npms manages
  galactic.npms.srv6_localsid:
    state: gathered
  register: sids

# sids.gathered:
# - sid: fcbb:0:1::1
#   behavior: End

- name: Commands for a SID, without touching the node
  galactic.npms.srv6_localsid:
    config:
      - sid: fcbb:0:1::6
        behavior: End.DT6
        table: 100
    state: rendered

# rendered:
# - ip -6 route add fcbb:0:1::6/128 proto 202 encap seg6local action End.DT6 table 100 dev '<resolved at apply>'

# gathered also returns the commands it reads (facts.show_commands): on a seg6 node
# ip -j -6 route show table main proto 202; in eBPF mode also the ip rules, the
# nftables map and the seg6_enabled sysctls.
- name: Save the outputs of the commands gathered reads, each under its '# <command>' line
  ansible.builtin.shell: |
    {% for c in sids.facts.show_commands %}
    echo '# {{ c }}'; {{ c }} 2>/dev/null || true
    {% endfor %}
  register: saved
  changed_when: false

- name: Read SIDs from that saved output (on any host, later)
  galactic.npms.srv6_localsid:
    running_config: "{{ saved.stdout }}"
    state: parsed

- name: A SID on a kernel without seg6local routes (eBPF mode)
  galactic.npms.srv6_localsid:
    config:
      - sid: fcbb:0:1::d4
        behavior: End.DX4
        nexthop: 10.1.0.2
        interface: cust0
  environment:
    NPMS_SRV6_ENCAP: bpf  # only to force it: such a kernel gets it anyway

# Commands (<mark>: 0x20000000 plus 28 bits of a hash of the SID; <table>: that number in decimal):
# sh -c 'for f in /proc/sys/net/ipv6/conf/*/seg6_enabled; do echo 1 > "$f"; done'
# nft -f - <<'EOF'
# table inet npms_sids { map sids { type ipv6_addr : mark; } chain prerouting { ... } }
# ...
# EOF
# nft add element inet npms_sids sids '{ fcbb:0:1::d4 : <mark> }'
# ip -4 route replace default via 10.1.0.2 dev cust0 table <table> proto 202
# ip -4 rule add pref 9000 fwmark <mark> lookup <table> proto 202
# ip -6 route add local fcbb:0:1::d4/128 dev lo table local proto 202

- name: Delete every SID npms made (others stay)
  galactic.npms.srv6_localsid:
    state: deleted
"""

RETURN = r"""
before:
  description:
    - The SIDs npms managed on the node before the task.
    - In eBPF mode a SID whose parts are not all there has a field C(incomplete) saying what
      is wrong (see the notes).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample: [{"sid": "fcbb:0:1::1", "behavior": "End"}]
after:
  description: The SIDs after the task (in check mode, what they would be).
  returned: when changed
  type: list
  elements: dict
  sample: [{"sid": "fcbb:0:1::1", "behavior": "End"}]
commands:
  description: The commands run (in check mode, that would run), in order.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["ip -6 route add fcbb:0:1::1/128 proto 202 encap seg6local action End dev core0"]
gathered:
  description: The SIDs on the node.
  returned: when O(state=gathered)
  type: list
  elements: dict
  sample: [{"sid": "fcbb:0:1::1", "behavior": "End"}]
rendered:
  description: The commands that would create O(config).
  returned: when O(state=rendered)
  type: list
  elements: str
  sample: ["ip -6 route add fcbb:0:1::1/128 proto 202 encap seg6local action End dev core0"]
parsed:
  description:
    - The SIDs in O(running_config). On Linux that is the output of each command of
      RV(facts.show_commands), under a line C(# <command>); in seg6 mode, whose only command is
      C(ip -j -6 route show table main proto 202), its bare JSON is accepted too.
  returned: when O(state=parsed)
  type: list
  elements: dict
  sample: [{"sid": "fcbb:0:1::1", "behavior": "End"}]
facts:
  description: What the task found out about the node's SRv6 realisation (O(dataplane=linux)).
  returned: when O(state) is merged, replaced, overridden, deleted or gathered, on O(dataplane=linux)
  type: dict
  contains:
    srv6_encap:
      description: C(seg6) (seg6local routes) or C(bpf) (the eBPF mode, see the notes).
      type: str
      sample: bpf
    show_commands:
      description:
        - The commands gathered reads, in order. Their outputs, each under a line
          C(# <command>), are what O(state=parsed) takes as O(running_config).
      type: list
      elements: str
      sample: ["ip -j -6 route show table all proto 202", "ip -j -4 route show table all proto 202",
               "ip -j -4 rule show", "ip -j -6 rule show", "nft -j list map inet npms_sids sids",
               "sysctl -a -r seg6_enabled"]
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "sid": {"type": "str", "required": True},
    "behavior": {"type": "str", "choices": ["End", "End.X", "End.DX4", "End.DX6", "End.DT4", "End.DT6"]},
    "nexthop": {"type": "str"},
    "interface": {"type": "str"},
    "table": {"type": "int"},
}


def main():
    resource_module.main("srv6_localsid", CONFIG_OPTIONS)


if __name__ == "__main__":
    main()
