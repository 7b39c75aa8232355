# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The push API (npms.api) over a real SQLite store: tokens, batches, dedup, limits,
through FastAPI's test client and once through a real uvicorn server on loopback."""

from __future__ import annotations

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

from npms.api import TokenStore, create_app
from npms.cli import main as npms_main
from npms.store import Store


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
