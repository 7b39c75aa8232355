# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""npms-wand: the one userspace delay element of a namespace lab.

This kernel has no netem, so one-way delay and jitter are made here: in every delayed
interface's namespace an iptables rule sends the interface's egress packets to an
NFQUEUE (:mod:`npms_lab.wan` owns the rules) and this process releases each packet at
its time.  One process serves every delayed interface of a lab: it enters a namespace
only to open that interface's sockets (a socket stays bound to the namespace it was
made in) and then waits on all of them at once.

Release time = arrival + max(0, gauss(delay, jitter)), but never earlier than the
previous packet of the same interface: a WAN link keeps packet order, so jitter here
spreads the delay without reordering.

How a packet is held depends on who sent it:

* forwarded by the namespace: the packet stays in the kernel and its verdict (accept)
  is given at release time, so it goes on through the rest of the hooks unchanged;
* sent by the namespace itself: while such a packet is held, its socket counts it as
  not yet sent, and TCP small queues then cap a stream at a few Mbit/s.  So the daemon
  copies it, drops the original at once (silently for the sender, as the verdict comes
  after the send returned) and at release time sends the copy on the interface, framed
  to the veth peer's MAC (AF_PACKET; the interface's qdisc, e.g. the rate limit, still
  applies).  Hooks after mangle POSTROUTING do not see such a copy.

Control: one JSON request per connection on ``<dir>/wand.sock`` (``status``, ``set``,
``clear``, ``shutdown``); see :class:`Daemon`.  Started by ``wan.py`` as
``python wand.py start --dir DIR``, which returns once the daemon listens.

Only the standard library and NetfilterQueue (PyPI; libnetfilter-queue from Debian).
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
SOCKET_NAME = "wand.sock"
PID_NAME = "wand.pid"
LOG_NAME = "wand.log"
# Packets one queue may hold in the kernel: 100 Mbit/s x 100 ms is ~850 full-size packets.
QUEUE_MAXLEN = 4096
# Socket buffer for queued-packet notices (a copy of the packet, ~2-3 KiB each with
# overhead); an overrun loses notices, and a packet whose notice is lost is held by the
# kernel until the queue goes.
SOCK_RCVBUF = 8 * 1024 * 1024
# Send buffer of the socket that re-sends copies: it also holds what waits in the
# interface's rate limiter.
SOCK_SNDBUF = 4 * 1024 * 1024
SO_SNDBUFFORCE = 32
# How often namespaces are checked for having gone (a bound socket keeps a deleted
# namespace, and its interfaces, alive).
HOUSEKEEPING_S = 1.0
MAX_REQUEST = 65536


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _netns_inode(netns: str) -> int:
    return os.stat(os.path.join(NETNS_RUN_DIR, netns)).st_ino


class Link:
    """One delayed interface: its queue, its parameters and its FIFO horizon."""

    def __init__(self, netns: str, ifname: str, queue: int):
        self.netns = netns
        self.ifname = ifname
        self.queue = queue
        self.ifindex = 0
        self.peer_mac = b""
        self.src_mac = b""
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.last_release = 0.0
        self.packets = 0
        self.copied = 0
        self.lost = 0
        self.held = 0
        self.nfq = None
        self.sock = None
        self.fd = -1
        self.ns_inode = 0

    def describe(self) -> dict:
        return {
            "netns": self.netns,
            "ifname": self.ifname,
            "ifindex": self.ifindex,
            "queue": self.queue,
            "delay_ms": round(self.delay_s * 1000.0, 6),
            "jitter_ms": round(self.jitter_s * 1000.0, 6),
            "peer_mac": _mac_text(self.peer_mac),
            "packets": self.packets,
            "copied": self.copied,
            "lost": self.lost,
            "held": self.held,
        }

    def frame(self, payload: bytes):
        """``payload`` (an IP packet) as an Ethernet frame to the veth peer; None if it
        cannot be re-sent as is (not IP, or a truncated copy)."""
        if not self.peer_mac or len(payload) < 40:
            return None
        version = payload[0] >> 4
        if version == 4:
            if len(payload) != (payload[2] << 8 | payload[3]):
                return None
            dst = payload[16:20]
            if 224 <= dst[0] < 240:
                mac = b"\x01\x00\x5e" + bytes((dst[1] & 0x7F,)) + dst[2:4]
            elif dst == b"\xff\xff\xff\xff":
                mac = b"\xff" * 6
            else:
                mac = self.peer_mac
            return mac + self.src_mac + b"\x08\x00" + payload
        if version == 6:
            if len(payload) != 40 + (payload[4] << 8 | payload[5]):
                return None
            mac = b"\x33\x33" + payload[36:40] if payload[24] == 0xFF else self.peer_mac
            return mac + self.src_mac + b"\x86\xdd" + payload
        return None

    def emit(self, pkt, frame) -> None:
        """Let the packet go: the verdict for a held original, a send for a copy."""
        try:
            if frame is None:
                pkt.accept()
            else:
                self.sock.send(frame)
        except (RuntimeError, OSError):
            # Queue gone, or the interface's queue (rate limit) is full: lost, as on a WAN.
            self.lost += 1


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _mac_bytes(text) -> bytes:
    if not text:
        return b""
    mac = bytes(int(part, 16) for part in str(text).split(":"))
    if len(mac) != 6:
        raise ValueError(f"bad MAC address {text!r}")
    return mac


class Daemon:
    """The event loop: netlink queue sockets + the control socket + a release heap."""

    def __init__(self, directory: str, listener: socket.socket):
        self.directory = directory
        self.listener = listener
        self.links = {}  # (netns, ifname) -> Link
        self.by_fd = {}  # queue socket fd -> Link
        self.heap = []  # (release time, sequence, Link, packet, frame or None)
        self.seq = itertools.count()
        self.running = True
        self.own_ns = os.open("/proc/self/ns/net", os.O_RDONLY)  # pylint: disable=consider-using-with
        self.rng = random.Random()
        self.next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        self.rlist = [listener.fileno()]

    # -- packets -------------------------------------------------------------------

    def _callback(self, link: Link):
        heap = self.heap
        seq = self.seq
        rng = self.rng

        def on_packet(pkt):
            now = time.monotonic()
            delay = link.delay_s
            if link.jitter_s:
                delay = rng.gauss(delay, link.jitter_s)
            release = now + delay if delay > 0.0 else now
            if release < link.last_release:
                release = link.last_release  # keep the interface's order
            link.last_release = release
            link.packets += 1
            frame = None
            if link.sock is not None and pkt.indev == 0:
                # Sent by the namespace itself: while its packet is held, the sending socket
                # counts it as unsent (TCP small queues would cap a stream at a few Mbit/s),
                # so take a copy, drop the original now and send the copy later.
                try:
                    frame = link.frame(pkt.get_payload())
                    if frame is not None:
                        pkt.drop()
                        link.copied += 1
                except Exception as exc:  # pylint: disable=broad-except
                    # An exception must not escape into the C callback: keep the original.
                    log(f"{link.netns}/{link.ifname}: copy failed, packet held as is: {exc}")
                    frame = None
            if release <= now:
                link.emit(pkt, frame)
                return
            link.held += 1
            heapq.heappush(heap, (release, next(seq), link, pkt, frame))

        return on_packet

    def release_due(self) -> None:
        heap = self.heap
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            entry[2].held -= 1
            entry[2].emit(entry[3], entry[4])

    def release_link(self, link: Link) -> None:
        """Accept what ``link`` still holds, now (before its queue is unbound)."""
        keep = []
        for entry in self.heap:
            if entry[2] is link:
                link.emit(entry[3], entry[4])
            else:
                keep.append(entry)
        heapq.heapify(keep)
        self.heap[:] = keep
        link.held = 0

    # -- queues --------------------------------------------------------------------

    def bind(self, link: Link) -> None:
        from netfilterqueue import COPY_PACKET, NetfilterQueue  # pylint: disable=import-outside-toplevel,import-error

        nsfd = os.open(os.path.join(NETNS_RUN_DIR, link.netns), os.O_RDONLY)
        nfq = sock = None
        try:
            link.ns_inode = os.fstat(nsfd).st_ino
            _setns(nsfd)
            try:
                # Both sockets must be made inside the namespace: they stay bound to it.
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                sock.bind((link.ifname, 0))  # protocol 0: send only, never receive
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCK_SNDBUF)
                sock.setblocking(False)
                link.src_mac = sock.getsockname()[4]
                link.ifindex = socket.if_nametoindex(link.ifname)
                nfq = NetfilterQueue()
                try:
                    nfq.bind(link.queue, self._callback(link), max_len=QUEUE_MAXLEN, mode=COPY_PACKET, sock_len=SOCK_RCVBUF)
                except OSError as exc:
                    raise OSError(f"{link.netns}/{link.ifname}: cannot bind NFQUEUE {link.queue} (another listener?): {exc}") from None
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            finally:
                _setns(self.own_ns)
        finally:
            os.close(nsfd)
        link.nfq = nfq
        link.sock = sock
        link.fd = nfq.get_fd()
        self.by_fd[link.fd] = link
        self._refresh_rlist()

    def unbind(self, link: Link) -> None:
        self.release_link(link)
        if link.nfq is not None:
            self.by_fd.pop(link.fd, None)
            link.nfq.unbind()
            link.nfq = None
            link.fd = -1
            self._refresh_rlist()
        if link.sock is not None:
            link.sock.close()
            link.sock = None

    def _refresh_rlist(self) -> None:
        self.rlist = [self.listener.fileno()] + list(self.by_fd)

    def housekeeping(self) -> None:
        """Let go of namespaces that were deleted (or deleted and made anew)."""
        for key, link in list(self.links.items()):
            try:
                current = _netns_inode(link.netns)
            except OSError:
                current = 0
            if current != link.ns_inode:
                log(f"{link.netns}/{link.ifname}: namespace gone, queue {link.queue} released")
                self.unbind(link)
                del self.links[key]

    # -- control -------------------------------------------------------------------

    def op_status(self, _req: dict) -> dict:
        return {"ok": True, "pid": os.getpid(), "held": len(self.heap),
                "links": [link.describe() for link in self.links.values()]}

    def op_set(self, req: dict) -> dict:
        netns, ifname, queue = str(req["netns"]), str(req["ifname"]), int(req["queue"])
        delay_ms, jitter_ms = float(req["delay_ms"]), float(req["jitter_ms"])
        ifindex = int(req.get("ifindex") or 0)
        peer_mac = _mac_bytes(req.get("peer_mac"))
        if not 0.0 <= delay_ms <= 3_600_000.0 or not 0.0 <= jitter_ms <= 3_600_000.0:
            raise ValueError(f"delay_ms / jitter_ms out of range: {delay_ms!r} / {jitter_ms!r}")
        key = (netns, ifname)
        link = self.links.get(key)
        stale = link is not None and (link.queue != queue or link.nfq is None or _netns_inode(netns) != link.ns_inode
                                      or (ifindex and ifindex != link.ifindex))
        if stale:
            self.unbind(link)
            del self.links[key]
            link = None
        if link is None:
            link = Link(netns, ifname, queue)
            self.bind(link)
            self.links[key] = link
        # Packets already held keep their release time; later ones queue behind them.
        link.delay_s = delay_ms / 1000.0
        link.jitter_s = jitter_ms / 1000.0
        link.peer_mac = peer_mac
        return {"ok": True, "link": link.describe()}

    def op_clear(self, req: dict) -> dict:
        link = self.links.pop((str(req["netns"]), str(req["ifname"])), None)
        if link is not None:
            self.unbind(link)
        return {"ok": True, "removed": link is not None}

    def op_shutdown(self, _req: dict) -> dict:
        self.running = False
        return {"ok": True, "pid": os.getpid()}

    def handle_control(self) -> None:
        try:
            conn, _addr = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2.0)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                req = json.loads(data.decode("utf-8") or "{}")
                handler = getattr(self, "op_" + str(req.get("op")), None)
                if handler is None:
                    reply = {"ok": False, "error": f"unknown op {req.get('op')!r}"}
                else:
                    reply = handler(req)
            except Exception as exc:  # pylint: disable=broad-except
                # A bad request must not take down every link's delay.
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")
            except OSError:
                pass

    # -- loop ----------------------------------------------------------------------

    def run(self) -> None:
        listen_fd = self.listener.fileno()
        while self.running:
            now = time.monotonic()
            timeout = max(0.0, self.next_housekeeping - now)
            if self.heap:
                timeout = min(timeout, max(0.0, self.heap[0][0] - now))
            try:
                readable = select.select(self.rlist, [], [], timeout)[0]
            except InterruptedError:
                readable = []
            for fd in readable:
                if fd == listen_fd:
                    self.handle_control()
                    continue
                link = self.by_fd.get(fd)
                if link is not None and link.nfq is not None:
                    try:
                        link.nfq.run(block=False)
                    except OSError as exc:
                        log(f"{link.netns}/{link.ifname}: queue read failed: {exc}")
            self.release_due()
            if time.monotonic() >= self.next_housekeeping:
                self.housekeeping()
                self.next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        self.stop()

    def stop(self) -> None:
        for link in list(self.links.values()):
            self.unbind(link)
        self.links.clear()


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} wand[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def request(directory: str, req: dict, timeout: float = 5.0) -> dict:
    """Send one request to the daemon serving ``directory``; OSError if none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.path.join(directory, SOCKET_NAME))
        sock.sendall(json.dumps(req).encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise OSError(f"daemon at {directory} closed the connection")
    return json.loads(data.decode("utf-8"))


def _listen(directory: str) -> socket.socket:
    path = os.path.join(directory, SOCKET_NAME)
    if len(path.encode()) > 107:
        raise OSError(f"socket path too long for AF_UNIX ({len(path)} bytes): {path}")
    try:
        request(directory, {"op": "status"}, timeout=1.0)
    except (OSError, ValueError):
        pass
    else:
        raise FileExistsError(f"a daemon already serves {directory}")
    if os.path.lexists(path):
        os.unlink(path)  # left by a daemon that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    sock.listen(16)
    return sock


def start(directory: str, foreground: bool = False) -> int:
    """Start a daemon for ``directory``; in the background, return once it listens."""
    try:
        import netfilterqueue  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import,import-error
    except ImportError as exc:
        sys.stderr.write(f"npms-wand: NetfilterQueue is not installed for {sys.executable}: {exc}\n")
        return 2
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        listener = _listen(directory)
    except FileExistsError as exc:
        sys.stdout.write(f"{exc}\n")
        return 0
    except OSError as exc:
        sys.stderr.write(f"npms-wand: {exc}\n")
        return 1
    if foreground:
        _write_pid(directory)
        return _serve(directory, listener)
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        # The caller's end: wait for the grandchild's pid (or for the pipe to close on failure).
        os.close(ready_w)
        listener.close()
        with os.fdopen(ready_r, "rb") as ready:
            pid = ready.read().decode().strip()
        if not pid:
            sys.stderr.write(f"npms-wand: daemon failed to start; see {os.path.join(directory, LOG_NAME)}\n")
            return 1
        sys.stdout.write(f"{pid}\n")
        return 0
    os.close(ready_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # pylint: disable=protected-access
    # The daemon: no controlling terminal, and none of the caller's pipes held open.
    devnull = os.open(os.devnull, os.O_RDONLY)
    logfd = os.open(os.path.join(directory, LOG_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(devnull)
    os.close(logfd)
    os.chdir("/")
    _write_pid(directory)
    os.write(ready_w, f"{os.getpid()}\n".encode())
    os.close(ready_w)
    code = 1
    try:
        code = _serve(directory, listener)
    finally:
        os._exit(code)  # pylint: disable=protected-access


def _write_pid(directory: str) -> None:
    with open(os.path.join(directory, PID_NAME), "w", encoding="ascii") as pidfile:
        pidfile.write(f"{os.getpid()}\n")


def _serve(directory: str, listener: socket.socket) -> int:
    daemon = Daemon(directory, listener)

    def on_term(_signum, _frame):
        daemon.running = False

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        # A delay element must wake on time even when the machine is busy (netem runs in
        # softirq); the lowest real-time priority does that (on a loaded 2-core machine the
        # 90th percentile went from +4 ms to +0.1 ms), and the kernel's real-time throttling
        # still leaves 5 % of each CPU to everything else.
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (OSError, AttributeError) as exc:
        log(f"running without real-time priority: {exc}")
    log("started")
    try:
        daemon.run()
    except Exception as exc:  # pylint: disable=broad-except
        log(f"crashed: {type(exc).__name__}: {exc}")
        daemon.stop()
        return 1
    finally:
        listener.close()
        for name in (SOCKET_NAME, PID_NAME):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
        log("stopped")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="npms-wand", description="userspace delay element of the npms namespace lab")
    parser.add_argument("command", choices=("start", "status", "stop"))
    parser.add_argument("--dir", required=True, help="state directory (socket, pid file, log)")
    parser.add_argument("--foreground", action="store_true", help="start: do not detach")
    args = parser.parse_args(argv)
    if args.command == "start":
        return start(args.dir, foreground=args.foreground)
    try:
        reply = request(args.dir, {"op": "status" if args.command == "status" else "shutdown"})
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"npms-wand: no daemon at {args.dir}: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(reply, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
