# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BGP with FRR: per-tenant customer peering that never forwards by itself.

Items
  One item per tenant.  On an edge it is a BGP **view** in the tenant's ASN
  (``router bgp <asn> view <tenant>``): a view keeps its own table, so tenants whose
  customer prefixes overlap never meet, and FRR installs nothing a view selects into the
  kernel.  That is the design's rule in one keyword: BGP learns reachability, the
  controller decides forwarding (SRv6 steering).  On a customer router the item is the
  default instance (``view: false``), which does install routes: that is how return
  traffic finds the edge.

  Neighbours are customer routers: an IPv4 or IPv6 address (the address family of that
  address), or an interface name for an unnumbered session over IPv6 link-local that
  carries IPv4 and IPv6 (RFC 5549, extended next hop).

Guards
  ``accept`` (what the customer may announce: prefix and longest length) becomes the
  prefix lists ``npms-<tenant>-in-v4/-v6`` and the route map ``npms-<tenant>-in``;
  ``advertise`` (the tenant's prefixes behind its other edges) becomes ``network``
  statements, ``npms-<tenant>-out-v4/-v6`` and ``npms-<tenant>-out``.  Inbound
  soft-reconfiguration keeps what was received before the policy, so that
  :func:`bgp_routes` can report every announcement the guard dropped, and why.

Ownership
  npms owns every BGP view, the prefix lists and route maps named ``npms-*``, and the
  default instance only when its neighbours use an ``npms-<tenant>-in`` route map.
  ``deleted`` and ``overridden`` touch nothing else.

Applying
  FRR's own ``frr-reload.py``: the node's running configuration with the owned sections
  replaced by the rendered ones is written to a file on the node and reloaded (one
  reload for the whole run); if the reload fails, the previous configuration is reloaded
  back.  ``--diff`` shows the owned configuration before and after, as FRR text.

Reading
  ``show running-config`` has no JSON form in FRR: it is read with the TextFSM template
  :data:`RUNNING_CONFIG_TEMPLATE`; operational state (sessions, routes) comes from
  ``show bgp ... json``.  In a namespace lab where FRR runs with ``-N <netns>``, the
  path space is found with ``ip netns identify`` and passed to vtysh and frr-reload.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..runner import CommandError, Runner
from .base import DELETE, Change, Resource, ResourceError, predict, require, unknown_fields

try:
    import textfsm
except ImportError:  # pragma: no cover - reported on use
    textfsm = None

FRR_RELOAD = "/usr/lib/frr/frr-reload.py"
OWN = "npms-"
AFS = ("ipv4", "ipv6")
ITEM_FIELDS = ("tenant", "asn", "view", "router_id", "neighbors", "accept", "advertise")
NEIGHBOR_FIELDS = ("peer", "remote_as", "address_families", "description")
ACCEPT_FIELDS = ("prefix", "le")
_TENANT_RE = re.compile(r"^[a-z][a-z0-9_]{0,14}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
ASN_MAX = 4294967295

# `show running-config` -> one row per line inside a BGP instance (with its ASN, view
# and address family), per npms prefix list line, and per line inside an npms route map.
RUNNING_CONFIG_TEMPLATE = r"""Value Filldown ASN (\d+)
Value Filldown VIEW (\S*)
Value Filldown AF (ipv4|ipv6|)
Value Filldown RMAP (\S*)
Value PLIST (.+?)
Value LINE (.+?)

Start
  ^router bgp ${ASN} view ${VIEW}\s*$$ -> Bgp
  ^router bgp ${ASN}${VIEW}\s*$$ -> Bgp
  ^(?:ip|ipv6) prefix-list ${PLIST}\s*$$ -> Record
  ^route-map ${RMAP}\s -> Rmap

Bgp
  ^\s+address-family ${AF} unicast\s*$$
  ^\s+exit-address-family${AF}\s*$$
  ^\s+!\s*$$
  ^\s+${LINE}\s*$$ -> Record
  ^exit\s*$$ -> Clearall Start
  ^\S -> Clearall Start

Rmap
  ^\s+${LINE}\s*$$ -> Record
  ^exit\s*$$ -> Clearall Start
  ^\S -> Clearall Start
"""


# --- node access -----------------------------------------------------------------------
class Frr:
    """vtysh and frr-reload on one node, through a runner."""

    def __init__(self, runner: Runner, pathspace: Optional[str] = None, frr_reload: str = FRR_RELOAD):
        self.runner = runner
        self._pathspace = pathspace
        self.frr_reload = frr_reload

    @property
    def pathspace(self) -> str:
        """FRR's ``-N`` name: the node's network namespace when its FRR runs with one."""
        if self._pathspace is None:
            res = self.runner.run(["ip", "netns", "identify"], check=False)
            name = res.stdout.strip() if res.ok else ""
            if name and self.runner.run(["test", "-d", f"/run/frr/{name}"], check=False).ok:
                self._pathspace = name
            else:
                self._pathspace = ""
        return self._pathspace

    def _n(self) -> List[str]:
        return ["-N", self.pathspace] if self.pathspace else []

    def show(self, command: str) -> str:
        return self.runner.run(["vtysh", *self._n(), "-c", command]).stdout

    def show_json(self, command: str) -> Any:
        text = self.show(command + " json")
        try:
            return json.loads(text or "{}")
        except ValueError as exc:
            raise ResourceError(f"frr_bgp on {self.runner.where}: '{command} json' is not JSON ({exc})") from None

    def running_config(self) -> str:
        return self.show("show running-config")

    def reload(self, text: str, test: bool = False) -> str:
        """frr-reload.py with ``text`` as the whole new configuration; its output."""
        made = self.runner.run(["sh", "-c", "f=$(mktemp /tmp/npms-frr.XXXXXX) && cat > \"$f\" && echo \"$f\""], stdin=text)
        path = made.stdout.strip()
        try:
            argv = ["python3", self.frr_reload, *self._n(), "--test" if test else "--reload", "--stdout", path]
            return self.runner.run(argv, timeout=120).stdout
        finally:
            self.runner.run(["rm", "-f", path], check=False)


# --- items -----------------------------------------------------------------------------
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _family(prefix: str) -> str:
    return "ipv4" if ipaddress.ip_network(prefix).version == 4 else "ipv6"


def _net(value: Any, where: str) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=True))
    except ValueError as exc:
        raise ResourceError(f"{where}: {value!r} is not a prefix ({exc})") from None


def _remote_as(value: Any, where: str) -> Any:
    if value in ("external", "internal"):
        return value
    try:
        asn = int(value)
    except (TypeError, ValueError):
        raise ResourceError(f"{where}: remote_as: {value!r} is not an AS number, 'external' or 'internal'") from None
    if not 1 <= asn <= ASN_MAX or isinstance(value, bool):
        raise ResourceError(f"{where}: remote_as: {value!r} is out of range 1..{ASN_MAX}")
    return asn


def _peer_families(peer: str) -> List[str]:
    if not _is_ip(peer):
        return list(AFS)  # unnumbered: both, IPv4 with IPv6 next hops
    return ["ipv4"] if ipaddress.ip_address(peer).version == 4 else ["ipv6"]


class FrrBgp(Resource):
    """Per-tenant BGP instances (views on edges) with their guards, on an FRR node."""

    name = "frr_bgp"
    key_fields = ("tenant",)

    def __init__(self, runner: Runner, pathspace: Optional[str] = None, frr_reload: str = FRR_RELOAD,
                 collect_routes: bool = False):
        super().__init__(runner)
        self.frr = Frr(runner, pathspace or None, frr_reload)
        self.collect_routes = collect_routes
        self._running: Optional[str] = None

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        """With ``collect_routes``: per tenant, sessions and learned / filtered prefixes."""
        return {"bgp": bgp_routes(self, have)} if self.collect_routes else {}

    # --- validation --------------------------------------------------------------------
    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        unknown_fields(item, ITEM_FIELDS, where)
        tenant = str(require(item, "tenant", where))
        if not _TENANT_RE.match(tenant):
            raise ResourceError(f"{where}: tenant: {tenant!r} is not a tenant name (lower case, at most 15 characters)")
        where = f"{where} (tenant {tenant})"
        out: Dict[str, Any] = {"tenant": tenant}
        if item.get("asn") is not None:
            asn = _remote_as(item["asn"], where)
            if not isinstance(asn, int):
                raise ResourceError(f"{where}: asn: {item['asn']!r} is not an AS number")
            out["asn"] = asn
        if item.get("view") is not None:
            if not isinstance(item["view"], bool):
                raise ResourceError(f"{where}: view: {item['view']!r} is not a boolean")
            out["view"] = item["view"]
        if item.get("router_id") is not None:
            try:
                out["router_id"] = str(ipaddress.IPv4Address(str(item["router_id"])))
            except ValueError:
                raise ResourceError(f"{where}: router_id: {item['router_id']!r} is not an IPv4 address") from None
        if item.get("neighbors") is not None:
            out["neighbors"] = self._neighbors(item["neighbors"], where)
        if item.get("accept") is not None:
            out["accept"] = self._accept(item["accept"], where)
        if item.get("advertise") is not None:
            if not isinstance(item["advertise"], list):
                raise ResourceError(f"{where}: advertise: must be a list of prefixes")
            nets = [_net(p, f"{where}: advertise[{i}]") for i, p in enumerate(item["advertise"])]
            out["advertise"] = sorted(set(nets), key=_sort_net)
        return out

    @staticmethod
    def _neighbors(raw: Any, where: str) -> List[Dict[str, Any]]:
        if not isinstance(raw, list):
            raise ResourceError(f"{where}: neighbors: must be a list")
        out: Dict[str, Dict[str, Any]] = {}
        for i, n in enumerate(raw):
            w = f"{where}: neighbors[{i}]"
            if not isinstance(n, Mapping):
                raise ResourceError(f"{w}: must be a mapping")
            unknown_fields(n, NEIGHBOR_FIELDS, w)
            peer = str(require(n, "peer", w))
            if _is_ip(peer):
                peer = str(ipaddress.ip_address(peer))
            elif not _IFNAME_RE.match(peer):
                raise ResourceError(f"{w}: peer: {peer!r} is neither an IP address nor an interface name")
            nb: Dict[str, Any] = {"peer": peer, "remote_as": _remote_as(require(n, "remote_as", w), w)}
            families = n.get("address_families")
            if families is not None:
                if not isinstance(families, list) or not families or any(f not in AFS for f in families):
                    raise ResourceError(f"{w}: address_families: {families!r}: a non-empty list of ipv4, ipv6")
                allowed = _peer_families(peer)
                if _is_ip(peer) and set(families) - set(allowed):
                    raise ResourceError(f"{w}: address_families: a session to {peer} carries {allowed[0]} only "
                                        "(use an interface name for an unnumbered session that carries both)")
                nb["address_families"] = sorted(set(families))
            if n.get("description"):
                nb["description"] = str(n["description"])
            if peer in out:
                raise ResourceError(f"{w}: peer {peer} is listed twice")
            out[peer] = nb
        return [out[p] for p in sorted(out)]

    @staticmethod
    def _accept(raw: Any, where: str) -> List[Dict[str, Any]]:
        if not isinstance(raw, list):
            raise ResourceError(f"{where}: accept: must be a list")
        out = []
        for i, a in enumerate(raw):
            w = f"{where}: accept[{i}]"
            if isinstance(a, str):
                a = {"prefix": a}
            if not isinstance(a, Mapping):
                raise ResourceError(f"{w}: must be a prefix or a mapping with prefix and le")
            unknown_fields(a, ACCEPT_FIELDS, w)
            prefix = _net(require(a, "prefix", w), w)
            net = ipaddress.ip_network(prefix)
            entry: Dict[str, Any] = {"prefix": prefix}
            if a.get("le") is not None:
                le = a["le"]
                if isinstance(le, bool) or not isinstance(le, int) or not net.prefixlen <= le <= net.max_prefixlen:
                    raise ResourceError(f"{w}: le: {le!r} must be {net.prefixlen}..{net.max_prefixlen} for {prefix}")
                if le != net.prefixlen:
                    entry["le"] = le
            out.append(entry)
        return sorted(out, key=lambda e: (_sort_net(e["prefix"]), e.get("le", 0)))

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        defaults = [i for i in items if i.get("view") is False]
        if len(defaults) > 1:
            raise ResourceError(f"{self.name}: tenants {', '.join(i['tenant'] for i in defaults)} all ask for the default "
                                "BGP instance (view: false); a router has one")

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(item)
        out.setdefault("view", True)
        out.setdefault("neighbors", [])
        out.setdefault("accept", [])
        out.setdefault("advertise", [])
        out["neighbors"] = [dict(n, address_families=n.get("address_families") or _peer_families(n["peer"]))
                            for n in out["neighbors"]]
        return out

    # --- rendering -----------------------------------------------------------------------
    def render_item(self, item: Mapping[str, Any]) -> str:
        """The FRR configuration of one item (what ``--diff`` and frr-reload see)."""
        item = self.defaults(dict(item))
        t = item["tenant"]
        for f in ("asn", "router_id"):
            if item.get(f) is None:
                raise ResourceError(f"{self.name}: tenant {t}: {f} is required to configure BGP")
        head = f"router bgp {item['asn']}" + (f" view {t}" if item["view"] else "")
        lines = [head, f" bgp router-id {item['router_id']}", " no bgp default ipv4-unicast", " no bgp network import-check"]
        for n in item["neighbors"]:
            if _is_ip(n["peer"]):
                lines.append(f" neighbor {n['peer']} remote-as {n['remote_as']}")
            else:
                lines.append(f" neighbor {n['peer']} interface remote-as {n['remote_as']}")
            if n.get("description"):
                lines.append(f" neighbor {n['peer']} description {n['description']}")
        for af in AFS:
            nets = [p for p in item["advertise"] if _family(p) == af]
            peers = [n for n in item["neighbors"] if af in n["address_families"]]
            if not nets and not peers:
                continue
            lines += [" !", f" address-family {af} unicast"]
            lines += [f"  network {p}" for p in nets]
            for n in peers:
                p = n["peer"]
                lines += [f"  neighbor {p} activate", f"  neighbor {p} soft-reconfiguration inbound",
                          f"  neighbor {p} route-map {OWN}{t}-in in", f"  neighbor {p} route-map {OWN}{t}-out out"]
            lines.append(" exit-address-family")
        lines += ["exit", "!"]
        lines += self._guards(item)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _guards(item: Mapping[str, Any]) -> List[str]:
        t = item["tenant"]
        lines: List[str] = []
        lists = {("in", af): [] for af in AFS}
        lists.update({("out", af): [] for af in AFS})
        for a in item["accept"]:
            lists[("in", _family(a["prefix"]))].append(a["prefix"] + (f" le {a['le']}" if a.get("le") else ""))
        for p in item["advertise"]:
            lists[("out", _family(p))].append(p)
        for (direction, af), entries in sorted(lists.items()):
            kw = "ip" if af == "ipv4" else "ipv6"
            for i, e in enumerate(entries, 1):
                lines.append(f"{kw} prefix-list {OWN}{t}-{direction}-v{af[-1]} seq {i * 10} permit {e}")
        # a match on a prefix list that does not exist is refused by FRR: only families
        # with entries get a permit; the final deny makes "nothing listed" mean nothing
        for direction in ("in", "out"):
            for seq, af in ((10, "ipv4"), (20, "ipv6")):
                if lists[(direction, af)]:
                    kw = "ip" if af == "ipv4" else "ipv6"
                    lines += [f"route-map {OWN}{t}-{direction} permit {seq}",
                              f" match {kw} address prefix-list {OWN}{t}-{direction}-v{af[-1]}", "exit", "!"]
            lines += [f"route-map {OWN}{t}-{direction} deny 100", "exit", "!"]
        return lines

    def render_change(self, change: Change) -> List[str]:
        if change.op == DELETE:
            b = change.before or {}
            t = b.get("tenant")
            head = f"no router bgp {b.get('asn')}" + (f" view {t}" if b.get("view", True) else "")
            return [head] + [f"no route-map {OWN}{t}-{d}" for d in ("in", "out")] + [
                f"no {'ip' if af == 'ipv4' else 'ipv6'} prefix-list {OWN}{t}-{d}-v{af[-1]}"
                for d in ("in", "out") for af in AFS]
        text = self.render_item(change.after or {})
        return [ln for ln in text.splitlines() if ln.strip() != "!"]

    def diff_text(self, items: Iterable[Mapping[str, Any]]) -> str:
        return "".join(self.render_item(i) for i in sorted(items, key=lambda i: i["tenant"]))

    # --- reading -------------------------------------------------------------------------
    def gather(self) -> List[Dict[str, Any]]:
        self._running = self.frr.running_config()
        return self.parse(self._running)

    def parse(self, text: str) -> List[Dict[str, Any]]:
        if textfsm is None:
            raise ResourceError(f"{self.name}: reading FRR's configuration needs the textfsm package (pip install textfsm)")
        fsm = textfsm.TextFSM(io.StringIO(RUNNING_CONFIG_TEMPLATE))
        rows = [dict(zip(fsm.header, r)) for r in fsm.ParseText(text)]
        return items_from_rows(rows)

    # --- applying ------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change]) -> None:
        if self._running is None:
            self.gather()
        before_text = self._running or ""
        have = self.parse(before_text)
        want = predict(self, have, changes)
        new_text = strip_owned(before_text) + "".join(self.render_item(i) for i in want)
        try:
            self.frr.reload(new_text)
        except CommandError as exc:
            try:
                self.frr.reload(strip_header(before_text))
            except CommandError as undo:
                raise ResourceError(f"{self.name}: frr-reload failed: {exc}; restoring the previous configuration "
                                    f"also failed: {undo}") from None
            raise ResourceError(f"{self.name}: frr-reload failed, the previous configuration is back: {exc}",
                                rolled_back=True) from None
        self._running = None


def _sort_net(prefix: str) -> Tuple[int, Any]:
    net = ipaddress.ip_network(prefix)
    return (net.version, net)


def items_from_rows(rows: Sequence[Mapping[str, str]]) -> List[Dict[str, Any]]:
    """Items from the TextFSM rows of a running configuration (only what npms owns)."""
    instances: Dict[Tuple[str, str], Dict[str, Any]] = {}
    plists: Dict[str, List[Tuple[str, Optional[int]]]] = {}
    rmaps: Dict[str, List[str]] = {}
    for r in rows:
        if r["PLIST"]:
            m = re.match(r"^(\S+) seq \d+ permit (\S+)(?: le (\d+))?", r["PLIST"])
            if m and m.group(1).startswith(OWN):
                plists.setdefault(m.group(1), []).append((m.group(2), int(m.group(3)) if m.group(3) else None))
            continue
        if r["RMAP"]:
            if r["RMAP"].startswith(OWN):
                rmaps.setdefault(r["RMAP"], []).append(r["LINE"])
            continue
        if r["ASN"] and r["LINE"]:
            inst = instances.setdefault((r["ASN"], r["VIEW"]), {"asn": int(r["ASN"]), "view": r["VIEW"], "lines": []})
            inst["lines"].append((r["AF"], r["LINE"].strip()))
    items = []
    for (_asn, view), inst in sorted(instances.items()):
        item = _instance_item(inst, plists)
        if item is not None and (view or item["tenant"]):
            items.append(item)
    return sorted(items, key=lambda i: i["tenant"])


def _instance_item(inst: Mapping[str, Any], plists: Mapping[str, List[Tuple[str, Optional[int]]]]) -> Optional[Dict[str, Any]]:
    view = inst["view"]
    neighbors: Dict[str, Dict[str, Any]] = {}
    advertise: List[str] = []
    router_id = None
    tenant = view
    for af, line in inst["lines"]:
        words = line.split()
        if line.startswith("bgp router-id "):
            router_id = words[2]
        elif words[:1] == ["network"] and af:
            advertise.append(str(ipaddress.ip_network(words[1])))
        elif words[:1] == ["neighbor"] and len(words) >= 3:
            peer = words[1]
            nb = neighbors.setdefault(peer, {"peer": peer, "address_families": []})
            rest = words[2:]
            if rest[:1] == ["interface"] and "remote-as" in rest:
                nb["remote_as"] = _as_value(rest[rest.index("remote-as") + 1])
            elif rest[:1] == ["remote-as"]:
                nb["remote_as"] = _as_value(rest[1])
            elif rest[:1] == ["description"]:
                nb["description"] = " ".join(rest[1:])
            elif rest[:1] == ["activate"] and af:
                nb["address_families"].append(af)
            elif rest[:1] == ["route-map"] and len(rest) == 3 and rest[2] == "in" and rest[1].startswith(OWN):
                if not view:
                    tenant = rest[1][len(OWN):-len("-in")]
    if not tenant:
        return None  # a default instance npms does not manage
    accept = []
    for af in AFS:
        for prefix, le in plists.get(f"{OWN}{tenant}-in-v{af[-1]}", []):
            net = ipaddress.ip_network(prefix)
            e: Dict[str, Any] = {"prefix": str(net)}
            if le is not None and le != net.prefixlen:
                e["le"] = le
            accept.append(e)
    item = {
        "tenant": tenant,
        "asn": inst["asn"],
        "view": bool(view),
        "router_id": router_id,
        "neighbors": [dict(n, address_families=sorted(set(n["address_families"])))
                      for _p, n in sorted(neighbors.items()) if "remote_as" in n],
        "accept": sorted(accept, key=lambda e: (_sort_net(e["prefix"]), e.get("le", 0))),
        "advertise": sorted(set(advertise), key=_sort_net),
    }
    return item


def _as_value(text: str) -> Any:
    return int(text) if text.isdigit() else text


def strip_header(text: str) -> str:
    """The running configuration as a configuration file (vtysh's banner lines dropped)."""
    out = [ln for ln in text.splitlines() if ln not in ("Building configuration...", "Current configuration:")]
    return "\n".join(out).strip() + "\n"


def strip_owned(text: str) -> str:
    """The running configuration without what npms owns (views, npms prefix lists and
    route maps, the npms-managed default instance), ready for the owned part to be
    appended."""
    lines = strip_header(text).splitlines()
    out: List[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        block_end = None
        if ln.startswith("router bgp ") or ln.startswith("route-map "):
            j = i + 1
            while j < len(lines) and lines[j] != "exit" and (lines[j].startswith(" ") or lines[j] == ""):
                j += 1
            block_end = j + 1 if j < len(lines) and lines[j] == "exit" else j
            block = lines[i:block_end]
            owned = (" view " in ln) if ln.startswith("router bgp ") else ln.split()[1].startswith(OWN)
            if ln.startswith("router bgp ") and not owned:
                owned = any(re.search(rf"route-map {OWN}\S+-in in$", b.strip()) for b in block)
            if not owned:
                out += block
            i = block_end
            continue
        if re.match(rf"^(ip|ipv6) prefix-list {OWN}", ln):
            i += 1
            continue
        if ln.strip() == "end":
            i += 1
            continue
        out.append(ln)
        i += 1
    return "\n".join(out).rstrip() + "\n!\n"


# --- operational state: route collection -----------------------------------------------
def bgp_routes(resource: FrrBgp, items: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """Per tenant: its sessions, the prefixes its customers announce that passed the
    guard (``learned``), and those the guard dropped (``filtered``, with the reason)."""
    frr = resource.frr
    items = items if items is not None else resource.gather()
    out: Dict[str, Any] = {}
    for item in items:
        t = item["tenant"]
        instance = f"view {t}" if item.get("view", True) else ""
        sessions: List[Dict[str, Any]] = []
        learned: Dict[Tuple[str, str], Dict[str, Any]] = {}
        filtered: List[Dict[str, Any]] = []
        seen_peers = set()
        for af in AFS:
            summary = frr.show_json(f"show bgp {instance} {af} unicast summary".replace("  ", " "))
            for peer, p in sorted((summary.get("peers") or {}).items()):
                if peer not in seen_peers:
                    seen_peers.add(peer)
                    sessions.append({"peer": peer, "state": p.get("state"), "established": p.get("state") == "Established",
                                     "remote_as": p.get("remoteAs"), "uptime_ms": p.get("peerUptimeMsec")})
            table = frr.show_json(f"show bgp {instance} {af} unicast".replace("  ", " "))
            for prefix, paths in sorted((table.get("routes") or {}).items()):
                for path in paths:
                    peer = path.get("peerId")
                    if not peer or peer == "(unspec)" or path.get("weight") == 32768:
                        continue  # the edge's own `network` routes
                    learned[(prefix, peer)] = {"prefix": prefix, "peer": peer,
                                               "as_path": path.get("path", "")}
            for nb in item.get("neighbors", []):
                if af not in nb.get("address_families", _peer_families(nb["peer"])):
                    continue
                received = frr.show_json(f"show bgp {instance} {af} unicast neighbors {nb['peer']} received-routes"
                                         .replace("  ", " "))
                for prefix in sorted((received.get("receivedRoutes") or {})):
                    if not any(k[0] == prefix for k in learned):
                        filtered.append({"prefix": prefix, "peer": nb["peer"], "reason": guard_reason(item, prefix)})
        out[t] = {"sessions": sessions, "learned": sorted(learned.values(), key=lambda r: (_sort_net(r["prefix"]), r["peer"])),
                  "filtered": sorted(filtered, key=lambda r: (_sort_net(r["prefix"]), r["peer"]))}
    return out


def guard_reason(item: Mapping[str, Any], prefix: str) -> str:
    """Why the inbound guard drops ``prefix`` (in words an operator reads)."""
    net = ipaddress.ip_network(prefix)
    covering = [a for a in item.get("accept", [])
                if ipaddress.ip_network(a["prefix"]).version == net.version and net.subnet_of(ipaddress.ip_network(a["prefix"]))]
    if not covering:
        allowed = ", ".join(a["prefix"] for a in item.get("accept", [])) or "nothing"
        return f"outside the tenant's allowed prefixes ({allowed})"
    longest = max(a.get("le") or ipaddress.ip_network(a["prefix"]).prefixlen for a in covering)
    if net.prefixlen > longest:
        return f"longer than /{longest}, the longest the tenant accepts within {covering[0]['prefix']}"
    return "refused by the inbound route map"
