# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""galactic.npms core library.

The same files import as ``ansible_collections.galactic.npms.plugins.module_utils.npms``
under Ansible and as the plain package ``npms`` (pyproject ``package-dir``) for Nornir and
the CLI, so everything in here uses relative imports and never imports ansible.
"""

__version__ = "0.1.0"
