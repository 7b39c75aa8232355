# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir inventory plugin ``NpmsInventory``: Nornir hosts and groups from an NPMS inventory.

The inventory is read and validated by :func:`npms.inventory.load_inventory`, the loader
the Ansible plugins and the CLI use, so Nornir sees exactly the values Ansible does (and a
bad inventory fails with every problem named, before anything touches a node).

* one host per node; ``host.data`` carries the model: ``role``, ``site``, ``node_id``,
  ``dataplane``, ``locator``, ``end_sid``, ``loopback``, ``wan_address``, ``asn``,
  ``interfaces``, ``tenants`` and ``links`` (with the peer and nominal characteristics);
* groups ``core`` / ``edge`` / ``customer`` (the role), ``site_<site>`` (with the site's
  ``country``, ``region``, ``city``, ``lat``, ``lon`` as group data, so ``host["country"]``
  works), ``dataplane_<linux|vpp>`` and ``tenant_<tenant>`` (edges and customer routers);
* ``lab_state`` (a lab's ``lab.json``, its directory, or the lab's prefix) puts every host
  in its lab namespace: ``hostname`` and ``connection_options["netns"]`` name the
  namespace and ``data["npms_connection"]`` is ``"netns"``, so tasks get an
  :class:`npms.runner.NetnsRunner` (see :mod:`npms_nornir.connections`).

Without ``lab_state`` a host's ``hostname`` is its WAN address (else its loopback, else
its name), for connections to real nodes.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Dict, List, Optional

from nornir.core.inventory import ConnectionOptions, Defaults, Group, Groups, Host, Hosts, Inventory, ParentGroups

from npms.inventory import load_inventory
from npms.model import Inventory as NpmsModel
from npms.model import Node
from npms_lab.core import LabStateError, load_lab_state

from .connections import CONNECTION_NAME

LAB_HOST_GROUP = "lab_host"


@functools.lru_cache(maxsize=8)
def _cached_model(source: str) -> NpmsModel:
    return load_inventory(source)


def inventory_model(host: Host) -> NpmsModel:
    """The validated NPMS inventory a host came from (loaded once per process)."""
    return _cached_model(host["npms_inventory"])


def _node_data(inv: NpmsModel, node: Node) -> Dict[str, Any]:
    tenants = sorted(
        t.name for t in inv.tenants.values() if node.name in t.edges or any(a.customer == node.name for a in t.attachments)
    )
    links = []
    for lk in inv.links_of(node.name):
        links.append(
            {
                "peer": lk.b if lk.a == node.name else lk.a,
                "kind": lk.kind,
                "name": lk.name,
                "cost": lk.cost,
                "latency_ms": lk.latency_ms,
                "jitter_ms": lk.jitter_ms,
                "loss_pct": lk.loss_pct,
                "bandwidth_mbps": lk.bandwidth_mbps,
            }
        )
    return {
        "role": node.role,
        "site": node.site,
        "node_id": node.node_id,
        "dataplane": node.dataplane,
        "locator": str(node.locator) if node.locator is not None else None,
        "end_sid": node.end_sid,
        "loopback": node.loopback,
        "wan_address": node.wan_address,
        "asn": node.asn,
        "interfaces": [{"name": i.name, "addresses": list(i.addresses), "peer": i.peer, "mtu": i.mtu} for i in node.interfaces],
        "tenants": tenants,
        "links": links,
    }


class NpmsInventory:
    """Nornir inventory plugin over an NPMS inventory.

    Args:
      inventory: inventory directory or file (as for ``npms validate``); optional when
        ``lab_state`` is given (the lab's inventory is used).
      lab_state: path of a lab's ``lab.json`` (or its directory), or the lab's prefix.
      lab_hosts: with ``lab_state``, also add the lab's end hosts (the namespaces behind
        customer routers) as hosts of group ``lab_host``.
    """

    def __init__(self, inventory: Optional[str] = None, lab_state: Optional[str] = None, lab_hosts: bool = False) -> None:
        self.lab = load_lab_state(lab_state) if lab_state is not None else None
        if inventory is None and self.lab is not None:
            inventory = self.lab.get("inventory")
        if not inventory:
            raise ValueError("NpmsInventory: give inventory=<directory or file> (or lab_state=...)")
        self.inventory = os.path.abspath(os.path.expanduser(str(inventory)))
        self.lab_hosts = bool(lab_hosts)

    def load(self) -> Inventory:
        inv = _cached_model(self.inventory)
        defaults_data: Dict[str, Any] = {"npms_inventory": self.inventory}
        if self.lab is not None:
            defaults_data["npms_lab"] = {k: self.lab.get(k) for k in ("prefix", "state_dir", "path")}
            missing = sorted(set(inv.nodes) - set(self.lab["nodes"]))
            if missing:
                raise LabStateError(
                    f"lab state {self.lab['path']}: no namespace for node(s) {', '.join(missing)}; "
                    f"was the lab built from another inventory than {self.inventory}?"
                )
        defaults = Defaults(data=defaults_data)

        groups = Groups()

        def group(name: str, data: Optional[Dict[str, Any]] = None) -> Group:
            if name not in groups:
                groups[name] = Group(name=name, data=data or {}, defaults=defaults)
            return groups[name]

        for site in inv.sites.values():
            group(
                f"site_{site.name}",
                {"country": site.country, "region": site.region, "city": site.city, "lat": site.lat, "lon": site.lon},
            )

        hosts = Hosts()
        for name, node in sorted(inv.nodes.items()):
            data = _node_data(inv, node)
            names: List[str] = [node.role, f"site_{node.site}", f"dataplane_{node.dataplane}"]
            names += [f"tenant_{t}" for t in data["tenants"]]
            hostname = node.wan_address or node.loopback or name
            options: Dict[str, ConnectionOptions] = {}
            if self.lab is not None:
                hostname = self._enter_lab(self.lab["nodes"][name]["netns"], data, options)
            hosts[name] = Host(
                name=name,
                hostname=hostname,
                platform="linux",
                groups=ParentGroups([group(g) for g in names]),
                data=data,
                connection_options=options,
                defaults=defaults,
            )

        if self.lab is not None and self.lab_hosts:
            for name, entry in sorted((self.lab.get("hosts") or {}).items()):
                data = {"role": "host", "behind": entry.get("behind"), "addresses": list(entry.get("addresses") or [])}
                options = {}
                hostname = self._enter_lab(entry["netns"], data, options)
                hosts[name] = Host(
                    name=name,
                    hostname=hostname,
                    platform="linux",
                    groups=ParentGroups([group(LAB_HOST_GROUP)]),
                    data=data,
                    connection_options=options,
                    defaults=defaults,
                )
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)

    @staticmethod
    def _enter_lab(netns: str, data: Dict[str, Any], options: Dict[str, ConnectionOptions]) -> str:
        data["netns"] = netns
        data["npms_connection"] = CONNECTION_NAME
        options[CONNECTION_NAME] = ConnectionOptions(hostname=netns, platform="linux", extras={"netns": netns})
        return netns
