# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""npms_lab: the inventory's network in Linux network namespaces on one machine.

``Lab(inventory, prefix).up() / down() / status() / impair(link, ...) / restore()``;
``npms lab ...`` is the command-line front end (docs/lab.md).  Importing this package
imports only the standard library and the core library (``npms``).
"""

from .core import DEFAULT_INVENTORY, RUN_DIR, Lab, LabError, LabStatus, UpResult, state_dir_for
from .plan import Impairment, LabLink, LabNode, Plan, PlanError, build_plan

__all__ = [
    "DEFAULT_INVENTORY",
    "RUN_DIR",
    "Impairment",
    "Lab",
    "LabError",
    "LabLink",
    "LabNode",
    "LabStatus",
    "Plan",
    "PlanError",
    "UpResult",
    "build_plan",
    "state_dir_for",
]
