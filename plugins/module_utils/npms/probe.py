# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Active probes and the responder they measure against (docs/probes.md).

Who probes whom (:func:`probe_targets`): a core probes every other core at its underlay
address; an edge probes, per tenant it serves, the far end of each of its WireGuard
tunnels (its POPs over access tunnels, the tenant's other edges over direct tunnels):
through the tunnel, at the far end's link-local (``fe80::2%wg1-7-2``), while the tunnel
is up, else at the far end's WAN address over the underlay (:func:`choose_path`).

What one probe run yields is a list of *samples* (dicts in the store's wire format, see
``SAMPLE_FIELDS``): ICMP (``ping``), UDP with sequence numbers and timestamps (RTT,
RFC 3550 jitter, loss, reordering), TCP connect time, HTTP time to first byte, and, on a
separate, rarer schedule, iperf3 bandwidth bounded in time.

Every prober runs ON the probing node.  The Ansible module already runs there and calls
:func:`run_probes` directly; the Nornir task, which runs on the controller, runs
``python -m npms.probe run`` on the node through its runner (``ip netns exec`` in the
lab) and reads the samples back as JSON: one implementation, two front ends.

The file is also a standalone script (only the standard library at module level): the
``probe_responder`` module copies it to the node (``/run/npms/npms_probe.py``) and starts
the responder from that copy, because the module's own payload is deleted when the
module exits.  Imports of the rest of the core library are therefore made inside the
functions that need them (inventory, runner).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import math
import os
import re
import selectors
import shlex
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

DEFAULT_UDP_PORT = 9876
DEFAULT_TCP_PORT = 9877
DEFAULT_IPERF_PORT = 5201
MAX_IPERF_S = 10
KINDS = ("icmp", "udp", "tcp", "http", "iperf")
PROBE_KINDS = ("icmp", "udp", "tcp", "http")  # the frequent ones; iperf has its own schedule
DEFAULT_KINDS = ("icmp", "udp")
TARGET_KINDS = ("icmp", "udp", "tcp", "http")  # what probe_targets asks for
RUN_DIR = "/run/npms"
DEFAULT_PIDFILE = RUN_DIR + "/probe-responder.pid"
SCRIPT_NAME = "npms_probe.py"
HTTP_PATH = "/probe"
#: a tunnel whose latest handshake is older than this carries nothing: WireGuard's
#: REJECT_AFTER_TIME (a live tunnel re-handshakes every 2 minutes while it has traffic,
#: and edges send a keepalive every 25 s)
HANDSHAKE_MAX_AGE_S = 180
VIA_TUNNEL, VIA_UNDERLAY = "tunnel", "underlay"

#: the store validates exactly these fields (and nothing else)
SAMPLE_FIELDS = ("src", "dst", "kind", "ts", "tenant", "sent", "received", "rtt_ms", "rtt_min_ms", "rtt_max_ms",
                 "jitter_ms", "reordered", "connect_ms", "ttfb_ms", "bandwidth_mbps", "duration_s")

# UDP probe packet: magic, version, type (1 request, 2 reply), flags, sequence number,
# session id, the prober's send time (its monotonic clock, echoed back untouched) and
# the responder's receive and send times (its wall clock).  Padded to the probe size.
_MAGIC = b"NPMS"
_VERSION = 1
_REQUEST, _REPLY = 1, 2
_HDR = struct.Struct("!4sBBHIIddd")
_MIN_SIZE = _HDR.size


class ProbeError(Exception):
    """A probe could not run at all (bad target, missing tool): not a measurement."""


# =================================================================== UDP packets
def pack_request(seq: int, session: int, t_send: float, size: int = 64) -> bytes:
    data = _HDR.pack(_MAGIC, _VERSION, _REQUEST, 0, seq & 0xFFFFFFFF, session & 0xFFFFFFFF, t_send, 0.0, 0.0)
    return data + b"\0" * max(0, size - len(data))


def make_reply(data: bytes, t_recv: float, t_send: float) -> Optional[bytes]:
    """The responder's answer to ``data``: the same packet, typed as a reply, with its
    receive and send times stamped in; None for anything that is not a probe request."""
    if len(data) < _MIN_SIZE:
        return None
    magic, version, kind, flags, seq, session, t_prober, _r, _s = _HDR.unpack_from(data)
    if magic != _MAGIC or version != _VERSION or kind != _REQUEST:
        return None
    return _HDR.pack(magic, version, _REPLY, flags, seq, session, t_prober, t_recv, t_send) + data[_MIN_SIZE:]


def parse_reply(data: bytes, session: int) -> Optional[Tuple[int, float, float, float]]:
    """(seq, prober send time, responder receive time, responder send time) of a reply
    to our ``session``; None for anything else (other sessions, stray packets)."""
    if len(data) < _MIN_SIZE:
        return None
    magic, version, kind, _flags, seq, sess, t_send, t_recv, t_reply = _HDR.unpack_from(data)
    if magic != _MAGIC or version != _VERSION or kind != _REPLY or sess != session & 0xFFFFFFFF:
        return None
    return seq, t_send, t_recv, t_reply


# =================================================================== the responder
class Responder:
    """UDP echo with timestamps (``udp_port``), and a TCP listener on ``tcp_port`` that is
    both the connect-time target and a tiny HTTP server (``GET /probe`` -> ``200 ok``).

    One thread, one selector; stdlib only.  ``bind`` ``"::"`` listens dual stack (IPv4
    as mapped addresses) and falls back to ``0.0.0.0`` where IPv6 is off.
    """

    IDLE_S = 5.0  # a TCP connection that sends nothing is closed after this
    MAX_CONNS = 256

    def __init__(self, bind: str = "::", udp_port: int = DEFAULT_UDP_PORT, tcp_port: int = DEFAULT_TCP_PORT):
        self.bind_address = bind or "::"
        self.udp_port = int(udp_port)
        self.tcp_port = int(tcp_port)
        self.udp: Optional[socket.socket] = None
        self.tcp: Optional[socket.socket] = None
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._conns: Dict[socket.socket, Tuple[float, bytearray]] = {}
        self.replies = 0

    # -- sockets --------------------------------------------------------------------
    def _socket(self, kind: int) -> socket.socket:
        addr = self.bind_address
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            sock = socket.socket(family, kind)
        except OSError:
            if addr != "::":
                raise
            family, addr = socket.AF_INET, "0.0.0.0"
            sock = socket.socket(family, kind)
        if family == socket.AF_INET6 and addr == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = self.udp_port if kind == socket.SOCK_DGRAM else self.tcp_port
        try:
            sock.bind((addr, port))
        except OSError:
            sock.close()
            raise
        return sock

    def bind(self) -> "Responder":
        """Open the sockets (a port of 0 picks a free one; the real ports are kept)."""
        if self.udp is not None:
            return self
        self.udp = self._socket(socket.SOCK_DGRAM)
        try:
            self.tcp = self._socket(socket.SOCK_STREAM)
        except OSError:
            self.udp.close()
            self.udp = None
            raise
        self.tcp.listen(64)
        self.udp.setblocking(False)
        self.tcp.setblocking(False)
        self.udp_port = self.udp.getsockname()[1]
        self.tcp_port = self.tcp.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.udp, selectors.EVENT_READ, "udp")
        self._sel.register(self.tcp, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        return self

    # -- serving --------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (from another thread or a signal handler)."""
        self.bind()
        if self._sel is None:
            raise ProbeError("the responder could not bind its sockets")
        try:
            while not self._stop.is_set():
                for key, _mask in self._sel.select(timeout=1.0):
                    what = key.data
                    if what == "udp":
                        self._on_udp()
                    elif what == "listen":
                        self._on_accept()
                    elif what == "wake":
                        try:
                            self._wake_r.recv(64)  # type: ignore[union-attr]
                        except OSError:
                            pass
                    else:
                        self._on_conn(key.fileobj)  # type: ignore[arg-type]
                self._reap_idle()
        finally:
            self._close()

    def _on_udp(self) -> None:
        for _burst in range(64):  # drain a burst, then let TCP have a turn
            try:
                data, peer = self.udp.recvfrom(65535)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            t_recv = time.time()
            reply = make_reply(data, t_recv, time.time())
            if reply is None:
                continue
            try:
                self.udp.sendto(reply, peer)  # type: ignore[union-attr]
                self.replies += 1
            except OSError:
                pass

    def _on_accept(self) -> None:
        try:
            conn, _peer = self.tcp.accept()  # type: ignore[union-attr]
        except OSError:
            return
        if len(self._conns) >= self.MAX_CONNS:
            conn.close()
            return
        conn.setblocking(False)
        self._conns[conn] = (time.monotonic(), bytearray())
        self._sel.register(conn, selectors.EVENT_READ, "conn")  # type: ignore[union-attr]

    def _on_conn(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        _since, buf = self._conns[conn]
        buf += data
        if b"\r\n\r\n" in buf or b"\n\n" in buf or len(buf) > 8192:
            line = bytes(buf).split(b"\n", 1)[0].strip()
            parts = line.split()
            if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD") and parts[1].split(b"?")[0] in (HTTP_PATH.encode(), b"/"):
                body = b"ok\n"
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                out = head + (body if parts[0] == b"GET" else b"")
            else:
                out = b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            try:
                conn.setblocking(True)
                conn.settimeout(1.0)
                conn.sendall(out)
            except OSError:
                pass
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._conns.pop(conn, None)
        try:
            self._sel.unregister(conn)  # type: ignore[union-attr]
        except (KeyError, ValueError):
            pass
        conn.close()

    def _reap_idle(self) -> None:
        now = time.monotonic()
        for conn, (since, _buf) in list(self._conns.items()):
            if now - since > self.IDLE_S:
                self._drop(conn)

    def _close(self) -> None:
        for conn in list(self._conns):
            self._drop(conn)
        for sock in (self.udp, self.tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._sel is not None:
            self._sel.close()
        self.udp = self.tcp = self._wake_r = self._wake_w = None
        self._sel = None

    # -- thread helpers ---------------------------------------------------------------
    def start(self) -> "Responder":
        """Bind now (errors surface here) and serve in a daemon thread."""
        self.bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve_forever, name="npms-probe-responder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (safe from a signal handler and from other threads)."""
        self._stop.set()
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Responder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# =================================================================== statistics
def rfc3550_jitter(transits: Sequence[float]) -> float:
    """Interarrival jitter (RFC 3550 6.4.1) of transit times given in arrival order:
    ``D = transit[i] - transit[i-1]``, ``J += (|D| - J) / 16``, starting at 0.

    Only differences of transit times enter, so a constant clock offset between sender
    and receiver cancels: the UDP prober feeds it ``responder receive time - prober send
    time`` and gets the forward direction's jitter without synchronised clocks.
    """
    jitter = 0.0
    for prev, cur in zip(transits, transits[1:]):
        jitter += (abs(cur - prev) - jitter) / 16.0
    return jitter


def count_reordered(seqs: Iterable[int]) -> int:
    """Packets that arrived after a packet with a higher sequence number (RFC 4737's
    "reordered" singleton: seq below the highest seen so far); duplicates are ignored."""
    highest = -1
    seen = set()
    reordered = 0
    for seq in seqs:
        if seq in seen:
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        else:
            highest = seq
    return reordered


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _sample(src: str, dst: str, kind: str, tenant: Optional[str], **fields: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"src": src, "dst": dst, "kind": kind, "ts": round(time.time(), 3), "tenant": tenant}
    out.update(fields)
    return out


def summarize_udp(sent: int, replies: Sequence[Tuple[int, float, float, float, float]]) -> Dict[str, Any]:
    """The UDP sample's measurements from the replies *in the order they arrived*, each
    ``(seq, prober send, responder receive, responder send, prober receive)``.

    RTT excludes the responder's own turnaround (its send minus receive time); jitter is
    RFC 3550 over the forward transit times in the order the responder received them;
    ``reordered`` counts replies that arrived after one with a higher sequence number.
    """
    unique: Dict[int, Tuple[int, float, float, float, float]] = {}
    for r in replies:
        unique.setdefault(r[0], r)
    out: Dict[str, Any] = {"sent": int(sent), "received": len(unique)}
    if not unique:
        out["rtt_ms"] = None
        out["reordered"] = 0
        return out
    rtts = [max(0.0, (t_back - t_send) - max(0.0, t_reply - t_recv)) for _seq, t_send, t_recv, t_reply, t_back in unique.values()]
    forward = sorted(unique.values(), key=lambda r: r[2])
    out["rtt_ms"] = _ms(sum(rtts) / len(rtts))
    out["rtt_min_ms"] = _ms(min(rtts))
    out["rtt_max_ms"] = _ms(max(rtts))
    out["jitter_ms"] = _ms(rfc3550_jitter([t_recv - t_send for _s, t_send, t_recv, _r, _b in forward]))
    out["reordered"] = count_reordered(r[0] for r in replies)
    return out


# =================================================================== probers
def _sockaddr(address: str, port: int, kind: int = socket.SOCK_DGRAM) -> Tuple[int, Tuple[Any, ...]]:
    """``(family, sockaddr)`` of ``address`` (IPv4, IPv6, a scoped IPv6 link-local such as
    ``fe80::2%wg1-7-2``, or a name) and ``port``.

    Through getaddrinfo because Python's ``(host, port)`` tuple drops an IPv6 zone: the
    scope id becomes 0, so a TCP connect to a link-local fails (EINVAL) and a datagram
    leaves by whichever interface's ``fe80::/64`` route comes first.  getaddrinfo turns
    ``%wg1-7-2`` into the interface's index in the 4-tuple."""
    try:
        infos = socket.getaddrinfo(address, int(port), type=kind)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProbeError(f"{address}: cannot resolve ({exc})") from None
    if not infos:
        raise ProbeError(f"{address}: cannot resolve")
    return infos[0][0], infos[0][4]


def _bind_source(sock: socket.socket, source: Optional[str], kind: int) -> None:
    if source:
        sock.bind(_sockaddr(source, 0, kind)[1])


def udp_probe(target: str, port: int = DEFAULT_UDP_PORT, count: int = 10, interval_s: float = 0.05,
              timeout_s: float = 1.0, source: Optional[str] = None, size: int = 64) -> Dict[str, Any]:
    """Send ``count`` numbered, timestamped packets ``interval_s`` apart to the responder
    at ``target``:``port`` and collect the replies until ``timeout_s`` after the last
    send (or all are back).  Returns the measurement fields (see :func:`summarize_udp`)
    plus ``duration_s``.

    The socket is not connected: a responder listening on ``::`` may answer from
    another of its addresses, so replies are matched by session id instead."""
    if count < 1:
        raise ProbeError("udp probe: count must be at least 1")
    size = max(_MIN_SIZE, int(size))
    family, sockaddr = _sockaddr(target, port, socket.SOCK_DGRAM)
    session = uuid.uuid4().int & 0xFFFFFFFF
    replies: List[Tuple[int, float, float, float, float]] = []
    start = time.perf_counter()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        _bind_source(sock, source, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        try:
            sent = 0
            next_send = time.perf_counter()
            deadline = None
            got = set()
            while True:
                now = time.perf_counter()
                if sent < count and now >= next_send:
                    try:
                        sock.sendto(pack_request(sent, session, now, size), sockaddr)
                    except OSError:
                        pass  # unreachable network and the like: counts as lost
                    sent += 1
                    next_send = now + interval_s
                    if sent == count:
                        deadline = now + timeout_s
                if deadline is not None and (now >= deadline or len(got) >= count):
                    break
                wait = (next_send if sent < count else deadline) - time.perf_counter()  # type: ignore[operator]
                for _key, _mask in sel.select(timeout=max(0.0, wait)):
                    while True:
                        try:
                            data, _peer = sock.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:  # ICMP port unreachable reported on the socket
                            break
                        t_back = time.perf_counter()
                        parsed = parse_reply(data, session)
                        if parsed is not None and parsed[0] < count:
                            replies.append(parsed + (t_back,))
                            got.add(parsed[0])
        finally:
            sel.close()
    out = summarize_udp(count, replies)
    out["duration_s"] = round(time.perf_counter() - start, 3)
    return out


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/(?:mdev|stddev))? = ([\d.]+)/([\d.]+)/([\d.]+)")
_PING_LINE = re.compile(r"icmp_seq=(\d+).*?time[=<]([\d.]+) ?ms")


def parse_ping(output: str) -> Dict[str, Any]:
    """``sent``, ``received`` and RTT fields from ping's output (iputils or BusyBox,
    summary with ``-q`` or per-packet lines).  No summary line: ProbeError."""
    summary = _PING_SUMMARY.search(output)
    if not summary:
        raise ProbeError("ping: no statistics in its output: " + (output.strip().splitlines() or ["(empty)"])[-1])
    out: Dict[str, Any] = {"sent": int(summary.group(1)), "received": int(summary.group(2))}
    rtt = _PING_RTT.search(output)
    times = [float(m.group(2)) for m in _PING_LINE.finditer(output)]
    if out["received"] == 0:
        out["rtt_ms"] = None
    elif times:
        out.update(rtt_ms=round(sum(times) / len(times), 3), rtt_min_ms=min(times), rtt_max_ms=max(times))
    elif rtt:
        out.update(rtt_ms=float(rtt.group(2)), rtt_min_ms=float(rtt.group(1)), rtt_max_ms=float(rtt.group(3)))
    else:
        out["rtt_ms"] = None
    return out


def ping_deadline(count: int, interval_s: float, timeout_s: float) -> int:
    """Seconds a ping run takes at most: count x interval + the wait for the last reply."""
    return max(1, math.ceil(count * interval_s + timeout_s))


def ping_argv(target: str, count: int = 10, interval_s: float = 0.2, timeout_s: float = 1.0,
              source: Optional[str] = None) -> List[str]:
    """``ping -n -q``: exactly ``count`` requests, then at most ``-W`` for the replies.

    No ``-w``: with a deadline, iputils keeps sending past ``count`` while replies are
    missing and counts the requests still in flight at the deadline as lost, which read
    loss about two points high on a lossy link.  The caller bounds the run instead
    (:func:`ping_deadline`)."""
    argv = ["ping", "-n", "-q", "-c", str(int(count)), "-i", "%g" % interval_s, "-W", "%g" % max(1, math.ceil(timeout_s))]
    if source:
        argv += ["-I", source]
    return argv + [target]


def icmp_probe(target: str, count: int = 10, interval_s: float = 0.2, timeout_s: float = 1.0,
               runner: Any = None, source: Optional[str] = None) -> Dict[str, Any]:
    """Ping ``target`` with the node's ``ping`` through ``runner`` (default: this machine).

    Only root may ping faster than every 200 ms (iputils), so the interval is raised to
    0.2 s for others."""
    if runner is None:
        runner = _local_runner()
    if os.geteuid() != 0:
        interval_s = max(interval_s, 0.2)
    argv = ping_argv(target, count, interval_s, timeout_s, source)
    deadline = ping_deadline(count, interval_s, timeout_s)
    start = time.perf_counter()
    res = runner.run(argv, check=False, timeout=deadline + 5)
    # 0: replies, 1: none came back (still a measurement), 2: ping could not run
    if res.rc not in (0, 1):
        raise ProbeError(f"ping {target}: exit {res.rc}: {(res.stderr or res.stdout).strip()}")
    out = parse_ping(res.stdout)
    out["duration_s"] = round(time.perf_counter() - start, 3)
    return out


def tcp_probe(target: str, port: int = DEFAULT_TCP_PORT, timeout_s: float = 1.0,
              source: Optional[str] = None) -> Dict[str, Any]:
    """Time of one TCP connect (SYN to SYN-ACK, as the kernel sees it)."""
    family, sockaddr = _sockaddr(target, port, socket.SOCK_STREAM)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        _bind_source(sock, source, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        start = time.perf_counter()
        try:
            sock.connect(sockaddr)
        except OSError:
            return {"sent": 1, "received": 0, "duration_s": round(time.perf_counter() - start, 3)}
        took = time.perf_counter() - start
    return {"sent": 1, "received": 1, "connect_ms": _ms(took), "duration_s": round(took, 3)}


def http_url(address: str, port: int, path: str = HTTP_PATH) -> str:
    """``http://`` URL of ``address``:``port``; an IPv6 zone is written ``%25`` (RFC 6874):
    ``http://[fe80::2%25wg1-7-2]:9877/probe``."""
    host = address.replace("%", "%25")
    return f"http://[{host}]:{int(port)}{path}" if ":" in address else f"http://{host}:{int(port)}{path}"


def parse_http_url(url: str) -> Tuple[str, int, str, str]:
    """``(host, port, path, Host header)`` of a plain ``http://`` URL.  A zone in an IPv6
    literal (``[fe80::2%25wg0]``, RFC 6874; ``[fe80::2%wg0]`` is taken too) stays on the
    host, which the connect needs, and is left out of the Host header, as RFC 6874 asks."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError(f"http probe: {url}: only http://host[:port]/path URLs")
    try:
        port = parts.port or 80
    except ValueError:
        raise ProbeError(f"http probe: {url}: bad port") from None
    host = parts.hostname
    zone = ""
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("[") and "]" in netloc:
        # from the netloc: .hostname lower-cases, and interface names are case-sensitive
        host, _pct, zone = netloc[1:netloc.index("]")].partition("%")
        zone = urllib.parse.unquote(zone[2:] if zone.startswith("25") else zone)  # %25: the escaped '%'
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"{host}%{zone}" if zone else host), port, path, header


def http_probe(url: str, timeout_s: float = 2.0, source: Optional[str] = None) -> Dict[str, Any]:
    """Time to first byte of ``GET url`` (plain HTTP), from the start of the connect to the
    first byte of the response, as curl's ``time_starttransfer``.  Success needs a 2xx.
    The socket is ours (not http.client's), so a link-local with its zone works."""
    host, port, path, host_header = parse_http_url(url)
    request = (f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: npms-probe\r\n"
               "Connection: close\r\n\r\n").encode()
    family, sockaddr = _sockaddr(host, port, socket.SOCK_STREAM)
    start = time.perf_counter()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        _bind_source(sock, source, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(sockaddr)
            sock.sendall(request)
            first = sock.recv(1)
            ttfb = time.perf_counter() - start
            if not first:
                raise OSError("connection closed before a response")
            rest = b""
            while b"\n" not in rest and len(rest) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            return {"sent": 1, "received": 0, "duration_s": round(time.perf_counter() - start, 3)}
    status = (first + rest).split(b"\n", 1)[0].split()
    ok = len(status) >= 2 and status[1][:1] == b"2"
    out: Dict[str, Any] = {"sent": 1, "received": 1 if ok else 0, "duration_s": round(time.perf_counter() - start, 3)}
    if ok:
        out["ttfb_ms"] = _ms(ttfb)
    return out


def iperf_argv(target: str, seconds: int = 5, port: int = DEFAULT_IPERF_PORT, source: Optional[str] = None) -> List[str]:
    argv = ["iperf3", "-J", "-c", target, "-p", str(int(port)), "-t", str(int(seconds))]
    if source:
        argv += ["-B", source]
    return argv


def parse_iperf(output: str) -> Dict[str, Any]:
    """Bandwidth (what the receiver got, Mbit/s) from ``iperf3 -J``; ProbeError with
    iperf3's own message when the run failed (busy server, refused, ...)."""
    try:
        data = json.loads(output)
    except ValueError:
        raise ProbeError("iperf3: output is not JSON: " + (output.strip().splitlines() or ["(empty)"])[-1]) from None
    if data.get("error"):
        raise ProbeError("iperf3: " + str(data["error"]))
    end = data.get("end") or {}
    summary = end.get("sum_received") or end.get("sum") or end.get("sum_sent")
    if not summary or "bits_per_second" not in summary:
        raise ProbeError("iperf3: no summary in its output")
    out = {"bandwidth_mbps": round(float(summary["bits_per_second"]) / 1e6, 3)}
    if summary.get("seconds") is not None:
        out["duration_s"] = round(float(summary["seconds"]), 3)
    return out


def iperf_probe(target: str, seconds: int = 5, runner: Any = None, port: int = DEFAULT_IPERF_PORT,
                source: Optional[str] = None, retries: int = 1) -> Dict[str, Any]:
    """One ``iperf3 -J -c`` run of at most ``MAX_IPERF_S`` seconds, killed if it has not
    ended 10 s after that; a busy server (one test at a time) is retried ``retries``
    times after a short pause.  The server is ``iperf3 -s -D``, started by the
    probe_responder resource with ``iperf=True`` (or by hand)."""
    if runner is None:
        runner = _local_runner()
    seconds = int(seconds)
    if not 1 <= seconds <= MAX_IPERF_S:
        raise ProbeError(f"iperf: seconds must be 1..{MAX_IPERF_S}, got {seconds}")
    argv = iperf_argv(target, seconds, port, source)
    for attempt in range(retries + 1):
        try:
            res = runner.run(argv, check=False, timeout=seconds + 10)
        except Exception as exc:  # CommandError: not installed, or killed at the bound
            raise ProbeError(f"iperf3 {target}: {exc}") from None
        try:
            out = parse_iperf(res.stdout)
        except ProbeError as exc:
            if "busy" in str(exc) and attempt < retries:
                time.sleep(1.0 + attempt)
                continue
            return {"sent": 1, "received": 0, "error": str(exc)}
        return dict(out, sent=1, received=1)
    return {"sent": 1, "received": 0, "error": "iperf3: server busy"}  # pragma: no cover


class _ScriptResult(NamedTuple):
    """:class:`npms.runner.Result`'s fields, for :class:`_ScriptRunner`."""

    argv: Tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class _ScriptRunner:
    """``npms.runner.LocalRunner`` for this file run as a script (the responder's copy on
    a node, ``python npms_probe.py run``): there is no package to import it from.  Same
    contract: a command that cannot start or times out raises, and so does a non-zero
    exit with ``check``."""

    where = "local"

    def run(self, argv: Sequence[str], stdin: Optional[str] = None, check: bool = True, timeout: float = 60.0,
            env: Optional[Mapping[str, str]] = None) -> _ScriptResult:
        import subprocess  # pylint: disable=import-outside-toplevel

        argv = tuple(str(a) for a in argv)
        what = f"{self.where}: {' '.join(argv)}"
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, **env) if env else None, check=False)
        except FileNotFoundError as exc:
            raise ProbeError(f"{what}: exit 127: command not found: {exc.filename}") from None
        except subprocess.TimeoutExpired:
            raise ProbeError(f"{what}: exit 124: timed out after {timeout:g} s") from None
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ProbeError(f"{what}: exit {proc.returncode}: {tail[-1] if tail else 'no output'}")
        return _ScriptResult(argv, proc.returncode, proc.stdout, proc.stderr)


def _local_runner() -> Any:
    """A runner for this machine: ``npms.runner.LocalRunner``, or :class:`_ScriptRunner`
    when this file runs as a script."""
    try:
        from .runner import LocalRunner  # pylint: disable=import-outside-toplevel
    except ImportError:  # no parent package: the standalone script
        return _ScriptRunner()
    return LocalRunner()


# =================================================================== who probes whom
def probe_targets(inv: Any, node: str, core_scope: str = "all", kinds: Sequence[str] = TARGET_KINDS) -> List[Dict[str, Any]]:
    """What ``node`` probes: ``[{"dst", "tenant", "address", "kinds"}]``, edge targets
    also ``"tunnel": {"interface", "address"}``.

    * core: every other core (``core_scope="adjacent"``: only those it has a core link
      to) at its ``npms_wan_address`` (else its loopback); tenant None, shared by all
      tenants.
    * edge: per tenant it serves, the far end of each of its WireGuard tunnels (its POPs
      over access tunnels; the tenant's other edges over direct tunnels), tenant set.
      ``tunnel`` names the edge's tunnel interface (``npms.overlay.tunnel_name``) and
      the far end's link-local on it (``npms.overlay.tunnel_link_local``): that is what
      the edge probes while the tunnel is up, so the measurement includes WireGuard and
      sees a tunnel that is down while the underlay is up.  ``address`` is the far end's
      WAN address, the tunnel's endpoint: the underlay path the tunnel's packets take,
      probed while the tunnel is not up (the first loop, before the overlay exists; a
      failed handshake), see :func:`choose_path`.  A tunnel with a VPP end has no
      link-local (and no ``tunnel``).  Each tenant's tunnel is a target of its own, so
      samples stay per tenant.
    """
    from .overlay import tunnel_link_local, tunnel_name, tunnels  # pylint: disable=import-outside-toplevel

    if node not in inv.nodes:
        raise ProbeError(f"node {node!r} is not in the inventory")
    if core_scope not in ("all", "adjacent"):
        raise ProbeError(f"core_scope: all or adjacent, got {core_scope!r}")
    me = inv.nodes[node]
    out: List[Dict[str, Any]] = []

    def address(name: str) -> str:
        n = inv.nodes[name]
        addr = n.wan_address or n.loopback
        if not addr:
            raise ProbeError(f"node {name}: no npms_wan_address or npms_loopback to probe")
        return str(addr).split("/", maxsplit=1)[0]

    if me.role == "core":
        neighbours = {lk.b if lk.a == node else lk.a for lk in inv.links if lk.kind == "core" and node in lk.ends}
        for other in inv.nodes_by_role("core"):
            if other.name == node or (core_scope == "adjacent" and other.name not in neighbours):
                continue
            out.append({"dst": other.name, "tenant": None, "address": address(other.name), "kinds": list(kinds)})
    elif me.role == "edge":
        for tenant, peer, link in tunnels(inv, node):
            target: Dict[str, Any] = {"dst": peer, "tenant": tenant, "address": address(peer), "kinds": list(kinds)}
            far, near = tunnel_link_local(inv, link, peer), tunnel_link_local(inv, link, node)
            if far and near:
                target["tunnel"] = {"interface": tunnel_name(inv, tenant, node, peer), "address": far}
            out.append(target)
        out.sort(key=lambda t: (t["tenant"], inv.nodes[t["dst"]].role != "core", t["dst"]))
    return out


# =================================================================== which path
def parse_latest_handshakes(text: str) -> Optional[int]:
    """The youngest handshake (epoch seconds) in ``wg show <if> latest-handshakes``
    output (``<peer public key>\t<epoch>`` per peer, 0 for never); None when no peer has
    had one."""
    latest = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            latest = max(latest, int(parts[1]))
    return latest or None


def _wg_latest_handshakes(interface: str, runner: Any = None) -> Tuple[bool, str]:
    """``(ok, output or error)`` of ``wg show <interface> latest-handshakes``, through
    ``runner`` (default: this machine, :func:`_local_runner`).

    Only this one interface: ``wg show`` / ``wg show all`` connects to every
    wireguard-go socket of the machine (the directory is shared by all namespaces) and
    unlinks one that refuses, which a starting daemon's does for an instant."""
    argv = ["wg", "show", interface, "latest-handshakes"]
    if runner is None:
        runner = _local_runner()
    try:
        res = runner.run(argv, check=False, timeout=10)
    except Exception as exc:  # CommandError / ProbeError: wg missing, timed out  pylint: disable=broad-except
        return False, str(exc)
    return (True, res.stdout) if res.ok else (False, (res.stderr or res.stdout).strip() or f"exit {res.rc}")


def tunnel_state(interface: str, runner: Any = None, now: Optional[float] = None,
                 max_age_s: float = HANDSHAKE_MAX_AGE_S) -> Tuple[bool, str]:
    """``(up, why)``: is the WireGuard ``interface`` able to carry a probe now?

    Up means the interface exists in this network namespace (where the probes' sockets
    are) and its latest handshake is younger than ``max_age_s``: an older session is
    rejected by WireGuard, and no handshake at all means the peer never answered (no key
    yet, nothing listening).  ``why`` says what was seen, for ``paths``."""
    try:
        socket.if_nametoindex(interface)
    except OSError:
        return False, f"{interface}: no such interface here"
    ok, text = _wg_latest_handshakes(interface, runner)
    if not ok:
        return False, f"{interface}: wg show: {text.splitlines()[-1] if text.strip() else 'failed'}"
    latest = parse_latest_handshakes(text)
    if latest is None:
        return False, f"{interface}: no handshake yet"
    age = (time.time() if now is None else now) - latest
    if age >= max_age_s:
        return False, f"{interface}: latest handshake {age:.0f} s ago"
    return True, f"{interface}: handshake {max(0.0, age):.0f} s ago"


def _scoped(address: str, interface: str) -> str:
    """``fe80::2%wg1-7-2``: a link-local needs its interface; other addresses do not."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return f"{address}%{interface}" if ip.version == 6 and ip.is_link_local else address


def choose_path(target: Mapping[str, Any], runner: Any = None, now: Optional[float] = None) -> Dict[str, Any]:
    """How to reach ``target``: ``{"via": "tunnel", "address": "fe80::2%wg1-7-2"}`` when
    it names a ``tunnel`` that is up (:func:`tunnel_state`), else ``{"via": "underlay",
    "address": <target address>}``, with ``"reason"`` saying why a named tunnel was not
    used.

    A tunnel that is not up is not probed: its 100 % loss would read as a dead path
    while the underlay under it may be fine (and on the first loop the tunnels do not
    exist yet); its underlay address stands in."""
    tunnel = target.get("tunnel")
    if not tunnel:
        return {"via": VIA_UNDERLAY, "address": str(target["address"])}
    up, why = tunnel_state(str(tunnel["interface"]), runner, now)
    if up:
        return {"via": VIA_TUNNEL, "address": _scoped(str(tunnel["address"]), str(tunnel["interface"]))}
    return {"via": VIA_UNDERLAY, "address": str(target["address"]), "reason": why}


# =================================================================== a run
def _clean_sample(sample: Dict[str, Any]) -> Dict[str, Any]:
    """Keep the wire format: known fields only, no nulls except rtt_ms on total loss."""
    return {k: v for k, v in sample.items() if k in SAMPLE_FIELDS and (v is not None or k in ("tenant", "rtt_ms"))}


def _check_target(t: Mapping[str, Any], i: int) -> None:
    if not isinstance(t, Mapping) or not t.get("dst") or not t.get("address"):
        raise ProbeError(f"target #{i}: needs dst and address, got {t!r}")
    tunnel = t.get("tunnel")
    if tunnel is not None and (not isinstance(tunnel, Mapping) or not tunnel.get("interface") or not tunnel.get("address")):
        raise ProbeError(f"target #{i} ({t['dst']}): tunnel needs interface and address, got {tunnel!r}")
    for kind in t.get("kinds") or ():
        if kind not in PROBE_KINDS:
            raise ProbeError(f"target #{i} ({t['dst']}): unknown kind {kind!r} (known: {', '.join(PROBE_KINDS)}; "
                             "iperf runs on its own schedule, see run_iperf)")


def run_probes(targets: Sequence[Mapping[str, Any]], *, src: str, kinds: Sequence[str] = DEFAULT_KINDS, count: int = 10,
               interval_s: float = 0.05, timeout_s: float = 1.0, udp_port: int = DEFAULT_UDP_PORT,
               tcp_port: int = DEFAULT_TCP_PORT, runner: Any = None, source: Optional[str] = None,
               errors: Optional[List[Dict[str, Any]]] = None,
               paths: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Probe every target with its ``kinds`` (else ``kinds``), one after the other (so
    that probes do not queue behind each other), from this machine; ``runner`` runs
    ``ping`` and ``wg``.  One sample per target and kind, in target order.

    A target with a ``tunnel`` is probed through it while it is up, else over the
    underlay (:func:`choose_path`, decided once per target); ``paths``, when given, gets
    ``{"dst", "tenant", "via", "address"}`` (and ``reason`` for a tunnel not taken) per
    target.  ``source`` applies to the underlay only: a probe through a tunnel leaves
    from the tunnel's own link-local (a global source would have the reply routed
    elsewhere).

    A probe that could not run at all (no ``ping``, bad address) gives no sample; it is
    appended to ``errors`` as ``{"dst", "tenant", "kind", "error"}`` when given.
    """
    for i, t in enumerate(targets):
        _check_target(t, i)
    for kind in kinds:
        if kind not in PROBE_KINDS:
            raise ProbeError(f"kinds: unknown kind {kind!r} (known: {', '.join(PROBE_KINDS)})")
    samples: List[Dict[str, Any]] = []
    for t in targets:
        path = choose_path(t, runner)
        if paths is not None:
            paths.append(dict({"dst": t["dst"], "tenant": t.get("tenant")}, **path))
        address = path["address"]
        src_addr = source if path["via"] == VIA_UNDERLAY else None
        for kind in t.get("kinds") or kinds:
            try:
                if kind == "icmp":
                    fields = icmp_probe(address, count, interval_s, timeout_s, runner=runner, source=src_addr)
                elif kind == "udp":
                    fields = udp_probe(address, udp_port, count, interval_s, timeout_s, source=src_addr)
                elif kind == "tcp":
                    fields = tcp_probe(address, tcp_port, timeout_s, source=src_addr)
                else:
                    fields = http_probe(http_url(address, tcp_port), timeout_s, source=src_addr)
            except (ProbeError, OSError) as exc:
                if errors is not None:
                    errors.append({"dst": t["dst"], "tenant": t.get("tenant"), "kind": kind, "error": str(exc)})
                continue
            except Exception as exc:  # CommandError from the runner (ping missing, timed out)
                if errors is not None:
                    errors.append({"dst": t["dst"], "tenant": t.get("tenant"), "kind": kind, "error": str(exc)})
                continue
            samples.append(_clean_sample(_sample(src, t["dst"], kind, t.get("tenant"), **fields)))
    return samples


def run_iperf(targets: Sequence[Mapping[str, Any]], *, src: str, seconds: int = 5, port: int = DEFAULT_IPERF_PORT,
              runner: Any = None, source: Optional[str] = None,
              errors: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """One bounded iperf3 run per distinct address (tenants sharing a tunnel endpoint
    share the underlay: one run, one sample per tenant) -- the rare schedule."""
    for i, t in enumerate(targets):
        _check_target(t, i)
    samples: List[Dict[str, Any]] = []
    done: Dict[str, Dict[str, Any]] = {}
    for t in targets:
        address = str(t["address"])
        if address not in done:
            try:
                done[address] = iperf_probe(address, seconds, runner=runner, port=port, source=source)
            except ProbeError as exc:
                done[address] = {"sent": 1, "received": 0, "error": str(exc)}
        fields = dict(done[address])
        error = fields.pop("error", None)
        if error and errors is not None:
            errors.append({"dst": t["dst"], "tenant": t.get("tenant"), "kind": "iperf", "error": error})
        samples.append(_clean_sample(_sample(src, t["dst"], "iperf", t.get("tenant"), **fields)))
    return samples


def failed_targets(targets: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]],
                   errors: Sequence[Mapping[str, Any]] = (),
                   paths: Sequence[Mapping[str, Any]] = ()) -> List[Dict[str, Any]]:
    """Targets that answered no probe at all (every sample lost, or no sample); the
    address is the one probed (from ``paths``: a tunnel's link-local when it went
    through the tunnel)."""
    probed = {(p["dst"], p.get("tenant")): p["address"] for p in paths}
    out = []
    for t in targets:
        mine = [s for s in samples if s["dst"] == t["dst"] and s.get("tenant") == t.get("tenant")]
        if not any(s.get("received") for s in mine):
            reasons = [e["error"] for e in errors if e["dst"] == t["dst"] and e.get("tenant") == t.get("tenant")]
            out.append({"dst": t["dst"], "tenant": t.get("tenant"),
                        "address": probed.get((t["dst"], t.get("tenant")), t["address"]),
                        "reason": "; ".join(reasons) if reasons else "no reply"})
    return out


# =================================================================== the responder as a service
def script_source() -> str:
    """This file's source: what the responder runs from on the node."""
    loader = globals().get("__loader__")
    if loader is not None and hasattr(loader, "get_source"):
        try:
            src = loader.get_source(__name__)
            if src:  # some loaders (Ansible's collection loader) give bytes
                return src.decode("utf-8") if isinstance(src, bytes) else src
        except (ImportError, OSError):
            pass
    with open(__file__, encoding="utf-8") as fh:
        return fh.read()


def responder_argv(python: str, script: str, pidfile: str, bind: str = "::", udp_port: int = DEFAULT_UDP_PORT,
                   tcp_port: int = DEFAULT_TCP_PORT) -> List[str]:
    return [python, script, "responder", "--daemon", "--pidfile", pidfile, "--bind", bind,
            "--udp-port", str(int(udp_port)), "--tcp-port", str(int(tcp_port))]


def iperf_server_argv(pidfile: str, port: int = DEFAULT_IPERF_PORT, bind: str = "::") -> List[str]:
    argv = ["iperf3", "-s", "-D", "-p", str(int(port)), "-I", pidfile]
    if bind and bind not in ("::", "0.0.0.0"):
        argv += ["-B", bind]
    return argv


_PROC_SH = (
    'p="$1"; [ -r "/proc/$p/stat" ] || exit 3; '
    'echo "state $(sed "s/.*) //" "/proc/$p/stat" | cut -d" " -f1)"; '
    'echo "netns $(readlink "/proc/$p/ns/net")"; echo "self $(readlink /proc/self/ns/net)"; '
    'echo cmdline; tr "\\000" "\\n" < "/proc/$p/cmdline"'
)


def _read_pidfile(runner: Any, pidfile: str) -> Optional[int]:
    res = runner.run(["cat", pidfile], check=False, timeout=10)
    text = res.stdout.strip() if res.ok else ""
    return int(text) if text.isdigit() else None


def _proc(runner: Any, pid: int) -> Optional[Dict[str, Any]]:
    """State, network namespace (and ours) and argv of ``pid``; None when it is gone
    (a zombie counts as gone: a container's pid 1 may never reap it)."""
    res = runner.run(["sh", "-c", _PROC_SH, "sh", str(pid)], check=False, timeout=10)
    if not res.ok:
        return None
    info: Dict[str, Any] = {"argv": []}
    lines = res.stdout.split("\n")
    for i, line in enumerate(lines):
        if line == "cmdline":
            info["argv"] = [a for a in lines[i + 1:] if a]
            break
        key, _sp, value = line.partition(" ")
        info[key] = value
    if info.get("state") in ("Z", "X", "") or not info["argv"]:
        return None
    return info


def _process_status(runner: Any, pidfile: str, match: Sequence[str]) -> Dict[str, Any]:
    """``{"pid", "argv"}`` of the live process named by ``pidfile`` whose argv holds every
    string of ``match``, else ``{"pid": None}``; a process in another network namespace
    is an error (two lab nodes sharing one pidfile)."""
    pid = _read_pidfile(runner, pidfile)
    if pid is None:
        return {"pid": None}
    info = _proc(runner, pid)
    if info is None or not all(any(m == a or a.endswith("/" + m) for a in info["argv"]) for m in match):
        return {"pid": None, "stale_pid": pid}
    if info.get("netns") and info.get("self") and info["netns"] != info["self"]:
        raise ProbeError(f"{pidfile}: pid {pid} is a responder in another network namespace; give each node "
                         "(each lab namespace) its own pidfile")
    return {"pid": pid, "argv": info["argv"]}


def _stop(runner: Any, pid: int, pidfile: str, wait_s: float = 5.0) -> None:
    runner.run(["kill", "-TERM", str(pid)], check=False, timeout=10)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _proc(runner, pid) is None:
            break
        time.sleep(0.05)
    else:
        runner.run(["kill", "-KILL", str(pid)], check=False, timeout=10)
    runner.run(["rm", "-f", pidfile], check=False, timeout=10)


def _describe(status: Mapping[str, Any], what: str) -> str:
    if not status.get("pid"):
        return f"{what}: stopped\n"
    return f"{what}: running, pid {status['pid']}: {' '.join(shlex.quote(a) for a in status['argv'])}\n"


def responder_state(runner: Any, state: str = "started", *, pidfile: str = DEFAULT_PIDFILE, bind: str = "::",
                    udp_port: int = DEFAULT_UDP_PORT, tcp_port: int = DEFAULT_TCP_PORT, iperf: bool = False,
                    iperf_port: int = DEFAULT_IPERF_PORT, python: Optional[str] = None,
                    check_mode: bool = False) -> Dict[str, Any]:
    """Make the responder (and with ``iperf`` the ``iperf3 -s -D`` server) on the node
    ``started`` or ``stopped``, idempotently, through ``runner``.

    Started: the responder script (this file, copied next to the pidfile as
    ``npms_probe.py``) runs detached (setsid) with the wanted options; a running one with
    other options, or started from an older script, is restarted.  Stopped: both are
    killed (TERM, then KILL after 5 s) and their pidfiles removed.

    Returns ``{"changed", "pid", "iperf_pid", "commands", "diff": {"before", "after"}}``.
    """
    if state not in ("started", "stopped"):
        raise ProbeError(f"state: started or stopped, got {state!r}")
    python = python or sys.executable or "python3"
    directory = os.path.dirname(pidfile) or "."
    script = os.path.join(directory, SCRIPT_NAME)
    iperf_pidfile = os.path.splitext(pidfile)[0] + "-iperf3.pid"
    source = script_source()
    want_argv = responder_argv(python, script, pidfile, bind, udp_port, tcp_port)
    before = _process_status(runner, pidfile, [SCRIPT_NAME, "responder"])
    iperf_before = _process_status(runner, iperf_pidfile, ["iperf3", "-s"])
    commands: List[List[str]] = []
    changed = False
    after, iperf_after = dict(before), dict(iperf_before)

    if state == "stopped":
        for status, pf, key in ((before, pidfile, "r"), (iperf_before, iperf_pidfile, "i")):
            if status.get("pid"):
                commands.append(["kill", "-TERM", str(status["pid"])])
                changed = True
                if not check_mode:
                    _stop(runner, status["pid"], pf)
                if key == "r":
                    after = {"pid": None}
                else:
                    iperf_after = {"pid": None}
    else:
        res = runner.run(["cat", script], check=False, timeout=10)
        script_changed = not res.ok or hashlib.sha256(res.stdout.encode()).digest() != hashlib.sha256(source.encode()).digest()
        running_argv = before.get("argv") or []
        # compare from the script on: the interpreter path may be spelled differently
        same = bool(running_argv) and running_argv[1:] == want_argv[1:]
        # unique: several hosts' tasks may install into one shared directory at once
        tmp = f"{script}.{uuid.uuid4().hex}.tmp"
        write_argv = ["sh", "-c", 'mkdir -p "$1" && cat > "$2" && mv -f "$2" "$3"', "sh", directory, tmp, script]
        if script_changed:
            commands.append(write_argv)  # stdin: this file
        if before.get("pid") and (not same or script_changed):
            commands.append(["kill", "-TERM", str(before["pid"])])
        if not before.get("pid") or not same or script_changed:
            commands.append(want_argv)
            changed = True
            after = {"pid": None if check_mode else 0, "argv": want_argv}
            if not check_mode:
                if script_changed:
                    runner.run(write_argv, stdin=source, timeout=30)
                if before.get("pid"):
                    _stop(runner, before["pid"], pidfile)
                out = runner.run(want_argv, check=False, timeout=30)
                if not out.ok:
                    raise ProbeError(f"responder did not start: {(out.stderr or out.stdout).strip()}")
                after = _process_status(runner, pidfile, [SCRIPT_NAME, "responder"])
                if not after.get("pid"):
                    raise ProbeError(f"responder started but {pidfile} names no live responder")
        if iperf:
            want_iperf = iperf_server_argv(iperf_pidfile, iperf_port, bind)
            iperf_same = iperf_before.get("argv", [])[1:] == want_iperf[1:]
            if not iperf_before.get("pid") or not iperf_same:
                if iperf_before.get("pid"):
                    commands.append(["kill", "-TERM", str(iperf_before["pid"])])
                commands.append(want_iperf)
                changed = True
                iperf_after = {"pid": None, "argv": want_iperf}
                if not check_mode:
                    if iperf_before.get("pid"):
                        _stop(runner, iperf_before["pid"], iperf_pidfile)
                    runner.run(["mkdir", "-p", directory], timeout=10)
                    runner.run(want_iperf, timeout=30)
                    for _attempt in range(40):  # iperf3 -D writes its pidfile after forking
                        iperf_after = _process_status(runner, iperf_pidfile, ["iperf3", "-s"])
                        if iperf_after.get("pid"):
                            break
                        time.sleep(0.05)
        elif iperf_before.get("pid"):
            commands.append(["kill", "-TERM", str(iperf_before["pid"])])
            changed = True
            iperf_after = {"pid": None}
            if not check_mode:
                _stop(runner, iperf_before["pid"], iperf_pidfile)

    def text(r: Mapping[str, Any], i: Mapping[str, Any]) -> str:
        return _describe(r, "responder") + _describe(i, "iperf3 server")

    return {
        "changed": changed,
        "pid": after.get("pid") or None,
        "iperf_pid": iperf_after.get("pid") or None,
        "commands": [" ".join(shlex.quote(a) for a in c) for c in commands],
        "diff": {"before": text(before, iperf_before),
                 "after": text(after if after.get("pid") is not None else {"pid": None}, iperf_after)
                 if not check_mode else _planned(state, want_argv if state == "started" else None, iperf, iperf_pidfile,
                                                 iperf_port, bind, before, iperf_before, changed)},
    }


def _planned(state: str, want_argv: Optional[List[str]], iperf: bool, iperf_pidfile: str, iperf_port: int, bind: str,
             before: Mapping[str, Any], iperf_before: Mapping[str, Any], changed: bool) -> str:
    """The diff's ``after`` in check mode (nothing was started)."""
    if not changed:
        return _describe(before, "responder") + _describe(iperf_before, "iperf3 server")
    if state == "stopped":
        return "responder: stopped\niperf3 server: stopped\n"
    r = {"pid": before.get("pid") or "(new)", "argv": want_argv}
    i = {"pid": "(new)", "argv": iperf_server_argv(iperf_pidfile, iperf_port, bind)} if iperf else {"pid": None}
    if iperf and iperf_before.get("argv", [])[1:] == i["argv"][1:]:
        i = dict(iperf_before)
    return _describe(r, "responder") + _describe(i, "iperf3 server")


# =================================================================== daemon mode
def _write_pidfile(pidfile: str, pid: int) -> None:
    directory = os.path.dirname(pidfile)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{pidfile}.{pid}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{pid}\n")
    os.replace(tmp, pidfile)


def serve(responder: Responder, pidfile: Optional[str] = None, daemon: bool = False) -> int:
    """Run the responder until SIGTERM/SIGINT.  ``daemon``: detach (double fork, setsid,
    stdio to /dev/null) and return in the parent once the sockets are bound and the
    pidfile written, so a caller that waits for the command (a Runner) is not held."""
    if daemon:
        r, w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(w)
            msg = b""
            while True:
                chunk = os.read(r, 4096)
                if not chunk:
                    break
                msg += chunk
            os.close(r)
            os.waitpid(pid, 0)
            text = msg.decode(errors="replace")
            if text.startswith("ok "):
                sys.stdout.write(json.dumps({"pid": int(text.split()[1]), "udp_port": responder.udp_port,
                                             "tcp_port": responder.tcp_port}) + "\n")
                return 0
            sys.stderr.write((text or "responder: failed to start") + "\n")
            return 1
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)  # pylint: disable=protected-access
        try:
            responder.bind()
            if pidfile:
                _write_pidfile(pidfile, os.getpid())
        except OSError as exc:
            os.write(w, f"responder: {exc}".encode())
            os._exit(1)  # pylint: disable=protected-access
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.write(w, f"ok {os.getpid()}".encode())
        os.close(w)
    else:
        responder.bind()
        if pidfile:
            _write_pidfile(pidfile, os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: responder.stop())
    signal.signal(signal.SIGINT, lambda *_: responder.stop())
    try:
        responder.serve_forever()
    finally:
        if pidfile:
            try:
                with open(pidfile, encoding="ascii") as fh:
                    mine = fh.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(pidfile)
            except OSError:
                pass
    if daemon:
        os._exit(0)  # pylint: disable=protected-access
    return 0


# =================================================================== command line
def setup_probe(parser: argparse.ArgumentParser):
    """``npms probe {responder,run,targets}`` (also ``python -m npms.probe ...`` and the
    standalone script, which need only the standard library for responder and run)."""
    sub = parser.add_subparsers(dest="probe_command", metavar="ACTION")
    sub.required = True
    r = sub.add_parser("responder", help="run the probe responder (UDP echo, TCP/HTTP)",
                       description="Run the probe responder until SIGTERM.")
    r.add_argument("--bind", default="::", help="address to listen on (default :: = dual stack)")
    r.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT, help="UDP echo port (default %(default)s)")
    r.add_argument("--tcp-port", type=int, default=DEFAULT_TCP_PORT, help="TCP / HTTP port (default %(default)s)")
    r.add_argument("--pidfile", help="write the pid here (removed on exit)")
    r.add_argument("--daemon", action="store_true", help="detach; return once listening (prints the pid as JSON)")
    r.set_defaults(_probe=_cmd_responder)
    p = sub.add_parser("run", help="probe targets from this machine; samples as JSON on stdout",
                       description="Probe targets from this machine and print the samples (and errors) as JSON.")
    p.add_argument("--targets", required=True, metavar="JSON|FILE|-",
                   help="a JSON list of {dst, address, tenant, kinds, tunnel}, a file holding one, or - for stdin")
    p.add_argument("--src", required=True, help="this node's name (the samples' src)")
    p.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                   help="comma-separated kinds for targets that name none (default %(default)s)")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.05, help="seconds between packets")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for replies")
    p.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT)
    p.add_argument("--tcp-port", type=int, default=DEFAULT_TCP_PORT)
    p.add_argument("--source", help="source address of the underlay probes (a tunnel's are from its link-local)")
    p.add_argument("--iperf", action="store_true", help="also one bounded iperf3 run per target address")
    p.add_argument("--iperf-seconds", type=int, default=5, help="length of an iperf3 run (at most %d)" % MAX_IPERF_S)
    p.add_argument("--iperf-port", type=int, default=DEFAULT_IPERF_PORT)
    p.add_argument("--iperf-only", action="store_true", help="only the iperf3 runs (the rare schedule)")
    p.set_defaults(_probe=_cmd_run)
    t = sub.add_parser("targets", help="what a node probes, from the inventory (JSON)",
                       description="Print the probe targets of NODE as JSON.")
    t.add_argument("inventory", metavar="INVENTORY")
    t.add_argument("node", metavar="NODE")
    t.add_argument("--core-scope", choices=("all", "adjacent"), default="all",
                   help="cores probe all other cores (default) or only those they have a link to")
    t.set_defaults(_probe=_cmd_targets)
    return lambda args: args._probe(args)  # pylint: disable=protected-access


def _cmd_responder(args: argparse.Namespace) -> int:
    responder = Responder(args.bind, args.udp_port, args.tcp_port)
    try:
        return serve(responder, args.pidfile, daemon=args.daemon)
    except OSError as exc:
        sys.stderr.write(f"responder: {exc}\n")
        return 1


def _load_targets(spec: str) -> List[Dict[str, Any]]:
    if spec == "-":
        text = sys.stdin.read()
    elif spec.lstrip().startswith("["):
        text = spec
    else:
        with open(spec, encoding="utf-8") as fh:
            text = fh.read()
    data = json.loads(text)
    if isinstance(data, Mapping) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list):
        raise ProbeError("targets: expected a JSON list")
    return data


def run_request(targets: Sequence[Mapping[str, Any]], *, src: str, kinds: Sequence[str] = DEFAULT_KINDS, count: int = 10,
                interval_s: float = 0.05, timeout_s: float = 1.0, udp_port: int = DEFAULT_UDP_PORT,
                tcp_port: int = DEFAULT_TCP_PORT, iperf: bool = False, iperf_only: bool = False, iperf_seconds: int = 5,
                iperf_port: int = DEFAULT_IPERF_PORT, source: Optional[str] = None, runner: Any = None) -> Dict[str, Any]:
    """What the module and ``npms probe run`` return: ``{"samples", "failed_targets",
    "errors", "paths"}`` (the Nornir task gets it as JSON from the node).  ``paths``:
    per target of the frequent probes, ``{"dst", "tenant", "via": "tunnel"|"underlay",
    "address"}`` (plus ``reason`` when a named tunnel was not up); iperf always runs over
    the underlay address and adds none."""
    if iperf or iperf_only:
        if not 1 <= int(iperf_seconds) <= MAX_IPERF_S:
            raise ProbeError(f"iperf_seconds: 1..{MAX_IPERF_S}, got {iperf_seconds}")
    errors: List[Dict[str, Any]] = []
    samples: List[Dict[str, Any]] = []
    paths: List[Dict[str, Any]] = []
    if not iperf_only:
        samples += run_probes(targets, src=src, kinds=kinds, count=count, interval_s=interval_s, timeout_s=timeout_s,
                              udp_port=udp_port, tcp_port=tcp_port, runner=runner, source=source, errors=errors,
                              paths=paths)
    if iperf or iperf_only:
        samples += run_iperf(targets, src=src, seconds=iperf_seconds, port=iperf_port, runner=runner, source=source,
                             errors=errors)
    return {"samples": samples, "failed_targets": failed_targets(targets, samples, errors, paths), "errors": errors,
            "paths": paths}


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        targets = _load_targets(args.targets)
        kinds = [k for k in args.kinds.split(",") if k]
        out = run_request(targets, src=args.src, kinds=kinds, count=args.count, interval_s=args.interval,
                          timeout_s=args.timeout, udp_port=args.udp_port, tcp_port=args.tcp_port, iperf=args.iperf,
                          iperf_only=args.iperf_only, iperf_seconds=args.iperf_seconds, iperf_port=args.iperf_port,
                          source=args.source)
    except (ProbeError, ValueError, OSError) as exc:
        sys.stderr.write(f"probe run: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from .cli import load_inventory  # pylint: disable=import-outside-toplevel

    inv = load_inventory(args.inventory)
    try:
        targets = probe_targets(inv, args.node, core_scope=args.core_scope)
    except ProbeError as exc:
        sys.stderr.write(f"probe targets: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(targets, indent=2) + "\n")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="npms probe", description="galactic.npms probes and their responder")
    run = setup_probe(parser)
    return int(run(parser.parse_args(argv)) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
