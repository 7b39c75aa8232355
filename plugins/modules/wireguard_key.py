#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wireguard_key
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Rotate the private key of a WireGuard interface, generated on the node
description:
  - One phase of a key rotation of a WireGuard interface that M(galactic.npms.wireguard)
    made on a Linux node. The keys are generated on the node and never leave it; only
    public keys are returned.
  - O(phase=prepare) generates the next private key, C(/etc/npms/wireguard/<name>.key.next)
    (mode 0600), unless one is already pending, and returns its public key. Running it
    again returns the same pending key.
  - O(phase=commit) switches the interface to the pending key
    (C(wg set <name> private-key <file>)) and makes it the interface's key file. Without a
    pending key nothing changes.
  - O(phase=abort) drops the pending key.
  - "Order across nodes, for an interruption of at most one handshake: prepare on the node;
    commit on the node; then at once give its peers the new public key in place of the old
    one (M(galactic.npms.wireguard) with O(galactic.npms.wireguard#module:state=replaced))."
  - "Why commit first: from the commit the node's handshakes carry the new key and its
    peers refuse them, so the node queues what it sends, while what the peers send still
    arrives (the node keeps the receiving half of the current session). When a peer is
    updated, its entry for the node is new and M(galactic.npms.wireguard) has it send a
    keepalive at once (see its notes), which starts a handshake that the node, already on
    the new key, answers; the queued packets then go out. Traffic is back within a round
    trip of the peer update and nothing is lost. Updating the peers first drops the
    node's packets from the peer update on, and after the commit the peer only retries
    its refused handshake on its 5-second rekey timer (measured in the lab with 2 s
    between the two steps: about 2.2 s of silence commit-first, 5.1 to 5.3 s peers-first
    when the peer sends the traffic)."
options:
  name:
    description:
      - The WireGuard interface (made by M(galactic.npms.wireguard)).
    type: str
    required: true
  phase:
    description:
      - C(prepare) makes the next key, C(commit) switches to it, C(abort) drops it.
    type: str
    required: true
    choices: [prepare, commit, abort]
attributes:
  check_mode:
    description: Reports what the phase would do (and its commands); generates, switches and removes nothing.
    support: full
  diff_mode:
    description: No diff; RV(public_key) and RV(commands) say what changes.
    support: none
notes:
  - Linux nodes only (kernel WireGuard or wireguard-go); needs C(wg) and C(ip).
  - In check mode O(phase=prepare) cannot show a key that is not generated yet
    (RV(public_key) is null then).
seealso:
  - module: galactic.npms.wireguard
"""

EXAMPLES = r"""
# Rotate the key of edge1's tunnel wg1-b-1 towards pop1 (whose end is wg1-1-b).

- name: Prepare the next key on the edge
  galactic.npms.wireguard_key:
    name: wg1-b-1
    phase: prepare
  register: next_key
  delegate_to: edge1

# next_key:
#   changed: true
#   public_key: 0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE=     (the pending key)
#   previous_public_key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
#   pending: true
#   commands:
#     - sh -c 'umask 077 && mkdir -p /etc/npms/wireguard && if [ ! -s /etc/npms/wireguard/wg1-b-1.key.next ];
#         then wg genkey > ... ; fi && chmod 600 /etc/npms/wireguard/wg1-b-1.key.next'

- name: Switch the edge to it
  galactic.npms.wireguard_key:
    name: wg1-b-1
    phase: commit
  delegate_to: edge1

# commands:
#   - wg set wg1-b-1 private-key /etc/npms/wireguard/wg1-b-1.key.next
#   - mv -f /etc/npms/wireguard/wg1-b-1.key.next /etc/npms/wireguard/wg1-b-1.key

- name: At once, give the POP the new key in place of the old one
  galactic.npms.wireguard:
    config:
      - name: wg1-1-b
        listen_port: 21011
        peers:
          - public_key: "{{ next_key.public_key }}"
            endpoint: 192.0.2.11:21001
            allowed_ips: ["::/0"]
    state: replaced
  delegate_to: pop1

# commands:
#   - wg set wg1-1-b peer HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw= remove
#       peer 0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE= endpoint 192.0.2.11:21001 allowed-ips ::/0 persistent-keepalive off
#   - wg set wg1-1-b peer 0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE= persistent-keepalive 1
#       peer 0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE= persistent-keepalive off

- name: Or give up a prepared key
  galactic.npms.wireguard_key:
    name: wg1-b-1
    phase: abort
"""

RETURN = r"""
public_key:
  description:
    - C(prepare), the pending key's public key (null in check mode when none is pending
      yet); C(commit), the interface's public key after the commit; C(abort), the
      interface's current public key (null when the interface does not exist).
  returned: always
  type: str
  sample: 0mXL1ee1JmTbfnAtC5lfZ1rQ4Pxi0r8kC6jBNBMYBWE=
previous_public_key:
  description: The interface's public key before the task.
  returned: when O(phase) is prepare or commit
  type: str
  sample: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
pending:
  description: Whether a prepared key waits for its commit after the task.
  returned: always
  type: bool
  sample: true
commands:
  description: The commands run on the node (in check mode, those that would run). They name key files, never keys.
  returned: always
  type: list
  elements: str
  sample:
    - wg set wg1-b-1 private-key /etc/npms/wireguard/wg1-b-1.key.next
    - mv -f /etc/npms/wireguard/wg1-b-1.key.next /etc/npms/wireguard/wg1-b-1.key
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.base import ResourceError
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.wireguard_linux import PHASES, key_phase
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import CommandError, LocalRunner


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "phase": {"type": "str", "required": True, "choices": list(PHASES)},
        },
        supports_check_mode=True,
    )
    try:
        result = key_phase(LocalRunner(), module.params["name"], module.params["phase"], check_mode=module.check_mode)
    except ResourceError as exc:
        module.fail_json(msg=str(exc))
    except CommandError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc)
    result.pop("name", None)
    result.pop("phase", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
