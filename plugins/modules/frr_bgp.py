#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: frr_bgp
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Per-tenant BGP with FRR, for reachability only
description:
  - Manages one BGP instance per tenant in FRR as a network resource module. On an edge
    each tenant gets a BGP I(view) in its ASN (C(router bgp <asn> view <tenant>)); a view
    keeps its own table, so tenants with overlapping prefixes never meet, and FRR installs
    nothing it selects into the kernel. Customer routes are learned for the controller,
    which decides forwarding itself (SRv6 steering). On a customer router the item is the
    default instance (O(config[].view=false)), which installs what it learns, so that
    return traffic reaches the edge.
  - Neighbours are customer routers over IPv4 or IPv6 (the address family of the address)
    or, given an interface name, over IPv6 link-local carrying both (unnumbered, RFC 5549
    extended next hop).
  - O(config[].accept) becomes the prefix lists C(npms-<tenant>-in-v4)/C(-v6) and the
    route map C(npms-<tenant>-in); O(config[].advertise) becomes C(network) statements and
    C(npms-<tenant>-out). Inbound soft-reconfiguration keeps what was received, so
    O(collect_routes) can report every announcement the guard dropped and why.
  - Changes are applied with FRR's C(frr-reload.py) (one reload per task; a failed reload
    restores the previous configuration). C(--diff) shows the owned FRR configuration
    before and after. galactic.npms owns every BGP view, the C(npms-*) prefix lists and
    route maps, and the default instance only when its neighbours use an
    C(npms-<tenant>-in) route map.
  - The running configuration is read with a TextFSM template (FRR has no JSON for it);
    sessions and routes with C(show bgp ... json).
options:
  config:
    description:
      - One item per tenant.
    type: list
    elements: dict
    suboptions:
      tenant:
        description:
          - Tenant name (the view's name; the item's key).
        type: str
        required: true
      asn:
        description:
          - The instance's AS number (on an edge, the tenant's ASN; on a customer router, the customer's).
        type: int
      view:
        description:
          - C(true) (default) for a BGP view (edges), C(false) for the default instance (customer routers).
        type: bool
      router_id:
        description:
          - IPv4 router id.
        type: str
      neighbors:
        description:
          - BGP neighbours.
        type: list
        elements: dict
        suboptions:
          peer:
            description:
              - IPv4 or IPv6 address, or an interface name for an unnumbered session.
            type: str
            required: true
          remote_as:
            description:
              - The neighbour's AS number, or C(external) / C(internal).
            type: raw
            required: true
          address_families:
            description:
              - C(ipv4) and/or C(ipv6). Default, the address's family; both for an unnumbered session.
            type: list
            elements: str
          description:
            description:
              - Free text shown by FRR.
            type: str
      accept:
        description:
          - What the neighbours may announce; anything else is filtered (and reported).
        type: list
        elements: dict
        suboptions:
          prefix:
            description:
              - An allowed prefix.
            type: str
            required: true
          le:
            description:
              - The longest prefix length accepted within it (default, exactly the prefix).
            type: int
      advertise:
        description:
          - Prefixes announced to the neighbours (on an edge, the tenant's prefixes behind its other edges).
        type: list
        elements: str
  collect_routes:
    description:
      - Also return, per tenant, the sessions and the learned and filtered prefixes in
        RV(facts.bgp) (several C(show bgp ... json) commands).
    type: bool
    default: false
  frr_pathspace:
    description:
      - FRR's path space (C(vtysh -N)). Default, the node's network namespace name when
        FRR runs with one there (C(/run/frr/<name>) exists), else none.
    type: str
extends_documentation_fragment:
  - galactic.npms.resource
notes:
  - Diff mode shows FRR configuration text rather than JSON for this module.
requirements:
  - FRR with C(frr-reload.py) (Debian package frr-pythontools) and the Python package textfsm on the target.
"""

EXAMPLES = r"""
- name: Tenant acme's view on edge-ber, its customer router unnumbered
  galactic.npms.frr_bgp:
    config:
      - tenant: acme
        asn: 65001
        router_id: 100.64.0.7
        neighbors:
          - peer: cust-acme-ber
            remote_as: 64511
        accept:
          - {prefix: 10.10.1.0/24, le: 24}
          - {prefix: "2001:db8:1::/48", le: 48}
        advertise: [10.10.2.0/24, 10.10.3.0/24]
    state: replaced

- name: Collect what the customers announce (and what was filtered)
  galactic.npms.frr_bgp:
    state: gathered
    collect_routes: true
  register: bgp

- name: The customer router's own BGP (the default instance)
  galactic.npms.frr_bgp:
    config:
      - tenant: acme
        view: false
        asn: 64511
        router_id: 100.64.1.1
        neighbors: [{peer: edge-ber, remote_as: 65001}]
        accept: [{prefix: 10.10.0.0/16, le: 24}]
        advertise: [10.10.1.0/24]
    state: overridden
"""

RETURN = r"""
before:
  description: The tenants' BGP instances galactic.npms managed before the task.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
after:
  description: The instances after the task (in check mode, what they would be).
  returned: when changed
  type: list
  elements: dict
commands:
  description: The FRR configuration of each change (C(no router bgp ...) for a deletion).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["router bgp 65001 view acme", " bgp router-id 100.64.0.7"]
gathered:
  description: The instances on the node.
  returned: when O(state=gathered)
  type: list
  elements: dict
rendered:
  description: The FRR configuration that would create O(config).
  returned: when O(state=rendered)
  type: list
  elements: str
parsed:
  description: The instances in O(running_config) (the output of C(show running-config)).
  returned: when O(state=parsed)
  type: list
  elements: dict
facts:
  description:
    - With O(collect_routes), C(bgp) maps each tenant to its C(sessions) (peer, state,
      established), C(learned) (prefix, peer, as_path; what passed the guard) and
      C(filtered) (prefix, peer, reason).
  returned: when O(collect_routes)
  type: dict
  contains:
    bgp:
      description: Per tenant, C(sessions), C(learned) and C(filtered).
      type: dict
      returned: when O(collect_routes)
  sample:
    bgp:
      acme:
        sessions:
          - peer: cust-acme-ber
            state: Established
            established: true
        learned:
          - prefix: 10.10.1.0/24
            peer: 192.0.2.1
            as_path: "64511"
        filtered:
          - prefix: 10.99.0.0/16
            peer: cust-acme-ber
            reason: outside the tenant's allowed prefixes (10.10.1.0/24)
rolled_back:
  description: On failure, whether the previous configuration was restored.
  returned: failure
  type: bool
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "tenant": {"type": "str", "required": True},
    "asn": {"type": "int"},
    "view": {"type": "bool"},
    "router_id": {"type": "str"},
    "neighbors": {
        "type": "list",
        "elements": "dict",
        "options": {
            "peer": {"type": "str", "required": True},
            "remote_as": {"type": "raw", "required": True},
            "address_families": {"type": "list", "elements": "str"},
            "description": {"type": "str"},
        },
    },
    "accept": {
        "type": "list",
        "elements": "dict",
        "options": {"prefix": {"type": "str", "required": True}, "le": {"type": "int"}},
    },
    "advertise": {"type": "list", "elements": "str"},
}
EXTRA = {
    "collect_routes": {"type": "bool", "default": False},
    "frr_pathspace": {"type": "str"},
}


def main():
    resource_module.main("frr_bgp", CONFIG_OPTIONS, dataplane=False, extra=EXTRA,
                         build_options={"pathspace": "frr_pathspace", "collect_routes": "collect_routes"})


if __name__ == "__main__":
    main()
