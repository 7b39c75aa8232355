# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The namespace lab: ``Lab(inventory, prefix).up() / down() / status() / impair() / restore()``.

The lab builds the underlay only (namespaces, veths, addresses, routes, WAN impairments,
FRR daemons); the overlay is configured by the collection, as on real nodes.  Every
command goes through :mod:`npms.runner`; impairments go through the WAN engine
(:mod:`npms_lab.wan`).  State lives in ``/run/npms-lab/<prefix or "default">/``:

``state.json``        what was built (the plan) and the impairments in force
``lab.json``          nodes, hosts and links with their namespaces (Nornir, scripts)
``ansible/hosts.yml`` overlay inventory: ``-i inventory/lab -i <state>/ansible/hosts.yml``
``frr/<node>/``       FRR config, pid files, sockets, log of one node
``wan/``              the WAN engine's files (its delay daemon)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from npms.runner import CommandError, LocalRunner, NetnsRunner, NETNS_RUN_DIR

from . import frr
from .plan import Impairment, LabLink, Plan, PlanError, build_plan, check_prefix
from .procs import pids_in_netns, pids_with_path, rss_kib, terminate

RUN_DIR = "/run/npms-lab"
STATE_FILE = "state.json"
LAB_FILE = "lab.json"
ANSIBLE_FILE = os.path.join("ansible", "hosts.yml")
STATE_VERSION = 1
DEFAULT_INVENTORY = "inventory/lab"
CONNECTION_PLUGIN = "galactic.npms.netns"
HOSTS_GROUP = "lab_hosts"

ROUTER_SYSCTLS = (
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
    # SRv6 is checked per receiving interface: "default" covers the veths made later.
    "net.ipv6.conf.all.seg6_enabled=1",
    "net.ipv6.conf.default.seg6_enabled=1",
    "net.ipv6.conf.lo.seg6_enabled=1",
)
COMMON_SYSCTLS = (
    # addresses usable at once (no 1-2 s of tentative IPv6 addresses after `up`)
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    # the overlay routes asymmetrically (SRv6 paths differ per direction)
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)


#: where npms.bundle records the bundle each lab namespace runs (bundle-<netns>.json)
BUNDLE_STATE_DIR = "/var/lib/npms"


class LabError(Exception):
    """Something the user can fix or must know: the message names the thing.

    ``code`` is the CLI's exit code: 1 (failed while running) or 2 (bad input: an unknown
    link, an invalid inventory or value).
    """

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class UpResult:
    changed: bool
    seconds: float
    messages: List[str] = field(default_factory=list)


@dataclass
class LabStatus:
    prefix: str
    state_dir: str
    up: bool
    nodes: List[Dict[str, Any]] = field(default_factory=list)
    links: List[Dict[str, Any]] = field(default_factory=list)
    daemons: List[Dict[str, Any]] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    processes: int = 0
    rss_mib: float = 0.0

    @property
    def ok(self) -> bool:
        return self.up and not self.problems

    def to_data(self) -> Dict[str, Any]:
        return {
            "prefix": self.prefix, "state_dir": self.state_dir, "up": self.up, "ok": self.ok,
            "nodes": self.nodes, "links": self.links, "daemons": self.daemons, "problems": self.problems,
            "processes": self.processes, "rss_mib": round(self.rss_mib, 1),
        }


def state_dir_for(prefix: str) -> str:
    return os.path.join(RUN_DIR, prefix or "default")


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the published lab.json, as front ends (Nornir, tests) read it ------------------
class LabStateError(ValueError):
    """The lab state file is missing, unreadable, or does not match the inventory."""


def lab_state_path(ref: str) -> str:
    """The ``lab.json`` that ``ref`` names: a file, a lab state directory, or a lab prefix
    (``""`` is the lab started without ``--prefix``)."""
    ref = os.path.expanduser(str(ref))
    if os.path.isdir(ref):
        return os.path.join(ref, LAB_FILE)
    if os.path.exists(ref) or ref.endswith(".json") or os.sep in ref:
        return ref
    # where `npms lab up --prefix P` keeps it: /run/npms-lab/<P or "default">/lab.json
    return os.path.join(state_dir_for(ref), LAB_FILE)


def load_lab_state(ref: str) -> Dict[str, Any]:
    """Read and check a lab's ``lab.json``; ``path`` is added (where it was read)."""
    path = lab_state_path(ref)
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except FileNotFoundError:
        raise LabStateError(f"lab state {path}: not found; is the lab up (npms lab up --prefix ...)?") from None
    except (OSError, ValueError) as exc:
        raise LabStateError(f"lab state {path}: cannot read: {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("nodes"), dict):
        raise LabStateError(f"lab state {path}: expected a mapping with 'nodes'")
    for section in ("nodes", "hosts"):
        for name, entry in (state.get(section) or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("netns"), str) or not entry["netns"]:
                raise LabStateError(f"lab state {path}: {section}.{name}: no 'netns'")
    state["path"] = os.path.abspath(path)
    return state


class Lab:
    """One lab: the namespaces ``<prefix><node>`` built from ``inventory``.

    ``inventory`` is only read by :meth:`up` (and by :meth:`down` when no state is left);
    the other operations work from the state the last ``up`` recorded.  ``echo`` receives
    progress lines (the CLI prints them).
    """

    def __init__(self, inventory: Optional[str] = None, prefix: str = "",
                 echo: Optional[Callable[[str], None]] = None):
        try:
            self.prefix = check_prefix(prefix or "")
        except PlanError as exc:
            raise LabError(str(exc), 2) from None
        self.inventory = inventory
        self.state_dir = state_dir_for(self.prefix)
        self.echo = echo or (lambda line: None)
        self.local = LocalRunner()

    # ------------------------------------------------------------------ paths / state
    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, STATE_FILE)

    @property
    def lab_file(self) -> str:
        return os.path.join(self.state_dir, LAB_FILE)

    @property
    def ansible_file(self) -> str:
        return os.path.join(self.state_dir, ANSIBLE_FILE)

    def frr_dir(self, node: str) -> str:
        return os.path.join(self.state_dir, "frr", node)

    @property
    def wan_dir(self) -> str:
        return os.path.join(self.state_dir, "wan")

    def read_state(self) -> Optional[Dict[str, Any]]:
        state = _read_json(self.state_file)
        if state is None or state.get("version") != STATE_VERSION or "plan" not in state:
            return None
        return state

    def plan(self) -> Plan:
        """The plan built from the inventory (PlanError / LabError name what is wrong)."""
        path = self.inventory or DEFAULT_INVENTORY
        from npms.inventory import InventoryError, load_inventory  # pylint: disable=import-outside-toplevel

        try:
            inv = load_inventory(path)
        except InventoryError as exc:
            raise LabError(f"{path}: invalid inventory:\n  " + "\n  ".join(str(p) for p in exc.problems), 2) from None
        except OSError as exc:
            raise LabError(f"{path}: cannot read inventory: {exc.strerror or exc}", 2) from None
        return build_plan(inv, self.prefix, os.path.abspath(path))

    def recorded_plan(self) -> Plan:
        state = self.read_state()
        if state is None:
            raise LabError(f"lab {self._label()} is not up (no state in {self.state_dir}): run `npms lab up"
                           f"{' --prefix ' + self.prefix if self.prefix else ''}` first")
        return Plan.from_data(state["plan"])

    def _label(self) -> str:
        return repr(self.prefix) if self.prefix else "'' (default)"

    # ------------------------------------------------------------------ checks
    @staticmethod
    def check_host() -> None:
        """Root and the binaries the lab runs; LabError naming what is missing."""
        if os.geteuid() != 0:
            raise LabError("npms lab needs root (network namespaces, veths, FRR): run it as root or with sudo")
        missing = [b for b in ("ip", "sysctl") if shutil.which(b) is None]
        missing += frr.missing_binaries()
        if missing:
            raise LabError("npms lab: missing binaries: " + ", ".join(missing)
                           + " (Debian: apt-get install iproute2 procps frr; or `make setup`)")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock for all labs: up/down of one prefix never interleave, and the lock
        # leaves no file behind (it is the run directory itself).
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        fd = os.open(RUN_DIR, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------------ up
    def up(self) -> UpResult:
        """Build the lab; a second ``up`` changes nothing; after a crash it cleans up first."""
        self.check_host()
        start = time.monotonic()
        try:
            plan = self.plan()
        except PlanError as exc:
            raise LabError(str(exc), 2) from None
        engine = _wan_engine(self.wan_dir)
        with self._locked():
            messages: List[str] = []
            state = self.read_state()
            if state is not None and state["plan"] == json.loads(json.dumps(plan.to_data())):
                problems = self._problems(plan, state, engine)
                if not problems:
                    msg = f"lab {self._label()} is up: nothing changed ({len(plan.nodes)} namespaces)"
                    self.echo(msg)
                    return UpResult(False, time.monotonic() - start, [msg])
                messages.append("lab is damaged, rebuilding: " + "; ".join(problems[:5])
                                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
            elif state is not None:
                messages.append("the inventory changed since the last up: rebuilding")
            else:
                leftovers = self._leftovers(plan)
                if leftovers:
                    messages.append("cleaning up leftovers of an earlier lab: " + ", ".join(leftovers[:5])
                                    + (f" (and {len(leftovers) - 5} more)" if len(leftovers) > 5 else ""))
            for msg in messages:
                self.echo(msg)
            if messages:
                self._teardown(plan, engine)
            try:
                self._build(plan, engine)
            except (CommandError, OSError, LabError, ValueError, RuntimeError) as exc:
                # (the WAN engine raises ValueError / RuntimeError subclasses naming the interface)
                self.echo(f"up failed, cleaning up: {exc}")
                self._teardown(plan, engine)
                raise LabError(f"lab {self._label()}: up failed: {exc}") from None
            seconds = time.monotonic() - start
            msg = (f"lab {self._label()} up in {seconds:.1f} s: {len(plan.nodes)} namespaces, {len(plan.links)} links "
                   f"({len(plan.wan_links)} WAN), FRR on {sum(1 for n in plan.nodes if n.frr)} nodes; state in {self.state_dir}")
            self.echo(msg)
            return UpResult(True, seconds, messages + [msg])

    def _build(self, plan: Plan, engine: "_WanEngine") -> None:
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        # Record first: a crash half-way is then cleaned up by the next up or down.
        self._save_state(plan, {lk.name: lk.nominal.to_data() for lk in plan.wan_links if lk.nominal})
        self._ip_batch(None, [f"netns add {ns}" for ns in plan.namespaces])
        for node in plan.nodes:
            sysctls = (ROUTER_SYSCTLS if node.router else ()) + COMMON_SYSCTLS
            NetnsRunner(node.netns).run(["sysctl", "-q", "-w"] + list(sysctls))
        # Each end is made directly inside its namespace: no name clash in the root namespace.
        ns = {n.name: n.netns for n in plan.nodes}
        self._ip_batch(None, [f"link add name {lk.a_port.ifname} netns {ns[lk.a]} type veth "
                              f"peer name {lk.b_port.ifname} netns {ns[lk.b]}" for lk in plan.links])
        for node in plan.nodes:
            self._ip_batch(node.netns, self._node_commands(plan, node))
        for lk in plan.wan_links:
            engine.apply(ns[lk.a], lk.a_port.ifname, lk.nominal)
            engine.apply(ns[lk.b], lk.b_port.ifname, lk.nominal)
        for node in plan.nodes:
            if node.frr:
                frr.prepare(node.netns, node.name, self.frr_dir(node.name))
                frr.start(node.netns, self.frr_dir(node.name))
        for node in plan.nodes:
            if node.frr:
                # the daemons answer: vtysh -N <netns> works for the collection
                frr.vtysh(node.netns, "show version")
        self._write_front_ends(plan, {lk.name: lk.nominal for lk in plan.wan_links if lk.nominal})

    @staticmethod
    def _node_commands(plan: Plan, node) -> List[str]:
        cmds = ["link set dev lo up"]
        cmds += [f"address add {a} dev lo" for a in node.lo_addresses]
        for lk in plan.links:
            for end, port in ((lk.a, lk.a_port), (lk.b, lk.b_port)):
                if end != node.name:
                    continue
                # only the link-locals the plan names (deterministic, for unnumbered BGP)
                # Customers send packet by packet: a GSO aggregate reaching an edge could
                # not be encapsulated by the eBPF SRv6 encapsulation (kernels without seg6).
                gso = " gso_max_segs 1" if node.role in ("customer", "host") else ""
                cmds.append(f"link set dev {port.ifname} addrgenmode none mtu {port.mtu}{gso}")
                for addr in port.addresses:
                    cmds.append(f"address add {addr} dev {port.ifname}" + (" nodad" if ":" in addr else ""))
                cmds.append(f"link set dev {port.ifname} up")
        # (batch lines take no -6: IPv6 routes are written "::/0", never "default")
        cmds += ["route add " + " ".join(route.ip_args()) for route in node.routes]
        return cmds

    def _ip_batch(self, netns: Optional[str], commands: List[str], force: bool = False) -> None:
        if not commands:
            return
        argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
        try:
            self.local.run(argv, stdin="\n".join(commands) + "\n", check=not force, timeout=120)
        except CommandError as exc:
            # ip names the failing line ("Command failed -:N") after the reason: give both
            lines = (exc.stderr or "").strip().splitlines()
            where = f"namespace {netns}" if netns else "the root namespace"
            detail = "; ".join(lines[-2:]) if lines else f"exit {exc.rc}"
            bad = ""
            if lines and lines[-1].startswith("Command failed -:"):
                try:
                    bad = f" (line: {commands[int(lines[-1].rsplit(':', 1)[1]) - 1]!r})"
                except (ValueError, IndexError):
                    bad = ""
            raise LabError(f"ip in {where}: {detail}{bad}") from None

    def _save_state(self, plan: Plan, impairments: Dict[str, Any]) -> None:
        _write_json(self.state_file, {"version": STATE_VERSION, "prefix": self.prefix, "state_dir": self.state_dir,
                                      "plan": plan.to_data(), "impairments": impairments})

    # ------------------------------------------------------------------ front-end inventories
    def _write_front_ends(self, plan: Plan, current: Dict[str, Impairment]) -> None:
        _write_json(self.lab_file, self.lab_data(plan, current))
        os.makedirs(os.path.dirname(self.ansible_file), exist_ok=True)
        with open(self.ansible_file, "w", encoding="utf-8") as fh:
            fh.write(self.ansible_text(plan))

    def lab_data(self, plan: Plan, current: Dict[str, Impairment]) -> Dict[str, Any]:
        """``lab.json``: what the Nornir inventory plugin and scripts read."""
        nodes = {n.name: {"netns": n.netns, "role": n.role} for n in plan.nodes if n.role != "host"}
        hosts = {n.name: {"netns": n.netns, "behind": n.behind, "addresses": list(n.addresses)}
                 for n in plan.nodes if n.role == "host"}
        links = []
        for lk in plan.links:
            if lk.kind == "lan":
                continue
            imp = current.get(lk.name)
            links.append({"name": lk.name, "a": lk.a, "b": lk.b, "kind": lk.kind,
                          "a_if": lk.a_port.ifname, "b_if": lk.b_port.ifname,
                          "impairment": imp.to_data() if imp else None,
                          "nominal": lk.nominal.to_data() if lk.nominal else None})
        return {"prefix": self.prefix, "inventory": plan.inventory, "state_dir": self.state_dir,
                "nodes": nodes, "hosts": hosts, "links": links}

    @staticmethod
    def ansible_text(plan: Plan) -> str:
        """The overlay inventory: every node and host reached through its namespace."""
        lines = [
            "---",
            "# Written by `npms lab up`: use it together with the lab's inventory,",
            f"#   ansible-playbook -i {plan.inventory} -i <this file> ...",
            f"# Every host is a network namespace reached by the {CONNECTION_PLUGIN} connection.",
            "all:",
            "  hosts:",
        ]
        for n in plan.nodes:
            if n.role != "host":
                lines.append(f"    {n.name}: {{ansible_connection: {CONNECTION_PLUGIN}, ansible_host: {n.netns}}}")
        lines += ["  children:", f"    {HOSTS_GROUP}:", "      hosts:"]
        for n in plan.nodes:
            if n.role == "host":
                addrs = ", ".join(f'"{a}"' for a in n.addresses)
                lines.append(f"        {n.name}: {{ansible_connection: {CONNECTION_PLUGIN}, ansible_host: {n.netns}, "
                             f"npms_lab_behind: {n.behind}, npms_lab_addresses: [{addrs}]}}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ down
    def down(self) -> Dict[str, Any]:
        """Remove everything the lab made; returns what was removed."""
        self.check_host()
        start = time.monotonic()
        with self._locked():
            state = self.read_state()
            plan: Optional[Plan] = None
            if state is not None:
                plan = Plan.from_data(state["plan"])
            else:
                try:
                    plan = self.plan()
                except (LabError, PlanError) as exc:
                    self.echo(f"no state and no usable inventory ({exc}); removing what the state directory names")
            removed = self._teardown(plan, _wan_engine(self.wan_dir, required=False))
        removed["seconds"] = time.monotonic() - start
        self.echo(f"lab {self._label()} down in {removed['seconds']:.1f} s: {len(removed['namespaces'])} namespaces, "
                  f"{len(removed['processes'])} processes removed")
        return removed

    def _teardown(self, plan: Optional[Plan], engine: "Optional[_WanEngine]") -> Dict[str, Any]:
        # What the state recorded and what the inventory says now (they differ when the
        # inventory changed since the last up, or when the state is gone).
        plans = [plan] if plan else []
        state = self.read_state()
        if state is not None:
            plans.append(Plan.from_data(state["plan"]))
        namespaces = {ns for p in plans for ns in p.namespaces}
        nodes = sorted({(n.netns, self.frr_dir(n.name)) for p in plans for n in p.nodes if n.frr})
        # FRR first, politely; then whatever else runs inside our namespaces (the overlay's
        # wireguard-go, a forgotten ping); then the namespaces themselves.
        signalled = frr.stop([(netns, d) for netns, d in nodes if os.path.isdir(d)])
        existing = sorted(ns for ns in namespaces if os.path.exists(os.path.join(NETNS_RUN_DIR, ns)))
        inside = set()
        for ns in existing:
            inside.update(pids_in_netns(ns, self.local))
        signalled += terminate(sorted(inside))
        self._ip_batch(None, [f"netns del {ns}" for ns in existing], force=True)
        # The WAN engine after the namespaces: its rules and qdiscs went with them, so it
        # only stops its daemon (over its socket, at once) and removes its files.
        if engine is not None:
            try:
                engine.shutdown()
            except (CommandError, OSError, ValueError, RuntimeError) as exc:
                self.echo(f"WAN engine shutdown: {exc}")
        # Anything left that names our state directory (a daemon whose state was lost).
        signalled += terminate(pids_with_path(self.state_dir))
        for netns, node_dir in nodes:
            frr.unlink_paths(netns, node_dir)
        # The version a node runs (npms.bundle) is recorded per namespace on the shared
        # file system: it goes with the namespace, or a new lab would claim old bundles.
        for ns in sorted(namespaces):
            try:
                os.unlink(os.path.join(BUNDLE_STATE_DIR, f"bundle-{ns}.json"))
            except FileNotFoundError:
                pass
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return {"namespaces": existing, "processes": sorted(set(signalled))}

    def _leftovers(self, plan: Plan) -> List[str]:
        found = [ns for ns in plan.namespaces if os.path.exists(os.path.join(NETNS_RUN_DIR, ns))]
        found += [f"pid {p}" for p in pids_with_path(self.state_dir)]
        if os.path.isdir(self.state_dir):
            found.append(self.state_dir)
        return found

    # ------------------------------------------------------------------ status
    def status(self) -> LabStatus:
        state = self.read_state()
        st = LabStatus(prefix=self.prefix, state_dir=self.state_dir, up=state is not None)
        if state is None:
            st.problems.append(f"lab {self._label()} is not up (no state in {self.state_dir})")
            return st
        plan = Plan.from_data(state["plan"])
        engine = _wan_engine(self.wan_dir, required=False)
        st.problems = self._problems(plan, state, engine, st)
        pids = set(pids_with_path(self.state_dir))
        for node in plan.nodes:
            if os.path.exists(os.path.join(NETNS_RUN_DIR, node.netns)):
                pids.update(pids_in_netns(node.netns, self.local))
        rss = rss_kib(sorted(pids))
        st.processes = len(rss)
        st.rss_mib = sum(rss.values()) / 1024.0
        return st

    def _problems(self, plan: Plan, state: Dict[str, Any], engine: "Optional[_WanEngine]",
                  st: Optional[LabStatus] = None) -> List[str]:
        """Everything missing from a lab that should be up, each naming the thing."""
        problems: List[str] = []
        links_by_ns: Dict[str, Dict[str, str]] = {}
        for node in plan.nodes:
            present = os.path.exists(os.path.join(NETNS_RUN_DIR, node.netns))
            if not present:
                problems.append(f"namespace {node.netns} (node {node.name}) is missing")
            else:
                links_by_ns[node.netns] = self._link_states(node.netns)
            if st is not None:
                st.nodes.append({"name": node.name, "netns": node.netns, "role": node.role, "present": present})
        ns = {n.name: n.netns for n in plan.nodes}
        wanted = {name: Impairment.from_data(d) for name, d in (state.get("impairments") or {}).items()}
        actual = engine.current() if engine is not None else {}
        for lk in plan.links:
            ends = []
            for end, port in ((lk.a, lk.a_port), (lk.b, lk.b_port)):
                oper = links_by_ns.get(ns[end], {}).get(port.ifname)
                if ns[end] in links_by_ns and oper is None:
                    problems.append(f"link {lk.name}: interface {port.ifname} in {ns[end]} is missing")
                elif oper is not None and oper not in ("UP", "UNKNOWN"):
                    problems.append(f"link {lk.name}: interface {port.ifname} in {ns[end]} is {oper}")
                ends.append(oper)
            entry: Dict[str, Any] = {"name": lk.name, "a": lk.a, "b": lk.b, "kind": lk.kind,
                                     "a_if": lk.a_port.ifname, "b_if": lk.b_port.ifname,
                                     "up": all(e in ("UP", "UNKNOWN") for e in ends)}
            if lk.is_wan and engine is not None:
                want = wanted.get(lk.name, lk.nominal)
                entry["impairment"] = want.to_data() if want else None
                entry["nominal"] = lk.nominal.to_data() if lk.nominal else None
                for end, port in ((lk.a, lk.a_port), (lk.b, lk.b_port)):
                    if ns[end] not in links_by_ns:
                        continue
                    have = actual.get((ns[end], port.ifname))
                    if want and (have is None or not engine.same(have, want)):
                        problems.append(f"link {lk.name}: impairment on {ns[end]}/{port.ifname} is "
                                        f"{have.text() if have else 'missing'}, expected {want.text()}")
            if st is not None:
                st.links.append(entry)
        if engine is not None:
            for name, pid in engine.daemons():
                if st is not None:
                    st.daemons.append({"node": None, "daemon": name, "pid": pid, "running": bool(pid)})
                if not pid:
                    problems.append(f"daemon {name} (WAN delay engine, {self.wan_dir}) is not running")
        for node in plan.nodes:
            if not node.frr:
                continue
            for daemon, pid in frr.running(self.frr_dir(node.name)).items():
                if st is not None:
                    st.daemons.append({"node": node.name, "daemon": daemon, "pid": pid, "running": bool(pid)})
                if not pid:
                    problems.append(f"daemon {daemon} of node {node.name} ({node.netns}) is not running")
        return problems

    def _link_states(self, netns: str) -> Dict[str, str]:
        res = self.local.run(["ip", "-n", netns, "-j", "link", "show"], check=False)
        if not res.ok:
            return {}
        try:
            return {d["ifname"]: d.get("operstate", "UNKNOWN") for d in json.loads(res.stdout or "[]")}
        except (ValueError, KeyError, TypeError):
            return {}

    # ------------------------------------------------------------------ impairments
    def impair(self, link: str, delay_ms: Optional[float] = None, jitter_ms: Optional[float] = None,
               loss_pct: Optional[float] = None, rate_mbps: Optional[float] = None) -> Tuple[LabLink, Impairment]:
        """Change a WAN link's impairment at run time (both directions); values not given stay."""
        self.check_host()
        for label, value, hi in (("delay", delay_ms, 60000.0), ("jitter", jitter_ms, 60000.0),
                                 ("loss", loss_pct, 100.0), ("rate", rate_mbps, 1e6)):
            if value is not None and not 0 <= value <= hi:
                raise LabError(f"{label} {value:g} is out of range (0..{hi:g})", 2)
        if rate_mbps is not None and rate_mbps <= 0:
            raise LabError("rate must be > 0 Mbit/s", 2)
        with self._locked():
            state, plan = self._state_and_plan()
            lk = self._find(plan, link)
            current = Impairment.from_data((state.get("impairments") or {}).get(lk.name)) or lk.nominal or Impairment()
            new = Impairment(
                delay_ms=current.delay_ms if delay_ms is None else float(delay_ms),
                jitter_ms=current.jitter_ms if jitter_ms is None else float(jitter_ms),
                loss_pct=current.loss_pct if loss_pct is None else float(loss_pct),
                rate_mbps=current.rate_mbps if rate_mbps is None else float(rate_mbps),
            )
            self._set(plan, state, {lk.name: new})
        self.echo(f"link {lk.name}: {new.text()} (each direction)")
        return lk, new

    def restore(self, link: Optional[str] = None) -> List[LabLink]:
        """Back to the inventory's values: one WAN link, or all of them."""
        self.check_host()
        with self._locked():
            state, plan = self._state_and_plan()
            links = [self._find(plan, link)] if link else list(plan.wan_links)
            self._set(plan, state, {lk.name: lk.nominal for lk in links if lk.nominal})
        if link:
            self.echo(f"link {links[0].name}: restored to {links[0].nominal.text() if links[0].nominal else 'no impairment'}")
        else:
            self.echo(f"{len(links)} WAN links restored to the inventory's values")
        return links

    def _state_and_plan(self) -> Tuple[Dict[str, Any], Plan]:
        state = self.read_state()
        if state is None:
            self.recorded_plan()  # raises the "not up" error
        return state, Plan.from_data(state["plan"])

    @staticmethod
    def _find(plan: Plan, ref: str) -> LabLink:
        try:
            return plan.find_link(ref)
        except PlanError as exc:
            raise LabError(str(exc), 2) from None

    def _set(self, plan: Plan, state: Dict[str, Any], changes: Dict[str, Impairment]) -> None:
        engine = _wan_engine(self.wan_dir)
        ns = {n.name: n.netns for n in plan.nodes}
        impairments = dict(state.get("impairments") or {})
        for lk in plan.wan_links:
            if lk.name not in changes:
                continue
            for end, port in ((lk.a, lk.a_port), (lk.b, lk.b_port)):
                if not os.path.exists(os.path.join(NETNS_RUN_DIR, ns[end])):
                    raise LabError(f"namespace {ns[end]} is missing: the lab is damaged, run `npms lab up` to rebuild it")
                try:
                    engine.apply(ns[end], port.ifname, changes[lk.name])
                except (CommandError, ValueError, RuntimeError) as exc:
                    raise LabError(f"link {lk.name}: {exc}") from None
            impairments[lk.name] = changes[lk.name].to_data()
        self._save_state(plan, impairments)
        current = {name: Impairment.from_data(d) for name, d in impairments.items()}
        self._write_front_ends(plan, current)


# ---------------------------------------------------------------------- the WAN engine
class _WanEngine:
    """The lab's view of :mod:`npms_lab.wan` (written by the WAN engine's owner)."""

    def __init__(self, directory: str, module: Any):
        self.directory = directory
        self.wan = module

    def apply(self, netns: str, ifname: str, imp: Impairment) -> None:
        self.wan.apply(self.directory, netns, ifname, delay_ms=imp.delay_ms, jitter_ms=imp.jitter_ms,
                       loss_pct=imp.loss_pct, rate_mbps=imp.rate_mbps)

    def current(self) -> Dict[Tuple[str, str], Impairment]:
        return {key: Impairment.from_data(d) for key, d in self.wan.show(self.directory).items()}

    def daemons(self) -> List[Tuple[str, Optional[int]]]:
        return list(self.wan.daemons(self.directory))

    def same(self, have: Impairment, want: Impairment) -> bool:
        """Equal within what the kernel stores (the engine knows its rounding)."""
        return bool(self.wan.same(have, want))

    def shutdown(self) -> None:
        self.wan.shutdown(self.directory)


def _wan_engine(directory: str, required: bool = True) -> Optional[_WanEngine]:
    try:
        from . import wan  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        if required:
            raise LabError(f"the WAN impairment engine (npms_lab.wan) cannot be imported: {exc}") from None
        return None
    return _WanEngine(directory, wan)
