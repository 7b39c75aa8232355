# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VPP driver: vpp_papi over VPP's binary API socket, with every reply checked.

:func:`connect` opens the socket and returns a :class:`VppClient`.  vpp_papi is imported
there (not at import time), so that the rest of the library works without it.

What this module adds to vpp_papi, and why:

* **Every reply is checked.**  vpp_papi does not raise on a non-zero ``retval``; a failed
  ``sr_localsid_add_del`` looks like a success unless somebody looks.  :meth:`VppClient.call`
  raises :class:`VppError` naming the message, the retval and what VPP means by it.
* **Missing messages fail at connect time, by name.**  With ``bootstrapapi=True`` (no
  ``api_dir``) vpp_papi loads the definitions from the running VPP; with JSON files from
  ``api_dir`` a message whose CRC differs from the running VPP's is skipped with only a
  debug log.  Either way a message the driver needs may be absent:
  :data:`REQUIRED_MESSAGES` are all checked when connecting.
* **Fixed-size arrays at full length.**  SRv6 segment lists are always 16 entries (padded
  with ``"::"``, the count in ``num_sids``) and every FIB path carries a 16-entry
  ``label_stack``: vpp_papi refuses anything shorter.  :func:`sid_list` and
  :func:`fib_path` build them.
* **Interface names.**  VPP's API speaks ``sw_if_index``; the resources speak names.

Ownership registry (:class:`Registry`): SRv6 local SIDs, SR policies and routes carry no
tag in VPP's API, and must not be told apart by address ranges the resources do not know.
npms therefore records what it creates *on the VPP itself*: one IPv6 FIB table per
resource (ids :data:`REGISTRY_TABLES`, named ``npms-registry:<resource>``; no interface is
ever bound to them, so they never forward a packet) holding one drop route per object
(``<sid>/128``, ``<bsid>/128``, ``<route prefix>``).  A resource owns exactly the objects
listed in its registry: ``deleted`` and ``overridden`` leave everything else alone, and the
record survives controller restarts.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..resources.base import ResourceError

DEFAULT_SOCKET = "/run/vpp/api.sock"
CLIENT_NAME = "galactic-npms"
#: ``~0``: "no index" / "any" in VPP's API
NO_INDEX = 0xFFFFFFFF
MAX_SIDS = 16
LABEL_STACK_SIZE = 16

# Enum values (read from the .api files; see tests/fixtures/vpp/messages.json).
ADDRESS_IP4, ADDRESS_IP6 = 0, 1
FIB_PATH_NH_PROTO_IP4, FIB_PATH_NH_PROTO_IP6 = 0, 1
FIB_PATH_TYPE_NORMAL, FIB_PATH_TYPE_DROP = 0, 2
IF_STATUS_ADMIN_UP = 1
SR_POLICY_OP_ADD, SR_POLICY_OP_DEL, SR_POLICY_OP_MOD = 1, 2, 3
SR_STEER_IPV4, SR_STEER_IPV6 = 4, 6
CLASSIFY_ACTION_SET_IP4_FIB_INDEX, CLASSIFY_ACTION_SET_IP6_FIB_INDEX = 1, 2

#: every request message the resources send (checked at connect time)
REQUIRED_MESSAGES: Tuple[str, ...] = (
    # interfaces (vnet/interface.api, vnet/ip/ip.api)
    "sw_interface_dump", "sw_interface_set_flags", "sw_interface_set_mtu", "sw_interface_add_del_address",
    "sw_interface_tag_add_del", "sw_interface_get_table", "ip_address_dump",
    # FIB (vnet/ip/ip.api)
    "ip_table_add_del", "ip_table_dump", "ip_route_add_del", "ip_route_dump", "ip_route_lookup",
    # SRv6 (vnet/srv6/sr.api)
    "sr_localsid_add_del", "sr_localsids_dump", "sr_policy_add_v2", "sr_policy_mod_v2", "sr_policy_del",
    "sr_policies_v2_dump", "sr_policies_with_sl_index_dump", "sr_steering_add_del", "sr_steering_pol_dump",
    # DSCP classification (vnet/classify/classify.api)
    "classify_add_del_table", "classify_add_del_session", "classify_table_ids", "classify_table_info",
    "classify_session_dump", "classify_table_by_interface", "input_acl_set_interface",
    # WireGuard (plugins/wireguard/wireguard.api)
    "wireguard_interface_create", "wireguard_interface_delete", "wireguard_interface_dump",
    "wireguard_peer_add", "wireguard_peer_remove", "wireguard_peers_dump",
)

#: VPP's generic error codes (vnet/api_errno.h) the calls above can return
VNET_API_ERRORS: Dict[int, str] = {
    -1: "unspecified error", -2: "invalid sw_if_index", -3: "no such FIB / VRF", -4: "no such inner FIB / VRF",
    -5: "no such label", -6: "no such entry", -7: "invalid value", -8: "invalid value #2", -9: "unimplemented",
    -10: "invalid sw_if_index #2", -30: "feature disabled by configuration", -31: "invalid registration",
    -50: "next hop not in FIB", -51: "unknown destination", -52: "prefix matches next hop",
    -53: "next hop not found (multipath)", -54: "no matching interface", -57: "invalid src address",
    -58: "invalid dst address", -59: "address length mismatch", -60: "address not found for interface",
    -61: "address not deletable", -62: "ip6 not enabled", -65: "no such table", -66: "no such table #2",
    -67: "no such table #3", -70: "invalid memory size requested", -71: "invalid interface",
    -73: "invalid argument", -74: "unexpected interface state", -79: "interface already exists",
    -81: "value already exists", -91: "classify table not found", -97: "invalid address family",
    -105: "address in use", -114: "address found for interface", -116: "entry already exists",
    -126: "unsupported", -127: "address already present on another interface", -147: "instance in use",
}
#: the SR calls return the SR code's own numbers (sr_policy_rewrite.c, sr_steering.c, sr.c), which mean
#: something else than the generic ones
MESSAGE_ERRORS: Dict[str, Dict[int, str]] = {
    "sr_localsid_add_del": {-1: "a local SID with this address already exists", -2: "no such local SID"},
    "sr_policy_add_v2": {-12: "the BSID is already in use (by a policy or a FIB entry)", -13: "no such FIB table"},
    "sr_policy_mod_v2": {-1: "no such SR policy (BSID), or a bad operation", -21: "a policy's only segment list cannot be deleted",
                         -22: "the segment list to delete is not in this policy", -32: "the segment list to re-weight is not in this policy"},
    "sr_policy_del": {-1: "no such SR policy (BSID)"},
    "sr_steering_add_del": {-1: "bad traffic type", -2: "no such SR policy (BSID)", -4: "no such steering entry",
                            -5: "the SR policy does not encapsulate"},
}


class VppError(ResourceError):
    """A VPP call failed: the message is not available, vpp_papi refused the fields, or VPP
    answered with a non-zero ``retval``.  The text names the call; ``msg_name`` and
    ``retval`` are kept for callers that branch on them."""

    def __init__(self, message: str, msg_name: str = "", retval: Optional[int] = None):
        super().__init__(message)
        self.msg_name = msg_name
        self.retval = retval


def retval_meaning(msg_name: str, retval: int) -> str:
    text = MESSAGE_ERRORS.get(msg_name, {}).get(retval) or VNET_API_ERRORS.get(retval)
    return text or "see vnet/api_errno.h"


# --- field builders ---------------------------------------------------------------------------
def sid_list(segments: Sequence[str], weight: int = 1) -> Dict[str, Any]:
    """A ``vl_api_srv6_sid_list_t``: ``sids`` always 16 entries, the count in ``num_sids``."""
    if len(segments) > MAX_SIDS:
        raise ResourceError(f"a segment list holds at most {MAX_SIDS} SIDs on VPP, got {len(segments)}")
    return {"num_sids": len(segments), "weight": int(weight), "sids": list(segments) + ["::"] * (MAX_SIDS - len(segments))}


def label_stack() -> List[Dict[str, int]]:
    """The 16-entry ``vl_api_fib_mpls_label_t`` array every FIB path carries (unused here)."""
    return [{"is_uniform": 0, "label": 0, "ttl": 0, "exp": 0} for _label in range(LABEL_STACK_SIZE)]


def fib_path(sw_if_index: int = NO_INDEX, nexthop: Optional[str] = None, is_ip6: bool = True,
             path_type: int = FIB_PATH_TYPE_NORMAL, table_id: int = 0, weight: int = 1) -> Dict[str, Any]:
    """A complete ``vl_api_fib_path_t``.  With no interface and no next hop it is a lookup in
    ``table_id`` (VPP's "via ip6-lookup-in-table")."""
    zero = "::" if is_ip6 else "0.0.0.0"
    return {
        "sw_if_index": sw_if_index, "table_id": table_id, "rpf_id": 0, "weight": weight, "preference": 0,
        "type": path_type, "flags": 0, "proto": FIB_PATH_NH_PROTO_IP6 if is_ip6 else FIB_PATH_NH_PROTO_IP4,
        "nh": {"address": {"ip6" if is_ip6 else "ip4": nexthop or zero}, "via_label": 0, "obj_id": 0, "classify_table_index": 0},
        "n_labels": 0, "label_stack": label_stack(),
    }


def ip_route(prefix: str, paths: Sequence[Mapping[str, Any]], table_id: int = 0) -> Dict[str, Any]:
    """A ``vl_api_ip_route_t`` (``n_paths`` = ``len(paths)``)."""
    return {"table_id": table_id, "stats_index": 0, "prefix": prefix, "n_paths": len(paths), "paths": list(paths)}


def ip_table(table_id: int, is_ip6: bool, name: str = "") -> Dict[str, Any]:
    return {"table_id": table_id, "is_ip6": is_ip6, "name": name}


# --- reply readers (vpp_papi turns addresses into ipaddress objects) ---------------------
def text(value: Any) -> str:
    """An address, prefix or interface address of a reply as canonical text."""
    if isinstance(value, (bytes, bytearray)):
        return str(ipaddress.ip_address(bytes(value)))
    return str(value)


def union_address(un: Any, is_ip6: bool) -> str:
    """The address in a ``vl_api_address_union_t`` (which holds both readings of its bytes)."""
    return text(un.ip6 if is_ip6 else un.ip4)


def is_zero_address(value: str) -> bool:
    return value in ("::", "0.0.0.0", "")


# --- the client ---------------------------------------------------------------------------
class VppClient:
    """A connected vpp_papi ``VPPApiClient`` (``papi``) with checked calls.  ``where`` names
    the VPP in messages (its socket)."""

    def __init__(self, papi: Any, where: str = DEFAULT_SOCKET):
        self.papi = papi
        self.where = where
        self._interfaces: Optional[Dict[str, int]] = None

    # --- messages -------------------------------------------------------------------------
    def has(self, msg_name: str) -> bool:
        """Whether VPP answers ``msg_name`` (a message whose CRC did not match is absent)."""
        try:
            api = self.papi.api
        except Exception:  # noqa: BLE001 -- vpp_papi raises its own error when not connected
            return False
        return hasattr(api, msg_name)

    def missing(self, names: Iterable[str]) -> List[str]:
        return [n for n in names if not self.has(n)]

    def require(self, names: Iterable[str]) -> None:
        missing = self.missing(names)
        if missing:
            known = getattr(self.papi, "messages", {}) or {}
            why = []
            for name in missing:
                reason = "CRC differs from the loaded API definitions" if name in known else "unknown to this VPP: plugin not loaded or API too old"
                why.append(f"{name} ({reason})")
            raise VppError(f"VPP {self.where}: required API message(s) missing: {'; '.join(why)}", msg_name=missing[0])

    def _send(self, msg_name: str, fields: Mapping[str, Any]) -> Any:
        if not self.has(msg_name):
            self.require([msg_name])
        function = getattr(self.papi.api, msg_name)
        try:
            return function(**fields)
        except (ValueError, TypeError, KeyError, struct.error) as exc:
            # vpp_papi's serializer refused the fields (wrong name, type, array length):
            # a driver bug, reported without the field values (they may hold keys).
            raise VppError(f"VPP {self.where}: {msg_name}: the request was refused before sending: "
                           f"{type(exc).__name__}: {_first_line(exc)}", msg_name=msg_name) from None
        except (OSError, RuntimeError) as exc:
            raise VppError(f"VPP {self.where}: {msg_name}: {type(exc).__name__}: {_first_line(exc)}", msg_name=msg_name) from None

    def call(self, msg_name: str, **fields: Any) -> Any:
        """Send ``msg_name`` and return its reply; a non-zero ``retval`` raises :class:`VppError`."""
        reply = self._send(msg_name, fields)
        if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[1], list):
            reply = reply[0]
        retval = getattr(reply, "retval", 0)
        if retval:
            raise VppError(f"VPP {self.where}: {msg_name} failed: retval {retval} ({retval_meaning(msg_name, retval)})",
                           msg_name=msg_name, retval=retval)
        return reply

    def dump(self, msg_name: str, **fields: Any) -> List[Any]:
        """Send a dump and return its details as a list (old- and new-style streams)."""
        reply = self._send(msg_name, fields)
        if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[1], list):
            head, details = reply
            retval = getattr(head, "retval", 0)
            if retval:
                raise VppError(f"VPP {self.where}: {msg_name} failed: retval {retval} ({retval_meaning(msg_name, retval)})",
                               msg_name=msg_name, retval=retval)
            return list(details)
        return list(reply or [])

    def close(self) -> None:
        try:
            self.papi.disconnect()
        except Exception:  # noqa: BLE001 -- closing is best effort
            pass

    # --- interfaces -----------------------------------------------------------------------
    def interfaces(self, refresh: bool = False) -> Dict[str, int]:
        """Every interface: name -> sw_if_index (cached until :meth:`forget_interfaces`)."""
        if self._interfaces is None or refresh:
            details = self.dump("sw_interface_dump", sw_if_index=NO_INDEX, name_filter_valid=False, name_filter="")
            self._interfaces = {d.interface_name: int(d.sw_if_index) for d in details}
        return dict(self._interfaces)

    def interface_details(self) -> List[Any]:
        return self.dump("sw_interface_dump", sw_if_index=NO_INDEX, name_filter_valid=False, name_filter="")

    def forget_interfaces(self) -> None:
        self._interfaces = None

    def interface_index(self, name: str) -> int:
        """``name``'s sw_if_index (``sw_interface_dump`` with ``name_filter``, which matches
        substrings: the exact name is picked)."""
        if self._interfaces is not None and name in self._interfaces:
            return self._interfaces[name]
        details = self.dump("sw_interface_dump", sw_if_index=NO_INDEX, name_filter_valid=True, name_filter=name)
        for d in details:
            if d.interface_name == name:
                return int(d.sw_if_index)
        raise VppError(f"VPP {self.where}: no interface named {name!r}", msg_name="sw_interface_dump")

    def interface_name(self, sw_if_index: int) -> Optional[str]:
        for name, index in self.interfaces().items():
            if index == sw_if_index:
                return name
        for name, index in self.interfaces(refresh=True).items():
            if index == sw_if_index:
                return name
        return None


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0][:200] if msg else ""


def connect(socket: str = DEFAULT_SOCKET, api_dir: Optional[str] = None, required: Sequence[str] = REQUIRED_MESSAGES,
            client_name: str = CLIENT_NAME) -> VppClient:
    """Connect to VPP's API socket.  Without ``api_dir`` the message definitions come from
    the running VPP (``bootstrapapi=True``), so they always match it; with ``api_dir`` (VPP's
    ``share/vpp/api``) they come from its JSON files.  Every message in ``required`` must be
    available, else :class:`VppError` names the missing ones."""
    try:
        from vpp_papi import VPPApiClient  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise VppError("the vpp dataplane needs the Python package vpp_papi (pip install vpp_papi) "
                       "on the host that runs the task") from None
    try:
        if api_dir:
            papi = VPPApiClient(apidir=api_dir, server_address=socket)
        else:
            papi = VPPApiClient(server_address=socket, bootstrapapi=True)
        papi.connect(client_name)
    except Exception as exc:  # noqa: BLE001 -- vpp_papi raises many kinds; all mean "cannot connect"
        raise VppError(f"VPP {socket}: cannot connect to the API socket{f' with API files from {api_dir}' if api_dir else ''}: "
                       f"{type(exc).__name__}: {_first_line(exc)}") from None
    client = VppClient(papi, where=socket)
    try:
        client.require(required)
    except VppError:
        client.close()
        raise
    return client


# --- doing several calls as one ------------------------------------------------------------
class Journal:
    """Calls made so far and how to undo each, so that several calls act as one: on a
    failure, :meth:`rollback` undoes the ones made, newest first."""

    def __init__(self) -> None:
        self._undo: List[Tuple[str, Callable[[], Any]]] = []

    def do(self, what: str, action: Callable[[], Any], undo: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run ``action``; remember ``undo(result)`` (if given) for :meth:`rollback`."""
        result = action()
        if undo is not None:
            self._undo.append((what, lambda: undo(result)))
        return result

    def rollback(self) -> List[str]:
        """Undo everything done, newest first; the undo steps that failed, as text."""
        errors = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 -- keep undoing the rest
                errors.append(f"{what}: {exc}")
        return errors


Step = Tuple[str, Callable[[], Any], Optional[Callable[[], Any]]]


def run_steps(steps: Sequence[Step]) -> None:
    """Run ``(description, do, undo)`` steps in order; when one fails, undo the ones done (in
    reverse) and raise the failure, so that a change is all-or-nothing on its own."""
    journal = Journal()
    for what, action, undo in steps:
        try:
            journal.do(what, action, (lambda _result, u=undo: u()) if undo is not None else None)
        except Exception as exc:
            errors = journal.rollback()
            if errors:
                raise ResourceError(f"{exc}; undoing the first part of this change also failed: {'; '.join(errors)}") from None
            raise


# --- ownership registry --------------------------------------------------------------------
#: IPv6 FIB table ids of the registries (ASCII "npm" + 1..4): outside the range of the
#: class tables (:func:`npms.resources.srv6.class_mark`, at most 0xFFFF) and of usual VRF ids
REGISTRY_TABLES = {"srv6_localsid": 0x6E706D01, "srv6_policy": 0x6E706D02, "srv6_route": 0x6E706D03, "wireguard": 0x6E706D04}
#: entries VPP itself puts in every IPv6 table (never registry entries)
IP6_TABLE_DEFAULTS = ("::/0", "fe80::/10")


class Registry:
    """What one resource created on this VPP, recorded on the VPP (see the module docstring)."""

    def __init__(self, client: VppClient, resource: str):
        self.client = client
        self.resource = resource
        self.table_id = REGISTRY_TABLES[resource]
        self.name = f"npms-registry:{resource}"

    def entries(self) -> Set[str]:
        routes = self.client.dump("ip_route_dump", table=ip_table(self.table_id, True))
        return {text(r.route.prefix) for r in routes} - set(IP6_TABLE_DEFAULTS)

    def ensure(self) -> None:
        """Create the registry table (adding an existing table again changes nothing)."""
        self.client.call("ip_table_add_del", is_add=True, table=ip_table(self.table_id, True, self.name))

    def add(self, prefix: str) -> None:
        self.ensure()
        self.client.call("ip_route_add_del", is_add=True, is_multipath=False,
                         route=ip_route(prefix, [fib_path(path_type=FIB_PATH_TYPE_DROP)], self.table_id))

    def remove(self, prefix: str) -> None:
        self.client.call("ip_route_add_del", is_add=False, is_multipath=False, route=ip_route(prefix, [], self.table_id))

    def describe(self, op: str, prefix: str) -> str:
        return f"ip_route_add_del is_add={op == 'add'} table={self.table_id} ({self.name}) prefix={prefix}" + (" drop" if op == "add" else "")
