# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard resource, dataplane-independent part.

An item is one WireGuard interface (key ``name``) with its peers.  The private key is
generated on the node and never leaves it: items carry no private key, and the
interface's public key is not part of the item (it would make every comparison differ)
but is returned as a fact by the driver's ``facts()``: ``{"<name>": {"public_key": ...}}``.
Routes into the interface are not this resource's: ``srv6_route`` installs them
(WireGuard's allowed-ips only choose the peer; they do not route).  Linux (``wireguard_linux``) and VPP
(``wireguard_vpp``) implement it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Dict, Mapping

from . import fields as f
from .base import Resource, ResourceError, unknown_fields

DEFAULT_MTU = 1420
ITEM_FIELDS = ("name", "listen_port", "addresses", "mtu", "peers")
PEER_FIELDS = ("public_key", "endpoint", "allowed_ips", "persistent_keepalive")


def public_key(value: Any, where: str, name: str) -> str:
    """A WireGuard public key: 32 bytes, base64 (44 characters)."""
    text = str(value).strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ResourceError(f"{where}: {name}: {value!r} is not a WireGuard key (32 bytes in base64, 44 characters)")
    return base64.b64encode(raw).decode("ascii")


class Wireguard(Resource):
    name = "wireguard"
    key_fields = ("name",)
    merge_lists = {"peers": ("public_key",)}
    dataplane = ""

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        if "private_key" in item:
            raise ResourceError(f"{where}: private_key: keys are generated on the node and never passed in")
        unknown_fields(item, ITEM_FIELDS, where)
        if item.get("name") is None:
            raise ResourceError(f"{where}: name is required")
        out: Dict[str, Any] = {"name": f.ifname(item["name"], where, "name")}
        where = f"{where} (interface {out['name']})"
        if item.get("listen_port") is not None:
            out["listen_port"] = f.integer(item["listen_port"], where, "listen_port", 1, 65535)
        if item.get("mtu") is not None:
            out["mtu"] = f.integer(item["mtu"], where, "mtu", 1280, 9000)
        if item.get("addresses") is not None:
            out["addresses"] = sorted({f.interface_address(a, where, f"addresses[{i}]")
                                       for i, a in enumerate(f.listing(item["addresses"], where, "addresses"))})
        if item.get("peers") is not None:
            peers: Dict[str, Dict[str, Any]] = {}
            for i, peer in enumerate(f.listing(item["peers"], where, "peers")):
                pw = f"{where} peers[{i}]"
                if not isinstance(peer, Mapping):
                    raise ResourceError(f"{pw}: must be a mapping")
                if "preshared_key" in peer or "private_key" in peer:
                    raise ResourceError(f"{pw}: keys other than the peer's public key are not passed in")
                unknown_fields(peer, PEER_FIELDS, pw)
                if peer.get("public_key") is None:
                    raise ResourceError(f"{pw}: public_key is required")
                p: Dict[str, Any] = {"public_key": public_key(peer["public_key"], pw, "public_key")}
                if p["public_key"] in peers:
                    raise ResourceError(f"{pw}: public_key: the same peer is listed twice")
                if peer.get("endpoint") is not None:
                    p["endpoint"] = f.endpoint(peer["endpoint"], pw, "endpoint")
                if peer.get("allowed_ips") is not None:
                    p["allowed_ips"] = sorted({f.prefix(a, pw, f"allowed_ips[{j}]")
                                               for j, a in enumerate(f.listing(peer["allowed_ips"], pw, "allowed_ips"))})
                if peer.get("persistent_keepalive") is not None:
                    p["persistent_keepalive"] = f.integer(peer["persistent_keepalive"], pw, "persistent_keepalive", 0, 65535)
                peers[p["public_key"]] = p
            out["peers"] = [peers[k] for k in sorted(peers)]
        return out

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        if item.get("listen_port") is None:
            # a port the node picks at random would differ on every run
            raise ResourceError(f"{self.name}: interface {item['name']}: listen_port is required to create or replace an interface")
        item.setdefault("mtu", DEFAULT_MTU)
        item.setdefault("addresses", [])
        item.setdefault("peers", [])
        for peer in item["peers"]:
            peer.setdefault("allowed_ips", [])
            peer.setdefault("persistent_keepalive", 0)
        return item
