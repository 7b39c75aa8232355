# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Run tasks inside a Linux network namespace on the controller
description:
  - Runs modules, commands and file transfers inside a named network namespace on the
    Ansible controller (C(ip netns exec)), so that every namespace of the galactic.npms
    lab (C(npms lab up)) is a host of its own, as community.general's chroot and lxd
    connections do for chroots and containers.
  - A module sees the namespace's interfaces, addresses, routes, nftables rule set and
    sockets; everything else (file system, processes, users, the Python interpreter) is the
    controller's, so modules need nothing installed "in" the namespace.
  - Files are copied directly on the controller's file system (namespaces share it).
  - Real deployments reach the same nodes over SSH with the same modules; only
    C(ansible_connection) changes.
  - Needs root on the controller (C(ip netns exec) needs CAP_SYS_ADMIN). A namespace
    that does not exist, or a run as another user, fails the host as unreachable with a
    message that says so.
options:
  netns:
    description:
      - Name of the network namespace, a file under C(/run/netns) (see C(ip netns list)).
      - Taken from the inventory host name, overridden by C(ansible_host) (which the
        lab's generated inventory sets), overridden by C(ansible_netns_name).
    type: string
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_netns_name
  executable:
    description:
      - Shell that runs each command inside the namespace.
    type: string
    default: /bin/sh
    ini:
      - section: defaults
        key: executable
    env:
      - name: ANSIBLE_EXECUTABLE
    vars:
      - name: ansible_executable
extends_documentation_fragment:
  - connection_pipelining
notes:
  - The remote user is ignored; commands run as the user that runs Ansible (root).
  - Privilege escalation (C(become)) works for methods that need no password; a
    password prompt is not answered.
  - Set C(ansible_python_interpreter) to the controller's interpreter, for example
    C({{ ansible_playbook_python }}), because the namespace shares the controller's file system.
seealso:
  - name: ip-netns(8)
    description: The C(ip netns) manual page.
    link: https://man7.org/linux/man-pages/man8/ip-netns.8.html
  - name: community.general.chroot connection
    description: The same idea for a chroot directory.
    link: https://docs.ansible.com/ansible/latest/collections/community/general/chroot_connection.html
"""

EXAMPLES = r"""
# Inventory: one host per namespace.  `npms lab up` writes such an inventory for the lab
# (<state dir>/ansible/hosts.yml); ansible_host is the namespace when it differs from
# the host name.
#
# all:
#   vars:
#     ansible_connection: galactic.npms.netns
#     ansible_python_interpreter: "{{ ansible_playbook_python }}"
#   hosts:
#     core-lon: {ansible_host: lab-core-lon}
#     edge-ber: {ansible_netns_name: lab-edge-ber}

- name: Show the addresses each lab node sees
  hosts: all
  gather_facts: false
  tasks:
    - name: Addresses inside the node's namespace
      ansible.builtin.command: ip -o addr show
      changed_when: false

- name: One play against namespaces named on the command line
  hosts: all
  connection: galactic.npms.netns
  gather_facts: false
  tasks:
    - name: Copy a file "to" the node (the controller's file system, in the namespace's view)
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\n"
        dest: /tmp/npms-{{ inventory_hostname }}.txt
        mode: "0644"

    - name: Routes of the node, parsed
      ansible.builtin.command: ip -j route show
      register: routes
      changed_when: false
"""

import os
import re
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import NETNS_RUN_DIR, NetnsRunner

display = Display()

# What `ip netns add` accepts as a name, minus anything that could walk out of /run/netns.
_NETNS_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


class Connection(ConnectionBase):
    """Commands and files inside a network namespace on the controller."""

    transport = "galactic.npms.netns"
    has_pipelining = True
    # No pty: a become password prompt cannot be answered (see notes).
    has_tty = False
    default_user = "root"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._runner = None

    @property
    def netns(self):
        return to_text(self.get_option("netns"))

    def _connect(self):
        netns = self.netns
        if not _NETNS_NAME_RE.match(netns) or netns in (".", ".."):
            raise AnsibleConnectionFailure("galactic.npms.netns: %r is not a valid network namespace name" % netns)
        runner = NetnsRunner(netns)
        if not runner.exists():
            raise AnsibleConnectionFailure(
                "galactic.npms.netns: network namespace %r does not exist (no %s); is the lab up (npms lab up)?"
                % (netns, os.path.join(NETNS_RUN_DIR, netns))
            )
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure(
                "galactic.npms.netns: entering network namespace %r needs root (ip netns exec needs CAP_SYS_ADMIN); "
                "run ansible as root" % netns
            )
        self._runner = runner
        if not self._connected:
            display.vvv("ENTER NETWORK NAMESPACE %s" % netns, host=netns)
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # `ip netns exec` through the runner seam, as every other npms command in a namespace.
        argv = self._runner.wrap([self.get_option("executable"), "-c", to_text(cmd)])
        display.vvv("EXEC %s" % " ".join(argv), host=self.netns)
        try:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [to_bytes(arg, errors="surrogate_or_strict") for arg in argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise AnsibleConnectionFailure("galactic.npms.netns: cannot run %s: %s" % (argv[0], to_native(exc))) from exc
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def _copy(self, in_path, out_path, verb):
        # Namespaces share the controller's file system: a transfer is a local copy.
        display.vvv("%s %s TO %s" % (verb, in_path, out_path), host=self.netns)
        b_in = to_bytes(in_path, errors="surrogate_or_strict")
        b_out = to_bytes(out_path, errors="surrogate_or_strict")
        if not os.path.exists(b_in):
            raise AnsibleFileNotFound("galactic.npms.netns: file does not exist: %s" % to_native(in_path))
        try:
            shutil.copyfile(b_in, b_out)
        except shutil.SameFileError as exc:
            raise AnsibleError("galactic.npms.netns: %s and %s are the same file" % (in_path, out_path)) from exc
        except OSError as exc:
            raise AnsibleError("galactic.npms.netns: failed to copy %s to %s: %s" % (in_path, out_path, to_native(exc))) from exc

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._copy(in_path, out_path, "PUT")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._copy(in_path, out_path, "FETCH")

    def reset(self):
        self.close()

    def close(self):
        super().close()
        self._connected = False
