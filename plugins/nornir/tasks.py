# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir tasks of galactic.npms: plain functions ``(task, ...) -> Result``.

Each task reaches its node through the host's npms runner (see
:func:`npms_nornir.connections.get_runner`) and honours ``task.is_dry_run()``.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping, Optional, Sequence, Union

from nornir.core.task import Result

from npms.overlay import RESOURCE_ORDER, node_overlay
from npms.resources import base as resource_base
from npms.resources.registry import ANY_DATAPLANE, build as build_resource
from npms.runner import CommandError

from .connections import get_runner


def command(
    task: Any,
    argv: Union[str, Sequence[Any]],
    stdin: Optional[str] = None,
    check: bool = True,
    timeout: float = 60.0,
    read_only: bool = False,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
) -> Result:
    """Run one command on the host (inside its namespace for lab hosts).

    Args:
      argv: the command as a list (or a string, split like a shell would, without a shell).
      stdin: input for the command; never kept in the result (it may hold a key).
      check: a non-zero exit fails the result (the output is kept on it either way).
      timeout: seconds before the command is killed (the result then fails with rc 124).
      read_only: the command only reads state, so it also runs in a dry run and never
        reports ``changed``.
      dry_run: overrides Nornir's global dry run for this task.
      connection: connection plugin name (default: the host's ``npms_connection``, else netns).

    Returns:
      ``result`` is stdout; ``stdout``, ``stderr``, ``rc`` and ``argv`` are attributes too.
      A command that is not ``read_only`` reports ``changed``; in a dry run it is not run
      (``result`` is None, ``rc`` is None, ``dry_run`` is True).
    """
    args = tuple(shlex.split(argv) if isinstance(argv, str) else (str(a) for a in argv))
    if not args:
        raise ValueError("command: empty argv")
    runner = get_runner(task, connection)
    if task.is_dry_run(dry_run) and not read_only:
        return Result(host=task.host, result=None, changed=False, argv=args, rc=None, stdout="", stderr="", dry_run=True)
    try:
        res = runner.run(args, stdin=stdin, check=False, timeout=timeout)
    except CommandError as exc:  # could not start, or timed out
        return Result(host=task.host, result=exc.stdout, failed=True, exception=exc, argv=args, rc=exc.rc,
                      stdout=exc.stdout, stderr=exc.stderr, dry_run=False)
    failed = check and not res.ok
    exception = CommandError(runner.where, args, res.rc, res.stdout, res.stderr) if failed else None
    return Result(
        host=task.host,
        result=res.stdout,
        changed=not read_only and res.ok,
        failed=failed,
        exception=exception,
        argv=args,
        rc=res.rc,
        stdout=res.stdout,
        stderr=res.stderr,
        dry_run=False,
    )


def overlay_keys(task: Any, inventory: Any, dry_run: Optional[bool] = None) -> Result:
    """Create the host's WireGuard tunnels (no peers yet; keys generated on the node) and
    return their public keys: ``result`` is ``{interface: {"public_key": ...}}``."""
    tunnels = node_overlay(inventory, task.host.name)["wireguard"]
    sub = resource(task, "wireguard", [dict(t, peers=[]) for t in tunnels], "merged", dry_run=dry_run)
    if sub.failed:
        return sub
    return Result(host=task.host, result=(sub.result or {}).get("facts", {}), changed=sub.changed)


def overlay(
    task: Any,
    inventory: Any,
    paths: Optional[Sequence[Any]] = None,
    public_keys: Optional[Any] = None,
    state: str = "overridden",
    dry_run: Optional[bool] = None,
    routes: Optional[Mapping[str, Any]] = None,
) -> Result:
    """Apply the host's whole overlay (npms.overlay.node_overlay), resource by resource in
    the order the roles use; stops at the first failure (that resource rolled back).
    ``routes`` is the collected route table (:func:`bgp_routes`, ``npms.bgp.route_table``):
    edges steer what the customers announced rather than everything the inventory allows.

    ``result`` maps each resource to its result dict; ``diff`` joins their diffs.
    """
    config = node_overlay(inventory, task.host.name, paths=paths or (), public_keys=public_keys or {}, routes=routes)
    results = {}
    diffs = []
    changed = False
    for name in RESOURCE_ORDER:
        if name not in config:
            continue
        sub = resource(task, name, config[name], state, dry_run=dry_run)
        if sub.failed:
            return Result(host=task.host, result=results, failed=True, exception=sub.exception, changed=changed)
        results[name] = sub.result
        changed = changed or sub.changed
        if sub.diff:
            diffs.append(f"# {name}\n{sub.diff}")
    return Result(host=task.host, result=results, changed=changed, diff="".join(diffs))


def resource(
    task: Any,
    resource_name: str,
    config: Optional[Sequence[Any]] = None,
    state: str = "merged",
    dataplane: Optional[str] = None,
    running_config: Optional[str] = None,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
    vpp: Any = None,
    options: Optional[Mapping[str, Any]] = None,
) -> Result:
    """Manage one dataplane resource on the host: the same engine as the Ansible module
    ``galactic.npms.<name>``.

    Args:
      resource_name: srv6_localsid, srv6_route, srv6_policy, srv6_steering, wireguard,
        nftables or frr_bgp (not ``name``: ``nr.run`` takes that for the task's own name).
      options: the resource's own options (frr_bgp: ``pathspace``, ``collect_routes``).
      config: the items, as for the module's ``config``.
      state: merged, replaced, overridden, deleted, gathered, rendered or parsed.
      dataplane: linux or vpp (default: the host's ``dataplane``, else linux).
      running_config: text for state parsed.
      dry_run: overrides Nornir's global dry run (check mode: the plan, no change).
      connection: connection plugin for Linux (default as for :func:`command`).
      vpp: a connected :class:`npms.drivers.vpp.VppClient` for the vpp dataplane
        (default: connect to the host's ``npms_vpp_api_socket`` on this machine).

    Returns:
      ``result`` is the module's result dict (``commands``, ``before``, ``after``,
      ``gathered``, ...); ``diff`` is the before/after text; ``changed`` as the module.
      A bad item or a failed change fails the result with the message in ``exception``
      (a failed change has been rolled back).
    """
    plane = dataplane or task.host.get("dataplane") or "linux"
    needs_runner = (plane == "linux" or resource_name in ANY_DATAPLANE) and state not in ("rendered", "parsed")
    runner = get_runner(task, connection) if needs_runner else None
    try:
        res = build_resource(resource_name, plane, runner=runner, vpp=vpp,
                             **({"vpp_socket": task.host["npms_vpp_api_socket"]} if task.host.get("npms_vpp_api_socket") else {}),
                             **dict(options or {}))
        out = resource_base.run(res, config, state, check_mode=task.is_dry_run(dry_run), running_config=running_config)
    except (resource_base.ResourceError, CommandError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    diff = ""
    if out.diff:
        diff = "--- before\n" + out.diff["before"] + "+++ after\n" + out.diff["after"]
    return Result(host=task.host, result=out.to_dict(), changed=out.changed, diff=diff)


def bgp(
    task: Any,
    inventory: Any,
    routes: Optional[Mapping[str, Any]] = None,
    state: str = "overridden",
    dry_run: Optional[bool] = None,
) -> Result:
    """The host's BGP from the inventory (``npms.bgp``): on an edge, one view per tenant
    attached there, advertising the tenant's prefixes behind its other edges (from
    ``routes`` when given); on a customer router, its default instance."""
    from npms.bgp import customer_bgp_config, edge_bgp_config  # pylint: disable=import-outside-toplevel

    role = inventory.nodes[task.host.name].role
    config = edge_bgp_config(inventory, task.host.name, routes) if role == "edge" else customer_bgp_config(inventory, task.host.name)
    return resource(task, "frr_bgp", config, state, dry_run=dry_run)


def bgp_routes(task: Any) -> Result:
    """What the host's tenants' customers announce: ``result`` is ``{tenant: {"sessions",
    "learned", "filtered"}}`` (feed the edges' results to ``npms.bgp.route_table``)."""
    sub = resource(task, "frr_bgp", None, "gathered", options={"collect_routes": True})
    if sub.failed:
        return sub
    return Result(host=task.host, result=(sub.result or {}).get("facts", {}).get("bgp", {}), changed=False)


def wireguard_key(
    task: Any,
    interface: str,
    phase: str,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
) -> Result:
    """One phase of a WireGuard key rotation on the host (Linux): the same code as the
    Ansible module ``galactic.npms.wireguard_key``.

    Args:
      interface: the WireGuard interface (made by the ``wireguard`` resource; not ``name``,
        which ``nr.run`` takes for the task's own name).
      phase: ``prepare`` (make the next key on the node; again: the same one),
        ``commit`` (switch the interface to it) or ``abort`` (drop it).  Across nodes:
        prepare, commit on the node, then at once replace the old public key with the new
        one on its peers (see ``npms.resources.wireguard_linux.rotate`` for why).
      dry_run: overrides Nornir's global dry run (check mode).
      connection: connection plugin (default as for :func:`command`).

    Returns:
      ``result`` is ``{"changed", "public_key", "previous_public_key", "pending",
      "commands"}``; private keys never leave the node.
    """
    from npms.resources.wireguard_linux import key_phase  # pylint: disable=import-outside-toplevel

    try:
        out = key_phase(get_runner(task, connection), interface, phase, check_mode=task.is_dry_run(dry_run))
    except (resource_base.ResourceError, CommandError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    return Result(host=task.host, result=out, changed=out["changed"])


def nftables(
    task: Any,
    config: Optional[Sequence[Any]] = None,
    state: str = "merged",
    rollback_timeout: int = 0,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
) -> Result:
    """The ``nftables`` resource with the module's rollback cookie (Linux): as
    :func:`resource` with ``name="nftables"``, and with ``rollback_timeout`` > 0 the host
    restores its previous tables after that many seconds unless :func:`nftables_confirm`
    is run with ``result["rollback_cookie"]`` (from a new connection, to prove one works).
    """
    from npms.resources.nftables import NftTables  # pylint: disable=import-outside-toplevel

    try:
        res = NftTables(get_runner(task, connection), rollback_timeout=rollback_timeout)
        out = resource_base.run(res, config, state, check_mode=task.is_dry_run(dry_run))
    except (resource_base.ResourceError, CommandError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    result = out.to_dict()
    if res.rollback_cookie:
        result["rollback_cookie"] = res.rollback_cookie
    diff = "--- before\n" + out.diff["before"] + "+++ after\n" + out.diff["after"] if out.diff else ""
    return Result(host=task.host, result=result, changed=out.changed, diff=diff)


def nftables_confirm(task: Any, cookie: str, rollback: bool = False, connection: Optional[str] = None) -> Result:
    """Keep the nftables change behind ``cookie`` (cancel its pending rollback), or with
    ``rollback=True`` restore the previous tables now.  Fails when the rollback already ran."""
    from npms.resources.nftables import confirm_rollback, rollback_now  # pylint: disable=import-outside-toplevel

    try:
        (rollback_now if rollback else confirm_rollback)(get_runner(task, connection), cookie)
    except (resource_base.ResourceError, CommandError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    return Result(host=task.host, result={"cookie": cookie, "rolled_back": rollback}, changed=True)


def _probe_python(task: Any, runner: Any) -> str:
    """The node's Python for probe commands: the host's ``npms_python``, else this very
    interpreter for a namespace or local runner (same machine, npms installed), else
    ``python3``."""
    import sys  # pylint: disable=import-outside-toplevel

    from npms.runner import LocalRunner, NetnsRunner  # pylint: disable=import-outside-toplevel

    if task.host.get("npms_python"):
        return str(task.host["npms_python"])
    return sys.executable if isinstance(runner, (LocalRunner, NetnsRunner)) else "python3"


def probe(
    task: Any,
    targets: Optional[Sequence[Any]] = None,
    inventory: Any = None,
    kinds: Sequence[str] = ("icmp", "udp"),
    count: int = 10,
    interval: float = 0.05,
    timeout: float = 1.0,
    udp_port: int = 9876,
    tcp_port: int = 9877,
    iperf: bool = False,
    iperf_only: bool = False,
    iperf_seconds: int = 5,
    iperf_port: int = 5201,
    dry_run: Optional[bool] = None,  # pylint: disable=unused-argument
    connection: Optional[str] = None,
) -> Result:
    """Probe from the host: the same code as the Ansible module ``galactic.npms.probe``,
    run ON the node (``python -m npms.probe run`` through the host's runner, inside its
    namespace in the lab), samples back as JSON.

    Args:
      targets: ``[{"dst", "address", "tenant", "kinds", "tunnel"}]``; default
        ``npms.probe.probe_targets(inventory, host)`` (``inventory``: an
        :class:`npms.model.Inventory`, default the host's model from NpmsInventory).
        A target's ``tunnel`` (``{"interface", "address"}``, edges) is probed through
        while it is up on the node, else ``address`` over the underlay.
      kinds, count, interval, timeout, udp_port, tcp_port: as the module's options.
      iperf: also one bounded iperf3 run per target address; ``iperf_only``: only those
        (the rare schedule).  ``iperf_seconds`` is at most 10.
      dry_run: accepted like every task's; probing changes nothing, so it runs in a dry
        run too and never reports ``changed``.
      connection: connection plugin (default as for :func:`command`).

    Returns:
      ``result`` is ``{"samples", "failed_targets", "errors", "paths"}`` as the module
      returns; ``paths`` says per target whether the probes went through its tunnel
      (``{"dst", "tenant", "via": "tunnel"|"underlay", "address"}``, plus ``reason``
      when a tunnel was not up).
    """
    import json  # pylint: disable=import-outside-toplevel

    from npms.probe import ProbeError, probe_targets  # pylint: disable=import-outside-toplevel

    try:
        if targets is None:
            if inventory is None:
                from .inventory import inventory_model  # pylint: disable=import-outside-toplevel

                inventory = inventory_model(task.host)
            targets = probe_targets(inventory, task.host.name)
        runner = get_runner(task, connection)
        argv = [_probe_python(task, runner), "-m", "npms.probe", "run", "--targets", "-", "--src", task.host.name,
                "--kinds", ",".join(kinds), "--count", count, "--interval", interval, "--timeout", timeout,
                "--udp-port", udp_port, "--tcp-port", tcp_port, "--iperf-seconds", iperf_seconds,
                "--iperf-port", iperf_port]
        argv += ["--iperf"] if iperf else []
        argv += ["--iperf-only"] if iperf_only else []
        n = len(targets)
        per = max([len(kinds)] + [len(t.get("kinds") or ()) for t in targets])
        bound = 60.0 + n * per * (count * interval + timeout + 5) + (n * (iperf_seconds + 12) if iperf or iperf_only else 0)
        res = runner.run(argv, stdin=json.dumps(list(targets)), check=True, timeout=bound)
        out = json.loads(res.stdout)
    except (CommandError, ProbeError, ValueError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    return Result(host=task.host, result=out, changed=False)


def probe_responder(
    task: Any,
    state: str = "started",
    pidfile: Optional[str] = None,
    bind: str = "::",
    udp_port: int = 9876,
    tcp_port: int = 9877,
    iperf: bool = False,
    iperf_port: int = 5201,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
) -> Result:
    """Start or stop the host's probe responder (and iperf3 server): the same code as the
    Ansible module ``galactic.npms.probe_responder``, through the host's runner.

    Args:
      state: ``started`` or ``stopped``.
      pidfile: default ``/run/npms/probe-responder-<netns or host>.pid`` (lab namespaces,
        of every lab on the machine, share ``/run``, so each gets its own).
      bind, udp_port, tcp_port, iperf, iperf_port: as the module's options.
      dry_run: overrides Nornir's global dry run (check mode).
      connection: connection plugin (default as for :func:`command`).

    Returns:
      ``result`` is ``{"changed", "pid", "iperf_pid", "commands"}``; ``diff`` says what
      ran before and after.
    """
    from npms.probe import RUN_DIR, ProbeError, responder_state  # pylint: disable=import-outside-toplevel

    try:
        runner = get_runner(task, connection)
        out = responder_state(runner, state, pidfile=pidfile or f"{RUN_DIR}/probe-responder-{task.host.get('netns') or task.host.name}.pid",
                              bind=bind, udp_port=udp_port, tcp_port=tcp_port, iperf=iperf, iperf_port=iperf_port,
                              python=_probe_python(task, runner), check_mode=task.is_dry_run(dry_run))
    except (CommandError, ProbeError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    diff = out.pop("diff")
    text = "--- before\n" + diff["before"] + "+++ after\n" + diff["after"] if out["changed"] else ""
    return Result(host=task.host, result=out, changed=out["changed"], diff=text)


def bundle_state_path(task: Any) -> str:
    """Where the host records the bundle it runs: per namespace in a lab (namespaces share
    one file system), per node elsewhere; ``npms_bundle_state`` in host data overrides."""
    if task.host.get("npms_bundle_state"):
        return str(task.host["npms_bundle_state"])
    return f"/var/lib/npms/bundle-{task.host.get('netns') or task.host.name}.json"


def deploy_bundle(
    task: Any,
    bundles: Mapping[str, Any],
    previous: Optional[Mapping[str, Any]] = None,
    verify: bool = False,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
    rollback: bool = False,
) -> Result:
    """Make the host hold its bundle (``bundles[host]``; hosts without one are skipped):
    ``npms.bundle.apply_bundle``, the same code the sidecar agent runs.  A bundle older
    than the one the host runs is refused; a failure puts the host back to
    ``previous[host]``.  ``verify``: a forced check-mode pass over every resource, which
    must find nothing to change.  ``rollback``: put the host back to an older bundle on
    purpose.  ``result`` is apply_bundle's dict."""
    from npms.bundle import BundleError, apply_bundle  # pylint: disable=import-outside-toplevel

    bundle = bundles.get(task.host.name)
    if bundle is None:
        return Result(host=task.host, result={"skipped": "no bundle for this host"}, changed=False)
    runner = get_runner(task, connection)
    plane = task.host.get("dataplane") or "linux"

    def factory(name: str) -> Any:
        return build_resource(name, plane, runner=runner)

    check = True if verify else task.is_dry_run(dry_run)
    try:
        out = apply_bundle(runner, bundle, previous=(previous or {}).get(task.host.name), check_mode=check,
                           state_path=bundle_state_path(task), resource_factory=factory, force=verify or rollback,
                           rollback=rollback)
    except (BundleError, CommandError) as exc:
        return Result(host=task.host, result={"error": str(exc)}, failed=True, exception=exc, changed=False)
    diff = "".join(f"# {name}\n--- before\n{r['diff']['before']}+++ after\n{r['diff']['after']}"
                   for name, r in out["resources"].items() if r.get("diff"))
    return Result(host=task.host, result=out, changed=out["changed"], failed=bool(out["error"]), diff=diff)


def triangulate(task: Any, inventory: Any, count: int = 5, wan_address: Optional[str] = None,
                connection: Optional[str] = None) -> Result:
    """Edge triangulation on the host (an edge): the controller's 6 candidate POPs for its
    WAN address, each pinged from the edge itself, the 3 fastest answering kept
    (``npms.triangulate``); ``result`` is ``{"edge", "candidates", "upstreams"}`` for
    ``npms.triangulate.with_upstreams``.  Read-only: it changes nothing on the node."""
    from npms.probe import ProbeError, icmp_probe  # pylint: disable=import-outside-toplevel
    from npms.triangulate import TriangulationError, triangulate as choose  # pylint: disable=import-outside-toplevel

    runner = get_runner(task, connection)

    def ping(address: str) -> Optional[float]:
        try:
            sample = icmp_probe(address, count=count, interval_s=0.05, timeout_s=1.0, runner=runner)
        except ProbeError:  # no route to it from this edge: it does not answer
            return None
        return sample.get("rtt_ms") if sample.get("received") else None

    try:
        out = choose(inventory, task.host.name, ping, wan_address=wan_address)
    except (TriangulationError, CommandError) as exc:
        return Result(host=task.host, result=None, failed=True, exception=exc, changed=False)
    return Result(host=task.host, result=out, changed=False)
