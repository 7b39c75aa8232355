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

- name: Read SIDs from saved output of the command gathered runs
  galactic.npms.srv6_localsid:
    running_config: "{{ lookup('ansible.builtin.file', 'routes.json') }}"  # ip -j -6 route show table main proto 202
    state: parsed

- name: Delete every SID npms made (others stay)
  galactic.npms.srv6_localsid:
    state: deleted
"""

RETURN = r"""
before:
  description: The SIDs npms managed on the node before the task.
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
  description: The SIDs in O(running_config), the JSON of C(ip -j -6 route show table main proto 202) on Linux.
  returned: when O(state=parsed)
  type: list
  elements: dict
  sample: [{"sid": "fcbb:0:1::1", "behavior": "End"}]
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
