# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRv6 resources on VPP, through its binary API (:mod:`npms.drivers.vpp`).

The items are those of :mod:`npms.resources.srv6`; what they become on VPP:

``srv6_localsid``  ``sr_localsid_add_del`` (behaviours End=1, End.X=2, End.DX6=6, End.DX4=7,
                   End.DT6=8, End.DT4=9 of ``sr_types.api``; End.X / End.DX* take the
                   interface's sw_if_index and the next hop, End.DT* the table id in
                   ``sw_if_index``), read back with ``sr_localsids_dump``.  A SID cannot be
                   changed in place: a modified SID is deleted and added again.
``srv6_route``     ``ip_route_add_del`` in the main IPv6 table (one path out of the
                   interface, to ``via`` if given), read back with ``ip_route_dump``.
``srv6_policy``    ``sr_policy_add_v2`` (encapsulation, the first segment list),
                   ``sr_policy_mod_v2`` (add / delete / re-weight segment lists, found by
                   their index in ``sr_policies_with_sl_index_dump``), ``sr_policy_del``;
                   read back with ``sr_policies_v2_dump``.  A policy's encapsulation source
                   cannot be changed in place, and a policy that steering still uses is
                   not deleted (VPP would leave the steering pointing at a freed policy):
                   both are refused before anything is changed.
``srv6_steering``  see :class:`Srv6SteeringVpp`.

Ownership: local SIDs, policies and routes are recorded in npms's registry on the VPP
(:class:`npms.drivers.vpp.Registry`); steering lives in npms's own FIB tables (ids from
:func:`npms.resources.srv6.class_mark`, named ``npms:<tenant>/<class>``) and classifier
tables tagged by their sessions' ``opaque_index``.  ``gathered`` shows, and ``deleted`` /
``overridden`` touch, only those.

VPP interface names (``GigabitEthernet0/8/0``, ``host-<linux name>``) do not fit the
15-character Linux names the shared schema checks; these classes check interface fields
as VPP names (1-63 printable characters, no spaces) instead.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from . import fields as f
from .base import ADD, DELETE, MODIFY, Change, ResourceError, item_key
from .srv6 import BEHAVIORS, Srv6LocalSid, Srv6Policy, Srv6Route, Srv6Steering, class_mark
from ..drivers.vpp import (
    CLASSIFY_ACTION_SET_IP4_FIB_INDEX, CLASSIFY_ACTION_SET_IP6_FIB_INDEX, FIB_PATH_TYPE_NORMAL, IP6_TABLE_DEFAULTS,
    NO_INDEX, SR_POLICY_OP_ADD, SR_POLICY_OP_DEL, SR_POLICY_OP_MOD, SR_STEER_IPV4, SR_STEER_IPV6, Journal, Registry,
    VppClient, fib_path, ip_route, ip_table, is_zero_address, run_steps, sid_list, text, union_address,
)

BEHAVIOR_CODES = {"End": 1, "End.X": 2, "End.DX6": 6, "End.DX4": 7, "End.DT6": 8, "End.DT4": 9}
BEHAVIOR_NAMES = {code: name for name, code in BEHAVIOR_CODES.items()}
XCONNECT = ("End.X", "End.DX4", "End.DX6")
DECAP_TABLE = ("End.DT4", "End.DT6")
VPP_IFNAME_RE = re.compile(r"^[!-~]{1,63}$")


def vpp_ifname(value: Any, where: str, name: str) -> str:
    """A VPP interface name: 1-63 printable characters without spaces."""
    text_value = str(value)
    if not VPP_IFNAME_RE.match(text_value):
        raise ResourceError(f"{where}: {name}: {value!r} is not a VPP interface name (1-63 printable characters, no spaces)")
    return text_value


def normalize_vpp_ifnames(normalize: Callable[[Mapping[str, Any], str], Dict[str, Any]], item: Mapping[str, Any], where: str,
                          single: Sequence[str] = (), multi: Sequence[str] = ()) -> Dict[str, Any]:
    """``normalize`` (a schema's, which checks Linux interface names) with the interface
    fields checked as VPP names instead: the schema sees stand-ins, the result the real names."""
    if not isinstance(item, Mapping):
        return normalize(item, where)
    raw = dict(item)
    real: Dict[str, Any] = {}
    for name in single:
        if raw.get(name) is not None:
            real[name] = vpp_ifname(raw[name], where, name)
            raw[name] = "vppif"
    for name in multi:
        if raw.get(name) is not None:
            values = f.listing(raw[name], where, name)
            real[name] = sorted({vpp_ifname(v, where, f"{name}[{i}]") for i, v in enumerate(values)})
            raw[name] = [f"vppif{i}" for i in range(len(values))]
    out = normalize(raw, where)
    for name, value in real.items():
        if name in out:
            out[name] = value
    return out


class _VppResource:
    """What the VPP resources share: the client and interface-name checks."""

    vpp: VppClient

    def _ifindex(self, name: str) -> int:
        return self.vpp.interface_index(name)

    def _ifname(self, sw_if_index: int) -> str:
        name = self.vpp.interface_name(sw_if_index)
        return name if name is not None else f"sw_if_index-{sw_if_index}"


# --- local SIDs ---------------------------------------------------------------------------------
class Srv6LocalSidVpp(_VppResource, Srv6LocalSid):
    """SRv6 local SIDs on VPP (see the module docstring)."""

    dataplane = "vpp"
    behaviors = BEHAVIORS

    def __init__(self, vpp: VppClient):
        super().__init__(vpp)
        self.vpp = vpp
        self.registry = Registry(vpp, self.name)

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        return normalize_vpp_ifnames(super().normalize, item, where, single=("interface",))

    def gather(self) -> List[Dict[str, Any]]:
        self.vpp.forget_interfaces()
        owned = self.registry.entries()
        items = []
        for d in self.vpp.dump("sr_localsids_dump"):
            sid = text(d.addr)
            behavior = BEHAVIOR_NAMES.get(int(d.behavior))
            if f"{sid}/128" not in owned or behavior is None:
                continue
            item: Dict[str, Any] = {"sid": sid, "behavior": behavior}
            if behavior in XCONNECT:
                item["interface"] = self._ifname(int(d.xconnect_iface_or_vrf_table))
                item["nexthop"] = text(d.xconnect_nh_addr)
            elif behavior in DECAP_TABLE:
                item["table"] = int(d.xconnect_iface_or_vrf_table)
            items.append(item)
        return sorted(items, key=lambda i: i["sid"])

    def _fields(self, item: Mapping[str, Any], resolve: bool = True) -> Dict[str, Any]:
        behavior = item["behavior"]
        sw_if_index: Any = NO_INDEX
        nexthop = "::"
        if behavior in XCONNECT:
            sw_if_index = self._ifindex(item["interface"]) if resolve else item["interface"]
            nexthop = item["nexthop"]
        elif behavior in DECAP_TABLE:
            sw_if_index = item["table"]  # for End.DT4 / End.DT6 VPP takes the table id here
        return {"localsid": item["sid"], "end_psp": False, "behavior": BEHAVIOR_CODES[behavior], "sw_if_index": sw_if_index,
                "vlan_index": 0, "fib_table": 0, "nh_addr": nexthop}

    def _render(self, item: Mapping[str, Any], is_del: bool) -> str:
        fl = self._fields(item, resolve=False)
        out = f"sr_localsid_add_del is_del={int(is_del)} localsid={fl['localsid']} behavior={fl['behavior']} ({item['behavior']})"
        if item["behavior"] in XCONNECT:
            out += f" sw_if_index=<{item['interface']}> nh_addr={fl['nh_addr']}"
        elif item["behavior"] in DECAP_TABLE:
            out += f" sw_if_index={item['table']} (table)"
        return out

    def render_change(self, change: Change) -> List[str]:
        if change.op == ADD:
            return [self._render(change.after, False), self.registry.describe("add", f"{change.after['sid']}/128")]
        if change.op == DELETE:
            return [self._render(change.before, True), self.registry.describe("del", f"{change.before['sid']}/128")]
        return [self._render(change.before, True), self._render(change.after, False)]

    def _add(self, item: Mapping[str, Any]) -> None:
        self.vpp.call("sr_localsid_add_del", is_del=False, **self._fields(item))

    def _del(self, item: Mapping[str, Any]) -> None:
        self.vpp.call("sr_localsid_add_del", is_del=True, **self._fields(item))

    def apply_change(self, change: Change) -> None:
        if change.op == ADD:
            item = change.after
            key = f"{item['sid']}/128"
            run_steps([("add the local SID", lambda: self._add(item), lambda: self._del(item)),
                       ("record it", lambda: self.registry.add(key), lambda: self.registry.remove(key))])
        elif change.op == DELETE:
            item = change.before
            key = f"{item['sid']}/128"
            run_steps([("delete the local SID", lambda: self._del(item), lambda: self._add(item)),
                       ("forget it", lambda: self.registry.remove(key), lambda: self.registry.add(key))])
        else:
            run_steps([("delete the old local SID", lambda: self._del(change.before), lambda: self._add(change.before)),
                       ("add the new one", lambda: self._add(change.after), lambda: self._del(change.after))])


# --- routes ---------------------------------------------------------------------------------
class Srv6RouteVpp(_VppResource, Srv6Route):
    """Routes towards other nodes' locators, in VPP's main IPv6 table."""

    dataplane = "vpp"

    def __init__(self, vpp: VppClient):
        super().__init__(vpp)
        self.vpp = vpp
        self.registry = Registry(vpp, self.name)

    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        out = normalize_vpp_ifnames(super().normalize, item, where, single=("interface",))
        if out["prefix"] in IP6_TABLE_DEFAULTS:
            raise ResourceError(f"{where} (prefix {out['prefix']}): prefix: VPP keeps its own entry for {out['prefix']} in every "
                                "table; npms does not manage it on VPP (use a more specific prefix)")
        return out

    def gather(self) -> List[Dict[str, Any]]:
        self.vpp.forget_interfaces()
        owned = self.registry.entries()
        items = []
        for r in self.vpp.dump("ip_route_dump", table=ip_table(0, True)):
            prefix = text(r.route.prefix)
            if prefix not in owned:
                continue
            item: Dict[str, Any] = {"prefix": prefix}
            if r.route.paths:
                path = r.route.paths[0]
                if int(path.sw_if_index) != NO_INDEX:
                    item["interface"] = self._ifname(int(path.sw_if_index))
                via = union_address(path.nh.address, True)
                if not is_zero_address(via):
                    item["via"] = via
            items.append(item)
        return sorted(items, key=lambda i: i["prefix"])

    def _route(self, item: Mapping[str, Any]) -> Dict[str, Any]:
        return ip_route(item["prefix"], [fib_path(self._ifindex(item["interface"]), item.get("via"), True)])

    @staticmethod
    def _render(item: Mapping[str, Any], is_add: bool) -> str:
        if not is_add:
            return f"ip_route_add_del is_add=0 table_id=0 prefix={item['prefix']}"
        via = f" nh={item['via']}" if item.get("via") else ""
        return f"ip_route_add_del is_add=1 is_multipath=0 table_id=0 prefix={item['prefix']} path: sw_if_index=<{item['interface']}>{via}"

    def render_change(self, change: Change) -> List[str]:
        if change.op == ADD:
            return [self._render(change.after, True), self.registry.describe("add", change.after["prefix"])]
        if change.op == DELETE:
            return [self._render(change.before, False), self.registry.describe("del", change.before["prefix"])]
        return [self._render(change.after, True) + " (replaces the path)"]

    def _add(self, item: Mapping[str, Any]) -> None:
        # is_multipath=False: the paths given replace the route's paths (a modify is an add)
        self.vpp.call("ip_route_add_del", is_add=True, is_multipath=False, route=self._route(item))

    def _del(self, item: Mapping[str, Any]) -> None:
        self.vpp.call("ip_route_add_del", is_add=False, is_multipath=False, route=ip_route(item["prefix"], []))

    def apply_change(self, change: Change) -> None:
        if change.op == ADD:
            item = change.after
            run_steps([("add the route", lambda: self._add(item), lambda: self._del(item)),
                       ("record it", lambda: self.registry.add(item["prefix"]), lambda: self.registry.remove(item["prefix"]))])
        elif change.op == DELETE:
            item = change.before
            run_steps([("delete the route", lambda: self._del(item), lambda: self._add(item)),
                       ("forget it", lambda: self.registry.remove(item["prefix"]), lambda: self.registry.add(item["prefix"]))])
        else:
            self._add(change.after)


# --- policies -------------------------------------------------------------------------------
class Srv6PolicyVpp(_VppResource, Srv6Policy):
    """SR policies (encapsulation, weighted segment lists) on VPP."""

    dataplane = "vpp"

    def __init__(self, vpp: VppClient):
        super().__init__(vpp)
        self.vpp = vpp
        self.registry = Registry(vpp, self.name)
        self._sources: Dict[str, str] = {}

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        """A policy made without ``encap_source`` gets VPP's encapsulation source of that time
        (``sr_set_encap_source``), which the API cannot read back: what the node shows for
        it is its default."""
        item = super().defaults(item)
        if item.get("encap_source") is None and item["bsid"] in self._sources:
            item = dict(item, encap_source=self._sources[item["bsid"]])
        return item

    def gather(self) -> List[Dict[str, Any]]:
        owned = self.registry.entries()
        self._sources = {}
        items = []
        for d in self.vpp.dump("sr_policies_v2_dump"):
            bsid = text(d.bsid)
            if f"{bsid}/128" not in owned:
                continue
            lists = [{"segments": [text(s) for s in sl.sids[:int(sl.num_sids)]], "weight": int(sl.weight)} for sl in d.sid_lists]
            item: Dict[str, Any] = {"bsid": bsid, "segment_lists": sorted(lists, key=lambda sl: sl["segments"])}
            source = text(d.encap_src)
            if not is_zero_address(source):
                item["encap_source"] = source
                self._sources[bsid] = source
            items.append(item)
        return sorted(items, key=lambda i: i["bsid"])

    # --- calls ---------------------------------------------------------------------------------
    def _add_policy(self, item: Mapping[str, Any]) -> None:
        first = item["segment_lists"][0]
        self.vpp.call("sr_policy_add_v2", bsid_addr=item["bsid"], weight=first["weight"], is_encap=True, type=0, fib_table=0,
                      sids=sid_list(first["segments"], first["weight"]), encap_src=item.get("encap_source") or "::")

    def _del_policy(self, item: Mapping[str, Any]) -> None:
        self.vpp.call("sr_policy_del", bsid_addr=item["bsid"], sr_policy_index=NO_INDEX)

    def _mod(self, item: Mapping[str, Any], operation: int, segments: Sequence[str], weight: int, sl_index: int = NO_INDEX) -> None:
        self.vpp.call("sr_policy_mod_v2", bsid_addr=item["bsid"], sr_policy_index=NO_INDEX, fib_table=0, operation=operation,
                      sl_index=sl_index, weight=weight, sids=sid_list(segments if operation == SR_POLICY_OP_ADD else [], weight),
                      encap_src=item.get("encap_source") or "::")

    def _sl_index(self, bsid: str, segments: Sequence[str]) -> int:
        """The index VPP gave a policy's segment list (needed to delete or re-weight it)."""
        for d in self.vpp.dump("sr_policies_with_sl_index_dump"):
            if text(d.bsid) != bsid:
                continue
            for sl in d.sid_lists:
                if [text(s) for s in sl.sids[:int(sl.num_sids)]] == list(segments):
                    return int(sl.sl_index)
        raise ResourceError(f"{self.name}: bsid {bsid}: VPP lists no segment list {list(segments)}")

    def _add_list(self, item: Mapping[str, Any], sl: Mapping[str, Any]) -> None:
        self._mod(item, SR_POLICY_OP_ADD, sl["segments"], sl["weight"])

    def _del_list(self, item: Mapping[str, Any], sl: Mapping[str, Any]) -> None:
        self._mod(item, SR_POLICY_OP_DEL, [], sl["weight"], self._sl_index(item["bsid"], sl["segments"]))

    def _weigh_list(self, item: Mapping[str, Any], sl: Mapping[str, Any]) -> None:
        self._mod(item, SR_POLICY_OP_MOD, [], sl["weight"], self._sl_index(item["bsid"], sl["segments"]))

    # --- changes -------------------------------------------------------------------------------
    @staticmethod
    def _list_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Tuple[List[Any], List[Any], List[Tuple[Any, Any]]]:
        """Segment lists added, removed, and re-weighted (old, new), by their segments."""
        old = {tuple(sl["segments"]): sl for sl in before["segment_lists"]}
        new = {tuple(sl["segments"]): sl for sl in after["segment_lists"]}
        added = [new[k] for k in new if k not in old]
        removed = [old[k] for k in old if k not in new]
        reweighted = [(old[k], new[k]) for k in new if k in old and old[k]["weight"] != new[k]["weight"]]
        return added, removed, reweighted

    def render_change(self, change: Change) -> List[str]:
        def add_lines(item):
            first = item["segment_lists"][0]
            src = item.get("encap_source") or "::"
            lines = [f"sr_policy_add_v2 bsid_addr={item['bsid']} is_encap=1 type=0 fib_table=0 weight={first['weight']} "
                     f"sids={','.join(first['segments'])} encap_src={src}"]
            lines += [f"sr_policy_mod_v2 bsid_addr={item['bsid']} operation=1 (add) weight={sl['weight']} sids={','.join(sl['segments'])}"
                      for sl in item["segment_lists"][1:]]
            return lines
        if change.op == ADD:
            return add_lines(change.after) + [self.registry.describe("add", f"{change.after['bsid']}/128")]
        if change.op == DELETE:
            return [f"sr_policy_del bsid_addr={change.before['bsid']}", self.registry.describe("del", f"{change.before['bsid']}/128")]
        bsid = change.after["bsid"]
        added, removed, reweighted = self._list_diff(change.before, change.after)
        lines = [f"sr_policy_mod_v2 bsid_addr={bsid} operation=1 (add) weight={sl['weight']} sids={','.join(sl['segments'])}" for sl in added]
        lines += [f"sr_policy_mod_v2 bsid_addr={bsid} operation=3 (weight) sl_index=<{','.join(new['segments'])}> weight={new['weight']}"
                  for _old, new in reweighted]
        lines += [f"sr_policy_mod_v2 bsid_addr={bsid} operation=2 (delete) sl_index=<{','.join(sl['segments'])}>" for sl in removed]
        return lines

    def apply(self, changes: Sequence[Change]) -> None:
        # Refuse what VPP cannot do safely before anything is changed.
        for change in changes:
            if change.op == MODIFY and change.before.get("encap_source") != change.after.get("encap_source"):
                raise ResourceError(f"{self.name}: bsid {change.key[0]}: encap_source cannot be changed on an existing VPP policy "
                                    f"({change.before.get('encap_source') or 'default'} -> {change.after.get('encap_source') or 'default'}); "
                                    "delete the policy (and its steering) and add it again")
        deleting = [c for c in changes if c.op == DELETE]
        if deleting:
            steered = {text(s.bsid) for s in self.vpp.dump("sr_steering_pol_dump")}
            for change in deleting:
                if change.key[0] in steered:
                    raise ResourceError(f"{self.name}: bsid {change.key[0]}: SR steering still sends traffic into this policy; "
                                        "remove that steering (srv6_steering) first (VPP would keep steering into a freed policy)")
        super().apply(changes)

    def apply_change(self, change: Change) -> None:
        if change.op == ADD:
            item = change.after
            key = f"{item['bsid']}/128"
            steps = [("add the policy", lambda: self._add_policy(item), lambda: self._del_policy(item))]
            steps += [(f"add segment list {sl['segments']}", lambda sl=sl: self._add_list(item, sl), None) for sl in item["segment_lists"][1:]]
            steps.append(("record it", lambda: self.registry.add(key), lambda: self.registry.remove(key)))
            run_steps(steps)
        elif change.op == DELETE:
            item = change.before
            key = f"{item['bsid']}/128"
            run_steps([("delete the policy", lambda: self._del_policy(item), lambda: self.apply_change(Change(ADD, change.key, after=item))),
                       ("forget it", lambda: self.registry.remove(key), lambda: self.registry.add(key))])
        else:
            before, after = change.before, change.after
            added, removed, reweighted = self._list_diff(before, after)
            # add first: VPP keeps at least one segment list in a policy
            steps = [(f"add segment list {sl['segments']}", lambda sl=sl: self._add_list(after, sl), lambda sl=sl: self._del_list(after, sl))
                     for sl in added]
            steps += [(f"re-weight segment list {new['segments']}", lambda new=new: self._weigh_list(after, new),
                       lambda old=old: self._weigh_list(after, old)) for old, new in reweighted]
            steps += [(f"delete segment list {sl['segments']}", lambda sl=sl: self._del_list(before, sl), lambda sl=sl: self._add_list(before, sl))
                      for sl in removed]
            run_steps(steps)


# --- steering -----------------------------------------------------------------------------------
CLASS_TABLE_PREFIX = "npms:"
#: classifier sessions made by npms carry this tag in the high half of ``opaque_index``
#: (``"NP"``) and the class's table id in the low half
SESSION_TAG = 0x4E500000
SESSION_TAG_MASK = 0xFFFF0000
FAMILIES = (4, 6)
#: what the classifier compares, from the IP header (current_data_flag=1): the DSCP bits
#: of the IPv4 TOS byte, or of the IPv6 traffic class (which straddles bytes 0 and 1)
DSCP_MASKS = {4: bytes([0x00, 0xFC]) + bytes(14), 6: bytes([0x0F, 0xC0]) + bytes(14)}
CATCH_ALL_MASK = bytes(16)
CLASSIFY_BUCKETS = 32
CLASSIFY_MEMORY = 2 << 20


def dscp_match(family: int, dscp: int) -> bytes:
    tos = dscp << 2
    if family == 4:
        return bytes([0x00, tos]) + bytes(14)
    return bytes([tos >> 4, (tos & 0x0F) << 4]) + bytes(14)


def dscp_of(family: int, key: bytes) -> int:
    if family == 4:
        return key[1] >> 2
    return ((key[0] & 0x0F) << 2) | (key[1] >> 6)


def is_class_table(table_id: int) -> bool:
    return 0x0101 <= table_id <= 0xFFFF and (table_id & 0xFF) != 0


def class_table_name(tenant: str, traffic_class: str) -> str:
    return f"{CLASS_TABLE_PREFIX}{tenant}/{traffic_class}"


@dataclass
class _ClassifyTable:
    index: int
    next_index: int
    mask: bytes
    sessions: List[Tuple[bytes, int]]  # (match, class table id)

    @property
    def tenant_id(self) -> int:
        return self.sessions[0][1] >> 8


@dataclass
class _Spec:
    """A tenant's classifier: DSCP -> class table, the default class's table, interfaces."""

    dscp: Dict[int, Dict[int, int]] = field(default_factory=lambda: {4: {}, 6: {}})
    default: Dict[int, Optional[int]] = field(default_factory=lambda: {4: None, 6: None})
    interfaces: Set[str] = field(default_factory=set)
    tables: Set[int] = field(default_factory=set)
    consistent: bool = True


@dataclass
class _State:
    classes: Dict[int, Tuple[str, str]] = field(default_factory=dict)
    families: Dict[int, Set[bool]] = field(default_factory=dict)
    entries: Dict[Tuple[int, str], str] = field(default_factory=dict)
    ctables: Dict[int, _ClassifyTable] = field(default_factory=dict)
    attached: Dict[str, Dict[int, int]] = field(default_factory=dict)
    foreign: Dict[str, Dict[int, int]] = field(default_factory=dict)
    other_tables: Dict[int, str] = field(default_factory=dict)
    tenants: Dict[int, _Spec] = field(default_factory=dict)
    items: List[Dict[str, Any]] = field(default_factory=list)


class Srv6SteeringVpp(_VppResource, Srv6Steering):
    """A tenant's traffic of one class (DSCP) towards a prefix, steered into an SR policy.

    Per (tenant, class), an IPv4 and an IPv6 FIB table with id ``class_mark(tenant_id,
    class_id)``, named ``npms:<tenant>/<class>`` (the name is npms's record of who owns it
    and of the tenant's and class's names, which VPP has nowhere else to keep).  Each holds
    the class's steering entries (``sr_steering_add_del`` with ``table_id``) and a default
    route that looks up the tenant's own table (the ingress interfaces' table), so that
    traffic of the class to other destinations is forwarded as before.

    Per tenant, a classifier on each ingress interface picks the class table: VPP's input
    ACL (``input_acl_set_interface``), because the session actions that set the FIB of a
    packet (``CLASSIFY_API_ACTION_SET_IP4_FIB_INDEX`` / ``_IP6_``, metadata = the table id)
    are, as classify.api says, "only valid for L3 input ACL node"; the other classifier
    hooks (``classify_set_interface_ip_table``, policer and flow classify) do not carry them.
    For each family a table (``classify_add_del_table``, ``current_data_flag=1`` so that it
    matches from the IP header whatever the interface's L2 header, mask = the DSCP bits)
    holds one session per DSCP value (``classify_add_del_session``).  The default class (the
    one with an empty ``dscp``) is a second, chained table with an all-zero mask and one
    session that matches every packet: a table's ``miss_next_index`` is a graph node, not a
    FIB, and binding the interface itself to the class table (``sw_interface_set_table``)
    would move its addresses and connected routes out of the tenant's table.  Sessions carry
    ``opaque_index`` = ``SESSION_TAG | table id``: the classifier API has no tag field, and
    its session dump shows neither action nor metadata, so this is how npms recognises its
    classifier tables and reads back which DSCP goes to which class.

    On VPP all classes of a tenant use the same ingress interfaces (one classifier per
    interface), an interface serves one tenant and has no input ACL classifier that npms
    does not own, and a tenant has at most one default class.  A class's table id is its
    identity: renaming a class that keeps its ``class_id`` needs its steering deleted first.
    """

    dataplane = "vpp"

    def __init__(self, vpp: VppClient):
        super().__init__(vpp)
        self.vpp = vpp

    # --- checks ------------------------------------------------------------------------------------
    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        out = normalize_vpp_ifnames(super().normalize, item, where, multi=("ingress_interfaces",))
        name = class_table_name(out["tenant"], out["traffic_class"])
        if len(name) > 63:
            raise ResourceError(f"{where} ({out['tenant']}/{out['traffic_class']} {out['prefix']}): tenant, traffic_class: on VPP "
                                f"{name!r} names the class's FIB table and may have at most 63 characters")
        return out

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        super().check_items(items)
        self._vpp_checks(items, f"{self.name}: ")

    def _vpp_checks(self, items: Sequence[Mapping[str, Any]], prefix: str) -> None:
        ifaces: Dict[str, List[str]] = {}
        owner: Dict[str, str] = {}
        defaults: Dict[str, str] = {}
        marks: Dict[int, Tuple[str, str]] = {}
        for item in items:
            tenant, tc = item["tenant"], item["traffic_class"]
            if item.get("ingress_interfaces") is not None:
                seen = ifaces.setdefault(tenant, item["ingress_interfaces"])
                if seen != item["ingress_interfaces"]:
                    raise ResourceError(f"{prefix}tenant {tenant}: ingress_interfaces: on VPP all classes of a tenant share one "
                                        f"classifier per interface; {seen} elsewhere, {item['ingress_interfaces']} for class {tc}")
                for name in item["ingress_interfaces"]:
                    if owner.setdefault(name, tenant) != tenant:
                        raise ResourceError(f"{prefix}ingress_interfaces: interface {name} is given to tenants {owner[name]} and {tenant} "
                                            "(on VPP an interface has one input classifier)")
            if item.get("dscp") == []:
                if defaults.setdefault(tenant, tc) != tc:
                    raise ResourceError(f"{prefix}tenant {tenant}: classes {defaults[tenant]} and {tc} both have an empty dscp "
                                        "(the default class); on VPP a tenant has one default class")
            if item.get("tenant_id") is not None and item.get("class_id") is not None:
                mark = class_mark(item["tenant_id"], item["class_id"])
                if marks.setdefault(mark, (tenant, tc)) != (tenant, tc):
                    raise ResourceError(f"{prefix}table {mark} (tenant_id {item['tenant_id']}, class_id {item['class_id']}) is both "
                                        f"{'/'.join(marks[mark])} and {tenant}/{tc}")

    # --- reading the node --------------------------------------------------------------------------
    def _read(self) -> _State:
        state = _State()
        self.vpp.forget_interfaces()
        for t in self.vpp.dump("ip_table_dump"):
            tid, name = int(t.table.table_id), t.table.name
            if is_class_table(tid) and name.startswith(CLASS_TABLE_PREFIX) and "/" in name:
                tenant, tc = name[len(CLASS_TABLE_PREFIX):].split("/", 1)
                state.classes[tid] = (tenant, tc)
                state.families.setdefault(tid, set()).add(bool(t.table.is_ip6))
            elif is_class_table(tid):
                state.other_tables[tid] = name
        for s in self.vpp.dump("sr_steering_pol_dump"):
            # (sw_if_index of these details is not meaningful for L3 steering: not read)
            if int(s.traffic_type) in (SR_STEER_IPV4, SR_STEER_IPV6) and int(s.fib_table) in state.classes:
                state.entries[(int(s.fib_table), text(s.prefix))] = text(s.bsid)
        for idx in self.vpp.call("classify_table_ids").ids:
            sessions = self.vpp.dump("classify_session_dump", table_id=int(idx))
            tags = [(bytes(s.match), int(s.opaque_index)) for s in sessions]
            if not tags or any(tag & SESSION_TAG_MASK != SESSION_TAG for _m, tag in tags):
                continue
            info = self.vpp.call("classify_table_info", table_id=int(idx))
            state.ctables[int(idx)] = _ClassifyTable(int(idx), int(info.next_table_index), bytes(info.mask),
                                                     [(m, tag & 0xFFFF) for m, tag in tags])
        for name, sw in sorted(self.vpp.interfaces().items()):
            r = self.vpp.call("classify_table_by_interface", sw_if_index=sw)
            for family, idx in ((4, int(r.ip4_table_id)), (6, int(r.ip6_table_id))):
                if idx == NO_INDEX:
                    continue
                (state.attached if idx in state.ctables else state.foreign).setdefault(name, {})[family] = idx
        for name in sorted(state.attached):
            self._observe(state, name)
        for (mark, prefix), bsid in sorted(state.entries.items()):
            tenant, tc = state.classes[mark]
            spec = state.tenants.get(mark >> 8, _Spec())
            dscp = spec.dscp[4] if spec.dscp[4] or spec.default[4] is not None else spec.dscp[6]
            state.items.append({"tenant": tenant, "tenant_id": mark >> 8, "traffic_class": tc, "class_id": (mark & 0xFF) - 1,
                                "dscp": sorted(d for d, m in dscp.items() if m == mark), "ingress_interfaces": sorted(spec.interfaces),
                                "prefix": prefix, "bsid": bsid})
        return state

    def _chain(self, state: _State, head: int, family: int) -> Tuple[Dict[int, int], Optional[int], Set[int]]:
        dscp: Dict[int, int] = {}
        default = None
        seen: Set[int] = set()
        idx = head
        while idx != NO_INDEX and idx in state.ctables and idx not in seen:
            seen.add(idx)
            table = state.ctables[idx]
            if table.mask == CATCH_ALL_MASK:
                default = table.sessions[0][1]
            else:
                for match, mark in table.sessions:
                    dscp[dscp_of(family, match)] = mark
            idx = table.next_index
        return dscp, default, seen

    def _observe(self, state: _State, ifname: str) -> None:
        heads = state.attached[ifname]
        tenant_id = state.ctables[next(iter(heads.values()))].tenant_id
        spec = state.tenants.get(tenant_id)
        first = spec is None
        if first:
            spec = state.tenants[tenant_id] = _Spec()
        spec.interfaces.add(ifname)
        for family in FAMILIES:
            if family in heads:
                dscp, default, tables = self._chain(state, heads[family], family)
            else:
                dscp, default, tables = {}, None, set()
            spec.tables |= tables
            if first:
                spec.dscp[family], spec.default[family] = dscp, default
            elif (spec.dscp[family], spec.default[family]) != (dscp, default):
                spec.consistent = False

    def gather(self) -> List[Dict[str, Any]]:
        return self._read().items

    # --- rendering --------------------------------------------------------------------------------
    def render_change(self, change: Change) -> List[str]:
        item = change.after if change.op != DELETE else change.before
        mark = class_mark(item["tenant_id"], item["class_id"])
        traffic_type = SR_STEER_IPV6 if ":" in item["prefix"] else SR_STEER_IPV4
        steer = f"sr_steering_add_del is_del={{}} bsid_addr={item['bsid']} table_id={mark} prefix={item['prefix']} traffic_type={traffic_type}"
        if change.op == DELETE:
            return [steer.format(1), f"(the last steering entry of {item['tenant']}/{item['traffic_class']} also removes its tables "
                                     "and classifier sessions)"]
        lines = [f"ip_table_add_del is_add=1 table_id={mark} is_ip6={v6} name={class_table_name(item['tenant'], item['traffic_class'])} "
                 f"(if missing; default route: lookup in the ingress interfaces' table)" for v6 in (0, 1)]
        lines.append(steer.format(0))
        classes = f"dscp {','.join(map(str, item['dscp']))}" if item["dscp"] else "every other dscp (default class)"
        lines.append(f"classify_add_del_table/classify_add_del_session (tenant {item['tenant']}): {classes} -> table {mark}; "
                     f"input_acl_set_interface on {', '.join(item['ingress_interfaces'])}")
        return lines

    # --- applying ----------------------------------------------------------------------------------
    def apply_change(self, change: Change) -> None:
        self.apply([change])

    def apply(self, changes: Sequence[Change]) -> None:
        """Take the node from what it has to what the changes make, as one: the class
        tables, steering entries and classifiers are reconciled together (a tenant's
        classifier depends on all its classes)."""
        state = self._read()
        target = {item_key(i, self.key_fields): i for i in state.items}
        for change in changes:
            if change.op == DELETE:
                target.pop(change.key, None)
            else:
                target[change.key] = copy.deepcopy(change.after)
        items = list(target.values())
        plan = self._plan(state, items)
        journal = Journal()
        try:
            self._apply_plan(state, plan, journal)
        except Exception as exc:  # noqa: BLE001 -- any failure must undo what was done
            errors = journal.rollback()
            if errors:
                raise ResourceError(f"{self.name}: {exc}; the rollback also failed: {'; '.join(errors)}") from None
            raise ResourceError(f"{self.name}: {exc}; every change made was rolled back", rolled_back=True) from None
        try:
            self._cleanup(state, plan)
        except Exception as exc:  # noqa: BLE001
            raise ResourceError(f"{self.name}: the new steering is in place, but removing what it replaced failed: {exc}; "
                                "the next change retries") from None

    def _plan(self, state: _State, items: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """What the node must hold for ``items``; checked (and interfaces resolved) before anything changes."""
        Srv6Steering.check_items(self, list(items))
        self._vpp_checks(items, f"{self.name}: ")
        classes: Dict[int, Tuple[str, str]] = {}
        entries: Dict[Tuple[int, str], str] = {}
        tenants: Dict[int, _Spec] = {}
        for item in items:
            mark = class_mark(item["tenant_id"], item["class_id"])
            classes[mark] = (item["tenant"], item["traffic_class"])
            entries[(mark, item["prefix"])] = item["bsid"]
            spec = tenants.setdefault(item["tenant_id"], _Spec())
            spec.interfaces = set(item["ingress_interfaces"])
            for family in FAMILIES:
                if item["dscp"]:
                    for d in item["dscp"]:
                        spec.dscp[family][d] = mark
                else:
                    spec.default[family] = mark
        for mark, names in classes.items():
            if mark in state.other_tables:
                raise ResourceError(f"{self.name}: {'/'.join(names)}: table {mark} exists on this VPP and is not npms's "
                                    f"({state.other_tables[mark]!r}); choose another tenant_id / class_id")
            old = state.classes.get(mark)
            if old is not None and old != names:
                raise ResourceError(f"{self.name}: {'/'.join(names)}: table {mark} is class {'/'.join(old)} on this VPP; "
                                    f"delete the steering of {'/'.join(old)} first")
        ifindex: Dict[str, int] = {}
        base: Dict[int, Dict[int, int]] = {}
        for tenant_id, spec in tenants.items():
            for name in sorted(spec.interfaces):
                if name in state.foreign:
                    raise ResourceError(f"{self.name}: interface {name} already has an input ACL classifier table that npms does not own "
                                        f"({state.foreign[name]}); VPP keeps one per interface")
                ifindex[name] = self._ifindex(name)
            for family in FAMILIES:
                tables = {self.vpp.call("sw_interface_get_table", sw_if_index=ifindex[n], is_ipv6=family == 6).vrf_id for n in spec.interfaces}
                if len(tables) > 1:
                    raise ResourceError(f"{self.name}: tenant {tenant_id}: its ingress interfaces are in different IPv{family} tables "
                                        f"({sorted(tables)})")
                base.setdefault(tenant_id, {})[family] = tables.pop() if tables else 0
        for name in state.attached:
            if name not in ifindex:
                ifindex[name] = self._ifindex(name)
        return {"classes": classes, "entries": entries, "tenants": tenants, "ifindex": ifindex, "base": base}

    # calls
    def _create_class_table(self, mark: int, is6: bool, name: str, lookup_table: int) -> None:
        self.vpp.call("ip_table_add_del", is_add=True, table=ip_table(mark, is6, name))
        default = "::/0" if is6 else "0.0.0.0/0"
        self.vpp.call("ip_route_add_del", is_add=True, is_multipath=False,
                      route=ip_route(default, [fib_path(is_ip6=is6, table_id=lookup_table, path_type=FIB_PATH_TYPE_NORMAL)], mark))

    def _delete_class_table(self, mark: int, is6: bool) -> None:
        self.vpp.call("ip_table_add_del", is_add=False, table=ip_table(mark, is6))

    def _steer(self, mark: int, prefix: str, bsid: str, is_del: bool) -> None:
        self.vpp.call("sr_steering_add_del", is_del=is_del, bsid_addr=bsid, sr_policy_index=NO_INDEX, table_id=mark, prefix=prefix,
                      sw_if_index=NO_INDEX, traffic_type=SR_STEER_IPV6 if ":" in prefix else SR_STEER_IPV4)

    def _new_ctable(self, mask: bytes, next_index: int) -> int:
        reply = self.vpp.call("classify_add_del_table", is_add=True, del_chain=False, table_index=NO_INDEX,
                              nbuckets=CLASSIFY_BUCKETS, memory_size=CLASSIFY_MEMORY, skip_n_vectors=0, match_n_vectors=1,
                              next_table_index=next_index, miss_next_index=NO_INDEX, current_data_flag=1, current_data_offset=0,
                              mask_len=len(mask), mask=mask)
        return int(reply.new_table_index)

    def _delete_ctable(self, index: int) -> None:
        self.vpp.call("classify_add_del_table", is_add=False, del_chain=False, table_index=index, mask_len=0, mask=b"")

    def _session(self, table: int, family: int, match: bytes, mark: int) -> None:
        self.vpp.call("classify_add_del_session", is_add=True, table_index=table, hit_next_index=NO_INDEX,
                      opaque_index=SESSION_TAG | mark, advance=0,
                      action=CLASSIFY_ACTION_SET_IP4_FIB_INDEX if family == 4 else CLASSIFY_ACTION_SET_IP6_FIB_INDEX,
                      metadata=mark, match_len=len(match), match=match)

    def _acl(self, sw_if_index: int, family: int, table: int, is_add: bool) -> None:
        # one family per call: VPP stops at the first table type already set on an add
        self.vpp.call("input_acl_set_interface", sw_if_index=sw_if_index, ip4_table_index=table if family == 4 else NO_INDEX,
                      ip6_table_index=table if family == 6 else NO_INDEX, l2_table_index=NO_INDEX, is_add=is_add)

    def _build(self, journal: Journal, family: int, spec: _Spec) -> int:
        head = NO_INDEX
        if spec.default[family] is not None:
            head = journal.do(f"classifier table (IPv{family} default class)", lambda: self._new_ctable(CATCH_ALL_MASK, NO_INDEX),
                              self._delete_ctable)
            self._session(head, family, CATCH_ALL_MASK, spec.default[family])
        if spec.dscp[family]:
            nxt = head
            head = journal.do(f"classifier table (IPv{family} DSCP)", lambda: self._new_ctable(DSCP_MASKS[family], nxt), self._delete_ctable)
            for d, mark in sorted(spec.dscp[family].items()):
                self._session(head, family, dscp_match(family, d), mark)
        return head

    def _same_spec(self, old: Optional[_Spec], new: _Spec) -> bool:
        return (old is not None and old.consistent and old.interfaces == new.interfaces
                and all(old.dscp[fam] == new.dscp[fam] and old.default[fam] == new.default[fam] for fam in FAMILIES))

    def _apply_plan(self, state: _State, plan: Dict[str, Any], journal: Journal) -> None:
        # 1. the class tables (before anything points into them)
        for mark, (tenant, tc) in sorted(plan["classes"].items()):
            for is6 in (False, True):
                if is6 not in state.families.get(mark, set()):
                    lookup = plan["base"][mark >> 8][6 if is6 else 4]
                    journal.do(f"create table {mark}", lambda m=mark, v=is6, t=tenant, c=tc, b=lookup: self._create_class_table(
                        m, v, class_table_name(t, c), b), lambda _r, m=mark, v=is6: self._delete_class_table(m, v))
        # 2. steering entries (an add on an existing entry moves it to the new policy)
        for (mark, prefix), bsid in sorted(state.entries.items()):
            if (mark, prefix) not in plan["entries"]:
                journal.do(f"remove steering {prefix} (table {mark})", lambda m=mark, p=prefix, b=bsid: self._steer(m, p, b, True),
                           lambda _r, m=mark, p=prefix, b=bsid: self._steer(m, p, b, False))
        for (mark, prefix), bsid in sorted(plan["entries"].items()):
            old = state.entries.get((mark, prefix))
            if old != bsid:
                journal.do(f"steer {prefix} (table {mark}) into {bsid}", lambda m=mark, p=prefix, b=bsid: self._steer(m, p, b, False),
                           lambda _r, m=mark, p=prefix, b=bsid, o=old: self._steer(m, p, o, False) if o else self._steer(m, p, b, True))
        # 3. classifiers: rebuilt for each tenant whose classes or interfaces changed
        replaced: Set[int] = set()
        desired: Dict[str, Dict[int, int]] = {}
        for tenant_id in sorted(set(plan["tenants"]) | set(state.tenants)):
            new = plan["tenants"].get(tenant_id)
            if new is not None and self._same_spec(state.tenants.get(tenant_id), new):
                continue
            replaced.add(tenant_id)
            if new is not None:
                heads = {family: self._build(journal, family, new) for family in FAMILIES}
                for name in new.interfaces:
                    desired[name] = {family: head for family, head in heads.items() if head != NO_INDEX}
        for name, attached in state.attached.items():
            if name not in desired and state.ctables[next(iter(attached.values()))].tenant_id not in replaced:
                desired[name] = dict(attached)
        names = sorted(set(state.attached) | set(desired))
        # detach everything that changes before attaching (VPP ignores an attach where a table is set)
        for name in names:
            for family in FAMILIES:
                was = state.attached.get(name, {}).get(family)
                if was is not None and was != desired.get(name, {}).get(family):
                    sw = plan["ifindex"][name]
                    journal.do(f"detach classifier {was} from {name}", lambda s=sw, fm=family, w=was: self._acl(s, fm, w, False),
                               lambda _r, s=sw, fm=family, w=was: self._acl(s, fm, w, True))
        for name in names:
            for family in FAMILIES:
                will = desired.get(name, {}).get(family)
                if will is not None and will != state.attached.get(name, {}).get(family):
                    sw = plan["ifindex"][name]
                    journal.do(f"attach classifier {will} to {name}", lambda s=sw, fm=family, w=will: self._acl(s, fm, w, True),
                               lambda _r, s=sw, fm=family, w=will: self._acl(s, fm, w, False))
        plan["replaced"] = replaced

    def _cleanup(self, state: _State, plan: Dict[str, Any]) -> None:
        # 4. the classifier tables replaced (and any npms orphans of those tenants), chain heads first
        doomed = [t for t in state.ctables.values() if t.tenant_id in plan["replaced"]]
        pointed = {t.next_index for t in doomed}
        for table in sorted(doomed, key=lambda t: (t.index in pointed, t.index)):
            self._delete_ctable(table.index)
        # 5. the tables of classes that have no steering left
        for mark in sorted(state.classes):
            if mark not in plan["classes"]:
                for is6 in sorted(state.families.get(mark, set())):
                    self._delete_class_table(mark, is6)
