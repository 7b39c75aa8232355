# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The eBPF realisation of SRv6 on Linux (kernels without CONFIG_IPV6_SEG6_LWTUNNEL),
without root, bpf() or namespaces.

* what the encapsulation pushes, decoded with struct against RFC 8200 / RFC 8754;
* the eBPF program, run instruction by instruction in a small interpreter of the
  instructions it may use (stack, ctx, the bpf_lwt_push_encap call, its return codes);
* the program names routes carry, and the choice between ``seg6`` and ``bpf``;
* local SIDs and policies in eBPF mode against a fake runner that answers the show
  commands with tests/fixtures/srv6_linux/bpf_*.txt (the node of test_srv6_linux.py,
  realised with local routes, ip rules, the npms_sids nftables map and encap bpf routes).
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import shlex
import struct
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from npms.resources import base
from npms.resources import srv6_bpf as B
from npms.resources import srv6_linux as L
from npms.resources.base import ResourceError
from npms.resources.registry import build
from npms.runner import Runner
from npms_testlib import FakeRunner, capture, outputs_of

SRC = "fc00:12::1"
SEGS = ["fc00:0:2::1", "fc00:0:4::d4"]


def fixture(name: str) -> str:
    return capture("srv6_linux", name)


def text_of(sections: Dict[Tuple[str, ...], str], commands: Sequence[Tuple[str, ...]]) -> str:
    return "".join(f"# {shlex.join(c)}\n{sections[c].strip()}\n" for c in commands)


# --- the header ------------------------------------------------------------------------------
def decode(header: bytes) -> SimpleNamespace:
    """Outer IPv6 header (RFC 8200) and Segment Routing Header (RFC 8754)."""
    first, payload_len, next_header, hop_limit = struct.unpack("!IHBB", header[:8])
    srh_next, ext_len, routing_type, segments_left, last_entry, _flags, _tag = struct.unpack("!BBBBBBH", header[40:48])
    count = (len(header) - 48) // 16
    return SimpleNamespace(
        version=first >> 28, payload_len=payload_len, next_header=next_header, hop_limit=hop_limit,
        source=str(ipaddress.IPv6Address(header[8:24])), destination=str(ipaddress.IPv6Address(header[24:40])),
        srh_next=srh_next, ext_len=ext_len, routing_type=routing_type, segments_left=segments_left,
        last_entry=last_entry, srh_list=[str(ipaddress.IPv6Address(header[48 + 16 * i:64 + 16 * i])) for i in range(count)],
        size=len(header))


def segments(n: int) -> List[str]:
    return [f"fc00:0:{i + 2:x}::1" for i in range(n)]


@pytest.mark.parametrize("family,inner_proto", [(4, 4), (6, 41)], ids=["inner-ipv4", "inner-ipv6"])
@pytest.mark.parametrize("n", [1, 2, 3, B.MAX_SEGMENTS])
def test_encap_header_layout(family, inner_proto, n):
    segs = segments(n)
    h = decode(B.encap_header(family, SRC, segs))
    assert h.size == 40 + 8 + 16 * n
    assert h.version == 6 and h.next_header == 43 and h.hop_limit > 1  # outer IPv6, routing header next
    assert h.source == SRC
    assert h.destination == segs[0]  # the active segment is the first one
    assert h.srh_next == inner_proto
    assert h.routing_type == 4  # Segment Routing Header
    assert h.ext_len == 2 * n  # 8-octet units after the first 8 octets
    assert h.segments_left == h.last_entry == n - 1
    assert h.srh_list == list(reversed(segs))  # Segment List[0] is the last segment


def test_encap_header_takes_any_spelling_of_an_address():
    h = decode(B.encap_header(6, "FC00:12:0::1", ["fc00:0000:0002::0001"]))
    assert h.source == SRC and h.destination == "fc00:0:2::1"


def test_the_largest_header_fits_the_kernels_headroom():
    assert len(B.encap_header(6, SRC, segments(B.MAX_SEGMENTS))) <= 256  # LWT_BPF_MAX_HEADROOM


@pytest.mark.parametrize("segs,message", [
    ([], "empty segment list"),
    (segments(B.MAX_SEGMENTS + 1), f"at most {B.MAX_SEGMENTS}"),
    (["10.0.0.1"], "10.0.0.1"),
])
def test_encap_header_refuses(segs, message):
    with pytest.raises(ValueError, match=message):
        B.encap_header(6, SRC, segs)


# --- the program ---------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
STACK = 512


class Exited(Exception):
    pass


def run_program(code: bytes, skb_len: int, mark: int, push_returns: int) -> SimpleNamespace:
    """Run an LWT_XMIT program on a little-endian machine (x86_64 / aarch64: the ones
    srv6_bpf knows the bpf() call of) for a packet of ``skb_len`` bytes, with the
    bpf_lwt_push_encap helper returning ``push_returns``.  Only the instructions the
    encapsulation needs are known; the verifier's rules that matter here are checked
    (stack bounds, the helper reads only initialised stack, ctx writes only to mark)."""
    assert len(code) % 8 == 0
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    regs: Dict[int, object] = {1: ("ctx", 0), 10: ("stack", STACK)}
    stack = bytearray(STACK)
    written = [False] * STACK
    ctx = {0: skb_len, 8: mark}  # __sk_buff: len at 0, mark at 8
    ctx_writes: Dict[int, int] = {}
    calls = []

    def at(pointer, off, size):
        region, base_off = pointer
        addr = base_off + off
        if region == "stack":
            assert 0 <= addr and addr + size <= STACK, f"stack access out of bounds: {addr}"
        return region, addr

    def store(pointer, off, data: bytes):
        region, addr = at(pointer, off, len(data))
        if region == "stack":
            stack[addr:addr + len(data)] = data
            for i in range(addr, addr + len(data)):
                written[i] = True
        else:
            assert addr == 8 and len(data) == 4, f"the program writes ctx offset {addr}"
            ctx_writes[addr] = int.from_bytes(data, "little")

    pc, steps = 0, 0
    while True:
        steps += 1
        assert steps < 10000 and 0 <= pc < len(insns), "runs off the program"
        op, reg, off, imm = insns[pc]
        dst, src = reg & 0xF, reg >> 4
        pc += 1
        if op == 0xBF:  # mov64 reg
            regs[dst] = regs[src]
        elif op == 0xB7:  # mov64 imm
            regs[dst] = imm & MASK64
        elif op == 0x07:  # add64 imm
            value = regs[dst]
            regs[dst] = (value[0], value[1] + imm) if isinstance(value, tuple) else (value + imm) & MASK64
        elif op == 0x62:  # *(u32 *)(dst + off) = imm
            store(regs[dst], off, (imm & 0xFFFFFFFF).to_bytes(4, "little"))
        elif op == 0x63:  # *(u32 *)(dst + off) = src
            store(regs[dst], off, (regs[src] & 0xFFFFFFFF).to_bytes(4, "little"))
        elif op == 0x6B:  # *(u16 *)(dst + off) = src
            store(regs[dst], off, (regs[src] & 0xFFFF).to_bytes(2, "little"))
        elif op == 0x61:  # dst = *(u32 *)(src + off)
            region, addr = at(regs[src], off, 4)
            if region == "ctx":
                regs[dst] = ctx[addr]
            else:
                assert all(written[addr:addr + 4]), "reads uninitialised stack"
                regs[dst] = int.from_bytes(stack[addr:addr + 4], "little")
        elif op == 0xDC:  # to big endian
            assert imm == 16
            regs[dst] = int.from_bytes((regs[dst] & 0xFFFF).to_bytes(2, "little"), "big")
        elif op == 0x85:  # call
            r3, r4 = regs[3], regs[4]
            assert isinstance(r3, tuple) and r3[0] == "stack"
            start = r3[1]
            assert all(written[start:start + r4]), "the helper would read uninitialised stack"
            calls.append(SimpleNamespace(helper=imm, ctx=regs[1], mode=regs[2], data=bytes(stack[start:start + r4]),
                                         mark_then=ctx_writes.get(8, mark)))
            regs[0] = push_returns & MASK64
            for r in (1, 2, 3, 4, 5):
                regs.pop(r, None)
        elif op == 0x15:  # if dst == imm goto pc + off
            if regs[dst] == imm & MASK64:
                pc += off
        elif op == 0x95:  # exit
            return SimpleNamespace(ret=regs[0], calls=calls, mark=ctx_writes.get(8, mark), instructions=len(insns))
        else:
            raise AssertionError(f"instruction {pc - 1}: opcode 0x{op:02x} is not one the encapsulation needs")


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("n", [1, 3, B.MAX_SEGMENTS])
@pytest.mark.parametrize("skb_len", [20, 1280, 1500])
def test_program_pushes_the_header_with_its_payload_length_and_reroutes(family, n, skb_len):
    header = B.encap_header(family, SRC, segments(n))
    run = run_program(B.program(header), skb_len=skb_len, mark=0x101, push_returns=0)
    assert len(run.calls) == 1
    call = run.calls[0]
    assert call.helper == 73  # bpf_lwt_push_encap
    assert call.ctx == ("ctx", 0) and call.mode == 2  # BPF_LWT_ENCAP_IP
    pushed = decode(call.data)
    assert pushed.payload_len == skb_len + 8 + 16 * n  # the inner packet + the SRH
    assert call.data[:4] + call.data[6:] == header[:4] + header[6:]  # and otherwise exactly the header
    assert pushed.source == SRC and pushed.srh_list == list(reversed(segments(n)))
    assert run.mark == 0  # the tenant's mark must not steer the outer packet
    assert run.ret == 128  # BPF_LWT_REROUTE: the kernel routes the encapsulated packet


@pytest.mark.parametrize("error", [-1, -22, -7])
def test_program_drops_when_the_kernel_refuses_the_push(error):
    run = run_program(B.program(B.encap_header(4, SRC, SEGS)), skb_len=64000, mark=0, push_returns=error)
    assert len(run.calls) == 1 and run.ret == 2  # BPF_DROP


def test_program_is_within_the_kernels_instruction_limit():
    longest = B.program(B.encap_header(6, SRC, segments(B.MAX_SEGMENTS)))
    assert len(longest) % 8 == 0 and len(longest) // 8 <= 4096  # BPF_MAXINSNS


@pytest.mark.parametrize("size", [42, 260])
def test_program_refuses_a_header_it_cannot_store(size):
    with pytest.raises(ValueError, match=f"header of {size} bytes"):
        B.program(bytes(size))


# --- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,source,segs", [
    (4, SRC, SEGS),
    (6, SRC, ["fc00:0:3::1"]),
    (6, "2001:db8::1", segments(B.MAX_SEGMENTS)),
])
def test_program_name_round_trip(family, source, segs):
    name = B.program_name(family, source, segs)
    assert name.startswith("npms_srv6_")
    assert B.parse_name(name) == (family, source, segs)
    # what iproute2 prints for a route made with `encap bpf xmit pinned <dir>/<name>`
    assert B.parse_name(f"{name}:[*fsobj]") == (family, source, segs)


def test_program_name_is_canonical():
    assert B.program_name(6, "FC00:12:0::1", ["fc00:0000:0002::0001"]) == "npms_srv6_6=fc00:12::1=fc00:0:2::1"


@pytest.mark.parametrize("text", [
    "", "prog:[*fsobj]", "lwt_xmit:[section]", "npms_srv6_5=fc00::1=fc00::2:[*fsobj]", "npms_srv6_6=fc00::1:[*fsobj]",
    "npms_srv6_6=nonsense=fc00::2:[*fsobj]", "npms_srv6_6=fc00::1=fc00::2,10.0.0.1:[*fsobj]", "npms_srv6_x=fc00::1=fc00::2",
    "<unknown>",
])
def test_parse_name_ignores_foreign_programs(text):
    assert B.parse_name(text) is None


def test_names_too_long_for_a_route_are_refused():
    long_segs = [str(ipaddress.IPv6Address(f"fc00:{i:x}:1234:5678:9abc:def0:1234:{i + 1:x}")) for i in range(7)]
    with pytest.raises(ValueError, match="too long to be named"):
        B.program_name(6, "fc00:1234:5678:9abc:def0:1234:5678:9abc", long_segs)


def address_of_length(length: int) -> str:
    """An IPv6 address that prints with ``length`` characters (15..39: eight non-zero groups)."""
    widths = [1] * 8
    extra = length - 15
    for i in range(8):
        widths[i] += min(3, extra)
        extra -= min(3, extra)
    address = ":".join("f" * w for w in widths)
    assert str(ipaddress.IPv6Address(address)) == address and len(address) == length
    return address


def segments_named_in(length: int) -> List[str]:
    """Segments whose IPv6 program name (source SRC) is ``length`` characters long."""
    rest = length - len(B.program_name(6, SRC, ["::1"])) + 3  # the name without its segments
    segs = []
    while rest > 39 + 1 + 15:
        segs.append(address_of_length(39))
        rest -= 40
    if rest > 39:
        segs.append(address_of_length(rest - 1 - 15))
        rest = 15
    segs.append(address_of_length(rest))
    assert len(B.program_name(6, SRC, segs)) == length
    return segs


def test_every_accepted_name_comes_back_whole_from_ip_route():
    for length in range(200, 256):
        try:
            segs = segments_named_in(length)
            name = B.program_name(6, SRC, segs)
        except ValueError:
            continue  # refused up front: fine
        # iproute2: snprintf(annotation, 256, "%s:[%s]", basename(file), "*fsobj"); ip route prints it
        printed = f"{name}:[*fsobj]"[:255]
        assert B.parse_name(printed) == (6, SRC, segs), f"a {length}-character name"


def test_names_of_246_characters_come_back_whole():
    segs = segments_named_in(246)
    assert B.parse_name(f"{B.program_name(6, SRC, segs)}:[*fsobj]"[:255]) == (6, SRC, segs)


# --- seg6 or bpf ---------------------------------------------------------------------------
CONFIG_CASES = [
    # (/proc/config.gz, /boot/config-<release>, expected); None: unreadable
    ("CONFIG_IPV6=y\nCONFIG_IPV6_SEG6_LWTUNNEL=y\nCONFIG_IPV6_SEG6_HMAC=y\n", None, True),
    ("CONFIG_IPV6_SEG6_LWTUNNEL=m\n", None, True),
    ("CONFIG_IPV6=y\n# CONFIG_IPV6_SEG6_LWTUNNEL is not set\nCONFIG_LWTUNNEL_BPF=y\n", None, False),
    ("CONFIG_IPV6=y\nCONFIG_IPV6_SEG6_HMAC=y\n", None, False),  # not mentioned: not built
    (None, "CONFIG_IPV6_SEG6_LWTUNNEL=y\n", True),
    (None, "# CONFIG_IPV6_SEG6_LWTUNNEL is not set\n", False),
    (None, None, None),
]


def fake_config(monkeypatch, proc: Optional[str], boot: Optional[str], reads: Optional[List[str]] = None) -> None:
    release = "6.18.0-npms"
    files = {"/proc/config.gz": proc, f"/boot/config-{release}": boot}

    def opener(path, *args, **kwargs):
        if reads is not None:
            reads.append(path)
        text = files.get(str(path))
        if text is None:
            raise PermissionError(13, "Permission denied", path) if path in files else FileNotFoundError(2, "No such file", path)
        return contextlib.nullcontext(SimpleNamespace(read=lambda: text))

    monkeypatch.setattr(B, "gzip", SimpleNamespace(open=opener))
    monkeypatch.setattr(B, "open", opener, raising=False)
    monkeypatch.setattr(B.platform, "release", lambda: release)
    B.kernel_config_seg6.cache_clear()  # the kernel's config is read once per process: this is another kernel


@pytest.fixture(autouse=True)
def no_config_of_another_test():
    """A faked kernel config read by one test is not what the next one (or the rest of
    the session, this machine's kernel) sees."""
    B.kernel_config_seg6.cache_clear()
    yield
    B.kernel_config_seg6.cache_clear()


@pytest.mark.parametrize("proc,boot,expected", CONFIG_CASES)
def test_kernel_config_seg6(monkeypatch, proc, boot, expected):
    fake_config(monkeypatch, proc, boot)
    assert B.kernel_config_seg6() is expected


@pytest.mark.parametrize("proc,boot,expected", CONFIG_CASES)
def test_encap_mode_follows_the_kernel(monkeypatch, proc, boot, expected):
    monkeypatch.delenv(B.ENV_MODE, raising=False)
    fake_config(monkeypatch, proc, boot)
    # only a kernel known to lack seg6 routes gets eBPF
    assert B.encap_mode() == ("bpf" if expected is False else "seg6")


@pytest.mark.parametrize("proc,boot,expected", [c for c in CONFIG_CASES if c[0] is not None or c[1] is not None])
def test_the_kernel_config_is_read_once(monkeypatch, proc, boot, expected):
    """/proc/config.gz (or /boot/config-*) is decompressed once per process, however
    often the resources ask; NPMS_SRV6_ENCAP is still read on every call."""
    reads: List[str] = []
    fake_config(monkeypatch, proc, boot, reads)
    monkeypatch.delenv(B.ENV_MODE, raising=False)
    assert B.kernel_config_seg6() is expected
    first = list(reads)
    assert first[0] == "/proc/config.gz"
    assert B.kernel_config_seg6() is expected
    assert B.encap_mode() == B.encap_mode() == ("bpf" if expected is False else "seg6")
    assert reads == first  # read once: the file (or files, /proc first) of the first call
    monkeypatch.setenv(B.ENV_MODE, "seg6" if expected is False else "bpf")  # set after the config was cached
    assert B.encap_mode() == ("seg6" if expected is False else "bpf")
    monkeypatch.delenv(B.ENV_MODE)
    assert B.encap_mode() == ("bpf" if expected is False else "seg6")
    assert reads == first
    B.kernel_config_seg6.cache_clear()  # forgotten: read again
    assert B.kernel_config_seg6() is expected and reads == first * 2


@pytest.mark.parametrize("env,expected", [("bpf", "bpf"), ("seg6", "seg6"), (" BPF ", "bpf"), ("Seg6", "seg6")])
@pytest.mark.parametrize("kernel_has_seg6", [True, False])
def test_env_overrides_the_kernel(monkeypatch, env, expected, kernel_has_seg6):
    reads: List[str] = []
    fake_config(monkeypatch, "CONFIG_IPV6_SEG6_LWTUNNEL=y\n" if kernel_has_seg6 else "", None, reads)
    monkeypatch.setenv(B.ENV_MODE, env)
    assert B.encap_mode() == expected
    assert reads == []  # the kernel's config is not even read


def test_env_with_an_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv(B.ENV_MODE, "vpp")
    with pytest.raises(ValueError, match="NPMS_SRV6_ENCAP='vpp': expected one of seg6, bpf"):
        B.encap_mode()
    with pytest.raises(ValueError):
        build("srv6_policy", "linux").encap  # noqa: B018 -- the resource asks when first used


@pytest.mark.parametrize("name", ["srv6_localsid", "srv6_policy"])
def test_resources_take_the_mode_from_env_or_from_their_setting(monkeypatch, name):
    monkeypatch.setenv(B.ENV_MODE, "bpf")
    assert build(name, "linux").encap == "bpf"
    monkeypatch.setenv(B.ENV_MODE, "seg6")
    res = build(name, "linux")
    assert res.encap == "seg6"
    res.encap = "bpf"
    assert res.encap == "bpf"
    with pytest.raises(ValueError, match="encap must be one of seg6, bpf"):
        res.encap = "ebpf"


# --- a fake node -------------------------------------------------------------------------------
def bpf_resource(name: str, runner: Optional[Runner] = None) -> base.Resource:
    res = build(name, "linux", runner=runner or FakeRunner())
    res.encap = "bpf"
    return res


@pytest.fixture(autouse=True)
def no_mode_from_this_machine(monkeypatch):
    """Every resource here is set to bpf explicitly; a test that forgets would see seg6."""
    monkeypatch.setenv(B.ENV_MODE, "seg6")


# --- local SIDs -------------------------------------------------------------------------------
NODE_SIDS = [
    {"sid": "fc00:0:1::1", "behavior": "End"},
    {"sid": "fc00:0:1::2", "behavior": "End.X", "nexthop": "fc00:12::2", "interface": "a0"},
    {"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 100},
    {"sid": "fc00:0:1::d4", "behavior": "End.DX4", "nexthop": "10.1.0.2", "interface": "c0"},
    {"sid": "fc00:0:1::d6", "behavior": "End.DX6", "nexthop": "fc00:13::2", "interface": "b0"},
]
SID_SHOW = L.Srv6LocalSidLinux.SHOW_BPF
SEG6_ON = shlex.join(L.SEG6_ON)
NFT_TABLE = "nft -f - <<'EOF'\n" + L.nft_sids_script() + "EOF"
M = {s["sid"]: L.sid_mark(s["sid"]) for s in NODE_SIDS}
EMPTY_NODE = {
    L.ALL_V6: "[]", L.ALL_V4: "[]",
    L.RULES_V4: '[{"priority":0,"src":"all","table":"local"},{"priority":32766,"src":"all","table":"main"}]',
    L.RULES_V6: '[{"priority":0,"src":"all","table":"local"},{"priority":32766,"src":"all","table":"main"}]',
    L.SEG6_SYSCTLS: "net.ipv6.conf.all.seg6_enabled = 0\nnet.ipv6.conf.default.seg6_enabled = 0\nnet.ipv6.conf.lo.seg6_enabled = 0\n",
    L.TUNSRC: '[{"tunsrc":"::"}]',
}


def sid_sections() -> Dict[Tuple[str, ...], str]:
    return outputs_of(fixture("bpf_localsid"))


def test_fixture_marks_are_the_drivers():
    """The capture's rules, tables and map elements use the marks the driver computes."""
    text = fixture("bpf_localsid")
    for sid, mark in M.items():
        if sid != "fc00:0:1::1":
            assert f'"fwmark":"0x{mark:x}"' in text and f'["{sid}", {mark}]' in text, sid


def test_parse_bpf_capture():
    res = bpf_resource("srv6_localsid")
    assert res.parse(fixture("bpf_localsid")) == NODE_SIDS
    out = base.run(bpf_resource("srv6_localsid"), None, "parsed", running_config=fixture("bpf_localsid"))
    assert out.parsed == NODE_SIDS


def test_parse_bpf_claims_only_what_npms_made():
    """Policy routes, srv6_route routes, foreign rules (pref 100 marks 0x20000007 but is not
    protocol 202) and kernel local routes are not SIDs."""
    sec = sid_sections()
    v6 = json.loads(sec[L.ALL_V6]) + [{"type": "local", "dst": "fc00:0:1::99", "dev": "lo", "table": "local",
                                       "protocol": "kernel", "metric": 0, "flags": [], "pref": "medium"}]
    sec[L.ALL_V6] = json.dumps(v6)
    items = bpf_resource("srv6_localsid").parse(text_of(sec, SID_SHOW))
    assert [i["sid"] for i in items] == [s["sid"] for s in NODE_SIDS]


def test_gathered_reads_the_show_commands_and_says_how_to_parse_them():
    runner = FakeRunner(overrides=sid_sections())
    out = base.run(bpf_resource("srv6_localsid", runner), None, "gathered")
    assert out.gathered == NODE_SIDS
    assert runner.ran == [] and set(runner.reads) == set(SID_SHOW)
    assert out.facts == {"srv6_encap": "bpf", "show_commands": [shlex.join(c) for c in SID_SHOW]}
    # state parsed takes those commands' outputs, each under '# <command>'
    saved = "".join(f"# {c}\n{runner.outputs[tuple(shlex.split(c))]}" for c in out.facts["show_commands"])
    assert base.run(bpf_resource("srv6_localsid"), None, "parsed", running_config=saved).parsed == NODE_SIDS


def test_gathered_in_seg6_mode_says_so():
    out = base.run(build("srv6_localsid", "linux", runner=FakeRunner("localsid_route")), None, "gathered")
    assert out.facts == {"srv6_encap": "seg6", "show_commands": ["ip -j -6 route show table main proto 202"]}


def test_parse_bpf_needs_every_section():
    sec = sid_sections()
    del sec[L.NFT_SIDS_SHOW]
    with pytest.raises(ResourceError, match="missing the output of 'nft -j list map inet npms_sids sids'"):
        bpf_resource("srv6_localsid").parse(text_of(sec, [c for c in SID_SHOW if c != L.NFT_SIDS_SHOW]))


def _drop_route(sec, family, table):
    argv = L.ALL_V4 if family == 4 else L.ALL_V6
    sec[argv] = json.dumps([r for r in json.loads(sec[argv]) if r.get("table") != str(table)])


def _drop_element(sec, sid):
    doc = json.loads(sec[L.NFT_SIDS_SHOW])
    for entry in doc["nftables"]:
        if "map" in entry:
            entry["map"]["elem"] = [e for e in entry["map"]["elem"] if e[0] != sid]
    sec[L.NFT_SIDS_SHOW] = json.dumps(doc)


def _drop_rule(sec, family, mark):
    argv = L.RULES_V4 if family == 4 else L.RULES_V6
    sec[argv] = json.dumps([r for r in json.loads(sec[argv]) if r.get("fwmark") != f"0x{mark:x}"])


BROKEN = [
    # (what, sid, edit, note, the command that puts the part back)
    ("End.X without its route", "fc00:0:1::2", lambda s: _drop_route(s, 6, M["fc00:0:1::2"]),
     f"no default route via the next hop in table {M['fc00:0:1::2']}",
     f"ip -6 route replace default via fc00:12::2 dev a0 table {M['fc00:0:1::2']} proto 202"),
    ("End.DX4 without its route", "fc00:0:1::d4", lambda s: _drop_route(s, 4, M["fc00:0:1::d4"]),
     f"no default route via the next hop in table {M['fc00:0:1::d4']}",
     f"ip -4 route replace default via 10.1.0.2 dev c0 table {M['fc00:0:1::d4']} proto 202"),
    ("End.DT6 not marked", "fc00:0:1::6", lambda s: _drop_element(s, "fc00:0:1::6"),
     "the nftables map npms_sids sids does not mark the SID's packets", f"nft add element inet npms_sids sids "
     f"'{{ fc00:0:1::6 : 0x{M['fc00:0:1::6']:08x} }}'"),
    ("End.DX6 not marked", "fc00:0:1::d6", lambda s: _drop_element(s, "fc00:0:1::d6"),
     "the nftables map npms_sids sids does not mark the SID's packets", f"nft add element inet npms_sids sids "
     f"'{{ fc00:0:1::d6 : 0x{M['fc00:0:1::d6']:08x} }}'"),
    ("End.X without its rule", "fc00:0:1::2", lambda s: _drop_rule(s, 6, M["fc00:0:1::2"]), "rule",
     f"ip -6 rule add pref 9001 fwmark 0x{M['fc00:0:1::2']:x} lookup {M['fc00:0:1::2']} proto 202"),
]


@pytest.mark.parametrize("what,sid,edit,note,repair", BROKEN)
def test_a_sid_missing_a_part_is_incomplete(what, sid, edit, note, repair):
    sec = sid_sections()
    edit(sec)
    items = {i["sid"]: i for i in bpf_resource("srv6_localsid").parse(text_of(sec, SID_SHOW))}
    assert note in items[sid].get("incomplete", ""), what
    assert all("incomplete" not in i for s, i in items.items() if s != sid), "the others are fine"


def test_deleting_a_sid_without_its_rule_removes_its_element():
    sec = sid_sections()
    _drop_rule(sec, 6, M["fc00:0:1::2"])
    out = base.run(bpf_resource("srv6_localsid", FakeRunner(overrides=sec)), [{"sid": "fc00:0:1::2"}], "deleted", check_mode=True)
    assert _element("fc00:0:1::2", M["fc00:0:1::2"], "delete") in out.commands


@pytest.mark.parametrize("what,sid,edit,note,repair", BROKEN)
def test_replaced_repairs_a_sid_missing_a_part(what, sid, edit, note, repair):
    sec = sid_sections()
    edit(sec)
    runner = FakeRunner(overrides=sec)
    out = base.run(bpf_resource("srv6_localsid", runner), [s for s in NODE_SIDS if s["sid"] == sid], "replaced")
    assert repair in out.commands and runner.ran == out.commands
    assert out.commands[-1] == f"ip -6 route add local {sid}/128 dev lo table local proto 202"  # traffic comes last
    # nothing of the other SIDs is touched
    others = [s["sid"] for s in NODE_SIDS if s["sid"] != sid]
    assert not any(f"{o}/128" in c or f"{o} " in c or f"0x{M[o]:x}" in c for o in others if o in M for c in out.commands)


def test_seg6_disabled_on_an_interface_is_reported_and_replaced_enables_it():
    sec = sid_sections()
    sec[L.SEG6_SYSCTLS] = sec[L.SEG6_SYSCTLS].replace("net.ipv6.conf.c0.seg6_enabled = 1", "net.ipv6.conf.c0.seg6_enabled = 0")
    items = bpf_resource("srv6_localsid").parse(text_of(sec, SID_SHOW))
    assert all("seg6_enabled is off on c0" in i["incomplete"] for i in items)
    runner = FakeRunner(overrides=sec)
    out = base.run(bpf_resource("srv6_localsid", runner), [{"sid": "fc00:0:1::1"}], "replaced")
    assert SEG6_ON in out.commands and runner.ran == out.commands


def test_merged_repairs_an_incomplete_sid():
    sec = sid_sections()
    _drop_element(sec, "fc00:0:1::d6")
    out = base.run(bpf_resource("srv6_localsid", FakeRunner(overrides=sec)),
                   [s for s in NODE_SIDS if s["sid"] == "fc00:0:1::d6"], "merged", check_mode=True)
    assert out.changed and "nft add element inet npms_sids sids '{ fc00:0:1::d6 : " + f"0x{M['fc00:0:1::d6']:08x}" + " }'" in out.commands


def _element(sid, mark, verb="add"):
    if verb == "add":
        return f"nft add element inet npms_sids sids '{{ {sid} : 0x{mark:08x} }}'"
    return f"nft delete element inet npms_sids sids '{{ {sid} }}'"


MX, M4, M6T = (L.sid_mark(s) for s in ("fc00:0:1::a", "fc00:0:1::a4", "fc00:0:1::a6"))
SID_PLANS = [
    # (capture sections, state, config, commands)
    ("node", "merged", NODE_SIDS, []),
    ("node", "replaced", [{"sid": "fc00:0:1::1"}], []),
    # End: the kernel's own SRH processing, a local route is all it needs
    ("node", "merged", [{"sid": "fc00:0:1::7"}],
     [SEG6_ON, "ip -6 route add local fc00:0:1::7/128 dev lo table local proto 202"]),
    # End.X: mark -> rule (pref 9001) -> table with the next hop; the local route last
    ("node", "merged", [{"sid": "fc00:0:1::a", "behavior": "End.X", "nexthop": "fe80::2", "interface": "a0"}],
     [SEG6_ON, NFT_TABLE, _element("fc00:0:1::a", MX),
      f"ip -6 route replace default via fe80::2 dev a0 table {MX} proto 202",
      f"ip -6 rule add pref 9001 fwmark 0x{MX:x} lookup {MX} proto 202",
      "ip -6 route add local fc00:0:1::a/128 dev lo table local proto 202"]),
    # End.DX4: the decapsulated IPv4 packet keeps its mark: an IPv4 rule and table
    ("node", "merged", [{"sid": "fc00:0:1::a4", "behavior": "End.DX4", "nexthop": "10.1.0.9", "interface": "c0"}],
     [SEG6_ON, NFT_TABLE, _element("fc00:0:1::a4", M4),
      f"ip -4 route replace default via 10.1.0.9 dev c0 table {M4} proto 202",
      f"ip -4 rule add pref 9000 fwmark 0x{M4:x} lookup {M4} proto 202",
      "ip -6 route add local fc00:0:1::a4/128 dev lo table local proto 202"]),
    # End.DT6: the rule looks the inner packet up in the SID's table
    ("node", "merged", [{"sid": "fc00:0:1::a6", "behavior": "End.DT6", "table": 300}],
     [SEG6_ON, NFT_TABLE, _element("fc00:0:1::a6", M6T),
      f"ip -6 rule add pref 9000 fwmark 0x{M6T:x} lookup 300 proto 202",
      "ip -6 route add local fc00:0:1::a6/128 dev lo table local proto 202"]),
    # a changed SID: its parts go (local route first), then come back
    ("node", "merged", [{"sid": "fc00:0:1::6", "behavior": "End.DT6", "table": 200}],
     ["ip -6 route del local fc00:0:1::6/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9000 fwmark 0x{M['fc00:0:1::6']:x} proto 202",
      _element("fc00:0:1::6", M["fc00:0:1::6"], "delete"),
      SEG6_ON, NFT_TABLE, _element("fc00:0:1::6", M["fc00:0:1::6"]),
      f"ip -6 rule add pref 9000 fwmark 0x{M['fc00:0:1::6']:x} lookup 200 proto 202",
      "ip -6 route add local fc00:0:1::6/128 dev lo table local proto 202"]),
    # deleting: the reverse; other marking SIDs remain, so the table stays
    ("node", "deleted", [{"sid": "fc00:0:1::d4"}, {"sid": "fc00:0:1::99"}],
     ["ip -6 route del local fc00:0:1::d4/128 dev lo table local proto 202",
      f"ip -4 rule del pref 9000 fwmark 0x{M['fc00:0:1::d4']:x} proto 202",
      f"ip -4 route del default table {M['fc00:0:1::d4']} proto 202",
      _element("fc00:0:1::d4", M["fc00:0:1::d4"], "delete")]),
    # no marking SID left: the nftables table goes after the last change
    ("node", "overridden", [{"sid": "fc00:0:1::1"}],
     ["ip -6 route del local fc00:0:1::2/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9001 fwmark 0x{M['fc00:0:1::2']:x} proto 202",
      f"ip -6 route del default table {M['fc00:0:1::2']} proto 202",
      _element("fc00:0:1::2", M["fc00:0:1::2"], "delete"),
      "ip -6 route del local fc00:0:1::6/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9000 fwmark 0x{M['fc00:0:1::6']:x} proto 202",
      _element("fc00:0:1::6", M["fc00:0:1::6"], "delete"),
      "ip -6 route del local fc00:0:1::d4/128 dev lo table local proto 202",
      f"ip -4 rule del pref 9000 fwmark 0x{M['fc00:0:1::d4']:x} proto 202",
      f"ip -4 route del default table {M['fc00:0:1::d4']} proto 202",
      _element("fc00:0:1::d4", M["fc00:0:1::d4"], "delete"),
      "ip -6 route del local fc00:0:1::d6/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9000 fwmark 0x{M['fc00:0:1::d6']:x} proto 202",
      f"ip -6 route del default table {M['fc00:0:1::d6']} proto 202",
      _element("fc00:0:1::d6", M["fc00:0:1::d6"], "delete"),
      "nft delete table inet npms_sids"]),
    ("node", "deleted", None,
     ["ip -6 route del local fc00:0:1::1/128 dev lo table local proto 202",
      "ip -6 route del local fc00:0:1::2/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9001 fwmark 0x{M['fc00:0:1::2']:x} proto 202",
      f"ip -6 route del default table {M['fc00:0:1::2']} proto 202",
      _element("fc00:0:1::2", M["fc00:0:1::2"], "delete"),
      "ip -6 route del local fc00:0:1::6/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9000 fwmark 0x{M['fc00:0:1::6']:x} proto 202",
      _element("fc00:0:1::6", M["fc00:0:1::6"], "delete"),
      "ip -6 route del local fc00:0:1::d4/128 dev lo table local proto 202",
      f"ip -4 rule del pref 9000 fwmark 0x{M['fc00:0:1::d4']:x} proto 202",
      f"ip -4 route del default table {M['fc00:0:1::d4']} proto 202",
      _element("fc00:0:1::d4", M["fc00:0:1::d4"], "delete"),
      "ip -6 route del local fc00:0:1::d6/128 dev lo table local proto 202",
      f"ip -6 rule del pref 9000 fwmark 0x{M['fc00:0:1::d6']:x} proto 202",
      f"ip -6 route del default table {M['fc00:0:1::d6']} proto 202",
      _element("fc00:0:1::d6", M["fc00:0:1::d6"], "delete"),
      "nft delete table inet npms_sids"]),
    # an empty node: End needs no nftables at all
    ("empty", "merged", [{"sid": "fc00:0:1::1"}],
     [SEG6_ON, "ip -6 route add local fc00:0:1::1/128 dev lo table local proto 202"]),
]


@pytest.mark.parametrize("node,state,config,commands", SID_PLANS, ids=[f"{p[0]}-{p[1]}-{i}" for i, p in enumerate(SID_PLANS)])
@pytest.mark.parametrize("check_mode", [True, False], ids=["check", "apply"])
def test_sid_plan_and_commands(node, state, config, commands, check_mode):
    runner = FakeRunner(overrides=sid_sections() if node == "node" else EMPTY_NODE)
    out = base.run(bpf_resource("srv6_localsid", runner), copy.deepcopy(config), state, check_mode=check_mode)
    assert out.commands == commands
    assert out.changed == bool(commands)
    assert runner.ran == ([] if check_mode else commands)


def test_rendered_sids_need_no_node():
    runner = FakeRunner()
    out = base.run(bpf_resource("srv6_localsid", runner), [NODE_SIDS[1]], "rendered")
    mark = M["fc00:0:1::2"]
    assert out.rendered == [SEG6_ON, NFT_TABLE, _element("fc00:0:1::2", mark),
                            f"ip -6 route replace default via fc00:12::2 dev a0 table {mark} proto 202",
                            f"ip -6 rule add pref 9001 fwmark 0x{mark:x} lookup {mark} proto 202",
                            "ip -6 route add local fc00:0:1::2/128 dev lo table local proto 202"]
    assert runner.ran == [] and runner.reads == []


def test_the_mark_ties_map_rule_and_table_together():
    """What makes the SID work: the nftables element marks with M, the rule matches M and
    looks up table M, which holds the next hop."""
    out = base.run(bpf_resource("srv6_localsid"), [NODE_SIDS[4]], "rendered")
    words = [shlex.split(c) for c in out.rendered]
    element = next(w for w in words if w[:3] == ["nft", "add", "element"])
    mark = int(element[-1].split(":")[-1].strip(" }"), 16)
    rule = next(w for w in words if w[2:4] == ["rule", "add"])
    route = next(w for w in words if w[2:4] == ["route", "replace"])
    assert L.is_sid_mark(mark)
    assert int(rule[rule.index("fwmark") + 1], 16) == mark and int(rule[rule.index("lookup") + 1]) == mark
    assert int(route[route.index("table") + 1]) == mark and route[route.index("via") + 1] == "fc00:13::2"


def test_sids_whose_marks_collide_are_refused():
    seen: Dict[int, str] = {}
    pair = None
    for i in range(1, 400000):
        sid = str(ipaddress.IPv6Address("fc00:0:1::") + i)
        mark = L.sid_mark(sid)
        if mark in seen:
            pair = (seen[mark], sid)
            break
        seen[mark] = sid
    assert pair, "no two SIDs with one mark found"
    config = [{"sid": pair[0], "behavior": "End.DT6", "table": 10}, {"sid": pair[1], "behavior": "End.DT6", "table": 20}]
    runner = FakeRunner()
    with pytest.raises(ResourceError, match=f"sid {pair[1]}: its mark and table 0x{L.sid_mark(pair[1]):x}"):
        base.run(bpf_resource("srv6_localsid", runner), config, "rendered")
    # End SIDs mark nothing: they may share
    base.run(bpf_resource("srv6_localsid", runner), [{"sid": pair[0]}, {"sid": pair[1]}], "rendered")


def test_failed_sid_step_is_rolled_back_and_the_new_table_removed():
    runner = FakeRunner(overrides=EMPTY_NODE, fail=["rule add"])
    config = [{"sid": "fc00:0:1::a", "behavior": "End.X", "nexthop": "fe80::2", "interface": "a0"}]
    with pytest.raises(ResourceError) as err:
        base.run(bpf_resource("srv6_localsid", runner), config, "merged")
    assert err.value.rolled_back and "add sid=fc00:0:1::a failed" in str(err.value)
    assert runner.ran == [SEG6_ON, NFT_TABLE, _element("fc00:0:1::a", MX),
                          f"ip -6 route replace default via fe80::2 dev a0 table {MX} proto 202",
                          f"ip -6 rule add pref 9001 fwmark 0x{MX:x} lookup {MX} proto 202",
                          # undone, newest first
                          f"ip -6 route del default table {MX} proto 202",
                          _element("fc00:0:1::a", MX, "delete"),
                          # the table did not exist before the task
                          "nft delete table inet npms_sids"]


def test_failed_sid_change_undoes_the_earlier_ones_and_keeps_a_table_that_was_there():
    runner = FakeRunner(overrides=sid_sections(), fail=["fc00:0:1::8/128"])
    with pytest.raises(ResourceError) as err:
        base.run(bpf_resource("srv6_localsid", runner), [{"sid": "fc00:0:1::7"}, {"sid": "fc00:0:1::8"}], "merged")
    assert err.value.rolled_back
    assert runner.ran == [SEG6_ON, "ip -6 route add local fc00:0:1::7/128 dev lo table local proto 202",
                          SEG6_ON, "ip -6 route add local fc00:0:1::8/128 dev lo table local proto 202",
                          "ip -6 route del local fc00:0:1::7/128 dev lo table local proto 202"]


# --- policies -------------------------------------------------------------------------------
NODE_POLICIES = [
    {"bsid": "fc00:0:1:b::a", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 1}], "encap_source": SRC},
    {"bsid": "fc00:0:1:b::b", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d4"], "weight": 1}], "encap_source": SRC},
    {"bsid": "fc00:0:1:b::c", "segment_lists": [{"segments": ["fc00:0:2::1", "fc00:0:4::d4"], "weight": 1},
                                                {"segments": ["fc00:0:3::1", "fc00:0:4::d4"], "weight": 3}], "encap_source": SRC},
]
POLICY_SHOW = L.Srv6PolicyLinux.SHOW


def pin(family, source, segs):
    return B.pin_path(B.program_name(family, source, segs))


class FakePins:
    """Stands in for srv6_bpf.pinned: records what each command would load, maps the
    route's pin path to a private one, loads nothing."""

    def __init__(self, tmp_path, fail: Optional[Exception] = None):
        self.tmp_path = tmp_path
        self.fail = fail
        self.calls: List[Tuple[Tuple[str, bytes], ...]] = []

    @contextlib.contextmanager
    def __call__(self, pins):
        self.calls.append(tuple(pins))
        if self.fail is not None:
            raise self.fail
        yield {B.pin_path(name): str(self.tmp_path / "p1" / name) for name, _header in pins}


@pytest.fixture
def pins(monkeypatch, tmp_path):
    fake = FakePins(tmp_path)
    monkeypatch.setattr(B, "pinned", fake)
    return fake


def test_parse_bpf_policies():
    res = bpf_resource("srv6_policy")
    assert res.parse(fixture("bpf_policy")) == NODE_POLICIES  # no End.B6.Encaps route is missed
    out = base.run(bpf_resource("srv6_policy"), None, "parsed", running_config=fixture("bpf_policy"))
    assert out.parsed == NODE_POLICIES


def test_policies_on_the_node_are_not_changed_again(pins):
    runner = FakeRunner("bpf_policy")
    out = base.run(bpf_resource("srv6_policy", runner), copy.deepcopy(NODE_POLICIES), "merged")
    assert not out.changed and out.commands == [] and runner.ran == [] and pins.calls == []
    assert out.facts == {"srv6_encap": "bpf", "show_commands": [shlex.join(c) for c in POLICY_SHOW]}
    out = base.run(bpf_resource("srv6_policy", FakeRunner("bpf_policy")),
                   [{k: v for k, v in p.items() if k != "encap_source"} for p in NODE_POLICIES], "overridden")
    assert not out.changed


def _policy_sections(edit=None, tunsrc=SRC):
    sec = outputs_of(fixture("bpf_policy"))
    v6, v4 = json.loads(sec[L.ALL_V6]), json.loads(sec[L.ALL_V4])
    if edit:
        v6, v4 = edit(v6, v4)
    sec[L.ALL_V6], sec[L.ALL_V4] = json.dumps(v6), json.dumps(v4)
    sec[L.TUNSRC] = json.dumps([{"tunsrc": tunsrc}])
    return sec


def _xmit(routes, table, text):
    return [dict(r, xmit=text) if r.get("table") == table and "xmit" in r else r for r in routes]


@pytest.mark.parametrize("what,edit,tunsrc,note", [
    ("foreign program", lambda v6, v4: (_xmit(v6, "268435466", "my_encap:[*fsobj]"), v4), SRC,
     "the IPv6 default route of table 268435466 is not an SRv6 encapsulation"),
    ("IPv6 program on the IPv4 route", lambda v6, v4: (v6, _xmit(v4, "268435466", B.program_name(6, SRC, SEGS) + ":[*fsobj]")), SRC,
     "the IPv4 default route of table 268435466 is not an SRv6 encapsulation"),
    ("other segments for IPv4", lambda v6, v4: (v6, _xmit(v4, "268435466", B.program_name(4, SRC, ["fc00:0:3::1"]) + ":[*fsobj]")),
     SRC, "the IPv4 and IPv6 routes have different segment lists"),
    ("source is not the tunnel source", None, "fc00:99::1",
     "the eBPF encapsulation's source is fc00:12::1, not the tunnel source fc00:99::1"),
])
def test_policy_routes_npms_did_not_make_are_incomplete(what, edit, tunsrc, note):
    items = {i["bsid"]: i for i in bpf_resource("srv6_policy").parse(text_of(_policy_sections(edit, tunsrc), POLICY_SHOW))}
    assert note in items["fc00:0:1:b::a"].get("incomplete", ""), what
    if edit:
        assert "incomplete" not in items["fc00:0:1:b::b"]


def test_a_wrong_source_is_repaired(pins):
    sec = _policy_sections(tunsrc="fc00:99::1")
    runner = FakeRunner(overrides=sec)
    want = [dict(NODE_POLICIES[0], encap_source="fc00:99::1")]
    out = base.run(bpf_resource("srv6_policy", runner), want, "merged")
    assert out.commands == [
        "ip -6 route replace throw fc00:0:1:b::a/128 table 268435466 proto 202",
        f"ip -6 route replace default table 268435466 proto 202 encap bpf xmit pinned {pin(6, 'fc00:99::1', SEGS)} dev a0",
        f"ip -4 route replace default table 268435466 proto 202 encap bpf xmit pinned {pin(4, 'fc00:99::1', SEGS)} dev a0",
        "ip sr tunsrc set fc00:99::1"]
    assert [decode(h).source for call in pins.calls for _n, h in call] == ["fc00:99::1", "fc00:99::1"]


def test_rendered_policy_names_the_program_it_would_load(pins):
    runner = FakeRunner()
    out = base.run(bpf_resource("srv6_policy", runner), [dict(NODE_POLICIES[0], segment_lists=[{"segments": SEGS, "weight": 5}])],
                   "rendered")
    assert out.rendered == [
        "ip -6 route add throw fc00:0:1:b::a/128 table 268435466 proto 202",
        f"ip -6 route add default table 268435466 proto 202 encap bpf xmit pinned /run/npms/bpf/npms_srv6_6={SRC}="
        f"{','.join(SEGS)} dev '<resolved at apply>'",
        f"ip -4 route add default table 268435466 proto 202 encap bpf xmit pinned /run/npms/bpf/npms_srv6_4={SRC}="
        f"{','.join(SEGS)} dev '<resolved at apply>'",
        f"ip sr tunsrc set {SRC}"]  # and no End.B6.Encaps route for the BSID
    assert runner.ran == [] and runner.reads == [] and pins.calls == []


def test_rendered_policy_without_a_source_says_it_is_resolved_at_apply():
    out = base.run(bpf_resource("srv6_policy"), [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:3::1"]}]}],
                   "rendered")
    assert len(out.rendered) == 3
    assert "encap bpf xmit pinned" in out.rendered[1] and "resolved at apply" in out.rendered[1].split(" dev ")[0]


def test_apply_pins_the_program_for_the_source_towards_the_first_segment(pins, tmp_path):
    """No encap_source and no ip sr tunsrc: the outer source is the one the kernel picks
    towards the first segment (``prefsrc`` of ``ip route get``)."""
    runner = FakeRunner(overrides=EMPTY_NODE)
    config = [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d6"]}]}]
    out = base.run(bpf_resource("srv6_policy", runner), config, "merged")
    segs = ["fc00:0:3::1", "fc00:0:4::d6"]
    src = "fc00:13::1"  # node.txt: ip -j -6 route get fc00:0:3::1 -> prefsrc
    assert out.commands == [
        "ip -6 route add throw fc00:0:1:b::d/128 table 268435469 proto 202",
        f"ip -6 route add default table 268435469 proto 202 encap bpf xmit pinned {pin(6, src, segs)} dev b0",
        f"ip -4 route add default table 268435469 proto 202 encap bpf xmit pinned {pin(4, src, segs)} dev b0"]
    # each route command ran with its program pinned, under the private path
    assert len(pins.calls) == 2
    for call, family, argv in zip(pins.calls, (6, 4), runner.argvs[1:]):
        ((name, header),) = call
        assert name == B.program_name(family, src, segs)
        h = decode(header)
        assert (h.source, h.destination, h.srh_list, h.srh_next) == (src, segs[0], segs[::-1], {4: 4, 6: 41}[family])
        assert str(tmp_path / "p1" / name) in argv and B.pin_path(name) not in argv
    assert runner.argvs[0][-1] == "202" and "pinned" not in runner.argvs[0]  # the marker needs no program


def test_apply_multipath_pins_one_program_per_list(pins):
    runner = FakeRunner(overrides=EMPTY_NODE)
    lists = [{"segments": ["fc00:0:2::1", "fc00:0:4::d6"], "weight": 1}, {"segments": ["fc00:0:3::1", "fc00:0:4::d6"], "weight": 3}]
    out = base.run(bpf_resource("srv6_policy", runner), [{"bsid": "fc00:0:1:b::e", "segment_lists": lists}], "merged")
    a, b = lists[0]["segments"], lists[1]["segments"]
    assert out.commands[1] == (
        f"ip -6 route add default table 268435470 proto 202 nexthop via fc00:12::2 encap bpf xmit pinned "
        f"{pin(6, 'fc00:12::1', a)} dev a0 weight 1 nexthop via fc00:13::2 encap bpf xmit pinned "
        f"{pin(6, 'fc00:13::1', b)} dev b0 weight 3")
    assert out.commands[2] == (
        f"ip -4 route add default table 268435470 proto 202 nexthop encap bpf xmit pinned {pin(4, 'fc00:12::1', a)} dev a0 "
        f"weight 1 nexthop encap bpf xmit pinned {pin(4, 'fc00:13::1', b)} dev b0 weight 3")
    assert [[n for n, _h in call] for call in pins.calls] == [
        [B.program_name(6, "fc00:12::1", a), B.program_name(6, "fc00:13::1", b)],
        [B.program_name(4, "fc00:12::1", a), B.program_name(4, "fc00:13::1", b)]]


def test_a_policy_gathered_back_compares_equal(pins):
    """What apply makes, gather reads back as the same policy: the next run changes nothing."""
    want = [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:3::1", "fc00:0:4::d6"]}]}]
    runner = FakeRunner(overrides=EMPTY_NODE)
    base.run(bpf_resource("srv6_policy", runner), copy.deepcopy(want), "merged")
    # the node now shows the routes those commands made, as iproute2 prints them
    segs, src = want[0]["segment_lists"][0]["segments"], "fc00:13::1"
    v6 = [{"type": "throw", "dst": "fc00:0:1:b::d", "dev": "lo", "table": "268435469", "metric": 1024, "flags": [], "pref": "medium"},
          {"dst": "default", "encap": "bpf", "xmit": B.program_name(6, src, segs) + ":[*fsobj]", "dev": "b0",
           "table": "268435469", "metric": 1024, "flags": [], "pref": "medium"}]
    v4 = [{"dst": "default", "encap": "bpf", "xmit": B.program_name(4, src, segs) + ":[*fsobj]", "dev": "b0",
           "table": "268435469", "scope": "link", "flags": []}]
    after = {**EMPTY_NODE, L.ALL_V6: json.dumps(v6), L.ALL_V4: json.dumps(v4)}
    runner = FakeRunner(overrides=after)
    out = base.run(bpf_resource("srv6_policy", runner), copy.deepcopy(want), "merged")
    assert out.before == [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": segs, "weight": 1}]}]
    assert not out.changed and runner.ran == []


def test_deleting_a_bpf_policy_removes_its_table_routes_only(pins):
    runner = FakeRunner("bpf_policy")
    out = base.run(bpf_resource("srv6_policy", runner), [{"bsid": "fc00:0:1:b::c"}], "deleted")
    assert out.commands == ["ip -4 route del default table 268435468 proto 202",
                            "ip -6 route del default table 268435468 proto 202",
                            "ip -6 route del throw fc00:0:1:b::c/128 table 268435468 proto 202"]
    assert runner.ran == out.commands and pins.calls == []


def test_too_many_segments_for_ebpf_are_refused_naming_the_policy(pins):
    config = [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": segments(B.MAX_SEGMENTS + 1)}], "encap_source": SRC}]
    with pytest.raises(ResourceError, match=rf"config\[0\]: segment_lists\[0\]: {B.MAX_SEGMENTS + 1} segments; .* at most 13"):
        base.run(bpf_resource("srv6_policy"), config, "rendered")


def test_no_source_towards_the_first_segment_is_named(pins):
    no_prefsrc = '[{"dst":"fc00:0:9::1","gateway":"fe80::9","dev":"a0","flags":[]}]'
    runner = FakeRunner(overrides={**EMPTY_NODE, ("ip", "-j", "-6", "route", "get", "fc00:0:9::1"): no_prefsrc})
    config = [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:9::1"]}]}]
    with pytest.raises(ResourceError, match=r"no IPv6 source address towards fc00:0:9::1 .*give the policy an encap_source"):
        base.run(bpf_resource("srv6_policy", runner), config, "merged")
    assert runner.ran == [] and pins.calls == []


def test_a_program_that_cannot_be_loaded_rolls_the_policy_back(monkeypatch, tmp_path):
    fake = FakePins(tmp_path, fail=B.BpfError(1, "loading the SRv6 encapsulation program failed: Operation not permitted"))
    monkeypatch.setattr(B, "pinned", fake)
    runner = FakeRunner(overrides=EMPTY_NODE)
    config = [{"bsid": "fc00:0:1:b::d", "segment_lists": [{"segments": ["fc00:0:3::1"]}]}]
    with pytest.raises(ResourceError) as err:
        base.run(bpf_resource("srv6_policy", runner), config, "merged")
    assert err.value.rolled_back and "Operation not permitted" in str(err.value)
    assert runner.ran == ["ip -6 route add throw fc00:0:1:b::d/128 table 268435469 proto 202",
                          "ip -6 route del throw fc00:0:1:b::d/128 table 268435469 proto 202"]
