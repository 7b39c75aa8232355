# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir front end of galactic.npms (installed as the plain package ``npms_nornir``).

Nornir tasks, inventory and connection plugins that drive the same core library
(``npms``) the Ansible modules and plugins use; they are registered through entry
points in pyproject.toml as later issues add them.
"""
