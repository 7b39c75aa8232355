# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dataplane resources: one engine (``base``), one schema per resource, one driver per
dataplane; ``registry.build`` hands out the right one."""
