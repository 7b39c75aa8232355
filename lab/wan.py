# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAN impairments of the namespace lab: delay, jitter, loss and rate on a veth's egress.

This kernel has no netem (LAB_NOTES), so an impairment is built from what it has, all on
the egress side of ``ifname`` inside ``netns`` (the direction towards the veth peer):

=========  ==================================================================================
rate       ``tc`` tbf as the root qdisc (handle ``4e50:``), burst ~4 ms and a 50 ms queue
           of the rate: a full queue drops, as a WAN bottleneck does.
loss       ``iptables-legacy`` (and ``ip6tables-legacy``) ``-m statistic --mode random`` in
           mangle POSTROUTING, sending the chosen packets to NFQUEUE 65535, where nobody
           listens: the kernel drops them silently.  (``-j DROP`` there would hand the
           namespace's own senders an EPERM, which a WAN loss never does.)
delay,     an NFQUEUE rule (``--queue-bypass``) to the lab's one userspace element,
jitter     ``npms-wand`` (:mod:`npms_lab.wand`): it holds each packet until its release
           time: arrival + max(0, gauss(delay, jitter)), never before the previous packet
           of the same interface (FIFO: jitter without reordering).  Packets the namespace
           itself sent are copied, dropped at once and the copy sent on the interface
           after the delay (to the veth peer's MAC): a held original would count against
           its TCP socket's small-queue budget and cap the stream at a few Mbit/s.
=========  ==================================================================================

iptables-legacy rather than nftables: the collection configures each node's nftables
ruleset (overlay), and a ``flush ruleset`` there must not take the lab's WAN with it.
Everything lives in one chain per namespace and family, ``NPMS-WAN``, jumped to from
mangle POSTROUTING and rewritten atomically (``iptables-legacy-restore --noflush``), so a
change at run time never lets a packet through half-impaired.  If the daemon dies, the
queue rules let packets pass undelayed (``--queue-bypass``) rather than cut the link;
:meth:`WanEmulator.check` reports it and the next :meth:`WanEmulator.set` restarts it.

A packet meets loss first, then delay, then the rate limit.  Where the veth peer cannot
be found (no veth, or its namespace has no name) the namespace's own packets are held as
they are, and its own TCP streams are capped as said above.

Only IPv4 and IPv6 are delayed or lost (ARP is not).  ``jitter_ms`` is the standard
deviation of the one-way delay; when packets follow each other closer than the jitter,
FIFO release holds later ones a little longer, so a busy link's mean delay rises by up to
about two jitters.

Files in ``state_dir``: ``wan-state.json`` (what :meth:`~WanEmulator.set` was asked,
for :meth:`~WanEmulator.check`, daemon restarts and cleanup after a crash), ``wan.lock``,
and the daemon's ``wand.sock``, ``wand.pid``, ``wand.log``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

from npms.runner import CommandError, LocalRunner, NetnsRunner, NETNS_RUN_DIR

from . import wand
from .plan import Impairment
from .procs import alive, cmdline, read_pid, rss_kib, terminate

__all__ = ["Impairment", "ImpairmentError", "WanEmulator", "WanError", "apply", "daemons", "show", "shutdown"]

CHAIN = "NPMS-WAN"
TABLE = "mangle"
HOOK = "POSTROUTING"
LOSS_QUEUE = 65535  # never bound: what is queued here is dropped by the kernel
TBF_HANDLE = "4e50:"
# (name for messages, iptables-save, iptables-restore)
FAMILIES = (("IPv4", "iptables-legacy-save", "iptables-legacy-restore"),
            ("IPv6", "ip6tables-legacy-save", "ip6tables-legacy-restore"))
# Root qdiscs a veth has when nobody configured one: replacing them takes nothing away.
DEFAULT_QDISCS = ("noqueue", "pfifo_fast", "mq", "fq_codel", "pfifo", "bfifo", "noop")
DAEMON_NAME = "npms-wand"
STATE_FILE = "wan-state.json"
LOCK_FILE = "wan.lock"
OWN_FILES = (STATE_FILE, LOCK_FILE, wand.SOCKET_NAME, wand.PID_NAME, wand.LOG_NAME)
WAND_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wand.py")

MAX_DELAY_MS = 10000.0
MAX_RATE_MBPS = 10000.0  # tbf's 32-bit byte rate
LOSS_DIGITS = 4  # % decimals kept: the kernel stores the probability in 31 bits
BURST_S = 0.004
QUEUE_S = 0.05
ETH_HEADER = 14

_NETNS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_][^/:\s]{0,14}$")


class ImpairmentError(ValueError):
    """A value set() cannot apply: the message names the field and the value."""


class WanError(RuntimeError):
    """The machine did not do what was asked (a command failed, the daemon did not start)."""


Key = Tuple[str, str]


def _number(field: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImpairmentError(f"{field}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ImpairmentError(f"{field}: must be {bound} and <= {high:g}, got {value!r}")
    return number


def validated(imp: Any) -> Impairment:
    """``imp`` (an Impairment, or anything with its four fields) checked and normalised."""
    for field in ("delay_ms", "jitter_ms", "loss_pct", "rate_mbps"):
        if not hasattr(imp, field):
            raise ImpairmentError(f"{field}: missing from {imp!r}")
    rate = imp.rate_mbps
    return Impairment(
        delay_ms=_number("delay_ms", imp.delay_ms, 0.0, MAX_DELAY_MS),
        jitter_ms=_number("jitter_ms", imp.jitter_ms, 0.0, MAX_DELAY_MS),
        loss_pct=round(_number("loss_pct", imp.loss_pct, 0.0, 100.0), LOSS_DIGITS),
        rate_mbps=None if rate is None else _number("rate_mbps", rate, 0.0, MAX_RATE_MBPS, low_open=True),
    )


def _is_zero(imp: Impairment) -> bool:
    return imp.delay_ms == 0 and imp.jitter_ms == 0 and imp.loss_pct == 0 and imp.rate_mbps is None


def _close(have: Optional[float], want: Optional[float]) -> bool:
    if have is None or want is None:
        return have is None and want is None
    return abs(have - want) <= max(1e-6, 1e-3 * abs(want))


def same(have: Optional[Impairment], want: Optional[Impairment]) -> bool:
    """Equal within what the kernel can store (loss in 31 bits, rate in bytes/s)."""
    have = have or Impairment()
    want = want or Impairment()
    return all(_close(getattr(have, f), getattr(want, f)) for f in ("delay_ms", "jitter_ms", "loss_pct", "rate_mbps"))


def _check_names(netns: Any, ifname: Any) -> None:
    if not isinstance(netns, str) or not _NETNS_RE.match(netns) or netns in (".", ".."):
        raise ImpairmentError(f"netns: not a network namespace name: {netns!r}")
    if not isinstance(ifname, str) or not _IFNAME_RE.match(ifname):
        raise ImpairmentError(f"ifname: not an interface name: {ifname!r}")


def _netns_exists(netns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN_DIR, netns))


# ------------------------------------------------------------------ iptables chains
class _Rules:
    """What NPMS-WAN holds for one interface in one family."""

    def __init__(self) -> None:
        self.loss_pct: Optional[float] = None
        self.queue: Optional[int] = None
        self.bypass = False


class _Chain:
    """The NPMS-WAN chain of one namespace and family, as read from iptables-save."""

    def __init__(self, netns: str, family: Tuple[str, str, str]):
        self.netns = netns
        self.family, self.save_cmd, self.restore_cmd = family
        self.exists = False
        self.jump = False
        self.lines: List[Tuple[str, str]] = []  # (ifname, rule text) in chain order
        self.rules: Dict[str, _Rules] = {}

    def read(self) -> "_Chain":
        try:
            out = NetnsRunner(self.netns).run([self.save_cmd, "-t", TABLE], timeout=30).stdout
        except CommandError as exc:
            raise WanError(f"{self.netns}: cannot read {self.family} rules: {exc}") from None
        prefix = f"-A {CHAIN} "
        for line in out.splitlines():
            if line.startswith(f":{CHAIN} "):
                self.exists = True
            elif line.strip() == f"-A {HOOK} -j {CHAIN}":
                self.jump = True
            elif line.startswith(prefix):
                words = shlex.split(line)
                ifname = _option(words, "-o")
                if ifname is None:
                    continue
                self.lines.append((ifname, line))
                rules = self.rules.setdefault(ifname, _Rules())
                queue = _option(words, "--queue-num")
                if queue is None:
                    continue
                if int(queue) == LOSS_QUEUE:
                    rules.loss_pct = round(float(_option(words, "--probability") or 1.0) * 100.0, LOSS_DIGITS)
                else:
                    rules.queue = int(queue)
                    rules.bypass = "--queue-bypass" in words
        return self

    def queues(self, but: str) -> List[int]:
        return [r.queue for name, r in self.rules.items() if name != but and r.queue is not None]

    def write(self, ifname: str, new_lines: List[str]) -> bool:
        """Replace ``ifname``'s rules with ``new_lines``, atomically; True if that changed them."""
        old = [text for name, text in self.lines if name == ifname]
        if [_normal(t) for t in old] == [_normal(t) for t in new_lines]:
            return False
        keep = [text for name, text in self.lines if name != ifname] + new_lines
        script = [f"*{TABLE}"]
        if keep:
            script.append(f":{CHAIN} - [0:0]")  # with --noflush: (re)declares and flushes it
            script.extend(keep)
            if not self.jump:
                script.append(f"-I {HOOK} 1 -j {CHAIN}")
        elif self.exists:
            if self.jump:
                script.append(f"-D {HOOK} -j {CHAIN}")
            script += [f"-F {CHAIN}", f"-X {CHAIN}"]
        script.append("COMMIT")
        try:
            NetnsRunner(self.netns).run([self.restore_cmd, "-w", "10", "--noflush"], stdin="\n".join(script) + "\n", timeout=30)
        except CommandError as exc:
            raise WanError(f"{self.netns}/{ifname}: cannot write {self.family} rules: {exc}") from None
        return True

    def remove_all(self) -> None:
        if self.exists:
            script = [f"*{TABLE}"] + ([f"-D {HOOK} -j {CHAIN}"] if self.jump else []) + [f"-F {CHAIN}", f"-X {CHAIN}", "COMMIT"]
            NetnsRunner(self.netns).run([self.restore_cmd, "-w", "10", "--noflush"], stdin="\n".join(script) + "\n", timeout=30)


def _option(words: List[str], name: str) -> Optional[str]:
    try:
        return words[words.index(name) + 1]
    except (ValueError, IndexError):
        return None


def _normal(rule: str) -> str:
    # iptables-save prints probabilities with 11 decimals of the 31-bit value it stored.
    words = shlex.split(rule)
    if "--probability" in words:
        i = words.index("--probability") + 1
        words[i] = f"{float(words[i]):.6f}"
    return " ".join(words)


def _rule_lines(ifname: str, loss_pct: float, queue: Optional[int]) -> List[str]:
    lines = []
    if loss_pct > 0:
        lines.append(f"-A {CHAIN} -o {ifname} -m statistic --mode random --probability {loss_pct / 100.0:.10f} "
                     f"-m comment --comment npms-wan-loss -j NFQUEUE --queue-num {LOSS_QUEUE}")
    if queue is not None:
        lines.append(f"-A {CHAIN} -o {ifname} -m comment --comment npms-wan-delay -j NFQUEUE --queue-num {queue} --queue-bypass")
    return lines


# ------------------------------------------------------------------ links and qdiscs
def _ip_json(args: List[str]) -> Any:
    res = LocalRunner().run(["ip", "-j"] + args, check=False, timeout=30)
    if not res.ok:
        return None
    try:
        return json.loads(res.stdout or "null")
    except ValueError:
        return None


def _link(netns: str, ifname: str) -> Optional[Dict[str, Any]]:
    data = _ip_json(["-d", "-n", netns, "link", "show", "dev", ifname])
    return data[0] if data else None


def _peer_mac(netns: str, link: Dict[str, Any]) -> Optional[str]:
    """The MAC of the veth peer of ``link`` (None: not a veth, or the peer's namespace has no name)."""
    if (link.get("linkinfo") or {}).get("info_kind") != "veth" or "link_index" not in link:
        return None
    peer_ns = netns
    if "link_netnsid" in link:
        ids = _ip_json(["-n", netns, "netns", "list-id"]) or []
        names = [d.get("name") for d in ids if d.get("nsid") == link["link_netnsid"]]
        if not names or not names[0]:
            return None
        peer_ns = names[0]
    for peer in _ip_json(["-n", peer_ns, "link", "show"]) or []:
        if peer.get("ifindex") == link["link_index"]:
            return peer.get("address")
    return None


def _root_qdisc(netns: str, ifname: str) -> Optional[Dict[str, Any]]:
    res = LocalRunner().run(["tc", "-n", netns, "-j", "qdisc", "show", "dev", ifname], check=False, timeout=30)
    if not res.ok:
        return None
    try:
        qdiscs = json.loads(res.stdout or "[]")
    except ValueError:
        return None
    for qdisc in qdiscs:
        if qdisc.get("root"):
            return qdisc
    return None


def _tbf_rate(qdisc: Optional[Dict[str, Any]]) -> Optional[float]:
    """Our tbf's rate in Mbit/s, None when the root qdisc is not ours."""
    if not qdisc or qdisc.get("kind") != "tbf" or qdisc.get("handle") != TBF_HANDLE:
        return None
    return round(float((qdisc.get("options") or {}).get("rate", 0)) * 8.0 / 1e6, 6)


def _set_rate(netns: str, ifname: str, rate_mbps: Optional[float], mtu: int) -> bool:
    qdisc = _root_qdisc(netns, ifname)
    have = _tbf_rate(qdisc)
    if rate_mbps is None:
        if have is None:
            return False
        LocalRunner().run(["tc", "-n", netns, "qdisc", "del", "dev", ifname, "root"], timeout=30)
        return True
    if have is not None and _close(have, rate_mbps):
        return False
    if have is None and qdisc and qdisc.get("kind") not in DEFAULT_QDISCS:
        raise WanError(f"{netns}/{ifname}: root qdisc {qdisc.get('kind')} {qdisc.get('handle')} was not made by npms-wan; "
                       "not replacing it")
    rate_bytes = rate_mbps * 1e6 / 8.0
    frame = mtu + ETH_HEADER
    burst = max(int(rate_bytes * BURST_S), 2 * frame)
    limit = max(int(rate_bytes * QUEUE_S), 4 * frame)
    # `replace` on our own tbf changes it in place: queued packets and the link stay.
    LocalRunner().run(["tc", "-n", netns, "qdisc", "replace", "dev", ifname, "root", "handle", TBF_HANDLE, "tbf",
                       "rate", f"{int(round(rate_mbps * 1e6))}bit", "burst", str(burst), "limit", str(limit)], timeout=30)
    return True


# ------------------------------------------------------------------ the emulator
class WanEmulator:
    """Impairments on veth egresses of one lab; files, socket and daemon under ``state_dir``."""

    def __init__(self, state_dir: str):
        self.state_dir = os.path.abspath(state_dir)

    # -- files -----------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.state_dir, name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with open(self._path(LOCK_FILE), "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> Dict[str, Dict[str, Any]]:
        try:
            with open(self._path(STATE_FILE), encoding="utf-8") as fh:
                return dict(json.load(fh).get("links") or {})
        except (OSError, ValueError, AttributeError):
            return {}

    def _save(self, links: Dict[str, Dict[str, Any]]) -> None:
        if not links:
            try:
                os.unlink(self._path(STATE_FILE))
            except FileNotFoundError:
                pass
            return
        tmp = self._path(STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "links": links}, fh, indent=1, sort_keys=True)
        os.replace(tmp, self._path(STATE_FILE))

    # -- daemon ----------------------------------------------------------------------
    def _request(self, req: Dict[str, Any], timeout: float = 5.0) -> Dict[str, Any]:
        try:
            reply = wand.request(self.state_dir, req, timeout=timeout)
        except (OSError, ValueError) as exc:
            raise WanError(f"{DAEMON_NAME} ({self.state_dir}): no answer: {exc}") from None
        if not reply.get("ok"):
            raise WanError(f"{DAEMON_NAME}: {req.get('op')} failed: {reply.get('error')}")
        return reply

    def _status(self) -> Optional[Dict[str, Any]]:
        if not os.path.exists(self._path(wand.SOCKET_NAME)):
            return None
        try:
            return self._request({"op": "status"}, timeout=2.0)
        except WanError:
            return None

    def _daemon_links(self, status: Optional[Dict[str, Any]]) -> Dict[Key, Dict[str, Any]]:
        return {(d["netns"], d["ifname"]): d for d in (status or {}).get("links", [])}

    def _pid(self) -> Optional[int]:
        """The daemon's pid, only if that process really is this directory's daemon."""
        pid = read_pid(self._path(wand.PID_NAME))
        if not alive(pid):
            return None
        args = cmdline(pid)
        return pid if any(a.endswith("wand.py") for a in args) and self.state_dir in args else None

    def _ensure_daemon(self, links: Dict[str, Dict[str, Any]]) -> bool:
        """Start the daemon if it does not answer; True if it had to (links re-pushed)."""
        if self._status() is not None:
            return False
        self._kill_daemon()
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        try:
            LocalRunner().run([sys.executable, WAND_PATH, "start", "--dir", self.state_dir], timeout=30)
        except CommandError as exc:
            raise WanError(f"{DAEMON_NAME} did not start: {exc}") from None
        for entry in links.values():
            if entry.get("queue") is not None and _netns_exists(entry["netns"]):
                link = _link(entry["netns"], entry["ifname"])
                if link is None:
                    continue
                try:
                    self._push(entry["netns"], entry["ifname"], entry["queue"], entry["delay_ms"], entry["jitter_ms"], link)
                except WanError:
                    pass  # check() names it; one broken link must not keep the others undelayed
        return True

    def _push(self, netns: str, ifname: str, queue: int, delay_ms: float, jitter_ms: float, link: Dict[str, Any]) -> Dict[str, Any]:
        return self._request({"op": "set", "netns": netns, "ifname": ifname, "queue": queue, "delay_ms": delay_ms,
                              "jitter_ms": jitter_ms, "ifindex": link.get("ifindex"), "peer_mac": _peer_mac(netns, link)})

    def _drain(self, netns: str, ifname: str, limit_s: float) -> None:
        """Wait until the daemon holds nothing for ``ifname`` (so removing its rule reorders nothing)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            link = self._daemon_links(self._status()).get((netns, ifname))
            if not link or not link.get("held"):
                return
            time.sleep(0.01)

    def _kill_daemon(self) -> None:
        pid = self._pid()
        if pid is not None:
            terminate([pid])

    def _stop_daemon(self) -> None:
        if self._status() is not None:
            try:
                self._request({"op": "shutdown"})
            except WanError:
                pass
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and self._pid() is not None:
                time.sleep(0.02)
        self._kill_daemon()
        for name in (wand.SOCKET_NAME, wand.PID_NAME):
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                pass

    # -- the contract ------------------------------------------------------------------
    def set(self, netns: str, ifname: str, imp: Impairment) -> bool:
        """Apply ``imp`` to the egress of ``ifname`` in ``netns``; True if something changed."""
        _check_names(netns, ifname)
        imp = validated(imp)
        if not _netns_exists(netns):
            raise ImpairmentError(f"netns: no such network namespace: {netns!r}")
        link = _link(netns, ifname)
        if link is None:
            raise ImpairmentError(f"ifname: no interface {ifname!r} in namespace {netns!r}")
        if _is_zero(imp):
            return self.clear(netns, ifname)
        key = f"{netns}/{ifname}"
        with self._locked():
            links = self._load()
            chains = [_Chain(netns, fam).read() for fam in FAMILIES]
            before = self._read_one(netns, ifname, self._daemon_links(self._status()), chains[0])
            delayed = imp.delay_ms > 0 or imp.jitter_ms > 0
            queue = None
            restarted = False
            if delayed:
                queue = self._queue_for(netns, ifname, chains, links)
            # Recorded before anything is made, so that a crash half-way leaves a trace
            # that shutdown() follows.
            links[key] = {"netns": netns, "ifname": ifname, "delay_ms": imp.delay_ms, "jitter_ms": imp.jitter_ms,
                          "loss_pct": imp.loss_pct, "rate_mbps": imp.rate_mbps, "queue": queue}
            self._save(links)
            if delayed:
                restarted = self._ensure_daemon(links)
                # The queue is served before its rule exists: no packet waits unserved.
                self._push(netns, ifname, queue, imp.delay_ms, imp.jitter_ms, link)
            else:
                self._undelay(netns, ifname, before)
            for chain in chains:
                chain.write(ifname, _rule_lines(ifname, imp.loss_pct, queue))
            if not delayed:
                self._forget(netns, ifname)
                self._stop_daemon_if_idle(links)
            _set_rate(netns, ifname, imp.rate_mbps, int(link.get("mtu") or 1500))
            after = self._read_one(netns, ifname, self._daemon_links(self._status()))
            return restarted or not same(before, after)

    def clear(self, netns: str, ifname: str) -> bool:
        """Remove what set() made on ``ifname`` in ``netns``; True if something was there."""
        _check_names(netns, ifname)
        with self._locked():
            links = self._load()
            entry = links.pop(f"{netns}/{ifname}", None)
            changed = entry is not None
            if _netns_exists(netns):
                status = self._status()
                before = self._read_one(netns, ifname, self._daemon_links(status))
                changed = changed or before is not None
                self._undelay(netns, ifname, before)
                for fam in FAMILIES:
                    _Chain(netns, fam).read().write(ifname, [])
                self._forget(netns, ifname)
                if _link(netns, ifname) is not None:
                    _set_rate(netns, ifname, None, 0)
            self._save(links)
            self._stop_daemon_if_idle(links)
            return changed

    def get(self) -> Dict[Key, Impairment]:
        """What is in force now, read back from the kernel and the daemon."""
        links = self._load()
        status = self._status()
        daemon_links = self._daemon_links(status)
        keys = {(e["netns"], e["ifname"]) for e in links.values()} | set(daemon_links)
        chains: Dict[str, _Chain] = {}
        present: Dict[str, set] = {}
        for netns in sorted({ns for ns, _if in keys}):
            if _netns_exists(netns):
                chains[netns] = _Chain(netns, FAMILIES[0]).read()
                keys |= {(netns, ifname) for ifname in chains[netns].rules}
                present[netns] = {d.get("ifname") for d in _ip_json(["-n", netns, "link", "show"]) or []}
        result: Dict[Key, Impairment] = {}
        for netns, ifname in sorted(keys):
            if ifname not in present.get(netns, ()):
                continue  # a rule naming a gone interface impairs nothing
            imp = self._read_one(netns, ifname, daemon_links, chains[netns])
            if imp is not None:
                result[(netns, ifname)] = imp
        return result

    def check(self) -> List[str]:
        """Problems with what set() was asked: [] when everything is in force."""
        problems: List[str] = []
        links = self._load()
        status = self._status()
        daemon_links = self._daemon_links(status)
        if status is None and any(e.get("queue") is not None for e in links.values()):
            pid = self._pid()
            problems.append(f"{DAEMON_NAME}: daemon not running ({self.state_dir})" if pid is None
                            else f"{DAEMON_NAME}: daemon (pid {pid}) does not answer on {self._path(wand.SOCKET_NAME)}")
        chains: Dict[Tuple[str, str], _Chain] = {}
        for entry in links.values():
            netns, ifname = entry["netns"], entry["ifname"]
            label = f"{netns}/{ifname}"
            if not _netns_exists(netns):
                problems.append(f"{label}: namespace missing")
                continue
            link = _link(netns, ifname)
            if link is None:
                problems.append(f"{label}: interface missing")
                continue
            for fam in FAMILIES:
                if (netns, fam[0]) not in chains:
                    chains[(netns, fam[0])] = _Chain(netns, fam).read()
                problems += _check_rules(label, chains[(netns, fam[0])], ifname, entry)
            queue = entry.get("queue")
            have = daemon_links.get((netns, ifname))
            if queue is not None and status is not None:
                if have is None:
                    problems.append(f"{label}: delay missing in {DAEMON_NAME}")
                else:
                    if have.get("queue") != queue:
                        problems.append(f"{label}: {DAEMON_NAME} serves queue {have.get('queue')}, the rule uses {queue}")
                    if not (_close(have.get("delay_ms"), entry["delay_ms"]) and _close(have.get("jitter_ms"), entry["jitter_ms"])):
                        problems.append(f"{label}: delay {have.get('delay_ms')} ms / jitter {have.get('jitter_ms')} ms "
                                        f"in force, expected {entry['delay_ms']} / {entry['jitter_ms']}")
                    if have.get("ifindex") != link.get("ifindex"):
                        problems.append(f"{label}: {DAEMON_NAME} sends on ifindex {have.get('ifindex')}, "
                                        f"the interface is now {link.get('ifindex')}")
                    peer = _peer_mac(netns, link) or ""
                    if have.get("peer_mac") != peer:
                        problems.append(f"{label}: {DAEMON_NAME} sends to MAC {have.get('peer_mac') or 'none'}, "
                                        f"the veth peer is {peer or 'not found'}")
            rate = _tbf_rate(_root_qdisc(netns, ifname))
            if not _close(rate, entry.get("rate_mbps")):
                want = entry.get("rate_mbps")
                problems.append(f"{label}: rate limit missing (expected {want} Mbit/s)" if rate is None
                                else f"{label}: rate {rate} Mbit/s in force, expected {want if want is not None else 'none'}")
        known = {(e["netns"], e["ifname"]) for e in links.values() if e.get("queue") is not None}
        for netns, ifname in sorted(set(daemon_links) - known):
            problems.append(f"{netns}/{ifname}: {DAEMON_NAME} delays it, but nothing asked for that")
        return problems

    def daemons(self) -> List[Tuple[str, Optional[int]]]:
        """The daemon with its pid (None: not running) when a delay needs it, else []."""
        links = self._load()
        pid = self._pid() if self._status() is not None else None
        if pid is None and not any(e.get("queue") is not None for e in links.values()):
            return []
        return [(DAEMON_NAME, pid)]

    def stats(self) -> Optional[Dict[str, Any]]:
        """The daemon's figures (pid, RSS in KiB, per-link packet counters); None if not running."""
        status = self._status()
        if status is not None:
            status["rss_kib"] = rss_kib([status["pid"]]).get(status["pid"])
        return status

    def shutdown(self) -> None:
        """Stop the daemon and remove every rule, qdisc and file made under this state_dir."""
        if not os.path.isdir(self.state_dir):
            return  # never used (its socket, pid file and state would be in there)
        with self._locked():
            links = self._load()
            status = self._status()
            self._stop_daemon()
            places = {(e["netns"], e["ifname"]) for e in links.values()} | set(self._daemon_links(status))
            for netns in sorted({ns for ns, _if in places}):
                if not _netns_exists(netns):
                    continue
                for fam in FAMILIES:
                    try:
                        _Chain(netns, fam).read().remove_all()
                    except (WanError, CommandError):
                        pass  # namespace going away meanwhile
            for netns, ifname in sorted(places):
                if _netns_exists(netns) and _link(netns, ifname) is not None:
                    try:
                        _set_rate(netns, ifname, None, 0)
                    except CommandError:
                        pass
            for name in OWN_FILES:
                try:
                    os.unlink(self._path(name))
                except FileNotFoundError:
                    pass

    # -- helpers ---------------------------------------------------------------------
    def _queue_for(self, netns: str, ifname: str, chains: List[_Chain], links: Dict[str, Dict[str, Any]]) -> int:
        for chain in chains:
            rules = chain.rules.get(ifname)
            if rules is not None and rules.queue is not None:
                return rules.queue
        entry = links.get(f"{netns}/{ifname}") or {}
        used = set()
        for chain in chains:
            used.update(chain.queues(but=ifname))
        used.update(e["queue"] for e in links.values()
                    if e["netns"] == netns and e["ifname"] != ifname and e.get("queue") is not None)
        if entry.get("queue") is not None and entry["queue"] not in used:
            return entry["queue"]
        queue = 1
        while queue in used:
            queue += 1
        if queue >= LOSS_QUEUE:
            raise WanError(f"{netns}: no free NFQUEUE number left")
        return queue

    def _undelay(self, netns: str, ifname: str, before: Optional[Impairment]) -> None:
        """First step of taking a delay away: zero it and let the held packets go."""
        if before is None or (before.delay_ms == 0 and before.jitter_ms == 0):
            return
        if self._status() is None:
            return
        try:
            link = _link(netns, ifname) or {}
            have = self._daemon_links(self._status()).get((netns, ifname))
            if have is not None:
                self._push(netns, ifname, have["queue"], 0.0, 0.0, link)
                self._drain(netns, ifname, min(5.0, (before.delay_ms + 4 * before.jitter_ms) / 1000.0 + 0.5))
        except WanError:
            pass

    def _stop_daemon_if_idle(self, links: Dict[str, Dict[str, Any]]) -> None:
        # No delayed interface left: no process either.
        if not any(e.get("queue") is not None for e in links.values()):
            self._stop_daemon()

    def _forget(self, netns: str, ifname: str) -> None:
        if self._status() is not None:
            self._request({"op": "clear", "netns": netns, "ifname": ifname})

    def _read_one(self, netns: str, ifname: str, daemon_links: Dict[Key, Dict[str, Any]],
                  chain: Optional[_Chain] = None) -> Optional[Impairment]:
        """What is in force on one interface (None: nothing)."""
        if chain is None:
            chain = _Chain(netns, FAMILIES[0]).read()
        rules = chain.rules.get(ifname) or _Rules()
        delay = jitter = 0.0
        have = daemon_links.get((netns, ifname))
        # A delay is in force only where the rule queues to the queue the daemon serves.
        if have is not None and rules.queue is not None and have.get("queue") == rules.queue:
            delay, jitter = float(have["delay_ms"]), float(have["jitter_ms"])
        imp = Impairment(delay_ms=delay, jitter_ms=jitter, loss_pct=rules.loss_pct or 0.0,
                         rate_mbps=_tbf_rate(_root_qdisc(netns, ifname)))
        return None if _is_zero(imp) else imp


def _check_rules(label: str, chain: _Chain, ifname: str, entry: Dict[str, Any]) -> List[str]:
    problems = []
    fam = chain.family
    rules = chain.rules.get(ifname) or _Rules()
    wants_rules = entry["loss_pct"] > 0 or entry.get("queue") is not None
    if wants_rules and not chain.jump:
        problems.append(f"{label}: jump to {CHAIN} missing in {TABLE} {HOOK} ({fam})")
    if entry["loss_pct"] > 0 and rules.loss_pct is None:
        problems.append(f"{label}: loss rule missing ({fam})")
    elif not _close(rules.loss_pct or 0.0, entry["loss_pct"]):
        problems.append(f"{label}: loss {rules.loss_pct or 0} % in force, expected {entry['loss_pct']} % ({fam})")
    if entry.get("queue") is not None and rules.queue is None:
        problems.append(f"{label}: delay rule missing ({fam})")
    elif rules.queue != entry.get("queue"):
        problems.append(f"{label}: delay rule uses queue {rules.queue}, expected {entry.get('queue')} ({fam})")
    return problems


# ------------------------------------------------------------------ functional form
# What npms_lab.core calls: one call per operation on the WanEmulator of ``directory``.
def apply(directory: str, netns: str, ifname: str, delay_ms: float = 0.0, jitter_ms: float = 0.0,
          loss_pct: float = 0.0, rate_mbps: Optional[float] = None) -> bool:
    imp = Impairment(delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct, rate_mbps=rate_mbps)
    return WanEmulator(directory).set(netns, ifname, imp)


def show(directory: str) -> Dict[Key, Dict[str, Any]]:
    return {key: imp.to_data() for key, imp in WanEmulator(directory).get().items()}


def daemons(directory: str) -> List[Tuple[str, Optional[int]]]:
    return WanEmulator(directory).daemons()


def shutdown(directory: str) -> None:
    WanEmulator(directory).shutdown()
