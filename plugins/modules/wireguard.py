#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wireguard
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: WireGuard interfaces and peers, with keys generated on the node
description:
  - Manages WireGuard interfaces (one per tenant and tunnel in the galactic.npms overlay)
    and their peers as a network resource module, the way the C(cisco.ios) resource
    modules manage theirs.
  - The private key of an interface is generated on the node (C(umask 077; wg genkey))
    into C(/etc/npms/wireguard/<name>.key) (mode 0600, directory 0700) and handed to the
    interface by path. It never leaves the node and no option takes one; the interface's
    public key is returned in RV(facts). A key file that outlives its interface (after a
    reboot) is reused, so the interface comes back with the key its peers know. Keys are
    rotated with M(galactic.npms.wireguard_key).
  - "On Linux the interface is created by the kernel (C(ip link add <name> type wireguard))
    or, where the kernel has no WireGuard, by C(wireguard-go <name>); then configured with
    C(wg set) and C(ip). galactic.npms owns the interfaces whose link alias is
    C(npms-wireguard): C(deleted) and C(overridden) never touch other WireGuard interfaces,
    and an interface of the same name that galactic.npms does not own is never adopted."
  - On VPP (O(dataplane=vpp)) the interface and peers are made through VPP's wireguard plugin API.
options:
  config:
    description:
      - The WireGuard interfaces.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Interface name (at most 15 characters). With wireguard-go the name must be
            unique across all network namespaces of the machine, because its control
            socket C(/var/run/wireguard/<name>.sock) is shared by all of them.
        type: str
        required: true
      listen_port:
        description:
          - UDP port the interface listens on. Required to create or replace an interface
            (a port picked at random would differ on every run).
        type: int
      addresses:
        description:
          - Addresses of the interface with their prefix lengths (C(10.0.0.1/31),
            C(fd00::1/64)); the interface holds exactly these (no kernel-made link-local).
        type: list
        elements: str
      mtu:
        description:
          - MTU of the interface, 1280 to 9000 (default 1420 on creation).
        type: int
      peers:
        description:
          - The peers, identified by their public key. O(state=merged) merges peers by
            public key; O(state=replaced) and O(state=overridden) make the list exact.
        type: list
        elements: dict
        suboptions:
          public_key:
            description:
              - The peer's public key (base64, 44 characters), e.g. the peer node's
                RV(facts) from this module.
            type: str
            required: true
          endpoint:
            description:
              - C(address:port) or C([ipv6]:port) of the peer. Left out, the node keeps
                the endpoint it has (learned from the peer's handshakes), as WireGuard cannot
                forget an endpoint.
            type: str
          allowed_ips:
            description:
              - Prefixes the peer may send from and that are sent to it (host bits zero).
            type: list
            elements: str
          persistent_keepalive:
            description:
              - Seconds between keepalives, 0 (the default) for none.
            type: int
extends_documentation_fragment:
  - galactic.npms.resource
  - galactic.npms.resource.DATAPLANE
notes:
  - A new peer that has an endpoint and no keepalive of its own is sent one keepalive at
    once (C(wg set <if> peer <key> persistent-keepalive 1 peer <key> persistent-keepalive off),
    which leaves the configuration as it was), so the handshake starts now rather than
    with the first packet or, when the other end was configured later, after a 5-second
    retry.
  - Routes into the interface are not managed here (see C(galactic.npms.srv6_route)).
  - The Linux driver needs C(ip) (iproute2), C(wg) (wireguard-tools), and C(wireguard-go)
    where the kernel has no WireGuard.
  - O(state=parsed) reads the output of C(wg show all dump) (it holds no addresses or
    MTU); its private and preshared key columns are skipped, never returned.
seealso:
  - module: galactic.npms.wireguard_key
"""

EXAMPLES = r"""
# Using merged
#
# Before state:
# -------------
#
# edge1# wg show all
# (nothing)

- name: Create a tunnel towards a POP (the key is generated on the node)
  galactic.npms.wireguard:
    config:
      - name: wg1-b-1
        listen_port: 21001
        addresses: [10.255.0.1/31]
        peers:
          - public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
            endpoint: 192.0.2.1:21011
            allowed_ips: ["::/0", 10.255.0.0/31]
            persistent_keepalive: 25
    state: merged
  register: tunnel

# Task output
# -----------
#
# commands:
#   - ip link add wg1-b-1 type wireguard || wireguard-go wg1-b-1
#   - ip link set dev wg1-b-1 alias npms-wireguard addrgenmode none
#   - sh -c 'umask 077 && mkdir -p /etc/npms/wireguard && if [ ! -s /etc/npms/wireguard/wg1-b-1.key ]; then
#       wg genkey > /etc/npms/wireguard/wg1-b-1.key.tmp && mv -f ... ; fi && chmod 600 /etc/npms/wireguard/wg1-b-1.key'
#   - wg set wg1-b-1 listen-port 21001 private-key /etc/npms/wireguard/wg1-b-1.key
#       peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= endpoint 192.0.2.1:21011
#       allowed-ips 10.255.0.0/31,::/0 persistent-keepalive 25
#   - ip addr add 10.255.0.1/31 dev wg1-b-1
#   - ip link set dev wg1-b-1 mtu 1420 up
# facts:
#   wg1-b-1:
#     public_key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=

# After state:
# ------------
#
# edge1# wg show wg1-b-1
# interface: wg1-b-1
#   public key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
#   private key: (hidden)
#   listening port: 21001
#
# peer: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
#   endpoint: 192.0.2.1:21011
#   allowed ips: 10.255.0.0/31, ::/0
#   persistent keepalive: every 25 seconds

- name: Give the edge's public key to the POP
  galactic.npms.wireguard:
    config:
      - name: wg1-1-b
        listen_port: 21011
        peers:
          - public_key: "{{ tunnel.facts['wg1-b-1'].public_key }}"
            allowed_ips: ["::/0"]
    state: merged
  delegate_to: pop1

# Using replaced
#
# Before state: as after the merged example.

- name: Make the tunnel exactly this (other WireGuard interfaces are left alone)
  galactic.npms.wireguard:
    config:
      - name: wg1-b-1
        listen_port: 21001
        mtu: 1380
        addresses: [10.255.0.1/31]
        peers:
          - public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
            endpoint: 192.0.2.1:21011
            allowed_ips: ["::/0"]
    state: replaced

# Task output
# -----------
#
# commands:
#   - wg set wg1-b-1 peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= endpoint 192.0.2.1:21011
#       allowed-ips ::/0 persistent-keepalive off
#   - ip link set dev wg1-b-1 mtu 1380

# Using overridden
#
# Before state: wg1-b-1 and wg1-b-2 made by galactic.npms, wg-admin made by hand.

- name: Keep only wg1-b-1 of the interfaces galactic.npms manages
  galactic.npms.wireguard:
    config:
      - name: wg1-b-1
        listen_port: 21001
        addresses: [10.255.0.1/31]
    state: overridden

# Task output
# -----------
#
# commands:
#   - wg set wg1-b-1 peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= remove
#   - ip link del dev wg1-b-2
#   - rm -f /etc/npms/wireguard/wg1-b-2.key /etc/npms/wireguard/wg1-b-2.key.next
#
# After state: wg1-b-1 without peers, and wg-admin, untouched.

# Using deleted

- name: Delete one tunnel (its link, its wireguard-go process and its key files)
  galactic.npms.wireguard:
    config:
      - name: wg1-b-1
    state: deleted

- name: Delete every WireGuard interface galactic.npms made on the node (and only those)
  galactic.npms.wireguard:
    state: deleted

# Using gathered

- name: Read the interfaces and their public keys
  galactic.npms.wireguard:
    state: gathered
  register: wg

# wg.gathered:
#   - name: wg1-b-1
#     listen_port: 21001
#     mtu: 1420
#     addresses: [10.255.0.1/31]
#     peers:
#       - public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
#         endpoint: 192.0.2.1:21011
#         allowed_ips: ["10.255.0.0/31", "::/0"]
#         persistent_keepalive: 25
# wg.facts:
#   wg1-b-1: {public_key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=}

# Using rendered

- name: The commands that would create a tunnel, without touching the node
  galactic.npms.wireguard:
    config:
      - name: wg1-b-1
        listen_port: 21001
    state: rendered

# Using parsed

- name: Read `wg show all dump` output taken elsewhere (its private keys are skipped)
  galactic.npms.wireguard:
    running_config: "{{ lookup('ansible.builtin.file', 'wg-dump.txt') }}"
    state: parsed
"""

RETURN = r"""
before:
  description: The interfaces galactic.npms managed on the node before the task.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample:
    - name: wg1-b-1
      listen_port: 21001
      mtu: 1420
      addresses: [10.255.0.1/31]
      peers: []
after:
  description: The interfaces after the task (in check mode, the predicted ones).
  returned: when changed
  type: list
  elements: dict
  sample:
    - name: wg1-b-1
      listen_port: 21001
      mtu: 1420
      addresses: [10.255.0.1/31]
      peers:
        - public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
          endpoint: 192.0.2.1:21011
          allowed_ips: ["::/0"]
          persistent_keepalive: 0
commands:
  description: The commands run on the node (in check mode, those that would run). They name key files, never keys.
  returned: when O(state) is merged, replaced, overridden or deleted
  type: list
  elements: str
  sample:
    - ip link add wg1-b-1 type wireguard || wireguard-go wg1-b-1
    - wg set wg1-b-1 listen-port 21001 private-key /etc/npms/wireguard/wg1-b-1.key
gathered:
  description: The interfaces on the node, for O(state=gathered).
  returned: when O(state=gathered)
  type: list
  elements: dict
rendered:
  description: The commands that would create O(config), for O(state=rendered).
  returned: when O(state=rendered)
  type: list
  elements: str
parsed:
  description: The interfaces read from O(running_config), for O(state=parsed) (no private or preshared keys).
  returned: when O(state=parsed)
  type: list
  elements: dict
facts:
  description:
    - The public key of every interface galactic.npms manages on the node, by interface
      name (after the change; in check mode, before it). Give it to the peers.
  returned: when the node was read and holds an interface
  type: dict
  sample:
    wg1-b-1:
      public_key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
rolled_back:
  description: On failure, whether the changes already made were undone.
  returned: failure
  type: bool
"""

from ansible_collections.galactic.npms.plugins.module_utils import resource_module

CONFIG_OPTIONS = {
    "name": {"type": "str", "required": True},
    "listen_port": {"type": "int"},
    "addresses": {"type": "list", "elements": "str"},
    "mtu": {"type": "int"},
    "peers": {
        "type": "list",
        "elements": "dict",
        "options": {
            "public_key": {"type": "str", "required": True, "no_log": False},
            "endpoint": {"type": "str"},
            "allowed_ips": {"type": "list", "elements": "str"},
            "persistent_keepalive": {"type": "int"},
        },
    },
}


def main():
    resource_module.main("wireguard", CONFIG_OPTIONS)


if __name__ == "__main__":
    main()
