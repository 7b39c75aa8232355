# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir front end of galactic.npms (installed as the plain package ``npms_nornir``).

Nornir tasks, inventory and connection plugins that drive the same core library
(``npms``) the Ansible modules and plugins use (docs/nornir.md):

* ``npms_nornir.inventory.NpmsInventory``: hosts and groups from an NPMS inventory,
  optionally placed in a lab's namespaces (entry point ``NpmsInventory``);
* ``npms_nornir.connections.NetnsConnection``: a host's namespace as an
  ``npms.runner.NetnsRunner`` (entry point ``netns``);
* ``npms_nornir.tasks``: tasks, ``(task, ...) -> Result``, honouring dry run.
"""
