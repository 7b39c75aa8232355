# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push API (npms.api) over a real SQLite store: tokens, batches, dedup, limits,
through FastAPI's test client and once through a real uvicorn server on loopback."""

from __future__ import annotations

import email.utils
import http.server
import json
import logging
import os
import socket
import stat
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from npms import nats_ingest
from npms.api import Purger, PushError, TokenStore, create_app, publish, push_batch
from npms.bundle import BundleError, BundleRepo, StaleBundle, etag, make_bundle
from npms.cli import main as npms_main
from npms.nats_ingest import handle_message
from npms.store import Store, StoreError


def sample(src="edge-ber", dst="core-fra", tenant="acme", ts=None, **extra):
    out = {"src": src, "dst": dst, "tenant": tenant, "kind": "udp", "ts": ts or time.time() - 5,
           "sent": 10, "received": 10, "rtt_ms": 12.0, "jitter_ms": 0.3}
    out.update(extra)
    return out


@pytest.fixture()
def world(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/store.db", rate_per_s=1, burst=50)
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    token = tokens.issue("edge-ber")
    other = tokens.issue("edge-bos")
    client = TestClient(create_app(store, tokens, max_batch=40))
    yield {"store": store, "tokens": tokens, "token": token, "other": other, "client": client, "dir": tmp_path}
    store.close()


def push(world, samples, batch_id="b1", token=None):
    headers = {"Authorization": f"Bearer {token or world['token']}"}
    return world["client"].post("/v1/samples", json={"batch_id": batch_id, "samples": samples}, headers=headers)


def test_token_file_keeps_digests_only(world):
    text = (world["dir"] / "tokens.json").read_text()
    assert world["token"] not in text and world["other"] not in text
    assert json.loads(text)["nodes"]["edge-ber"]["sha256"]
    assert stat.S_IMODE(os.stat(world["dir"] / "tokens.json").st_mode) == 0o600
    again = TokenStore(str(world["dir"] / "tokens.json"))
    assert again.node_of(world["token"]) == "edge-ber" and again.node_of("nope") is None


def test_a_batch_is_stored_once_even_when_sent_twice(world):
    res = push(world, [sample(), sample(ts=time.time() - 15)])
    assert res.status_code == 200, res.text
    assert res.json()["accepted"] == 2 and not res.json()["duplicate"] and res.json()["source"] == "edge-ber"
    res = push(world, [sample(), sample(ts=time.time() - 15)])
    assert res.status_code == 200 and res.json()["duplicate"]
    assert world["store"].stats()["accepted"] == 2


def test_bad_samples_are_rejected_with_reasons_and_the_rest_kept(world):
    res = push(world, [sample(), sample(src="edge-bos"), sample(rtt_ms=-1), sample(colour="red")], batch_id="mixed")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["accepted"] == 1
    rejected = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3]
    assert "edge-bos" in rejected[1] and "rtt_ms" in rejected[2] and "colour" in rejected[3]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong-token", "Basic abc"])
def test_without_a_valid_token_nothing_is_stored(world, header):
    headers = {"Authorization": header} if header else {}
    res = world["client"].post("/v1/samples", json={"batch_id": "x", "samples": [sample()]}, headers=headers)
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    assert world["store"].stats()["accepted"] == 0


def test_a_token_speaks_for_its_own_node_only(world):
    res = push(world, [sample()], token=world["other"])  # edge-bos's token, edge-ber's sample
    assert res.status_code == 200 and res.json()["accepted"] == 0
    assert "edge-ber" in res.json()["rejected"][0]["reason"]


def test_limits_too_large_malformed_and_rate(world):
    assert push(world, [sample()] * 41).status_code == 413
    bad = world["client"].post("/v1/samples", json={"samples": []}, headers={"Authorization": f"Bearer {world['token']}"})
    assert bad.status_code == 422 and "batch_id" in bad.text
    # a bucket of 50 samples, refilled at 1/s: a batch is admitted while the bucket is not
    # empty (then taken whole), so the fourth batch of 20 is refused
    codes = [push(world, [sample(ts=time.time() - 1 - i * 0.01 - j) for j in range(20)], batch_id=f"r{i}").status_code
             for i in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = push(world, [sample(ts=time.time() - 2)], batch_id="r9")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "edge-ber is over its sample rate" in limited.json()["detail"]


def test_the_openapi_document_describes_the_push_api(world):
    doc = world["client"].get("/openapi.json").json()
    post = doc["paths"]["/v1/samples"]["post"]
    assert set(post["responses"]) >= {"200", "401", "413", "422", "429"}
    assert "Batch" in doc["components"]["schemas"]


def test_tokens_never_appear_in_answers_or_logs(world, caplog):
    caplog.set_level(logging.DEBUG)
    texts = [push(world, [sample()], batch_id="t1").text, push(world, [sample()], token="wrong").text,
             world["client"].get("/v1/health").text]
    assert all(world["token"] not in t for t in texts)
    assert world["token"] not in caplog.text


def test_cli_issues_prints_once_and_revokes(tmp_path, capsys):
    path = str(tmp_path / "t.json")
    assert npms_main(["api", "token", "core-fra", "--tokens", path]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenStore(path).node_of(token) == "core-fra" and token not in open(path, encoding="utf-8").read()
    assert npms_main(["api", "token", "core-fra", "--tokens", path, "--revoke"]) == 0
    assert TokenStore(path).node_of(token) is None
    assert npms_main(["api", "token", "core-fra", "--tokens", path, "--revoke"]) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_on_loopback(world):
    import uvicorn  # pylint: disable=import-outside-toplevel

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(world["store"], world["tokens"]), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        res = httpx.post(f"http://127.0.0.1:{port}/v1/samples", json={"batch_id": "real", "samples": [sample()]},
                         headers={"Authorization": f"Bearer {world['token']}"}, timeout=10)
        assert res.status_code == 200 and res.json()["accepted"] == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- pull mode: bundles, status, publish and purge ----------------------------------------


def content(mtu=1420, role="edge"):
    return {"role": role, "resources": {"wireguard": [{"name": "wg-core-fra", "mtu": mtu}]}, "fec": {},
            "sla_profiles": {}}


@pytest.fixture()
def pull(tmp_path):
    repo = BundleRepo(str(tmp_path / "bundles"))
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    toks = {"edge-ber": tokens.issue("edge-ber", tenants=["acme"]), "edge-bos": tokens.issue("edge-bos"),
            "controller": tokens.issue("controller", admin=True)}
    client = TestClient(create_app(None, tokens, bundles=repo))
    return {"repo": repo, "tokens": tokens, "tok": toks, "client": client, "dir": tmp_path}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_node_pulls_its_bundle_then_revalidates_with_its_etag(pull):
    b1 = make_bundle("edge-ber", content(), 1, created="2026-12-06T03:50:00Z")
    assert publish(pull["repo"], b1) is True
    res = pull["client"].get("/v1/bundles/edge-ber", headers=auth(pull["tok"]["edge-ber"]))
    assert res.status_code == 200, res.text
    assert res.json() == b1
    assert res.headers["etag"] == etag(b1)
    assert res.headers["cache-control"] == "private, max-age=60, must-revalidate"
    assert email.utils.parsedate_to_datetime(res.headers["last-modified"]).isoformat() == "2026-12-06T03:50:00+00:00"
    again = pull["client"].get("/v1/bundles/edge-ber", headers={**auth(pull["tok"]["edge-ber"]), "If-None-Match": etag(b1)})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag(b1)
    # a new epoch: the old ETag no longer matches
    b2 = make_bundle("edge-ber", content(mtu=1380), 2)
    publish(pull["repo"], b2)
    newer = pull["client"].get("/v1/bundles/edge-ber", headers={**auth(pull["tok"]["edge-ber"]), "If-None-Match": etag(b1)})
    assert newer.status_code == 200 and newer.json()["epoch"] == 2 and newer.headers["etag"] == etag(b2)
    version = pull["client"].get("/v1/bundles/edge-ber/version", headers=auth(pull["tok"]["edge-ber"]))
    assert version.status_code == 200 and version.json() == {"epoch": 2, "hash": b2["hash"]}


@pytest.mark.parametrize("who, path, code", [
    (None, "/v1/bundles/edge-ber", 401),
    ("wrong", "/v1/bundles/edge-ber", 401),
    ("edge-bos", "/v1/bundles/edge-ber", 403),
    ("edge-bos", "/v1/bundles/edge-ber/version", 403),
    ("edge-ber", "/v1/bundles/edge-ber", 200),
    ("controller", "/v1/bundles/edge-ber", 200),
    ("edge-bos", "/v1/bundles/edge-bos", 404),
    ("edge-bos", "/v1/bundles/edge-bos/version", 404),
    ("controller", "/v1/bundles/.status", 422),  # not a node name: never a path in the repo
])
def test_bundle_tokens_are_scoped_to_their_node(pull, who, path, code):
    publish(pull["repo"], make_bundle("edge-ber", content(), 1))
    headers = {} if who is None else auth(pull["tok"].get(who, who))
    res = pull["client"].get(path, headers=headers)
    assert res.status_code == code, res.text
    if code != 200:
        assert "wg-core-fra" not in res.text


def test_nodes_report_the_version_they_run_and_the_controller_sees_who_lags(pull):
    b1 = make_bundle("edge-ber", content(), 1)
    publish(pull["repo"], b1)
    publish(pull["repo"], make_bundle("edge-bos", content(), 1))
    client, tok = pull["client"], pull["tok"]
    ok = client.post("/v1/nodes/edge-ber/status", json={"epoch": 1, "hash": b1["hash"], "ok": True, "error": None},
                     headers=auth(tok["edge-ber"]))
    assert ok.status_code == 200 and ok.json()["reported"]
    # a node cannot speak for another, nor read the fleet's status
    assert client.post("/v1/nodes/edge-ber/status", json={"epoch": 1, "hash": "x", "ok": False},
                       headers=auth(tok["edge-bos"])).status_code == 403
    assert client.get("/v1/nodes/status", headers=auth(tok["edge-ber"])).status_code == 403
    assert client.get("/v1/nodes/status").status_code == 401
    assert client.post("/v1/nodes/edge-bos/status", json={"ok": "maybe"}, headers=auth(tok["edge-bos"])).status_code == 422
    bad = client.post("/v1/nodes/edge-bos/status", json={"epoch": None, "hash": None, "ok": False,
                                                         "error": "wireguard: add wg-core-fra failed"},
                      headers=auth(tok["edge-bos"]))
    assert bad.status_code == 200
    # edge-ber gets a newer bundle and has not applied it yet
    publish(pull["repo"], make_bundle("edge-ber", content(mtu=1380), 2))
    fleet = client.get("/v1/nodes/status", headers=auth(tok["controller"]))
    assert fleet.status_code == 200
    nodes = fleet.json()["nodes"]
    assert nodes["edge-ber"]["status"]["epoch"] == 1 and nodes["edge-ber"]["latest"]["epoch"] == 2
    assert nodes["edge-ber"]["current"] is False
    assert nodes["edge-bos"]["status"]["error"] == "wireguard: add wg-core-fra failed" and not nodes["edge-bos"]["current"]
    client.post("/v1/nodes/edge-ber/status", json={"epoch": 2, "hash": pull["repo"].get("edge-ber")["hash"], "ok": True},
                headers=auth(tok["edge-ber"]))
    assert client.get("/v1/nodes/status", headers=auth(tok["controller"])).json()["nodes"]["edge-ber"]["current"] is True
    # kept next to the bundles, and read back by a new app (a restarted API)
    on_disk = json.loads((pull["dir"] / "bundles" / "status.json").read_text())
    assert on_disk["nodes"]["edge-ber"]["epoch"] == 2
    fresh = TestClient(create_app(None, TokenStore(str(pull["dir"] / "tokens.json")), bundles=BundleRepo(pull["repo"].root)))
    assert fresh.get("/v1/nodes/status", headers=auth(tok["controller"])).json()["nodes"]["edge-ber"]["status"]["epoch"] == 2


class PurgeRecorder:
    """A real HTTP server on loopback that records PURGE requests (and answers ``code``)."""

    def __init__(self, code=200):
        recorder = self
        self.paths = []
        self.code = code

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PURGE(self):  # noqa: N802 - http.server's naming
                recorder.paths.append(self.path)
                self.send_response(recorder.code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # keep pytest output quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_publish_purges_the_cdn_only_when_the_content_changes(tmp_path):
    repo = BundleRepo(str(tmp_path / "bundles"))
    with PurgeRecorder() as cdn:
        purger = Purger(f"http://127.0.0.1:{cdn.port}/v1/bundles/{{node}}")
        steps = [
            (make_bundle("edge-ber", content(), 1), True),          # first bundle: purge
            (make_bundle("edge-ber", content(), 2), False),         # new epoch, same content: no purge
            (make_bundle("edge-ber", content(mtu=1380), 3), True),  # new content: purge
            (make_bundle("edge-bos", content(), 3), True),          # another node: its own URL
        ]
        for bundle, changed in steps:
            assert publish(repo, bundle, purger) is changed
        assert cdn.paths == ["/v1/bundles/edge-ber", "/v1/bundles/edge-ber", "/v1/bundles/edge-bos"]
        assert repo.get("edge-ber")["epoch"] == 3
        # a late loop run never replaces a newer bundle, and nothing is purged for it
        with pytest.raises(StaleBundle, match="older"):
            publish(repo, make_bundle("edge-ber", content(mtu=9000), 2), purger)
        with pytest.raises(BundleError, match="other content"):
            publish(repo, make_bundle("edge-ber", content(mtu=9000), 3), purger)
        assert publish(repo, make_bundle("edge-ber", content(mtu=1380), 3), purger) is False
        assert len(cdn.paths) == 3 and repo.get("edge-ber")["content"] == content(mtu=1380)


def test_a_failed_purge_is_logged_and_the_bundle_still_published(tmp_path, caplog):
    repo = BundleRepo(str(tmp_path / "bundles"))
    with PurgeRecorder(code=500) as cdn:
        purger = Purger(f"http://127.0.0.1:{cdn.port}/purge/{{node}}?key=s3cret")
        assert publish(repo, make_bundle("edge-ber", content(), 1), purger) is True
        assert cdn.paths == ["/purge/edge-ber?key=s3cret"]
    assert repo.get("edge-ber")["epoch"] == 1
    assert "HTTP 500" in caplog.text and "s3cret" not in caplog.text
    port = _free_port()  # nothing listens there
    assert Purger(f"http://127.0.0.1:{port}/{{node}}", timeout=2).purge("edge-ber") is False
    with pytest.raises(ValueError, match="node"):
        Purger("http://cdn.example.net/v1/bundles/")


def test_the_controller_publishes_through_the_api_and_the_cdn_is_purged(tmp_path):
    repo = BundleRepo(str(tmp_path / "bundles"))
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    admin, node = tokens.issue("controller", admin=True), tokens.issue("edge-ber")
    with PurgeRecorder() as cdn:
        client = TestClient(create_app(None, tokens, bundles=repo,
                                       purger=Purger(f"http://127.0.0.1:{cdn.port}/v1/bundles/{{node}}")))
        b1 = make_bundle("edge-ber", content(), 1)
        res = client.put("/v1/bundles/edge-ber", json=b1, headers=auth(admin))
        assert res.status_code == 200, res.text
        assert res.json() == {"node": "edge-ber", "epoch": 1, "hash": b1["hash"], "etag": etag(b1), "changed": True}
        assert cdn.paths == ["/v1/bundles/edge-ber"]
        assert client.put("/v1/bundles/edge-ber", json=make_bundle("edge-ber", content(), 2),
                          headers=auth(node)).status_code == 403
        assert client.put("/v1/bundles/edge-bos", json=make_bundle("edge-ber", content(), 2),
                          headers=auth(admin)).status_code == 422
        tampered = dict(make_bundle("edge-ber", content(), 2), hash="0" * 64)
        assert client.put("/v1/bundles/edge-ber", json=tampered, headers=auth(admin)).status_code == 422
        client.put("/v1/bundles/edge-ber", json=make_bundle("edge-ber", content(mtu=1380), 5), headers=auth(admin))
        late = client.put("/v1/bundles/edge-ber", json=make_bundle("edge-ber", content(), 4), headers=auth(admin))
        assert late.status_code == 409 and "older" in late.json()["detail"]
        assert len(cdn.paths) == 2 and repo.get("edge-ber")["epoch"] == 5


def test_the_openapi_document_describes_the_pull_api(pull):
    doc = pull["client"].get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths["/v1/bundles/{node}"]["get"]["responses"]) >= {"200", "304", "401", "403", "404"}
    assert set(paths["/v1/bundles/{node}"]["put"]["responses"]) >= {"200", "401", "403", "409", "422"}
    assert set(paths["/v1/bundles/{node}/version"]["get"]["responses"]) >= {"200", "401", "403", "404"}
    assert set(paths["/v1/nodes/{node}/status"]["post"]["responses"]) >= {"200", "401", "403", "422"}
    assert set(paths["/v1/nodes/status"]["get"]["responses"]) >= {"200", "401", "403"}
    schemas = doc["components"]["schemas"]
    assert {"epoch", "hash", "ok", "error"} <= set(schemas["NodeStatus"]["properties"])
    # a bundle-only server has no push endpoint, and a push-only one no bundles
    assert "/v1/samples" not in paths
    push_only = TestClient(create_app(object(), pull["tokens"])).get("/openapi.json").json()["paths"]
    assert "/v1/samples" in push_only and "/v1/bundles/{node}" not in push_only


def test_cli_records_tenants_and_admins_in_the_token_file(tmp_path, capsys):
    path = str(tmp_path / "t.json")
    assert npms_main(["api", "token", "edge-ber", "--tokens", path, "--tenant", "acme", "--tenant", "globex"]) == 0
    assert npms_main(["api", "token", "controller", "--tokens", path, "--admin"]) == 0
    first, admin = capsys.readouterr().out.split()
    data = json.loads(open(path, encoding="utf-8").read())
    assert data["nodes"]["edge-ber"]["tenants"] == ["acme", "globex"] and data["admins"] == ["controller"]
    store = TokenStore(path)
    assert store.tenants_of("edge-ber") == ["acme", "globex"]
    assert store.is_admin(store.node_of(admin)) and not store.is_admin(store.node_of(first))
    # a new token keeps the node's tenants unless told otherwise; revoking drops admin rights
    assert npms_main(["api", "token", "edge-ber", "--tokens", path]) == 0
    assert TokenStore(path).tenants_of("edge-ber") == ["acme", "globex"]
    assert npms_main(["api", "token", "controller", "--tokens", path, "--revoke"]) == 0
    assert TokenStore(path).admins == [] and TokenStore(path).node_of(admin) is None
    assert npms_main(["api", "token", "../etc", "--tokens", path]) == 2


# --- push_batch: the one code path of POST /v1/samples and the NATS subject ---------------
@pytest.mark.parametrize("token, batch_id, samples, node, status", [
    (None, "b", [], None, 401),
    ("nope", "b", [], None, 401),
    ("other", "b", [], "edge-ber", 403),           # edge-bos's token for edge-ber's subject
    ("own", "b", [], "edge-bos", 403),
    ("own", "", [], None, 400),
    ("own", "b" * 201, [], None, 400),
    ("own", "b", "not a list", None, 400),
    ("own", "b", [1, 2], None, 400),
    ("own", "b", [{}] * 41, None, 413),
])
def test_push_batch_refuses_with_the_status_both_transports_report(world, token, batch_id, samples, node, status):
    real = {"own": world["token"], "other": world["other"]}.get(token, token)
    with pytest.raises(PushError) as refused:
        push_batch(world["store"], world["tokens"], real, batch_id, samples, max_batch=40, node=node)
    assert refused.value.status == status
    assert world["token"] not in refused.value.detail and world["store"].stats()["accepted"] == 0


def test_push_batch_acknowledges_like_the_http_api_and_rate_limits(world):
    ack = push_batch(world["store"], world["tokens"], world["token"], "n1", [sample()], node="edge-ber")
    assert ack == {"source": "edge-ber", "batch_id": "n1", "accepted": 1, "rejected": [], "duplicate": False}
    assert push(world, [sample()], batch_id="n1").json()["duplicate"]  # the same batch over HTTP: counted once
    for i in range(3):  # the bucket of 50 (1/s) empties
        push_batch(world["store"], world["tokens"], world["token"], f"f{i}", [sample(ts=time.time() - 1 - j) for j in range(20)])
    with pytest.raises(PushError) as limited:
        push_batch(world["store"], world["tokens"], world["token"], "f9", [sample()])
    assert limited.value.status == 429 and limited.value.retry_after_s > 0 and limited.value.retry_after >= 1


def test_a_nats_request_gets_the_http_answer(world):
    message = json.dumps({"token": world["token"], "batch_id": "q1", "samples": [sample(), sample(rtt_ms=-1)]})
    reply = handle_message(world["store"], world["tokens"], "npms.samples.edge-ber", message.encode())
    assert reply["accepted"] == 1 and [r["index"] for r in reply["rejected"]] == [1]
    assert handle_message(world["store"], world["tokens"], "npms.samples.edge-bos", message.encode())["status"] == 403
    assert handle_message(world["store"], world["tokens"], "npms.samples", message.encode())["status"] == 400
    assert handle_message(world["store"], world["tokens"], "npms.samples.edge-ber", b"{")["status"] == 400
    bad_store = handle_message(_FailingStore(), world["tokens"], "npms.samples.edge-ber", message.encode())
    assert bad_store == {"error": "the store failed; nothing of the batch was stored", "status": 500}


class _FailingStore:
    def ingest(self, *_args):
        raise StoreError("database is locked")


def test_npms_nats_without_nats_py_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(nats_ingest, "nats", None)
    assert npms_main(["nats", "serve", "--tokens", str(tmp_path / "t.json"), "--store", f"sqlite:///{tmp_path}/s.db"]) == 1
    assert "npms nats needs nats-py" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="needs nats-py"):
        nats_ingest.push_nats("nats://127.0.0.1:1", "edge-ber", "t", "b", [])
