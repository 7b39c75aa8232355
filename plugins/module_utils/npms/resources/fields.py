# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Field checkers for resource items: each returns the canonical value or raises
:class:`ResourceError` naming the item (``where``) and the field."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, List, Optional, Sequence

from .base import ResourceError

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,15}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _fail(where: str, name: str, msg: str) -> ResourceError:
    return ResourceError(f"{where}: {name}: {msg}")


def ipv6_address(value: Any, where: str, name: str) -> str:
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _fail(where, name, f"{value!r} is not an IPv6 address") from None
    if ip.version != 6:
        raise _fail(where, name, f"{value!r} is IPv4; an IPv6 address is needed")
    return str(ip)


def ip_address(value: Any, where: str, name: str, version: Optional[int] = None) -> str:
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _fail(where, name, f"{value!r} is not an IP address") from None
    if version and ip.version != version:
        raise _fail(where, name, f"{value!r} is IPv{ip.version}; IPv{version} is needed here")
    return str(ip)


def prefix(value: Any, where: str, name: str) -> str:
    """A network in CIDR form; host bits must be zero (``10.0.0.1/24`` is refused)."""
    text = str(value).strip()
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise _fail(where, name, f"{value!r} is not a network prefix ({exc})") from None
    return str(net)


def interface_address(value: Any, where: str, name: str) -> str:
    """An address with its prefix length (``10.0.0.1/31``)."""
    text = str(value).strip()
    if "/" not in text:
        raise _fail(where, name, f"{value!r} needs a prefix length (address/len)")
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise _fail(where, name, f"{value!r} is not an address/prefix-length") from None


def integer(value: Any, where: str, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise _fail(where, name, f"{value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _fail(where, name, f"{value!r} is not an integer") from None
    if isinstance(value, float) and value != number:
        raise _fail(where, name, f"{value!r} is not an integer")
    if not lo <= number <= hi:
        raise _fail(where, name, f"{number} is out of range {lo}..{hi}")
    return number


def ifname(value: Any, where: str, name: str) -> str:
    text = str(value)
    if not IFNAME_RE.match(text):
        raise _fail(where, name, f"{value!r} is not an interface name (1-15 of letters, digits, _ . @ + -)")
    return text


def label(value: Any, where: str, name: str) -> str:
    text = str(value)
    if not NAME_RE.match(text):
        raise _fail(where, name, f"{value!r}: use letters, digits, '_', '.' and '-' (at most 63, starting with a letter or digit)")
    return text


def listing(value: Any, where: str, name: str) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(where, name, f"must be a list, got {type(value).__name__}")
    return list(value)


def dscp_list(value: Any, where: str, name: str) -> List[int]:
    return sorted({integer(v, where, f"{name}[{i}]", 0, 63) for i, v in enumerate(listing(value, where, name))})


def endpoint(value: Any, where: str, name: str) -> str:
    """``host:port`` or ``[v6]:port``, canonical."""
    text = str(value).strip()
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]]+):(\d+)$", text)
    if not m:
        raise _fail(where, name, f"{value!r} is not host:port or [ipv6]:port")
    host, port = m.group(1), integer(m.group(2), where, name + " port", 1, 65535)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise _fail(where, name, f"{host!r} is not an IP address (names are not resolved on the node)") from None
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def one_of(value: Any, choices: Sequence[str], where: str, name: str) -> str:
    if value not in choices:
        raise _fail(where, name, f"{value!r} is not one of {', '.join(choices)}")
    return value
