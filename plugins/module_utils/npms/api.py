# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's HTTP API (FastAPI): the push API for probe sidecars.

``POST /v1/samples`` takes one batch of probe samples from one node::

    Authorization: Bearer <the node's token>
    {"batch_id": "edge-ber-000123", "samples": [{"src": "edge-ber", ...}, ...]}

and answers with what the store did: ``{"accepted": n, "rejected": [{"index", "reason"}],
"duplicate": bool}``.  A batch is acknowledged (200) only once it is committed, so a
sidecar that got no answer sends the same ``batch_id`` again; the store counts it once.

* 401: no token or an unknown one (the node is never named from the request body: the
  token says who is sending, and every sample's ``src`` must be that node).
* 413: more than ``max_batch`` samples; 422: not a batch; 429: the node's rate limit,
  with ``Retry-After``.
* The OpenAPI document is at ``/openapi.json`` (``/docs`` renders it).

Tokens: one per node, kept as SHA-256 digests in a token file (JSON, mode 0600) written by
``npms api token <node>``, which prints the token once.  Tokens never appear in logs or
answers.

fastapi (and uvicorn for ``npms api serve``) are imported when an app is made, so this
module imports anywhere (ansible-test's import test has only PyYAML).
"""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from typing import Any, Callable, Dict, List, Optional

API_VERSION = "v1"
MAX_BATCH = 10000
TOKEN_BYTES = 32


class TokenError(ValueError):
    """A token file that cannot be used (the message names the file and the entry)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Node tokens as SHA-256 digests in a JSON file ``{"nodes": {node: {"sha256": hex}}}``."""

    def __init__(self, path: str):
        self.path = path
        self._digests: Dict[str, str] = {}
        self.reload()

    def reload(self) -> None:
        if not os.path.exists(self.path):
            self._digests = {}
            return
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise TokenError(f"{self.path}: not a token file: {exc}") from None
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict):
            raise TokenError(f"{self.path}: expected an object with a 'nodes' mapping")
        digests = {}
        for node, entry in nodes.items():
            digest = entry.get("sha256") if isinstance(entry, dict) else None
            if not isinstance(digest, str) or len(digest) != 64:
                raise TokenError(f"{self.path}: nodes.{node}.sha256: expected 64 hex digits")
            digests[node] = digest.lower()
        self._digests = digests

    def issue(self, node: str) -> str:
        """A new token for ``node`` (replacing its old one); only its digest is kept."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._digests[node] = _digest(token)
        self._save()
        return token

    def revoke(self, node: str) -> bool:
        found = self._digests.pop(node, None) is not None
        if found:
            self._save()
        return found

    def node_of(self, token: Optional[str]) -> Optional[str]:
        """The node a token belongs to, or None (compared in constant time)."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for node, known in self._digests.items():
            if hmac.compare_digest(known, digest):
                found = node
        return found

    @property
    def nodes(self) -> List[str]:
        return sorted(self._digests)

    def _save(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tokens.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"nodes": {n: {"sha256": d} for n, d in sorted(self._digests.items())}}, fh, indent=2)
                fh.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _bearer(header: Optional[str]) -> Optional[str]:
    if not header:
        return None
    scheme, _sep, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def create_app(store: Any, tokens: TokenStore, max_batch: int = MAX_BATCH) -> Any:
    """The FastAPI application over ``store`` (an ``npms.store.Store``)."""
    try:
        from fastapi import Body, FastAPI, Header, HTTPException  # pylint: disable=import-outside-toplevel
        from fastapi.responses import JSONResponse  # pylint: disable=import-outside-toplevel
        from pydantic import BaseModel, Field  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise RuntimeError(f"the npms API needs fastapi (pip install fastapi uvicorn): {exc}") from None
    from .store import RateLimited  # pylint: disable=import-outside-toplevel

    class Batch(BaseModel):
        batch_id: str = Field(min_length=1, max_length=200, description="unique per node; a re-sent batch keeps its id")
        samples: List[Dict[str, Any]] = Field(description="probe samples (docs/probes.md); each src must be the token's node")

    class Rejected(BaseModel):
        index: int
        reason: str

    class Ingested(BaseModel):
        source: str
        batch_id: str
        accepted: int
        rejected: List[Rejected]
        duplicate: bool

    app = FastAPI(title="galactic.npms controller API", version=API_VERSION,
                  description="Push API for probe sidecars (and, later, config bundles for nodes).")

    def authenticate(authorization: Optional[str]) -> str:
        node = tokens.node_of(_bearer(authorization))
        if node is None:
            raise HTTPException(status_code=401, detail="a valid node token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return node

    @app.get(f"/{API_VERSION}/health", summary="liveness")
    def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.post(f"/{API_VERSION}/samples", response_model=Ingested, summary="push one batch of probe samples",
              responses={401: {"description": "no or unknown token"}, 413: {"description": "batch too large"},
                         429: {"description": "rate limited; see Retry-After"}})
    def push_samples(batch: Batch = Body(...), authorization: Optional[str] = Header(default=None)) -> Any:
        node = authenticate(authorization)
        if len(batch.samples) > max_batch:
            raise HTTPException(status_code=413, detail=f"{len(batch.samples)} samples in one batch; at most {max_batch}")
        try:
            return store.ingest(node, batch.batch_id, batch.samples)
        except RateLimited as exc:
            retry = max(1, int(round(exc.retry_after_s + 0.5)))
            return JSONResponse(status_code=429, headers={"Retry-After": str(retry)},
                                content={"detail": f"node {node} is over its sample rate; retry in {retry} s"})

    return app


# --- npms api ---------------------------------------------------------------------------
def setup_api(parser: argparse.ArgumentParser) -> Callable:
    sub = parser.add_subparsers(dest="api_command", metavar="ACTION")
    sub.required = True
    tok = sub.add_parser("token", help="issue (or revoke) a node's push token; the token is printed once")
    tok.add_argument("node")
    tok.add_argument("--tokens", default="/etc/npms/api-tokens.json", help="token file (default %(default)s)")
    tok.add_argument("--revoke", action="store_true")
    serve = sub.add_parser("serve", help="run the API (uvicorn)")
    serve.add_argument("--store", default="sqlite:////var/lib/npms/store.db", help="store URL (default %(default)s)")
    serve.add_argument("--tokens", default="/etc/npms/api-tokens.json", help="token file (default %(default)s)")
    serve.add_argument("--bind", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8467)
    serve.add_argument("--window", type=int, default=600, help="aggregation window, seconds")
    return run_api


def run_api(args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, CliError, _write  # pylint: disable=import-outside-toplevel

    try:
        tokens = TokenStore(args.tokens)
    except TokenError as exc:
        raise CliError(str(exc)) from None
    if args.api_command == "token":
        if args.revoke:
            if not tokens.revoke(args.node):
                raise CliError(f"{args.tokens}: no token for node {args.node}", EXIT_FAILED)
            _write(f"revoked the token of {args.node}")
            return 0
        _write(tokens.issue(args.node))
        return 0
    try:
        import uvicorn  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise CliError(f"npms api serve needs uvicorn: {exc}", EXIT_FAILED) from None
    from .store import Store  # pylint: disable=import-outside-toplevel

    store = Store(args.store, window_s=args.window)
    try:
        uvicorn.run(create_app(store, tokens), host=args.bind, port=args.port, log_level="info")
    finally:
        store.close()
    return 0
