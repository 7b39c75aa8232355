# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Config bundles: everything one node must hold after one loop, versioned and hashed.

A bundle is a JSON object::

    {"format": 1, "node": "edge-ber", "epoch": 42, "hash": "<sha256 of content>",
     "created": "2026-12-06T03:50:00Z", "content": {...}}

``content`` holds, in resource order, the ``config`` of every resource the node runs
(``resources``: WireGuard tunnels and their use, SRv6 SIDs, routes, policies (segment
lists) and steering, nftables, per-tenant BGP), the FEC toggles of each tenant's classes
(``fec``) and the SLA mode definitions they use (``sla_profiles``).  ``hash`` covers
``content`` only (canonical JSON), so the same network state gives the same hash in any
loop; ``epoch`` grows by one per loop (:class:`BundleRepo`).

A node keeps the version it runs in a small state file (:data:`NODE_STATE`) and
**refuses a bundle older than that** (:class:`StaleBundle`): a late push or a cached
pull can never roll it back.  :func:`apply_bundle` applies a bundle through the same
resources as the modules and Nornir tasks, and puts the node back to its previous bundle
when one resource fails (all resources, in reverse order, from that bundle's content).
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import shlex
import tempfile
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .model import Inventory
from .overlay import RESOURCE_ORDER, node_overlay
from .resources import base
from .resources.registry import build
from .runner import CommandError, Runner

BUNDLE_FORMAT = 1
#: where a node records the bundle it runs (epoch and hash; no secrets)
NODE_STATE = "/var/lib/npms/bundle.json"
#: order in which a bundle's resources are applied
BUNDLE_ORDER = RESOURCE_ORDER + ("frr_bgp",)


class BundleError(ValueError):
    """A bundle that cannot be made, stored or applied (the message says which node and why)."""


class StaleBundle(BundleError):
    """The node runs a newer bundle than the one offered."""


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode("ascii")).hexdigest()


def bundle_content(inv: Inventory, node: str, paths: Sequence[Mapping[str, Any]] = (),
                   public_keys: Optional[Mapping[str, Any]] = None,
                   routes: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None) -> Dict[str, Any]:
    """What ``node`` must hold, from the inventory, this loop's paths, the tunnels'
    public keys and the BGP route table."""
    from .bgp import customer_bgp_config, edge_bgp_config  # pylint: disable=import-outside-toplevel

    n = inv.nodes.get(node)
    if n is None:
        raise BundleError(f"node {node!r} is not in the inventory ({inv.source})")
    resources: Dict[str, List[Dict[str, Any]]] = {}
    tenants: List[str] = []
    if n.role in ("core", "edge"):
        resources.update(node_overlay(inv, node, paths=paths, public_keys=public_keys or {}, routes=routes))
        tenants = sorted(inv.tenants) if n.role == "core" else sorted(t for t, ten in inv.tenants.items() if node in ten.edges)
    if n.role == "edge":
        resources["frr_bgp"] = edge_bgp_config(inv, node, routes)
    elif n.role == "customer":
        resources["frr_bgp"] = customer_bgp_config(inv, node)
        tenants = sorted(t for t, ten in inv.tenants.items() if any(a.customer == node for a in ten.attachments))
    fec: Dict[str, Dict[str, Any]] = {}
    profiles: Dict[str, Any] = {}
    for t in tenants:
        for tc in inv.tenants[t].traffic_classes:
            fec.setdefault(t, {})[tc.name] = asdict(tc.fec) if tc.fec else None
            for name in (tc.sla, tc.fallback):
                if name and name in inv.sla_profiles:
                    p = asdict(inv.sla_profiles[name])
                    profiles[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()}
    return {"role": n.role, "resources": {k: resources[k] for k in BUNDLE_ORDER if k in resources},
            "fec": fec, "sla_profiles": profiles}


def make_bundle(node: str, content: Mapping[str, Any], epoch: int, created: Optional[str] = None) -> Dict[str, Any]:
    if not isinstance(epoch, int) or epoch < 1:
        raise BundleError(f"node {node}: epoch must be a positive integer, got {epoch!r}")
    return {"format": BUNDLE_FORMAT, "node": node, "epoch": epoch, "hash": content_hash(content),
            "created": created or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "content": json.loads(canonical(content))}


def check_bundle(bundle: Any, where: str = "bundle") -> Dict[str, Any]:
    """A bundle as received (pull, push, file): its shape and its hash, or BundleError."""
    if not isinstance(bundle, dict):
        raise BundleError(f"{where}: not a JSON object")
    for field, kind in (("format", int), ("node", str), ("epoch", int), ("hash", str), ("content", dict)):
        if not isinstance(bundle.get(field), kind):
            raise BundleError(f"{where}: field {field!r} missing or not a {kind.__name__}")
    if bundle["format"] != BUNDLE_FORMAT:
        raise BundleError(f"{where}: format {bundle['format']} (this npms reads format {BUNDLE_FORMAT})")
    if content_hash(bundle["content"]) != bundle["hash"]:
        raise BundleError(f"{where}: node {bundle['node']} epoch {bundle['epoch']}: content does not match its hash")
    return bundle


def etag(bundle: Mapping[str, Any]) -> str:
    """Strong HTTP ETag of a bundle: its epoch and content hash."""
    return f'"{bundle["epoch"]}-{bundle["hash"][:32]}"'


class BundleRepo:
    """The controller's bundles on disk: ``<root>/<node>/<epoch>.json`` and ``<root>/epoch``
    (the last epoch handed out).  Writes are atomic; ``keep`` epochs stay per node."""

    def __init__(self, root: str, keep: int = 5):
        self.root = root
        self.keep = keep
        os.makedirs(root, exist_ok=True)

    def next_epoch(self) -> int:
        """One more than any epoch handed out before (monotonic across processes)."""
        path = os.path.join(self.root, "epoch")
        with open(os.path.join(self.root, ".lock"), "a+", encoding="ascii") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path, encoding="ascii") as fh:
                    last = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                last = 0
            epoch = max(last, self._max_stored()) + 1
            self._write(path, f"{epoch}\n")
            return epoch

    def peek_epoch(self) -> int:
        """The epoch :meth:`next_epoch` would hand out, without handing it out (check mode)."""
        try:
            with open(os.path.join(self.root, "epoch"), encoding="ascii") as fh:
                last = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            last = 0
        return max(last, self._max_stored()) + 1

    def _max_stored(self) -> int:
        best = 0
        for node in self.nodes():
            best = max([best] + self._epochs(node))
        return best

    def nodes(self) -> List[str]:
        return sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))

    def _epochs(self, node: str) -> List[int]:
        d = os.path.join(self.root, node)
        if not os.path.isdir(d):
            return []
        return sorted(int(f[:-5]) for f in os.listdir(d) if f.endswith(".json") and f[:-5].isdigit())

    def save(self, bundle: Mapping[str, Any]) -> str:
        check_bundle(dict(bundle))
        d = os.path.join(self.root, bundle["node"])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{bundle['epoch']}.json")
        self._write(path, json.dumps(bundle, sort_keys=True, indent=1) + "\n")
        for old in self._epochs(bundle["node"])[:-self.keep]:
            os.unlink(os.path.join(d, f"{old}.json"))
        return path

    def get(self, node: str, epoch: Optional[int] = None) -> Optional[Dict[str, Any]]:
        epochs = self._epochs(node)
        if not epochs:
            return None
        want = epochs[-1] if epoch is None else epoch
        if want not in epochs:
            return None
        with open(os.path.join(self.root, node, f"{want}.json"), encoding="utf-8") as fh:
            return check_bundle(json.load(fh), f"{self.root}/{node}/{want}.json")

    def previous(self, node: str, epoch: int) -> Optional[Dict[str, Any]]:
        older = [e for e in self._epochs(node) if e < epoch]
        return self.get(node, older[-1]) if older else None

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


# --- on the node --------------------------------------------------------------------------
def ordered_resources(bundle: Mapping[str, Any]) -> List[Any]:
    """(name, config) of a bundle's resources in :data:`BUNDLE_ORDER` (JSON keeps no order)."""
    resources = bundle["content"]["resources"]
    unknown = sorted(set(resources) - set(BUNDLE_ORDER))
    if unknown:
        raise BundleError(f"node {bundle['node']} epoch {bundle['epoch']}: unknown resource(s) {', '.join(unknown)}")
    return [(name, resources[name]) for name in BUNDLE_ORDER if name in resources]


def running_version(runner: Runner, state_path: str = NODE_STATE) -> Optional[Dict[str, Any]]:
    """``{"epoch", "hash"}`` of the bundle the node runs, or None (never had one)."""
    res = runner.run(["cat", state_path], check=False)
    if not res.ok:
        return None
    try:
        data = json.loads(res.stdout)
        return {"epoch": int(data["epoch"]), "hash": str(data["hash"])}
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{runner.where}: {state_path} is not a bundle state file; remove it to start over") from None


def _record(runner: Runner, bundle: Mapping[str, Any], state_path: str) -> None:
    text = json.dumps({"epoch": bundle["epoch"], "hash": bundle["hash"], "node": bundle["node"]}) + "\n"
    d = shlex.quote(os.path.dirname(state_path))
    p = shlex.quote(state_path)
    runner.run(["sh", "-c", f"mkdir -p {d} && cat > {p}.tmp && mv {p}.tmp {p}"], stdin=text)


ResourceFactory = Callable[[str], base.Resource]


def apply_bundle(runner: Runner, bundle: Mapping[str, Any], *, previous: Optional[Mapping[str, Any]] = None,
                 check_mode: bool = False, state_path: str = NODE_STATE,
                 resource_factory: Optional[ResourceFactory] = None, force: bool = False,
                 rollback: bool = False) -> Dict[str, Any]:
    """Make the node hold ``bundle``.

    Refuses a bundle older than the one the node runs (:class:`StaleBundle`); the same
    epoch and hash again is reported unchanged without reading the node's resources
    unless ``force`` (a verify run reads them all).  ``rollback`` is the controller
    putting a node back to an older bundle on purpose (after a failed verification): the
    age check is skipped.  Each resource is applied with state
    ``overridden``.  When one fails, every resource is put back to ``previous`` when that
    is the bundle the node runs (its state file says so), and the result says
    ``rolled_back``; otherwise the failed resource's own all-or-nothing rollback is all
    there is (the node keeps what it had; nothing is recorded).  The previous
    bundle is applied in the same order as any bundle (tunnels before what uses them).
    """
    bundle = check_bundle(dict(bundle), f"bundle for {runner.where}")
    factory = resource_factory or (lambda name: build(name, "linux", runner=runner))
    out: Dict[str, Any] = {"node": bundle["node"], "epoch": bundle["epoch"], "hash": bundle["hash"],
                           "changed": False, "resources": {}, "rolled_back": False, "error": None}
    running = running_version(runner, state_path)
    out["running"] = running
    if running is not None:
        if bundle["epoch"] < running["epoch"] and not rollback:
            raise StaleBundle(f"{bundle['node']}: refused bundle epoch {bundle['epoch']}: the node runs epoch "
                              f"{running['epoch']} (a late update)")
        if running == {"epoch": bundle["epoch"], "hash": bundle["hash"]} and not force:
            out["up_to_date"] = True
            return out
    done: List[str] = []
    try:
        for name, config in ordered_resources(bundle):
            res = base.run(factory(name), config, "overridden", check_mode=check_mode)
            out["resources"][name] = res.to_dict()
            if res.diff:
                out["resources"][name]["diff"] = res.diff
            out["changed"] = out["changed"] or res.changed
            done.append(name)
    except (base.ResourceError, CommandError) as exc:
        out["error"] = f"{name}: {exc}"
        # only the bundle the node really runs is a place to go back to
        runs_previous = previous is not None and running == {"epoch": previous.get("epoch"), "hash": previous.get("hash")}
        if runs_previous and not check_mode:
            try:
                back = check_bundle(dict(previous), f"previous bundle for {runner.where}")
                for pname, pconfig in ordered_resources(back):
                    base.run(factory(pname), pconfig, "overridden")
                out["rolled_back"] = True
                out["running"] = {"epoch": back["epoch"], "hash": back["hash"]}
                _record(runner, back, state_path)
            except (base.ResourceError, CommandError, BundleError) as undo:
                out["error"] += f"; putting back epoch {previous.get('epoch')} also failed: {undo}"
        return out
    if not check_mode and (out["changed"] or running != {"epoch": bundle["epoch"], "hash": bundle["hash"]}):
        _record(runner, bundle, state_path)
        out["running"] = {"epoch": bundle["epoch"], "hash": bundle["hash"]}
    return out
