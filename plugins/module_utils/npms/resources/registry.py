# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource for a name and a dataplane, bound to its driver.

Imports are inside :func:`build` so that using one resource never loads another's
dependencies (vpp_papi); Ansible's module packer still finds them (it scans every import
statement in the file) and ships them with every module that imports this one.
"""

from __future__ import annotations

from typing import Any, Optional

from ..runner import LocalRunner, Runner
from .base import Resource, ResourceError

RESOURCES = ("srv6_localsid", "srv6_route", "srv6_policy", "srv6_steering", "wireguard", "nftables", "frr_bgp")
DATAPLANES = ("linux", "vpp")
LINUX_ONLY = ("nftables",)
#: resources of the control plane beside the dataplane (FRR): the same on every node
ANY_DATAPLANE = ("frr_bgp",)
DEFAULT_VPP_SOCKET = "/run/vpp/api.sock"


def build(name: str, dataplane: str = "linux", runner: Optional[Runner] = None, vpp: Any = None,
          vpp_socket: str = DEFAULT_VPP_SOCKET, vpp_api_dir: Optional[str] = None, **options: Any) -> Resource:
    """``name`` on ``dataplane``.  Linux resources run their commands through ``runner``
    (default: this machine); VPP resources talk to ``vpp`` (a connected
    :class:`npms.drivers.vpp.VppClient`), else connect to ``vpp_socket``.  ``options``
    are the resource's own (frr_bgp: ``pathspace``, ``collect_routes``)."""
    if name not in RESOURCES:
        raise ResourceError(f"unknown resource {name!r}; known: {', '.join(RESOURCES)}")
    if dataplane not in DATAPLANES:
        raise ResourceError(f"{name}: unknown dataplane {dataplane!r}; known: {', '.join(DATAPLANES)}")
    if name in ANY_DATAPLANE:
        from .frr_bgp import FrrBgp
        return FrrBgp(runner or LocalRunner(), **options)
    if dataplane == "vpp" and name in LINUX_ONLY:
        raise ResourceError(f"{name}: the vpp dataplane has no nftables; classify and police with srv6_steering on VPP")
    if dataplane == "linux":
        runner = runner or LocalRunner()
        if name == "srv6_localsid":
            from .srv6_linux import Srv6LocalSidLinux
            return Srv6LocalSidLinux(runner)
        if name == "srv6_route":
            from .srv6_linux import Srv6RouteLinux
            return Srv6RouteLinux(runner)
        if name == "srv6_policy":
            from .srv6_linux import Srv6PolicyLinux
            return Srv6PolicyLinux(runner)
        if name == "srv6_steering":
            from .srv6_linux import Srv6SteeringLinux
            return Srv6SteeringLinux(runner)
        if name == "wireguard":
            from .wireguard_linux import WireguardLinux
            return WireguardLinux(runner)
        from .nftables import NftTables
        return NftTables(runner)
    if vpp is None:
        from ..drivers.vpp import connect
        vpp = connect(vpp_socket, api_dir=vpp_api_dir)
    if name == "srv6_localsid":
        from .srv6_vpp import Srv6LocalSidVpp
        return Srv6LocalSidVpp(vpp)
    if name == "srv6_route":
        from .srv6_vpp import Srv6RouteVpp
        return Srv6RouteVpp(vpp)
    if name == "srv6_policy":
        from .srv6_vpp import Srv6PolicyVpp
        return Srv6PolicyVpp(vpp)
    if name == "srv6_steering":
        from .srv6_vpp import Srv6SteeringVpp
        return Srv6SteeringVpp(vpp)
    from .wireguard_vpp import WireguardVpp
    return WireguardVpp(vpp)
