# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""galactic.npms filters (documented in the .yml file next to this one per filter)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.galactic.npms.plugins.plugin_utils.bgp import bgp_config as node_bgp_config
from ansible_collections.galactic.npms.plugins.plugin_utils.bgp import bgp_route_table as collected_route_table
from ansible_collections.galactic.npms.plugins.plugin_utils.overlay import overlay as node_overlay
from ansible_collections.galactic.npms.plugins.plugin_utils.paths import PathsError, compute
from ansible_collections.galactic.npms.plugins.plugin_utils.probe import probe_targets as node_probe_targets


def paths(inventory, measurements=None, tenant=None, traffic_class=None, current=None, engine="fast"):
    """inventory | galactic.npms.paths(...): a thin front end on plugin_utils.paths.compute."""
    try:
        return compute(inventory, measurements=measurements, tenants=tenant, traffic_classes=traffic_class,
                       current=current, engine=engine)
    except PathsError as exc:
        raise AnsibleFilterError("galactic.npms.paths: %s" % exc) from exc


def overlay(inventory, node, paths=None, public_keys=None):
    """inventory | galactic.npms.overlay(node, ...): the node's resource configs."""
    try:
        return node_overlay(inventory, node, paths=paths, public_keys=public_keys)
    except PathsError as exc:
        raise AnsibleFilterError("galactic.npms.overlay: %s" % exc) from exc


def bgp_config(inventory, node, routes=None):
    """inventory | galactic.npms.bgp_config(node, routes=...): the node's frr_bgp items."""
    try:
        return node_bgp_config(inventory, node, routes=routes)
    except PathsError as exc:
        raise AnsibleFilterError("galactic.npms.bgp_config: %s" % exc) from exc


def bgp_route_table(inventory, collected):
    """inventory | galactic.npms.bgp_route_table(collected): {tenant: {edge: [prefix]}}."""
    try:
        return collected_route_table(inventory, collected)
    except PathsError as exc:
        raise AnsibleFilterError("galactic.npms.bgp_route_table: %s" % exc) from exc


def probe_targets(inventory, node, core_scope="adjacent", kinds=None):
    """inventory | galactic.npms.probe_targets(node, ...): what the node probes."""
    try:
        return node_probe_targets(inventory, node, core_scope=core_scope, kinds=kinds)
    except PathsError as exc:
        raise AnsibleFilterError("galactic.npms.probe_targets: %s" % exc) from exc


class FilterModule:
    """galactic.npms filters."""

    def filters(self):
        return {"paths": paths, "overlay": overlay, "bgp_config": bgp_config, "bgp_route_table": bgp_route_table,
                "probe_targets": probe_targets}
