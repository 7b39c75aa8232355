# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard on VPP, through its wireguard plugin's API (:mod:`npms.drivers.vpp`).

An item (:mod:`npms.resources.wireguard`) is one VPP WireGuard interface:

* **Names.**  VPP names a WireGuard interface ``wg<instance>`` itself; the item's ``name``
  must therefore be ``wg<N>`` and is created with ``user_instance`` N.
* **Keys.**  ``wireguard_interface_create`` with ``generate_key=True``: VPP makes the key
  pair; the private key never leaves VPP (interfaces are read with
  ``show_private_key=False``).  The public key is returned as a fact:
  ``{"wg0": {"public_key": ...}}``.  VPP cannot change the key or the listen port of an
  interface: a new ``listen_port`` re-creates the interface, **with a new key pair**
  (so does the rollback of a deleted interface).  Key rotation is Linux-only
  (``wireguard_key``).
* **Source address.**  VPP sends the tunnel's packets from the ``src_ip`` given at creation
  (it does not pick one).  It is taken from the item's optional ``source_address`` (a
  VPP-only field, not compared with what the node has: it matters only when the
  interface is made), else from the address of the interface through which VPP's main
  table reaches the first peer endpoint (``ip_route_lookup``, ``ip_address_dump``).
* **Peers.**  ``wireguard_peer_add`` (the API file has no ``_v2`` of it; ``_v2`` only adds a
  preshared key, which items never carry), ``wireguard_peer_remove``,
  ``wireguard_peers_dump``.  VPP has no peer update: a changed peer is removed and added.
  VPP refuses a peer without allowed IPs, so each peer needs at least one.  Allowed IPs do
  not install routes on VPP: ``srv6_route`` does.
* **What the peer dump leaves out.**  VPP's ``wireguard_peers_details`` (as
  ``wg_api_send_peers_details`` fills it) carries neither the peer's index nor its
  persistent keepalive.  The index (needed to remove a peer) is found by asking for the
  peers one index at a time; the keepalive npms set is recorded in npms's registry on the
  VPP (:class:`npms.drivers.vpp.Registry`, table ``npms-registry:wireguard``): one drop route
  per peer with a keepalive, ``fd6e:706d:7767:<8 bytes of SHA-256 of the public key>:<keepalive>/128``
  (public keys are unique across a VPP).  A keepalive VPP does report wins.
* **Interface settings.**  Addresses (``sw_interface_add_del_address``), MTU
  (``sw_interface_set_mtu``, L3 and per protocol), admin up (``sw_interface_set_flags``).
* **Ownership.**  npms tags its interfaces ``npms`` (``sw_interface_tag_add_del``); only
  tagged WireGuard interfaces are gathered, changed or deleted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import fields as f
from .base import ADD, DELETE, Change, ResourceError
from .wireguard import Wireguard
from ..drivers.vpp import IF_STATUS_ADMIN_UP, NO_INDEX, Journal, Registry, VppClient, is_zero_address, text, union_address

WG_NAME_RE = re.compile(r"^wg(\d{1,9})$")
OWNER_TAG = "npms"
#: registry records of peer keepalives: fd6e:706d:7767::/48 ("npm", "wg")
PEER_RECORD_PREFIX = bytes.fromhex("fd6e706d7767")
#: how far past the number of peers to look for a peer's index (indexes freed by deleted
#: peers leave holes, which VPP fills again first)
PEER_INDEX_SLACK = 4096


def _key_digest(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:8]


def peer_record(public_key: str, keepalive: int) -> str:
    """The registry entry recording ``public_key``'s keepalive."""
    raw = PEER_RECORD_PREFIX + _key_digest(base64.b64decode(public_key)) + int(keepalive).to_bytes(2, "big")
    return f"{ipaddress.IPv6Address(raw)}/128"


def _split_endpoint(endpoint: Optional[str]) -> Tuple[Optional[str], int]:
    if not endpoint:
        return None, 0
    host, _sep, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _join_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WireguardVpp(Wireguard):
    """WireGuard interfaces and peers on VPP (see the module docstring)."""

    dataplane = "vpp"

    def __init__(self, vpp: VppClient):
        super().__init__(vpp)
        self.vpp = vpp
        self.registry = Registry(vpp, self.name)
        self._sources: Dict[str, str] = {}
        self._public_keys: Dict[str, Optional[str]] = {}
        self._observed: Dict[str, Dict[str, Any]] = {}

    # --- items ---------------------------------------------------------------------------------
    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        source = None
        if isinstance(item, Mapping) and "source_address" in item:
            item = dict(item)
            source = item.pop("source_address")
        out = super().normalize(item, where)
        if not WG_NAME_RE.match(out["name"]):
            raise ResourceError(f"{where} (interface {out['name']}): name: VPP names its WireGuard interfaces wg<instance> "
                                "itself; use wg<N> (wg0, wg12, ...)")
        if source is not None:
            self._sources[out["name"]] = f.ip_address(source, f"{where} (interface {out['name']})", "source_address")
        return out

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        item = super().defaults(copy.deepcopy(item))
        for peer in item["peers"]:
            if not peer["allowed_ips"]:
                raise ResourceError(f"{self.name}: interface {item['name']} peer {peer['public_key']}: allowed_ips: VPP refuses a peer "
                                    "without allowed IPs")
        return item

    # --- reading the node -------------------------------------------------------------------------
    def gather(self) -> List[Dict[str, Any]]:
        self.vpp.forget_interfaces()
        details = {int(d.sw_if_index): d for d in self.vpp.interface_details()}
        peers = self.vpp.dump("wireguard_peers_dump", peer_index=NO_INDEX)
        keepalives = {}
        for entry in self.registry.entries():
            raw = ipaddress.ip_network(entry).network_address.packed
            if raw[:6] == PEER_RECORD_PREFIX:
                keepalives[raw[6:14]] = int.from_bytes(raw[14:16], "big")
        self._public_keys, self._observed = {}, {}
        items = []
        for w in self.vpp.dump("wireguard_interface_dump", show_private_key=False, sw_if_index=NO_INDEX):
            itf = w.interface
            sw = int(itf.sw_if_index)
            d = details.get(sw)
            if d is None or d.tag != OWNER_TAG:
                continue
            name = d.interface_name
            addresses = [text(a.prefix) for v6 in (False, True) for a in self.vpp.dump("ip_address_dump", sw_if_index=sw, is_ipv6=v6)]
            own_peers, indexes = [], {}
            for p in peers:
                peer = p.peer
                if int(peer.sw_if_index) != sw:
                    continue
                key = base64.b64encode(bytes(peer.public_key)).decode("ascii")
                indexes[key] = int(peer.peer_index)
                keepalive = int(peer.persistent_keepalive) or keepalives.get(_key_digest(bytes(peer.public_key)), 0)
                item_peer: Dict[str, Any] = {"public_key": key, "allowed_ips": sorted({text(a) for a in peer.allowed_ips}),
                                             "persistent_keepalive": keepalive}
                host = text(peer.endpoint)
                if not is_zero_address(host) and int(peer.port):
                    item_peer["endpoint"] = _join_endpoint(host, int(peer.port))
                own_peers.append(item_peer)
            items.append({"name": name, "listen_port": int(itf.port), "mtu": int(d.mtu[0]), "addresses": sorted(set(addresses)),
                          "peers": sorted(own_peers, key=lambda p: p["public_key"])})
            self._public_keys[name] = base64.b64encode(bytes(itf.public_key)).decode("ascii")
            self._observed[name] = {"sw_if_index": sw, "peers": indexes, "source": text(itf.src_ip)}
        return sorted(items, key=lambda i: i["name"])

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {i["name"]: {"public_key": self._public_keys.get(i["name"])} for i in have}

    # --- source address ---------------------------------------------------------------------------
    def _source_for(self, item: Mapping[str, Any]) -> str:
        name = item["name"]
        if name in self._sources:
            return self._sources[name]
        if name in self._observed and not is_zero_address(self._observed[name]["source"]):
            return self._observed[name]["source"]
        for peer in item.get("peers", []):
            host, _port = _split_endpoint(peer.get("endpoint"))
            if host:
                source = self._address_towards(host)
                if source:
                    return source
        raise ResourceError(f"{self.name}: interface {name}: cannot tell which local address VPP should send its WireGuard packets "
                            "from (no peer endpoint is reached through an interface with an address); give source_address")

    def _address_towards(self, host: str) -> Optional[str]:
        ip = ipaddress.ip_address(host)
        target = f"{ip}/{ip.max_prefixlen}"
        for _depth in range(4):
            reply = self.vpp.call("ip_route_lookup", table_id=0, exact=0, prefix=target)
            for path in reply.route.paths:
                sw = int(path.sw_if_index)
                if sw != NO_INDEX:
                    for a in self.vpp.dump("ip_address_dump", sw_if_index=sw, is_ipv6=ip.version == 6):
                        return str(ipaddress.ip_interface(text(a.prefix)).ip)
                    return None
            nexthops = [union_address(p.nh.address, ip.version == 6) for p in reply.route.paths]
            nexthops = [n for n in nexthops if not is_zero_address(n)]
            if not nexthops:
                return None
            target = f"{nexthops[0]}/{ip.max_prefixlen}"  # a recursive route: look up its next hop
        return None

    # --- calls ---------------------------------------------------------------------------------
    def _sw(self, name: str) -> int:
        return self.vpp.interface_index(name)

    def _create(self, item: Mapping[str, Any]) -> int:
        instance = int(WG_NAME_RE.match(item["name"]).group(1))
        reply = self.vpp.call("wireguard_interface_create", generate_key=True, interface={
            "user_instance": instance, "sw_if_index": NO_INDEX, "private_key": bytes(32), "public_key": bytes(32),
            "port": item["listen_port"], "src_ip": self._source_for(item)})
        self.vpp.forget_interfaces()
        return int(reply.sw_if_index)

    def _delete(self, sw: int) -> None:
        self.vpp.call("wireguard_interface_delete", sw_if_index=sw)
        self.vpp.forget_interfaces()

    def _mtu(self, sw: int, mtu: int) -> None:
        self.vpp.call("sw_interface_set_mtu", sw_if_index=sw, mtu=[mtu, mtu, mtu, mtu])

    def _address(self, sw: int, address: str, is_add: bool) -> None:
        self.vpp.call("sw_interface_add_del_address", sw_if_index=sw, is_add=is_add, del_all=False, prefix=address)

    def _peer_index(self, name: str, public_key: str) -> int:
        """The index VPP gave a peer: the one its details name if they do (checked), else
        found by asking for the peers one index at a time (VPP's details leave it out)."""
        sw = self._sw(name)
        key = base64.b64decode(public_key)

        def matches(details: Any) -> bool:
            return int(details.peer.sw_if_index) == sw and bytes(details.peer.public_key) == key

        everyone = self.vpp.dump("wireguard_peers_dump", peer_index=NO_INDEX)
        for d in everyone:
            if matches(d) and int(d.peer.peer_index) != NO_INDEX:
                if any(matches(x) for x in self.vpp.dump("wireguard_peers_dump", peer_index=int(d.peer.peer_index))):
                    return int(d.peer.peer_index)
        if any(matches(d) for d in everyone):
            found = 0
            for index in range(len(everyone) + PEER_INDEX_SLACK):
                details = self.vpp.dump("wireguard_peers_dump", peer_index=index)
                if details:
                    if matches(details[0]):
                        return index
                    found += 1
                    if found >= len(everyone):
                        break
        raise ResourceError(f"{self.name}: interface {name}: VPP lists no peer {public_key}")

    def _add_peer(self, sw: int, peer: Mapping[str, Any], source: Optional[str] = None) -> int:
        host, port = _split_endpoint(peer.get("endpoint"))
        if host is None:
            host = "::" if source and ":" in source else "0.0.0.0"
        allowed = list(peer.get("allowed_ips") or [])
        keepalive = int(peer.get("persistent_keepalive") or 0)
        reply = self.vpp.call("wireguard_peer_add", peer={
            "peer_index": NO_INDEX, "public_key": base64.b64decode(peer["public_key"]), "port": port,
            "persistent_keepalive": keepalive, "table_id": 0, "endpoint": host,
            "sw_if_index": sw, "flags": 0, "n_allowed_ips": len(allowed), "allowed_ips": allowed})
        index = int(reply.peer_index)
        if keepalive:
            try:
                self.registry.add(peer_record(peer["public_key"], keepalive))
            except Exception:
                self._remove_peer(index)
                raise
        return index

    def _remove_peer(self, index: int) -> None:
        self.vpp.call("wireguard_peer_remove", peer_index=index)

    def _forget_peer(self, name: str, peer: Mapping[str, Any]) -> None:
        """Remove ``peer`` of interface ``name`` and its keepalive record."""
        self._remove_peer(self._peer_index(name, peer["public_key"]))
        if peer.get("persistent_keepalive"):
            self.registry.remove(peer_record(peer["public_key"], peer["persistent_keepalive"]))

    # --- changes -------------------------------------------------------------------------------
    @staticmethod
    def _peer_text(peer: Mapping[str, Any]) -> str:
        out = f"public_key={peer['public_key']}"
        if peer.get("endpoint"):
            out += f" endpoint={peer['endpoint']}"
        return out + f" allowed_ips={','.join(peer.get('allowed_ips') or [])} persistent_keepalive={peer.get('persistent_keepalive') or 0}"

    def _add_lines(self, item: Mapping[str, Any]) -> List[str]:
        name = item["name"]
        source = self._sources.get(name, "<address towards the first peer>")
        lines = [f"wireguard_interface_create generate_key=1 user_instance={WG_NAME_RE.match(name).group(1)} port={item['listen_port']} "
                 f"src_ip={source} (the key pair is made on VPP)", f"sw_interface_tag_add_del is_add=1 sw_if_index=<{name}> tag={OWNER_TAG}",
                 f"sw_interface_set_mtu sw_if_index=<{name}> mtu={item.get('mtu')}"]
        lines += [f"sw_interface_add_del_address is_add=1 sw_if_index=<{name}> prefix={a}" for a in item.get("addresses", [])]
        lines += [f"wireguard_peer_add sw_if_index=<{name}> {self._peer_text(p)}" for p in item.get("peers", [])]
        lines.append(f"sw_interface_set_flags sw_if_index=<{name}> flags=1 (admin up)")
        return lines

    def render_change(self, change: Change) -> List[str]:
        if change.op == ADD:
            return self._add_lines(change.after)
        name = change.key[0]
        if change.op == DELETE:
            return [f"wireguard_peer_remove (each peer of {name})", f"wireguard_interface_delete sw_if_index=<{name}>"]
        before, after = change.before, change.after
        if before["listen_port"] != after["listen_port"]:
            return [f"wireguard_interface_delete sw_if_index=<{name}> (VPP cannot change the listen port: re-created, with a new key pair)"] \
                + self._add_lines(after)
        lines = []
        if before.get("mtu") != after.get("mtu"):
            lines.append(f"sw_interface_set_mtu sw_if_index=<{name}> mtu={after.get('mtu')}")
        old_a, new_a = set(before.get("addresses", [])), set(after.get("addresses", []))
        lines += [f"sw_interface_add_del_address is_add=0 sw_if_index=<{name}> prefix={a}" for a in sorted(old_a - new_a)]
        lines += [f"sw_interface_add_del_address is_add=1 sw_if_index=<{name}> prefix={a}" for a in sorted(new_a - old_a)]
        removed, added = self._peer_diff(before, after)
        lines += [f"wireguard_peer_remove peer_index=<{name} {p['public_key']}>" for p in removed]
        lines += [f"wireguard_peer_add sw_if_index=<{name}> {self._peer_text(p)}" for p in added]
        return lines

    @staticmethod
    def _peer_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        """Peers to remove and to add (a changed peer is both: VPP has no peer update)."""
        old = {p["public_key"]: p for p in before.get("peers", [])}
        new = {p["public_key"]: p for p in after.get("peers", [])}
        removed = [old[k] for k in sorted(old) if k not in new or new[k] != old[k]]
        added = [new[k] for k in sorted(new) if k not in old or old[k] != new[k]]
        return removed, added

    def apply_change(self, change: Change) -> None:
        if change.op == ADD:
            self._add_interface(change.after)
        elif change.op == DELETE:
            self._delete_interface(change.before)
        else:
            self._modify(change.before, change.after)

    def _add_interface(self, item: Mapping[str, Any]) -> None:
        source = self._source_for(item)
        journal = Journal()
        try:
            sw = journal.do("create the interface", lambda: self._create(item), self._delete)
            # everything below goes with the interface when the rollback deletes it
            self.vpp.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw, tag=OWNER_TAG)
            self._mtu(sw, item["mtu"])
            for address in item.get("addresses", []):
                self._address(sw, address, True)
            for peer in item.get("peers", []):
                # (the peer goes with the interface; its keepalive record does not)
                journal.do(f"add peer {peer['public_key']}", lambda p=peer: self._add_peer(sw, p, source),
                           lambda _r, p=peer: self.registry.remove(peer_record(p["public_key"], p["persistent_keepalive"]))
                           if p.get("persistent_keepalive") else None)
            self.vpp.call("sw_interface_set_flags", sw_if_index=sw, flags=IF_STATUS_ADMIN_UP)
        except Exception as exc:
            errors = journal.rollback()
            if errors:
                raise ResourceError(f"{exc}; deleting the half-made interface also failed: {'; '.join(errors)}") from None
            raise

    def _delete_interface(self, item: Mapping[str, Any]) -> None:
        name = item["name"]
        sw = self._sw(name)
        source = self._observed.get(name, {}).get("source")
        journal = Journal()
        try:
            for peer in item.get("peers", []):
                journal.do(f"remove peer {peer['public_key']}", lambda p=peer: self._forget_peer(name, p),
                           lambda _r, p=peer: self._add_peer(sw, p, source))
            self._delete(sw)
        except Exception as exc:
            errors = journal.rollback()
            if errors:
                raise ResourceError(f"{exc}; putting the removed peers back also failed: {'; '.join(errors)}") from None
            raise

    def _modify(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        name = after["name"]
        if before["listen_port"] != after["listen_port"]:
            # VPP cannot change the port: re-create (with a new key pair)
            self._delete_interface(before)
            try:
                self._add_interface(after)
            except Exception as exc:
                try:
                    self._add_interface(before)
                except Exception as undo_exc:  # noqa: BLE001
                    raise ResourceError(f"{exc}; re-creating the interface as it was also failed: {undo_exc}") from None
                raise
            return
        sw = self._sw(name)
        source = self._observed.get(name, {}).get("source")
        journal = Journal()
        try:
            if before.get("mtu") != after.get("mtu"):
                journal.do("set the MTU", lambda: self._mtu(sw, after["mtu"]), lambda _r: self._mtu(sw, before["mtu"]))
            old_a, new_a = set(before.get("addresses", [])), set(after.get("addresses", []))
            for address in sorted(old_a - new_a):
                journal.do(f"remove {address}", lambda a=address: self._address(sw, a, False), lambda _r, a=address: self._address(sw, a, True))
            for address in sorted(new_a - old_a):
                journal.do(f"add {address}", lambda a=address: self._address(sw, a, True), lambda _r, a=address: self._address(sw, a, False))
            removed, added = self._peer_diff(before, after)
            for peer in removed:
                journal.do(f"remove peer {peer['public_key']}", lambda p=peer: self._forget_peer(name, p),
                           lambda _r, p=peer: self._add_peer(sw, p, source))
            for peer in added:
                journal.do(f"add peer {peer['public_key']}", lambda p=peer: self._add_peer(sw, p, source),
                           lambda _r, p=peer: self._forget_peer(name, p))
        except Exception as exc:
            errors = journal.rollback()
            if errors:
                raise ResourceError(f"{exc}; undoing the first part of this change also failed: {'; '.join(errors)}") from None
            raise
