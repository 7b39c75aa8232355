# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe samples pushed over NATS request/reply: the push API's second transport (optional).

A node sends one batch as a request on ``npms.samples.<node>``::

    {"token": "<the node's API token>", "batch_id": "edge-ber-000123", "samples": [...]}

and the reply is what ``POST /v1/samples`` answers (the store's acknowledgement,
``{"source", "batch_id", "accepted", "rejected", "duplicate"}``), or an error
``{"error": "...", "status": 400|401|403|413|429|500}`` with ``retry_after_s`` on 429.
Both transports call :func:`npms.api.push_batch`, so they validate, deduplicate and
rate-limit alike; the subject's node must be the token's (403 otherwise).  Tokens are never
logged or echoed.

Why request/reply and not plain publish: a batch counts as delivered only once its
acknowledgement came back, exactly as with HTTP; the sender keeps it until then and re-sends
it with the same ``batch_id`` (counted once by the store).

Server: ``npms nats serve`` (:class:`IngestServer`), a queue-group subscriber, so several
may share the subject.  Client: :func:`push_nats` and ``npms nats push``.  nats-py is
imported on use, so this module imports anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import signal
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional

try:
    import nats
    import nats.errors
except ImportError:  # optional: a clear error on use (_nats)
    nats = None

from .api import MAX_BATCH, NODE_PATTERN, PushError, TokenStore, push_batch

SUBJECT_PREFIX = "npms.samples"
QUEUE_GROUP = "npms-ingest"
#: statuses a re-send of the same batch cannot change
FINAL_STATUSES = (400, 401, 403, 413)

log = logging.getLogger(__name__)


class PushFailed(RuntimeError):
    """A batch not acknowledged: ``status`` as in the reply (None: no reply at all).  The
    caller keeps the batch; re-sending it later with the same batch_id is always safe."""

    def __init__(self, status: Optional[int], detail: str):
        super().__init__(f"{status or 'no reply'}: {detail}")
        self.status = status
        self.detail = detail


def _nats() -> Any:
    if nats is None:
        raise RuntimeError("NATS push needs nats-py (pip install 'nats-py>=2.9,<3')")
    return nats


def _host(url: str) -> str:
    """What of a NATS URL may be logged (no user or password)."""
    return urllib.parse.urlsplit(url).hostname or url.split("@")[-1]


def subject_for(node: str, prefix: str = SUBJECT_PREFIX) -> str:
    return f"{prefix}.{node}"


def handle_message(store: Any, tokens: TokenStore, subject: str, data: bytes, prefix: str = SUBJECT_PREFIX,
                   max_batch: int = MAX_BATCH) -> Dict[str, Any]:
    """The reply to one request on ``<prefix>.<node>`` (no NATS involved: testable alone)."""
    from .store import StoreError  # pylint: disable=import-outside-toplevel

    node = subject[len(prefix) + 1:] if subject.startswith(prefix + ".") else ""
    if not re.match(NODE_PATTERN, node):
        return {"error": f"subject {subject!r}: expected {prefix}.<node>", "status": 400}
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {"error": "not JSON", "status": 400}
    if not isinstance(message, dict):
        return {"error": 'expected {"token", "batch_id", "samples"}', "status": 400}
    token = message.get("token")
    try:
        ack = push_batch(store, tokens, token if isinstance(token, str) else None, message.get("batch_id"),
                         message.get("samples"), max_batch, node=node)
    except PushError as exc:
        log.info("batch from %s on NATS refused: %s %s", node, exc.status, exc.detail)
        reply: Dict[str, Any] = {"error": exc.detail, "status": exc.status}
        if exc.retry_after_s is not None:
            reply["retry_after_s"] = round(exc.retry_after_s, 3)
        return reply
    except StoreError as exc:
        log.error("batch from %s on NATS not stored: %s", node, exc)
        return {"error": "the store failed; nothing of the batch was stored", "status": 500}
    log.info("batch %s from %s on NATS: %d accepted, %d rejected%s", ack["batch_id"], node, ack["accepted"],
             len(ack["rejected"]), " (duplicate)" if ack["duplicate"] else "")
    return ack


class IngestServer:
    """Subscribes to ``<prefix>.>`` (queue group ``npms-ingest``) and answers every request
    with :func:`handle_message`.  Messages are handled one at a time, the store in a worker
    thread so the connection keeps answering the server's pings during a large batch."""

    def __init__(self, url: str, store: Any, tokens: TokenStore, prefix: str = SUBJECT_PREFIX,
                 max_batch: int = MAX_BATCH):
        self.url = url
        self.store = store
        self.tokens = tokens
        self.prefix = prefix
        self.max_batch = max_batch
        self._nc: Any = None

    async def start(self) -> None:
        client = _nats()
        host = _host(self.url)

        async def on_error(exc: Exception) -> None:  # one line, not nats-py's traceback
            log.warning("NATS at %s: %s %s", host, type(exc).__name__, exc)

        async def on_reconnect() -> None:
            log.info("NATS at %s: connected again", host)

        # reconnects forever, so a NATS restart (or NATS not up yet) only delays batches
        self._nc = await client.connect(self.url, name="npms-ingest", max_reconnect_attempts=-1, error_cb=on_error,
                                        reconnected_cb=on_reconnect)
        await self._nc.subscribe(f"{self.prefix}.>", queue=QUEUE_GROUP, cb=self._on_message)
        await self._nc.flush()
        log.info("answering %s.<node> on NATS at %s", self.prefix, _host(self.url))

    async def _on_message(self, msg: Any) -> None:
        reply = await asyncio.to_thread(handle_message, self.store, self.tokens, msg.subject, msg.data,
                                        self.prefix, self.max_batch)
        if msg.reply:
            await msg.respond(json.dumps(reply, separators=(",", ":")).encode("utf-8"))

    async def close(self) -> None:
        """Finish the messages already received, then disconnect."""
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def serve(self, stop: asyncio.Event) -> None:
        """Answer until ``stop`` is set, also while still waiting for NATS to come up."""
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a connection error is raised here
                await stopping
        finally:
            starting.cancel()
            stopping.cancel()
            await self.close()


# --- client -------------------------------------------------------------------------------
def batch_id_for(node: str, samples: List[Dict[str, Any]]) -> str:
    """``<node>-<SHA-1 of the samples>``: the same samples re-sent are the same batch."""
    canonical = json.dumps(samples, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return f"{node}-{hashlib.sha1(canonical).hexdigest()}"  # nosec B324 - an id, not security


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback: the retry loop reports failures (its default logs tracebacks)."""
    log.debug("NATS: %s", type(exc).__name__)


async def push_nats_async(url: str, node: str, token: str, batch_id: str, samples: List[Dict[str, Any]],
                          prefix: str = SUBJECT_PREFIX, timeout: float = 10.0, attempts: int = 5,
                          backoff_s: float = 1.0) -> Dict[str, Any]:
    """See :func:`push_nats`."""
    client = _nats()
    payload = json.dumps({"token": token, "batch_id": batch_id, "samples": samples},
                         separators=(",", ":")).encode("utf-8")
    subject = subject_for(node, prefix)
    status: Optional[int] = None
    detail = "not sent"
    nc = None
    try:
        for attempt in range(1, max(1, attempts) + 1):
            wait = backoff_s * 2 ** (attempt - 1)
            try:
                if nc is None or nc.is_closed:
                    # one connection attempt per attempt (nats-py's default retries for minutes)
                    nc = await client.connect(url, name=f"npms-push-{node}", allow_reconnect=False,
                                              connect_timeout=timeout, max_reconnect_attempts=1,
                                              reconnect_time_wait=min(backoff_s, 1.0), error_cb=_quiet)
                msg = await nc.request(subject, payload, timeout=timeout)
            except (client.errors.Error, OSError, asyncio.TimeoutError) as exc:
                status, detail = None, f"NATS at {_host(url)}: {type(exc).__name__}"
            else:
                try:
                    reply = json.loads(msg.data)
                except ValueError:
                    reply = {"error": "the reply is not JSON", "status": 502}
                if not isinstance(reply, dict):
                    reply = {"error": "the reply is not an object", "status": 502}
                if "status" not in reply:
                    return reply
                status, detail = reply.get("status"), str(reply.get("error"))
                if status in FINAL_STATUSES:
                    break
                if status == 429:
                    wait = float(reply.get("retry_after_s") or backoff_s)
            log.info("batch %s to %s: attempt %d of %d: %s %s", batch_id, _host(url), attempt, attempts,
                     status or "no reply", detail)
            if attempt < attempts:
                await asyncio.sleep(wait)
    finally:
        if nc is not None and not nc.is_closed:
            await nc.close()
    raise PushFailed(status, detail)


def push_nats(url: str, node: str, token: str, batch_id: str, samples: List[Dict[str, Any]],
              prefix: str = SUBJECT_PREFIX, timeout: float = 10.0, attempts: int = 5,
              backoff_s: float = 1.0) -> Dict[str, Any]:
    """Send one batch to ``<prefix>.<node>`` at ``url`` (``nats://host:port``) and return the
    acknowledgement (as ``POST /v1/samples`` would).

    Up to ``attempts`` requests with the same ``batch_id``: after a 429 it waits the reply's
    ``retry_after_s``; after no reply, a 500 or a lost connection, ``backoff_s`` doubling.
    400/401/403/413 are final.  Raises :class:`PushFailed` when no acknowledgement came: the
    caller keeps the batch (nothing unacknowledged may be dropped) and may re-send it.
    """
    return asyncio.run(push_nats_async(url, node, token, batch_id, samples, prefix=prefix, timeout=timeout,
                                       attempts=attempts, backoff_s=backoff_s))


# --- npms nats ----------------------------------------------------------------------------
def setup_nats(parser: argparse.ArgumentParser) -> Callable:
    sub = parser.add_subparsers(dest="nats_command", metavar="ACTION")
    sub.required = True
    serve = sub.add_parser("serve", help="answer sample batches on <prefix>.<node> into the store")
    serve.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server (default %(default)s)")
    serve.add_argument("--store", default="sqlite:////var/lib/npms/store.db", help="store URL (default %(default)s)")
    serve.add_argument("--tokens", default="/etc/npms/api-tokens.json", help="token file (default %(default)s)")
    serve.add_argument("--subject-prefix", default=SUBJECT_PREFIX, help="subjects <prefix>.<node> (default %(default)s)")
    serve.add_argument("--window", type=int, default=600, help="aggregation window, seconds")
    serve.add_argument("--max-batch", type=int, default=MAX_BATCH, help="most samples in one batch (default %(default)s)")
    push = sub.add_parser("push", help="send one batch of samples (a JSON list, or probe output with 'samples')")
    push.add_argument("samples", help="JSON file of samples, '-' for stdin")
    push.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server (default %(default)s)")
    push.add_argument("--node", required=True, help="this node's name (as in the inventory)")
    push.add_argument("--token-file", required=True, help="file holding this node's API token (mode 0600)")
    push.add_argument("--batch-id", default=None, help="default: <node>-<SHA-1 of the samples>")
    push.add_argument("--subject-prefix", default=SUBJECT_PREFIX, help="subjects <prefix>.<node> (default %(default)s)")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default %(default)s)")
    push.add_argument("--attempts", type=int, default=5, help="requests before giving up (default %(default)s)")
    return run_nats


def _read_samples(path: str) -> List[Dict[str, Any]]:
    from .cli import CliError, read_data_file  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    try:
        data = json.load(sys.stdin) if path == "-" else read_data_file(path)
    except ValueError as exc:
        raise CliError(f"{path}: not JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("samples")
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise CliError(f"{path}: expected a list of samples or an object with 'samples'")
    return data


def run_nats(args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, CliError, _write  # pylint: disable=import-outside-toplevel
    from .api import TokenError  # pylint: disable=import-outside-toplevel

    if nats is None:
        raise CliError("npms nats needs nats-py (pip install 'nats-py>=2.9,<3')", EXIT_FAILED)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s npms-nats %(levelname)s %(message)s")
    if args.nats_command == "push":
        from .agent import AgentError, read_token  # pylint: disable=import-outside-toplevel

        samples = _read_samples(args.samples)
        try:
            token = read_token(args.token_file)
        except AgentError as exc:
            raise CliError(str(exc)) from None
        batch_id = args.batch_id or batch_id_for(args.node, samples)
        try:
            ack = push_nats(args.url, args.node, token, batch_id, samples, prefix=args.subject_prefix,
                            timeout=args.timeout, attempts=args.attempts)
        except PushFailed as exc:
            raise CliError(f"batch {batch_id} not acknowledged ({exc}); keep the samples and send them again",
                           EXIT_FAILED) from None
        _write(json.dumps(ack, sort_keys=True))
        return 0
    from .store import Store  # pylint: disable=import-outside-toplevel

    try:
        tokens = TokenStore(args.tokens)
    except TokenError as exc:
        raise CliError(str(exc)) from None
    store = Store(args.store, window_s=args.window)
    try:
        asyncio.run(_serve_until_signal(IngestServer(args.url, store, tokens, args.subject_prefix, args.max_batch)))
    except (OSError, nats.errors.Error) as exc:
        raise CliError(f"NATS at {_host(args.url)}: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    finally:
        store.close()
    return 0


async def _serve_until_signal(server: IngestServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await server.serve(stop)
    log.info("stopped after %.0f s", time.monotonic() - started)
