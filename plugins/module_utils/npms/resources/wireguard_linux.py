# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard on Linux: ``ip`` and ``wg`` through a runner, with wireguard-go where the
kernel has no WireGuard.

Interfaces
  An interface is created with ``ip link add <name> type wireguard``; when the kernel
  refuses (no module, as on the lab machines) with ``wireguard-go <name>``, which
  daemonizes and exits by itself when the link is deleted.  wireguard-go's control
  socket is ``/var/run/wireguard/<name>.sock`` on the file system, which all network
  namespaces of a machine share, and ``wg`` in any namespace talks to it: interface names
  must therefore be unique across all namespaces of a machine (a name already used in
  another namespace is refused before anything changes).  Nothing here lists that
  directory (``wg show interfaces`` / ``all``): ``wg`` unlinks a socket that refuses its
  connection, as a starting wireguard-go's does for an instant, and the daemon then exits.

Ownership
  galactic.npms owns the WireGuard interfaces whose link alias (``ip link set <if> alias``)
  is :data:`OWNER_ALIAS`.  The alias lives on the link, in its own namespace, so it tells
  npms' interfaces from hand-made ones (which ``deleted`` / ``overridden`` never touch)
  even though key files of all namespaces share one directory.  An interface of the same
  name that npms does not own is never adopted: creating it fails, naming the conflict.

Keys
  The private key is generated on the node, ``umask 077; wg genkey > <key_dir>/<name>.key``
  (mode 0600, directory 0700), and handed to the interface by path
  (``wg set <if> private-key <file>``); it never passes through Python, a result, a diff
  or a log.  Even reading the interface back uses ``wg show <if> dump`` filtered on the
  node by ``awk`` (:data:`DUMP_SCRIPT`), so the private (and any preshared) key columns
  never leave it.  A key file that survives its interface (a reboot took the
  wireguard-go interface) is reused, so the interface comes back with the public key its
  peers know.  Deleting an interface removes its key files once the whole change has
  succeeded (a rollback that re-creates the interface reuses the key).  The directory is
  shared by all namespaces of a machine, like wireguard-go's sockets: one more reason for
  unique interface names.

New peers
  A new peer with an endpoint and no keepalive of its own is sent one keepalive at once
  (:func:`_nudge`) so that the handshake does not wait for traffic.

Key rotation (:func:`key_phase`, :func:`rotate`)
  ``prepare`` generates ``<name>.key.next`` and returns its public key (again the same
  one until committed or aborted); ``commit`` switches the interface to it
  (``wg set <if> private-key <next>``, then renames the file); ``abort`` drops it.
  Across nodes the order is *commit on the node, then update its peers* (see
  :func:`rotate` for why this interrupts traffic least: about one handshake round trip
  after the peer update, nothing lost).

Endpoints
  WireGuard learns a peer's endpoint from its handshakes and cannot forget one, so a peer
  given without ``endpoint`` keeps whatever endpoint the node has for it (configured or
  learned) and is not reported as a change.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shlex
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import fields as f
from .base import ADD, DELETE, MODIFY, REDACTED, Change, Resource, ResourceError, ResourceResult, run
from .wireguard import Wireguard, public_key
from ..runner import CommandError, Runner

KEY_DIR = "/etc/npms/wireguard"
OWNER_ALIAS = "npms-wireguard"
WIREGUARD_GO_SOCKET_DIR = "/var/run/wireguard"
PHASES = ("prepare", "commit", "abort")
HIDDEN = "(hidden)"

# `wg show <if> dump` of each interface named as an argument, in the format of `wg show
# all dump` (interface name first) and with the secret columns blanked *on the node*:
# the interface line (private key, public key, port, fwmark) loses its private key, peer
# lines (public key, preshared key, endpoint, allowed ips, handshake, rx, tx, keepalive)
# their preshared key; lines of any other shape are dropped rather than passed on.  The
# dump is kept in a shell variable so that wg's exit status is not hidden by the pipe.
# Only the node's own interfaces are read: `wg show all` would also reach the wireguard-go
# interfaces of every other namespace through their shared sockets.
DUMP_SCRIPT = (
    "for i in \"$@\"; do d=$(wg show \"$i\" dump) || exit $?; "
    "printf '%s\\n' \"$d\" | awk -F '\\t' -v OFS='\\t' -v i=\"$i\" "
    "'NR == 1 && NF == 4 { print i, \"" + HIDDEN + "\", $2, $3, $4; next } "
    "NF == 8 { print i, $1, \"" + HIDDEN + "\", $3, $4, $5, $6, $7, $8 }'; done"
)
_WG_GO_ERROR_RE = re.compile(r"^ERROR: \([^)]*\) \S+ \S+ (.*)$")


#: link kinds of WireGuard interfaces: the kernel's, and wireguard-go's tun device
WIREGUARD_LINK_KINDS = ("wireguard", "tun")


def _link_kind(link: Mapping[str, Any]) -> Optional[str]:
    return (link.get("linkinfo") or {}).get("info_kind")


def _join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def _keygen_script(key_dir: str, path: str) -> str:
    """Shell that makes ``path`` a private key unless it already holds one; the key goes
    from ``wg genkey`` to the file under umask 077, through a temporary name so that a
    failure never leaves a half-written key behind."""
    q_dir, q_path, q_tmp = shlex.quote(key_dir), shlex.quote(path), shlex.quote(path + ".tmp")
    return (f"umask 077 && mkdir -p {q_dir} && "
            f"if [ ! -s {q_path} ]; then wg genkey > {q_tmp} && mv -f {q_tmp} {q_path}; fi && chmod 600 {q_path}")


def parse_dump(text: str, where: str = "wg show all dump") -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """Interfaces of ``wg show all dump`` text: ``({name: {"public_key", "listen_port",
    "peers": {public key: peer}}}, secrets)`` where ``secrets`` are the private and
    preshared keys the text held (only so that they can be scrubbed from messages; they
    are never part of the result).  Errors name the line, never its content."""
    interfaces: Dict[str, Dict[str, Any]] = {}
    secrets: List[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) == 5:
            name, private, public, port = cols[0], cols[1], cols[2], cols[3]
            if private not in ("(none)", HIDDEN):
                secrets.append(private)
            entry = interfaces.setdefault(name, {"peers": {}})
            entry["public_key"] = None if public == "(none)" else public_key(public, f"{where} line {number}", "public key")
            entry["listen_port"] = f.integer(port, f"{where} line {number}", "listen port", 0, 65535)
        elif len(cols) == 9:
            name, peer_key, preshared, endpoint, allowed, keepalive = cols[0], cols[1], cols[2], cols[3], cols[4], cols[8]
            if preshared not in ("(none)", HIDDEN):
                secrets.append(preshared)
            pw = f"{where} line {number} (interface {name})"
            peer: Dict[str, Any] = {"public_key": public_key(peer_key, pw, "peer public key")}
            if endpoint != "(none)":
                peer["endpoint"] = f.endpoint(endpoint, pw, "endpoint")
            nets = [] if allowed in ("(none)", "") else allowed.split(",")
            peer["allowed_ips"] = sorted({str(ipaddress.ip_network(n, strict=False)) for n in nets})
            peer["persistent_keepalive"] = 0 if keepalive == "off" else f.integer(keepalive, pw, "persistent keepalive", 0, 65535)
            interfaces.setdefault(name, {"peers": {}})["peers"][peer["public_key"]] = peer
        else:
            raise ResourceError(f"{where} line {number}: expected the 5 columns of an interface or the 9 of a peer "
                                f"(the output of `wg show all dump`), got {len(cols)}")
    return interfaces, secrets


def _wg_set_peer(peer: Mapping[str, Any]) -> List[str]:
    args = ["peer", peer["public_key"]]
    if peer.get("endpoint"):
        args += ["endpoint", peer["endpoint"]]
    args += ["allowed-ips", ",".join(peer.get("allowed_ips") or [])]
    keepalive = peer.get("persistent_keepalive") or 0
    args += ["persistent-keepalive", str(keepalive) if keepalive else "off"]
    return args


def _nudge(name: str, peers: Sequence[Mapping[str, Any]]) -> List[Tuple[str, ...]]:
    """A keepalive sent at once to each new peer that has an endpoint and no keepalive of
    its own, so that the handshake starts now instead of waiting for traffic.

    WireGuard sends a keepalive when a peer's persistent keepalive goes from off to on
    (kernel and wireguard-go alike); turning it on and off again in one ``wg set`` leaves
    the configuration as it was.  A new peer that has a keepalive sends one by itself
    when the interface is up.  Without this, the side configured first tries once, is
    refused (the other side does not know it yet) and waits its 5-second rekey timeout
    before trying again, which is the 5-second first handshake seen in the lab and the
    gap a key rotation would leave when only the rotated node has traffic."""
    args: List[str] = []
    for peer in peers:
        if peer.get("endpoint") and not peer.get("persistent_keepalive"):
            args += ["peer", peer["public_key"], "persistent-keepalive", "1", "peer", peer["public_key"], "persistent-keepalive", "off"]
    return [("wg", "set", name, *args)] if args else []


class _Create:
    """The step that creates the link: the kernel's WireGuard, else wireguard-go."""

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return f"ip link add {shlex.quote(self.name)} type wireguard || wireguard-go {shlex.quote(self.name)}"


class _RemoveKeys:
    """Removing a deleted interface's key files: done once the whole change succeeded."""

    def __init__(self, name: str, paths: Sequence[str]):
        self.name = name
        self.argv = ("rm", "-f") + tuple(paths)

    def __str__(self) -> str:
        return _join(self.argv)


class WireguardLinux(Wireguard):
    """WireGuard interfaces and peers on a Linux node (kernel WireGuard or wireguard-go),
    every command through ``runner``; key files in ``key_dir`` (default :data:`KEY_DIR`)."""

    dataplane = "linux"
    #: where private keys live on the node (one directory for all namespaces of a machine)
    key_dir = KEY_DIR

    def __init__(self, runner: Runner, key_dir: Optional[str] = None):
        super().__init__(runner)
        self.runner = runner
        if key_dir:
            self.key_dir = key_dir.rstrip("/") or "/"
        # What the last gather saw (for facts, learned endpoints and name conflicts).
        self._public_keys: Dict[str, Optional[str]] = {}
        self._endpoints: Dict[Tuple[str, str], str] = {}
        self._links: Dict[str, Dict[str, Any]] = {}
        self._secrets: List[str] = []
        self._removed_keys: List[_RemoveKeys] = []
        self._new_keys: List[str] = []

    # --- paths -----------------------------------------------------------------------------
    def key_path(self, name: str) -> str:
        return f"{self.key_dir}/{name}.key"

    def next_key_path(self, name: str) -> str:
        return f"{self.key_dir}/{name}.key.next"

    # --- reading the node ------------------------------------------------------------------
    def _read(self) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]], Dict[str, Dict[str, Any]]]:
        links = {link["ifname"]: link for link in json.loads(self.runner.run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")}
        addrs: Dict[str, List[str]] = {}
        for link in json.loads(self.runner.run(["ip", "-j", "addr", "show"]).stdout or "[]"):
            for a in link.get("addr_info", []):
                if a.get("local") and a.get("prefixlen") is not None:
                    addrs.setdefault(link["ifname"], []).append(str(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")))
        # Never `wg show interfaces`: it connects to every socket in the shared directory and
        # unlinks one that refuses, which is what a wireguard-go socket does for a moment
        # between bind and listen; the daemon, watching its socket, then exits and takes its
        # link along (another namespace's tunnel vanished at random under molecule).
        owned = sorted(n for n, link in links.items()
                       if link.get("ifalias") == OWNER_ALIAS and _link_kind(link) in WIREGUARD_LINK_KINDS)
        dump: Dict[str, Dict[str, Any]] = {}
        if owned:
            text = self.runner.run(["sh", "-c", DUMP_SCRIPT, "sh", *owned]).stdout
            dump, _secrets = parse_dump(text, f"{self.runner.where}: wg show dump")
        return links, addrs, dump

    def gather(self) -> List[Dict[str, Any]]:
        links, addrs, dump = self._read()
        self._links = links
        self._public_keys, self._endpoints = {}, {}
        items = []
        for name in sorted(dump):
            link = links.get(name)
            if link is None or link.get("ifalias") != OWNER_ALIAS:
                continue
            wg = dump[name]
            peers = [wg["peers"][k] for k in sorted(wg["peers"])]
            for peer in peers:
                if peer.get("endpoint"):
                    self._endpoints[(name, peer["public_key"])] = peer["endpoint"]
            items.append({
                "name": name,
                "listen_port": wg.get("listen_port", 0),
                "mtu": link.get("mtu"),
                "addresses": sorted(set(addrs.get(name, []))),
                "peers": peers,
            })
            self._public_keys[name] = wg.get("public_key")
        return items

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        item = super().defaults(copy.deepcopy(item))
        for peer in item["peers"]:
            if not peer.get("endpoint"):
                learned = self._endpoints.get((item["name"], peer["public_key"]))
                if learned:
                    peer["endpoint"] = learned
        return item

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {i["name"]: {"public_key": self._public_keys.get(i["name"])} for i in have}

    def parse(self, text: str) -> List[Dict[str, Any]]:
        """Interfaces and peers of ``wg show all dump`` text (addresses and MTU are not in
        it).  The private and preshared key columns are read past, never returned."""
        dump, secrets = parse_dump(text)
        self._secrets.extend(secrets)
        return [{"name": name, "listen_port": dump[name].get("listen_port", 0),
                 "peers": [dump[name]["peers"][k] for k in sorted(dump[name]["peers"])]}
                for name in sorted(dump)]

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    # --- commands --------------------------------------------------------------------------
    def _steps(self, change: Change) -> List[Any]:
        if change.op == ADD:
            return self._add_steps(change.after)
        if change.op == DELETE:
            name = change.before["name"]
            return [("ip", "link", "del", "dev", name), _RemoveKeys(name, (self.key_path(name), self.next_key_path(name)))]
        return self._modify_steps(change.before, change.after)

    def _add_steps(self, item: Mapping[str, Any]) -> List[Any]:
        name = item["name"]
        key = self.key_path(name)
        wg_set = ["wg", "set", name, "listen-port", str(item["listen_port"]), "private-key", key]
        for peer in item["peers"]:
            wg_set += _wg_set_peer(peer)
        steps: List[Any] = [
            _Create(name),
            # the ownership mark; no kernel-made link-local address (the interface holds
            # exactly the addresses asked for)
            ("ip", "link", "set", "dev", name, "alias", OWNER_ALIAS, "addrgenmode", "none"),
            ("sh", "-c", _keygen_script(self.key_dir, key)),
            tuple(wg_set),
        ]
        steps += [("ip", "addr", "add", a, "dev", name) for a in item["addresses"]]
        steps.append(("ip", "link", "set", "dev", name, "mtu", str(item["mtu"]), "up"))
        # after the link is up: a keepalive is only sent by a running interface
        steps += _nudge(name, item["peers"])
        return steps

    def _modify_steps(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> List[Any]:
        name = after["name"]
        steps: List[Any] = []
        wg_set = ["wg", "set", name]
        if before.get("listen_port") != after.get("listen_port"):
            wg_set += ["listen-port", str(after["listen_port"])]
        old = {p["public_key"]: p for p in before.get("peers", [])}
        new = {p["public_key"]: p for p in after.get("peers", [])}
        # Removals first, in the same `wg set` (one configuration transaction), so that
        # allowed-ips move from an old peer to its replacement at once (key rotation).
        for k in sorted(old):
            # an endpoint cannot be unset: only removing the peer forgets it
            if k not in new or (old[k].get("endpoint") and not new[k].get("endpoint")):
                wg_set += ["peer", k, "remove"]
        for k in sorted(new):
            if old.get(k) != new[k]:
                wg_set += _wg_set_peer(new[k])
        if len(wg_set) > 3:
            steps.append(tuple(wg_set))
        steps += _nudge(name, [new[k] for k in sorted(new) if k not in old])
        have_addrs, want_addrs = set(before.get("addresses", [])), set(after.get("addresses", []))
        steps += [("ip", "addr", "add", a, "dev", name) for a in sorted(want_addrs - have_addrs)]
        steps += [("ip", "addr", "del", a, "dev", name) for a in sorted(have_addrs - want_addrs)]
        if before.get("mtu") != after.get("mtu"):
            steps.append(("ip", "link", "set", "dev", name, "mtu", str(after["mtu"])))
        return steps

    def render_change(self, change: Change) -> List[str]:
        return [str(s) if isinstance(s, (_Create, _RemoveKeys)) else _join(s) for s in self._steps(change)]

    # --- applying --------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change]) -> None:
        """All-or-nothing as the base class, plus: names are checked against the node
        before anything changes, and key files of deleted interfaces go only once every
        change succeeded (a rolled-back delete re-creates the interface with its key)."""
        for change in changes:
            if change.op == ADD:
                self._check_free(change.after["name"])
        self._removed_keys, self._new_keys = [], []
        try:
            super().apply(changes)
        except ResourceError:
            self._drop_orphan_keys()
            raise
        for step in self._removed_keys:
            self.runner.run(step.argv)

    def _check_free(self, name: str) -> None:
        where = f"{self.name}: interface {name} on {self.runner.where}"
        if name in self._links:
            raise ResourceError(f"{where}: a link of that name exists and is not managed by galactic.npms "
                                f"(its alias is not {OWNER_ALIAS!r}); delete it or choose another name")
        # Only this name's socket is probed (names are unique on the machine, so no other
        # namespace is creating it now); `wg show` reaches a live daemon of any namespace.
        if self.runner.run(["wg", "show", name, "public-key"], check=False).ok:
            raise ResourceError(f"{where}: a WireGuard interface of that name exists in another network namespace "
                                f"(wireguard-go's control socket {WIREGUARD_GO_SOCKET_DIR}/{name}.sock is shared by all "
                                "namespaces, so names must be unique on the machine)")

    def _drop_orphan_keys(self) -> None:
        """After a rollback: key files made by this run for interfaces that are gone."""
        for name in self._new_keys:
            exists = self.runner.run(["ip", "link", "show", "dev", name], check=False).ok
            if not exists:
                self.runner.run(["rm", "-f", self.key_path(name)], check=False)

    def apply_change(self, change: Change) -> None:
        steps = self._steps(change)
        if change.op == ADD:
            self._apply_add(change.after["name"], steps)
            return
        if change.op == MODIFY:
            try:
                self._run_steps(steps)
            except Exception:
                self._restore(change.before)
                raise
            return
        for step in steps:
            if isinstance(step, _RemoveKeys):
                self._removed_keys.append(step)
            else:
                self.runner.run(step)

    def _run_steps(self, steps: Sequence[Any]) -> None:
        for step in steps:
            self.runner.run(step)

    def _apply_add(self, name: str, steps: Sequence[Any]) -> None:
        self._create(name)
        try:
            if not self.runner.run(["test", "-s", self.key_path(name)], check=False).ok:
                self._new_keys.append(name)
            self._run_steps(steps[1:])
        except Exception:
            # the base class undoes earlier changes, not this half-made one
            self.runner.run(["ip", "link", "del", "dev", name], check=False)
            raise

    def _create(self, name: str) -> None:
        kernel = self.runner.run(["ip", "link", "add", name, "type", "wireguard"], check=False)
        if kernel.ok:
            return
        try:
            user = self.runner.run(["wireguard-go", name], check=False)
        except CommandError as exc:
            raise ResourceError(f"cannot create {name}: the kernel has no WireGuard ({_last_line(kernel.stderr)}) "
                                f"and wireguard-go could not run: {exc}") from None
        if user.ok:
            self._wait_for_link(name)
            return
        detail = _wireguard_go_error(user.stdout + "\n" + user.stderr)
        hint = ""
        if "in use" in detail:
            hint = (f"; a WireGuard interface of that name runs in another network namespace (wireguard-go's socket "
                    f"{WIREGUARD_GO_SOCKET_DIR}/{name}.sock is shared by all namespaces: names must be unique on the machine)")
        raise ResourceError(f"cannot create {name}: the kernel has no WireGuard ({_last_line(kernel.stderr)}) "
                            f"and wireguard-go failed (exit {user.rc}): {detail}{hint}")

    def _wait_for_link(self, name: str, timeout: float = 5.0) -> None:
        """wireguard-go returns once its daemon is started; on a loaded machine the link
        may show a moment later (seen under molecule with ten nodes at once)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.runner.run(["ip", "link", "show", "dev", name], check=False).ok:
                return
            if time.monotonic() > deadline:
                raise ResourceError(f"cannot create {name}: wireguard-go exited 0 but the link did not appear within "
                                    f"{timeout:g} s (its daemon died; see {WIREGUARD_GO_SOCKET_DIR}/{name}.sock)")
            time.sleep(0.1)

    def _restore(self, before: Mapping[str, Any]) -> None:
        """Best effort after a modify failed half-way: back to ``before``."""
        try:
            now = {i["name"]: i for i in self.gather()}.get(before["name"])
            if now is not None and now != before:
                for step in self._modify_steps(now, before):
                    self.runner.run(step, check=False)
        except (CommandError, ResourceError, ValueError):
            pass

    # --- key rotation ----------------------------------------------------------------------
    def _owned(self, name: str) -> Dict[str, Any]:
        res = self.runner.run(["ip", "-j", "link", "show", "dev", name], check=False)
        links = json.loads(res.stdout or "[]") if res.ok else []
        if not links or links[0].get("ifalias") != OWNER_ALIAS:
            raise ResourceError(f"wireguard_key: interface {name} on {self.runner.where}: "
                                + ("no such interface" if not links else f"not managed by galactic.npms (alias is not {OWNER_ALIAS!r})"))
        return links[0]

    def _pubkey_of_file(self, path: str) -> str:
        out = self.runner.run(["sh", "-c", f"wg pubkey < {shlex.quote(path)}"]).stdout
        return public_key(out.strip(), f"wireguard_key: {path}", "public key")

    def _current_public_key(self, name: str) -> Optional[str]:
        out = self.runner.run(["wg", "show", name, "public-key"]).stdout.strip()
        return None if out in ("", "(none)") else out

    def _has_file(self, path: str) -> bool:
        return self.runner.run(["test", "-s", path], check=False).ok

    def rotate_key(self, name: str, phase: str, check_mode: bool = False) -> Dict[str, Any]:
        """One phase of a key rotation of interface ``name``; see :func:`key_phase`."""
        name = f.ifname(name, "wireguard_key", "name")
        f.one_of(phase, PHASES, "wireguard_key", "phase")
        nxt, key = self.next_key_path(name), self.key_path(name)
        out: Dict[str, Any] = {"changed": False, "name": name, "phase": phase, "commands": []}
        if phase == "abort":
            pending = self._has_file(nxt)
            out["commands"] = [_join(("rm", "-f", nxt))] if pending else []
            out["changed"] = pending
            if pending and not check_mode:
                self.runner.run(("rm", "-f", nxt))
            out["pending"] = False
            exists = self.runner.run(["ip", "link", "show", "dev", name], check=False).ok
            out["public_key"] = self._current_public_key(name) if exists else None
            return out
        self._owned(name)
        current = self._current_public_key(name)
        out["previous_public_key"] = current
        pending = self._has_file(nxt)
        if phase == "prepare":
            gen = ("sh", "-c", _keygen_script(self.key_dir, nxt))
            if not pending:
                out["changed"] = True
                out["commands"] = [_join(gen)]
                if check_mode:
                    out["public_key"] = None
                    out["pending"] = False
                    return out
                self.runner.run(gen)
            out["public_key"] = self._pubkey_of_file(nxt)
            out["pending"] = True
            return out
        # commit
        if not pending:
            out["public_key"] = current
            out["pending"] = False
            return out
        new = self._pubkey_of_file(nxt)
        # the interface first, then the file: a failure in between leaves the pending
        # file in place, and committing again finishes the job
        steps = [("wg", "set", name, "private-key", nxt), ("mv", "-f", nxt, key)]
        out.update(changed=True, commands=[_join(s) for s in steps], public_key=new, pending=False)
        if check_mode:
            return out
        for step in steps:
            self.runner.run(step)
        now = self._current_public_key(name)
        if now != new:
            raise ResourceError(f"wireguard_key: interface {name} on {self.runner.where}: after commit its public key is "
                                f"{now}, expected {new}")
        return out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _wireguard_go_error(text: str) -> str:
    """wireguard-go's own error ("ERROR: (name) date time what"), past its banner."""
    for line in text.splitlines():
        m = _WG_GO_ERROR_RE.match(line.strip())
        if m:
            return m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "\u250c\u2502\u2514"]
    return lines[-1] if lines else "no output"


def key_phase(runner: Runner, name: str, phase: str, check_mode: bool = False, key_dir: Optional[str] = None) -> Dict[str, Any]:
    """One phase of rotating the private key of interface ``name`` on the node behind
    ``runner`` (what the ``galactic.npms.wireguard_key`` module and the Nornir task
    ``wireguard_key`` run):

    ``prepare``  make ``<name>.key.next`` on the node unless it exists; ``public_key`` is
                 its public key (the same until commit or abort: idempotent).
    ``commit``   switch the interface to the pending key and make it the key file;
                 ``public_key`` is the interface's new public key.  Without a pending key
                 nothing changes.
    ``abort``    forget the pending key.

    Returns ``changed``, ``public_key``, ``previous_public_key`` (prepare, commit),
    ``pending`` (whether a next key waits) and ``commands``.  Private keys never leave
    the node."""
    return WireguardLinux(runner, key_dir=key_dir).rotate_key(name, phase, check_mode)


def swap_peer_key(resource: Resource, old_key: str, new_key: str, check_mode: bool = False) -> ResourceResult:
    """On a node that lists ``old_key`` as a peer, make it ``new_key`` (endpoint,
    allowed-ips and keepalive kept): the controller's half of a key rotation.  Each
    interface concerned is ``replaced`` with the swapped peer list, so the Linux driver
    removes the old peer and adds the new one in one ``wg set``.  Idempotent: a node that
    no longer lists ``old_key`` is left alone."""
    old_key = public_key(old_key, "swap_peer_key", "old_key")
    new_key = public_key(new_key, "swap_peer_key", "new_key")
    items = []
    for item in resource.gather():
        keys = [p["public_key"] for p in item.get("peers", [])]
        if old_key not in keys:
            continue
        peers = []
        for peer in item["peers"]:
            if peer["public_key"] == new_key:
                continue
            if peer["public_key"] == old_key:
                peer = dict(peer, public_key=new_key)
            peers.append(peer)
        items.append(dict(item, peers=peers))
    if not items:
        return ResourceResult(resource=resource.name, state="replaced")
    return run(resource, items, "replaced", check_mode=check_mode)


def rotate(node: WireguardLinux, name: str, peers: Sequence[Resource], check_mode: bool = False) -> Dict[str, Any]:
    """Rotate the key of interface ``name`` on ``node`` and point every peer node at the
    new key.  ``peers`` are the WireGuard resources of the nodes that list it (any
    dataplane).

    Order: prepare, **commit on the node, then update the peers**, back to back.

    * From the commit, the node's handshakes carry the new key and the peers refuse
      them: the node queues what it sends, while what the peers send still arrives (the
      node keeps the receiving half of the current session).
    * When a peer is updated, its entry for the node is new and is sent a keepalive at
      once (:func:`_nudge`), which starts a handshake that the node, already on the new
      key, answers; the queued packets go out.  Traffic is back within a round trip of
      the peer update, and nothing is lost.
    * The other order (peers first) drops the node's packets from the peer update on (the
      peer forgot the old session), and after the commit the peer only retries its
      refused handshake on its 5-second rekey timer.  Measured in the lab with 2 s
      between the two steps and a ping from the peer: 2.2 s of silence commit-first,
      5.1-5.3 s peers-first.

    So the interruption is the time between the commit and the peer update plus one
    handshake round trip (where a peer cannot be sent the keepalive, e.g. it has no
    endpoint, at most one 5-second handshake retry more).  ``prepare`` is separate so that everything slow (generating the key,
    rendering the peers' configuration, reaching every peer) happens before the commit.

    Returns ``{"prepare": ..., "commit": ..., "peers": [result dicts]}``.  In check mode
    nothing changes (and a key that is not prepared yet cannot be shown)."""
    prepared = node.rotate_key(name, "prepare", check_mode)
    out: Dict[str, Any] = {"prepare": prepared, "peers": []}
    old, new = prepared.get("previous_public_key"), prepared.get("public_key")
    out["commit"] = node.rotate_key(name, "commit", check_mode)
    if old and new and old != new:
        out["peers"] = [swap_peer_key(peer, old, new, check_mode).to_dict() for peer in peers]
    out["changed"] = bool(prepared["changed"] or out["commit"]["changed"] or any(p["changed"] for p in out["peers"]))
    return out
