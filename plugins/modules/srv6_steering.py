#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: srv6_steering
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Steer a tenant's traffic into SRv6 policies by destination and traffic class (DSCP)
description:
  - Manages steering entries. An entry steers the packets of one traffic class of one
    tenant (the DSCP values of the class, arriving on the tenant's ingress interfaces)
    towards one destination prefix into the SR policy with binding SID O(config[].bsid)
    (M(galactic.npms.srv6_policy)).
  - Classes are told apart by the mark C(tenant_id << 8 | class_id + 1), the same on
    every node and dataplane.
  - On O(dataplane=linux), the nftables table C(inet npms_steering) marks packets in a
    C(prerouting) chain at priority C(mangle), classes with DSCP values first, then each
    tenant's default class (the class without DSCP values, which takes the values no other
    class of the tenant claims), then the rest of the tenant's packets (mark C(tenant_id << 8));
    the whole table is replaced in one C(nft -f) transaction whenever it changes.
  - Then, per entry, C(ip rule add pref <P> fwmark <mark>/0xffff to <prefix> lookup <policy table> proto 202)
    where P is 10000 plus the prefix's maximum length minus its length, so that longer
    prefixes are tried first; and per tenant C(ip rule add pref 20000 fwmark <tenant_id << 8>/0xff00 prohibit proto 202)
    for IPv4 and IPv6, so that a tenant's packet that no entry steers is refused rather
    than routed by the main table. That keeps tenants with overlapping prefixes apart.
  - The kernel looks up the outer IPv6 header of a packet it has just encapsulated with
    the packet's mark still set, so per tenant two more IPv6 rules at priority 19999,
    C(fwmark <tenant_id << 8>/0xff00 ipproto 4 lookup main) and the same for C(ipproto 41),
    let the encapsulated IPv4 and IPv6 packets through to the core. So that a tenant
    cannot use them to reach the core directly, the nft table drops IPv6 packets that
    arrive on a tenant interface already carrying IPv4 or IPv6 (protocols 4 and 41).
  - Only rules with protocol 202 and the C(npms_steering) table are read, changed or deleted.
  - On O(dataplane=vpp), steering uses VPP classifier tables and C(sr_steering_add_del).
options:
  config:
    description:
      - The steering entries. The key of an entry is O(config[].tenant),
        O(config[].traffic_class) and O(config[].prefix).
      - The class fields (O(config[].class_id), O(config[].dscp),
        O(config[].ingress_interfaces)) must be the same in every entry of a class, and an
        interface belongs to one tenant.
    type: list
    elements: dict
    suboptions:
      tenant:
        description:
          - Tenant name.
        type: str
        required: true
      tenant_id:
        description:
          - Tenant number, 1 to 255, one per tenant. Required to create or replace an entry.
        type: int
      traffic_class:
        description:
          - Traffic class name.
        type: str
        required: true
      class_id:
        description:
          - Class number within the tenant, 0 to 254. Required to create or replace an entry.
        type: int
      dscp:
        description:
          - DSCP values (0 to 63) of the class. Empty or left out for the tenant's default
            class (at most one per tenant).
        type: list
        elements: int
      ingress_interfaces:
        description:
          - Interfaces the tenant's traffic arrives on. Required to create or replace an entry.
        type: list
        elements: str
      prefix:
        description:
          - Destination prefix, IPv4 or IPv6.
        type: str
        required: true
      bsid:
        description:
          - Binding SID of the policy to steer into. Required to create or replace an entry.
        type: str
extends_documentation_fragment:
  - galactic.npms.resource
  - galactic.npms.resource.DATAPLANE
"""

EXAMPLES = r"""
# Before state (Linux):
# -------------
# $ ip rule show; nft list table inet npms_steering
# 0:      from all lookup local
# 32766:  from all lookup main
# 32767:  from all lookup default
# Error: No such file or directory

- name: Voice over one policy, everything else over another
  galactic.npms.srv6_steering:
    config:
      - tenant: shop
        tenant_id: 1
        traffic_class: voice
        class_id: 0
        dscp: [46]
        ingress_interfaces: [cust0]
        prefix: 10.2.0.0/24
        bsid: fcbb:0:1:b::100
      - tenant: shop
        tenant_id: 1
        traffic_class: default
        class_id: 1
        ingress_interfaces: [cust0]
        prefix: 10.2.0.0/24
        bsid: fcbb:0:1:b::101
    state: merged

# Commands:
# ---------
# ip -4 rule add pref 10008 fwmark 0x101/0xffff to 10.2.0.0/24 lookup 268435712 proto 202
# ip -4 rule add pref 10008 fwmark 0x102/0xffff to 10.2.0.0/24 lookup 268435713 proto 202
# ip -4 rule add pref 20000 fwmark 0x100/0xff00 prohibit proto 202
# ip -6 rule add pref 19999 fwmark 0x100/0xff00 ipproto 4 lookup main proto 202
# ip -6 rule add pref 19999 fwmark 0x100/0xff00 ipproto 41 lookup main proto 202
# ip -6 rule add pref 20000 fwmark 0x100/0xff00 prohibit proto 202
# nft -f - <<'EOF'
# table inet npms_steering {}
# delete table inet npms_steering
# table inet npms_steering {
#   chain prerouting {
#     type filter hook prerouting priority mangle; policy accept;
#     iifname { "cust0" } meta nfproto ipv6 meta l4proto { 4, 41 } drop comment "shop"
#     iifname { "cust0" } ip dscp { 46 } meta mark set 0x00000101 accept comment "shop/voice"
#     iifname { "cust0" } ip6 dscp { 46 } meta mark set 0x00000101 accept comment "shop/voice"
#     iifname { "cust0" } meta mark set 0x00000102 accept comment "shop/default"
#     iifname { "cust0" } meta mark set 0x00000100 accept comment "shop"
#   }
# }
# EOF
#
# After state:
# ------------
# $ ip rule show
# 0:      from all lookup local
# 10008:  from all to 10.2.0.0/24 fwmark 0x101/0xffff lookup 268435712 proto 202
# 10008:  from all to 10.2.0.0/24 fwmark 0x102/0xffff lookup 268435713 proto 202
# 20000:  from all fwmark 0x100/0xff00 prohibit proto 202
# 32766:  from all lookup main
# 32767:  from all lookup default
# $ ip -6 rule show
# 0:      from all lookup local
# 19999:  from all fwmark 0x100/0xff00 ipproto ipencap lookup main proto 202
# 19999:  from all fwmark 0x100/0xff00 ipproto ipv6 lookup main proto 202
# 20000:  from all fwmark 0x100/0xff00 prohibit proto 202
# 32766:  from all lookup main

- name: Stop steering the tenant (its rules and classification go, other rules stay)
  galactic.npms.srv6_steering:
    config:
      - {tenant: shop, traffic_class: voice, prefix: 10.2.0.0/24}
      - {tenant: shop, traffic_class: default, prefix: 10.2.0.0/24}
    state: deleted

- name: Parse saved output of the commands gathered runs
  galactic.npms.srv6_steering:
    running_config: |
      # ip -j -4 rule show
      {{ rules4.stdout }}
      # ip -j -6 rule show
      {{ rules6.stdout }}
      # nft -j -n list table inet npms_steering
      {{ nft.stdout }}
      # ip -j -6 route show table all proto 202
      {{ routes.stdout }}
    state: parsed
"""

RETURN = r"""
before:
  description:
    - The steering entries npms managed on the node before the task.
    - An entry whose rules are not all as npms makes them has a field C(incomplete) saying
      what is wrong; merged, replaced and overridden repair it.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample: [{"tenant": "shop", "tenant_id": 1, "traffic_class": "voice", "class_id": 0, "dscp": [46],
            "ingress_interfaces": ["cust0"], "prefix": "10.2.0.0/24", "bsid": "fcbb:0:1:b::100"}]
after:
  description: The steering entries after the task (in check mode, what they would be).
  returned: when changed
  type: list
  elements: dict
  sample: [{"tenant": "shop", "tenant_id": 1, "traffic_class": "voice", "class_id": 0, "dscp": [46],
            "ingress_interfaces": ["cust0"], "prefix": "10.2.0.0/24", "bsid": "fcbb:0:1:b::100"}]
commands:
  description: The commands run (in check mode, that would run), in order; C(nft -f -) shows its input as a here-document.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["ip -4 rule add pref 10008 fwmark 0x101/0xffff to 10.2.0.0/24 lookup 268435712 proto 202"]
gathered:
  description: The steering entries on the node.
  returned: when O(state=gathered)
  type: list
  elements: dict
  sample: [{"tenant": "shop", "tenant_id": 1, "traffic_class": "voice", "class_id": 0, "dscp": [46],
            "ingress_interfaces": ["cust0"], "prefix": "10.2.0.0/24", "bsid": "fcbb:0:1:b::100"}]
rendered:
  description: The commands that would create O(config).
  returned: when O(state=rendered)
  type: list
  elements: str
  sample: ["ip -4 rule add pref 10008 fwmark 0x101/0xffff to 10.2.0.0/24 lookup 268435712 proto 202"]
parsed:
  description:
    - The steering entries in O(running_config). On Linux that is the output of
      C(ip -j -4 rule show), C(ip -j -6 rule show), C(nft -j -n list table inet npms_steering)
      and C(ip -j -6 route show table all proto 202) (for the policies' BSIDs), each under a
      line C(# <command>).
  returned: when O(state=parsed)
  type: list
  elements: dict
  sample: [{"tenant": "shop", "tenant_id": 1, "traffic_class": "voice", "class_id": 0, "dscp": [46],
            "ingress_interfaces": ["cust0"], "prefix": "10.2.0.0/24", "bsid": "fcbb:0:1:b::100"}]
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "tenant": {"type": "str", "required": True},
    "tenant_id": {"type": "int"},
    "traffic_class": {"type": "str", "required": True},
    "class_id": {"type": "int"},
    "dscp": {"type": "list", "elements": "int"},
    "ingress_interfaces": {"type": "list", "elements": "str"},
    "prefix": {"type": "str", "required": True},
    "bsid": {"type": "str"},
}


def main():
    resource_module.main("srv6_steering", CONFIG_OPTIONS)


if __name__ == "__main__":
    main()
