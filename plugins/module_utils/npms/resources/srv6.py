# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRv6 resources, dataplane-independent part: what an item is and how it is checked.

Three resources, each with a Linux and a VPP implementation (``srv6_linux``,
``srv6_vpp``) that add ``gather`` / ``render_change`` / ``apply_change``:

``srv6_localsid``  local SIDs: End, End.X, End.DX4, End.DX6, End.DT4, End.DT6.
                   Key: ``sid``.
``srv6_policy``    SR policies: a binding SID and one or more weighted segment lists
                   (encapsulation).  Key: ``bsid``.
``srv6_route``     routes towards other nodes' locators (and tenants' edge locators):
                   a prefix out of an interface (a core link, a WireGuard tunnel),
                   optionally via a next hop.  Key: ``prefix``.
``srv6_steering``  a tenant's traffic of one class (DSCP values, arriving on the tenant's
                   ingress interfaces) towards one prefix, steered into a policy.  Key:
                   ``tenant``, ``traffic_class``, ``prefix``.

Traffic classes are told apart by a firewall mark (Linux) or a FIB table (VPP) derived
from the tenant and class ids by :func:`class_mark`, so the numbering is the same on
every node and every dataplane.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from . import fields as f
from .base import Resource, ResourceError, unknown_fields

BEHAVIORS = ("End", "End.X", "End.DX4", "End.DX6", "End.DT4", "End.DT6")
# What each behaviour needs besides the SID: nexthop family, interface, table.
_NEEDS = {
    "End": (None, False, False),
    "End.X": (6, True, False),
    "End.DX4": (4, True, False),
    "End.DX6": (6, True, False),
    "End.DT4": (None, False, True),
    "End.DT6": (None, False, True),
}
MAX_SEGMENTS = 16  # VPP's fixed sids[16]; also a sane bound for the kernel
MAX_TENANT_ID = 255
MAX_CLASS_ID = 254


def class_mark(tenant_id: int, class_id: int) -> int:
    """Firewall mark / table id of a tenant's traffic class: tenant in bits 8-15,
    class + 1 in bits 0-7 (so no class has mark 0)."""
    return (tenant_id << 8) | (class_id + 1)


CLASS_MARK_MASK = 0xFFFF
TENANT_MARK_MASK = 0xFF00


class Srv6LocalSid(Resource):
    name = "srv6_localsid"
    key_fields = ("sid",)
    #: behaviours the dataplane implements (drivers narrow it)
    behaviors: Tuple[str, ...] = BEHAVIORS
    dataplane = ""

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown_fields(item, ("sid", "behavior", "nexthop", "interface", "table"), where)
        if item.get("sid") is None:
            raise ResourceError(f"{where}: sid is required")
        sid = f.ipv6_address(item["sid"], where, "sid")
        where = f"{where} (sid {sid})"
        behavior = f.one_of(item.get("behavior", "End"), BEHAVIORS, where, "behavior")
        if behavior not in self.behaviors:
            raise ResourceError(f"{where}: behavior: {behavior} is not supported by the {self.dataplane or 'this'} dataplane "
                                f"(supported: {', '.join(self.behaviors)})")
        family, needs_if, needs_table = _NEEDS[behavior]
        out: Dict[str, Any] = {"sid": sid, "behavior": behavior}
        if family:
            if item.get("nexthop") is None:
                raise ResourceError(f"{where}: nexthop is required for {behavior} (an IPv{family} address)")
            out["nexthop"] = f.ip_address(item["nexthop"], where, "nexthop", family)
        elif item.get("nexthop") is not None:
            raise ResourceError(f"{where}: nexthop: {behavior} takes no nexthop")
        if needs_if:
            if item.get("interface") is None:
                raise ResourceError(f"{where}: interface is required for {behavior}")
            out["interface"] = f.ifname(item["interface"], where, "interface")
        elif item.get("interface") is not None:
            raise ResourceError(f"{where}: interface: {behavior} takes no interface")
        if needs_table:
            if item.get("table") is None:
                raise ResourceError(f"{where}: table is required for {behavior} (the table to look the inner packet up in)")
            out["table"] = f.integer(item["table"], where, "table", 0, 2**32 - 1)
        elif item.get("table") is not None:
            raise ResourceError(f"{where}: table: {behavior} takes no table")
        return out

    def merge_item(self, have: Dict[str, Any], want: Dict[str, Any]) -> Dict[str, Any]:
        # A SID's other fields belong to its behaviour: a new behaviour replaces them all.
        if want.get("behavior") != have.get("behavior"):
            return dict(want)
        return super().merge_item(have, want)


class Srv6Route(Resource):
    name = "srv6_route"
    key_fields = ("prefix",)
    dataplane = ""

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown_fields(item, ("prefix", "interface", "via"), where)
        if item.get("prefix") is None:
            raise ResourceError(f"{where}: prefix is required")
        out: Dict[str, Any] = {"prefix": f.prefix(item["prefix"], where, "prefix")}
        where = f"{where} (prefix {out['prefix']})"
        if ":" not in out["prefix"]:
            raise ResourceError(f"{where}: prefix: SIDs and locators are IPv6")
        if item.get("interface") is not None:
            out["interface"] = f.ifname(item["interface"], where, "interface")
        if item.get("via") is not None:
            out["via"] = f.ip_address(item["via"], where, "via", 6)
        return out

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        if item.get("interface") is None:
            raise ResourceError(f"{self.name}: prefix {item['prefix']}: interface is required to create or replace a route")
        return item


class Srv6Policy(Resource):
    name = "srv6_policy"
    key_fields = ("bsid",)
    dataplane = ""

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown_fields(item, ("bsid", "segment_lists", "encap_source"), where)
        if item.get("bsid") is None:
            raise ResourceError(f"{where}: bsid is required")
        bsid = f.ipv6_address(item["bsid"], where, "bsid")
        where = f"{where} (bsid {bsid})"
        lists = f.listing(item.get("segment_lists"), where, "segment_lists")
        if not lists and item.get("segment_lists") is not None:
            raise ResourceError(f"{where}: segment_lists: needs at least one segment list")
        out_lists: List[Dict[str, Any]] = []
        for i, sl in enumerate(lists):
            sw = f"{where} segment_lists[{i}]"
            if not isinstance(sl, Mapping):
                raise ResourceError(f"{sw}: must be a mapping with segments and weight")
            unknown_fields(sl, ("segments", "weight"), sw)
            segs = f.listing(sl.get("segments"), sw, "segments")
            if not segs:
                raise ResourceError(f"{sw}: segments: needs at least one SID")
            if len(segs) > MAX_SEGMENTS:
                raise ResourceError(f"{sw}: segments: {len(segs)} SIDs, at most {MAX_SEGMENTS}")
            out_lists.append({
                "segments": [f.ipv6_address(s, sw, f"segments[{j}]") for j, s in enumerate(segs)],
                "weight": f.integer(sl.get("weight", 1), sw, "weight", 1, 2**31 - 1),
            })
        seen = set()
        for i, sl in enumerate(out_lists):
            k = tuple(sl["segments"])
            if k in seen:
                raise ResourceError(f"{where} segment_lists[{i}]: the same segments are listed twice")
            seen.add(k)
        out: Dict[str, Any] = {"bsid": bsid}
        if item.get("segment_lists") is not None:
            out["segment_lists"] = sorted(out_lists, key=lambda sl: sl["segments"])
        if item.get("encap_source") is not None:
            out["encap_source"] = f.ipv6_address(item["encap_source"], where, "encap_source")
        return out

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        if not item.get("segment_lists"):
            raise ResourceError(f"{self.name}: bsid {item['bsid']}: segment_lists is required to create or replace a policy")
        return item


class Srv6Steering(Resource):
    name = "srv6_steering"
    key_fields = ("tenant", "traffic_class", "prefix")
    dataplane = ""

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown_fields(item, ("tenant", "tenant_id", "traffic_class", "class_id", "dscp", "ingress_interfaces",
                              "prefix", "bsid"), where)
        for name in ("tenant", "traffic_class", "prefix"):
            if item.get(name) is None:
                raise ResourceError(f"{where}: {name} is required")
        out: Dict[str, Any] = {
            "tenant": f.label(item["tenant"], where, "tenant"),
            "traffic_class": f.label(item["traffic_class"], where, "traffic_class"),
            "prefix": f.prefix(item["prefix"], where, "prefix"),
        }
        where = f"{where} ({out['tenant']}/{out['traffic_class']} {out['prefix']})"
        if item.get("tenant_id") is not None:
            out["tenant_id"] = f.integer(item["tenant_id"], where, "tenant_id", 1, MAX_TENANT_ID)
        if item.get("class_id") is not None:
            out["class_id"] = f.integer(item["class_id"], where, "class_id", 0, MAX_CLASS_ID)
        if item.get("dscp") is not None:
            out["dscp"] = f.dscp_list(item["dscp"], where, "dscp")
        if item.get("ingress_interfaces") is not None:
            ifs = f.listing(item["ingress_interfaces"], where, "ingress_interfaces")
            out["ingress_interfaces"] = sorted({f.ifname(i, where, f"ingress_interfaces[{n}]") for n, i in enumerate(ifs)})
        if item.get("bsid") is not None:
            out["bsid"] = f.ipv6_address(item["bsid"], where, "bsid")
        return out

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        missing = [n for n in ("tenant_id", "class_id", "ingress_interfaces", "bsid") if item.get(n) is None]
        if missing:
            raise ResourceError(f"{self.name}: {item['tenant']}/{item['traffic_class']} {item['prefix']}: "
                                f"{', '.join(missing)} required to create or replace a steering entry")
        item.setdefault("dscp", [])
        if not item["ingress_interfaces"]:
            raise ResourceError(f"{self.name}: {item['tenant']}/{item['traffic_class']} {item['prefix']}: "
                                "ingress_interfaces: needs at least one interface")
        return item

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        """A tenant has one id, a class one id and one DSCP set, and no two classes of a
        tenant share a DSCP value or a class id."""
        tenant_ids: Dict[str, int] = {}
        classes: Dict[Tuple[str, str], Dict[str, Any]] = {}
        for index, item in enumerate(items):
            where = f"{self.name} config[{index}]"
            tid = item.get("tenant_id")
            if tid is not None:
                if tenant_ids.setdefault(item["tenant"], tid) != tid:
                    raise ResourceError(f"{where}: tenant_id: tenant {item['tenant']} has id {tenant_ids[item['tenant']]} "
                                        f"elsewhere, {tid} here")
                other = [t for t, i in tenant_ids.items() if i == tid and t != item["tenant"]]
                if other:
                    raise ResourceError(f"{where}: tenant_id: {tid} is already tenant {other[0]}'s")
            key = (item["tenant"], item["traffic_class"])
            seen = classes.setdefault(key, {})
            for name in ("class_id", "dscp", "ingress_interfaces"):
                if item.get(name) is None:
                    continue
                if name in seen and seen[name] != item[name]:
                    raise ResourceError(f"{where}: {name}: class {item['traffic_class']} of tenant {item['tenant']} has "
                                        f"{seen[name]} elsewhere, {item[name]} here (one value per class)")
                seen[name] = item[name]
        by_tenant: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
        for (tenant, tc), seen in classes.items():
            by_tenant.setdefault(tenant, []).append((tc, seen))
        for tenant, entries in by_tenant.items():
            ids: Dict[int, str] = {}
            dscps: Dict[int, str] = {}
            for tc, seen in entries:
                cid = seen.get("class_id")
                if cid is not None:
                    if cid in ids and ids[cid] != tc:
                        raise ResourceError(f"{self.name}: tenant {tenant}: class_id {cid} is used by classes {ids[cid]} and {tc}")
                    ids[cid] = tc
                for d in seen.get("dscp") or ():
                    if d in dscps and dscps[d] != tc:
                        raise ResourceError(f"{self.name}: tenant {tenant}: dscp {d} is claimed by classes {dscps[d]} and {tc}")
                    dscps[d] = tc
