# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake VPP at the vpp_papi boundary, for the VPP driver's unit tests.

:class:`FakeVpp` holds a VPP's state (interfaces, FIB tables and routes, SRv6 local SIDs,
policies and steering, classifier tables and input ACLs, WireGuard interfaces and peers)
and answers the messages of ``tests/fixtures/vpp/messages.json``: a transcription, field
by field, of the real ``.api`` definitions (the file names the FDio/vpp files and commits).
:class:`FakePapi` stands in for ``vpp_papi.VPPApiClient`` (``connect``, ``disconnect``,
``api.<message>(**fields)``, ``messages``).

Every call is checked before it is handled:

* the message exists (and is not made "absent", the way vpp_papi leaves out a message
  whose CRC differs from the running VPP's);
* :class:`ApiSchema` (our own checker): every field sent exists, has the right type and
  range, fixed arrays have their full length, variable arrays match their count field,
  enums hold one of their values, no field without a default in the ``.api`` is missing
  (stricter than vpp_papi, which zero-fills: a zero-filled field is a bug waiting);
* vpp_papi's own serializer, loaded from the same fixture, packs the call: what the fake
  accepts, the real client can send.

Replies are packed and unpacked by vpp_papi too, so they are the namedtuples a real VPP
gives (addresses as ``ipaddress`` objects, enums as ``IntFlag``, ``retval`` set).  A
non-zero ``retval`` is a reply, not an exception, exactly as with vpp_papi.

The semantics are VPP's where the driver depends on them (duplicate local SID -> -1,
``input_acl_set_interface`` silently keeping a table already set, VPP's own entries in
every new FIB table, ...).  Where real VPP would silently corrupt itself (deleting a FIB
table an SR steering entry or classifier session still uses, a WireGuard interface with
no source address), the fake records a :attr:`FakeVpp.violations` entry and raises
:class:`FakeIntegrityError`: the tests check that the driver never does that.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "vpp", "messages.json")
NO_INDEX = 0xFFFFFFFF
HEADER_FIELDS = ("_vl_msg_id", "client_index", "context")
READ_ONLY = ("classify_table_ids", "classify_table_info", "classify_table_by_interface", "sw_interface_get_table",
             "ip_route_lookup")
INT_RANGES = {
    "u8": (0, 2**8 - 1), "u16": (0, 2**16 - 1), "u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1),
    "i8": (-2**7, 2**7 - 1), "i16": (-2**15, 2**15 - 1), "i32": (-2**31, 2**31 - 1), "i64": (-2**63, 2**63 - 1),
}
SOURCE_PRIORITY = ("special", "interface", "api", "default")


class FakeVppRejected(ValueError):
    """A call the real client or VPP would refuse (vpp_papi raises ValueError subclasses)."""


class FakeIntegrityError(AssertionError):
    """The driver did something real VPP accepts but that leaves it broken."""


def is_mutating(msg_name: str) -> bool:
    return not msg_name.endswith("_dump") and msg_name not in READ_ONLY


# --- the schema -------------------------------------------------------------------------------
class ApiSchema:
    """The message definitions of the fixture, and a strict checker of calls against them."""

    def __init__(self, path: str = SCHEMA_PATH):
        with open(path, encoding="utf-8") as handle:
            self.raw = json.load(handle)
        self.aliases = {f"vl_api_{k}_t": v for k, v in self.raw["aliases"].items()}
        self.enums: Dict[str, Dict[str, int]] = {}
        self.flags: Dict[str, Dict[str, int]] = {}
        for kind, target in (("enums", self.enums), ("enumflags", self.flags)):
            for enum in self.raw[kind]:
                target[f"vl_api_{enum[0]}_t"] = {e[0]: e[1] for e in enum[1:] if isinstance(e, list)}
        self.unions = {f"vl_api_{u[0]}_t": [f for f in u[1:] if isinstance(f, list)] for u in self.raw["unions"]}
        self.types = {f"vl_api_{t[0]}_t": [f for f in t[1:] if isinstance(f, list)] for t in self.raw["types"]}
        self.messages = {m[0]: [f for f in m[1:] if isinstance(f, list)] for m in self.raw["messages"]}
        self.services = self.raw["services"]
        self._papi = None

    # vpp_papi's own serializer over the same definitions
    def papi_messages(self) -> Dict[str, Any]:
        if self._papi is None:
            from vpp_papi.vpp_papi import VPPApiJSONFiles  # pylint: disable=import-outside-toplevel
            raw = {k: copy.deepcopy(v) for k, v in self.raw.items() if not k.startswith("_")}
            self._papi, _services = VPPApiJSONFiles._process_json(raw)  # pylint: disable=protected-access
        return self._papi

    def check(self, msg_name: str, fields: Mapping[str, Any]) -> None:
        if msg_name not in self.messages:
            raise FakeVppRejected(f"{msg_name}: no such message in the API definitions")
        self._fields(msg_name, self.messages[msg_name], fields, top=True)
        try:
            self.papi_messages()[msg_name].pack(dict(fields))
        except Exception as exc:  # noqa: BLE001 -- whatever vpp_papi refuses is refused
            raise FakeVppRejected(f"{msg_name}: vpp_papi's serializer refused it: {type(exc).__name__}: {exc}") from None

    def _fields(self, where: str, definition: Sequence[list], data: Any, top: bool = False) -> None:
        if not isinstance(data, Mapping):
            raise FakeVppRejected(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        names = [f[1] for f in definition]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise FakeVppRejected(f"{where}: unknown field(s) {', '.join(unknown)} (fields: {', '.join(n for n in names if n not in HEADER_FIELDS)})")
        for fdef in definition:
            ftype, fname = fdef[0], fdef[1]
            options = next((x for x in fdef[2:] if isinstance(x, dict)), {})
            dims = [x for x in fdef[2:] if not isinstance(x, dict)]
            path = f"{where}.{fname}"
            if top and fname in HEADER_FIELDS:
                continue
            if fname not in data:
                if "default" in options:
                    continue
                raise FakeVppRejected(f"{path}: missing (the .api gives it no default)")
            value = data[fname]
            if not dims:
                self._value(path, ftype, value)
            elif len(dims) == 1:
                self._array(path, ftype, value, dims[0])
            else:
                count = data.get(dims[1])
                if not isinstance(count, int):
                    raise FakeVppRejected(f"{path}: its count field {dims[1]} is missing")
                self._array(path, ftype, value, count, variable=True)

    def _array(self, path: str, ftype: str, value: Any, length: int, variable: bool = False) -> None:
        if ftype == "string":
            if not isinstance(value, str):
                raise FakeVppRejected(f"{path}: expected a string, got {type(value).__name__}")
            if length and len(value) > length - 1:
                raise FakeVppRejected(f"{path}: at most {length - 1} characters, got {len(value)}")
            return
        if ftype == "u8":
            if not isinstance(value, (bytes, bytearray)):
                raise FakeVppRejected(f"{path}: expected bytes, got {type(value).__name__}")
            if (length or variable) and len(value) != length:
                raise FakeVppRejected(f"{path}: expected {length} bytes, got {len(value)}")
            return
        if not isinstance(value, (list, tuple)):
            raise FakeVppRejected(f"{path}: expected a list, got {type(value).__name__}")
        if len(value) != length:
            what = "its count field says" if variable else "the array is fixed at"
            raise FakeVppRejected(f"{path}: {len(value)} element(s), {what} {length}")
        for i, element in enumerate(value):
            self._value(f"{path}[{i}]", ftype, element)

    def _value(self, path: str, ftype: str, value: Any) -> None:
        if ftype in INT_RANGES:
            if isinstance(value, bool) or not isinstance(value, int):
                raise FakeVppRejected(f"{path}: expected an integer ({ftype}), got {value!r}")
            lo, hi = INT_RANGES[ftype]
            if not lo <= value <= hi:
                raise FakeVppRejected(f"{path}: {value} is out of range for {ftype}")
        elif ftype == "bool":
            if not (isinstance(value, bool) or value in (0, 1)):
                raise FakeVppRejected(f"{path}: expected a bool, got {value!r}")
        elif ftype in self.enums:
            if isinstance(value, bool) or not isinstance(value, int) or int(value) not in self.enums[ftype].values():
                raise FakeVppRejected(f"{path}: {value!r} is not a value of {ftype} ({sorted(self.enums[ftype].values())})")
        elif ftype in self.flags:
            allowed = 0
            for bit in self.flags[ftype].values():
                allowed |= bit
            if isinstance(value, bool) or not isinstance(value, int) or int(value) & ~allowed:
                raise FakeVppRejected(f"{path}: {value!r} is not a combination of {ftype} flags")
        elif ftype in self.aliases:
            self._alias(path, ftype, value)
        elif ftype in self.unions:
            if not isinstance(value, Mapping) or len(value) != 1:
                raise FakeVppRejected(f"{path}: a union takes exactly one member, got {value!r}")
            member = dict((f[1], f[0]) for f in self.unions[ftype])
            (key, inner), = value.items()
            if key not in member:
                raise FakeVppRejected(f"{path}: {key!r} is not a member of {ftype} ({', '.join(member)})")
            self._value(f"{path}.{key}", member[key], inner)
        elif ftype == "vl_api_address_t" and not isinstance(value, Mapping):
            _address(path, value)
        elif ftype == "vl_api_prefix_t" and not isinstance(value, Mapping):
            _network(path, value, strict=False)
        elif ftype in self.types:
            self._fields(path, self.types[ftype], value)
        else:
            raise FakeVppRejected(f"{path}: unknown type {ftype}")

    def _alias(self, path: str, ftype: str, value: Any) -> None:
        alias = self.aliases[ftype]
        if ftype == "vl_api_ip4_address_t":
            _address(path, value, 4)
        elif ftype == "vl_api_ip6_address_t":
            _address(path, value, 6)
        elif ftype == "vl_api_address_with_prefix_t":
            if isinstance(value, Mapping):
                self._fields(path, self.types["vl_api_prefix_t"], value)
            else:
                try:
                    ipaddress.ip_interface(str(value))
                except ValueError:
                    raise FakeVppRejected(f"{path}: {value!r} is not address/length") from None
        elif "length" in alias:
            self._array(path, alias["type"], value, alias["length"])
        else:
            self._value(path, alias["type"], value)


def _address(path: str, value: Any, version: Optional[int] = None) -> str:
    if isinstance(value, (bytes, bytearray)):
        if version and len(value) != (4 if version == 4 else 16):
            raise FakeVppRejected(f"{path}: {len(value)} bytes is not an IPv{version} address")
        return str(ipaddress.ip_address(bytes(value)))
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise FakeVppRejected(f"{path}: {value!r} is not an IP address") from None
    if version and ip.version != version:
        raise FakeVppRejected(f"{path}: {value!r} is not an IPv{version} address")
    return str(ip)


def _network(path: str, value: Any, strict: bool = True) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=strict))
    except ValueError:
        raise FakeVppRejected(f"{path}: {value!r} is not a prefix") from None


def _addr_text(value: Any) -> str:
    """An address given as str, ipaddress object, bytes or ``{"af", "un"}``."""
    if isinstance(value, Mapping):
        un = value["un"]
        return _addr_text(un.get("ip6") if value.get("af") == 1 else un.get("ip4"))
    if isinstance(value, (bytes, bytearray)):
        return str(ipaddress.ip_address(bytes(value)))
    return str(ipaddress.ip_address(str(value)))


def _prefix_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(ipaddress.ip_network(f"{_addr_text(value['address'])}/{value['len']}", strict=False))
    return str(ipaddress.ip_network(str(value), strict=False))


def _x25519_public(private: bytes) -> bytes:
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    except ImportError:  # the shape is what matters to the tests
        return hashlib.sha256(private).digest()
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- the fake VPP -----------------------------------------------------------------------------
class FakeVpp:
    """A VPP's state and its answers to the fixture's messages (see the module docstring)."""

    def __init__(self, schema: Optional[ApiSchema] = None):
        self.schema = schema or ApiSchema()
        self.calls: List[Tuple[str, Dict[str, Any]]] = []
        self.violations: List[str] = []
        #: messages left out of ``api`` (as vpp_papi does on a CRC mismatch)
        self.absent: set = set()
        self.connected_clients: List["FakePapi"] = []
        self._failures: List[Dict[str, Any]] = []
        self.interfaces: Dict[int, Dict[str, Any]] = {}
        self.addresses: Dict[int, List[str]] = {}
        self.if_tables: Dict[Tuple[int, bool], int] = {}
        self.tables: Dict[Tuple[bool, int], str] = {}
        self.routes: Dict[Tuple[bool, int], Dict[str, Dict[str, List[Dict[str, Any]]]]] = {}
        self.localsids: Dict[str, Dict[str, Any]] = {}
        self.policies: Dict[str, Dict[str, Any]] = {}
        self.next_sl_index = 0
        self.next_policy_index = 0
        self.steering: Dict[Tuple[int, str, int], str] = {}
        self.classify: Dict[int, Dict[str, Any]] = {}
        self.next_classify = 0
        self.inacl: Dict[Tuple[int, int], int] = {}
        self.wg: Dict[int, Dict[str, Any]] = {}
        self.peers: Dict[int, Dict[str, Any]] = {}
        self.next_peer = 0
        #: what ``sr_set_encap_source`` set: a policy added with encap_src "::" gets it
        self.encaps_source = "::"
        #: wireguard_api.c's wg_api_send_peers_details fills neither peer_index nor
        #: persistent_keepalive nor table_id (they read as 0); True fills them
        self.fill_peer_details = False
        self.add_interface("local0", dev_type="local")
        self._create_table(False, 0, "ipv4-VRF:0")
        self._create_table(True, 0, "ipv6-VRF:0")

    # --- test helpers -----------------------------------------------------------------------
    def client_factory(self) -> Callable[..., "FakePapi"]:
        """A stand-in for ``vpp_papi.VPPApiClient`` (its keyword arguments are recorded)."""
        def factory(**kwargs):
            return FakePapi(self, **kwargs)
        return factory

    def fail(self, msg_name: str, retval: int = -1, match: Optional[Callable[[Dict[str, Any]], bool]] = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``msg_name`` (for which ``match(fields)``) answer ``retval``."""
        self._failures.append({"msg": msg_name, "retval": retval, "match": match, "times": times})

    def mutating_calls(self) -> List[Tuple[str, Dict[str, Any]]]:
        return [c for c in self.calls if is_mutating(c[0])]

    def names_called(self) -> List[str]:
        return [c[0] for c in self.calls]

    def add_interface(self, name: str, dev_type: str = "ethernet", addresses: Sequence[str] = (), table4: int = 0, table6: int = 0,
                      up: bool = True) -> int:
        idx = max(self.interfaces) + 1 if self.interfaces else 0
        self.interfaces[idx] = {"name": name, "dev_type": dev_type, "flags": 3 if up else 0, "mtu": [9000, 0, 0, 0], "tag": ""}
        self.addresses[idx] = []
        self.if_tables[(idx, False)] = table4
        self.if_tables[(idx, True)] = table6
        for a in addresses:
            self._add_address(idx, a)
        return idx

    def index_of(self, name: str) -> int:
        for idx, itf in self.interfaces.items():
            if itf["name"] == name:
                return idx
        raise KeyError(name)

    def snapshot(self, indexes: bool = True) -> str:
        """Everything the fake holds, as text (to compare before / after).  Without
        ``indexes``, leave out the indexes VPP gives policies and segment lists (a policy
        deleted and added again is the same configuration with new indexes)."""
        def plain(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {repr(k) if not isinstance(k, str) else k: plain(v) for k, v in value.items()
                        if indexes or k not in ("index", "sl_index")}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, (bytes, bytearray)):
                return bytes(value).hex()
            return value
        state = {k: plain(getattr(self, k)) for k in ("interfaces", "addresses", "if_tables", "tables", "routes", "localsids", "policies",
                                                      "steering", "classify", "inacl", "wg", "peers")}
        return json.dumps(state, sort_keys=True)

    def private_keys(self) -> List[str]:
        """The WireGuard private keys the fake made, in base64 and hex (to grep results for)."""
        out = []
        for w in self.wg.values():
            out += [base64.b64encode(w["private_key"]).decode(), w["private_key"].hex()]
        return out

    def forward(self, ifname: str, dst: str, dscp: int = 0) -> Tuple[Any, ...]:
        """Where a packet to ``dst`` with ``dscp`` arriving on ``ifname`` goes: the input ACL
        classifier (as VPP's ip4-inacl / ip6-inacl: a session's SET_IPx_FIB_INDEX action
        picks the FIB), then the longest match among routes and SR steering entries.
        Returns ``("sr", bsid, table)``, ``("via", ifname, table)`` or ``("drop", table)``."""
        sw = self.index_of(ifname)
        is6 = ipaddress.ip_address(dst).version == 6
        table = self.if_tables.get((sw, is6), 0)
        idx = self.inacl.get((sw, 6 if is6 else 4), NO_INDEX)
        seen = set()
        while idx != NO_INDEX and idx in self.classify and idx not in seen:
            seen.add(idx)
            t = self.classify[idx]
            data = _packet_bytes(is6, dscp, t["current_data_flag"])
            start = t["skip"] * 16
            key = bytes(b & m for b, m in zip(data[start:start + len(t["mask"])].ljust(len(t["mask"]), b"\0"), t["mask"]))
            session = t["sessions"].get(key)
            if session is not None:
                if session["action"] in (1, 2):
                    table = session["metadata"]
                break
            idx = t["next_table_index"]
        return self._lookup(is6, table, dst, 0)

    def _lookup(self, is6: bool, table: int, dst: str, depth: int) -> Tuple[Any, ...]:
        address = ipaddress.ip_address(dst)
        best: Optional[Tuple[int, str, Any]] = None
        for prefix, sources in self.routes.get((is6, table), {}).items():
            net = ipaddress.ip_network(prefix)
            if address in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, "route", self._best_paths(sources))
        for (tid, prefix, tt), bsid in self.steering.items():
            net = ipaddress.ip_network(prefix)
            if tid == table and (tt == 6) == is6 and address in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, "sr", bsid)
        if best is None:
            return ("drop", table)
        if best[1] == "sr":
            return ("sr", best[2], table)
        path = best[2][0]
        if path["type"] == 2:
            return ("drop", table)
        if path["sw_if_index"] == NO_INDEX and path["nh"] in ("::", "0.0.0.0") and depth < 4:
            return self._lookup(is6, path["table_id"], dst, depth + 1)
        return ("via", self.interfaces[path["sw_if_index"]]["name"], table)

    # --- the call path ---------------------------------------------------------------------
    def handle(self, msg_name: str, fields: Dict[str, Any]) -> Any:
        self.schema.check(msg_name, fields)
        self.calls.append((msg_name, copy.deepcopy(fields)))
        service = self.schema.services.get(msg_name)
        if service is None:
            raise FakeVppRejected(f"{msg_name}: not a request message")
        for failure in self._failures:
            if failure["msg"] == msg_name and failure["times"] > 0 and (failure["match"] is None or failure["match"](fields)):
                failure["times"] -= 1
                return self._reply(service["reply"], {"retval": failure["retval"]})
        handler = getattr(self, f"_h_{msg_name}")
        answer = handler(dict(fields))
        if service.get("stream"):
            return [self._reply(service["reply"], d) for d in answer]
        return self._reply(service["reply"], answer)

    def _reply(self, msg_name: str, fields: Dict[str, Any]) -> Any:
        msg = self.schema.papi_messages()[msg_name]
        data = dict(fields)
        data.setdefault("context", 1)
        reply, _size = msg.unpack(msg.pack(data))
        return reply

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        raise FakeIntegrityError(text)

    # --- tables and routes --------------------------------------------------------------------
    def _create_table(self, is6: bool, tid: int, name: str = "") -> None:
        self.tables[(is6, tid)] = name or f"ipv{6 if is6 else 4}-VRF:{tid}"
        drop = [{"sw_if_index": NO_INDEX, "table_id": 0, "type": 2, "proto": 1 if is6 else 0, "nh": "::" if is6 else "0.0.0.0", "weight": 1}]
        if is6:
            self.routes[(True, tid)] = {"::/0": {"default": drop}, "fe80::/10": {"special": drop}}
        else:
            self.routes[(False, tid)] = {p: {"default": drop} for p in ("0.0.0.0/0", "0.0.0.0/32", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32")}

    @staticmethod
    def _best_paths(sources: Mapping[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
        for src in SOURCE_PRIORITY:
            if src in sources:
                return sources[src]
        return []

    def _table_users(self, is6: bool, tid: int) -> List[str]:
        users = []
        for (t, prefix, tt), _bsid in self.steering.items():
            if t == tid and (tt == 6) == is6:
                users.append(f"SR steering {prefix}")
        for idx, ct in self.classify.items():
            for s in ct["sessions"].values():
                if s["action"] == (2 if is6 else 1) and s["metadata"] == tid:
                    users.append(f"classify table {idx} session")
        for (sw, six), t in self.if_tables.items():
            if six == is6 and t == tid and sw in self.interfaces:
                users.append(f"interface {self.interfaces[sw]['name']}")
        for sid, ls in self.localsids.items():
            if ls["behavior"] in (8, 9) and ls["sw_if_index"] == tid and (ls["behavior"] == 8) == is6:
                users.append(f"local SID {sid}")
        return users

    def _h_ip_table_add_del(self, f):
        t = f["table"]
        key = (bool(t["is_ip6"]), t["table_id"])
        if f.get("is_add", True):
            if key not in self.tables:
                self._create_table(key[0], key[1], t["name"])
            return {"retval": 0}
        if key[1] == 0:
            return {"retval": -73}
        if key in self.tables:
            users = self._table_users(*key)
            if users:
                self._violation(f"ip_table_add_del: deleting {'ip6' if key[0] else 'ip4'} table {key[1]} still used by {', '.join(users)}")
            del self.tables[key]
            del self.routes[key]
        return {"retval": 0}

    def _h_ip_table_dump(self, f):
        return [{"table": {"table_id": tid, "is_ip6": is6, "name": name}} for (is6, tid), name in sorted(self.tables.items())]

    def _path_in(self, p: Dict[str, Any], is6: bool) -> Tuple[int, Dict[str, Any]]:
        un = p["nh"]["address"]
        nh = _addr_text(un["ip6"] if "ip6" in un else un["ip4"])
        if (p["proto"] == 1) != is6 or ("ip6" in un) != is6:
            return -97, {}
        if p["sw_if_index"] != NO_INDEX and p["sw_if_index"] not in self.interfaces:
            return -2, {}
        if p["type"] == 0 and p["sw_if_index"] == NO_INDEX and nh in ("::", "0.0.0.0") and (is6, p["table_id"]) not in self.tables:
            return -3, {}
        return 0, {"sw_if_index": p["sw_if_index"], "table_id": p["table_id"], "type": int(p["type"]), "proto": int(p["proto"]),
                   "nh": nh, "weight": p["weight"]}

    def _h_ip_route_add_del(self, f):
        r = f["route"]
        prefix = _prefix_text(r["prefix"])
        is6 = ":" in prefix
        key = (is6, r["table_id"])
        if key not in self.tables:
            return {"retval": -3}
        table = self.routes[key]
        if f.get("is_add", True):
            if not r["paths"]:
                return {"retval": -7}
            paths = []
            for p in r["paths"]:
                rv, path = self._path_in(p, is6)
                if rv:
                    return {"retval": rv}
                paths.append(path)
            sources = table.setdefault(prefix, {})
            if f["is_multipath"]:
                sources.setdefault("api", []).extend(paths)
            else:
                sources["api"] = paths
        else:
            sources = table.get(prefix, {})
            sources.pop("api", None)
            if not sources:
                table.pop(prefix, None)
        return {"retval": 0, "stats_index": 0}

    def _route_out(self, is6: bool, tid: int, prefix: str, paths: List[Dict[str, Any]]) -> Dict[str, Any]:
        out_paths = []
        for p in paths:
            out_paths.append({"sw_if_index": p["sw_if_index"], "table_id": p["table_id"], "rpf_id": 0, "weight": p["weight"],
                              "preference": 0, "type": p["type"], "flags": 0, "proto": p["proto"],
                              "nh": {"address": {"ip6" if is6 else "ip4": p["nh"]}, "via_label": 0, "obj_id": 0, "classify_table_index": 0},
                              "n_labels": 0, "label_stack": [{"is_uniform": 0, "label": 0, "ttl": 0, "exp": 0}] * 16})
        return {"table_id": tid, "stats_index": 0, "prefix": prefix, "n_paths": len(out_paths), "paths": out_paths}

    def _h_ip_route_dump(self, f):
        key = (bool(f["table"]["is_ip6"]), f["table"]["table_id"])
        out = []
        for prefix in sorted(self.routes.get(key, {}), key=lambda p: (ipaddress.ip_network(p).prefixlen, p)):
            out.append({"route": self._route_out(key[0], key[1], prefix, self._best_paths(self.routes[key][prefix]))})
        return out

    def _h_ip_route_lookup(self, f):
        prefix = ipaddress.ip_network(_prefix_text(f["prefix"]))
        is6 = prefix.version == 6
        key = (is6, f["table_id"])
        if key not in self.tables:
            return {"retval": -3}
        best = None
        for p in self.routes[key]:
            net = ipaddress.ip_network(p)
            match = net == prefix if f["exact"] else (prefix.subnet_of(net) if net.version == prefix.version else False)
            if match and (best is None or net.prefixlen > ipaddress.ip_network(best).prefixlen):
                best = p
        if best is None:
            return {"retval": -6}
        return {"retval": 0, "route": self._route_out(is6, f["table_id"], best, self._best_paths(self.routes[key][best]))}

    # --- interfaces ----------------------------------------------------------------------------
    def _sw_details(self, idx: int) -> Dict[str, Any]:
        itf = self.interfaces[idx]
        return {"sw_if_index": idx, "sup_sw_if_index": idx, "flags": itf["flags"], "type": 0, "link_duplex": 2, "link_speed": 0,
                "link_mtu": 9000, "mtu": list(itf["mtu"]), "interface_name": itf["name"], "interface_dev_type": itf["dev_type"],
                "tag": itf["tag"]}

    def _h_sw_interface_dump(self, f):
        out = []
        for idx in sorted(self.interfaces):
            name = self.interfaces[idx]["name"]
            if f["name_filter_valid"]:
                if f["name_filter"] not in name:
                    continue
            elif f.get("sw_if_index", NO_INDEX) not in (NO_INDEX, idx):
                continue
            out.append(self._sw_details(idx))
        return out

    def _h_sw_interface_set_flags(self, f):
        if f["sw_if_index"] not in self.interfaces:
            return {"retval": -2}
        self.interfaces[f["sw_if_index"]]["flags"] = (self.interfaces[f["sw_if_index"]]["flags"] & 2) | (int(f["flags"]) & 1)
        return {"retval": 0}

    def _h_sw_interface_set_mtu(self, f):
        if f["sw_if_index"] not in self.interfaces:
            return {"retval": -2}
        self.interfaces[f["sw_if_index"]]["mtu"] = list(f["mtu"])
        return {"retval": 0}

    def _h_sw_interface_tag_add_del(self, f):
        if f["sw_if_index"] not in self.interfaces:
            return {"retval": -2}
        self.interfaces[f["sw_if_index"]]["tag"] = f["tag"] if f["is_add"] else ""
        return {"retval": 0}

    def _h_sw_interface_get_table(self, f):
        if f["sw_if_index"] not in self.interfaces:
            return {"retval": -2}
        return {"retval": 0, "vrf_id": self.if_tables.get((f["sw_if_index"], bool(f["is_ipv6"])), 0)}

    def _add_address(self, idx: int, text: str) -> int:
        itf = ipaddress.ip_interface(text)
        for other, addrs in self.addresses.items():
            if str(itf) in addrs:
                return -114 if other == idx else -127
        self.addresses[idx].append(str(itf))
        is6 = itf.version == 6
        routes = self.routes[(is6, self.if_tables.get((idx, is6), 0))]
        routes.setdefault(str(itf.network), {})["interface"] = [
            {"sw_if_index": idx, "table_id": 0, "type": 0, "proto": 1 if is6 else 0, "nh": "::" if is6 else "0.0.0.0", "weight": 1}]
        return 0

    def _h_sw_interface_add_del_address(self, f):
        idx = f["sw_if_index"]
        if idx not in self.interfaces:
            return {"retval": -2}
        if f["del_all"]:
            self.addresses[idx] = []
            return {"retval": 0}
        text = str(ipaddress.ip_interface(_prefix_text_host(f["prefix"])))
        if f["is_add"]:
            return {"retval": self._add_address(idx, text)}
        if text not in self.addresses[idx]:
            return {"retval": -60}
        self.addresses[idx].remove(text)
        itf = ipaddress.ip_interface(text)
        routes = self.routes[(itf.version == 6, self.if_tables.get((idx, itf.version == 6), 0))]
        routes.get(str(itf.network), {}).pop("interface", None)
        if not routes.get(str(itf.network), True):
            routes.pop(str(itf.network))
        return {"retval": 0}

    def _h_ip_address_dump(self, f):
        idx = f["sw_if_index"]
        return [{"sw_if_index": idx, "prefix": a} for a in self.addresses.get(idx, [])
                if (ipaddress.ip_interface(a).version == 6) == bool(f["is_ipv6"])]

    # --- SRv6 ----------------------------------------------------------------------------------
    def _h_sr_localsid_add_del(self, f):
        sid = _addr_text(f["localsid"])
        if (True, f["fib_table"]) not in self.tables:
            return {"retval": -3}
        if f.get("is_del", False):
            if sid not in self.localsids:
                return {"retval": -2}
            del self.localsids[sid]
            return {"retval": 0}
        if sid in self.localsids:
            return {"retval": -1}
        behavior = int(f["behavior"])
        sw = f.get("sw_if_index", NO_INDEX)
        nh = _addr_text(f["nh_addr"])
        if behavior in (2, 6, 7):
            if sw not in self.interfaces:
                return {"retval": -2}
            if ipaddress.ip_address(nh).version != (4 if behavior == 7 else 6):
                return {"retval": -7}
        if behavior in (8, 9) and ((behavior == 8), sw) not in self.tables:
            return {"retval": -3}
        self.localsids[sid] = {"behavior": behavior, "end_psp": bool(f["end_psp"]), "sw_if_index": sw, "nh": nh,
                               "fib_table": f["fib_table"], "vlan_index": f["vlan_index"]}
        return {"retval": 0}

    def _h_sr_localsids_dump(self, f):
        out = []
        for sid, ls in sorted(self.localsids.items()):
            out.append({"addr": sid, "end_psp": ls["end_psp"], "behavior": ls["behavior"], "fib_table": ls["fib_table"],
                        "vlan_index": ls["vlan_index"], "xconnect_nh_addr": ls["nh"],
                        "xconnect_iface_or_vrf_table": ls["sw_if_index"] if ls["behavior"] in (2, 6, 7, 8, 9) else 0})
        return out

    def _new_sl(self, sids: Mapping[str, Any], weight: int) -> Tuple[int, Dict[str, Any]]:
        n = sids["num_sids"]
        if not 1 <= n <= 16:
            return -7, {}
        segs = [_addr_text(s) for s in sids["sids"][:n]]
        self.next_sl_index += 1
        return 0, {"sl_index": self.next_sl_index, "weight": weight, "segments": segs}

    def _h_sr_policy_add_v2(self, f):
        bsid = _addr_text(f["bsid_addr"])
        # sr_policy_add: -12 for a BSID in use (as a policy or any FIB entry), -13 for a missing table
        if bsid in self.policies or bsid in self.localsids:
            return {"retval": -12}
        if (True, f["fib_table"]) not in self.tables:
            return {"retval": -13}
        rv, sl = self._new_sl(f["sids"], f["sids"]["weight"])  # the handler reads sids.weight
        if rv:
            return {"retval": rv}
        self.next_policy_index += 1
        source = _addr_text(f["encap_src"])
        if source == "::":
            source = self.encaps_source  # vl_api_sr_policy_add_v2_t_handler: sr_get_encaps_source ()
        self.policies[bsid] = {"index": self.next_policy_index, "encap_src": source, "type": int(f.get("type", 0)),
                               "is_encap": bool(f["is_encap"]), "fib_table": f["fib_table"], "sls": [sl]}
        return {"retval": 0}

    def _h_sr_policy_mod_v2(self, f):
        bsid = _addr_text(f["bsid_addr"])
        policy = self.policies.get(bsid)
        if policy is None:
            return {"retval": -1}
        # sr_policy_mod, as sr_policy_rewrite.c: the weight comes from sids.weight (not the
        # top-level weight); -21 for the only list, -22 / -32 for a list not in the policy
        op = int(f["operation"])
        weight = f["sids"]["weight"]
        if op == 1:
            rv, sl = self._new_sl(f["sids"], weight)
            if rv:
                return {"retval": rv}
            policy["sls"].append(sl)
            return {"retval": 0}
        found = [sl for sl in policy["sls"] if sl["sl_index"] == f["sl_index"]]
        if op == 2:
            if len(policy["sls"]) == 1:
                return {"retval": -21}
            if not found:
                return {"retval": -22}
            policy["sls"].remove(found[0])
        elif op == 3:
            if not found:
                return {"retval": -32}
            found[0]["weight"] = weight
        else:
            return {"retval": -1}
        return {"retval": 0}

    def _h_sr_policy_del(self, f):
        bsid = _addr_text(f["bsid_addr"])
        if bsid not in self.policies:
            return {"retval": -1}
        users = [f"{p} (table {t})" for (t, p, _tt), b in self.steering.items() if b == bsid]
        if users:
            self._violation(f"sr_policy_del {bsid}: SR steering still points at it: {', '.join(users)}")
        del self.policies[bsid]
        return {"retval": 0}

    @staticmethod
    def _sl_out(sl: Mapping[str, Any], with_index: bool) -> Dict[str, Any]:
        out = {"num_sids": len(sl["segments"]), "weight": sl["weight"], "sids": sl["segments"] + ["::"] * (16 - len(sl["segments"]))}
        if with_index:
            out["sl_index"] = sl["sl_index"]
        return out

    def _h_sr_policies_v2_dump(self, f):
        return [{"bsid": b, "encap_src": p["encap_src"], "type": p["type"], "is_encap": p["is_encap"], "fib_table": p["fib_table"],
                 "num_sid_lists": len(p["sls"]), "sid_lists": [self._sl_out(sl, False) for sl in p["sls"]]}
                for b, p in sorted(self.policies.items())]

    def _h_sr_policies_with_sl_index_dump(self, f):
        return [{"bsid": b, "is_spray": p["type"] == 1, "is_encap": p["is_encap"], "fib_table": p["fib_table"],
                 "num_sid_lists": len(p["sls"]), "sid_lists": [self._sl_out(sl, True) for sl in p["sls"]]}
                for b, p in sorted(self.policies.items())]

    def _h_sr_steering_add_del(self, f):
        prefix = _prefix_text(f["prefix"])
        tt = int(f["traffic_type"])
        if tt not in (4, 6):
            return {"retval": -1}
        if (tt == 6) != (":" in prefix):
            self._violation(f"sr_steering_add_del: traffic_type {tt} with prefix {prefix}")
        key = (f["table_id"], prefix, tt)
        if f.get("is_del", False):
            if key not in self.steering:
                return {"retval": -4}
            del self.steering[key]
            return {"retval": 0}
        bsid = _addr_text(f["bsid_addr"])
        if bsid not in self.policies:
            return {"retval": -2}
        if tt == 4 and not self.policies[bsid]["is_encap"]:
            return {"retval": -5}
        if (tt == 6, f["table_id"]) not in self.tables:
            self._violation(f"sr_steering_add_del: table {f['table_id']} ({'ip6' if tt == 6 else 'ip4'}) does not exist (VPP would use FIB index ~0)")
        self.steering[key] = bsid
        return {"retval": 0}

    def _h_sr_steering_pol_dump(self, f):
        # sw_if_index is garbage for L3 steering on a real VPP: so it is here.
        return [{"traffic_type": tt, "fib_table": t, "prefix": p, "sw_if_index": 0xDEAD0000 + n, "bsid": b}
                for n, ((t, p, tt), b) in enumerate(sorted(self.steering.items()))]

    # --- classifier --------------------------------------------------------------------------------
    def _h_classify_add_del_table(self, f):
        if f["is_add"]:
            match_n = f.get("match_n_vectors", 1)
            if f["mask_len"] != match_n * 16 or not 1 <= match_n <= 5:
                return {"retval": -7}
            nxt = f.get("next_table_index", NO_INDEX)
            if nxt != NO_INDEX and nxt not in self.classify:
                return {"retval": -65}
            idx = self.next_classify
            self.next_classify += 1
            self.classify[idx] = {"skip": f.get("skip_n_vectors", 0), "match": match_n, "mask": bytes(f["mask"]),
                                  "next_table_index": nxt, "miss_next_index": f.get("miss_next_index", NO_INDEX),
                                  "current_data_flag": f.get("current_data_flag", 0), "current_data_offset": f.get("current_data_offset", 0),
                                  "nbuckets": f.get("nbuckets", 2), "sessions": {}}
            return {"retval": 0, "new_table_index": idx, "skip_n_vectors": self.classify[idx]["skip"], "match_n_vectors": match_n}
        idx = f.get("table_index", NO_INDEX)
        if idx not in self.classify:
            return {"retval": -65}
        users = [f"interface {self.interfaces[sw]['name']}" for (sw, _fam), t in self.inacl.items() if t == idx]
        users += [f"classify table {o}" for o, t in self.classify.items() if t["next_table_index"] == idx and o != idx]
        if users:
            self._violation(f"classify_add_del_table: deleting table {idx} still used by {', '.join(users)}")
        del self.classify[idx]
        return {"retval": 0, "new_table_index": NO_INDEX}

    def _h_classify_add_del_session(self, f):
        t = self.classify.get(f["table_index"])
        if t is None:
            return {"retval": -65}
        if f["match_len"] != (t["skip"] + t["match"]) * 16:
            return {"retval": -7}
        data = bytes(f["match"])[t["skip"] * 16:]
        key = bytes(b & m for b, m in zip(data, t["mask"]))
        if not f["is_add"]:
            if key not in t["sessions"]:
                return {"retval": -6}
            del t["sessions"][key]
            return {"retval": 0}
        action = int(f.get("action", 0))
        metadata = f.get("metadata", 0)
        if action in (1, 2) and (action == 2, metadata) not in self.tables:
            # VPP's fib_table_find_or_create_and_lock: an unnamed table appears
            self._create_table(action == 2, metadata)
        t["sessions"][key] = {"hit_next_index": f.get("hit_next_index", NO_INDEX), "opaque_index": f.get("opaque_index", NO_INDEX),
                              "advance": f.get("advance", 0), "action": action, "metadata": metadata}
        return {"retval": 0}

    def _h_classify_table_ids(self, f):
        ids = sorted(self.classify)
        return {"retval": 0, "count": len(ids), "ids": ids}

    def _h_classify_table_info(self, f):
        t = self.classify.get(f["table_id"])
        if t is None:
            return {"retval": -91}
        return {"retval": 0, "table_id": f["table_id"], "nbuckets": t["nbuckets"], "match_n_vectors": t["match"], "skip_n_vectors": t["skip"],
                "active_sessions": len(t["sessions"]), "next_table_index": t["next_table_index"], "miss_next_index": t["miss_next_index"],
                "mask_length": len(t["mask"]), "mask": t["mask"]}

    def _h_classify_session_dump(self, f):
        t = self.classify.get(f["table_id"])
        if t is None:
            return []
        return [{"retval": 0, "table_id": f["table_id"], "hit_next_index": s["hit_next_index"], "advance": s["advance"],
                 "opaque_index": s["opaque_index"], "match_length": len(key), "match": key}
                for key, s in sorted(t["sessions"].items())]

    def _h_classify_table_by_interface(self, f):
        sw = f["sw_if_index"]
        if sw not in self.interfaces:
            return {"retval": -2}
        return {"retval": 0, "sw_if_index": sw, "l2_table_id": NO_INDEX, "ip4_table_id": self.inacl.get((sw, 4), NO_INDEX),
                "ip6_table_id": self.inacl.get((sw, 6), NO_INDEX)}

    def _h_input_acl_set_interface(self, f):
        # VPP's vnet_set_in_out_acl_intfc: per table type in order; an add where a table is
        # already set returns 0 without changing anything; a delete must name the table set.
        sw = f["sw_if_index"]
        if sw not in self.interfaces:
            return {"retval": -2}
        for fam, idx in ((4, f["ip4_table_index"]), (6, f["ip6_table_index"]), ("l2", f["l2_table_index"])):
            if idx == NO_INDEX:
                continue
            if idx not in self.classify:
                return {"retval": -65}
            current = self.inacl.get((sw, fam), NO_INDEX)
            if not f["is_add"] and idx != current:
                return {"retval": -65}
            if f["is_add"] and current != NO_INDEX:
                return {"retval": 0}
            if f["is_add"]:
                self.inacl[(sw, fam)] = idx
            else:
                del self.inacl[(sw, fam)]
        return {"retval": 0}

    # --- WireGuard ---------------------------------------------------------------------------------
    def _h_wireguard_interface_create(self, f):
        itf = f["interface"]
        used = {w["instance"] for w in self.wg.values()}
        instance = itf.get("user_instance", NO_INDEX)
        if instance == NO_INDEX:
            instance = min(set(range(len(used) + 1)) - used)
        elif instance in used:
            return {"retval": -31}
        src = _addr_text(itf["src_ip"])
        if src in ("0.0.0.0", "::"):
            self._violation("wireguard_interface_create without src_ip: VPP would send its packets from 0.0.0.0")
        if f["generate_key"]:
            private = os.urandom(32)
        else:
            private = bytes(itf["private_key"])
            if private == bytes(32):
                return {"retval": -7}
        sw = self.add_interface(f"wg{instance}", dev_type="wireguard", up=False)
        self.wg[sw] = {"instance": instance, "port": itf["port"], "src": src, "private_key": private, "public_key": _x25519_public(private)}
        return {"retval": 0, "sw_if_index": sw}

    def _h_wireguard_interface_delete(self, f):
        sw = f["sw_if_index"]
        if sw not in self.wg:
            return {"retval": -2}
        for idx in [i for i, p in self.peers.items() if p["sw_if_index"] == sw]:
            del self.peers[idx]
        for a in list(self.addresses.get(sw, [])):
            self._h_sw_interface_add_del_address({"sw_if_index": sw, "is_add": False, "del_all": False, "prefix": a})
        del self.wg[sw]
        del self.interfaces[sw]
        self.inacl = {k: v for k, v in self.inacl.items() if k[0] != sw}
        return {"retval": 0}

    def _h_wireguard_interface_dump(self, f):
        out = []
        for sw, w in sorted(self.wg.items()):
            if f.get("sw_if_index", NO_INDEX) not in (NO_INDEX, sw):
                continue
            # (wireguard_if_send_details does not fill user_instance)
            out.append({"interface": {"user_instance": 0, "sw_if_index": sw,
                                      "private_key": w["private_key"] if f["show_private_key"] else bytes(32),
                                      "public_key": w["public_key"], "port": w["port"], "src_ip": w["src"]}})
        return out

    def _h_wireguard_peer_add(self, f):
        p = f["peer"]
        if p["sw_if_index"] not in self.wg:
            return {"retval": -2}
        if p["n_allowed_ips"] == 0:
            return {"retval": -7}
        key = bytes(p["public_key"])
        if any(q["public_key"] == key for q in self.peers.values()):
            return {"retval": -116}
        idx = self.next_peer
        self.next_peer += 1
        self.peers[idx] = {"public_key": key, "port": p["port"], "persistent_keepalive": p["persistent_keepalive"],
                           "table_id": p["table_id"], "endpoint": _addr_text(p["endpoint"]), "sw_if_index": p["sw_if_index"],
                           "allowed_ips": [_prefix_text(a) for a in p["allowed_ips"]]}
        return {"retval": 0, "peer_index": idx}

    def _h_wireguard_peer_remove(self, f):
        if f["peer_index"] not in self.peers:
            return {"retval": -6}
        del self.peers[f["peer_index"]]
        return {"retval": 0}

    def _h_wireguard_peers_dump(self, f):
        want = f.get("peer_index", NO_INDEX)
        fill = self.fill_peer_details
        return [{"peer": {"peer_index": idx if fill else 0, "public_key": p["public_key"], "port": p["port"],
                          "persistent_keepalive": p["persistent_keepalive"] if fill else 0, "table_id": p["table_id"] if fill else 0,
                          "endpoint": p["endpoint"], "sw_if_index": p["sw_if_index"], "flags": 0,
                          "n_allowed_ips": len(p["allowed_ips"]), "allowed_ips": list(p["allowed_ips"])}}
                for idx, p in sorted(self.peers.items()) if want in (NO_INDEX, idx)]


def _prefix_text_host(value: Any) -> str:
    """An address/length (host bits kept)."""
    if isinstance(value, Mapping):
        return f"{_addr_text(value['address'])}/{value['len']}"
    return str(ipaddress.ip_interface(str(value)))


def _packet_bytes(is6: bool, dscp: int, current_data_flag: int) -> bytes:
    """The first bytes a classifier sees of a packet with ``dscp``: from the IP header when
    the table classifies from the current data (flag 1, as in ip4-inacl), else from the
    Ethernet header before it (flag 0, VPP's default)."""
    tos = dscp << 2
    if is6:
        ip = bytes([0x60 | (tos >> 4), (tos & 0x0F) << 4]) + bytes(38)
        eth = bytes(12) + b"\x86\xdd"
    else:
        ip = bytes([0x45, tos]) + bytes(18)
        eth = bytes(12) + b"\x08\x00"
    return ip if current_data_flag == 1 else eth + ip


class _Api:
    """``VPPApiClient.api``: one function per message VPP knows (CRC matched)."""


class FakePapi:
    """A stand-in for ``vpp_papi.VPPApiClient`` bound to a :class:`FakeVpp`."""

    def __init__(self, vpp: FakeVpp, **kwargs: Any):
        self.vpp = vpp
        self.kwargs = kwargs
        self.messages = dict(vpp.schema.messages)
        self._api: Optional[_Api] = None

    @property
    def api(self) -> _Api:
        if self._api is None:
            raise RuntimeError("Not connected, api definitions not available")
        return self._api

    def connect(self, name: str, *args: Any, **kwargs: Any) -> int:
        api = _Api()
        for msg_name in self.vpp.schema.services:
            if msg_name in self.vpp.absent:
                continue
            setattr(api, msg_name, self._function(msg_name))
        self._api = api
        self.vpp.connected_clients.append(self)
        return 0

    def _function(self, msg_name: str) -> Callable[..., Any]:
        def call(**fields: Any) -> Any:
            return self.vpp.handle(msg_name, fields)
        call.__name__ = msg_name
        return call

    def disconnect(self) -> int:
        self._api = None
        return 0
