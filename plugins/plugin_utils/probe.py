# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the ``galactic.npms.probe_targets`` filter: inventory + node in,
what the node probes out (``npms.probe.probe_targets``, the one implementation).

Computed on the controller because the inventory lives there; the result is plain
data that the ``galactic.npms.probe`` module takes as its ``targets``.
"""

from __future__ import annotations

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.galactic.npms.plugins.module_utils.npms.probe import (
    PROBE_KINDS,
    TARGET_KINDS,
    ProbeError,
)
from ansible_collections.galactic.npms.plugins.module_utils.npms.probe import probe_targets as _probe_targets
from ansible_collections.galactic.npms.plugins.plugin_utils.paths import PathsError, get_inventory, name_list

CORE_SCOPES = ("adjacent", "all")


def probe_targets(inventory, node, core_scope="adjacent", kinds=None, basedirs=()):
    """``[{"dst", "tenant", "address", "kinds"}]`` for ``node``; PathsError on bad input.

    ``core_scope`` defaults to ``adjacent`` here (the library's default is ``all``): the
    path engine only takes measurements of pairs joined by an inventory link, and a core's
    underlay address is often routed over its own links only (the lab), so probing
    non-adjacent cores would cost time and yield total loss that the ingest must drop.
    """
    inv = get_inventory(inventory, basedirs)
    if not isinstance(node, str) or not node:
        raise PathsError("node: expected a node name, got %r" % (node,))
    if core_scope not in CORE_SCOPES:
        raise PathsError("core_scope: expected one of %s, got %r" % (", ".join(CORE_SCOPES), core_scope))
    kind_list = name_list(kinds, "kinds") or list(TARGET_KINDS)
    unknown = [k for k in kind_list if k not in PROBE_KINDS]
    if unknown:
        raise PathsError("kinds: unknown kind %r (known: %s; iperf runs on its own schedule with the probe "
                         "module's iperf option)" % (unknown[0], ", ".join(PROBE_KINDS)))
    try:
        return _probe_targets(inv, str(node), core_scope=str(core_scope), kinds=kind_list)
    except ProbeError as exc:
        raise PathsError(to_text(exc)) from exc
