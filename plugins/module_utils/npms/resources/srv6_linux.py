# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRv6 on the Linux kernel: iproute2 (seg6 / seg6local, policy routing) and nftables.

Every command goes through the :class:`~npms.runner.Runner` the resource is built with
(this machine, a network namespace, ...).  What npms owns on a node, and nothing else,
is what ``gather`` reads, ``deleted`` removes and ``overridden`` may replace:

* routes and ``ip rule`` rules whose protocol is :data:`RT_PROTO` (202, "npms");
* the routing tables of SR policies, :func:`policy_table` (``0x10000000`` to
  ``0x1FFFFFFF``), each marked by a ``throw <bsid>/128`` route that names its policy;
* the ``ip sr tunsrc`` of the node is set by a policy that gives ``encap_source`` (one
  per namespace: policies with different sources are refused); deleting leaves it;
* the nftables table ``inet npms_steering`` (:data:`NFT_TABLE`).

Realisation, per resource:

``srv6_localsid``  ``ip -6 route add <sid>/128 proto 202 encap seg6local action <A>
                   [nh4|nh6 <nexthop>] [table <T>] dev <interface>`` in the main table.
                   End and End.DT6 name no interface, and the kernel makes a route on
                   ``lo`` a reject route: they go on the first non-loopback interface
                   that is up.  End.DT4 needs a VRF device (``vrftable``), which these
                   kernels lack: refused.
``srv6_route``     ``ip -6 route add <prefix> proto 202 [via <v>] dev <if>`` in the main
                   table (no ``encap``: that is how it differs from a local SID).
``srv6_policy``    table ``policy_table(bsid)`` with ``default`` routes for IPv4 and IPv6,
                   ``encap seg6 mode encap segs <list>`` (weighted ``nexthop``s when there
                   are several lists; IPv6 multipath needs a gateway per nexthop, so each
                   gets ``via`` the next hop towards its first segment, or that segment
                   itself when it is on-link), a marker ``throw <bsid>/128`` and, in the
                   main table, ``<bsid>/128 encap seg6local action End.B6.Encaps srh segs
                   <list>`` (the list of highest weight) so that an upstream segment list
                   can name the BSID.  The ``dev`` of an encap route is the interface of
                   ``ip -6 route get <first segment>`` when the change is planned (state
                   ``rendered`` cannot ask the node: it shows ``<resolved at apply>``).
                   ``encap_source`` is ``ip sr tunsrc``: one per node (namespace).
``srv6_steering``  nftables marks a tenant's packets by class (DSCP on the tenant's ingress
                   interfaces) with :func:`~npms.resources.srv6.class_mark`; ``ip rule
                   fwmark <mark>/0xffff to <prefix> lookup <policy table>`` steers them;
                   per tenant, ``fwmark <tenant>/0xff00 prohibit`` after them makes sure a
                   tenant's packet never falls through to the main table (see
                   :func:`tenant_rules` for the IPv6 rules that let the encapsulated
                   packet, which keeps its mark, reach the core).

iproute2 lists segments in SID-list order (first segment first), as items do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..runner import CommandError
from . import srv6_bpf
from .base import ADD, DELETE, MODIFY, Change, ResourceError, item_key, predict
from .srv6 import (CLASS_MARK_MASK, TENANT_MARK_MASK, Srv6LocalSid, Srv6Policy, Srv6Route, Srv6Steering,
                   class_mark)

#: Route / rule protocol number that marks what npms owns (``proto 202``).
RT_PROTO = 202
#: routes npms adds so that End.DX4 / End.DX6 forward to their next hop (see
#: Srv6LocalSidLinux.sync_nexthop_routes); a protocol of their own, so that srv6_route
#: never reads them as its items
NH_PROTO = 203
#: Policy tables: ``POLICY_TABLE_BASE | (int(bsid) & POLICY_TABLE_MASK)``.
POLICY_TABLE_BASE = 0x10000000
POLICY_TABLE_MASK = 0x0FFFFFFF
#: ``ip rule`` priorities: steering rules 10000..10128 (longer prefixes first, so the most
#: specific steering wins), then the tenants' catch-all ``prohibit`` rules.
STEER_PREF_BASE = 10000
TENANT_PREF = 20000
#: The nftables table that classifies steered traffic (family inet).
NFT_FAMILY = "inet"
NFT_TABLE = "npms_steering"
NFT_CHAIN = "prerouting"
#: What ``rendered`` shows where the node must be asked (the interface towards a segment).
UNRESOLVED = "<resolved at apply>"

_P = str(RT_PROTO)
MAIN_V6 = ("ip", "-j", "-6", "route", "show", "table", "main", "proto", _P)
ALL_V6 = ("ip", "-j", "-6", "route", "show", "table", "all", "proto", _P)
ALL_V4 = ("ip", "-j", "-4", "route", "show", "table", "all", "proto", _P)
TUNSRC = ("ip", "-j", "sr", "tunsrc", "show")
RULES_V4 = ("ip", "-j", "-4", "rule", "show")
RULES_V6 = ("ip", "-j", "-6", "rule", "show")
NFT_SHOW = ("nft", "-j", "-n", "list", "table", NFT_FAMILY, NFT_TABLE)

# eBPF encapsulation mode (kernels without seg6 routes, see srv6_bpf): a SID is a ``local``
# route (table local, protocol 202); the kernel's own SRH processing does End, and
# decapsulates when no segment is left.  A SID that must do more marks its packets (the
# nftables map below); the mark survives the decapsulation, and an ip rule sends the
# marked packets to the SID's table (``default via <nexthop>`` for End.X / End.DX4 /
# End.DX6) or to the End.DT6 table.
SID_MARK_BASE = 0x20000000
SID_MARK_MASK = 0x0FFFFFFF
#: ip rule priorities of SID rules: before steering (10000) and the tenants' fences (20000)
SID_PREF = 9000
ENDX_PREF = 9001
NFT_SIDS_TABLE = "npms_sids"
NFT_SIDS_MAP = "sids"
NFT_SIDS_SHOW = ("nft", "-j", "list", "map", NFT_FAMILY, NFT_SIDS_TABLE, NFT_SIDS_MAP)
SEG6_SYSCTLS = ("sysctl", "-a", "-r", "seg6_enabled")
#: seg6_enabled on every interface (and for those made later): the kernel drops an SRv6
#: packet that arrives on an interface where it is off
SEG6_ON = ("sh", "-c", 'for f in /proc/sys/net/ipv6/conf/*/seg6_enabled; do echo 1 > "$f"; done')

_TABLE_NAMES = {"unspec": 0, "default": 253, "main": 254, "local": 255}
# nft prints DSCP names unless -n: accept both.
_DSCP_NAMES = {"cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48, "cs7": 56, "df": 0,
               "be": 0, "lephb": 1, "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20, "af23": 22,
               "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36, "af43": 38, "va": 44, "ef": 46}


def policy_table(bsid: str) -> int:
    """The routing table of the SR policy with binding SID ``bsid`` (same on every node)."""
    return POLICY_TABLE_BASE | (int(ipaddress.IPv6Address(bsid)) & POLICY_TABLE_MASK)


def is_policy_table(table: int) -> bool:
    return POLICY_TABLE_BASE <= table <= POLICY_TABLE_BASE | POLICY_TABLE_MASK


# --- commands ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One command, and the command that undoes it (if any)."""

    argv: Tuple[str, ...]
    stdin: Optional[str] = None
    undo: Optional["Step"] = None
    #: eBPF encapsulations the command names by pin_path(name): (name, header)
    pins: Tuple[Tuple[str, bytes], ...] = ()

    def text(self) -> str:
        line = shlex.join(self.argv)
        if self.stdin is None:
            return line
        return f"{line} <<'EOF'\n{self.stdin}EOF"


def run_steps(runner: Any, steps: Sequence[Step]) -> None:
    """Run ``steps``; when one fails, undo the ones before it (so one item is all or
    nothing), then raise ResourceError saying what failed."""
    done: List[Step] = []
    for step in steps:
        try:
            execute(runner, step)
        except (CommandError, srv6_bpf.BpfError) as exc:
            failed = []
            for made in reversed(done):
                if made.undo is None:
                    continue
                try:
                    execute(runner, made.undo)
                except (CommandError, srv6_bpf.BpfError) as undo_exc:
                    failed.append(str(undo_exc))
            message = _explain(exc)
            if failed:
                message += "; undoing its earlier commands also failed: " + "; ".join(failed)
            raise ResourceError(message) from None
        done.append(step)


def execute(runner: Any, step: Step) -> None:
    """Run one step; the eBPF programs it names are loaded and pinned just for it."""
    if not step.pins:
        runner.run(step.argv, stdin=step.stdin)
        return
    with srv6_bpf.pinned(step.pins) as paths:
        runner.run(tuple(paths.get(a, a) for a in step.argv), stdin=step.stdin)


def _explain(exc: Any) -> str:
    text = str(exc)
    if not isinstance(exc, CommandError):
        return text
    if "File exists" in (exc.stderr or ""):
        text += (f" (a route or rule that npms does not own, i.e. not protocol {RT_PROTO}, is in the way; "
                 "remove it or leave it to its owner)")
    if "lwt encapsulation type not supported" in (exc.stderr or ""):
        text += (" (this kernel has no SRv6 lightweight tunnels: it was built without CONFIG_IPV6_SEG6_LWTUNNEL, "
                 "or the seg6 code is a module that is not loaded; `zcat /proc/config.gz | grep SEG6` tells; "
                 f"{srv6_bpf.ENV_MODE}=bpf makes npms encapsulate with eBPF instead)")
    return text


# --- reading what the node shows -------------------------------------------------------------
def show_text(runner: Any, commands: Sequence[Tuple[str, ...]]) -> str:
    """Run the show ``commands``: their outputs, each under a ``# <command>`` line (the
    text that ``parse`` reads, so that gather and state ``parsed`` are one code path)."""
    parts = []
    for argv in commands:
        res = runner.run(argv, check=False)
        out = res.stdout
        if not res.ok:
            # No npms_steering table yet: nothing is steered.
            if argv in (NFT_SHOW, NFT_SIDS_SHOW) and "No such file or directory" in res.stderr:
                out = ""
            else:
                raise CommandError(runner.where, argv, res.rc, res.stdout, res.stderr)
        parts.append(f"# {shlex.join(argv)}\n{out.strip()}\n")
    return "".join(parts)


def sections(text: str, commands: Sequence[Tuple[str, ...]], where: str) -> Dict[Tuple[str, ...], str]:
    """Split ``text`` from :func:`show_text` back into each command's output.  A resource
    that reads one command also takes that command's bare output."""
    names = {" ".join(c): c for c in commands}
    lines = text.splitlines()
    if len(commands) == 1 and not any(line.startswith("# ") for line in lines):
        return {commands[0]: text}
    out: Dict[Tuple[str, ...], List[str]] = {}
    current: Optional[Tuple[str, ...]] = None
    for line in lines:
        if line.startswith("# "):
            name = " ".join(line[2:].split())
            if name not in names:
                raise ResourceError(f"{where}: running_config: unknown section {line!r}; expected the output of "
                                    + ", ".join(f"'{n}'" for n in names) + ", each under a '# <command>' line")
            current = names[name]
            out[current] = []
        elif current is not None:
            out[current].append(line)
        elif line.strip():
            raise ResourceError(f"{where}: running_config: output before the first '# <command>' line: {line[:60]!r}")
    missing = [" ".join(c) for c in commands if c not in out]
    if missing:
        raise ResourceError(f"{where}: running_config: missing the output of " + ", ".join(f"'{m}'" for m in missing)
                            + " (each under a '# <command>' line)")
    return {c: "\n".join(v) for c, v in out.items()}


def _json(text: str, argv: Tuple[str, ...], where: str) -> Any:
    text = text.strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ResourceError(f"{where}: running_config: the output of '{' '.join(argv)}' is not JSON ({exc})") from None


def _table_id(value: Any) -> int:
    if value is None:
        return 254
    text = str(value)
    if text in _TABLE_NAMES:
        return _TABLE_NAMES[text]
    try:
        return int(text)
    except ValueError:
        return -1


def _route_table(route: Mapping[str, Any]) -> int:
    """The table a route of ``ip -j route show table all`` is in.  (A seg6local End.DT6
    route prints its lookup table as "table" too; npms keeps those in the main table and
    reads local SIDs from ``table main``.)"""
    return _table_id(route.get("table"))


def _dst(route: Mapping[str, Any], family: int = 6) -> str:
    dst = str(route.get("dst", ""))
    if dst in ("default", ""):
        return "::/0" if family == 6 else "0.0.0.0/0"
    if "/" not in dst:
        dst += "/128" if family == 6 else "/32"
    return str(ipaddress.ip_network(dst, strict=False))


def _ours(route: Mapping[str, Any]) -> bool:
    # The show commands filter by protocol (and then do not print it); text a user gives
    # to state parsed may be unfiltered.
    return str(route.get("protocol", _P)) == _P


def _unicast(route: Mapping[str, Any]) -> bool:
    return route.get("type", "unicast") == "unicast"


# --- a resource whose changes are command steps ---------------------------------------------
class _Steps:
    """Mixin: ``render_change`` and ``apply_change`` from one list of :class:`Step`."""

    driver: Any

    def steps(self, change: Change, strict: bool) -> List[Step]:
        raise NotImplementedError

    def render_change(self, change: Change) -> List[str]:
        return [s.text() for s in self.steps(change, strict=False)]

    def apply_change(self, change: Change) -> None:
        run_steps(self.driver, self.steps(change, strict=True))


def _verb(op: str) -> str:
    # add refuses to overwrite a route npms does not own; replace changes one it owns.
    return {ADD: "add", MODIFY: "replace", DELETE: "del"}[op]


# --- local SIDs ------------------------------------------------------------------------------
def sid_mark(sid: str) -> int:
    """eBPF mode: the firewall mark (and table id) of a SID that marks its packets: 28 bits
    of a hash of the whole SID (SIDs of one node often differ only in their locator)."""
    digest = hashlib.sha256(ipaddress.IPv6Address(sid).packed).digest()
    return SID_MARK_BASE | (int.from_bytes(digest[:4], "big") & SID_MARK_MASK)


def is_sid_mark(mark: int) -> bool:
    return SID_MARK_BASE <= mark <= SID_MARK_BASE | SID_MARK_MASK


def nft_sids_script() -> str:
    """The npms_sids table, its map (SID -> mark) and its one rule, whatever was there
    (elements are kept)."""
    return (f"table {NFT_FAMILY} {NFT_SIDS_TABLE} {{\n"
            f"\tmap {NFT_SIDS_MAP} {{ type ipv6_addr : mark; }}\n"
            "\tchain prerouting { type filter hook prerouting priority -151; policy accept; }\n}\n"
            f"flush chain {NFT_FAMILY} {NFT_SIDS_TABLE} prerouting\n"
            f"add rule {NFT_FAMILY} {NFT_SIDS_TABLE} prerouting meta mark set ip6 daddr map @{NFT_SIDS_MAP}\n")


class _EncapMode:
    """The SRv6 realisation a Linux resource uses: ``seg6`` routes, or ``bpf`` where the
    kernel has none (see srv6_bpf); set ``encap`` to choose, else the kernel decides."""

    _encap: Optional[str] = None

    @property
    def encap(self) -> str:
        if self._encap is None:
            self._encap = srv6_bpf.encap_mode()
        return self._encap

    @encap.setter
    def encap(self, value: str) -> None:
        if value not in srv6_bpf.MODES:
            raise ValueError(f"encap must be one of {', '.join(srv6_bpf.MODES)}")
        self._encap = value


class Srv6LocalSidLinux(_EncapMode, _Steps, Srv6LocalSid):
    """Local SIDs as seg6local routes (protocol 202) in the main table.

    The kernel turns an IPv6 route on ``lo`` into a reject route, so End and End.DT6
    (which name no interface) go on the node's first non-loopback interface that is up,
    chosen when the change is planned (``rendered`` shows ``<resolved at apply>``).  Which
    one does not matter to these behaviours; the item does not record it."""

    behaviors = ("End", "End.X", "End.DX4", "End.DX6", "End.DT6")
    dataplane = "linux"
    report_fields = ("incomplete",)
    SHOW = (MAIN_V6,)
    SHOW_BPF = (ALL_V6, ALL_V4, RULES_V4, RULES_V6, NFT_SIDS_SHOW, SEG6_SYSCTLS)
    LINKS = ("ip", "-j", "link", "show", "up")

    def __init__(self, driver: Any = None):
        super().__init__(driver)
        self._live = False
        self._device: Optional[str] = None
        self._present: Dict[str, Set[str]] = {}  # eBPF mode: sid -> parts gather saw
        self._have: List[Dict[str, Any]] = []
        self._sids_table = False  # eBPF mode: the npms_sids table is there
        self._drop_table: Optional[Change] = None  # the change after which it goes

    def _show(self) -> Tuple[Tuple[str, ...], ...]:
        return self.SHOW_BPF if self.encap == "bpf" else self.SHOW

    def gather(self) -> List[Dict[str, Any]]:
        self._live, self._device = True, None
        self._have = self.parse(show_text(self.driver, self._show()))
        return self._have

    def apply(self, changes: Sequence[Change]) -> None:
        try:
            super().apply(changes)
        except ResourceError:
            # The engine undid the SIDs; a table the changes created goes as well.
            if self.encap == "bpf" and self._live and not self._sids_table:
                self.driver.run(("nft", "delete", "table", NFT_FAMILY, NFT_SIDS_TABLE), check=False)
            raise

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        return _encap_facts(self.encap, self._show())

    def order(self, changes: List[Change]) -> List[Change]:
        ordered = super().order(changes)
        self._drop_table = None
        if self.encap == "bpf" and ordered and self._sids_table:
            if all(i["behavior"] == "End" for i in predict(self, self._have, ordered)):
                self._drop_table = ordered[-1]  # no SID left that marks: the table goes too
        return ordered

    def parse(self, text: str) -> List[Dict[str, Any]]:
        if self.encap == "bpf":
            return self._parse_bpf(text)
        routes = _json(sections(text, self.SHOW, self.name)[MAIN_V6], MAIN_V6, self.name)
        items = []
        for r in routes:
            if not (_ours(r) and _unicast(r) and r.get("encap") == "seg6local" and r.get("action") in self.behaviors):
                continue
            if "table" in r and r.get("action") != "End.DT6":
                continue  # not in the main table (text from `table all`)
            sid = _dst(r)
            if not sid.endswith("/128"):
                continue
            raw: Dict[str, Any] = {"sid": sid[:-4], "behavior": r["action"]}
            if raw["behavior"] in ("End.X", "End.DX6"):
                raw["nexthop"] = r.get("nh6")
            if raw["behavior"] == "End.DX4":
                raw["nexthop"] = r.get("nh4")
            if raw["behavior"] in ("End.X", "End.DX4", "End.DX6"):
                raw["interface"] = r.get("dev")
            if raw["behavior"] == "End.DT6":
                raw["table"] = _table_id(r.get("table"))
            try:
                items.append(self.normalize(raw, f"{self.name} route {sid}"))
            except ResourceError:
                continue  # not a shape npms makes
        return sorted(items, key=lambda i: i["sid"])

    def _any_device(self, strict: bool) -> str:
        """The first (lowest ifindex) interface that is up and not a loopback."""
        if not self._live:
            return UNRESOLVED
        if self._device is None:
            res = self.driver.run(self.LINKS, check=False)
            try:
                links = json.loads(res.stdout or "[]") if res.ok else []
            except ValueError:
                links = []
            up = sorted((int(link.get("ifindex", 0)), str(link.get("ifname")))
                        for link in links if link.get("link_type") != "loopback" and "LOOPBACK" not in link.get("flags", []))
            self._device = up[0][1] if up else ""
        if not self._device:
            if strict:
                raise ResourceError("End and End.DT6 routes need a non-loopback interface that is up "
                                    "(the kernel rejects SID routes on lo), and the node has none")
            return "<no interface up>"
        return self._device

    def steps(self, change: Change, strict: bool) -> List[Step]:
        if self.encap == "bpf":
            return self._bpf_steps(change)
        if change.op == DELETE:
            return [Step(self._del(change.before).argv, undo=self._add(change.before, "add", False))] + self._nexthop_steps(change.before, None)
        undo = self._add(change.before, "replace", False) if change.before else self._del(change.after)
        return self._nexthop_steps(change.before, change.after) + [Step(self._add(change.after, _verb(change.op), strict).argv, undo=undo)]

    @staticmethod
    def _nexthop_steps(before: Optional[Mapping[str, Any]], after: Optional[Mapping[str, Any]]) -> List[Step]:
        """The host route ``<nh> via <nh> dev <if> onlink`` (protocol NH_PROTO) an End.DX4 /
        End.DX6 SID needs.  The kernel looks the next hop up, but a next hop on a connected
        subnet gives a route without a gateway, and the packet is then resolved (ARP / ND)
        for its own inner destination, which nobody answers; with the next hop as gateway
        the kernel resolves the next hop itself."""
        def key(item):
            if item and item["behavior"] in ("End.DX4", "End.DX6"):
                return (item["nexthop"], item["interface"])
            return None
        old, new = key(before), key(after)
        if old == new:
            return []
        steps = []
        if old:
            steps.append(Step(_nexthop_route_argv("del", *old), undo=Step(_nexthop_route_argv("replace", *old))))
        if new:
            steps.append(Step(_nexthop_route_argv("replace", *new), undo=Step(_nexthop_route_argv("del", *new))))
        return steps

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        if self.encap == "bpf":
            marks: Dict[int, str] = {}
            for item in items:
                mark = sid_mark(item["sid"])
                if item["behavior"] != "End" and marks.setdefault(mark, item["sid"]) != item["sid"]:
                    raise ResourceError(f"{self.name}: sid {item['sid']}: its mark and table 0x{mark:x} (a 28-bit hash of "
                                        f"the SID) are also sid {marks[mark]}'s; choose another SID for one of them")
            return
        seen: Dict[str, str] = {}
        for item in items:
            if item["behavior"] in ("End.DX4", "End.DX6"):
                if item["nexthop"] in seen:
                    raise ResourceError(f"{self.name}: sid {item['sid']}: nexthop {item['nexthop']} is already sid "
                                        f"{seen[item['nexthop']]}'s; on Linux each End.DX4 / End.DX6 needs its own next hop")
                seen[item["nexthop"]] = item["sid"]

    # eBPF mode -----------------------------------------------------------------------------

    def _parse_bpf(self, text: str) -> List[Dict[str, Any]]:
        show = self.SHOW_BPF
        out = sections(text, show, self.name)
        v6, v4 = _json(out[ALL_V6], ALL_V6, self.name), _json(out[ALL_V4], ALL_V4, self.name)
        sids = sorted(_dst(r)[:-4] for r in v6 if _ours(r) and r.get("type") == "local" and _route_table(r) == 255
                      and _dst(r).endswith("/128"))
        rules: Dict[int, List[Tuple[int, int, int]]] = {}
        for family, argv in ((4, RULES_V4), (6, RULES_V6)):
            for r in _json(out[argv], argv, self.name):
                if str(r.get("protocol", "")) != _P or "fwmark" not in r or "table" not in r:
                    continue
                mark = int(r["fwmark"], 0)
                if int(r.get("fwmask", "0xffffffff"), 0) == 0xFFFFFFFF and is_sid_mark(mark):
                    rules.setdefault(mark, []).append((family, int(r.get("priority", 0)), _table_id(r["table"])))
        hops: Dict[Tuple[int, int], Tuple[Optional[str], Optional[str]]] = {}
        for family, routes in ((4, v4), (6, v6)):
            for r in routes:
                table = _route_table(r)
                if _ours(r) and is_sid_mark(table) and r.get("dst") == "default" and _unicast(r):
                    hops[(family, table)] = (r.get("gateway"), r.get("dev"))
        nft_doc = _json(out[NFT_SIDS_SHOW], NFT_SIDS_SHOW, self.name)
        self._sids_table = bool(nft_doc)
        elements = _nft_map(nft_doc)
        off = sorted(line.split(".seg6_enabled")[0].replace("net.ipv6.conf.", "")
                     for line in out[SEG6_SYSCTLS].splitlines() if line.strip().endswith("= 0"))
        items = []
        self._present = {}
        for sid in sids:
            sid = str(ipaddress.IPv6Address(sid))
            mark = sid_mark(sid)
            present = {"local"}
            problems = [f"seg6_enabled is off on {', '.join(off)}"] if off else []
            raw: Dict[str, Any] = {"sid": sid, "behavior": "End"}
            found = rules.get(mark, [])
            if found:
                present.add("rule")
                family, pref, table = found[0]
                if len(found) > 1:
                    problems.append(f"{len(found)} ip rules for mark 0x{mark:x}")
                if pref == SID_PREF and family == 6 and table != mark:
                    raw.update(behavior="End.DT6", table=table)
                else:
                    behavior = {(ENDX_PREF, 6): "End.X", (SID_PREF, 4): "End.DX4", (SID_PREF, 6): "End.DX6"}.get((pref, family))
                    if behavior is None or table != mark:
                        problems.append(f"the ip rule for mark 0x{mark:x} is not one npms makes")
                        behavior = behavior or "End.X"
                    raw["behavior"] = behavior
                    gateway, dev = hops.get((family, mark), (None, None))
                    if gateway:
                        present.add("route")
                        raw.update(nexthop=gateway, interface=dev)
                    else:
                        problems.append(f"no default route via the next hop in table {mark}")
                if elements.get(sid) == mark:
                    present.add("element")
                else:
                    problems.append(f"the nftables map {NFT_SIDS_TABLE} {NFT_SIDS_MAP} does not mark the SID's packets")
            elif sid in elements:
                present.add("element")
                problems.append("the nftables map marks the SID's packets but no ip rule takes them")
            try:
                item = self.normalize(raw, f"{self.name} route {sid}")
            except ResourceError as exc:
                item = dict(raw)
                problems.append(str(exc))
            if problems:
                item["incomplete"] = "; ".join(problems)
            self._present[sid] = present
            items.append(item)
        return sorted(items, key=lambda i: i["sid"])

    def _bpf_parts(self, item: Mapping[str, Any], deleting: bool = False) -> List[Tuple[str, Step, Step]]:
        """(part, add step, delete step) of an item, in the order they are added."""
        sid, behavior = item["sid"], item["behavior"]
        mark = sid_mark(sid)
        parts: List[Tuple[str, Step, Step]] = []
        local = ("ip", "-6", "route", "{}", "local", f"{sid}/128", "dev", "lo", "table", "local", "proto", _P)
        element = Step(("nft", "add", "element", NFT_FAMILY, NFT_SIDS_TABLE, NFT_SIDS_MAP, f"{{ {sid} : 0x{mark:08x} }}"))
        no_element = Step(("nft", "delete", "element", NFT_FAMILY, NFT_SIDS_TABLE, NFT_SIDS_MAP, f"{{ {sid} }}"))
        if behavior == "End" and deleting and "element" in self._present.get(sid, set()):
            # a stray mark (its rule is gone): deleting the SID removes it too
            parts.append(("element", element, no_element))
        if behavior != "End":
            parts.append(("element", element, no_element))
            family = 4 if behavior == "End.DX4" else 6
            if behavior != "End.DT6":
                route = ("ip", f"-{family}", "route", "{}", "default")
                tail = ("table", str(mark), "proto", _P)
                add = route + ("via", str(item.get("nexthop")), "dev", str(item.get("interface"))) + tail
                parts.append(("route", Step(tuple(a.format("replace") for a in add)),
                              Step(tuple(a.format("del") for a in route + tail))))
            table = item.get("table") if behavior == "End.DT6" else mark
            pref = str(ENDX_PREF if behavior == "End.X" else SID_PREF)
            rule = ("ip", f"-{family}", "rule", "{}", "pref", pref, "fwmark", f"0x{mark:x}")
            parts.append(("rule", Step(tuple(a.format("add") for a in rule) + ("lookup", str(table), "proto", _P)),
                          Step(tuple(a.format("del") for a in rule) + ("proto", _P))))
        parts.append(("local", Step(tuple(a.format("add") for a in local)), Step(tuple(a.format("del") for a in local))))
        return parts

    def _bpf_steps(self, change: Change) -> List[Step]:
        steps: List[Step] = []
        if change.before is not None:
            present = self._present.get(change.before["sid"], {"local", "element", "route", "rule"})
            for part, add, delete in reversed(self._bpf_parts(change.before, deleting=True)):
                if part in present:
                    steps.append(Step(delete.argv, undo=add))
        if change.after is not None:
            steps.append(Step(SEG6_ON))
            if change.after["behavior"] != "End":
                steps.append(Step(("nft", "-f", "-"), stdin=nft_sids_script()))
            steps += [Step(add.argv, undo=delete) for _part, add, delete in self._bpf_parts(change.after)]
        if change is self._drop_table:
            steps.append(Step(("nft", "delete", "table", NFT_FAMILY, NFT_SIDS_TABLE),
                              undo=Step(("nft", "-f", "-"), stdin=nft_sids_script())))
        return steps

    @staticmethod
    def _del(item: Mapping[str, Any]) -> Step:
        return Step(("ip", "-6", "route", "del", f"{item['sid']}/128", "table", "main", "proto", _P))

    def _add(self, item: Mapping[str, Any], verb: str, strict: bool) -> Step:
        behavior = item["behavior"]
        argv: List[str] = ["ip", "-6", "route", verb, f"{item['sid']}/128", "proto", _P,
                           "encap", "seg6local", "action", behavior]
        if behavior == "End.DX4":
            argv += ["nh4", item["nexthop"]]
        elif behavior in ("End.X", "End.DX6"):
            argv += ["nh6", item["nexthop"]]
        if behavior == "End.DT6":
            argv += ["table", str(item["table"])]
        argv += ["dev", item.get("interface") or self._any_device(strict)]
        return Step(tuple(argv))


def _encap_facts(encap: str, show: Sequence[Tuple[str, ...]]) -> Dict[str, Any]:
    """What a run tells about the node: its SRv6 realisation, and the commands whose
    outputs (each under a ``# <command>`` line) state parsed reads."""
    return {"srv6_encap": encap, "show_commands": [shlex.join(c) for c in show]}


def _nft_map(doc: Any) -> Dict[str, int]:
    """SID -> mark from ``nft -j list map``."""
    out: Dict[str, int] = {}
    for entry in doc.get("nftables", []) if isinstance(doc, dict) else []:
        for elem in (entry.get("map") or {}).get("elem", []) or []:
            if isinstance(elem, list) and len(elem) == 2:
                key, value = elem
                try:
                    out[str(ipaddress.IPv6Address(str(key)))] = int(value) if isinstance(value, int) else int(str(value), 0)
                except ValueError:
                    continue
    return out


def _nexthop_route_argv(verb: str, nexthop: str, ifname: str) -> Tuple[str, ...]:
    family = "-6" if ":" in nexthop else "-4"
    plen = "128" if ":" in nexthop else "32"
    argv = ("ip", family, "route", verb, f"{nexthop}/{plen}", "table", "main", "proto", str(NH_PROTO))
    if verb == "del":
        return argv + ("dev", ifname)
    return argv + ("via", nexthop, "dev", ifname, "onlink")


# --- routes towards locators -----------------------------------------------------------------
class Srv6RouteLinux(_Steps, Srv6Route):
    """Plain IPv6 routes (protocol 202, no encap) in the main table."""

    dataplane = "linux"
    SHOW = (MAIN_V6,)

    def gather(self) -> List[Dict[str, Any]]:
        return self.parse(show_text(self.driver, self.SHOW))

    def parse(self, text: str) -> List[Dict[str, Any]]:
        routes = _json(sections(text, self.SHOW, self.name)[MAIN_V6], MAIN_V6, self.name)
        items = []
        for r in routes:
            if not _ours(r) or not _unicast(r) or "encap" in r or "nexthops" in r or "table" in r:
                continue
            raw = {"prefix": _dst(r), "interface": r.get("dev"), "via": r.get("gateway")}
            try:
                items.append(self.normalize({k: v for k, v in raw.items() if v is not None}, f"{self.name} route {raw['prefix']}"))
            except ResourceError:
                continue
        return sorted(items, key=lambda i: i["prefix"])

    def steps(self, change: Change, strict: bool) -> List[Step]:
        if change.op == DELETE:
            return [Step(self._del(change.before).argv, undo=self._add(change.before, "add"))]
        undo = self._add(change.before, "replace") if change.before else self._del(change.after)
        return [Step(self._add(change.after, _verb(change.op)).argv, undo=undo)]

    @staticmethod
    def _del(item: Mapping[str, Any]) -> Step:
        return Step(("ip", "-6", "route", "del", item["prefix"], "table", "main", "proto", _P))

    @staticmethod
    def _add(item: Mapping[str, Any], verb: str) -> Step:
        argv = ["ip", "-6", "route", verb, item["prefix"], "proto", _P]
        if item.get("via"):
            argv += ["via", item["via"]]
        argv += ["dev", item["interface"]]
        return Step(tuple(argv))


# --- SR policies -----------------------------------------------------------------------------
_PARTS = ("marker", "v6", "v4", "bsid")


def bsid_list(segment_lists: Sequence[Mapping[str, Any]]) -> List[str]:
    """The segment list the BSID's End.B6.Encaps route uses: the heaviest (first on a tie)."""
    best = max(segment_lists, key=lambda sl: sl["weight"])
    return list(best["segments"])


def _lists_of(route: Mapping[str, Any], family: int) -> Optional[List[Dict[str, Any]]]:
    """The weighted segment lists of a policy route (seg6 or npms eBPF encapsulation; an
    eBPF list also says its ``source``), None if it is not one."""
    hops = route.get("nexthops")
    if hops is None:
        hops = [dict(route, weight=1)]
    out = []
    for hop in hops:
        weight = int(hop.get("weight", 1))
        if hop.get("encap") == "bpf":
            pushed = srv6_bpf.parse_name(str(hop.get("xmit", "")))
            if pushed is None or pushed[0] != family:
                return None
            out.append({"segments": pushed[2], "weight": weight, "source": pushed[1]})
        elif hop.get("encap") == "seg6" and hop.get("mode") == "encap" and hop.get("segs"):
            out.append({"segments": list(hop["segs"]), "weight": weight})
        else:
            return None
    return out


class Srv6PolicyLinux(_EncapMode, _Steps, Srv6Policy):
    """SR policies as routing tables of seg6 encap routes (see the module docstring).

    In eBPF mode the default routes are ``encap bpf xmit`` routes whose program pushes
    the segment list (srv6_bpf), with the node's ``ip sr tunsrc`` as the outer source, or
    else the source the kernel picks towards the first segment; there is no BSID route
    (End.B6.Encaps needs seg6local)."""

    dataplane = "linux"
    report_fields = ("incomplete",)
    SHOW = (ALL_V6, ALL_V4, TUNSRC)

    def __init__(self, driver: Any = None):
        super().__init__(driver)
        self._live = False  # gather ran: the node can be asked (route get)
        self._tunsrc: Optional[str] = None  # the node's ip sr tunsrc ("::" = none)
        self._want_source: Optional[str] = None
        self._present: Dict[str, Set[str]] = {}
        self._have: List[Dict[str, Any]] = []
        self._towards: Dict[str, Optional[Tuple[str, Optional[str]]]] = {}
        self._prefsrc: Dict[str, Optional[str]] = {}

    # reading
    def gather(self) -> List[Dict[str, Any]]:
        self._live = True
        self._towards = {}
        self._have = self.parse(show_text(self.driver, self.SHOW))
        return self._have

    def parse(self, text: str) -> List[Dict[str, Any]]:
        out = sections(text, self.SHOW, self.name)
        v6 = _json(out[ALL_V6], ALL_V6, self.name)
        v4 = _json(out[ALL_V4], ALL_V4, self.name)
        self._tunsrc = _tunsrc(_json(out[TUNSRC], TUNSRC, self.name) if out[TUNSRC].strip().startswith("[") else out[TUNSRC])
        tables: Dict[int, Dict[str, Any]] = {}
        bsid_routes: Dict[str, List[str]] = {}
        for r in v6:
            if not _ours(r):
                continue
            table = _route_table(r)
            if is_policy_table(table):
                t = tables.setdefault(table, {})
                if r.get("type") == "throw" and _dst(r).endswith("/128"):
                    t.setdefault("bsids", []).append(_dst(r)[:-4])
                elif r.get("dst") == "default" and _unicast(r):
                    t["v6"] = _lists_of(r, 6)
            elif "table" not in r and r.get("encap") == "seg6local" and r.get("action") == "End.B6.Encaps":
                bsid_routes[_dst(r)[:-4]] = list((r.get("srh") or {}).get("segs") or [])
        for r in v4:
            table = _route_table(r)
            if _ours(r) and is_policy_table(table) and r.get("dst") == "default" and _unicast(r):
                tables.setdefault(table, {})["v4"] = _lists_of(r, 4)
        items = []
        self._present = {}
        for table, t in sorted(tables.items()):
            for raw_bsid in t.get("bsids", []):
                items.append(self._item(raw_bsid, table, t, bsid_routes))
        return sorted(items, key=lambda i: i["bsid"])

    def _item(self, raw_bsid: str, table: int, t: Mapping[str, Any], bsid_routes: Mapping[str, List[str]]) -> Dict[str, Any]:
        bsid = str(ipaddress.IPv6Address(raw_bsid))
        problems = []
        present = {"marker"}
        if len(t.get("bsids", [])) > 1:
            problems.append(f"table {table} is marked for several BSIDs")
        if policy_table(bsid) != table:
            problems.append(f"found in table {table}, not in its own table {policy_table(bsid)}")
        for part, label in (("v6", "IPv6"), ("v4", "IPv4")):
            if part in t:
                present.add(part)
                if t[part] is None:
                    problems.append(f"the {label} default route of table {table} is not an SRv6 encapsulation")
            else:
                problems.append(f"no {label} default route in table {table}")
        item: Dict[str, Any] = {"bsid": bsid}
        sources = {sl.pop("source") for part in ("v6", "v4") for sl in (t.get(part) or []) if "source" in sl}
        if self._tunsrc and sources - {self._tunsrc}:
            problems.append(f"the eBPF encapsulation's source is {', '.join(sorted(sources))}, not the tunnel source {self._tunsrc}")
        lists = t.get("v6") or t.get("v4")
        if lists:
            try:
                item = self.normalize({"bsid": bsid, "segment_lists": lists}, f"{self.name} table {table}")
            except ResourceError as exc:
                problems.append(str(exc))
        if t.get("v6") and t.get("v4") and self._sorted(t["v6"]) != self._sorted(t["v4"]):
            problems.append("the IPv4 and IPv6 routes have different segment lists")
        if bsid in bsid_routes:
            present.add("bsid")
            if item.get("segment_lists") and bsid_routes[bsid] != bsid_list(item["segment_lists"]):
                problems.append(f"the BSID route's segments are {bsid_routes[bsid]}")
        elif self.encap != "bpf":
            problems.append("no End.B6.Encaps route for the BSID")
        if self._tunsrc:
            item["encap_source"] = self._tunsrc
        if item.get("segment_lists") and len(item["segment_lists"]) == 1:
            item["segment_lists"][0]["weight"] = 1
        if problems:
            item["incomplete"] = "; ".join(problems)
        self._present[bsid] = present
        return item

    @staticmethod
    def _sorted(lists: Sequence[Mapping[str, Any]]) -> List[Tuple[Tuple[str, ...], int]]:
        if len(lists) == 1:
            return [(tuple(lists[0]["segments"]), 1)]
        return sorted((tuple(str(ipaddress.IPv6Address(s)) for s in sl["segments"]), sl["weight"]) for sl in lists)

    # checking and planning
    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        item = dict(super().defaults(item))
        if len(item["segment_lists"]) == 1 and item["segment_lists"][0]["weight"] != 1:
            # one list: no nexthop weight to keep (the kernel takes every packet down it)
            item["segment_lists"] = [dict(item["segment_lists"][0], weight=1)]
        if item.get("encap_source") is None:
            source = self._want_source or self._tunsrc
            if source:
                item["encap_source"] = source
        return item

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        super().check_items(items)
        if self.encap == "bpf":
            for index, item in enumerate(items):
                for n, sl in enumerate(item.get("segment_lists") or []):
                    if len(sl["segments"]) > srv6_bpf.MAX_SEGMENTS:
                        raise ResourceError(f"{self.name} config[{index}]: segment_lists[{n}]: {len(sl['segments'])} "
                                            f"segments; the eBPF encapsulation pushes at most {srv6_bpf.MAX_SEGMENTS}")
        self._want_source = None
        self._check_final(items, "config")
        sources = {i["encap_source"] for i in items if i.get("encap_source")}
        self._want_source = sources.pop() if sources else None

    def _check_final(self, items: Sequence[Mapping[str, Any]], what: str) -> None:
        tables: Dict[int, str] = {}
        sources: Dict[str, str] = {}
        for item in items:
            table = policy_table(item["bsid"])
            if table in tables and tables[table] != item["bsid"]:
                raise ResourceError(f"{self.name}: bsid {item['bsid']}: its routing table {table} (0x{table:x}, from the "
                                    f"BSID's low 28 bits) is also that of bsid {tables[table]} ({what}); on Linux "
                                    "two policies need BSIDs that differ in their low 28 bits")
            tables[table] = item["bsid"]
            if item.get("encap_source"):
                sources.setdefault(item["encap_source"], item["bsid"])
        if len(sources) > 1:
            (a, pa), (b, pb) = sorted(sources.items())[:2]
            raise ResourceError(f"{self.name}: encap_source: Linux has one SRv6 encapsulation source per node "
                                f"(ip sr tunsrc); bsid {pa} would use {a} and bsid {pb} {b} ({what}); "
                                "give every policy of the node the same encap_source")

    def order(self, changes: List[Change]) -> List[Change]:
        self._check_final(predict(self, self._have, changes), "with the policies on the node")
        return super().order(changes)

    # changing
    def apply(self, changes: Sequence[Change]) -> None:
        # The engine undoes the routes; the node's one tunnel source is put back here.
        before = self._read_tunsrc()
        try:
            super().apply(changes)
        except ResourceError:
            now = self._read_tunsrc()
            if before is not None and now != before:
                self.driver.run(("ip", "sr", "tunsrc", "set", before), check=False)
            raise

    def _read_tunsrc(self) -> Optional[str]:
        res = self.driver.run(TUNSRC, check=False)
        if not res.ok:
            return None
        return _tunsrc(_json(res.stdout, TUNSRC, self.name)) or "::"

    def _towards_segment(self, segment: str) -> Optional[Tuple[str, Optional[str]]]:
        """(interface, gateway) of the route to ``segment`` on the node, None without one."""
        if segment not in self._towards:
            res = self.driver.run(("ip", "-j", "-6", "route", "get", segment), check=False)
            found = None
            if res.ok:
                try:
                    routes = json.loads(res.stdout or "[]")
                except ValueError:
                    routes = []
                if routes and routes[0].get("dev"):
                    found = (routes[0]["dev"], routes[0].get("gateway"))
                    self._prefsrc[segment] = routes[0].get("prefsrc")
            self._towards[segment] = found
        return self._towards[segment]

    def _hop(self, item: Mapping[str, Any], index: int, strict: bool) -> Tuple[str, str]:
        """Interface and IPv6 gateway for segment list ``index`` of ``item``."""
        first = item["segment_lists"][index]["segments"][0]
        if not self._live:
            return UNRESOLVED, UNRESOLVED
        found = self._towards_segment(first)
        if found is None:
            if strict:
                raise ResourceError(f"bsid {item['bsid']} segment_lists[{index}]: no route to its first segment {first} "
                                    "on the node (add the srv6_route towards it first)")
            return f"<no route to {first}>", f"<no route to {first}>"
        dev, gateway = found
        # On-link (no gateway): the segment is its own next hop.
        return dev, gateway or first

    def _source(self, item: Mapping[str, Any], index: int, strict: bool) -> str:
        """eBPF mode: the outer source address of segment list ``index``."""
        source = item.get("encap_source") or self._want_source or self._tunsrc
        if source:
            return str(source)
        if not self._live:
            return UNRESOLVED
        first = item["segment_lists"][index]["segments"][0]
        if self._towards_segment(first) is not None and self._prefsrc.get(first):
            return str(self._prefsrc[first])
        if strict:
            raise ResourceError(f"bsid {item['bsid']} segment_lists[{index}]: no IPv6 source address towards {first} for "
                                "the encapsulation; give the policy an encap_source")
        return f"<no source towards {first}>"

    def _encap_args(self, part: str, item: Mapping[str, Any], index: int, dev: str,
                    strict: bool) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, bytes], ...]]:
        """The ``encap ...`` words of segment list ``index`` (and the eBPF pins they need)."""
        segments = item["segment_lists"][index]["segments"]
        if self.encap != "bpf":
            return ("encap", "seg6", "mode", "encap", "segs", ",".join(segments), "dev", dev), ()
        family = 6 if part == "v6" else 4
        source = self._source(item, index, strict)
        try:
            ipaddress.IPv6Address(source)
        except ValueError:  # not known yet (rendered): name it, load nothing
            return ("encap", "bpf", "xmit", "pinned", srv6_bpf.pin_path(f"npms_srv6_{family}={source}=" + ",".join(segments)),
                    "dev", dev), ()
        try:
            name = srv6_bpf.program_name(family, source, segments)
            header = srv6_bpf.encap_header(family, source, segments)
        except ValueError as exc:
            raise ResourceError(f"bsid {item['bsid']} segment_lists[{index}]: {exc}") from None
        return ("encap", "bpf", "xmit", "pinned", srv6_bpf.pin_path(name), "dev", dev), ((name, header),)

    def _part(self, part: str, verb: str, item: Mapping[str, Any], strict: bool) -> Step:
        bsid = item["bsid"]
        table = str(policy_table(bsid))
        if part == "marker":
            return Step(("ip", "-6", "route", verb, "throw", f"{bsid}/128", "table", table, "proto", _P))
        if part == "bsid":
            argv: Tuple[str, ...] = ("ip", "-6", "route", verb, f"{bsid}/128", "table", "main", "proto", _P)
            if verb == "del":
                return Step(argv)
            lists = item["segment_lists"]
            best = max(range(len(lists)), key=lambda i: (lists[i]["weight"], -i))
            dev = self._hop(item, best, strict)[0]
            return Step(argv + ("encap", "seg6local", "action", "End.B6.Encaps", "srh", "segs",
                                ",".join(lists[best]["segments"]), "dev", dev))
        family = "-6" if part == "v6" else "-4"
        argv = ("ip", family, "route", verb, "default", "table", table, "proto", _P)
        if verb == "del":
            return Step(argv)
        lists = item["segment_lists"]
        if len(lists) == 1:
            words, pins = self._encap_args(part, item, 0, self._hop(item, 0, strict)[0], strict)
            return Step(argv + words, pins=pins)
        pins: Tuple[Tuple[str, bytes], ...] = ()
        for index, sl in enumerate(lists):
            dev, gateway = self._hop(item, index, strict)
            # IPv6 multipath refuses device-only nexthops; IPv4 takes them.
            via = ("via", gateway) if part == "v6" else ()
            words, more = self._encap_args(part, item, index, dev, strict)
            argv += ("nexthop",) + via + words + ("weight", str(sl["weight"]))
            pins += more
        return Step(argv, pins=pins)

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        return _encap_facts(self.encap, self.SHOW)

    def _parts_of(self, item: Mapping[str, Any]) -> Tuple[str, ...]:
        if not item.get("segment_lists"):
            return ("marker",)
        return _PARTS[:3] if self.encap == "bpf" else _PARTS

    def steps(self, change: Change, strict: bool) -> List[Step]:
        steps: List[Step] = []
        if change.op == DELETE:
            before = change.before
            present = self._present.get(before["bsid"], set(self._parts_of(before)))
            for part in reversed(_PARTS):
                if part in present:
                    undo = self._part(part, "add", before, False) if part in self._parts_of(before) else None
                    steps.append(Step(self._part(part, "del", before, strict).argv, undo=undo))
            return steps
        after = change.after
        verb = _verb(change.op)
        for part in self._parts_of(after):
            if change.op == ADD:
                undo = self._part(part, "del", after, False)
            elif part in self._present.get(after["bsid"], set(_PARTS)) and part in self._parts_of(change.before):
                undo = self._part(part, "replace", change.before, False)
            else:
                undo = self._part(part, "del", after, False)
            steps.append(dataclasses.replace(self._part(part, verb, after, strict), undo=undo))
        if after.get("encap_source"):
            undo = Step(("ip", "sr", "tunsrc", "set", self._tunsrc or "::")) if self._live else None
            steps.append(Step(("ip", "sr", "tunsrc", "set", after["encap_source"]), undo=undo))
        return steps


def _tunsrc(value: Any) -> Optional[str]:
    """The tunnel source from ``ip -j sr tunsrc show`` (or its text form); None for ``::``."""
    if isinstance(value, list):
        text = str(value[0].get("tunsrc", "::")) if value else "::"
    else:
        words = str(value).split()
        text = words[-1] if words else "::"
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return None if addr.is_unspecified else str(addr)


# --- steering --------------------------------------------------------------------------------
#: IP protocols of packets that npms's SRv6 encapsulation made from a tenant's IPv4 / IPv6
#: packet, as fib rules see them (the flow dissector steps over the routing header).
ENCAP_PROTOS = (4, 41)
_PROTO_NAMES = {"ipencap": 4, "ipip": 4, "ipv6": 41}


@dataclass(frozen=True)
class _NftRule:
    """One rule of the npms_steering table, as npms writes it."""

    comment: str  # "<tenant>/<class>" for a class, "<tenant>" for the tenant's own rules
    kind: str  # "ip" / "ip6": DSCP match of that family; "any": none; "tunnels": drop tunnelled IPv6
    interfaces: Tuple[str, ...]
    dscp: Tuple[int, ...]
    mark: int

    def text(self) -> str:
        ifs = ", ".join(json.dumps(i) for i in self.interfaces)
        match = f"iifname {{ {ifs} }}"
        if self.kind == "tunnels":
            protos = ", ".join(str(p) for p in ENCAP_PROTOS)
            return f"{match} meta nfproto ipv6 meta l4proto {{ {protos} }} drop comment {json.dumps(self.comment)}"
        if self.kind != "any":
            match += f" {self.kind} dscp {{ {', '.join(str(d) for d in self.dscp)} }}"
        return f"{match} meta mark set 0x{self.mark:08x} accept comment {json.dumps(self.comment)}"


def _nft_rules(items: Iterable[Mapping[str, Any]]) -> Tuple[_NftRule, ...]:
    """The rules ``items`` need, in order: per tenant, drop IPv6 packets that arrive already
    tunnelled (they would pass the tenant's encapsulation rule, see :func:`tenant_rules`);
    then classes with DSCP values, default classes (no DSCP), and last each tenant's
    unclassified traffic (mark tenant<<8, which only the tenant's prohibit rules match)."""
    classes: Dict[Tuple[str, str], Mapping[str, Any]] = {}
    tenants: Dict[str, Tuple[int, Set[str]]] = {}
    for item in items:
        if item.get("ingress_interfaces") is None or item.get("dscp") is None:
            continue  # read from a node whose classification is gone: nothing to classify
        classes.setdefault((item["tenant"], item["traffic_class"]), item)
        tenants.setdefault(item["tenant"], (item["tenant_id"], set()))[1].update(item["ingress_interfaces"])
    first, specific, default, rest = [], [], [], []
    for tenant, (tid, ifs) in sorted(tenants.items()):
        first.append(_NftRule(tenant, "tunnels", tuple(sorted(ifs)), (), 0))
        rest.append(_NftRule(tenant, "any", tuple(sorted(ifs)), (), tid << 8))
    for (tenant, tc), item in sorted(classes.items()):
        mark = class_mark(item["tenant_id"], item["class_id"])
        ifs = tuple(sorted(item["ingress_interfaces"]))
        if item["dscp"]:
            for kind in ("ip", "ip6"):
                specific.append(_NftRule(f"{tenant}/{tc}", kind, ifs, tuple(item["dscp"]), mark))
        else:
            default.append(_NftRule(f"{tenant}/{tc}", "any", ifs, (), mark))
    return tuple(first + specific + default + rest)


def tenant_rules(tenant_id: int) -> Set[Tuple[int, int, int, str]]:
    """The ip rules (family, tenant id, priority, what) that fence a tenant in.

    ``prohibit`` (IPv4 and IPv6) refuses a tenant packet that no steering rule took.  The
    IPv6 ``ipproto`` rules let through the tenant's packets once npms encapsulated them:
    the kernel looks the outer IPv6 header up with the packet's mark still set, and fib
    rules see the encapsulated protocol (4 for IPv4, 41 for IPv6) as ``ipproto``.  The
    nft table drops such packets when a tenant sends them itself."""
    out = {(4, tenant_id, TENANT_PREF, "prohibit"), (6, tenant_id, TENANT_PREF, "prohibit")}
    out.update((6, tenant_id, TENANT_PREF - 1, f"ipproto {p}") for p in ENCAP_PROTOS)
    return out


def nft_script(rules: Sequence[_NftRule]) -> str:
    """One ``nft -f`` transaction that replaces the npms_steering table (or removes it)."""
    head = f"table {NFT_FAMILY} {NFT_TABLE} {{}}\ndelete table {NFT_FAMILY} {NFT_TABLE}\n"
    if not rules:
        return head
    body = "".join(f"\t\t{r.text()}\n" for r in rules)
    return (head + f"table {NFT_FAMILY} {NFT_TABLE} {{\n\tchain {NFT_CHAIN} {{\n"
            "\t\ttype filter hook prerouting priority mangle; policy accept;\n" + body + "\t}\n}\n")


def _nft_values(right: Any) -> List[Any]:
    if isinstance(right, dict) and "set" in right:
        values: List[Any] = []
        for v in right["set"]:
            values += _nft_values(v)
        return values
    if isinstance(right, dict) and "range" in right:
        lo, hi = (_dscp_value(v) for v in right["range"])
        return list(range(lo, hi + 1))
    return [right]


def _dscp_value(value: Any) -> int:
    if isinstance(value, int):
        return value
    return _DSCP_NAMES[str(value)] if str(value) in _DSCP_NAMES else int(str(value), 0)


def _proto_value(value: Any) -> int:
    if isinstance(value, int):
        return value
    return _PROTO_NAMES[str(value)] if str(value) in _PROTO_NAMES else int(str(value), 0)


def _parse_nft(doc: Any) -> Tuple[bool, List[_NftRule], List[str]]:
    """(table exists, its rules as npms writes them, descriptions of rules it cannot read)."""
    entries = doc.get("nftables", []) if isinstance(doc, dict) else []
    exists = any("table" in e and e["table"].get("name") == NFT_TABLE for e in entries)
    rules, odd = [], []
    for e in entries:
        rule = e.get("rule")
        if not rule or rule.get("table") != NFT_TABLE:
            continue
        got: Dict[str, Any] = {"kind": "any", "ifs": [], "dscp": [], "mark": None, "verdict": None,
                               "nfproto": None, "l4proto": None, "ok": True}
        for expr in rule.get("expr", []):
            _nft_expr(expr, got)
        comment = str(rule.get("comment", ""))
        ifs = tuple(sorted(got["ifs"]))
        marking = got["verdict"] == "accept" and isinstance(got["mark"], int) and got["nfproto"] is None and got["l4proto"] is None
        tunnels = (got["verdict"] == "drop" and got["mark"] is None and got["kind"] == "any" and got["nfproto"] in (10, "ipv6")
                   and got["l4proto"] == set(ENCAP_PROTOS))
        if got["ok"] and ifs and marking:
            rules.append(_NftRule(comment, got["kind"], ifs, tuple(sorted(set(got["dscp"]))), got["mark"]))
        elif got["ok"] and ifs and tunnels:
            rules.append(_NftRule(comment, "tunnels", ifs, (), 0))
        else:
            odd.append(f"rule handle {rule.get('handle')}")
    return exists, rules, odd


def _nft_expr(expr: Mapping[str, Any], got: Dict[str, Any]) -> None:
    if "match" in expr and expr["match"].get("op") in ("==", "in"):
        left, right = expr["match"]["left"], expr["match"]["right"]
        meta = left.get("meta", {}).get("key") if isinstance(left, dict) else None
        if meta == "iifname":
            got["ifs"] = [str(v) for v in _nft_values(right)]
        elif meta == "nfproto":
            got["nfproto"] = right
        elif meta == "l4proto":
            got["l4proto"] = {_proto_value(v) for v in _nft_values(right)}
        elif isinstance(left, dict) and left.get("payload", {}).get("field") == "dscp":
            got["kind"] = left["payload"].get("protocol")
            got["dscp"] = [_dscp_value(v) for v in _nft_values(right)]
            got["ok"] = got["ok"] and got["kind"] in ("ip", "ip6")
        else:
            got["ok"] = False
    elif "mangle" in expr and expr["mangle"].get("key") == {"meta": {"key": "mark"}}:
        got["mark"] = expr["mangle"].get("value")
    elif "accept" in expr or "drop" in expr:
        got["verdict"] = "accept" if "accept" in expr else "drop"
    else:
        got["ok"] = False


@dataclass
class _SteeringState:
    """What gather read besides the items: the tenants' own ip rules and the nft table."""

    tenant_rules: Set[Tuple[int, int, int, str]]  # (family, tenant_id, pref, what)
    nft_exists: bool
    nft_rules: Tuple[_NftRule, ...]
    rules: Dict[Tuple[Any, ...], Tuple[int, int, int]]  # item key -> (family, table, pref)


class Srv6SteeringLinux(_Steps, Srv6Steering):
    """Steering by class and prefix: nftables marks, ip rules into policy tables."""

    dataplane = "linux"
    report_fields = ("incomplete",)
    SHOW = (RULES_V4, RULES_V6, NFT_SHOW, ALL_V6)

    def __init__(self, driver: Any = None):
        super().__init__(driver)
        self._state = _SteeringState(set(), False, (), {})
        self._have: List[Dict[str, Any]] = []
        self._ctx: Dict[str, Any] = {}

    # reading
    def gather(self) -> List[Dict[str, Any]]:
        self._have = self.parse(show_text(self.driver, self.SHOW))
        return self._have

    def parse(self, text: str) -> List[Dict[str, Any]]:
        out = sections(text, self.SHOW, self.name)
        markers: Dict[int, str] = {}
        for r in _json(out[ALL_V6], ALL_V6, self.name):
            table = _route_table(r)
            if _ours(r) and r.get("type") == "throw" and is_policy_table(table) and _dst(r).endswith("/128"):
                markers[table] = _dst(r)[:-4]
        nft_doc = _json(out[NFT_SHOW], NFT_SHOW, self.name)
        nft_exists, nft_rules, odd = _parse_nft(nft_doc if isinstance(nft_doc, dict) else {})
        names: Dict[int, Tuple[str, str]] = {}
        class_rules: Dict[int, List[_NftRule]] = {}
        for rule in nft_rules:
            if "/" in rule.comment and rule.kind != "tunnels":
                tenant, tc = rule.comment.split("/", 1)
                names.setdefault(rule.mark, (tenant, tc))
                class_rules.setdefault(rule.mark, []).append(rule)
        state = _SteeringState(set(), nft_exists, tuple(nft_rules), {})
        found: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
        for family, argv in ((4, RULES_V4), (6, RULES_V6)):
            for r in _json(out[argv], argv, self.name):
                if str(r.get("protocol", "")) != _P or "fwmark" not in r:
                    continue
                mark, mask = int(r["fwmark"], 0), int(r.get("fwmask", "0xffffffff"), 0)
                pref = int(r.get("priority", 0))
                if mask == TENANT_MARK_MASK and mark & 0xFF == 0:
                    if r.get("action") == "prohibit":
                        state.tenant_rules.add((family, mark >> 8, pref, "prohibit"))
                    elif "ipproto" in r and _table_id(r.get("table")) == 254:
                        state.tenant_rules.add((family, mark >> 8, pref, f"ipproto {_proto_value(r['ipproto'])}"))
                    continue
                if mask != CLASS_MARK_MASK or mark & 0xFF == 0 or "table" not in r:
                    continue
                item, problems = self._item(r, family, mark, names, class_rules, markers)
                key = item_key(item, self.key_fields)
                if key in found:
                    problems.append("the ip rule is there twice")
                    item = found[key]
                state.rules[key] = (family, _table_id(r["table"]), pref)
                _note(item, problems)
                found[key] = item
        items = list(found.values())
        self._check_tenants(items, state, odd)
        self._state = state
        return sorted(items, key=lambda i: item_key(i, self.key_fields))

    @staticmethod
    def _check_tenants(items: List[Dict[str, Any]], state: _SteeringState, odd: List[str]) -> None:
        """Flag the entries of a tenant whose nft rules or tenant rules are not those the
        entries need (so that merged / replaced / overridden rewrite them)."""
        by_tenant: Dict[int, List[Dict[str, Any]]] = {}
        for item in items:
            by_tenant.setdefault(item["tenant_id"], []).append(item)
        for tid, tenant_items in by_tenant.items():
            problems = []
            if all(i.get("dscp") is not None for i in tenant_items):
                names = {i["tenant"] for i in tenant_items}
                want = set(_nft_rules(tenant_items))
                have = {r for r in state.nft_rules if (r.mark >> 8 == tid and r.kind != "tunnels")
                        or (r.kind == "tunnels" and r.comment in names)}
                if want != have:
                    problems.append("the nftables classification differs from the steering entries")
            if odd:
                problems.append("npms_steering has rules npms does not write: " + ", ".join(odd))
            missing = tenant_rules(tid) - state.tenant_rules
            if missing:
                problems.append("missing tenant rule(s): " + ", ".join(f"IPv{m[0]} pref {m[2]} {m[3]}" for m in sorted(missing)))
            for item in tenant_items:
                _note(item, problems)

    def _item(self, rule: Mapping[str, Any], family: int, mark: int, names: Mapping[int, Tuple[str, str]],
              class_rules: Mapping[int, List[_NftRule]], markers: Mapping[int, str]) -> Tuple[Dict[str, Any], List[str]]:
        tid, cid = mark >> 8, (mark & 0xFF) - 1
        problems = []
        zero = "0.0.0.0" if family == 4 else "::"
        prefix = str(ipaddress.ip_network(f"{rule.get('dst', zero)}/{rule.get('dstlen', 0)}", strict=False))
        tenant, tc = names.get(mark, (f"tenant-{tid}", f"class-{cid}"))
        if mark not in names:
            problems.append(f"no nftables classification for mark 0x{mark:x}")
        item: Dict[str, Any] = {"tenant": tenant, "tenant_id": tid, "traffic_class": tc, "class_id": cid, "prefix": prefix}
        table = _table_id(rule["table"])
        if table in markers:
            item["bsid"] = markers[table]
        else:
            problems.append(f"table {table} holds no srv6_policy (apply the policy first)")
        rules = class_rules.get(mark, [])
        if rules:
            item["ingress_interfaces"] = list(rules[0].interfaces)
            item["dscp"] = list(rules[0].dscp)
        expected = self._pref(prefix)
        if int(rule.get("priority", 0)) != expected:
            problems.append(f"priority {rule.get('priority')}, not {expected}")
        try:
            item = self.normalize(item, f"{self.name} ip rule fwmark 0x{mark:x} to {prefix}")
        except ResourceError as exc:
            problems.append(str(exc))
        return item, problems

    # checking and planning
    @staticmethod
    def _pref(prefix: str) -> int:
        net = ipaddress.ip_network(prefix)
        return STEER_PREF_BASE + net.max_prefixlen - net.prefixlen

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        super().check_items(items)
        self._check_final(items, "config")
        # Context for state rendered (order() replaces it when there is a plan).
        rendered = [self.defaults(dict(i)) for i in items] if self._complete(items) else None
        if rendered:
            self._check_final(rendered, "config")
        self._ctx = {"rendered": rendered, "last": item_key(items[-1], self.key_fields) if items else None}

    @staticmethod
    def _complete(items: Sequence[Mapping[str, Any]]) -> bool:
        return all(all(i.get(n) is not None for n in ("tenant_id", "class_id", "ingress_interfaces", "bsid")) for i in items)

    def _check_final(self, items: Sequence[Mapping[str, Any]], what: str) -> None:
        owner: Dict[str, str] = {}
        defaults: Dict[str, str] = {}
        for item in items:
            for ifname in item.get("ingress_interfaces") or ():
                if owner.setdefault(ifname, item["tenant"]) != item["tenant"]:
                    raise ResourceError(f"{self.name}: ingress interface {ifname} is given to tenants {owner[ifname]} and "
                                        f"{item['tenant']} ({what}); an interface belongs to one tenant")
            if item.get("dscp") == [] and defaults.setdefault(item["tenant"], item["traffic_class"]) != item["traffic_class"]:
                raise ResourceError(f"{self.name}: tenant {item['tenant']}: classes {defaults[item['tenant']]} and "
                                    f"{item['traffic_class']} both have no dscp ({what}); one class, the tenant's default, "
                                    "takes the DSCP values no other class claims")

    def order(self, changes: List[Change]) -> List[Change]:
        items = predict(self, self._have, changes)
        try:
            Srv6Steering.check_items(self, items)
            self._check_final(items, "with the steering on the node")
        except ResourceError as exc:
            # check_items numbers the merged list, not the user's config: drop that index.
            text = re.sub(r"^(\S+) config\[\d+\]", r"\1", str(exc))
            raise ResourceError(f"{text} (together with the steering entries already on the node)") from None
        ordered = super().order(changes)
        self._ctx = {"final": items, "last": ordered[-1] if ordered else None}
        return ordered

    # changing
    def _rule(self, verb: str, item: Mapping[str, Any], known: Optional[Tuple[int, int, int]] = None) -> Step:
        net = ipaddress.ip_network(item["prefix"])
        mark = class_mark(item["tenant_id"], item["class_id"])
        argv: Tuple[str, ...] = ("ip", f"-{net.version}", "rule", verb)
        if verb == "add":
            argv += ("pref", str(known[2] if known else self._pref(item["prefix"])))
        argv += ("fwmark", f"0x{mark:x}/0x{CLASS_MARK_MASK:x}", "to", item["prefix"])
        if verb == "add":
            table = policy_table(item["bsid"]) if item.get("bsid") else (known[1] if known else None)
            if table is None:
                raise ResourceError(f"{item['tenant']}/{item['traffic_class']} {item['prefix']}: bsid is required")
            argv += ("lookup", str(table))
        return Step(argv + ("proto", _P))

    def _signature(self, item: Mapping[str, Any], on_node: bool) -> Tuple[Any, ...]:
        """What the item's ip rule is: (mark, prefix, table, priority)."""
        known = self._state.rules.get(item_key(item, self.key_fields)) if on_node else None
        if known:
            return (class_mark(item["tenant_id"], item["class_id"]), item["prefix"], known[1], known[2])
        table = policy_table(item["bsid"]) if item.get("bsid") else None
        return (class_mark(item["tenant_id"], item["class_id"]), item["prefix"], table, self._pref(item["prefix"]))

    def steps(self, change: Change, strict: bool) -> List[Step]:
        steps: List[Step] = []
        known = self._state.rules.get(change.key)
        if change.op == DELETE:
            steps.append(Step(self._rule("del", change.before).argv, undo=self._restore(change.before, known)))
        elif change.op == ADD:
            steps.append(Step(self._rule("add", change.after).argv, undo=self._rule("del", change.after)))
        elif self._signature(change.before, True) != self._signature(change.after, False):
            steps.append(Step(self._rule("del", change.before).argv, undo=self._restore(change.before, known)))
            steps.append(Step(self._rule("add", change.after).argv, undo=self._rule("del", change.after)))
        if self._is_last(change):
            steps += self._global_steps(self._ctx.get("final") if "final" in self._ctx else self._ctx.get("rendered"))
        return steps

    def _restore(self, item: Mapping[str, Any], known: Optional[Tuple[int, int, int]]) -> Optional[Step]:
        if not item.get("bsid") and not known:
            return None
        return self._rule("add", item, known)

    def _is_last(self, change: Change) -> bool:
        """The tenant rules and the nft table follow the last change's commands."""
        last = self._ctx.get("last")
        if last is None:
            return False
        if isinstance(last, Change):
            return change == last
        return "rendered" in self._ctx and change.op == ADD and change.key == last

    def _global_steps(self, final: Optional[Sequence[Mapping[str, Any]]]) -> List[Step]:
        """Tenant rules and nft table that ``final`` needs, from what gather read (nothing,
        for state rendered)."""
        if final is None:
            return []
        state = self._state
        want: Set[Tuple[int, int, int, str]] = set()
        for tid in {i["tenant_id"] for i in final}:
            want |= tenant_rules(tid)
        steps = [Step(self._tenant_rule("add", r), undo=Step(self._tenant_rule("del", r)))
                 for r in sorted(want - state.tenant_rules)]
        rules = _nft_rules(final)
        if rules != tuple(state.nft_rules) or (not rules and state.nft_exists):
            steps.append(Step(("nft", "-f", "-"), stdin=nft_script(rules)))
        steps += [Step(self._tenant_rule("del", r), undo=Step(self._tenant_rule("add", r)))
                  for r in sorted(state.tenant_rules - want)]
        return steps

    @staticmethod
    def _tenant_rule(verb: str, rule: Tuple[int, int, int, str]) -> Tuple[str, ...]:
        family, tid, pref, what = rule
        action = ("prohibit",) if what == "prohibit" else (what.split()[0], what.split()[1], "lookup", "main")
        return (("ip", f"-{family}", "rule", verb, "pref", str(pref), "fwmark", f"0x{tid << 8:x}/0x{TENANT_MARK_MASK:x}")
                + action + ("proto", _P))

    def apply(self, changes: Sequence[Change]) -> None:
        """The ip rules one by one (undone by the engine on a failure), then the tenant
        rules and the nft table; if those fail, everything is put back as it was."""
        original = self._state
        snapshot = self.driver.run(("nft", "list", "table", NFT_FAMILY, NFT_TABLE), check=False)
        ctx = self._ctx
        self._ctx = {}  # apply_change runs the per-entry commands only
        try:
            super().apply(changes)
            glob = self._global_steps(ctx.get("final"))
            try:
                run_steps(self.driver, glob)
            except ResourceError as exc:
                errors = self._put_back(changes, original, snapshot)
                if errors:
                    raise ResourceError(f"{self.name}: {exc}; the rollback also failed: " + "; ".join(errors)) from None
                raise ResourceError(f"{self.name}: {exc}; rolled back {len(changes)} change(s)", rolled_back=True) from None
        finally:
            self._ctx = ctx

    def _put_back(self, changes: Sequence[Change], original: _SteeringState, snapshot: Any) -> List[str]:
        errors = []
        for change in reversed(list(changes)):
            try:
                self.apply_change(change.inverse())
            except (ResourceError, CommandError) as exc:
                errors.append(str(exc))
        try:
            self.parse(show_text(self.driver, self.SHOW))
            current = self._state
            for rule in sorted(current.tenant_rules - original.tenant_rules):
                self.driver.run(self._tenant_rule("del", rule))
            for rule in sorted(original.tenant_rules - current.tenant_rules):
                self.driver.run(self._tenant_rule("add", rule))
            if snapshot.ok:
                restore = nft_script(()) + snapshot.stdout
            else:
                # no listing: the table did not exist, or write back what gather read
                restore = nft_script(original.nft_rules if original.nft_exists else ())
            self.driver.run(("nft", "-f", "-"), stdin=restore)
        except (ResourceError, CommandError) as exc:
            errors.append(str(exc))
        finally:
            self._state = original
        return errors


def _note(item: Dict[str, Any], problems: Sequence[str]) -> None:
    """Add ``problems`` to the item's ``incomplete`` note."""
    notes = [n for n in (item.get("incomplete", "").split("; ") + list(problems)) if n]
    if notes:
        item["incomplete"] = "; ".join(sorted(set(notes)))
