# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the ``galactic.npms.overlay`` filter: inventory + node (+ paths,
+ public keys) in, every resource's ``config`` for that node out (npms.overlay)."""

from __future__ import annotations

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.galactic.npms.plugins.module_utils.npms.overlay import OverlayError, node_overlay
from ansible_collections.galactic.npms.plugins.plugin_utils.paths import PathsError, get_current, get_inventory, plain


def overlay(inventory, node, paths=None, public_keys=None, basedirs=()):
    inv = get_inventory(inventory, basedirs)
    if not isinstance(node, str) or not node:
        raise PathsError("node: expected a node name, got %r" % (node,))
    path_list = get_current(paths, basedirs) or []
    try:
        return node_overlay(inv, str(node), paths=path_list, public_keys=plain(public_keys or {}))
    except (OverlayError, KeyError) as exc:
        raise PathsError(to_text(exc)) from exc
