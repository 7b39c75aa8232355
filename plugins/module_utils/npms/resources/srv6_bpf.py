# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SRv6 encapsulation on a Linux kernel built without ``CONFIG_IPV6_SEG6_LWTUNNEL``.

Such a kernel has no ``seg6`` / ``seg6local`` routes, but it still

* processes a Segment Routing Header addressed to one of its local addresses (when
  ``seg6_enabled`` is on for the interface the packet came in on): with segments left it
  does *End* (next segment, forward); with none left and an inner IPv4 / IPv6 packet it
  decapsulates and receives the inner packet again on the same interface, keeping the
  packet's firewall mark;
* runs eBPF programs on routes (``CONFIG_LWTUNNEL_BPF``): ``encap bpf xmit``.

So npms encapsulates with a small eBPF program per (inner family, source, segment list)
that pushes an outer IPv6 header and an SRH with ``bpf_lwt_push_encap(BPF_LWT_ENCAP_IP)``
and asks the kernel to route the result (``BPF_LWT_REROUTE``).  The program is built
here, instruction by instruction (no compiler on the nodes), loaded with the ``bpf()``
system call and pinned under :data:`BPF_DIR` just long enough for ``ip route ... encap bpf
xmit pinned <file>`` to take it; the route then holds the program.  The pinned file's
name, which the kernel keeps with the route and ``ip route`` prints, says what the
program pushes (:func:`program_name`), so ``gather`` reads the segment list back.

Packets that arrive as one GSO/GRO aggregate cannot be encapsulated this way (the kernel
only lets GRE / UDP / IP-in-IP encapsulations of such packets through): they are dropped.
Turn GRO off on attachment interfaces, or keep ``gso_max_segs 1`` on the interface that
sends into the edge (the lab does).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gzip
import ipaddress
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

#: where npms mounts a bpf filesystem for its pins (``ip netns exec`` remounts /sys, so
#: /sys/fs/bpf is not visible inside a namespace; /run is)
BPF_DIR = "/run/npms/bpf"
#: ``NPMS_SRV6_ENCAP=seg6|bpf`` overrides the choice made from the kernel's config
ENV_MODE = "NPMS_SRV6_ENCAP"
MODES = ("seg6", "bpf")
NAME_PREFIX = "npms_srv6_"
#: the kernel's LWT_BPF_MAX_HEADROOM: outer header + SRH must fit
MAX_HEADER = 256
MAX_SEGMENTS = (MAX_HEADER - 40 - 8) // 16
#: iproute2 hands the kernel "<file name>:[*fsobj]" in a 256-byte buffer: longer is cut
NAME_MAX = 255 - len(":[*fsobj]")

_BPF_PROG_TYPE_LWT_XMIT = 12
_BPF_PROG_LOAD = 5
_BPF_OBJ_PIN = 6
_BPF_FUNC_LWT_PUSH_ENCAP = 73
_BPF_LWT_ENCAP_IP = 2
_BPF_DROP = 2
_BPF_LWT_REROUTE = 128
_SKB_LEN = 0  # offsetof(struct __sk_buff, len)
_SKB_MARK = 8  # offsetof(struct __sk_buff, mark)
_SYSCALL_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280}
_NEXT_HEADER = {4: 4, 6: 41}  # inner IPv4 / IPv6
_IPPROTO_ROUTING = 43
_SRH_TYPE = 4


class BpfError(OSError):
    """Loading or pinning the encapsulation program failed (the message says why)."""


# --- which encapsulation -------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def kernel_config_seg6() -> Optional[bool]:
    """Whether the running kernel was built with SRv6 lightweight tunnels (None: no
    kernel config to read).

    Read once per process: the running kernel's config does not change under it, and
    /proc/config.gz is decompressed whole (every SRv6 resource asks, several times per
    node and loop).  ``kernel_config_seg6.cache_clear()`` forgets it (tests)."""
    texts = []
    try:
        with gzip.open("/proc/config.gz", "rt", errors="replace") as fh:
            texts.append(fh.read())
    except (OSError, EOFError):
        try:
            with open(f"/boot/config-{platform.release()}", encoding="utf-8", errors="replace") as fh:
                texts.append(fh.read())
        except OSError:
            return None
    for line in texts[0].splitlines():
        if line.startswith("CONFIG_IPV6_SEG6_LWTUNNEL="):
            return line.split("=", 1)[1].strip() in ("y", "m")
        if line.strip() == "# CONFIG_IPV6_SEG6_LWTUNNEL is not set":
            return False
    return False


def encap_mode() -> str:
    """``seg6`` (iproute2 seg6 / seg6local routes) or ``bpf`` (this module), from
    :data:`ENV_MODE` (read on every call) or else from the kernel's config (read once,
    ``seg6`` when it cannot be read)."""
    wanted = os.environ.get(ENV_MODE, "").strip().lower()
    if wanted:
        if wanted not in MODES:
            raise ValueError(f"{ENV_MODE}={wanted!r}: expected one of {', '.join(MODES)}")
        return wanted
    return "bpf" if kernel_config_seg6() is False else "seg6"


# --- what the program pushes -----------------------------------------------------------------
def encap_header(family: int, source: str, segments: Sequence[str]) -> bytes:
    """Outer IPv6 header + SRH for an inner packet of ``family`` (payload length 0: the
    program fills it in).  ``segments`` in SID-list order (first segment first)."""
    if family not in _NEXT_HEADER:
        raise ValueError(f"inner family {family}: expected 4 or 6")
    segs = [ipaddress.IPv6Address(s) for s in segments]
    if not segs:
        raise ValueError("an empty segment list")
    if len(segs) > MAX_SEGMENTS:
        raise ValueError(f"{len(segs)} segments; the kernel lets an eBPF encapsulation push at most {MAX_SEGMENTS}")
    last = len(segs) - 1
    srh = struct.pack("!BBBBBBH", _NEXT_HEADER[family], 2 * len(segs), _SRH_TYPE, last, last, 0, 0)
    srh += b"".join(s.packed for s in reversed(segs))  # the SRH lists segments last first
    outer = struct.pack("!IHBB", 6 << 28, 0, _IPPROTO_ROUTING, 64)
    outer += ipaddress.IPv6Address(source).packed + segs[0].packed
    return outer + srh


def program_name(family: int, source: str, segments: Sequence[str]) -> str:
    """The pinned file's name, which ``ip route`` shows with the route: what it pushes."""
    segs = ",".join(str(ipaddress.IPv6Address(s)) for s in segments)
    name = f"{NAME_PREFIX}{family}={ipaddress.IPv6Address(source)}={segs}"
    if len(name) > NAME_MAX:
        raise ValueError(f"the segment list is too long to be named in a route ({len(name)} characters, at most {NAME_MAX})")
    return name


def parse_name(text: str) -> Optional[Tuple[int, str, List[str]]]:
    """(family, source, segments) from the ``xmit`` text ``ip route`` prints for an npms
    encapsulation (``<name>:[*fsobj]``), None for anything else."""
    name = text.rsplit(":[", 1)[0] if text.endswith("]") else text
    if not name.startswith(NAME_PREFIX):
        return None
    try:
        family_text, source, segs = name[len(NAME_PREFIX):].split("=")
        family = int(family_text)
        if family not in _NEXT_HEADER:
            return None
        return family, str(ipaddress.IPv6Address(source)), [str(ipaddress.IPv6Address(s)) for s in segs.split(",")]
    except ValueError:
        return None


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def program(header: bytes) -> bytes:
    """eBPF (BPF_PROG_TYPE_LWT_XMIT) that pushes ``header`` in front of the packet, fills
    in its payload length, clears the firewall mark (the tenant's mark must not steer the
    outer packet's route lookup) and hands the packet back for routing; DROP if the kernel
    refuses the push."""
    size = len(header)
    if size % 4 or size > MAX_HEADER:
        raise ValueError(f"header of {size} bytes")
    base = -size
    code = [_insn(0xBF, 6, 1)]  # r6 = ctx
    for i in range(0, size, 4):  # the header on the stack, 32 bits at a time
        code.append(_insn(0x62, 10, 0, base + i, int.from_bytes(header[i:i + 4], "little", signed=True)))
    code += [
        _insn(0x61, 2, 6, _SKB_LEN),  # r2 = skb->len
        _insn(0x07, 2, 0, 0, size - 40),  # + what the SRH adds = outer payload length
        _insn(0xDC, 2, 0, 0, 16),  # to network order
        _insn(0x6B, 10, 2, base + 4),  # outer ip6 payload_len
        _insn(0xB7, 2, 0, 0, 0),
        _insn(0x63, 6, 2, _SKB_MARK),  # skb->mark = 0
        _insn(0xBF, 1, 6),
        _insn(0xB7, 2, 0, 0, _BPF_LWT_ENCAP_IP),
        _insn(0xBF, 3, 10),
        _insn(0x07, 3, 0, 0, base),
        _insn(0xB7, 4, 0, 0, size),
        _insn(0x85, 0, 0, 0, _BPF_FUNC_LWT_PUSH_ENCAP),
        _insn(0x15, 0, 0, 2, 0),  # pushed: reroute
        _insn(0xB7, 0, 0, 0, _BPF_DROP),
        _insn(0x95),
        _insn(0xB7, 0, 0, 0, _BPF_LWT_REROUTE),
        _insn(0x95),
    ]
    return b"".join(code)


# --- loading and pinning -------------------------------------------------------------------
def _bpf(cmd: int, attr: bytes) -> int:
    number = _SYSCALL_BPF.get(platform.machine())
    if number is None:
        raise BpfError(f"no bpf() system call number known for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)
    ret = libc.syscall(number, cmd, buf, 128)
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret


def load(header: bytes, name: str = "npms_srv6") -> int:
    """Load the program for ``header``; its file descriptor."""
    code = program(header)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("<IIQQIIQII16s", _BPF_PROG_TYPE_LWT_XMIT, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(license_), 1, len(log), ctypes.addressof(log), 0, 0, name.encode()[:15])
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except BpfError as exc:
        detail = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise BpfError(exc.errno, f"loading the SRv6 encapsulation program failed: {exc.strerror}"
                       + (f" ({' / '.join(detail)})" if detail else "")) from None


def _pin(fd: int, path: str) -> None:
    raw = ctypes.create_string_buffer(path.encode())
    _bpf(_BPF_OBJ_PIN, struct.pack("<QII", ctypes.addressof(raw), fd, 0))


def ensure_bpffs(directory: str = BPF_DIR) -> None:
    """A bpf filesystem mounted at ``directory``."""
    os.makedirs(directory, exist_ok=True)
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 2 and parts[1] == directory and parts[2] == "bpf":
                return
    mount = shutil.which("mount") or "/bin/mount"
    proc = subprocess.run([mount, "-t", "bpf", "bpf", directory], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BpfError(proc.returncode, f"cannot mount a bpf filesystem on {directory}: {proc.stderr.strip()}")


def pin_path(name: str) -> str:
    """The path a route command names (:func:`pinned` swaps in a private copy)."""
    return f"{BPF_DIR}/{name}"


@contextlib.contextmanager
def pinned(pins: Sequence[Tuple[str, bytes]]) -> Iterator[Dict[str, str]]:
    """Load and pin each (name, header) in a private directory for the duration of the
    block; yields {pin_path(name): private path}.  The pins are removed afterwards: a
    route made meanwhile keeps its program."""
    ensure_bpffs()
    private = tempfile.mkdtemp(prefix="p", dir=BPF_DIR)
    made: List[str] = []
    try:
        paths = {}
        for name, header in pins:
            path = os.path.join(private, name)
            fd = load(header)
            try:
                _pin(fd, path)
            finally:
                os.close(fd)
            made.append(path)
            paths[pin_path(name)] = path
        yield paths
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(private)
