#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: srv6_route
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Manage routes towards other nodes' SRv6 locators
description:
  - Manages the IPv6 routes that carry SRv6 traffic towards other nodes' locators (and
    tenants' edge locators) over core links or WireGuard interfaces.
  - On O(dataplane=linux) an item is a plain route in the main table with the npms route
    protocol, C(ip -6 route add <prefix> proto 202 [via <via>] dev <interface>). Only
    routes with that protocol and no encapsulation are read, changed or deleted (SIDs are
    M(galactic.npms.srv6_localsid)'s), so routes that other tools made stay. Adding a
    route where a route of another owner exists fails and says so rather than replacing it.
  - On O(dataplane=vpp) an item is an FIB entry (C(ip_route_add_del)).
options:
  config:
    description:
      - The routes.
    type: list
    elements: dict
    suboptions:
      prefix:
        description:
          - Destination, an IPv6 prefix such as a locator (the item's key).
        type: str
        required: true
      interface:
        description:
          - Outgoing interface. Required to create or replace a route.
        type: str
      via:
        description:
          - IPv6 next hop; left out for point-to-point interfaces (WireGuard) or on-link
            destinations.
        type: str
extends_documentation_fragment:
  - galactic.npms.resource
  - galactic.npms.resource.DATAPLANE
"""

EXAMPLES = r"""
# Before state (Linux):
# -------------
# $ ip -6 route show table main proto 202
# (nothing)

- name: Routes to two POPs' locators
  galactic.npms.srv6_route:
    config:
      - prefix: fcbb:0:2::/48
        via: fe80::2
        interface: core0
      - prefix: fcbb:0:3::/48
        interface: wg-pop3
    state: merged

# Commands:
# ---------
# ip -6 route add fcbb:0:2::/48 proto 202 via fe80::2 dev core0
# ip -6 route add fcbb:0:3::/48 proto 202 dev wg-pop3
#
# After state:
# ------------
# $ ip -6 route show table main proto 202
# fcbb:0:2::/48 via fe80::2 dev core0 metric 1024 pref medium
# fcbb:0:3::/48 dev wg-pop3 metric 1024 pref medium

- name: Move a locator to another link
  galactic.npms.srv6_route:
    config:
      - prefix: fcbb:0:3::/48
        interface: core1
        via: fe80::3
    state: replaced

# Commands:
# ---------
# ip -6 route replace fcbb:0:3::/48 proto 202 via fe80::3 dev core1

- name: Delete one route
  galactic.npms.srv6_route:
    config:
      - prefix: fcbb:0:2::/48
    state: deleted

# Commands:
# ---------
# ip -6 route del fcbb:0:2::/48 table main proto 202
"""

RETURN = r"""
before:
  description: The routes npms managed on the node before the task.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample: [{"prefix": "fcbb:0:2::/48", "interface": "core0", "via": "fe80::2"}]
after:
  description: The routes after the task (in check mode, what they would be).
  returned: when changed
  type: list
  elements: dict
  sample: [{"prefix": "fcbb:0:2::/48", "interface": "core0", "via": "fe80::2"}]
commands:
  description: The commands run (in check mode, that would run), in order.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["ip -6 route add fcbb:0:2::/48 proto 202 via fe80::2 dev core0"]
gathered:
  description: The routes on the node.
  returned: when O(state=gathered)
  type: list
  elements: dict
  sample: [{"prefix": "fcbb:0:3::/48", "interface": "wg-pop3"}]
rendered:
  description: The commands that would create O(config).
  returned: when O(state=rendered)
  type: list
  elements: str
  sample: ["ip -6 route add fcbb:0:3::/48 proto 202 dev wg-pop3"]
parsed:
  description: The routes in O(running_config), the JSON of C(ip -j -6 route show table main proto 202) on Linux.
  returned: when O(state=parsed)
  type: list
  elements: dict
  sample: [{"prefix": "fcbb:0:3::/48", "interface": "wg-pop3"}]
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "prefix": {"type": "str", "required": True},
    "interface": {"type": "str"},
    "via": {"type": "str"},
}


def main():
    resource_module.main("srv6_route", CONFIG_OPTIONS)


if __name__ == "__main__":
    main()
