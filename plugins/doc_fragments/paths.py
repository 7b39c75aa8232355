# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the galactic.npms.paths lookup and filter."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """Documentation fragment: path engine inputs."""

    DOCUMENTATION = r"""
options:
  measurements:
    description:
      - Window aggregates per directed node pair, which replace the inventory's nominal
        link values for the pairs they cover.
      - A list of mappings with the keys C(src), C(dst), C(latency_ms) and optionally
        C(tenant) (null for core links, shared by all tenants), C(latency_p95_ms),
        C(latency_p99_ms), C(jitter_ms), C(loss_pct) (0 to 100), C(bandwidth_mbps), C(cost),
        C(samples), C(window_start), C(window_s); or a mapping with such a list under
        C(measurements); or the path of a JSON or YAML file holding either.
      - One bad item rejects the whole batch, with every problem named.
    type: raw
  tenant:
    description:
      - Only these tenants (names). All tenants when not set.
    type: list
    elements: str
  traffic_class:
    description:
      - Only these traffic classes (names). All classes of each tenant when not set.
    type: list
    elements: str
  current:
    description:
      - The previous run's result list (or the path of a JSON or YAML file holding it),
        for hysteresis. A current path is kept unless it violates its SLA or a candidate
        beats it by the inventory's hysteresis margin.
    type: raw
  engine:
    description:
      - V(fast) computes all pairs at once with numpy, V(reference) pair by pair with
        networkx. Both give the same answer; V(reference) is slower.
    type: str
    choices: [fast, reference]
    default: fast
notes:
  - Runs on the controller. Needs networkx, and numpy for engine V(fast) (which also uses
    the reference engine for link-disjoint backups), in the controller's Python; PyYAML for
    YAML files.
  - The inventory is the NPMS inventory (an Ansible YAML inventory directory with
    C(hosts.yml), C(group_vars/) and C(host_vars/), one YAML file, or the merged mapping);
    it is validated first and any problem fails the task with the file, object and field
    named.
"""
