# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample batches over NATS request/reply against a real nats-server on loopback and a real
SQLite store: acknowledged and stored once, 401/403/413/429 as over HTTP, bad samples
rejected with reasons, and the client (push_nats, ``npms nats push`` against ``npms nats
serve``) delivering a batch end to end.  No namespaces needed; nats-server must be
installed (make setup does it): missing, these tests fail."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import nats
import pytest

from npms.api import TokenStore
from npms.nats_ingest import IngestServer, PushFailed, batch_id_for, push_nats
from npms.store import Store


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sample(src="edge-ber", dst="core-fra", tenant="acme", ts=None, **extra):
    out = {"src": src, "dst": dst, "tenant": tenant, "kind": "udp", "ts": ts or time.time() - 5,
           "sent": 10, "received": 10, "rtt_ms": 12.0, "jitter_ms": 0.3}
    out.update(extra)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nats-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nats-server did not listen on 127.0.0.1:{port} within {seconds} s")


@pytest.fixture()
def nats_url():
    binary = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if binary is None:
        pytest.fail("nats-server is not installed (apt-get install nats-server; make setup installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Ingest:
    """An IngestServer on its own event loop in a thread, over a SQLite store in tmp_path."""

    def __init__(self, url, tmp_path, max_batch=40, **store_kwargs):
        self.url = url
        self.store = Store(f"sqlite:///{tmp_path}/store.db", **store_kwargs)
        self.tokens = TokenStore(str(tmp_path / "tokens.json"))
        self.token = self.tokens.issue("edge-ber")
        self.other = self.tokens.issue("edge-bos")
        self.server = IngestServer(url, self.store, self.tokens, max_batch=max_batch)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()

    def request(self, node, message):
        """One raw request on npms.samples.<node>; the decoded reply."""
        async def once():
            nc = await nats.connect(self.url)
            try:
                data = message if isinstance(message, bytes) else json.dumps(message).encode()
                reply = await nc.request(f"npms.samples.{node}", data, timeout=10)
                return json.loads(reply.data)
            finally:
                await nc.close()
        return asyncio.run(once())

    def push(self, samples, batch_id="b1", token=None, node="edge-ber"):
        return self.request(node, {"token": token or self.token, "batch_id": batch_id, "samples": samples})


@pytest.fixture()
def ingest(nats_url, tmp_path):
    made = []

    def make(**kwargs):
        made.append(Ingest(nats_url, tmp_path, **kwargs))
        return made[-1]
    yield make
    for server in made:
        server.close()


def test_a_batch_is_acknowledged_stored_and_counted_once(ingest):
    world = ingest()
    batch = [sample(), sample(ts=time.time() - 15)]
    first = world.push(batch)
    assert first == {"source": "edge-ber", "batch_id": "b1", "accepted": 2, "rejected": [], "duplicate": False}
    assert world.store.count_samples() == 2
    again = world.push(batch)
    assert again["duplicate"] and again["accepted"] == 2
    assert world.store.count_samples() == 2 and world.store.stats()["accepted"] == 2


def test_bad_samples_are_rejected_with_reasons_and_the_rest_kept(ingest):
    world = ingest()
    reply = world.push([sample(), sample(src="edge-bos"), sample(rtt_ms=-1), sample(colour="red")], batch_id="mixed")
    assert reply["accepted"] == 1
    rejected = {r["index"]: r["reason"] for r in reply["rejected"]}
    assert sorted(rejected) == [1, 2, 3]
    assert "edge-bos" in rejected[1] and "rtt_ms" in rejected[2] and "colour" in rejected[3]
    assert world.store.count_samples() == 1


@pytest.mark.parametrize("token, node, status", [
    (None, "edge-ber", 401),
    ("wrong-token", "edge-ber", 401),
    ("other", "edge-ber", 403),    # edge-bos's token on edge-ber's subject
    ("own", "edge-bos", 403),      # edge-ber's token on edge-bos's subject
])
def test_the_token_must_be_the_subjects_node(ingest, token, node, status):
    world = ingest()
    real = {"own": world.token, "other": world.other}.get(token, token)
    message = {"batch_id": "t1", "samples": [sample()]}
    if real is not None:
        message["token"] = real
    reply = world.request(node, message)
    assert reply["status"] == status and "accepted" not in reply
    assert world.token not in json.dumps(reply) and world.other not in json.dumps(reply)
    assert world.store.count_samples() == 0


@pytest.mark.parametrize("message", [b"not json", b"[1, 2]", {"batch_id": "", "samples": []},
                                     {"batch_id": "x", "samples": "edge-ber"}])
def test_not_a_batch_is_a_400(ingest, message):
    world = ingest()
    if isinstance(message, dict):
        message = dict(message, token=world.token)
    reply = world.request("edge-ber", message)
    assert reply["status"] == 400 and world.store.count_samples() == 0


def test_a_batch_over_the_limit_is_a_413(ingest):
    world = ingest(max_batch=40)
    reply = world.push([sample()] * 41)
    assert reply["status"] == 413 and "at most 40" in reply["error"]
    assert world.store.count_samples() == 0


def test_over_the_rate_a_429_with_retry_after(ingest):
    world = ingest(rate_per_s=1, burst=50)
    replies = [world.push([sample(ts=time.time() - 1 - i * 0.01 - j) for j in range(20)], batch_id=f"r{i}")
               for i in range(4)]
    assert [r.get("status", 200) for r in replies] == [200, 200, 200, 429]
    assert replies[3]["retry_after_s"] > 0 and "edge-ber is over its sample rate" in replies[3]["error"]
    assert world.store.count_samples() == 60


def test_push_nats_delivers_waits_out_a_429_and_keeps_failures(ingest, caplog):
    caplog.set_level(logging.INFO, logger="npms.nats_ingest")
    world = ingest(rate_per_s=20, burst=20)
    batch = [sample(ts=time.time() - 1 - j) for j in range(20)]
    ack = push_nats(world.url, "edge-ber", world.token, "p1", batch, attempts=1)
    assert ack["accepted"] == 20 and world.store.count_samples() == 20
    # the bucket is empty: the next batch gets a 429 first, waits retry_after_s (~0.05 s,
    # not the 10 s backoff of a lost reply) and is taken
    started = time.monotonic()
    ack = push_nats(world.url, "edge-ber", world.token, "p2", [sample(ts=time.time() - 2)], attempts=3, backoff_s=10)
    assert ack["accepted"] == 1 and 0.04 <= time.monotonic() - started < 5
    assert "batch p2 to 127.0.0.1: attempt 1 of 3: 429" in caplog.text
    assert world.store.count_samples() == 21
    caplog.clear()
    with pytest.raises(PushFailed) as failed:  # final: not sent again
        push_nats(world.url, "edge-ber", world.other, "p3", [sample()], attempts=3)
    assert failed.value.status == 403 and "attempt" not in caplog.text and world.store.count_samples() == 21
    assert world.other not in caplog.text and world.token not in caplog.text


def test_push_nats_without_a_server_raises_instead_of_dropping(nats_url):
    with pytest.raises(PushFailed) as failed:  # nobody answers npms.samples.edge-ber
        push_nats(nats_url, "edge-ber", "t", "b", [sample()], attempts=2, timeout=1, backoff_s=0.05)
    assert failed.value.status is None
    port = free_port()  # nothing listens there
    with pytest.raises(PushFailed):
        push_nats(f"nats://127.0.0.1:{port}", "edge-ber", "t", "b", [sample()], attempts=2, timeout=1, backoff_s=0.05)


def test_the_server_waits_for_nats_and_still_stops(tmp_path):
    """NATS not up (yet): serve keeps trying to connect, and a stop still ends it at once."""
    store = Store(f"sqlite:///{tmp_path}/store.db")
    server = IngestServer(f"nats://127.0.0.1:{free_port()}", store, TokenStore(str(tmp_path / "tokens.json")))

    async def run():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        started = time.monotonic()
        await asyncio.wait_for(server.serve(stop), timeout=10)
        return time.monotonic() - started
    try:
        assert 0.9 <= asyncio.run(run()) < 5
    finally:
        store.close()


def npms(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "npms.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False, **kwargs)


def test_the_cli_end_to_end(nats_url, tmp_path):
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    token = tokens.issue("edge-ber")
    token_file = tmp_path / "agent.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    samples = [sample(), sample(ts=time.time() - 20)]
    (tmp_path / "probe.json").write_text(json.dumps({"node": "edge-ber", "samples": samples}))
    store_url = f"sqlite:///{tmp_path}/store.db"
    server = subprocess.Popen([sys.executable, "-m", "npms.cli", "nats", "serve", "--url", nats_url, "--store", store_url,
                               "--tokens", str(tmp_path / "tokens.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        push = npms("nats", "push", str(tmp_path / "probe.json"), "--url", nats_url, "--node", "edge-ber",
                    "--token-file", str(token_file), "--attempts", "8", "--timeout", "2")
        assert push.returncode == 0, push.stderr
        ack = json.loads(push.stdout)
        assert ack["accepted"] == 2 and ack["batch_id"] == batch_id_for("edge-ber", samples)
        again = npms("nats", "push", str(tmp_path / "probe.json"), "--url", nats_url, "--node", "edge-ber",
                     "--token-file", str(token_file))
        assert again.returncode == 0 and json.loads(again.stdout)["duplicate"]
        refused = npms("nats", "push", str(tmp_path / "probe.json"), "--url", nats_url, "--node", "edge-bos",
                       "--token-file", str(token_file))
        assert refused.returncode == 1 and "403" in refused.stderr and "send them again" in refused.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert token not in out + err + push.stdout + push.stderr + refused.stderr
    store = Store(store_url)
    try:
        assert store.count_samples() == 2
    finally:
        store.close()


def test_the_probe_playbooks_nats_push(nats_url, tmp_path):
    """playbooks/probe.yml's NATS push (tasks/probe_push_nats.yml, included per host) against
    `npms nats serve`: the batch is stored, a second run is the same batch (no change),
    --check sends nothing, the token file is gone afterwards and the token is in no output."""
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    token = tokens.issue("edge-ber")
    samples = [sample(), sample(dst="core-lon", ts=time.time() - 30)]
    play = tmp_path / "push.yml"
    play.write_text(json.dumps([{
        "name": "Push one node's samples", "hosts": "edge-ber", "gather_facts": False,
        "vars": {"probe_nats_url": nats_url, "probe_api_token": {"edge-ber": token},
                 "probe_result": {"samples": samples}},
        "tasks": [{"name": "Push", "ansible.builtin.include_tasks": os.path.join(ROOT, "playbooks", "tasks", "probe_push_nats.yml")}],
    }]))
    (tmp_path / "hosts.ini").write_text(f"edge-ber ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"))
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

    def run(*extra):
        proc = subprocess.run([playbook, "-i", str(tmp_path / "hosts.ini"), str(play), "-v", *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert token not in proc.stdout + proc.stderr
        return proc.stdout

    store_url = f"sqlite:///{tmp_path}/store.db"
    server = subprocess.Popen([sys.executable, "-m", "npms.cli", "nats", "serve", "--url", nats_url, "--store", store_url,
                               "--tokens", str(tmp_path / "tokens.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        checked = run("--check")
        first = run()
        second = run()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    assert "changed=0" in checked and "would push 2 samples" in checked and "samples accepted" not in checked
    assert "2 samples accepted" in first and "changed=1" in first
    assert "(a batch already stored)" in second and "changed=0" in second
    assert not list(scratch.rglob("*.token")), "a token file was left behind"
    assert token not in out + err
    store = Store(store_url)
    try:
        assert store.count_samples() == 2
    finally:
        store.close()
