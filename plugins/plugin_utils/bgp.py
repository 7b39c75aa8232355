# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the ``galactic.npms.bgp_config`` and ``galactic.npms.bgp_route_table``
filters (npms.bgp): the frr_bgp items of a node, and the route table from what the edges
collected."""

from __future__ import annotations

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.galactic.npms.plugins.module_utils.npms.bgp import customer_bgp_config, edge_bgp_config, route_table
from ansible_collections.galactic.npms.plugins.module_utils.npms.overlay import OverlayError
from ansible_collections.galactic.npms.plugins.plugin_utils.paths import PathsError, get_inventory, plain


def bgp_config(inventory, node, routes=None, basedirs=()):
    inv = get_inventory(inventory, basedirs)
    if not isinstance(node, str) or node not in inv.nodes:
        raise PathsError("node: %r is not a node of the inventory" % (node,))
    try:
        if inv.nodes[node].role == "edge":
            return edge_bgp_config(inv, node, plain(routes) if routes else None)
        return customer_bgp_config(inv, node)
    except OverlayError as exc:
        raise PathsError(to_text(exc)) from exc


def bgp_route_table(inventory, collected, basedirs=()):
    """``collected``: ``{edge: {tenant: {"learned": [...], ...}}}`` (each edge's
    C(facts.bgp) from M(galactic.npms.frr_bgp) with collect_routes)."""
    inv = get_inventory(inventory, basedirs)
    if not isinstance(collected, dict):
        raise PathsError("collected: expected {edge: facts.bgp}, got %s" % type(collected).__name__)
    return route_table(inv, plain(collected))
