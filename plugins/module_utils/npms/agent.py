# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull-mode sidecar: ``npms agent`` fetches the node's bundle from the controller's
API and applies it through the same resources as the modules and Nornir tasks.

Each poll (:meth:`Agent.poll_once`):

1. ``GET /v1/bundles/{node}`` with ``If-None-Match`` = the ETag of the bundle the node
   runs (kept in ``<state-dir>/bundle-current.json``); 304 means nothing to do, so a
   no-change poll costs one small request and no node command;
2. on 200, the bundle is checked (shape, content hash, node name), then applied with
   :func:`npms.bundle.apply_bundle` (``previous`` = the bundle the node runs, so a failed
   resource puts the node back to it; ``state_path`` = ``<state-dir>/bundle.json``);
3. a bundle older than the one the node runs is refused (:class:`npms.bundle.StaleBundle`,
   e.g. from a stale cache or a standby controller that is behind) and not applied;
4. the outcome is reported with ``POST /v1/nodes/{node}/status``: the version the node
   runs, ``ok`` and the error in words.  A report that could not be sent is sent again at
   the next poll.

Network errors are logged and the poll is retried at the next interval; :func:`run_loop`
adds jitter to every interval so that a thousand agents do not poll in step.  The token
is read from a file and only ever sent in the ``Authorization`` header: never logged,
never in a result.  Only the standard library is used (urllib), so the agent runs on a
bare edge host.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Optional

from .bundle import (BundleError, StaleBundle, apply_bundle, check_bundle, etag, running_version)
from .resources import base
from .runner import CommandError, LocalRunner, Runner

STATE_DIR = "/var/lib/npms"
CURRENT_FILE = "bundle-current.json"
STATE_FILE = "bundle.json"
DEFAULT_INTERVAL = 60.0
JITTER = 0.1

log = logging.getLogger(__name__)


class AgentError(Exception):
    """The agent cannot start (bad token file, bad URL); the message says which."""


def read_token(path: str) -> str:
    """The token from its file (first line).  Warns when others may read the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise AgentError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    if not token:
        raise AgentError(f"{path}: the token file is empty (npms api token NODE prints one)")
    if mode & 0o077:
        log.warning("%s: mode %o lets others read the token; chmod 600 it", path, mode)
    return token


class Agent:
    """Polls the controller for ``node``'s bundle and applies it on this machine.

    ``runner`` reaches the node (default: :class:`npms.runner.LocalRunner`);
    ``resource_factory`` is handed to :func:`npms.bundle.apply_bundle` (tests give fake
    resources so no dataplane is touched).
    """

    def __init__(self, api: str, node: str, token: str, state_dir: str = STATE_DIR,
                 runner: Optional[Runner] = None, resource_factory: Optional[Callable[[str], base.Resource]] = None,
                 timeout: float = 30.0):
        parts = urllib.parse.urlsplit(api)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AgentError(f"--api {api!r}: expected an http(s) URL such as https://controller:8467")
        if not token:
            raise AgentError("no token")
        self.api = api.rstrip("/")
        self.node = node
        self.__token = token
        self.state_dir = state_dir
        self.runner = runner or LocalRunner()
        self.resource_factory = resource_factory
        self.timeout = timeout
        self.state_path = os.path.join(state_dir, STATE_FILE)
        self.current_path = os.path.join(state_dir, CURRENT_FILE)
        self._unreported: Optional[Dict[str, Any]] = None
        self._reported_once = False

    def __repr__(self) -> str:
        return f"Agent(api={self.api!r}, node={self.node!r}, state_dir={self.state_dir!r})"

    # --- HTTP ---------------------------------------------------------------------------
    def _url(self, template: str) -> str:
        return self.api + template.format(node=urllib.parse.quote(self.node, safe=""))

    def _request(self, method: str, url: str, body: Optional[Dict[str, Any]] = None,
                 headers: Optional[Dict[str, str]] = None) -> tuple:
        """(status, headers, body bytes); HTTP error statuses are returned, not raised;
        network errors raise OSError (urllib.error.URLError is one)."""
        all_headers = {"Authorization": f"Bearer {self.__token}", "Accept": "application/json",
                       "User-Agent": "npms-agent"}
        all_headers.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            # (ansible.module_utils.urls is not used: this library never imports ansible)
            with urllib.request.build_opener().open(request, timeout=self.timeout) as answer:  # nosec B310 - http(s) only
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()

    # --- state --------------------------------------------------------------------------
    def current(self) -> Optional[Dict[str, Any]]:
        """The bundle this node runs, as the agent kept it (None: none, or unreadable)."""
        try:
            with open(self.current_path, encoding="utf-8") as fh:
                bundle = check_bundle(json.load(fh), self.current_path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # BundleError is a ValueError
            log.warning("%s: ignored (%s); the next bundle is fetched in full", self.current_path, exc)
            return None
        return bundle if bundle["node"] == self.node else None

    def _keep(self, bundle: Dict[str, Any]) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".bundle-current.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(bundle, fh, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.current_path)

    def _running(self, fallback: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        try:
            version = running_version(self.runner, self.state_path)
        except (BundleError, CommandError):
            version = None
        if version is None and fallback is not None:
            version = {"epoch": fallback["epoch"], "hash": fallback["hash"]}
        return version or {"epoch": None, "hash": None}

    # --- one poll -----------------------------------------------------------------------
    def poll_once(self) -> Dict[str, Any]:
        """Fetch, check, apply and report once.  Never raises for network or bundle
        problems: the result says what happened::

            {"action": "applied" | "unchanged" | "refused" | "invalid" | "failed"
                       | "no-bundle" | "error",
             "status": HTTP status or None, "epoch", "hash" (of the bundle offered),
             "running": {"epoch", "hash"}, "changed": bool, "error": str or None,
             "reported": bool, "result": apply_bundle's result (when applied)}
        """
        current = self.current()
        out: Dict[str, Any] = {"node": self.node, "action": "error", "status": None, "epoch": None, "hash": None,
                               "changed": False, "error": None, "reported": False,
                               "running": self._running(current)}
        headers = {"If-None-Match": etag(current)} if current else {}
        try:
            status, _headers, body = self._request("GET", self._url("/v1/bundles/{node}"), headers=headers)
        except (OSError, ValueError) as exc:
            out["error"] = f"cannot reach {self.api}: {getattr(exc, 'reason', exc)}"
            log.warning("%s: %s; retrying at the next poll", self.node, out["error"])
            return out
        out["status"] = status
        if status == 304:
            out["action"] = "unchanged"
            return self._maybe_resend(out)
        if status == 404:
            out["action"] = "no-bundle"
            log.info("%s: the controller has no bundle for this node yet", self.node)
            return self._maybe_resend(out)
        if status != 200:
            out["error"] = f"GET bundle: HTTP {status}: {_detail(body)}"
            log.warning("%s: %s", self.node, out["error"])
            return out
        try:
            bundle = check_bundle(json.loads(body), f"bundle from {self.api}")
            if bundle["node"] != self.node:
                raise BundleError(f"bundle from {self.api} is for {bundle['node']}, not {self.node}")
        except (ValueError, UnicodeDecodeError) as exc:  # BundleError is a ValueError
            out.update(action="invalid", error=str(exc))
            log.error("%s: %s; not applied", self.node, exc)
            return self._report(out, ok=False)
        out.update(epoch=bundle["epoch"], hash=bundle["hash"])
        if current and (current["epoch"], current["hash"]) == (bundle["epoch"], bundle["hash"]) \
                and out["running"] == {"epoch": bundle["epoch"], "hash": bundle["hash"]}:
            out["action"] = "unchanged"  # a cache without ETag support: same bundle again
            return self._maybe_resend(out)
        try:
            result = apply_bundle(self.runner, bundle, previous=current, state_path=self.state_path,
                                  resource_factory=self.resource_factory)
        except StaleBundle as exc:
            out.update(action="refused", error=str(exc))
            log.warning("%s: %s", self.node, exc)
            return self._report(out, ok=False)
        except (BundleError, base.ResourceError, CommandError) as exc:
            out.update(action="failed", error=str(exc), running=self._running(current))
            log.error("%s: epoch %s not applied: %s", self.node, bundle["epoch"], exc)
            return self._report(out, ok=False)
        out["result"] = result
        out["changed"] = bool(result.get("changed"))
        out["running"] = result.get("running") or self._running(current)
        if result.get("error"):
            back = " (rolled back to the previous bundle)" if result.get("rolled_back") else ""
            out.update(action="failed", error=f"epoch {bundle['epoch']}: {result['error']}{back}")
            log.error("%s: %s", self.node, out["error"])
            return self._report(out, ok=False)
        self._keep(bundle)
        out["action"] = "applied"
        log.info("%s: runs epoch %s (%s)%s", self.node, bundle["epoch"], bundle["hash"][:12],
                 "" if out["changed"] else ", no change on the node")
        return self._report(out, ok=True)

    def _report(self, out: Dict[str, Any], ok: bool) -> Dict[str, Any]:
        running = out["running"]
        payload = {"epoch": running.get("epoch"), "hash": running.get("hash"), "ok": ok,
                   "error": (out.get("error") or None) and str(out["error"])[:2000]}
        out["reported"] = self._send(payload)
        return out

    def _maybe_resend(self, out: Dict[str, Any]) -> Dict[str, Any]:
        """A poll with nothing new: send the last report again if it was lost, and say
        once after start what the node runs."""
        if self._unreported is not None:
            out["reported"] = self._send(self._unreported)
        elif not self._reported_once and out["running"].get("epoch") is not None:
            out["reported"] = self._send({**out["running"], "ok": True, "error": None})
        return out

    def _send(self, payload: Dict[str, Any]) -> bool:
        try:
            status, _headers, body = self._request("POST", self._url("/v1/nodes/{node}/status"), body=payload)
        except (OSError, ValueError) as exc:
            log.warning("%s: status not reported (%s); sent again at the next poll", self.node,
                        getattr(exc, "reason", exc))
            self._unreported = payload
            return False
        if status != 200:
            log.warning("%s: status not reported: HTTP %s: %s", self.node, status, _detail(body))
            self._unreported = payload if status >= 500 else None
            return False
        self._unreported = None
        self._reported_once = True
        return True


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("detail", data)) if isinstance(data, dict) else str(data)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace")


def run_loop(agent: Agent, interval: float = DEFAULT_INTERVAL, once: bool = False,
             sleep: Callable[[float], None] = time.sleep, polls: Optional[int] = None) -> Dict[str, Any]:
    """Poll every ``interval`` seconds (each wait drawn within +-10 %) until interrupted,
    after ``polls`` polls, or after one with ``once``.  Returns the last poll's result."""
    done = 0
    while True:
        result = agent.poll_once()
        done += 1
        if once or (polls is not None and done >= polls):
            return result
        sleep(interval * random.uniform(1 - JITTER, 1 + JITTER))  # nosec B311 - jitter, not security


# --- npms agent ---------------------------------------------------------------------------
def setup_agent(parser: argparse.ArgumentParser) -> Callable:
    parser.add_argument("--api", required=True, help="controller API base URL, e.g. https://controller:8467")
    parser.add_argument("--node", required=True, help="this node's name (as in the inventory)")
    parser.add_argument("--token-file", required=True, help="file holding this node's API token (mode 0600)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help="seconds between polls, +-10%% jitter (default %(default)s)")
    parser.add_argument("--once", action="store_true", help="poll once and exit (1 when it did not succeed)")
    parser.add_argument("--state-dir", default=STATE_DIR, help="where the running bundle is kept (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout, seconds (default %(default)s)")
    return run_agent


def run_agent(args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, CliError, _write  # pylint: disable=import-outside-toplevel

    if args.interval <= 0:
        raise CliError("--interval must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s npms-agent %(levelname)s %(message)s")
    try:
        agent = Agent(args.api, args.node, read_token(args.token_file), state_dir=args.state_dir, timeout=args.timeout)
    except AgentError as exc:
        raise CliError(str(exc)) from None
    result = run_loop(agent, interval=args.interval, once=args.once)
    summary = {k: result.get(k) for k in ("node", "action", "status", "epoch", "running", "changed", "error", "reported")}
    _write(json.dumps(summary, sort_keys=True))
    return 0 if result["action"] in ("applied", "unchanged", "no-bundle") else EXIT_FAILED
