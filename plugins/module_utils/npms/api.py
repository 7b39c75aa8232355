# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's HTTP API (FastAPI): probe samples pushed in, config bundles pulled out.

Push: ``POST /v1/samples`` takes one batch of probe samples from one node::

    Authorization: Bearer <the node's token>
    {"batch_id": "edge-ber-000123", "samples": [{"src": "edge-ber", ...}, ...]}

and answers with what the store did: ``{"accepted": n, "rejected": [{"index", "reason"}],
"duplicate": bool}``.  A batch is acknowledged (200) only once it is committed, so a
sidecar that got no answer sends the same ``batch_id`` again; the store counts it once.

The route is :func:`push_batch`, which the NATS transport (``npms.nats_ingest``, subject
``npms.samples.<node>``) calls too, so both answer alike (:class:`PushError` carries the
status).

* 401: no token or an unknown one (the node is never named from the request body: the
  token says who is sending, and every sample's ``src`` must be that node).
* 413: more than ``max_batch`` samples; 422: not a batch; 429: the node's rate limit,
  with ``Retry-After``.

Pull (when the app is given a :class:`npms.bundle.BundleRepo`; docs/api.md):

* ``GET /v1/bundles/{node}``: the node's latest bundle, with ``ETag``
  (:func:`npms.bundle.etag`), ``Last-Modified`` and ``Cache-Control: private, max-age=60,
  must-revalidate``; ``If-None-Match`` with the current ETag gives 304 and no body.
  ``GET /v1/bundles/{node}/version``: just ``{"epoch", "hash"}``.
* ``POST /v1/nodes/{node}/status``: the version a node runs and whether its last apply
  worked; kept in ``<repo>/status.json``.  ``GET /v1/nodes/status`` (admin token) lists
  them with the latest bundle of each node, so the controller sees who lags.
* ``PUT /v1/bundles/{node}`` (admin token): publish a bundle (:func:`publish`), which
  purges a CDN in front (:class:`Purger`) when the content changed.

Tokens: one per node, kept as SHA-256 digests in a token file (JSON, mode 0600) written by
``npms api token <node> [--tenant T] [--admin]``, which prints the token once.  A node's
token reads and reports for that node only (403 for another node); an *admin* token (the
controller's, listed in the file's ``admins``) may also read every node's status and
publish bundles.  Tokens never appear in logs or answers.

**A CDN in front.**  Bundle answers are ``private`` because they depend on the token: a
shared cache must not hand one node's bundle to another.  To cache them at the edge anyway,
configure the CDN to key its cache on the ``Authorization`` header (each node then has its
own entry, revalidated with ``If-None-Match`` after 60 s), or give each node a secret
per-node URL and key on the URL.  Either way the CDN may serve a bundle for up to
``max-age`` after a new one is published, so :func:`publish` sends ``PURGE`` for the node's
URL when the content changed: nodes then get the new bundle on their next poll instead of
a minute later.  A node never applies a bundle older than the one it runs, so a stale
cache can delay a change, never roll one back.

fastapi (and uvicorn for ``npms api serve``) are imported when an app is made, so this
module imports anywhere (ansible-test's import test has only PyYAML).
"""

import argparse
import datetime
import email.utils
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .bundle import BundleError, BundleRepo, StaleBundle, check_bundle, etag

API_VERSION = "v1"
MAX_BATCH = 10000
TOKEN_BYTES = 32
#: what bundle answers may be cached for (seconds); nodes poll every 60 s
BUNDLE_MAX_AGE = 60
BUNDLE_CACHE_CONTROL = f"private, max-age={BUNDLE_MAX_AGE}, must-revalidate"
#: node names as they may appear in a URL and as a directory of the bundle repo
NODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
STATUS_FILE = "status.json"
MAX_ERROR_CHARS = 2000

log = logging.getLogger(__name__)


class TokenError(ValueError):
    """A token file that cannot be used (the message names the file and the entry)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Node tokens as SHA-256 digests in a JSON file::

        {"nodes": {node: {"sha256": hex, "tenants": [...]}}, "admins": [node, ...]}

    ``tenants`` (optional) records the tenants a node's token serves; ``admins`` names the
    tokens (usually one, the controller's) that may read every node's status and publish.
    """

    def __init__(self, path: str):
        self.path = path
        self._digests: Dict[str, str] = {}
        self._tenants: Dict[str, List[str]] = {}
        self._admins: List[str] = []
        self.reload()

    def reload(self) -> None:
        if not os.path.exists(self.path):
            self._digests, self._tenants, self._admins = {}, {}, []
            return
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise TokenError(f"{self.path}: not a token file: {exc}") from None
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict):
            raise TokenError(f"{self.path}: expected an object with a 'nodes' mapping")
        digests: Dict[str, str] = {}
        tenants: Dict[str, List[str]] = {}
        for node, entry in nodes.items():
            digest = entry.get("sha256") if isinstance(entry, dict) else None
            if not isinstance(digest, str) or len(digest) != 64:
                raise TokenError(f"{self.path}: nodes.{node}.sha256: expected 64 hex digits")
            digests[node] = digest.lower()
            scoped = entry.get("tenants", [])
            if not isinstance(scoped, list) or not all(isinstance(t, str) for t in scoped):
                raise TokenError(f"{self.path}: nodes.{node}.tenants: expected a list of tenant names")
            if scoped:
                tenants[node] = sorted(set(scoped))
        admins = data.get("admins", [])
        if not isinstance(admins, list) or not all(isinstance(a, str) for a in admins):
            raise TokenError(f"{self.path}: admins: expected a list of node names")
        self._digests, self._tenants, self._admins = digests, tenants, sorted(set(admins))

    def issue(self, node: str, tenants: Optional[Sequence[str]] = None, admin: Optional[bool] = None) -> str:
        """A new token for ``node`` (replacing its old one); only its digest is kept.
        ``tenants`` / ``admin`` replace what the file says of the node; None keeps it."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._digests[node] = _digest(token)
        if tenants is not None:
            if tenants:
                self._tenants[node] = sorted(set(tenants))
            else:
                self._tenants.pop(node, None)
        if admin is not None:
            self._admins = sorted(set(self._admins) | {node}) if admin else [a for a in self._admins if a != node]
        self._save()
        return token

    def revoke(self, node: str) -> bool:
        found = self._digests.pop(node, None) is not None
        if found:
            self._tenants.pop(node, None)
            self._admins = [a for a in self._admins if a != node]
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

    def tenants_of(self, node: str) -> List[str]:
        return list(self._tenants.get(node, []))

    def is_admin(self, node: Optional[str]) -> bool:
        return node is not None and node in self._admins and node in self._digests

    @property
    def nodes(self) -> List[str]:
        return sorted(self._digests)

    @property
    def admins(self) -> List[str]:
        return list(self._admins)

    def _save(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        nodes: Dict[str, Dict[str, Any]] = {}
        for node, digest in sorted(self._digests.items()):
            nodes[node] = {"sha256": digest}
            if self._tenants.get(node):
                nodes[node]["tenants"] = self._tenants[node]
        data: Dict[str, Any] = {"nodes": nodes}
        if self._admins:
            data["admins"] = self._admins
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tokens.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
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


# --- push: one batch of samples, whatever carries it (HTTP here, NATS in npms.nats_ingest) ---
class PushError(Exception):
    """A batch refused before or by the store: ``status`` is the HTTP code both transports
    report (401 no/unknown token, 403 another node's token, 400 not a batch, 413 too large,
    429 rate limited with ``retry_after_s``).  ``detail`` never holds the token."""

    def __init__(self, status: int, detail: str, retry_after_s: Optional[float] = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> int:
        """Whole seconds for ``Retry-After`` (at least 1, rounded up)."""
        return _whole_seconds(self.retry_after_s or 0.0)


def _whole_seconds(seconds: float) -> int:
    return max(1, int(round(seconds + 0.5)))


def push_batch(store: Any, tokens: TokenStore, token: Optional[str], batch_id: Any, samples: Any,
               max_batch: int = MAX_BATCH, node: Optional[str] = None) -> Dict[str, Any]:
    """Authenticate ``token`` and hand the batch to ``store.ingest``: the one code path of
    ``POST /v1/samples`` and of the NATS subject, so both answer alike.

    The token names the sender; ``node`` (the NATS subject's node), when given, must be that
    sender (403 otherwise).  Returns the store's acknowledgement; raises :class:`PushError`.
    ``StoreError`` (a database failure) passes through: nothing was stored, so no ack.
    """
    from .store import RateLimited  # pylint: disable=import-outside-toplevel

    sender = tokens.node_of(token)
    if sender is None:
        raise PushError(401, "a valid node token is required")
    if node is not None and node != sender:
        raise PushError(403, f"this token belongs to {sender}, not to {node}")
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= 200:
        raise PushError(400, "batch_id: expected a string of 1..200 characters")
    if not isinstance(samples, list) or not all(isinstance(s, dict) for s in samples):
        raise PushError(400, "samples: expected a list of objects")
    if len(samples) > max_batch:
        raise PushError(413, f"{len(samples)} samples in one batch; at most {max_batch}")
    try:
        return store.ingest(sender, batch_id, samples)
    except RateLimited as exc:
        retry = _whole_seconds(exc.retry_after_s)
        raise PushError(429, f"node {sender} is over its sample rate; retry in {retry} s", exc.retry_after_s) from None


# --- publishing and purging ---------------------------------------------------------------
class Purger:
    """Tells a CDN to drop its copy of a node's bundle: an HTTP ``PURGE`` request to
    ``url_template`` with ``{node}`` filled in (``https://cdn.example.net/v1/bundles/{node}``;
    Varnish, Fastly and most CDNs accept PURGE, possibly behind an ACL or a key given in
    ``headers``).

    A failed purge is logged and reported (False), never raised: the bundle is already
    published, and the worst a stale cache does is delay it by ``max-age`` seconds.  Only
    the URL's host is logged (a per-node URL may carry a secret).
    """

    def __init__(self, url_template: str, timeout: float = 5.0, headers: Optional[Mapping[str, str]] = None):
        if "{node}" not in url_template:
            raise ValueError(f"purge URL template {url_template!r} has no {{node}}")
        if urllib.parse.urlsplit(url_template).scheme not in ("http", "https"):
            raise ValueError(f"purge URL template {url_template!r}: only http and https")
        self.url_template = url_template
        self.timeout = timeout
        self.headers = dict(headers or {})

    def url(self, node: str) -> str:
        return self.url_template.replace("{node}", urllib.parse.quote(node, safe=""))

    def purge(self, node: str) -> bool:
        url = self.url(node)
        host = urllib.parse.urlsplit(url).netloc
        request = urllib.request.Request(url, method="PURGE", headers=self.headers)
        try:
            with urllib.request.build_opener().open(request, timeout=self.timeout) as answer:  # nosec B310 - http(s) only
                answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status == 404:  # nothing cached: nothing stale either
                return True
            log.warning("purge of %s's bundle at %s: HTTP %s", node, host, status)
            return False
        except (urllib.error.URLError, OSError) as exc:
            log.warning("purge of %s's bundle at %s failed: %s", node, host, getattr(exc, "reason", exc))
            return False
        log.info("purged %s's bundle at %s (HTTP %s)", node, host, status)
        return True


def publish(repo: BundleRepo, bundle: Mapping[str, Any], purger: Optional[Purger] = None) -> bool:
    """Save ``bundle`` as its node's latest and purge the CDN when its content changed.

    Returns whether the content (hash) differs from the node's previous latest bundle.  A
    new epoch with the same hash is saved (nodes move to the new epoch) without a purge:
    a cached copy holds the same content.  An epoch older than the latest is refused
    (:class:`npms.bundle.StaleBundle`): a late loop run never replaces a newer bundle;
    the same epoch with other content is a :class:`npms.bundle.BundleError`.
    """
    bundle = check_bundle(dict(bundle))
    node = bundle["node"]
    latest = repo.get(node)
    if latest is not None:
        if bundle["epoch"] < latest["epoch"]:
            raise StaleBundle(f"{node}: epoch {bundle['epoch']} is older than the published epoch {latest['epoch']}")
        if bundle["epoch"] == latest["epoch"]:
            if bundle["hash"] != latest["hash"]:
                raise BundleError(f"{node}: epoch {bundle['epoch']} is already published with other content")
            return False
    changed = latest is None or latest["hash"] != bundle["hash"]
    repo.save(bundle)
    if changed and purger is not None:
        purger.purge(node)
    return changed


def last_modified(bundle: Mapping[str, Any]) -> str:
    """HTTP date of a bundle's ``created`` time (now, when it has none or a bad one)."""
    when = None
    created = bundle.get("created")
    if isinstance(created, str):
        try:
            when = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            when = None
    return email.utils.format_datetime(when or datetime.datetime.now(datetime.timezone.utc), usegmt=True)


def etag_matches(header: Optional[str], current: str) -> bool:
    """``If-None-Match`` against the current ETag (weak comparison, lists and ``*``)."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or (tag[2:] if tag.startswith("W/") else tag) == current:
            return True
    return False


class StatusBook:
    """What each node says it runs: ``<repo>/status.json``, one entry per node.  Written
    atomically under a lock (several API workers may write at once)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> Dict[str, Dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable, starting afresh: %s", self.path, exc)
            return {}
        return data.get("nodes", {}) if isinstance(data, dict) and isinstance(data.get("nodes"), dict) else {}

    def record(self, node: str, entry: Mapping[str, Any]) -> Dict[str, Any]:
        entry = dict(entry)
        entry["reported"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        directory = os.path.dirname(os.path.abspath(self.path))
        with self._lock, open(os.path.join(directory, ".status.lock"), "a+", encoding="ascii") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            nodes = self.read()
            nodes[node] = entry
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".status.")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"nodes": nodes}, fh, indent=1, sort_keys=True)
                fh.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        return entry


def create_app(store: Any, tokens: TokenStore, max_batch: int = MAX_BATCH, bundles: Optional[BundleRepo] = None,
               purger: Optional[Purger] = None) -> Any:
    """The FastAPI application over ``store`` (an ``npms.store.Store``, or None for a
    bundle-only server) and, for pull mode, ``bundles`` (published with ``purger``)."""
    try:
        from fastapi import Body, FastAPI, Header, HTTPException, Path  # pylint: disable=import-outside-toplevel
        from fastapi.responses import JSONResponse, Response  # pylint: disable=import-outside-toplevel
        from pydantic import BaseModel, Field  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise RuntimeError(f"the npms API needs fastapi (pip install fastapi uvicorn): {exc}") from None

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

    class Version(BaseModel):
        epoch: int = Field(ge=1, description="monotonic per loop")
        hash: str = Field(description="SHA-256 of the bundle's content (canonical JSON)")

    class Bundle(BaseModel):
        format: int
        node: str
        epoch: int
        hash: str
        created: Optional[str] = None
        content: Dict[str, Any]

    class NodeStatus(BaseModel):
        epoch: Optional[int] = Field(default=None, ge=1, description="epoch of the bundle the node runs (null: none yet)")
        hash: Optional[str] = Field(default=None, max_length=64, description="hash of the bundle the node runs")
        ok: bool = Field(description="whether the node's last apply (or refusal-free poll) worked")
        error: Optional[str] = Field(default=None, max_length=MAX_ERROR_CHARS, description="why not, in words")

    class RecordedStatus(NodeStatus):
        reported: str = Field(description="when the controller received it (UTC)")

    class NodeView(BaseModel):
        status: Optional[RecordedStatus] = None
        latest: Optional[Version] = None
        current: bool = Field(description="the node runs its latest bundle")

    class StatusList(BaseModel):
        nodes: Dict[str, NodeView]

    class Published(BaseModel):
        node: str
        epoch: int
        hash: str
        etag: str
        changed: bool = Field(description="the content differs from the previous bundle (a CDN purge was sent)")

    app = FastAPI(title="galactic.npms controller API", version=API_VERSION,
                  description="Push API for probe sidecars; pull API for config bundles (docs/api.md).")
    node_path = Path(pattern=NODE_PATTERN, description="node name as in the inventory")
    unauthorized = {401: {"description": "no or unknown token"}}

    def authenticate(authorization: Optional[str]) -> str:
        node = tokens.node_of(_bearer(authorization))
        if node is None:
            raise HTTPException(status_code=401, detail="a valid node token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return node

    def authorize(authorization: Optional[str], node: str) -> str:
        """The caller, when it may act for ``node`` (its own token, or an admin's)."""
        caller = authenticate(authorization)
        if caller != node and not tokens.is_admin(caller):
            raise HTTPException(status_code=403, detail=f"this token belongs to {caller}, not to {node}")
        return caller

    def authorize_admin(authorization: Optional[str]) -> str:
        caller = authenticate(authorization)
        if not tokens.is_admin(caller):
            raise HTTPException(status_code=403, detail=f"{caller} is not an admin token (npms api token NODE --admin)")
        return caller

    @app.get(f"/{API_VERSION}/health", summary="liveness")
    def health() -> Dict[str, str]:
        return {"status": "ok"}

    if store is not None:
        @app.post(f"/{API_VERSION}/samples", response_model=Ingested, summary="push one batch of probe samples",
                  responses={**unauthorized, 413: {"description": "batch too large"},
                             429: {"description": "rate limited; see Retry-After"}})
        def push_samples(batch: Batch = Body(...), authorization: Optional[str] = Header(default=None)) -> Any:
            try:
                return push_batch(store, tokens, _bearer(authorization), batch.batch_id, batch.samples, max_batch)
            except PushError as exc:
                if exc.status == 401:
                    authenticate(None)  # the same 401, with WWW-Authenticate
                if exc.status == 429:
                    return JSONResponse(status_code=429, headers={"Retry-After": str(exc.retry_after)},
                                        content={"detail": exc.detail})
                raise HTTPException(status_code=exc.status, detail=exc.detail) from None

    if bundles is None:
        return app
    repo = bundles
    book = StatusBook(os.path.join(repo.root, STATUS_FILE))
    forbidden = {403: {"description": "the token belongs to another node"}}
    no_bundle = {404: {"description": "no bundle for this node"}}

    def latest(node: str) -> Dict[str, Any]:
        try:
            bundle = repo.get(node)
        except (BundleError, OSError, ValueError) as exc:
            log.error("bundle of %s cannot be read: %s", node, exc)
            raise HTTPException(status_code=500, detail=f"the bundle of {node} cannot be read") from None
        if bundle is None:
            raise HTTPException(status_code=404, detail=f"no bundle for {node} yet")
        return bundle

    @app.get(f"/{API_VERSION}/bundles/{{node}}", response_model=Bundle, summary="the node's latest config bundle",
             responses={200: {"description": "the bundle; headers ETag, Last-Modified, Cache-Control"},
                        304: {"description": "If-None-Match matched the current ETag: no body"},
                        **unauthorized, **forbidden, **no_bundle})
    def get_bundle(node: str = node_path, authorization: Optional[str] = Header(default=None),
                   if_none_match: Optional[str] = Header(default=None)) -> Any:
        authorize(authorization, node)
        bundle = latest(node)
        tag = etag(bundle)
        headers = {"ETag": tag, "Cache-Control": BUNDLE_CACHE_CONTROL, "Last-Modified": last_modified(bundle),
                   "Vary": "Authorization"}
        if etag_matches(if_none_match, tag):
            return Response(status_code=304, headers=headers)
        return Response(content=json.dumps(bundle, sort_keys=True, separators=(",", ":")), media_type="application/json",
                        headers=headers)

    @app.get(f"/{API_VERSION}/bundles/{{node}}/version", response_model=Version,
             summary="epoch and hash of the node's latest bundle", responses={**unauthorized, **forbidden, **no_bundle})
    def get_version(node: str = node_path, authorization: Optional[str] = Header(default=None)) -> Any:
        authorize(authorization, node)
        bundle = latest(node)
        return JSONResponse({"epoch": bundle["epoch"], "hash": bundle["hash"]},
                            headers={"ETag": etag(bundle), "Cache-Control": "private, no-cache"})

    @app.put(f"/{API_VERSION}/bundles/{{node}}", response_model=Published, summary="publish a bundle (admin token)",
             responses={**unauthorized, 403: {"description": "not an admin token"},
                        409: {"description": "older than the published epoch, or the same epoch with other content"},
                        422: {"description": "not a bundle, its hash does not match, or it is for another node"}})
    def put_bundle(node: str = node_path, bundle: Bundle = Body(...),
                   authorization: Optional[str] = Header(default=None)) -> Any:
        authorize_admin(authorization)
        data = bundle.model_dump()
        if data.get("created") is None:
            data.pop("created", None)
        if data["node"] != node:
            raise HTTPException(status_code=422, detail=f"the bundle is for {data['node']}, not {node}")
        try:
            check_bundle(data, f"bundle for {node}")
            changed = publish(repo, data, purger)
        except StaleBundle as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except BundleError as exc:
            code = 409 if "already published" in str(exc) else 422
            raise HTTPException(status_code=code, detail=str(exc)) from None
        return {"node": node, "epoch": data["epoch"], "hash": data["hash"], "etag": etag(data), "changed": changed}

    @app.post(f"/{API_VERSION}/nodes/{{node}}/status", response_model=RecordedStatus,
              summary="report the bundle version the node runs", responses={**unauthorized, **forbidden})
    def post_status(node: str = node_path, status: NodeStatus = Body(...),
                    authorization: Optional[str] = Header(default=None)) -> Any:
        authorize(authorization, node)
        return book.record(node, status.model_dump())

    @app.get(f"/{API_VERSION}/nodes/status", response_model=StatusList,
             summary="what every node runs, against its latest bundle (admin token)",
             responses={**unauthorized, 403: {"description": "not an admin token"}})
    def list_status(authorization: Optional[str] = Header(default=None)) -> Any:
        authorize_admin(authorization)
        reported = book.read()
        out: Dict[str, Any] = {}
        for node in sorted(set(repo.nodes()) | set(reported)):
            try:
                newest = repo.get(node)
            except (BundleError, OSError, ValueError):
                newest = None
            version = {"epoch": newest["epoch"], "hash": newest["hash"]} if newest else None
            status = reported.get(node)
            current = bool(version and status and status.get("epoch") == version["epoch"]
                           and status.get("hash") == version["hash"])
            out[node] = {"status": status, "latest": version, "current": current}
        return {"nodes": out}

    return app


# --- npms api ---------------------------------------------------------------------------
def setup_api(parser: argparse.ArgumentParser) -> Callable:
    sub = parser.add_subparsers(dest="api_command", metavar="ACTION")
    sub.required = True
    tok = sub.add_parser("token", help="issue (or revoke) a node's token; the token is printed once")
    tok.add_argument("node")
    tok.add_argument("--tokens", default="/etc/npms/api-tokens.json", help="token file (default %(default)s)")
    tok.add_argument("--revoke", action="store_true")
    tok.add_argument("--tenant", action="append", dest="tenants", metavar="TENANT",
                     help="a tenant this node's token serves (repeatable; recorded in the token file)")
    tok.add_argument("--admin", action="store_true", default=None,
                     help="the controller's token: may read every node's status and publish bundles")
    serve = sub.add_parser("serve", help="run the API (uvicorn)")
    serve.add_argument("--store", default="sqlite:////var/lib/npms/store.db", help="store URL (default %(default)s)")
    serve.add_argument("--tokens", default="/etc/npms/api-tokens.json", help="token file (default %(default)s)")
    serve.add_argument("--bundles", default=None, metavar="DIR",
                       help="bundle repository to serve to nodes (pull mode; e.g. /var/lib/npms/bundles)")
    serve.add_argument("--purge-url", default=None, metavar="TEMPLATE",
                       help="CDN URL to PURGE when a node's bundle changes, with {node} (e.g. https://cdn/v1/bundles/{node})")
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
        if not re.match(NODE_PATTERN, args.node):
            raise CliError(f"{args.node!r} is not a node name (letters, digits, '.', '_', '-')")
        _write(tokens.issue(args.node, tenants=args.tenants, admin=args.admin))
        return 0
    try:
        import uvicorn  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise CliError(f"npms api serve needs uvicorn: {exc}", EXIT_FAILED) from None
    from .store import Store  # pylint: disable=import-outside-toplevel

    try:
        purger = Purger(args.purge_url) if args.purge_url else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    repo = BundleRepo(args.bundles) if args.bundles else None
    store = Store(args.store, window_s=args.window)
    try:
        uvicorn.run(create_app(store, tokens, bundles=repo, purger=purger), host=args.bind, port=args.port,
                    log_level="info")
    finally:
        store.close()
    return 0
