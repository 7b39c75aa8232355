#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nftables
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Per-tenant nftables tables at the edge (DSCP classes, policers, security groups)
description:
  - Manages one nftables table per tenant, C(table inet npms_<tenant>), on an edge router
    (Linux only) as a network resource module, the way the C(cisco.ios) resource modules
    manage theirs.
  - B(Classes.) Every packet forwarded from the tenant's O(config[].interfaces) is counted,
    classified by DSCP (IPv4 and IPv6) into a traffic class with a named counter
    C(class_<name>), and policed when the class has a rate (C(limit rate over ... drop);
    the dropped excess is counted in C(policed_<name>)). Traffic to the edge itself (BGP,
    neighbour discovery) is never policed.
  - B(Security groups.) When O(config[].security_groups) is not empty, forwarded traffic
    from and to the tenant's interfaces and traffic from them to the edge itself is
    dropped unless a rule allows it; replies of allowed connections pass (stateful,
    C(ct state established,related accept)). What the edge needs from the customer router
    always passes to the edge itself - BGP (tcp port 179, either side) and all ICMP and
    ICMPv6 (neighbour discovery, path MTU, ping) - so a security group cannot break the
    BGP session. Accepted packets are counted in C(sg_<group>), dropped ones in
    C(denied_outbound), C(denied_inbound) and C(denied_local).
  - B(Atomic.) One C(nft -f) transaction per task; each changed table is re-created
    whole, so a failure changes nothing. The counters of a changed table restart at zero;
    tables of other tenants are not touched.
  - B(Ownership.) galactic.npms owns the C(inet) tables named C(npms_<tenant>) that hold its
    marker counter C(npms). Other tables, and their rules, are never changed; a table of
    that name without the marker is refused, not overwritten.
  - B(Drift.) The items are read back from the rules themselves; whatever on the node
    differs from what galactic.npms writes for an item (a rule added or changed by hand)
    is listed in the item's C(drift), so the next C(merged), C(replaced) or C(overridden)
    run re-creates the table.
  - B(Rollback cookie) (the idea of C(community.general.iptables_state)). With
    O(rollback_timeout) set, the tables about to change are saved on the node and a
    detached process restores them after that many seconds unless the change is
    confirmed. The module's action plugin confirms it with a second, fresh connection
    right after the change; when that connection cannot be made (the change cut the
    controller off), the node restores the previous tables by itself and the task
    fails saying so.
options:
  config:
    description:
      - The tenants' tables.
    type: list
    elements: dict
    suboptions:
      tenant:
        description:
          - The tenant; its table is C(inet npms_<tenant>). Letters, digits, C(_), C(.) and C(-).
        type: str
        required: true
      tenant_id:
        description:
          - The tenant's number (1 to 255), recorded in the table.
        type: int
      interfaces:
        description:
          - The tenant's attachment interfaces on this edge (at least one). Required to
            create or replace a table. O(state=merged) replaces the list.
        type: list
        elements: str
      classes:
        description:
          - Traffic classes of the traffic arriving on the interfaces. O(state=merged)
            merges them by name.
        type: list
        elements: dict
        suboptions:
          name:
            description:
              - Class name; the counters are C(class_<name>) and C(policed_<name>).
            type: str
            required: true
          dscp:
            description:
              - DSCP values (0 to 63) of the class; no value belongs to two classes.
              - Empty (the default) for the class that takes everything the other classes
                do not; at most one class may be empty.
            type: list
            elements: int
          rate_mbps:
            description:
              - Police the class to this rate, in megabits per second (10^6 bit/s);
                what exceeds it is dropped. Left out, the class is only counted.
            type: float
          burst_kbytes:
            description:
              - Burst in KiB on top of the one second of rate that the kernel's byte
                limit always allows (default 0). Only with O(config[].classes[].rate_mbps).
            type: int
      security_groups:
        description:
          - Security groups. Not empty, traffic is denied unless one of their rules
            allows it (see the description); empty or left out, nothing is filtered.
            A group without rules allows nothing. O(state=merged) merges them by name.
        type: list
        elements: dict
        suboptions:
          name:
            description:
              - Group name; its counter is C(sg_<name>).
            type: str
            required: true
          interfaces:
            description:
              - The attachments the group applies to, some of O(config[].interfaces)
                (default all).
            type: list
            elements: str
          rules:
            description:
              - What the group allows.
            type: list
            elements: dict
            suboptions:
              direction:
                description:
                  - As seen from the tenant's site. C(outbound) (the default) is traffic
                    the site sends through the edge, C(inbound) traffic the edge forwards
                    to the site, C(local) traffic from the site to the edge itself.
                type: str
                choices: [outbound, inbound, local]
              protocol:
                description:
                  - C(any) (the default), C(tcp), C(udp), C(icmp) (IPv4) or C(icmpv6).
                type: str
                choices: [any, tcp, udp, icmp, icmpv6]
              ports:
                description:
                  - Destination ports (C(443)) or ranges (C("8000-8080")), for tcp and
                    udp. Empty (the default) for every port.
                type: list
                elements: raw
              sources:
                description:
                  - Source prefixes (default any). A rule with IPv4 and IPv6 prefixes
                    gives both families in O(config[].security_groups[].rules[].sources)
                    and O(config[].security_groups[].rules[].destinations) when both are set.
                type: list
                elements: str
              destinations:
                description:
                  - Destination prefixes (default any).
                type: list
                elements: str
      drift:
        description:
          - Read-only, returned by O(state=gathered); ignored here, so that gathered
            items can be given back as they are.
        type: list
        elements: str
  rollback_timeout:
    description:
      - Seconds after which the node restores the tables this task changes, unless the
        change is confirmed; C(0) (the default) for no rollback.
      - The action plugin confirms right after the change through a new connection (so
        give enough time for one, for example 30 over SSH). Without the action plugin
        (or from Nornir), confirm with O(confirm) and RV(rollback_cookie).
      - Nothing is saved or started when the task changes nothing, or in check mode.
    type: int
    default: 0
  confirm:
    description:
      - Confirm the change behind this rollback cookie (the RV(rollback_cookie) of an
        earlier task); the pending rollback is cancelled. Fails when the rollback already
        ran. Nothing else is done, and O(config) must not be given.
    type: str
extends_documentation_fragment:
  - galactic.npms.resource
notes:
  - Needs C(nft) (nftables 0.9.7 or later) on the node; the rollback also needs C(setsid),
    C(mktemp) and C(sh). The backup and cookie live in a private directory under
    C($TMPDIR) (C(/tmp)), removed when the rollback ran or was confirmed.
  - O(state=parsed) reads the output of C(nft -j list ruleset).
  - The counters of every table galactic.npms manages are returned in RV(facts).
seealso:
  - module: galactic.npms.srv6_steering
  - name: community.general.iptables_state
    description: The rollback idea this module follows.
    link: https://docs.ansible.com/ansible/latest/collections/community/general/iptables_state_module.html
"""

EXAMPLES = r"""
# Using merged
#
# Before state:
# -------------
#
# edge-ber# nft list tables
# table inet filter

- name: Classes, policers and a security group for tenant acme, with a safety net
  galactic.npms.nftables:
    config:
      - tenant: acme
        tenant_id: 1
        interfaces: [cust-acme-ber]
        classes:
          - {name: voice, dscp: [46], rate_mbps: 5, burst_kbytes: 64}
          - {name: default, dscp: [], rate_mbps: 50}
        security_groups:
          - name: web
            rules:
              - {protocol: tcp, ports: [80, 443], sources: [10.1.0.0/16], destinations: [10.2.0.0/16]}
              - {protocol: icmp}
    state: merged
    rollback_timeout: 30

# Task output
# -----------
#
# commands:
#   - table inet npms_acme
#   - delete table inet npms_acme
#   - table inet npms_acme {
#   - '    comment "galactic.npms nftables, tenant acme: edits by hand are undone"'
#   - '    counter npms { comment "npms:nftables tenant=acme tenant_id=1"; }'
#   - '    counter class_default { comment "npms class default"; }'
#   - ...
#   - '    chain classes {'
#   - '        type filter hook forward priority 10; policy accept;'
#   - '        iifname "cust-acme-ber" counter name "npms" jump classify'
#   - '    }'
#   - '    chain classify {'
#   - '        ip dscp 46 goto class_voice'
#   - '        ip6 dscp 46 goto class_voice'
#   - '        goto class_default'
#   - '    }'
#   - '    chain class_voice {'
#   - '        counter name "class_voice"'
#   - '        limit rate over 625000 bytes/second burst 65536 bytes counter name "policed_voice" drop'
#   - '    }'
#   - ...
#   - '    chain outbound {'
#   - '        ct state established,related accept'
#   - '        ct state invalid drop'
#   - '        ip saddr 10.1.0.0/16 ip daddr 10.2.0.0/16 tcp dport { 80, 443 } counter name "sg_web" accept comment "sg web 0"'
#   - '        meta l4proto icmp counter name "sg_web" accept comment "sg web 1"'
#   - '        counter name "denied_outbound" drop'
#   - '    }'
#   - ...
# rollback_cookie: /tmp/npms-nftables.k3Jd8QpZ/cookie
# rollback_confirmed: true
#
# After state:
# ------------
#
# edge-ber# nft list tables
# table inet filter
# table inet npms_acme

- name: Add a class (the others stay, merged by name)
  galactic.npms.nftables:
    config:
      - tenant: acme
        classes:
          - {name: video, dscp: [34, 36], rate_mbps: 20}
    state: merged

# Using replaced

- name: Make acme's table exactly this (no security groups, so nothing is filtered)
  galactic.npms.nftables:
    config:
      - tenant: acme
        interfaces: [cust-acme-ber]
        classes:
          - {name: default, dscp: [], rate_mbps: 100}
    state: replaced

# Using overridden

- name: Only these tenants' tables remain of those galactic.npms manages
  galactic.npms.nftables:
    config:
      - tenant: acme
        interfaces: [cust-acme-ber]
    state: overridden

# Task output
# -----------
#
# commands:
#   - ...
#   - delete table inet npms_globex
#
# After state: npms_acme; inet filter and every other table galactic.npms did not make, untouched.

# Using deleted

- name: Delete one tenant's table
  galactic.npms.nftables:
    config:
      - tenant: acme
    state: deleted

- name: Delete every table galactic.npms manages on the node (and nothing else)
  galactic.npms.nftables:
    state: deleted

# Using gathered

- name: Read the tables and their counters
  galactic.npms.nftables:
    state: gathered
  register: nft

# nft.gathered:
#   - tenant: acme
#     tenant_id: 1
#     interfaces: [cust-acme-ber]
#     classes:
#       - {name: default, dscp: [], rate_mbps: 50, burst_kbytes: 0}
#       - {name: voice, dscp: [46], rate_mbps: 5, burst_kbytes: 64}
#     security_groups:
#       - name: web
#         rules:
#           - {direction: outbound, protocol: tcp, ports: [80, 443], sources: [10.1.0.0/16], destinations: [10.2.0.0/16]}
#           - {direction: outbound, protocol: icmp, ports: [], sources: [], destinations: []}
#     drift:                 # only when the table was edited by hand
#       - "chain outbound: extra rule 3 `tcp dport 22 accept`"
# nft.facts.nftables_counters.acme.class_voice: {packets: 1042, bytes: 166720}

# Using rendered

- name: The nft script that would create a table, without touching the node
  galactic.npms.nftables:
    config:
      - tenant: acme
        interfaces: [cust-acme-ber]
        classes: [{name: default, rate_mbps: 10}]
    state: rendered

# Using parsed

- name: Read `nft -j list ruleset` output taken elsewhere
  galactic.npms.nftables:
    running_config: "{{ lookup('ansible.builtin.file', 'ruleset.json') }}"
    state: parsed

# Confirming by hand (the action plugin does this by itself)

- name: Confirm a change made with rollback_timeout (e.g. by a Nornir run)
  galactic.npms.nftables:
    confirm: /tmp/npms-nftables.k3Jd8QpZ/cookie
"""

RETURN = r"""
before:
  description: The tables galactic.npms managed on the node before the task.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample:
    - tenant: acme
      interfaces: [cust-acme-ber]
      classes: [{name: default, dscp: [], rate_mbps: 50, burst_kbytes: 0}]
      security_groups: []
after:
  description: The tables after the task (in check mode, the predicted ones).
  returned: when changed
  type: list
  elements: dict
commands:
  description: The nft script of the transaction, one line per element (in check mode, what would run).
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample:
    - table inet npms_acme
    - delete table inet npms_acme
    - table inet npms_acme {
gathered:
  description: The tables on the node, for O(state=gathered); C(drift) lists hand edits.
  returned: when O(state=gathered)
  type: list
  elements: dict
rendered:
  description: The nft script that would create O(config), for O(state=rendered).
  returned: when O(state=rendered)
  type: list
  elements: str
parsed:
  description: The tables read from O(running_config), for O(state=parsed).
  returned: when O(state=parsed)
  type: list
  elements: dict
facts:
  description:
    - C(nftables_counters), the named counters of every table galactic.npms manages, by
      tenant and counter (after the change; in check mode, before it).
  returned: when the node was read and holds a table
  type: dict
  sample:
    nftables_counters:
      acme:
        npms: {packets: 2210, bytes: 330120}
        class_voice: {packets: 1042, bytes: 166720}
        policed_voice: {packets: 12, bytes: 17640}
rollback_cookie:
  description:
    - The cookie of the pending rollback; give it to O(confirm) to keep the change.
      The action plugin confirms it itself.
  returned: when O(rollback_timeout) is set and the task changed the node
  type: str
  sample: /tmp/npms-nftables.k3Jd8QpZ/cookie
rollback_confirmed:
  description:
    - Set by the action plugin when a rollback was armed; C(false) means the change
      could not be confirmed and the node restores (or restored) the previous tables.
  returned: when a rollback was armed
  type: bool
confirmed:
  description: The cookie confirmed, for O(confirm).
  returned: when O(confirm) is given
  type: str
rolled_back:
  description: On failure, whether the node was left as before (an nft transaction is all or nothing).
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.galactic.npms.plugins.module_utils import resource_module
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources import base
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.nftables import confirm_rollback
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.registry import build
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import CommandError, LocalRunner

RULE_OPTIONS = {
    "direction": {"type": "str", "choices": ["outbound", "inbound", "local"]},
    "protocol": {"type": "str", "choices": ["any", "tcp", "udp", "icmp", "icmpv6"]},
    "ports": {"type": "list", "elements": "raw"},
    "sources": {"type": "list", "elements": "str"},
    "destinations": {"type": "list", "elements": "str"},
}
CONFIG_OPTIONS = {
    "tenant": {"type": "str", "required": True},
    "tenant_id": {"type": "int"},
    "interfaces": {"type": "list", "elements": "str"},
    "classes": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "dscp": {"type": "list", "elements": "int"},
            "rate_mbps": {"type": "float"},
            "burst_kbytes": {"type": "int"},
        },
    },
    "security_groups": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "interfaces": {"type": "list", "elements": "str"},
            "rules": {"type": "list", "elements": "dict", "options": RULE_OPTIONS},
        },
    },
    "drift": {"type": "list", "elements": "str"},
}
EXTRA_OPTIONS = {
    "rollback_timeout": {"type": "int", "default": 0},
    "confirm": {"type": "str"},
}
MAX_ROLLBACK_TIMEOUT = 3600


def main():
    module = AnsibleModule(
        argument_spec=resource_module.argument_spec(CONFIG_OPTIONS, dataplane=False, extra=EXTRA_OPTIONS),
        required_if=[("state", "parsed", ("running_config",)), ("state", "rendered", ("config",))],
        mutually_exclusive=[("confirm", "config"), ("confirm", "running_config")],
        supports_check_mode=True,
    )
    params = module.params
    runner = LocalRunner()
    if params["confirm"]:
        try:
            if not module.check_mode:
                confirm_rollback(runner, params["confirm"])
        except base.ResourceError as exc:
            module.fail_json(msg=str(exc))
        module.exit_json(changed=True, confirmed=params["confirm"])
    if not 0 <= params["rollback_timeout"] <= MAX_ROLLBACK_TIMEOUT:
        module.fail_json(msg=f"nftables: rollback_timeout: {params['rollback_timeout']} is out of range 0..{MAX_ROLLBACK_TIMEOUT}")
    try:
        resource = build("nftables", "linux", runner)
        resource.rollback_timeout = params["rollback_timeout"]
        config = resource_module._clean(params["config"])  # pylint: disable=protected-access
        result = base.run(resource, config, params["state"], module.check_mode, params["running_config"])
    except base.ResourceError as exc:
        module.fail_json(msg=str(exc), rolled_back=exc.rolled_back)
    except CommandError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc)
    out = result.to_dict()
    for warning in out.pop("warnings", []):
        module.warn(warning)
    if module._diff and result.diff:  # pylint: disable=protected-access
        out["diff"] = result.diff
    if resource.rollback_cookie:
        out["rollback_cookie"] = resource.rollback_cookie
    module.exit_json(**out)


if __name__ == "__main__":
    main()
