# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load and validate an NPMS inventory.

Two input shapes are accepted:

* an **Ansible YAML inventory** -- a directory holding ``hosts.yml`` (groups ``core``,
  ``edge`` and ``customer``), ``group_vars/`` and ``host_vars/``, or a single YAML file
  with the same ``all:`` tree and inline ``vars``;
* a **merged dict** (``hosts`` plus the global ``npms_*`` keys), the shape
  :func:`inventory_to_data` writes, used by fixtures, golden files and the lookup plugin.

Validation never stops at the first problem: every problem is collected as a
:class:`Problem` naming the file, the object and the field, and all of them are raised
together in one :class:`InventoryError`, so an operator fixes a whole inventory in one
pass, before anything touches a node.

Only PyYAML and the standard library are used here: this module must import in
``ansible-test sanity`` and inside AnsiballZ payloads.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar, Union

try:
    import yaml
except ImportError:  # the sanity import test offers module_utils no PyYAML
    yaml = None

from .model import (
    DATAPLANES,
    LINK_KINDS,
    ROLES,
    BGP_SESSIONS,
    SLA_MODES,
    UPSTREAM_MODES,
    Attachment,
    Fec,
    Interface,
    Inventory,
    Link,
    Node,
    PceSettings,
    Site,
    SlaProfile,
    Tenant,
    TrafficClass,
)

__all__ = [
    "GLOBAL_KEYS",
    "HOST_KEYS",
    "InventoryError",
    "Problem",
    "inventory_from_data",
    "inventory_to_data",
    "load_inventory",
]

# Variables set once for the whole network (group_vars/all) ...
GLOBAL_KEYS = ("npms_sites", "npms_links", "npms_sla_profiles", "npms_tenants", "npms_pce")
# ... and per host (host_vars, group_vars/<group>, or group_vars/all as a default).
HOST_KEYS = (
    "npms_role",
    "npms_site",
    "npms_node_id",
    "npms_dataplane",
    "npms_locator",
    "npms_loopback",
    "npms_wan_address",
    "npms_upstreams",
    "npms_asn",
    "npms_interfaces",
)
_NPMS_PREFIX = "npms_"

SITE_KEYS = ("country", "region", "lat", "lon", "city")
LINK_KEYS = ("a", "b", "kind", "cost", "latency_ms", "jitter_ms", "loss_pct", "bandwidth_mbps", "via_countries", "name")
PROFILE_KEYS = (
    "mode",
    "max_latency_ms",
    "max_jitter_ms",
    "max_loss_pct",
    "min_bandwidth_mbps",
    "max_hops",
    "exclude_countries",
    "exclude_regions",
    "allow_direct",
)
TENANT_KEYS = ("asn", "tenant_id", "locator_block", "edges", "attachments", "traffic_classes")
ATTACHMENT_KEYS = ("edge", "customer", "prefixes", "max_prefix_len_v4", "max_prefix_len_v6", "bgp_session")
CLASS_KEYS = ("dscp", "sla", "fallback", "fec", "rate_limit_mbps", "default")
FEC_KEYS = ("data", "parity")
PCE_KEYS = ("hysteresis_pct", "hysteresis_min", "max_candidates", "backup")
INTERFACE_KEYS = ("name", "addresses", "peer", "mtu")
BACKUP_MODES = ("node", "link", "none")

# Which roles each link kind joins, in the orientation links are normalised to (a, b).
_KIND_ROLES: Dict[str, Tuple[str, str]] = {
    "core": ("core", "core"),
    "access": ("edge", "core"),
    "direct": ("edge", "edge"),
    "attachment": ("edge", "customer"),
}
_ROLES_KIND = {frozenset(r): k for k, r in _KIND_ROLES.items()}

ASN_MAX = 4294967295
NODE_ID_MAX = 65535
# The per-edge tenant locator is a /48 whose bits 32..47 are the edge's node_id, so the
# tenant block must be a /32 or shorter (model.TENANT_EDGE_LOCATOR_LEN).
TENANT_BLOCK_MAX_LEN = 32
# A node locator needs room for function bits after it (End SID = locator + 1).
NODE_LOCATOR_MAX_LEN = 64
# Reed-Solomon over GF(2^8): at most 255 symbols (data + parity) per block.
FEC_MAX_BLOCK = 255

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
# Node names are host names (inventory_hostname).
_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Sites, profiles, classes and regions are identifiers used in file names, labels and metrics.
_IDENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Tenant names end up inside Linux interface / VRF / table names: 15 characters at most.
_TENANT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,14}$")
_LINUX_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")
_JINJA_MARKERS = ("{{", "{%")
_YAML_SUFFIXES = (".yml", ".yaml", ".json")


# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory, located precisely enough to fix it."""

    file: str
    object: str  # e.g. "node 'core-fra'", "link core-fra<->core-lon", "tenant 'acme'"
    field: str  # dotted path inside the object, e.g. "traffic_classes.ef.sla"
    message: str

    def __str__(self) -> str:
        where = f"{self.object} field '{self.field}'" if self.field else self.object
        return f"{self.file}: {where}: {self.message}"


class InventoryError(ValueError):
    """The inventory is invalid; ``problems`` lists everything that is wrong with it."""

    def __init__(self, problems: Sequence[Problem]):
        # Keep the first occurrence of each problem, in detection order (deterministic).
        self.problems: List[Problem] = list(dict.fromkeys(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------
# YAML: literal data only
# --------------------------------------------------------------------------------------
class _Vaulted:
    """An Ansible ``!vault`` value: kept opaque, rejected if an npms_ variable uses it."""

    def __init__(self, text: str):
        self.text = text


class _Unsafe(str):
    """An Ansible ``!unsafe`` string: never templated, so ``{{`` inside it is literal."""


if yaml is not None:

    class _Loader(yaml.SafeLoader):
        """SafeLoader that rejects duplicate keys and tolerates Ansible's ``!vault``/``!unsafe``."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
            # PyYAML silently keeps the last of two equal keys; in an inventory that hides typos.
            seen: Dict[Any, Any] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key!r} (first at line {seen[key].line + 1})",
                            key_node.start_mark,
                        )
                    seen[key] = key_node.start_mark
                except TypeError:  # unhashable key: let PyYAML report it
                    pass
            return super().construct_mapping(node, deep=deep)

    _Loader.add_constructor("!vault", lambda loader, node: _Vaulted(loader.construct_scalar(node)))
    _Loader.add_constructor("!unsafe", lambda loader, node: _Unsafe(loader.construct_scalar(node)))
else:  # pragma: no cover
    _Loader = None


def _read_yaml(path: str, sink: List[Problem]) -> Any:
    if yaml is None:
        raise RuntimeError("galactic.npms needs PyYAML to read inventories: pip install pyyaml")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except OSError as exc:
        sink.append(Problem(path, _SYNTAX, "", f"cannot read: {exc.strerror or exc}"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        detail = getattr(exc, "problem", None) or str(exc)
        sink.append(Problem(path, _SYNTAX, where, f"invalid YAML: {detail}"))
    return None


# Object name of unreadable files; any such problem stops loading before validation,
# because the missing content would otherwise show up as a cascade of "missing" fields.
_SYNTAX = "YAML syntax"


# --------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------
_MISSING = object()


def _tname(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_jinja(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, _Unsafe) and any(m in value for m in _JINJA_MARKERS)


def _type_msg(value: Any, expected: str) -> str:
    """Explain why ``value`` is not ``expected``; Jinja and vault values get their own reason."""
    if _is_jinja(value):
        return f"contains Jinja ({value!r}); npms_ inventory values must be literal (Nornir does not template)"
    if isinstance(value, _Vaulted):
        return "is vault-encrypted; npms_ inventory values must be plain literals"
    return f"expected {expected}, got {_tname(value)}"


def _str_or_msg(value: Any) -> Tuple[Optional[str], Optional[str]]:
    if isinstance(value, str) and not _is_jinja(value):
        return str(value), None
    return None, _type_msg(value, "a string")


def _hint(value: Any, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when close to a known name, else ' (known: ...)'."""
    names = sorted(set(known))
    if isinstance(value, str):
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        if close:
            return f" (did you mean '{close[0]}'?)"
    if not names:
        return " (none defined)"
    shown = ", ".join(names[:12])
    more = f", ... {len(names)} in all" if len(names) > 12 else ""
    return f" (known: {shown}{more})"


def _an(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _country_msg(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        # YAML 1.1 reads NO (Norway) as false: the classic trap.
        return f"expected a country code, got {_tname(value)}; quote it, YAML reads NO/no/yes as booleans"
    text, err = _str_or_msg(value)
    if err:
        return err
    if not _COUNTRY_RE.match(text or ""):
        return f"{value!r} is not an ISO 3166-1 alpha-2 country code (two upper-case letters)"
    return None


# --------------------------------------------------------------------------------------
# Scope: reads the fields of one object, reporting against its file / object / field
# --------------------------------------------------------------------------------------
FileOf = Union[str, Callable[[str], str]]


class _Scope:
    """Reads and checks the fields of one object, reporting against its file/object/field.

    Readers return ``None`` (or the default) for a missing or bad value; a bad value
    also leaves a Problem, so callers never need to report type errors themselves.
    """

    def __init__(self, sink: List[Problem], file: FileOf, obj: str, data: Mapping[str, Any], prefix: str = ""):
        self.sink = sink
        self._file = file
        self.obj = obj
        self.data = data
        self.prefix = prefix

    def file(self, key: str = "") -> str:
        return self._file(key) if callable(self._file) else self._file

    def add(self, key: str, message: str) -> None:
        self.sink.append(Problem(self.file(key), self.obj, self.prefix + key, message))

    def child(self, key: str, label: str, data: Mapping[str, Any]) -> "_Scope":
        return _Scope(self.sink, self.file(key), self.obj, data, f"{self.prefix}{label}.")

    def check_keys(self, known: Sequence[str], ignore: Callable[[str], bool] = lambda k: False) -> None:
        for key in self.data:
            if not isinstance(key, str):
                self.add(str(key), f"keys must be strings, got {_tname(key)}")
            elif key not in known and not ignore(key):
                self.add(key, "unknown key" + _hint(key, known))

    def raw(self, key: str, required: bool = False) -> Any:
        value = self.data.get(key)
        if value is None:  # YAML "key:" with nothing after it means "not set"
            if required:
                self.add(key, "required field is missing")
            return _MISSING
        return value

    # -- scalars ---------------------------------------------------------------------
    def text(
        self,
        key: str,
        *,
        required: bool = False,
        default: Optional[str] = None,
        choices: Optional[Sequence[str]] = None,
        pattern: Optional["re.Pattern[str]"] = None,
        what: str = "",
    ) -> Optional[str]:
        value = self.raw(key, required)
        if value is _MISSING:
            return default
        text, err = _str_or_msg(value)
        if err:
            self.add(key, err)
            return None
        text = text or ""  # _str_or_msg gives text whenever err is empty
        if choices is not None and text not in choices:
            close = difflib.get_close_matches(text, list(choices), n=1, cutoff=0.6)
            self.add(
                key,
                f"{text!r} is not one of {', '.join(choices)}" + (f" (did you mean '{close[0]}'?)" if close else ""),
            )
            return None
        if pattern is not None and not pattern.match(text):
            self.add(key, f"{text!r} is not a valid {what or 'name'}")
            return None
        return text

    def integer(
        self, key: str, *, lo: int, hi: int, required: bool = False, default: Optional[int] = None
    ) -> Optional[int]:
        value = self.raw(key, required)
        if value is _MISSING:
            return default
        return _check_int(value, lo, hi, lambda msg: self.add(key, msg))

    def number(
        self,
        key: str,
        *,
        lo: float = 0.0,
        hi: Optional[float] = None,
        positive: bool = False,
        required: bool = False,
        default: Optional[float] = None,
    ) -> Optional[float]:
        value = self.raw(key, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(key, _type_msg(value, "a number"))
            return None
        if not math.isfinite(value):
            self.add(key, f"must be a finite number, got {value}")
            return None
        if positive and value <= 0:
            self.add(key, f"must be greater than 0, got {value}")
            return None
        if value < lo or (hi is not None and value > hi):
            self.add(
                key,
                (
                    f"must be between {lo:g} and {hi:g}, got {value}"
                    if hi is not None
                    else f"must be >= {lo:g}, got {value}"
                ),
            )
            return None
        return float(value)

    def boolean(self, key: str, *, default: bool = False) -> bool:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.add(key, _type_msg(value, "true or false"))
            return default
        return value

    def ipv6_net(self, key: str, *, required: bool = False) -> Optional[ipaddress.IPv6Network]:
        value = self.raw(key, required)
        if value is _MISSING:
            return None
        text, err = _str_or_msg(value)
        if err:
            self.add(key, _type_msg(value, "an IPv6 network such as 'fcbb:0:1::/48'"))
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            self.add(key, f"{text!r} is not a valid network: {exc}")
            return None
        if not isinstance(net, ipaddress.IPv6Network):
            self.add(key, f"{text!r} is not an IPv6 network")
            return None
        return net

    def ip_address(self, key: str) -> Optional[str]:
        value = self.raw(key)
        if value is _MISSING:
            return None
        text, err = _str_or_msg(value)
        if err:
            self.add(key, _type_msg(value, "an IP address"))
            return None
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            self.add(key, f"{text!r} is not an IPv4 or IPv6 address (no prefix length here)")
            return None

    # -- containers ------------------------------------------------------------------
    def seq(self, key: str, *, required: bool = False, scalar_ok: bool = False) -> Optional[List[Any]]:
        value = self.raw(key, required)
        if value is _MISSING:
            return None
        if scalar_ok and not isinstance(value, (list, dict)):
            return [value]
        if not isinstance(value, list):
            self.add(key, _type_msg(value, "a list"))
            return None
        return value

    def mapping(self, key: str, *, required: bool = False) -> Optional[Dict[str, Any]]:
        value = self.raw(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.add(key, _type_msg(value, "a mapping"))
            return None
        return value

    def countries(self, key: str) -> Tuple[str, ...]:
        out: Set[str] = set()
        for i, item in enumerate(self.seq(key) or []):
            err = _country_msg(item)
            if err:
                self.add(f"{key}[{i}]", err)
            else:
                out.add(item)
        return tuple(sorted(out))


def _check_int(value: Any, lo: int, hi: int, report: Callable[[str], None]) -> Optional[int]:
    # bool is an int subclass in Python: "yes" in YAML must not become node id 1.
    if isinstance(value, bool) or not isinstance(value, int):
        report(_type_msg(value, "an integer"))
        return None
    if not lo <= value <= hi:
        report(f"must be between {lo} and {hi}, got {value}")
        return None
    return value


def _names(
    mapping: Mapping[Any, Any],
    file: str,
    obj: Callable[[Any], str],
    field: str,
    pattern: "re.Pattern[str]",
    sink: List[Problem],
    what: str,
) -> List[Tuple[str, Any]]:
    """Items of a name -> object mapping, sorted by name, with bad names reported.

    An object whose name is malformed is still validated (under that name), so that
    one bad name does not hide its other problems or orphan what refers to it.
    """
    items = []
    for name, value in mapping.items():
        if not isinstance(name, str):
            sink.append(Problem(file, obj(name), f"{field}.{name}", f"names must be strings, got {_tname(name)}"))
            continue
        text, err = _str_or_msg(name)
        if err or not pattern.match(text or ""):
            sink.append(Problem(file, obj(name), f"{field}.{name}", err or f"{name!r} is not a valid {what}"))
        items.append((str(name), value))
    return sorted(items, key=lambda kv: kv[0])


# --------------------------------------------------------------------------------------
# Ansible YAML inventory (directory or single file) -> merged dict + origins
# --------------------------------------------------------------------------------------
@dataclass
class _Group:
    name: str
    hosts: Set[str]
    children: Set[str]
    layers: List[Tuple[str, Dict[str, Any]]]  # (file, vars), lowest precedence first


def load_inventory(path: Union[str, "os.PathLike[str]"]) -> Inventory:
    """Load an inventory directory (``hosts.yml`` + group_vars/host_vars) or one YAML file."""
    p = os.path.normpath(os.fspath(path))
    if os.path.isdir(p):
        for name in ("hosts.yml", "hosts.yaml"):
            if os.path.isfile(os.path.join(p, name)):
                return _load_ansible(os.path.join(p, name), p)
        raise InventoryError(
            [Problem(p, "inventory", "hosts.yml", "no hosts.yml (or hosts.yaml) in the inventory directory")]
        )
    if not os.path.isfile(p):
        raise InventoryError([Problem(p, "inventory", "", "no such file or directory")])
    sink: List[Problem] = []
    data = _read_yaml(p, sink)
    if sink:
        raise InventoryError(sink)
    if isinstance(data, dict) and "all" in data and "_meta" not in data:
        # An Ansible YAML inventory file: group_vars/host_vars next to it apply, as in Ansible.
        return _load_ansible(p, os.path.dirname(p) or ".", data)
    return inventory_from_data(data, p)


def inventory_from_data(
    data: Mapping[str, Any], source: str = "<data>", *, origins: Optional[Mapping[str, str]] = None
) -> Inventory:
    """Validate a merged inventory dict (or an Ansible ``all:`` tree) and build the model.

    ``origins`` maps ``"npms_tenants"`` or ``"hosts.<host>.<var>"`` (and ``"hosts.<host>"``
    for the host as a whole) to the file the value came from; anything unmapped is
    reported against ``source``.
    """
    if isinstance(data, Mapping) and "_meta" in data:
        return _from_ansible_list(data, source)
    if isinstance(data, Mapping) and "all" in data:
        return _load_ansible(source, None, dict(data))
    sink: List[Problem] = []
    inv = _build(data, source, origins or {}, sink)
    if sink or inv is None:
        raise InventoryError(sink)
    return inv


def _from_ansible_list(data: Mapping[str, Any], source: str) -> Inventory:
    """Build from ``ansible-inventory --list`` output, where Ansible already merged the vars.

    Network-wide variables appear in every host's hostvars there; they must agree.
    """
    sink: List[Problem] = []
    meta = data.get("_meta")
    hostvars = meta.get("hostvars") if isinstance(meta, Mapping) else None
    if not isinstance(hostvars, Mapping):
        raise InventoryError([Problem(source, "inventory", "_meta.hostvars", _type_msg(hostvars, "a mapping"))])
    groups = {str(k): v for k, v in data.items() if k != "_meta" and isinstance(v, Mapping)}

    def members(group: str, seen: Tuple[str, ...] = ()) -> Set[str]:
        body = groups.get(group) or {}
        out = {str(h) for h in body.get("hosts") or []}
        for child in body.get("children") or []:
            if child not in seen:
                out |= members(str(child), seen + (group,))
        return out

    all_hosts = set(hostvars) | members("all")
    merged: Dict[str, Any] = {"hosts": {}, "groups": {r: sorted(members(r)) for r in ROLES}}
    global_from: Dict[str, str] = {}
    for host in sorted(all_hosts):
        hv = hostvars.get(host) or {}
        merged["hosts"][host] = {
            k: v for k, v in hv.items() if isinstance(k, str) and k.startswith(_NPMS_PREFIX) and k not in GLOBAL_KEYS
        }
        for key in GLOBAL_KEYS:
            if key not in hv:
                continue
            if key not in merged:
                merged[key], global_from[key] = hv[key], host
            elif hv[key] != merged[key]:
                sink.append(
                    Problem(
                        source,
                        f"node '{host}'",
                        key,
                        f"differs from the value of host '{global_from[key]}'; "
                        "network-wide variables belong in group_vars/all",
                    )
                )
    inv = _build(merged, source, {}, sink)
    if sink or inv is None:
        raise InventoryError(sink)
    return inv


def _vars_files(base: Optional[str], kind: str, name: str) -> List[str]:
    """group_vars/<name>.yml and group_vars/<name>/**/*.yml, in Ansible's (sorted) order."""
    if base is None:
        return []
    root = os.path.join(base, kind)
    files = [os.path.join(root, name + s) for s in _YAML_SUFFIXES if os.path.isfile(os.path.join(root, name + s))]
    folder = os.path.join(root, name)
    if os.path.isdir(folder):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(
                os.path.join(dirpath, f)
                for f in sorted(filenames)
                if f.endswith(_YAML_SUFFIXES) and not f.startswith(".")
            )
    return files


def _vars_names(base: Optional[str], kind: str) -> List[str]:
    if base is None or not os.path.isdir(os.path.join(base, kind)):
        return []
    out = set()
    for entry in os.listdir(os.path.join(base, kind)):
        if entry.startswith("."):
            continue
        full = os.path.join(base, kind, entry)
        if os.path.isdir(full):
            out.add(entry)
        elif entry.endswith(_YAML_SUFFIXES):
            out.add(os.path.splitext(entry)[0])
    return sorted(out)


def _parse_tree(
    data: Any, file: str, sink: List[Problem]
) -> Tuple[Dict[str, _Group], Dict[str, List[Tuple[str, Dict[str, Any]]]]]:
    """Parse the ``all: {hosts, vars, children}`` tree of an Ansible YAML inventory."""
    groups: Dict[str, _Group] = {}
    host_layers: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}

    def group(name: str) -> _Group:
        return groups.setdefault(name, _Group(name, set(), set(), []))

    def walk(name: str, body: Any) -> None:
        g = group(name)
        obj = f"group '{name}'"
        if body is None:
            return
        if not isinstance(body, dict):
            sink.append(Problem(file, obj, name, _type_msg(body, "a mapping with hosts, vars or children")))
            return
        for key in body:
            if key not in ("hosts", "vars", "children"):
                sink.append(Problem(file, obj, str(key), "unknown key" + _hint(key, ("hosts", "vars", "children"))))
        hosts = body.get("hosts") or {}
        if isinstance(hosts, dict):
            for host, hvars in hosts.items():
                hname, err = _str_or_msg(host)
                if err:  # the name's format is checked with the other node fields
                    sink.append(Problem(file, f"node {host!r}", f"{name}.hosts", err))
                    continue
                hname = hname or ""
                g.hosts.add(hname)
                host_layers.setdefault(hname, [])
                if isinstance(hvars, dict):
                    host_layers[hname].append((file, hvars))
                elif hvars is not None:
                    sink.append(
                        Problem(
                            file, f"node '{hname}'", f"{name}.hosts.{hname}", _type_msg(hvars, "a mapping of variables")
                        )
                    )
        else:
            sink.append(Problem(file, obj, "hosts", _type_msg(hosts, "a mapping of host names")))
        gvars = body.get("vars")
        if isinstance(gvars, dict):
            g.layers.append((file, gvars))
        elif gvars is not None:
            sink.append(Problem(file, obj, "vars", _type_msg(gvars, "a mapping")))
        children = body.get("children") or {}
        if isinstance(children, dict):
            for child, cbody in children.items():
                cname = str(child)
                g.children.add(cname)
                walk(cname, cbody)
        else:
            sink.append(Problem(file, obj, "children", _type_msg(children, "a mapping of group names")))

    if not isinstance(data, dict):
        sink.append(Problem(file, "inventory", "all", _type_msg(data, "a mapping with an 'all' group")))
        return groups, host_layers
    for top, body in data.items():
        walk(str(top), body)
    # Top-level groups other than 'all' are implicitly its children, as in Ansible.
    group("all").children.update(n for n in data if n != "all")
    return groups, host_layers


def _load_ansible(hosts_file: str, base: Optional[str], data: Any = None) -> Inventory:
    sink: List[Problem] = []
    if data is None:
        data = _read_yaml(hosts_file, sink)
    groups, host_layers = _parse_tree(data, hosts_file, sink)

    # Depth from 'all' (Ansible orders group vars by depth, then name).
    parents: Dict[str, Set[str]] = {}
    for g in groups.values():
        for c in g.children:
            parents.setdefault(c, set()).add(g.name)
    depth: Dict[str, int] = {}

    def depth_of(name: str, stack: Tuple[str, ...] = ()) -> int:
        if name in depth:
            return depth[name]
        if name in stack:  # a cycle: Ansible refuses it too
            sink.append(Problem(hosts_file, f"group '{name}'", "children", "group is its own ancestor"))
            return 0
        d = 1 + max((depth_of(p, stack + (name,)) for p in parents.get(name, ())), default=-1)
        depth[name] = d
        return d

    for name in groups:
        depth_of(name)

    # group_vars/ and host_vars/ files; a name with no group/host is almost always a typo.
    for kind, known, what in (("group_vars", groups, "group"), ("host_vars", host_layers, "node")):
        for name in _vars_names(base, kind):
            if name not in known:
                files = _vars_files(base, kind, name) or [os.path.join(base or "", kind, name)]
                msg = f"no such {'group' if what == 'group' else 'host'} in the inventory" + _hint(name, known)
                sink.append(Problem(files[0], f"{what} '{name}'", kind, msg))

    def file_layers(kind: str, name: str, obj: str) -> List[Tuple[str, Dict[str, Any]]]:
        layers: List[Tuple[str, Dict[str, Any]]] = []
        first_file: Dict[str, str] = {}
        for f in _vars_files(base, kind, name):
            content = _read_yaml(f, sink)
            if content is None:
                continue
            if not isinstance(content, dict):
                sink.append(Problem(f, obj, kind, _type_msg(content, "a mapping of variables")))
                continue
            for key in content:
                if not (isinstance(key, str) and key.startswith(_NPMS_PREFIX)):
                    continue  # Ansible's own variables are not ours to police
                if key in first_file:
                    # Ansible lets the later file win silently; two sources of truth are a bug.
                    sink.append(
                        Problem(f, obj, str(key), f"also set in {first_file[key]}; set each variable in one file")
                    )
                else:
                    first_file[key] = f
            layers.append((f, content))
        return layers

    for name, g in groups.items():
        g.layers.extend(file_layers("group_vars", name, f"group '{name}'"))
    for host in host_layers:
        host_layers[host].extend(file_layers("host_vars", host, f"node '{host}'"))
    if any(p.object == _SYNTAX for p in sink):
        raise InventoryError(sink)

    # Only npms_ variables are ours (ansible_host & co. are Ansible's); unknown npms_
    # variables are typos, reported once per file rather than once per host.
    def npms_only(
        layers: List[Tuple[str, Dict[str, Any]]], obj: str, hosts_level: bool
    ) -> List[Tuple[str, Dict[str, Any]]]:
        out = []
        for f, layer in layers:
            kept = {}
            for key, value in layer.items():
                if not (isinstance(key, str) and key.startswith(_NPMS_PREFIX)):
                    continue
                if key not in GLOBAL_KEYS + HOST_KEYS:
                    sink.append(Problem(f, obj, key, "unknown npms variable" + _hint(key, GLOBAL_KEYS + HOST_KEYS)))
                elif key in GLOBAL_KEYS and hosts_level:
                    sink.append(Problem(f, obj, key, "network-wide variable: set it in group_vars/all"))
                else:
                    kept[key] = value
            out.append((f, kept))
        return out

    merged: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    group_npms = {name: npms_only(g.layers, f"group '{name}'", name != "all") for name, g in sorted(groups.items())}
    host_npms = {h: npms_only(host_layers[h], f"node '{h}'", True) for h in sorted(host_layers)}
    for f, layer in group_npms.get("all", []):
        for key, value in layer.items():
            if key in GLOBAL_KEYS:
                merged[key] = value
                origins[key] = f

    # Transitive membership, then the per-host merge: all < groups by depth < host.
    members: Dict[str, Set[str]] = {h: {"all"} for h in host_layers}
    for name, g in groups.items():
        for h in g.hosts:
            members[h].add(name)
    changed = True
    while changed:  # add ancestor groups until stable
        changed = False
        for gs in members.values():
            extra = set().union(*(parents.get(x, set()) for x in gs)) - gs
            if extra:
                gs |= extra
                changed = True

    hosts: Dict[str, Dict[str, Any]] = {}
    role_groups: Dict[str, List[str]] = {r: [] for r in ROLES}
    for host in sorted(host_layers):
        hv: Dict[str, Any] = {}
        ordered = sorted(members[host], key=lambda n: (depth.get(n, 0), n))
        layers = [lay for gname in ordered for lay in group_npms.get(gname, [])] + host_npms[host]
        for f, layer in layers:
            for key, value in layer.items():
                if key in HOST_KEYS:
                    hv[key] = value
                    origins[f"hosts.{host}.{key}"] = f
        hosts[host] = hv
        # Problems about the host as a whole point at its own host_vars file, if any.
        own_files = [f for f, _layer in host_layers[host] if f != hosts_file]
        origins[f"hosts.{host}"] = own_files[0] if own_files else hosts_file
        for role in ROLES:
            if role in members[host]:
                role_groups[role].append(host)
    merged["hosts"] = hosts
    merged["groups"] = role_groups
    origins["groups"] = hosts_file
    origins["hosts"] = hosts_file

    inv = _build(merged, base if base is not None else hosts_file, origins, sink)
    if sink or inv is None:
        raise InventoryError(sink)
    return inv


# --------------------------------------------------------------------------------------
# Merged dict -> validated model
# --------------------------------------------------------------------------------------
def _build(data: Any, source: str, origins: Mapping[str, str], sink: List[Problem]) -> Optional[Inventory]:
    def gfile(key: str) -> str:
        return origins.get(key, source)

    if not isinstance(data, Mapping):
        sink.append(Problem(source, "inventory", "", _type_msg(data, "a mapping")))
        return None
    top = _Scope(sink, gfile, "inventory", data)
    top.check_keys(("hosts", "groups") + GLOBAL_KEYS)

    sites = _build_sites(top, sink)
    # A site that is defined but malformed still exists for references (no cascade).
    raw_sites = data.get("npms_sites")
    known_sites = set(raw_sites) if isinstance(raw_sites, dict) else set(sites)
    nodes, scopes = _build_nodes(top, source, origins, known_sites, sink)
    links = _build_links(top, sink, nodes)
    regions = {s.region for s in sites.values()}
    profiles = _build_profiles(top, sink, regions)
    tenants = _build_tenants(top, sink, nodes, links, profiles)
    pce = _build_pce(top, sink)
    _cross_checks(sink, nodes, scopes, links, tenants, gfile)

    if sink:
        return None
    return Inventory(
        sites=dict(sorted(sites.items())),
        nodes=dict(sorted(nodes.items())),
        links=tuple(sorted(links, key=lambda lk: (LINK_KINDS.index(lk.kind), lk.a, lk.b))),
        sla_profiles=dict(sorted(profiles.items())),
        tenants=dict(sorted(tenants.items())),
        pce=pce,
        source=source,
    )


def _build_sites(top: _Scope, sink: List[Problem]) -> Dict[str, Site]:
    raw = top.mapping("npms_sites", required=True) or {}
    file = top.file("npms_sites")
    out: Dict[str, Site] = {}
    for name, body in _names(
        raw,
        file,
        lambda n: f"site {n!r}",
        "npms_sites",
        _IDENT_RE,
        sink,
        "site name (lower-case letters, digits, '-', '_')",
    ):
        obj = f"site '{name}'"
        if not isinstance(body, dict):
            sink.append(Problem(file, obj, f"npms_sites.{name}", _type_msg(body, "a mapping")))
            continue
        sc = _Scope(sink, file, obj, body)
        sc.check_keys(SITE_KEYS)
        country = sc.raw("country", required=True)
        if country is not _MISSING:
            err = _country_msg(country)
            if err:
                sc.add("country", err)
                country = ""
        region = sc.text("region", required=True, pattern=_IDENT_RE, what="region (lower-case, e.g. 'europe')")
        lat = sc.number("lat", lo=-90, hi=90, required=True)
        lon = sc.number("lon", lo=-180, hi=180, required=True)
        city = sc.text("city", default="")
        out[name] = Site(
            name=name,
            country=country if isinstance(country, str) else "",
            region=region or "",
            lat=lat or 0.0,
            lon=lon or 0.0,
            city=city or "",
        )
    return out


def _build_nodes(
    top: _Scope,
    source: str,
    origins: Mapping[str, str],
    sites: Set[str],
    sink: List[Problem],
) -> Tuple[Dict[str, Node], Dict[str, _Scope]]:
    hosts = top.mapping("hosts", required=True) or {}
    groups = top.mapping("groups") or {}
    gscope = _Scope(sink, top.file("groups"), "inventory", groups, "groups.")
    gscope.check_keys(ROLES)
    in_groups: Dict[str, List[str]] = {}
    for role in ROLES:
        for i, host in enumerate(gscope.seq(role) or []):
            if not isinstance(host, str) or host not in hosts:
                gscope.add(f"{role}[{i}]", f"unknown host {host!r}" + _hint(host, hosts))
            else:
                in_groups.setdefault(host, []).append(role)

    nodes: Dict[str, Node] = {}
    scopes: Dict[str, _Scope] = {}  # per node, for cross-object problems found later
    for name, body in _names(hosts, top.file("hosts"), lambda n: f"node {n!r}", "hosts", _NODE_RE, sink, "host name"):
        home = origins.get(f"hosts.{name}", origins.get("hosts", source))
        obj = f"node '{name}'"
        if body is None:
            body = {}
        if not isinstance(body, dict):
            sink.append(Problem(home, obj, f"hosts.{name}", _type_msg(body, "a mapping of variables")))
            continue

        def file_of(key: str, _name: str = name, _home: str = home) -> str:
            return origins.get(f"hosts.{_name}.{key}", _home)

        sc = _Scope(sink, file_of, obj, body)
        # Non-npms variables (ansible_host, ...) belong to Ansible; npms_ typos are errors.
        sc.check_keys(HOST_KEYS + GLOBAL_KEYS, ignore=lambda k: not k.startswith(_NPMS_PREFIX))
        for key in GLOBAL_KEYS:
            if key in body:
                sc.add(key, "network-wide variable: set it in group_vars/all, not per host")

        role = _node_role(sc, in_groups.get(name, []), origins, source)
        site = sc.text("npms_site", required=True)
        if site is not None and site not in sites:
            sc.add("npms_site", f"unknown site {site!r}" + _hint(site, sites))
        node_id = sc.integer("npms_node_id", lo=1, hi=NODE_ID_MAX, required=True)
        dataplane = sc.text("npms_dataplane", default="linux", choices=DATAPLANES)
        if role == "customer" and dataplane not in (None, "linux"):
            sc.add("npms_dataplane", "customer routers run the linux dataplane only")
        locator = sc.ipv6_net("npms_locator", required=role in ("core", "edge"))
        if locator is not None:
            if role == "customer":
                sc.add("npms_locator", "customer routers have no SRv6 locator")
            elif locator.prefixlen > NODE_LOCATOR_MAX_LEN:
                sc.add(
                    "npms_locator",
                    f"locator /{locator.prefixlen} leaves no room for SIDs; use /{NODE_LOCATOR_MAX_LEN} or shorter",
                )
        loopback = sc.ip_address("npms_loopback")
        wan = sc.ip_address("npms_wan_address")
        asn = sc.integer("npms_asn", lo=1, hi=ASN_MAX, required=role == "customer")
        if asn is not None and role in ("core", "edge"):
            sc.add(
                "npms_asn", "only customer routers have their own ASN (edges speak the tenant's npms_tenants.<t>.asn)"
            )
        upstreams = sc.text("npms_upstreams", default="static", choices=UPSTREAM_MODES)
        if upstreams == "auto" and role not in ("edge", None, ""):
            sc.add("npms_upstreams", "only edges choose their POPs by triangulation")
        interfaces = _build_interfaces(sc, dataplane or "linux")

        nodes[name] = Node(
            name=name,
            role=role or "",
            site=site or "",
            node_id=node_id or 0,
            dataplane=dataplane or "linux",
            locator=locator,
            loopback=loopback,
            wan_address=wan,
            asn=asn,
            interfaces=interfaces,
            auto_upstreams=upstreams == "auto",
        )
        scopes[name] = sc
    return nodes, scopes


def _node_role(sc: _Scope, groups: List[str], origins: Mapping[str, str], source: str) -> Optional[str]:
    """The role from npms_role and/or membership of the core/edge/customer group."""
    declared = sc.text("npms_role", choices=ROLES)
    if len(groups) > 1:
        gfile = origins.get("groups", source)
        sc.sink.append(
            Problem(
                gfile, sc.obj, "groups", f"host is in several role groups ({', '.join(groups)}); a node has one role"
            )
        )
        return None
    grouped = groups[0] if groups else None
    if declared and grouped and declared != grouped:
        sc.add("npms_role", f"npms_role {declared!r} disagrees with the host's group {grouped!r}")
        return None
    if declared is None and grouped is None and sc.raw("npms_role") is _MISSING:
        sc.add("npms_role", f"no role: put the host in group {', '.join(ROLES[:-1])} or {ROLES[-1]}, or set npms_role")
    return declared or grouped


def _build_interfaces(sc: _Scope, dataplane: str) -> Tuple[Interface, ...]:
    out: List[Interface] = []
    seen: Dict[str, int] = {}
    for i, body in enumerate(sc.seq("npms_interfaces") or []):
        label = f"npms_interfaces[{i}]"
        if not isinstance(body, dict):
            sc.add(label, _type_msg(body, "a mapping with name, addresses, peer, mtu"))
            continue
        isc = sc.child("npms_interfaces", label, body)
        isc.check_keys(INTERFACE_KEYS)
        name = isc.text("name", required=True)
        if name is not None:
            if dataplane == "linux" and not _LINUX_IFNAME_RE.match(name):
                isc.add("name", f"{name!r} is not a Linux interface name (1-15 characters, no '/', ':' or spaces)")
            if name in seen:
                isc.add("name", f"duplicate interface name (also npms_interfaces[{seen[name]}])")
            seen.setdefault(name, i)
        addresses: List[str] = []
        has_v6 = False
        for j, addr in enumerate(isc.seq("addresses") or []):
            text, err = _str_or_msg(addr)
            if err or "/" not in (text or ""):
                isc.add(f"addresses[{j}]", err or f"{addr!r} needs a prefix length (address/len)")
                continue
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                isc.add(f"addresses[{j}]", f"{addr!r} is not an interface address (address/len)")
                continue
            has_v6 = has_v6 or iface.version == 6
            addresses.append(str(iface))
        peer = isc.text("peer")
        mtu = isc.integer("mtu", lo=576, hi=65535, default=1500)
        if mtu is not None and has_v6 and mtu < 1280:
            isc.add("mtu", f"IPv6 needs an MTU of at least 1280, got {mtu}")
        out.append(Interface(name=name or "", addresses=tuple(addresses), peer=peer, mtu=mtu or 1500))
    return tuple(sorted(out, key=lambda it: it.name))


def _build_links(top: _Scope, sink: List[Problem], nodes: Mapping[str, Node]) -> List[Link]:
    raw = top.seq("npms_links", required=True) or []
    file = top.file("npms_links")
    out: List[Link] = []
    seen_pairs: Dict[frozenset, str] = {}
    seen_names: Dict[str, str] = {}
    for i, body in enumerate(raw):
        if not isinstance(body, dict):
            sink.append(Problem(file, f"link #{i}", f"npms_links[{i}]", _type_msg(body, "a mapping")))
            continue
        a0, b0 = body.get("a"), body.get("b")
        obj = f"link {a0}<->{b0}" if isinstance(a0, str) and isinstance(b0, str) else f"link #{i}"
        sc = _Scope(sink, file, obj, body)
        sc.check_keys(LINK_KEYS)
        a = sc.text("a", required=True)
        b = sc.text("b", required=True)
        for key, end in (("a", a), ("b", b)):
            if end is not None and end not in nodes:
                sc.add(key, f"unknown node {end!r}" + _hint(end, nodes))
        kind = sc.text("kind", choices=LINK_KINDS)
        ok_ends = a in nodes and b in nodes and a is not None and b is not None
        if a is not None and a == b:
            sc.add("b", "a link cannot join a node to itself")
            ok_ends = False
        if ok_ends:
            roles = frozenset((nodes[a].role, nodes[b].role))
            implied = _ROLES_KIND.get(roles)
            if implied is None and all(nodes[n].role for n in (a, b)):
                sc.add(
                    "kind",
                    f"no link kind joins {_an(nodes[a].role)} {nodes[a].role} node and {_an(nodes[b].role)} {nodes[b].role} node "
                    "(core=core-core, access=edge-core, direct=edge-edge, attachment=edge-customer)",
                )
            elif kind is not None and implied is not None and kind != implied:
                want = "-".join(_KIND_ROLES[kind])
                sc.add(
                    "kind",
                    f"{_an(kind)} {kind} link joins {want}, but {a} is {nodes[a].role} and {b} is {nodes[b].role}"
                    f" (that is {_an(implied)} {implied} link)",
                )
            # The roles decide; using the implied kind avoids follow-on problems.
            kind = implied if implied is not None else kind
            if implied is not None:
                # Normalise orientation: (edge, core), (edge, customer); core/direct sorted by name.
                ra, _rb = _KIND_ROLES[implied]
                if _KIND_ROLES[implied][0] == _KIND_ROLES[implied][1]:
                    a, b = sorted((a, b))
                elif nodes[a].role != ra:
                    a, b = b, a
            pair = frozenset((a, b))
            if pair in seen_pairs:
                sc.add("b", f"duplicate link between {a} and {b} (already {seen_pairs[pair]})")
            else:
                seen_pairs[pair] = f"npms_links[{i}]"
        cost = sc.number("cost", default=10.0)
        latency = sc.number("latency_ms", default=1.0)
        jitter = sc.number("jitter_ms", default=0.0)
        loss = sc.number("loss_pct", lo=0, hi=100, default=0.0)
        bandwidth = sc.number("bandwidth_mbps", positive=True, default=1000.0)
        via = sc.countries("via_countries")
        name = sc.text("name", default="")
        if name:
            if name in seen_names:
                sc.add("name", f"duplicate link name {name!r} (also {seen_names[name]})")
            seen_names.setdefault(name, f"npms_links[{i}]")
        out.append(
            Link(
                a=a or "",
                b=b or "",
                kind=kind or "",
                cost=cost if cost is not None else 10.0,
                latency_ms=latency if latency is not None else 1.0,
                jitter_ms=jitter or 0.0,
                loss_pct=loss or 0.0,
                bandwidth_mbps=bandwidth or 1000.0,
                via_countries=via,
                name=name or "",
            )
        )
    return out


def _build_profiles(top: _Scope, sink: List[Problem], regions: Set[str]) -> Dict[str, SlaProfile]:
    raw = top.mapping("npms_sla_profiles", required=True) or {}
    file = top.file("npms_sla_profiles")
    out: Dict[str, SlaProfile] = {}
    for name, body in _names(
        raw, file, lambda n: f"SLA profile {n!r}", "npms_sla_profiles", _IDENT_RE, sink, "profile name"
    ):
        obj = f"SLA profile '{name}'"
        if not isinstance(body, dict):
            sink.append(Problem(file, obj, f"npms_sla_profiles.{name}", _type_msg(body, "a mapping")))
            continue
        sc = _Scope(sink, file, obj, body)
        sc.check_keys(PROFILE_KEYS)
        mode = sc.text("mode", required=True, choices=SLA_MODES)
        max_latency = sc.number("max_latency_ms", positive=True)
        max_jitter = sc.number("max_jitter_ms")
        max_loss = sc.number("max_loss_pct", lo=0, hi=100)
        min_bw = sc.number("min_bandwidth_mbps", positive=True)
        if mode == "sustained_bandwidth" and min_bw is None and sc.raw("min_bandwidth_mbps") is _MISSING:
            sc.add("min_bandwidth_mbps", "mode sustained_bandwidth requires min_bandwidth_mbps")
        max_hops = sc.integer("max_hops", lo=1, hi=255)
        countries = sc.countries("exclude_countries")
        excl_regions: Set[str] = set()
        for i, region in enumerate(sc.seq("exclude_regions") or []):
            text, err = _str_or_msg(region)
            if err:
                sc.add(f"exclude_regions[{i}]", err)
            elif text not in regions:
                # Regions are the inventory's own vocabulary: an unknown one is a typo.
                sc.add(f"exclude_regions[{i}]", f"unknown region {text!r}" + _hint(text, regions))
            else:
                excl_regions.add(text)
        allow_direct = sc.boolean("allow_direct")
        out[name] = SlaProfile(
            name=name,
            mode=mode or "",
            max_latency_ms=max_latency,
            max_jitter_ms=max_jitter,
            max_loss_pct=max_loss,
            min_bandwidth_mbps=min_bw,
            max_hops=max_hops,
            exclude_countries=countries,
            exclude_regions=tuple(sorted(excl_regions)),
            allow_direct=allow_direct,
        )
    return out


def _build_tenants(
    top: _Scope,
    sink: List[Problem],
    nodes: Mapping[str, Node],
    links: Sequence[Link],
    profiles: Mapping[str, SlaProfile],
) -> Dict[str, Tenant]:
    raw = top.mapping("npms_tenants", required=True) or {}
    file = top.file("npms_tenants")
    out: Dict[str, Tenant] = {}
    tenant_ids: Dict[int, str] = {}
    customer_owner: Dict[str, str] = {}
    access_edges = {lk.a for lk in links if lk.kind == "access"}
    attachment_pairs = {(lk.a, lk.b) for lk in links if lk.kind == "attachment"}
    for tname, body in _names(
        raw,
        file,
        lambda n: f"tenant {n!r}",
        "npms_tenants",
        _TENANT_RE,
        sink,
        "tenant name (lower-case, starts with a letter, at most 15 characters)",
    ):
        obj = f"tenant '{tname}'"
        if not isinstance(body, dict):
            sink.append(Problem(file, obj, f"npms_tenants.{tname}", _type_msg(body, "a mapping")))
            continue
        sc = _Scope(sink, file, obj, body)
        sc.check_keys(TENANT_KEYS)
        asn = sc.integer("asn", lo=1, hi=ASN_MAX, required=True)
        tenant_id = sc.integer("tenant_id", lo=1, hi=NODE_ID_MAX, required=True)
        if tenant_id is not None:
            if tenant_id in tenant_ids:
                sc.add("tenant_id", f"tenant_id {tenant_id} is already used by tenant '{tenant_ids[tenant_id]}'")
            tenant_ids.setdefault(tenant_id, tname)
        block = sc.ipv6_net("locator_block", required=True)
        if block is not None and block.prefixlen > TENANT_BLOCK_MAX_LEN:
            sc.add(
                "locator_block",
                f"prefix length /{block.prefixlen} is too long: the per-edge /48 locators "
                f"need a /{TENANT_BLOCK_MAX_LEN} or shorter block",
            )
            block = None

        edges: List[str] = []
        edges_raw = sc.seq("edges", required=True)
        if edges_raw == []:
            sc.add("edges", "a tenant needs at least one edge")
        for i, edge in enumerate(edges_raw or []):
            text, err = _str_or_msg(edge)
            if err:
                sc.add(f"edges[{i}]", err)
            elif text not in nodes:
                sc.add(f"edges[{i}]", f"unknown node {text!r}" + _hint(text, nodes))
            elif nodes[text].role not in ("edge", ""):  # "": the node's own problem is reported
                sc.add(f"edges[{i}]", f"{text!r} is {_an(nodes[text].role)} {nodes[text].role} node, not an edge")
            elif text in edges:
                sc.add(f"edges[{i}]", f"edge {text!r} is listed twice")
            else:
                if text not in access_edges and not nodes[text].auto_upstreams:
                    sc.add(f"edges[{i}]", f"edge {text!r} has no access link to any POP (declare them, or set "
                                          "npms_upstreams: auto on the edge to let the controller choose 3 by triangulation)")
                edges.append(text)

        attachments = _build_attachments(sc, tname, edges, nodes, attachment_pairs, customer_owner)
        classes = _build_classes(sc, profiles)
        out[tname] = Tenant(
            name=tname,
            asn=asn or 0,
            locator_block=block or ipaddress.IPv6Network("::/0"),
            edges=tuple(sorted(edges)),
            attachments=attachments,
            traffic_classes=classes,
            tenant_id=tenant_id or 0,
        )
    return out


def _build_attachments(
    sc: _Scope,
    tname: str,
    edges: Sequence[str],
    nodes: Mapping[str, Node],
    attachment_pairs: Set[Tuple[str, str]],
    customer_owner: Dict[str, str],
) -> Tuple[Attachment, ...]:
    out: List[Attachment] = []
    seen_pairs: Dict[Tuple[str, str], int] = {}
    # (network, attachment index, field label, customer) of every prefix in this tenant.
    prefixes_seen: List[Tuple[Union[ipaddress.IPv4Network, ipaddress.IPv6Network], int, str, str]] = []
    for i, body in enumerate(sc.seq("attachments") or []):
        label = f"attachments[{i}]"
        if not isinstance(body, dict):
            sc.add(label, _type_msg(body, "a mapping with edge, customer, prefixes"))
            continue
        asc = sc.child("attachments", label, body)
        asc.check_keys(ATTACHMENT_KEYS)
        edge = asc.text("edge", required=True)
        if edge is not None and edge not in edges:
            asc.add("edge", f"{edge!r} is not one of the tenant's edges" + _hint(edge, edges))
        customer = asc.text("customer", required=True)
        if customer is not None:
            if customer not in nodes:
                asc.add("customer", f"unknown node {customer!r}" + _hint(customer, nodes))
            elif nodes[customer].role not in ("customer", ""):
                asc.add(
                    "customer",
                    f"{customer!r} is {_an(nodes[customer].role)} {nodes[customer].role} node, not a customer router",
                )
            else:
                owner = customer_owner.setdefault(customer, tname)
                if owner != tname:
                    # One customer router in two tenants would leak routes between them.
                    asc.add("customer", f"customer {customer!r} is already attached to tenant '{owner}'")
                if edge is not None and edge in nodes and (edge, customer) not in attachment_pairs:
                    asc.add("customer", f"no attachment link between {edge} and {customer} in npms_links")
        if edge is not None and customer is not None:
            if (edge, customer) in seen_pairs:
                asc.add(
                    "customer",
                    f"{customer} is already attached at {edge} (attachments[{seen_pairs[(edge, customer)]}])",
                )
            seen_pairs.setdefault((edge, customer), i)
        session = asc.text("bgp_session", default="dual", choices=BGP_SESSIONS)
        cap4 = asc.integer("max_prefix_len_v4", lo=0, hi=32, default=24)
        cap6 = asc.integer("max_prefix_len_v6", lo=0, hi=128, default=48)
        nets: List[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = []
        prefixes_raw = asc.seq("prefixes", required=True)
        if prefixes_raw == []:
            asc.add("prefixes", "an attachment needs at least one prefix")
        for j, pfx in enumerate(prefixes_raw or []):
            key = f"prefixes[{j}]"
            text, err = _str_or_msg(pfx)
            if err:
                asc.add(key, err)
                continue
            try:
                net = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                asc.add(key, f"{text!r} is not a valid prefix: {exc}")
                continue
            cap = cap4 if net.version == 4 else cap6
            cap_key = "max_prefix_len_v4" if net.version == 4 else "max_prefix_len_v6"
            if cap is not None and net.prefixlen > cap:
                asc.add(key, f"{net} is longer than {cap_key} /{cap}: the customer could never announce it")
            for other, oidx, olabel, ocust in prefixes_seen:
                # Within a tenant a destination must be unambiguous; only a multi-homed
                # customer may announce the same space again, at another edge.
                if other.version == net.version and other.overlaps(net) and (ocust != customer or oidx == i):
                    asc.add(key, f"{net} overlaps {other} of {olabel} in the same tenant")
                    break
            prefixes_seen.append((net, i, f"{label}.{key}", customer or ""))
            nets.append(net)
        out.append(
            Attachment(
                edge=edge or "",
                customer=customer or "",
                prefixes=tuple(str(n) for n in sorted(nets, key=lambda n: (n.version, n))),
                max_prefix_len_v4=cap4 if cap4 is not None else 24,
                max_prefix_len_v6=cap6 if cap6 is not None else 48,
                bgp_session=session or "dual",
            )
        )
    return tuple(sorted(out, key=lambda a: (a.edge, a.customer)))


def _build_classes(sc: _Scope, profiles: Mapping[str, SlaProfile]) -> Tuple[TrafficClass, ...]:
    raw = sc.mapping("traffic_classes", required=True)
    if raw is None:
        return ()
    if not raw:
        sc.add("traffic_classes", "a tenant needs at least one traffic class")
    out: List[TrafficClass] = []
    dscp_owner: Dict[int, str] = {}
    default_class: Optional[str] = None
    for cname, body in _names(
        raw, sc.file("traffic_classes"), lambda n: sc.obj, "traffic_classes", _IDENT_RE, sc.sink, "class name"
    ):
        label = f"traffic_classes.{cname}"
        if not isinstance(body, dict):
            sc.add(label, _type_msg(body, "a mapping"))
            continue
        csc = sc.child("traffic_classes", label, body)
        csc.check_keys(CLASS_KEYS)
        is_default = csc.boolean("default")
        if is_default:
            if default_class is not None:
                csc.add("default", f"only one class may be the default; '{default_class}' already is")
            default_class = default_class or cname
        dscp: List[int] = []
        dscp_raw = csc.seq("dscp", scalar_ok=True)
        if not is_default and (dscp_raw == [] or csc.raw("dscp") is _MISSING):
            csc.add("dscp", "a class that is not the default needs at least one DSCP value")
        for i, value in enumerate(dscp_raw or []):
            v = _check_int(value, 0, 63, lambda msg, _i=i: csc.add(f"dscp[{_i}]", msg))
            if v is None:
                continue
            if v in dscp_owner:
                csc.add(f"dscp[{i}]", f"DSCP {v} is already used by class '{dscp_owner[v]}'")
                continue
            dscp_owner[v] = cname
            dscp.append(v)

        def profile_ref(key: str, required: bool) -> Optional[str]:
            name = csc.text(key, required=required)
            if name is not None and name not in profiles:
                csc.add(key, f"unknown SLA profile {name!r}" + _hint(name, profiles))
                return None
            return name

        sla = profile_ref("sla", True)
        fallback = profile_ref("fallback", False)
        if sla is not None and fallback == sla:
            csc.add("fallback", f"the fallback profile must differ from the primary ({sla!r})")
        fec: Optional[Fec] = None
        fec_raw = csc.mapping("fec")
        if fec_raw is not None:
            fsc = csc.child("fec", "fec", fec_raw)
            fsc.check_keys(FEC_KEYS)
            data = fsc.integer("data", lo=1, hi=FEC_MAX_BLOCK - 1, default=Fec.data)
            parity = fsc.integer("parity", lo=1, hi=FEC_MAX_BLOCK - 1, default=Fec.parity)
            if data is not None and parity is not None:
                if data + parity > FEC_MAX_BLOCK:
                    fsc.add("parity", f"data + parity must be at most {FEC_MAX_BLOCK}, got {data + parity}")
                fec = Fec(data=data, parity=parity)
        elif sla is not None and profiles[sla].mode == "lossless_fec":
            fec = Fec()  # the mode needs FEC; use the model's default block when none is given
        rate = csc.number("rate_limit_mbps", positive=True)
        out.append(
            TrafficClass(
                name=cname,
                dscp=tuple(sorted(dscp)),
                sla=sla or "",
                fallback=fallback,
                fec=fec,
                rate_limit_mbps=rate,
                default=is_default,
            )
        )
    return tuple(out)


def _build_pce(top: _Scope, sink: List[Problem]) -> PceSettings:
    raw = top.mapping("npms_pce")
    if raw is None:
        return PceSettings()
    sc = _Scope(sink, top.file("npms_pce"), "PCE settings", raw, "npms_pce.")
    sc.check_keys(PCE_KEYS)
    d = PceSettings()
    return PceSettings(
        hysteresis_pct=_default(sc.number("hysteresis_pct", lo=0, hi=100), d.hysteresis_pct),
        hysteresis_min=_default(sc.number("hysteresis_min"), d.hysteresis_min),
        max_candidates=_default(sc.integer("max_candidates", lo=1, hi=10000000), d.max_candidates),
        backup=_default(sc.text("backup", choices=BACKUP_MODES), d.backup),
    )


_T = TypeVar("_T")


def _default(value: Optional[_T], fallback: _T) -> _T:
    return fallback if value is None else value


def _cross_checks(
    sink: List[Problem],
    nodes: Mapping[str, Node],
    scopes: Mapping[str, _Scope],
    links: Sequence[Link],
    tenants: Mapping[str, Tenant],
    gfile: Callable[[str], str],
) -> None:
    def add(node: str, key: str, msg: str) -> None:
        scopes[node].add(key, msg)

    # Unique node ids, loopbacks and WAN addresses.
    for key, attr in (("npms_node_id", "node_id"), ("npms_loopback", "loopback"), ("npms_wan_address", "wan_address")):
        owner: Dict[Any, str] = {}
        for name, node in sorted(nodes.items()):
            value = getattr(node, attr)
            if not value:
                continue
            if value in owner:
                add(name, key, f"{value} is already used by node '{owner[value]}'")
            else:
                owner[value] = name

    # SRv6 space: node locators and tenant blocks must be disjoint, or SIDs become ambiguous.
    spaces: List[Tuple[ipaddress.IPv6Network, str, Callable[[str], None]]] = []
    for name, node in sorted(nodes.items()):
        if node.locator is not None:
            spaces.append((node.locator, f"node '{name}' npms_locator", lambda m, _n=name: add(_n, "npms_locator", m)))
    tfile = gfile("npms_tenants")
    for tname, tenant in sorted(tenants.items()):
        if tenant.locator_block.prefixlen > 0:
            spaces.append(
                (
                    tenant.locator_block,
                    f"tenant '{tname}' locator_block",
                    lambda m, _t=tname: sink.append(Problem(tfile, f"tenant '{_t}'", "locator_block", m)),
                )
            )
    for i, (net, label, report) in enumerate(spaces):
        for other, olabel, _net in spaces[:i]:
            if net.overlaps(other):
                report(f"{net} overlaps {other} ({olabel})")
                break

    # Interface peers must be real neighbours.
    neighbours: Dict[str, Set[str]] = {}
    for lk in links:
        neighbours.setdefault(lk.a, set()).add(lk.b)
        neighbours.setdefault(lk.b, set()).add(lk.a)
    for name, node in sorted(nodes.items()):
        raw = scopes[name].data.get("npms_interfaces") or []
        for iface in node.interfaces:
            if iface.peer is None:
                continue
            # Report against the index the user wrote (the model's interfaces are sorted).
            idx = next((i for i, r in enumerate(raw) if isinstance(r, dict) and r.get("name") == iface.name), 0)
            key = f"npms_interfaces[{idx}].peer"
            if iface.peer not in nodes:
                add(name, key, f"unknown node {iface.peer!r}" + _hint(iface.peer, nodes))
            elif iface.peer not in neighbours.get(name, set()):
                add(name, key, f"no link in npms_links joins {name} and {iface.peer}")

    # A customer router nobody attached is a dangling (probably misspelt) reference.
    attached = {att.customer for t in tenants.values() for att in t.attachments}
    for name, node in sorted(nodes.items()):
        if node.role == "customer" and name not in attached:
            add(name, "npms_role", "customer router is not attached to any tenant (npms_tenants.<t>.attachments)")


# --------------------------------------------------------------------------------------
# Model -> plain data
# --------------------------------------------------------------------------------------
def inventory_to_data(inv: Inventory) -> Dict[str, Any]:
    """A plain, JSON-able dict of ``inv`` in the merged-inventory shape.

    ``inventory_from_data(inventory_to_data(inv), inv.source) == inv``; every field is
    written (``None`` as null) so golden files show defaults explicitly.
    """
    hosts: Dict[str, Any] = {}
    for name, n in inv.nodes.items():
        hosts[name] = {
            "npms_role": n.role,
            "npms_site": n.site,
            "npms_node_id": n.node_id,
            "npms_dataplane": n.dataplane,
            "npms_locator": str(n.locator) if n.locator is not None else None,
            "npms_loopback": n.loopback,
            "npms_wan_address": n.wan_address,
            "npms_asn": n.asn,
            "npms_interfaces": [
                {"name": i.name, "addresses": list(i.addresses), "peer": i.peer, "mtu": i.mtu} for i in n.interfaces
            ],
        }
        if n.auto_upstreams:  # only then: the golden files of static inventories stay as they are
            hosts[name]["npms_upstreams"] = "auto"
    return {
        "hosts": hosts,
        "npms_sites": {
            s.name: {"country": s.country, "region": s.region, "lat": s.lat, "lon": s.lon, "city": s.city}
            for s in inv.sites.values()
        },
        "npms_links": [
            {
                "a": lk.a,
                "b": lk.b,
                "kind": lk.kind,
                "cost": lk.cost,
                "latency_ms": lk.latency_ms,
                "jitter_ms": lk.jitter_ms,
                "loss_pct": lk.loss_pct,
                "bandwidth_mbps": lk.bandwidth_mbps,
                "via_countries": list(lk.via_countries),
                "name": lk.name,
            }
            for lk in inv.links
        ],
        "npms_sla_profiles": {
            p.name: {
                "mode": p.mode,
                "max_latency_ms": p.max_latency_ms,
                "max_jitter_ms": p.max_jitter_ms,
                "max_loss_pct": p.max_loss_pct,
                "min_bandwidth_mbps": p.min_bandwidth_mbps,
                "max_hops": p.max_hops,
                "exclude_countries": list(p.exclude_countries),
                "exclude_regions": list(p.exclude_regions),
                "allow_direct": p.allow_direct,
            }
            for p in inv.sla_profiles.values()
        },
        "npms_tenants": {
            t.name: {
                "asn": t.asn,
                "tenant_id": t.tenant_id,
                "locator_block": str(t.locator_block),
                "edges": list(t.edges),
                "attachments": [
                    {
                        "edge": a.edge,
                        "customer": a.customer,
                        "prefixes": list(a.prefixes),
                        "max_prefix_len_v4": a.max_prefix_len_v4,
                        "max_prefix_len_v6": a.max_prefix_len_v6,
                        "bgp_session": a.bgp_session,
                    }
                    for a in t.attachments
                ],
                "traffic_classes": {
                    c.name: {
                        "dscp": list(c.dscp),
                        "sla": c.sla,
                        "fallback": c.fallback,
                        "fec": {"data": c.fec.data, "parity": c.fec.parity} if c.fec is not None else None,
                        "rate_limit_mbps": c.rate_limit_mbps,
                        "default": c.default,
                    }
                    for c in t.traffic_classes
                },
            }
            for t in inv.tenants.values()
        },
        "npms_pce": {
            "hysteresis_pct": inv.pce.hysteresis_pct,
            "hysteresis_min": inv.pce.hysteresis_min,
            "max_candidates": inv.pce.max_candidates,
            "backup": inv.pce.backup,
        },
    }
