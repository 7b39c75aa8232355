# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables at the edge: one table per tenant with DSCP classes, policers and security groups.

An item is one tenant's table, ``table inet npms_<tenant>`` (key ``tenant``)::

    tenant: acme                  # table inet npms_acme
    tenant_id: 1                  # optional, 1..255, recorded in the table
    interfaces: [cust-acme-ber]   # the tenant's attachment interfaces on this edge (>= 1)
    classes:                      # traffic arriving on the interfaces, by DSCP
      - {name: voice, dscp: [46], rate_mbps: 5, burst_kbytes: 64}
      - {name: default, dscp: []} # empty dscp: everything no other class takes (at most one)
    security_groups:              # non-empty: default deny, stateful
      - name: web
        interfaces: [cust-acme-ber]   # optional subset of the item's interfaces (default: all)
        rules:
          - {direction: outbound, protocol: tcp, ports: [80, 443, "8000-8080"],
             sources: [10.1.0.0/16], destinations: [10.2.0.0/16]}
          - {protocol: icmp}

What the table does (priorities are relative to ``filter`` = 0):

* **classes** (hook prerouting, priority -140: after conntrack and the SRv6 steering
  marks; the forward hook never sees a tenant packet that the edge encapsulates): every
  packet arriving on the tenant's interfaces is counted in the named counter ``npms``, then
  classified by DSCP (IPv4 and IPv6) into its class, counted in ``class_<name>`` and, when
  the class has ``rate_mbps``, policed: what exceeds the rate is counted in
  ``policed_<name>`` and dropped (``limit rate over <bytes>/second burst <bytes> drop``;
  tc police does not work on every kernel, nft limit does).  ``rate_mbps`` is in
  megabits per second (10^6 bit/s), ``burst_kbytes`` in KiB on top of the one second of
  rate the kernel's byte limit always allows (default 0).  Traffic to the edge itself
  (BGP, ND) is counted and policed with its class too.
* **security groups** (hook forward, priority 0; hook input, priority 0), only when the
  item has at least one group: forwarded traffic from (``outbound``, as seen from the
  tenant's site) and to (``inbound``) the tenant's interfaces and traffic from them to the
  edge itself (``local``) is dropped unless a rule allows it; replies of allowed
  connections pass (``ct state established,related accept``) and invalid packets are
  dropped (outbound and local).  Overlay traffic is filtered where it leaves the overlay:
  the SRv6-encapsulated form of an outbound packet passes (``npms srv6 encapsulated``),
  and the remote edge's ``inbound`` rules judge the decapsulated packet, statelessly
  (it has no conntrack entry there), so replies need inbound rules too.  What the edge itself needs from the customer router is always allowed in the
  ``local`` direction: BGP (tcp port 179, either side) and all ICMP / ICMPv6 (neighbour
  discovery, path MTU, ping).  Accepted packets are counted in ``sg_<group>``, dropped ones
  in ``denied_outbound`` / ``denied_inbound`` / ``denied_local``.  A group without rules
  allows nothing; to have no filtering at all, give no groups.
* A rule: ``direction`` (outbound, inbound, local; default outbound), ``protocol`` (any,
  tcp, udp, icmp, icmpv6; default any), ``ports`` (destination ports or ``"lo-hi"``
  ranges; tcp and udp only), ``sources`` / ``destinations`` (prefixes; a rule with IPv4
  and IPv6 prefixes becomes one nft rule per family, so each family given in one must be
  given in the other).

Canonical form: interfaces, dscp and names sorted; classes and groups sorted by name;
ports merged into ranges (``[80, 81]`` is ``["80-81"]``, as nft merges them); prefixes
collapsed (``ipaddress.collapse_addresses``); every rule has all five fields.

Ownership: npms owns exactly the ``inet`` tables named ``npms_<tenant>`` that hold the
marker counter ``npms`` (comment ``npms:nftables tenant=<t> [tenant_id=<n>]``); nothing
else on the node is read as an item, changed or deleted.  A table of that name without
the marker is refused rather than overwritten.

Atomic: one ``nft -f -`` transaction per run; each changed table is re-created whole
(``table`` + ``delete table`` + the new definition), so a failure changes nothing and
the counters of a changed table restart at zero (other tenants' tables are untouched).

Gather (``nft -j list ruleset``) rebuilds each item from the rules themselves, then
renders that item again and compares it with the table on the node: anything the
rendering does not produce (a hand-added rule or chain, an edited counter, ...) is listed
in the read-only field ``drift``, so the item differs from any wanted item and the next
merged / replaced / overridden run re-creates the table.  ``drift`` given in ``config``
(for instance gathered output fed back) is ignored.

Rollback cookie (the idea of community.general's iptables_state): with
``rollback_timeout`` > 0, :meth:`NftTables.apply` saves the tables it is about to change
(``nft list table``) to a backup file on the node, creates a cookie file next to it,
starts a detached ``setsid`` process that after the timeout restores the backup unless
the cookie was removed, and then applies the change.  :func:`confirm_rollback` removes
the cookie (the change stays); :func:`rollback_now` restores at once.  Whoever removes the
cookie first wins, so a late confirmation fails instead of racing the restore.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..runner import CommandError, Runner
from . import fields as f
from .base import ADD, DELETE, Change, Resource, ResourceError, unknown_fields
from .srv6 import MAX_TENANT_ID

FAMILY = "inet"
TABLE_PREFIX = "npms_"
MARKER_COUNTER = "npms"
MARKER = "npms:nftables"
DIRECTIONS = ("outbound", "inbound", "local")
PROTOCOLS = ("any", "tcp", "udp", "icmp", "icmpv6")
PRIO_FILTER = 0
# Classes are counted and policed in prerouting, after conntrack (-200) and after the
# SRv6 steering marks (mangle, -150): a tenant packet that an edge encapsulates (seg6
# lightweight tunnel on input) never passes the IPv4/IPv6 forward hook as itself.
PRIO_CLASSES = -140
# The SRv6-encapsulated form of a tenant packet does pass forward (as IPv6 with an inner
# IPv4 / IPv6 packet, still from the tenant's interface): the outbound filter lets it go;
# npms_steering drops such packets when a customer sends them itself.
ENCAP_L4 = ("ipencap", "ipv6")
MAX_RATE_MBPS = 400000
MAX_BURST_KBYTES = 1 << 20
BYTES_PER_MBIT = 125000

ITEM_FIELDS = ("tenant", "tenant_id", "interfaces", "classes", "security_groups", "drift")
CLASS_FIELDS = ("name", "dscp", "rate_mbps", "burst_kbytes")
GROUP_FIELDS = ("name", "interfaces", "rules")
RULE_FIELDS = ("direction", "protocol", "ports", "sources", "destinations")

# nft prints well-known DSCP values by name (nft 1.0.6 names; any other value as a number).
DSCP_NAMES = {
    "cs0": 0, "lephb": 1, "le": 1, "cs1": 8, "af11": 10, "af12": 12, "af13": 14, "cs2": 16, "af21": 18,
    "af22": 20, "af23": 22, "cs3": 24, "af31": 26, "af32": 28, "af33": 30, "cs4": 32, "af41": 34,
    "af42": 36, "af43": 38, "cs5": 40, "va": 44, "ef": 46, "cs6": 48, "cs7": 56,
}
UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
L4_NAMES = {"icmp": "icmp", "icmpv6": "ipv6-icmp"}

# Rollback: mktemp -d -t <this>; the cookie and backup live inside.
ROLLBACK_TEMPLATE = "npms-nftables.XXXXXXXX"
COOKIE_RE = re.compile(r"^(/[A-Za-z0-9_.+-]+)*/npms-nftables\.[A-Za-z0-9]{8}/cookie$")
# $1: directory, $2: seconds.  The first `exec` detaches from the caller's pipes so that the
# runner (and Ansible) return at once.  `rm` of the cookie is the atomic "who wins" test.
ROLLBACK_SCRIPT = (
    'exec </dev/null >/dev/null 2>&1; sleep "$2"; '
    'if rm "$1/cookie"; then '
    'if nft -f "$1/backup.nft"; then rm -rf "$1"; else echo "restore failed" > "$1/FAILED"; fi; '
    'else rm -rf "$1"; fi'
)
ROLLBACK_PROCESS = "npms-nftables-rollback"


def table_name(tenant: str) -> str:
    return TABLE_PREFIX + tenant


# --- canonical values ------------------------------------------------------------------
def _merge_ranges(ranges: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[List[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(pair[0], pair[1]) for pair in out]


def _port_text(lo: int, hi: int) -> Any:
    return lo if lo == hi else f"{lo}-{hi}"


def ports_canonical(ranges: Iterable[Tuple[int, int]]) -> List[Any]:
    return [_port_text(lo, hi) for lo, hi in _merge_ranges(ranges)]


def _port_range(value: Any) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    lo, _sep, hi = str(value).partition("-")
    return int(lo), int(hi or lo)


def _collapse(prefixes: Iterable[Any]) -> List[str]:
    nets = [ipaddress.ip_network(p) for p in prefixes]
    out: List[str] = []
    for version in (4, 6):
        out += [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]
    return out


def _rate_value(rate_bytes: int) -> Any:
    return rate_bytes // BYTES_PER_MBIT if rate_bytes % BYTES_PER_MBIT == 0 else round(rate_bytes / BYTES_PER_MBIT, 6)


def _burst_value(burst_bytes: int) -> Any:
    return burst_bytes // 1024 if burst_bytes % 1024 == 0 else round(burst_bytes / 1024, 3)


def _number(value: Any, where: str, name: str, lo: float, hi: float) -> Any:
    if isinstance(value, bool):
        raise ResourceError(f"{where}: {name}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ResourceError(f"{where}: {name}: {value!r} is not a number") from None
    if not lo <= number <= hi:
        raise ResourceError(f"{where}: {name}: {value!r} is out of range {lo:g}..{hi:g}")
    return number


# --- the intermediate form: what a table does, rule by rule ------------------------------
# A rule is {"match": {key: tuple}, "stmts": tuple, "comment": str|None}; match keys are
# iifname, oifname, "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "ip dscp", "ip6 dscp",
# l4proto, dport, sport, "ct state", nfproto.  Rendering and parsing both go through it, so
# gather compares what the node does with what the item asks for, not strings.
def _rule(match: Optional[Dict[str, Tuple[Any, ...]]] = None, stmts: Sequence[Tuple[Any, ...]] = (),
          comment: Optional[str] = None) -> Dict[str, Any]:
    return {"match": dict(match or {}), "stmts": tuple(stmts), "comment": comment}


def _chain(hook: Optional[Tuple[str, str, int, str]], rules: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"hook": hook, "rules": rules}


def _addr_key(family: int, side: str) -> str:
    return f"{'ip' if family == 4 else 'ip6'} {side}"


def table_ir(item: Mapping[str, Any]) -> Dict[str, Any]:
    """What the table of ``item`` (normalized, with defaults) consists of."""
    ifs = tuple(item["interfaces"])
    marker = f"{MARKER} tenant={item['tenant']}" + (f" tenant_id={item['tenant_id']}" if item.get("tenant_id") is not None else "")
    counters: Dict[str, str] = {MARKER_COUNTER: marker}
    # insertion order is the order of the rendered text: base chain first, then what it calls
    chains: Dict[str, Dict[str, Any]] = {
        "classes": _chain(("filter", "prerouting", PRIO_CLASSES, "accept"),
                          [_rule({"iifname": ifs}, [("counter", MARKER_COUNTER), ("jump", "classify")])]),
        "classify": _chain(None, []),
    }
    classify: List[Dict[str, Any]] = chains["classify"]["rules"]
    default_class = None
    for cls in item.get("classes") or []:
        name = cls["name"]
        chain = f"class_{name}"
        counters[chain] = f"npms class {name}"
        rules = [_rule(stmts=[("counter", chain)])]
        if cls.get("rate_mbps") is not None:
            counters[f"policed_{name}"] = f"npms policed {name}"
            rate = int(round(cls["rate_mbps"] * BYTES_PER_MBIT))
            burst = int(round((cls.get("burst_kbytes") or 0) * 1024))
            rules.append(_rule(stmts=[("limit", rate, burst, True, "second", "bytes"), ("counter", f"policed_{name}"), ("drop",)]))
        chains[chain] = _chain(None, rules)
        if cls["dscp"]:
            for key in ("ip dscp", "ip6 dscp"):
                classify.append(_rule({key: tuple(cls["dscp"])}, [("goto", chain)]))
        else:
            default_class = chain
    if default_class:
        classify.append(_rule(stmts=[("goto", default_class)]))

    groups = item.get("security_groups") or []
    if groups:
        chains["filter"] = _chain(("filter", "forward", PRIO_FILTER, "accept"),
                                  [_rule({"iifname": ifs}, [("jump", "outbound")]), _rule({"oifname": ifs}, [("jump", "inbound")])])
        chains["input"] = _chain(("filter", "input", PRIO_FILTER, "accept"), [_rule({"iifname": ifs}, [("jump", "local")])])
        established = _rule({"ct state": ("established", "related")}, [("accept",)])
        invalid = _rule({"ct state": ("invalid",)}, [("drop",)])
        encapsulated = _rule({"nfproto": ("ipv6",), "l4proto": ENCAP_L4}, [("accept",)], "npms srv6 encapsulated")
        per_dir: Dict[str, List[Dict[str, Any]]] = {
            # the encapsulated packet carries its inner packet's conntrack entry, which nft
            # reports as invalid for an IPv6 packet: let it pass first
            "outbound": [encapsulated, established, invalid],
            # no "invalid" drop: a packet decapsulated by End.DX4 / End.DX6 reaches forward
            # without conntrack (it skipped prerouting as itself), which nft calls invalid;
            # inbound rules are what lets replies of overlay traffic in
            "inbound": [established],
            # what the edge needs from the customer router comes before anything that drops
            "local": [established,
                      _rule({"l4proto": ("tcp",), "dport": ((179, 179),)}, [("accept",)]),
                      _rule({"l4proto": ("tcp",), "sport": ((179, 179),)}, [("accept",)]),
                      _rule({"l4proto": ("icmp", "ipv6-icmp")}, [("accept",)]),
                      invalid],
        }
        for group in groups:
            counters[f"sg_{group['name']}"] = f"npms security group {group['name']}"
            for index, rule in enumerate(group.get("rules") or []):
                per_dir[rule["direction"]] += _group_rules(group, index, rule)
        for direction, rules in per_dir.items():
            counters[f"denied_{direction}"] = f"npms denied {direction}"
            chains[direction] = _chain(None, rules + [_rule(stmts=[("counter", f"denied_{direction}"), ("drop",)])])
        chains["input"] = chains.pop("input")
        chains["local"] = chains.pop("local")
    return {"counters": counters, "chains": chains}


def _group_rules(group: Mapping[str, Any], index: int, rule: Mapping[str, Any]) -> List[Dict[str, Any]]:
    base: Dict[str, Tuple[Any, ...]] = {}
    if group.get("interfaces"):
        base["oifname" if rule["direction"] == "inbound" else "iifname"] = tuple(group["interfaces"])
    proto = rule["protocol"]
    if proto in ("tcp", "udp"):
        base["l4proto"] = (proto,)
        if rule["ports"]:
            base["dport"] = tuple(_merge_ranges(_port_range(p) for p in rule["ports"]))
    elif proto != "any":
        base["l4proto"] = (L4_NAMES[proto],)
    stmts = [("counter", f"sg_{group['name']}"), ("accept",)]
    comment = f"sg {group['name']} {index}"
    sources, destinations = rule["sources"], rule["destinations"]
    if not sources and not destinations:
        return [_rule(base, stmts, comment)]
    out = []
    for family in (4, 6):
        src = tuple(p for p in sources if ipaddress.ip_network(p).version == family)
        dst = tuple(p for p in destinations if ipaddress.ip_network(p).version == family)
        if (sources and not src) or (destinations and not dst):
            continue
        match = dict(base)
        if src:
            match[_addr_key(family, "saddr")] = src
        if dst:
            match[_addr_key(family, "daddr")] = dst
        out.append(_rule(match, stmts, comment))
    return out


# --- text --------------------------------------------------------------------------------
def _set_text(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def rule_text(rule: Mapping[str, Any]) -> str:
    """One rule as nft syntax (what nft prints back, up to set order)."""
    m = rule["match"]
    parts: List[str] = []
    for key in ("iifname", "oifname"):
        if key in m:
            parts.append(f"{key} " + _set_text([f'"{v}"' for v in m[key]]))
    if "nfproto" in m:
        parts.append("meta nfproto " + _set_text(list(m["nfproto"])))
    for fam in ("ip", "ip6"):
        for side in ("saddr", "daddr"):
            if f"{fam} {side}" in m:
                parts.append(f"{fam} {side} " + _set_text(list(m[f"{fam} {side}"])))
    l4 = list(m.get("l4proto", ()))
    ports = [(k, m[k]) for k in ("dport", "sport") if k in m]
    if ports and len(l4) == 1 and l4[0] in ("tcp", "udp"):
        proto = l4[0]
    else:
        if l4:
            parts.append("meta l4proto " + _set_text(l4))
        proto = "th"
    for key, ranges in ports:
        parts.append(f"{proto} {key} " + _set_text([str(_port_text(lo, hi)) for lo, hi in ranges]))
    for key in ("ip dscp", "ip6 dscp"):
        if key in m:
            parts.append(f"{key} " + _set_text([str(v) for v in m[key]]))
    if "ct state" in m:
        parts.append("ct state " + ",".join(m["ct state"]))
    for other in sorted(set(m) - _MATCH_KEYS):
        parts.append(f"<{other} {m[other]}>")
    for stmt in rule["stmts"]:
        parts.append(_stmt_text(stmt))
    if rule.get("comment"):
        parts.append(f'comment "{rule["comment"]}"')
    return " ".join(parts)


_MATCH_KEYS = {"iifname", "oifname", "nfproto", "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "l4proto", "dport", "sport",
               "ip dscp", "ip6 dscp", "ct state"}


def _stmt_text(stmt: Tuple[Any, ...]) -> str:
    kind = stmt[0]
    if kind == "counter":
        return f'counter name "{stmt[1]}"' if len(stmt) > 1 else "counter"
    if kind == "limit":
        _kind, rate, burst, inv, per, unit = stmt
        text = f"limit rate {'over ' if inv else ''}{rate} {unit}/{per}"
        return text + (f" burst {burst} {unit}" if burst else "")
    if kind in ("jump", "goto"):
        return f"{kind} {stmt[1]}"
    if kind in ("accept", "drop", "return"):
        return kind
    return f"<{json.dumps(stmt[1], sort_keys=True)}>"


def render_table(item: Mapping[str, Any]) -> List[str]:
    """The nft definition of ``item``'s table (``table inet npms_<t> { ... }``)."""
    ir = table_ir(item)
    lines = [f"table {FAMILY} {table_name(item['tenant'])} {{",
             f'    comment "galactic.npms nftables, tenant {item["tenant"]}: edits by hand are undone"']
    for name, comment in ir["counters"].items():
        lines.append(f'    counter {name} {{ comment "{comment}"; }}')
    for name, chain in ir["chains"].items():
        lines.append(f"    chain {name} {{")
        if chain["hook"]:
            ctype, hook, prio, policy = chain["hook"]
            lines.append(f"        type {ctype} hook {hook} priority {prio}; policy {policy};")
        lines += ["        " + rule_text(r) for r in chain["rules"]]
        lines.append("    }")
    lines.append("}")
    return lines


# --- nft -j output -------------------------------------------------------------------------
class _Unknown(Exception):
    pass


def _values(right: Any) -> List[Any]:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    if isinstance(right, list):
        return list(right)
    return [right]


def _addr_values(right: Any) -> Tuple[str, ...]:
    nets: List[Any] = []
    for v in _values(right):
        if isinstance(v, dict) and "prefix" in v:
            nets.append(ipaddress.ip_network(f"{v['prefix']['addr']}/{v['prefix']['len']}"))
        elif isinstance(v, dict) and "range" in v:
            lo, hi = (ipaddress.ip_address(a) for a in v["range"])
            nets += list(ipaddress.summarize_address_range(lo, hi))
        elif isinstance(v, str):
            nets.append(ipaddress.ip_network(v))
        else:
            raise _Unknown(v)
    return tuple(_collapse(nets))


def _port_values(right: Any) -> Tuple[Tuple[int, int], ...]:
    ranges = []
    for v in _values(right):
        if isinstance(v, dict) and "range" in v:
            ranges.append((int(v["range"][0]), int(v["range"][1])))
        elif isinstance(v, int):
            ranges.append((v, v))
        else:
            raise _Unknown(v)
    return tuple(_merge_ranges(ranges))


def _dscp_values(right: Any) -> Tuple[int, ...]:
    out = set()
    for v in _values(right):
        if isinstance(v, int):
            out.add(v)
        elif isinstance(v, str) and v in DSCP_NAMES:
            out.add(DSCP_NAMES[v])
        elif isinstance(v, str) and re.match(r"^0x[0-9a-f]+$", v):
            out.add(int(v, 16))
        else:
            raise _Unknown(v)
    return tuple(sorted(out))


def _parse_match(match: Mapping[str, Any], out: Dict[str, Tuple[Any, ...]]) -> None:
    left, right, op = match.get("left"), match.get("right"), match.get("op")
    if not isinstance(left, dict):
        raise _Unknown(match)
    if "meta" in left and op == "==":
        key = left["meta"].get("key")
        if key in ("iifname", "oifname", "l4proto", "nfproto"):
            out[key] = tuple(sorted(str(v) for v in _values(right)))
            return
    if "payload" in left and op == "==":
        proto, field = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6") and field in ("saddr", "daddr"):
            out[f"{proto} {field}"] = _addr_values(right)
            return
        if proto in ("ip", "ip6") and field == "dscp":
            out[f"{proto} dscp"] = _dscp_values(right)
            return
        if proto in ("tcp", "udp", "th") and field in ("dport", "sport"):
            if proto != "th":
                out["l4proto"] = (proto,)
            out[field] = _port_values(right)
            return
    if "ct" in left and left["ct"].get("key") == "state" and op in ("in", "=="):
        out["ct state"] = tuple(sorted(str(v) for v in _values(right)))
        return
    raise _Unknown(match)


def _parse_rule(rule: Mapping[str, Any]) -> Dict[str, Any]:
    match: Dict[str, Tuple[Any, ...]] = {}
    stmts: List[Tuple[Any, ...]] = []
    for expr in rule.get("expr") or []:
        try:
            if "match" in expr:
                _parse_match(expr["match"], match)
            elif "counter" in expr:
                stmts.append(("counter", expr["counter"]) if isinstance(expr["counter"], str) else ("counter",))
            elif "limit" in expr:
                lim = expr["limit"]
                unit = lim.get("rate_unit", "packets")
                rate = int(lim["rate"]) * UNITS.get(unit, 1)
                burst = int(lim.get("burst") or 0) * UNITS.get(lim.get("burst_unit", unit), 1)
                stmts.append(("limit", rate, burst, bool(lim.get("inv")), lim.get("per", "second"), "bytes" if unit in UNITS else unit))
            elif "jump" in expr or "goto" in expr:
                kind = "jump" if "jump" in expr else "goto"
                stmts.append((kind, expr[kind]["target"]))
            elif set(expr) <= {"accept", "drop", "return"} and len(expr) == 1:
                stmts.append((next(iter(expr)),))
            else:
                raise _Unknown(expr)
        except (_Unknown, KeyError, TypeError, ValueError):
            stmts.append(("unknown", expr))
    return _rule(match, stmts, rule.get("comment"))


def _tables_from_json(text: str) -> Dict[str, Dict[str, Any]]:
    """``{table name: {"counters", "counter_values", "chains", "others"}}`` for every
    ``inet npms_*`` table in ``nft -j list ruleset`` output."""
    try:
        data = json.loads(text) if text.strip() else {"nftables": []}
        objects = data["nftables"]
    except (ValueError, TypeError, KeyError):
        raise ResourceError("nftables: expected the JSON output of `nft -j list ruleset`") from None
    tables: Dict[str, Dict[str, Any]] = {}

    def table(name: str) -> Dict[str, Any]:
        return tables.setdefault(name, {"counters": {}, "counter_values": {}, "chains": {}, "others": []})

    for obj in objects:
        if not isinstance(obj, dict) or len(obj) != 1:
            continue
        kind, body = next(iter(obj.items()))
        # only tables npms could own are read: nothing else on the node is parsed
        if not isinstance(body, dict) or body.get("family") != FAMILY or not str(body.get("table", body.get("name", ""))).startswith(TABLE_PREFIX):
            continue
        if kind == "table":
            table(body["name"])
        elif kind == "counter":
            t = table(body["table"])
            t["counters"][body["name"]] = body.get("comment", "")
            t["counter_values"][body["name"]] = {"packets": body.get("packets", 0), "bytes": body.get("bytes", 0)}
        elif kind == "chain":
            hook = None
            if "hook" in body:
                hook = (body.get("type"), body["hook"], body.get("prio"), body.get("policy", "accept"))
            table(body["table"])["chains"][body["name"]] = _chain(hook, [])
        elif kind == "rule":
            chains = table(body["table"])["chains"]
            chains.setdefault(body["chain"], _chain(None, []))["rules"].append(_parse_rule(body))
        elif "table" in body:
            table(body["table"])["others"].append(f"{kind} {body.get('name', '')}".strip())
    return tables


def _marker(comment: str) -> Optional[Dict[str, str]]:
    if not comment.startswith(MARKER + " "):
        return None
    return dict(part.split("=", 1) for part in comment[len(MARKER) + 1:].split() if "=" in part)


def _compare(want: Mapping[str, Any], have: Mapping[str, Any]) -> List[str]:
    """What differs between two table forms, as short sentences."""
    out: List[str] = []
    for name in sorted(set(want["counters"]) | set(have["counters"])):
        if name not in have["counters"]:
            out.append(f"counter {name} is missing")
        elif name not in want["counters"]:
            out.append(f"counter {name} is not npms's")
        elif want["counters"][name] != have["counters"][name]:
            out.append(f"counter {name} has comment {have['counters'][name]!r}")
    for other in have.get("others", []):
        out.append(f"{other} is not npms's")
    for name in list(want["chains"]) + sorted(set(have["chains"]) - set(want["chains"])):
        if name not in have["chains"]:
            out.append(f"chain {name} is missing")
            continue
        if name not in want["chains"]:
            out.append(f"chain {name} is not npms's")
            continue
        w, h = want["chains"][name], have["chains"][name]
        if w["hook"] != h["hook"]:
            out.append(f"chain {name}: hook {h['hook']} instead of {w['hook']}")
        # compared as text: two rules that print the same do the same (sets are canonical)
        wt, ht = [rule_text(r) for r in w["rules"]], [rule_text(r) for r in h["rules"]]
        for op, w0, w1, h0, h1 in difflib.SequenceMatcher(a=wt, b=ht, autojunk=False).get_opcodes():
            if op == "equal":
                continue
            if op == "replace" and w1 - w0 == h1 - h0:
                out += [f"chain {name}: rule {h0 + k + 1} is `{ht[h0 + k]}` instead of `{wt[w0 + k]}`" for k in range(w1 - w0)]
                continue
            out += [f"chain {name}: rule `{wt[k]}` is missing" for k in range(w0, w1)]
            out += [f"chain {name}: extra rule {k + 1} `{ht[k]}`" for k in range(h0, h1)]
    return out


class NftTables(Resource):
    """Per-tenant nftables tables (``inet npms_<tenant>``): DSCP classes with counters and
    policers, stateful default-deny security groups; applied in one ``nft -f``
    transaction, with an optional self-restoring rollback (see the module docstring)."""

    name = "nftables"
    report_fields = ("drift",)
    key_fields = ("tenant",)
    merge_lists = {"classes": ("name",), "security_groups": ("name",)}

    def __init__(self, runner: Optional[Runner] = None, rollback_timeout: int = 0):
        super().__init__(runner)
        self.runner = runner
        self.rollback_timeout = rollback_timeout
        #: path of the cookie of the last apply with a rollback_timeout (None otherwise)
        self.rollback_cookie: Optional[str] = None
        self._foreign: set = set()
        self._counters: Dict[str, Dict[str, Dict[str, int]]] = {}

    # --- input ---------------------------------------------------------------------------
    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        if item.get("tenant") is None or item.get("tenant") == "":
            raise ResourceError(f"{where}: tenant is required")
        out: Dict[str, Any] = {"tenant": f.label(item["tenant"], where, "tenant")}
        where = f"{where} (tenant {out['tenant']})"
        unknown_fields(item, ITEM_FIELDS, where)
        if item.get("tenant_id") is not None:
            out["tenant_id"] = f.integer(item["tenant_id"], where, "tenant_id", 1, MAX_TENANT_ID)
        if item.get("interfaces") is not None:
            ifs = f.listing(item["interfaces"], where, "interfaces")
            out["interfaces"] = sorted({f.ifname(v, where, f"interfaces[{i}]") for i, v in enumerate(ifs)})
            if not out["interfaces"]:
                raise ResourceError(f"{where}: interfaces: needs at least one interface (the tenant's attachments)")
        if item.get("classes") is not None:
            out["classes"] = self._classes(item["classes"], where)
        if item.get("security_groups") is not None:
            out["security_groups"] = self._groups(item["security_groups"], where)
        return out

    def _classes(self, value: Any, where: str) -> List[Dict[str, Any]]:
        classes: Dict[str, Dict[str, Any]] = {}
        owner: Dict[int, str] = {}
        default = None
        for i, raw in enumerate(f.listing(value, where, "classes")):
            cw = f"{where} classes[{i}]"
            if not isinstance(raw, Mapping):
                raise ResourceError(f"{cw}: must be a mapping with name, dscp, rate_mbps, burst_kbytes")
            unknown_fields(raw, CLASS_FIELDS, cw)
            if raw.get("name") is None or raw.get("name") == "":
                raise ResourceError(f"{cw}: name is required")
            cls: Dict[str, Any] = {"name": f.label(raw["name"], cw, "name")}
            cw = f"{cw} ({cls['name']})"
            if cls["name"] in classes:
                raise ResourceError(f"{cw}: name: class {cls['name']} is listed twice")
            if raw.get("dscp") is not None:
                # left out: merged keeps the class's values (defaults() makes it [] otherwise)
                cls["dscp"] = f.dscp_list(raw["dscp"], cw, "dscp")
                for code in cls["dscp"]:
                    if code in owner:
                        raise ResourceError(f"{cw}: dscp: {code} is already in class {owner[code]}")
                    owner[code] = cls["name"]
                if not cls["dscp"]:
                    if default:
                        raise ResourceError(f"{cw}: dscp: empty (everything else), but class {default} already takes everything else")
                    default = cls["name"]
            if raw.get("rate_mbps") is not None:
                rate = int(round(_number(raw["rate_mbps"], cw, "rate_mbps", 0, MAX_RATE_MBPS) * BYTES_PER_MBIT))
                if rate < 1:
                    raise ResourceError(f"{cw}: rate_mbps: {raw['rate_mbps']!r} must be more than 0")
                cls["rate_mbps"] = _rate_value(rate)
            if raw.get("burst_kbytes") is not None:
                # without rate_mbps here: merged may change the burst of a policed class (defaults() checks)
                cls["burst_kbytes"] = f.integer(raw["burst_kbytes"], cw, "burst_kbytes", 0, MAX_BURST_KBYTES)
            classes[cls["name"]] = cls
        return [classes[k] for k in sorted(classes)]

    def _groups(self, value: Any, where: str) -> List[Dict[str, Any]]:
        groups: Dict[str, Dict[str, Any]] = {}
        for i, raw in enumerate(f.listing(value, where, "security_groups")):
            gw = f"{where} security_groups[{i}]"
            if not isinstance(raw, Mapping):
                raise ResourceError(f"{gw}: must be a mapping with name, interfaces, rules")
            unknown_fields(raw, GROUP_FIELDS, gw)
            if raw.get("name") is None or raw.get("name") == "":
                raise ResourceError(f"{gw}: name is required")
            group: Dict[str, Any] = {"name": f.label(raw["name"], gw, "name")}
            gw = f"{gw} ({group['name']})"
            if group["name"] in groups:
                raise ResourceError(f"{gw}: name: security group {group['name']} is listed twice")
            if raw.get("interfaces") is not None:
                ifs = f.listing(raw["interfaces"], gw, "interfaces")
                group["interfaces"] = sorted({f.ifname(v, gw, f"interfaces[{j}]") for j, v in enumerate(ifs)})
            if raw.get("rules") is not None:
                group["rules"] = [self._rule(r, f"{gw} rules[{j}]") for j, r in enumerate(f.listing(raw["rules"], gw, "rules"))]
            groups[group["name"]] = group
        return [groups[k] for k in sorted(groups)]

    def _rule(self, raw: Any, where: str) -> Dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise ResourceError(f"{where}: must be a mapping with {', '.join(RULE_FIELDS)}")
        unknown_fields(raw, RULE_FIELDS, where)
        rule: Dict[str, Any] = {
            "direction": f.one_of(raw.get("direction") or "outbound", DIRECTIONS, where, "direction"),
            "protocol": f.one_of(raw.get("protocol") or "any", PROTOCOLS, where, "protocol"),
        }
        ranges = []
        for j, port in enumerate(f.listing(raw.get("ports"), where, "ports")):
            text = str(port).strip()
            m = re.match(r"^(\d+)(?:\s*-\s*(\d+))?$", text) if not isinstance(port, bool) else None
            if not m:
                raise ResourceError(f"{where}: ports[{j}]: {port!r} is not a port or a range lo-hi")
            lo = f.integer(m.group(1), where, f"ports[{j}]", 1, 65535)
            hi = f.integer(m.group(2), where, f"ports[{j}]", 1, 65535) if m.group(2) else lo
            if hi < lo:
                raise ResourceError(f"{where}: ports[{j}]: {port!r}: the range ends before it starts")
            ranges.append((lo, hi))
        if ranges and rule["protocol"] not in ("tcp", "udp"):
            raise ResourceError(f"{where}: ports: only with protocol tcp or udp, not {rule['protocol']}")
        rule["ports"] = ports_canonical(ranges)
        families = {}
        for side in ("sources", "destinations"):
            nets = [f.prefix(p, where, f"{side}[{j}]") for j, p in enumerate(f.listing(raw.get(side), where, side))]
            rule[side] = _collapse(nets)
            families[side] = {ipaddress.ip_network(n).version for n in nets}
        if rule["sources"] and rule["destinations"] and families["sources"] != families["destinations"]:
            raise ResourceError(f"{where}: sources and destinations: both must give the same IP families "
                                f"(sources IPv{'+'.join(map(str, sorted(families['sources'])))}, "
                                f"destinations IPv{'+'.join(map(str, sorted(families['destinations'])))})")
        used = families["sources"] | families["destinations"]
        if rule["protocol"] == "icmp" and 6 in used:
            raise ResourceError(f"{where}: protocol: icmp is IPv4; use icmpv6 for IPv6 prefixes")
        if rule["protocol"] == "icmpv6" and 4 in used:
            raise ResourceError(f"{where}: protocol: icmpv6 is IPv6; use icmp for IPv4 prefixes")
        return rule

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        where = f"{self.name}: tenant {item['tenant']}"
        if not item.get("interfaces"):
            raise ResourceError(f"{where}: interfaces is required to create or replace a tenant's table")
        item["classes"] = sorted(item.get("classes") or [], key=lambda c: c["name"])
        # checked again here: merged combines the classes on the node with the given ones
        catch_all = [c["name"] for c in item["classes"] if not c.get("dscp")]
        if len(catch_all) > 1:
            raise ResourceError(f"{where}: classes {', '.join(catch_all)} all have an empty dscp; at most one class takes everything else")
        owner: Dict[int, str] = {}
        for cls in item["classes"]:
            cls.setdefault("dscp", [])
            for code in cls["dscp"]:
                if code in owner:
                    raise ResourceError(f"{where}: class {cls['name']}: dscp: {code} is already in class {owner[code]}")
                owner[code] = cls["name"]
            if cls.get("rate_mbps") is not None:
                cls.setdefault("burst_kbytes", 0)
            elif "burst_kbytes" in cls:
                raise ResourceError(f"{where}: class {cls['name']}: burst_kbytes: only with rate_mbps (an unpoliced class has no burst)")
        item["security_groups"] = sorted(item.get("security_groups") or [], key=lambda g: g["name"])
        for group in item["security_groups"]:
            group.setdefault("rules", [])
            ifs = group.get("interfaces")
            if ifs is not None:
                extra = sorted(set(ifs) - set(item["interfaces"]))
                if extra:
                    raise ResourceError(f"{where}: security group {group['name']}: interfaces: {', '.join(extra)} "
                                        f"not among the tenant's interfaces ({', '.join(item['interfaces'])})")
                # all interfaces is the default; without rules the interfaces change nothing
                if set(ifs) == set(item["interfaces"]) or not group["rules"]:
                    del group["interfaces"]
        return item

    # --- reading the node ----------------------------------------------------------------------
    def gather(self) -> List[Dict[str, Any]]:
        return self._items(self.runner.run(["nft", "-j", "list", "ruleset"]).stdout)

    def parse(self, text: str) -> List[Dict[str, Any]]:
        """Items from ``nft -j list ruleset`` (or ``nft -j list table ...``) output."""
        return self._items(text)

    def _items(self, text: str) -> List[Dict[str, Any]]:
        items = []
        self._foreign = set()
        self._counters = {}
        for name, table in sorted(_tables_from_json(text).items()):
            if not name.startswith(TABLE_PREFIX):
                continue
            marker = _marker(table["counters"].get(MARKER_COUNTER, ""))
            if marker is None:
                self._foreign.add(name)
                continue
            item = self._item_from_table(name[len(TABLE_PREFIX):], marker, table)
            self._counters[item["tenant"]] = table["counter_values"]
            items.append(item)
        return items

    def _item_from_table(self, tenant: str, marker: Mapping[str, str], table: Mapping[str, Any]) -> Dict[str, Any]:
        chains = table["chains"]
        raw: Dict[str, Any] = {"tenant": tenant}
        if marker.get("tenant_id"):
            raw["tenant_id"] = marker["tenant_id"]
        entry = (chains.get("classes") or {}).get("rules") or []
        raw["interfaces"] = list(entry[0]["match"].get("iifname", ())) if entry else []
        classes = []
        dscp: Dict[str, set] = {}
        for rule in (chains.get("classify") or {}).get("rules", []):
            for stmt in rule["stmts"]:
                if stmt[0] == "goto":
                    found = dscp.setdefault(stmt[1], set())
                    found.update(rule["match"].get("ip dscp", ()), rule["match"].get("ip6 dscp", ()))
        for chain_name, chain in chains.items():
            if not chain_name.startswith("class_"):
                continue
            cls: Dict[str, Any] = {"name": chain_name[len("class_"):], "dscp": sorted(dscp.get(chain_name, ()))}
            for rule in chain["rules"]:
                for stmt in rule["stmts"]:
                    if stmt[0] == "limit" and stmt[5] == "bytes":
                        cls["rate_mbps"] = _rate_value(stmt[1])
                        cls["burst_kbytes"] = _burst_value(stmt[2])
            classes.append(cls)
        raw["classes"] = classes
        groups: Dict[str, Dict[str, Any]] = {}
        for counter in table["counters"]:
            if counter.startswith("sg_"):
                groups[counter[3:]] = {"name": counter[3:], "rules": {}}
        for direction in DIRECTIONS:
            for rule in (chains.get(direction) or {}).get("rules", []):
                m = re.match(r"^sg (\S+) (\d+)$", rule.get("comment") or "")
                if not m or m.group(1) not in groups:
                    continue
                group = groups[m.group(1)]
                match = rule["match"]
                r = group["rules"].setdefault(int(m.group(2)), {
                    "direction": direction, "protocol": "any", "ports": [], "sources": [], "destinations": []})
                l4 = match.get("l4proto", ())
                if len(l4) == 1:
                    r["protocol"] = {"ipv6-icmp": "icmpv6"}.get(l4[0], l4[0])
                r["ports"] = ports_canonical(match.get("dport", ()))
                r["sources"] = _collapse(r["sources"] + list(match.get("ip saddr", ()) + match.get("ip6 saddr", ())))
                r["destinations"] = _collapse(r["destinations"] + list(match.get("ip daddr", ()) + match.get("ip6 daddr", ())))
                ifs = match.get("oifname" if direction == "inbound" else "iifname")
                if ifs:
                    group["interfaces"] = list(ifs)
        raw["security_groups"] = [
            {**{k: v for k, v in g.items() if k != "rules"}, "rules": [g["rules"][i] for i in sorted(g["rules"])]}
            for g in groups.values()
        ]
        problems: List[str] = []
        if marker.get("tenant", tenant) != tenant:
            problems.append(f"the marker names tenant {marker.get('tenant')!r}")
        try:
            item = self.defaults(self.normalize(raw, f"table {FAMILY} {table_name(tenant)}"))
        except ResourceError as exc:
            item = raw
            problems.append(str(exc))
        else:
            problems += _compare(table_ir(item), table)
        if problems:
            item["drift"] = problems
        return item

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        """The named counters of each tenant's table, as read by the last gather:
        ``{"nftables_counters": {tenant: {counter: {"packets": n, "bytes": n}}}}``."""
        return {"nftables_counters": dict(self._counters)} if self._counters else {}

    # --- changing the node -----------------------------------------------------------------------
    def render_change(self, change: Change) -> List[str]:
        name = table_name(change.key[0])
        if change.op == DELETE:
            return [f"delete table {FAMILY} {name}"]
        if change.op == ADD and name in self._foreign:
            raise ResourceError(f"{self.name}: tenant {change.key[0]}: table {FAMILY} {name} exists but was not made by "
                                "galactic.npms (no npms marker counter); rename or delete it by hand")
        # declare (so that delete never fails), delete, define: one transaction re-creates it
        return [f"table {FAMILY} {name}", f"delete table {FAMILY} {name}"] + render_table(change.after)

    def apply_change(self, change: Change) -> None:
        self.apply([change])

    def apply(self, changes: Sequence[Change]) -> None:
        script: List[str] = []
        for change in changes:
            script += self.render_change(change)
        cookie_dir = self._arm(changes) if self.rollback_timeout and self.rollback_timeout > 0 else None
        try:
            self.runner.run(["nft", "-f", "-"], stdin="\n".join(script) + "\n")
        except CommandError as exc:
            if cookie_dir:
                self.runner.run(["rm", "-rf", cookie_dir], check=False)
                self.rollback_cookie = None
            raise ResourceError(f"{self.name}: the nft transaction failed and changed nothing: {_nft_error(exc)}",
                                rolled_back=True) from None

    def _arm(self, changes: Sequence[Change]) -> str:
        """Save what ``changes`` will touch, then start the process that restores it."""
        backup: List[str] = []
        for change in changes:
            name = table_name(change.key[0])
            backup += [f"table {FAMILY} {name}", f"delete table {FAMILY} {name}"]
            if change.op != ADD:
                backup.append(self.runner.run(["nft", "list", "table", FAMILY, name]).stdout)
        cookie_dir = self.runner.run(["mktemp", "-d", "-t", ROLLBACK_TEMPLATE]).stdout.strip()
        self.runner.run(["sh", "-c", 'umask 077 && cat > "$1/backup.nft" && : > "$1/cookie"', "sh", cookie_dir],
                        stdin="\n".join(backup) + "\n")
        self.runner.run(["setsid", "-f", "sh", "-c", ROLLBACK_SCRIPT, ROLLBACK_PROCESS, cookie_dir, str(int(self.rollback_timeout))])
        self.rollback_cookie = f"{cookie_dir}/cookie"
        return cookie_dir


def _nft_error(exc: CommandError) -> str:
    """nft's error line and the statement it points at (its last line is only carets)."""
    lines = [ln.strip() for ln in (exc.stderr or "").splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "Error:" in line:
            return line + (f" (in: {lines[i + 1]})" if i + 1 < len(lines) and not set(lines[i + 1]) <= {"^", " "} else "")
    return str(exc)


def _check_cookie(cookie: str) -> str:
    if not isinstance(cookie, str) or ".." in cookie or not COOKIE_RE.match(cookie):
        raise ResourceError(f"nftables: {cookie!r} is not a rollback cookie of galactic.npms (.../npms-nftables.XXXXXXXX/cookie)")
    return cookie.rsplit("/", 1)[0]


def confirm_rollback(runner: Runner, cookie: str) -> None:
    """Keep the change made with ``cookie``: remove the cookie so that the pending
    rollback does nothing.  Fails when the rollback already ran (or was confirmed)."""
    _check_cookie(cookie)
    res = runner.run(["rm", cookie], check=False)
    if not res.ok:
        raise ResourceError(f"nftables: cannot confirm {cookie}: it is gone, so the rollback already restored the "
                            f"previous tables (or the change was confirmed before): {res.stderr.strip()}")


def rollback_now(runner: Runner, cookie: str) -> None:
    """Restore the tables saved with ``cookie`` now, instead of waiting for the timeout."""
    cookie_dir = _check_cookie(cookie)
    res = runner.run(["rm", cookie], check=False)
    if not res.ok:
        raise ResourceError(f"nftables: cannot roll back {cookie}: it is gone (rolled back or confirmed already)")
    try:
        runner.run(["nft", "-f", f"{cookie_dir}/backup.nft"])
    except CommandError as exc:
        raise ResourceError(f"nftables: restoring {cookie_dir}/backup.nft failed: {_nft_error(exc)}") from None
    runner.run(["rm", "-rf", cookie_dir], check=False)
