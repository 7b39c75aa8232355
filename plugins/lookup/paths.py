# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: paths
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: SLA-aware SRv6 paths for every tenant, traffic class and edge pair
description:
  - Runs the galactic.npms path computation engine on the controller.
  - For every tenant, traffic class and ordered pair of the tenant's edges it returns the
    chosen node path, its SRv6 SID list, a disjoint backup path, the path's metrics, the SLA
    verdict (met, met by the fallback profile, unmet best effort, unreachable) and a reason.
  - The same engine is the filter P(galactic.npms.paths#filter), the C(npms paths) command
    and the Python function C(npms.pce.compute_paths).
  - Use C(query) (or O(ignore:wantlist=true)) to always get a list; C(lookup) returns the
    single item itself when there is only one.
options:
  _terms:
    description:
      - The inventory, as an alternative to O(inventory). At most one term.
    required: false
  inventory:
    description:
      - The NPMS inventory, validated before anything is computed.
      - A path to an inventory directory (C(hosts.yml) with C(group_vars/) and
        C(host_vars/)) or one YAML file, or the merged inventory mapping.
      - A relative path is tried against the playbook directory first, then the current
        directory.
    type: raw
extends_documentation_fragment:
  - galactic.npms.paths
seealso:
  - plugin: galactic.npms.paths
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Paths for the lab inventory, from nominal link values
  ansible.builtin.set_fact:
    npms_paths: "{{ query('galactic.npms.paths', inventory=playbook_dir ~ '/../inventory/lab') }}"

- name: Paths of one tenant and class from this window's measurements, with hysteresis
  ansible.builtin.set_fact:
    npms_paths: >-
      {{ query('galactic.npms.paths',
               inventory='inventory/lab',
               measurements=npms_window,
               tenant='acme',
               traffic_class='ef',
               current=npms_paths | default([])) }}
  vars:
    npms_window:
      - {src: core-fra, dst: core-lon, latency_ms: 7.9, jitter_ms: 0.4, loss_pct: 0.0, bandwidth_mbps: 900}

- name: Fail when any path misses its SLA
  ansible.builtin.assert:
    that: npms_paths | rejectattr('verdict', 'in', ['met', 'met_fallback']) | list | length == 0
"""

RETURN = r"""
_raw:
  description:
    - One item per tenant, traffic class and ordered pair of the tenant's edges, sorted by
      tenant, class, source and destination.
  type: list
  elements: dict
  contains:
    tenant:
      description: Tenant name.
      type: str
    traffic_class:
      description: Traffic class name.
      type: str
    src:
      description: Source edge node.
      type: str
    dst:
      description: Destination edge node.
      type: str
    path:
      description: Node names from the source edge to the destination edge; empty when unreachable.
      type: list
      elements: str
    sid_list:
      description: SRv6 segment list (transit End SIDs, then the destination edge's decapsulation SID for the tenant).
      type: list
      elements: str
    backup_path:
      description: Disjoint backup path (node names), empty when there is none.
      type: list
      elements: str
    backup_sid_list:
      description: SRv6 segment list of the backup path.
      type: list
      elements: str
    metrics:
      description: >-
        The path's metrics: C(latency_ms), C(latency_p95_ms), C(jitter_ms), C(loss_pct),
        C(residual_loss_pct) (after FEC; the loss itself without FEC), C(bandwidth_mbps)
        (bottleneck), C(cost), C(hops).
      type: dict
    verdict:
      description: V(met), V(met_fallback), V(unmet_best_effort) or V(unreachable).
      type: str
    profile:
      description: SLA profile the path was chosen under.
      type: str
    mode:
      description: That profile's mode (lowest_cost, lowest_latency, zero_loss, lossless_fec, sustained_bandwidth).
      type: str
    fec:
      description: Whether forward error correction is on for the path.
      type: bool
    direct:
      description: Whether the path is the direct edge-to-edge path.
      type: bool
    reason:
      description: Why this path (and verdict), in words.
      type: str
    backup_metrics:
      description: The backup path's metrics (as RV(_raw[].metrics)); null when there is no backup.
      type: dict
    kept:
      description: Whether hysteresis kept the current path (given with O(current)) over a better candidate.
      type: bool
    changed:
      description: Whether the path differs from the current path given with O(current).
      type: bool
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.galactic.npms.plugins.plugin_utils.paths import PathsError, compute


class LookupModule(LookupBase):
    """galactic.npms.paths lookup: a thin front end on plugin_utils.paths.compute."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        inventory = self.get_option("inventory")
        terms = [t for t in (terms or []) if t is not None]
        if len(terms) > 1 or (terms and inventory is not None):
            raise AnsibleLookupError("galactic.npms.paths: give the inventory once (one term or inventory=...)")
        if terms:
            inventory = terms[0]
        if inventory is None:
            raise AnsibleLookupError("galactic.npms.paths: no inventory given (inventory=...)")
        basedirs = []
        if self._loader is not None:
            basedirs.append(self._loader.get_basedir())
        try:
            return compute(
                inventory,
                measurements=self.get_option("measurements"),
                tenants=self.get_option("tenant"),
                traffic_classes=self.get_option("traffic_class"),
                current=self.get_option("current"),
                engine=self.get_option("engine"),
                basedirs=basedirs,
            )
        except PathsError as exc:
            raise AnsibleLookupError("galactic.npms.paths: %s" % exc) from exc
