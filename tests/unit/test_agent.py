# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull-mode agent (npms.agent) end to end: a real uvicorn server on loopback serving
a real BundleRepo, the agent's real HTTP and state files, and fake resources in place of
the dataplane (they record what the node would hold)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

import httpx
import pytest

from npms.agent import Agent, read_token, run_loop
from npms.api import TokenStore, create_app, publish
from npms.bundle import BundleRepo, make_bundle
from npms.cli import main as npms_main
from npms.resources import base


class FakeNode:
    """What the fake resources hold, per resource name, and how often they were read."""

    def __init__(self):
        self.items = {}
        self.gathers = 0


class FakeResource(base.Resource):
    """A resource over FakeNode: an item with ``fail: true`` cannot be added."""

    key_fields = ("name",)

    def __init__(self, name, node):
        super().__init__()
        self.name = name
        self.node = node

    def normalize(self, item, where):
        if not isinstance(item.get("name"), str):
            raise base.ResourceError(f"{where}: name: required")
        return dict(item)

    def gather(self):
        self.node.gathers += 1
        return [dict(i) for i in self.node.items.get(self.name, [])]

    def render_change(self, change):
        return [f"{self.name} {change.op} {change.key[0]}"]

    def apply_change(self, change):
        if change.after and change.after.get("fail"):
            raise RuntimeError("device said no")
        items = {i["name"]: i for i in self.node.items.get(self.name, [])}
        if change.op == base.DELETE:
            items.pop(change.key[0], None)
        else:
            items[change.key[0]] = dict(change.after)
        self.node.items[self.name] = sorted(items.values(), key=lambda i: i["name"])


def content(*tunnels, routes=()):
    return {"role": "edge", "fec": {}, "sla_profiles": {},
            "resources": {"wireguard": [dict(t) for t in tunnels], "srv6_route": [dict(r) for r in routes]}}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app):
    import uvicorn  # pylint: disable=import-outside-toplevel

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture()
def controller(tmp_path):
    repo = BundleRepo(str(tmp_path / "bundles"))
    tokens = TokenStore(str(tmp_path / "tokens.json"))
    node_token, admin_token = tokens.issue("edge-ber"), tokens.issue("controller", admin=True)
    with serve(create_app(None, tokens, bundles=repo)) as url:
        yield {"repo": repo, "tokens": tokens, "url": url, "token": node_token, "admin": admin_token, "dir": tmp_path}


def fleet(url, admin):
    res = httpx.get(f"{url}/v1/nodes/status", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert res.status_code == 200, res.text
    return res.json()["nodes"]


def make_agent(url, token, tmp_path, node=None):
    fake = node or FakeNode()
    agent = Agent(url, "edge-ber", token, state_dir=str(tmp_path / "state"),
                  resource_factory=lambda name: FakeResource(name, fake), timeout=10)
    return agent, fake


WG1 = {"name": "wg-core-fra", "mtu": 1420}
WG2 = {"name": "wg-core-lon", "mtu": 1420}


def test_the_agent_applies_new_bundles_skips_unchanged_ones_and_refuses_late_ones(controller, caplog):
    caplog.set_level(logging.DEBUG)
    url, repo, admin = controller["url"], controller["repo"], controller["admin"]
    agent, node = make_agent(url, controller["token"], controller["dir"])

    assert agent.poll_once()["action"] == "no-bundle"
    assert node.items == {}

    b1 = make_bundle("edge-ber", content(WG1), 1)
    publish(repo, b1)
    first = agent.poll_once()
    assert first["action"] == "applied" and first["status"] == 200 and first["changed"] and first["reported"]
    assert node.items == {"wireguard": [WG1]}
    assert json.loads((controller["dir"] / "state" / "bundle.json").read_text())["epoch"] == 1
    assert json.loads((controller["dir"] / "state" / "bundle-current.json").read_text()) == b1
    status = fleet(url, admin)["edge-ber"]
    assert status["status"]["epoch"] == 1 and status["status"]["ok"] and status["current"]

    reads = node.gathers
    second = agent.poll_once()
    assert second["action"] == "unchanged" and second["status"] == 304
    assert node.gathers == reads  # a 304 touches nothing on the node

    b2 = make_bundle("edge-ber", content(WG1, WG2, routes=[{"name": "fc00:2::/48"}]), 2)
    publish(repo, b2)
    third = agent.poll_once()
    assert third["action"] == "applied" and third["epoch"] == 2
    assert node.items == {"wireguard": [WG1, WG2], "srv6_route": [{"name": "fc00:2::/48"}]}
    assert fleet(url, admin)["edge-ber"]["status"]["epoch"] == 2

    # epoch 3 fails on its second resource: the node goes back to epoch 2 and says so
    publish(repo, make_bundle("edge-ber", content(WG1, routes=[{"name": "fc00:3::/48", "fail": True}]), 3))
    fourth = agent.poll_once()
    assert fourth["action"] == "failed" and "rolled back" in fourth["error"] and "device said no" in fourth["error"]
    assert node.items == {"wireguard": [WG1, WG2], "srv6_route": [{"name": "fc00:2::/48"}]}
    assert fourth["running"] == {"epoch": 2, "hash": b2["hash"]}
    status = fleet(url, admin)["edge-ber"]
    assert status["status"] == {**status["status"], "epoch": 2, "ok": False} and not status["current"]
    assert "device said no" in status["status"]["error"]

    # a good epoch 4 moves it on
    b4 = make_bundle("edge-ber", content(WG2), 4)
    publish(repo, b4)
    assert agent.poll_once()["action"] == "applied" and node.items == {"wireguard": [WG2], "srv6_route": []}
    assert fleet(url, admin)["edge-ber"]["current"] is True

    assert controller["token"] not in caplog.text and admin not in caplog.text
    assert controller["token"] not in repr(agent) and controller["token"] not in json.dumps(fourth, default=str)


def test_a_standby_controller_that_is_behind_cannot_roll_the_node_back(controller, tmp_path):
    agent, node = make_agent(controller["url"], controller["token"], controller["dir"])
    publish(controller["repo"], make_bundle("edge-ber", content(WG1, WG2), 5))
    assert agent.poll_once()["action"] == "applied"
    # the standby's bundle repository is behind (restored from an old backup): epoch 3
    standby_repo = BundleRepo(str(tmp_path / "standby"))
    publish(standby_repo, make_bundle("edge-ber", content(WG1), 3))
    with serve(create_app(None, controller["tokens"], bundles=standby_repo)) as standby:
        late, _node = make_agent(standby, controller["token"], controller["dir"], node=node)
        refused = late.poll_once()
        assert refused["action"] == "refused" and refused["epoch"] == 3 and refused["reported"]
        assert "epoch 5" in refused["error"]
        assert node.items == {"wireguard": [WG1, WG2]}
        status = fleet(standby, controller["admin"])["edge-ber"]["status"]
        assert status["ok"] is False and status["epoch"] == 5 and "refused" in status["error"]
    assert json.loads((controller["dir"] / "state" / "bundle.json").read_text())["epoch"] == 5


def test_network_errors_are_retried_and_the_lost_report_sent_again(controller, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    agent, node = make_agent(dead, controller["token"], controller["dir"])
    down = agent.poll_once()
    assert down["action"] == "error" and "cannot reach" in down["error"] and node.items == {}
    # the controller answers the bundle, but the status report is lost on the way
    publish(controller["repo"], make_bundle("edge-ber", content(WG1), 1))
    agent.api = controller["url"]
    real_send = agent._send  # pylint: disable=protected-access

    def lossy(payload):
        agent.api = dead
        try:
            return real_send(payload)
        finally:
            agent.api = controller["url"]

    agent._send = lossy  # pylint: disable=protected-access
    applied = agent.poll_once()
    assert applied["action"] == "applied" and applied["reported"] is False
    assert fleet(controller["url"], controller["admin"]).get("edge-ber", {}).get("status") is None
    agent._send = real_send  # pylint: disable=protected-access
    resent = agent.poll_once()
    assert resent["action"] == "unchanged" and resent["reported"] is True
    assert fleet(controller["url"], controller["admin"])["edge-ber"]["status"]["epoch"] == 1


def test_a_bundle_for_another_node_or_with_a_bad_hash_is_not_applied(controller, tmp_path):
    agent, node = make_agent(controller["url"], controller["token"], controller["dir"])
    other = make_bundle("edge-bos", content(WG1), 1)
    # the controller's repository is corrupted: edge-ber's directory holds edge-bos's bundle
    os.makedirs(os.path.join(controller["repo"].root, "edge-ber"))
    with open(os.path.join(controller["repo"].root, "edge-ber", "1.json"), "w", encoding="utf-8") as fh:
        json.dump(other, fh)
    res = agent.poll_once()
    assert res["action"] == "invalid" and "edge-bos" in res["error"] and node.items == {}


def test_the_loop_waits_with_jitter_between_polls():
    calls, waits = [], []

    class Counting:
        def poll_once(self):
            calls.append(1)
            return {"action": "unchanged"}

    run_loop(Counting(), interval=60, sleep=waits.append, polls=40)
    assert len(calls) == 40 and len(waits) == 39
    assert all(54 <= w <= 66 for w in waits) and len({round(w, 3) for w in waits}) > 1
    assert run_loop(Counting(), interval=60, once=True, sleep=waits.append) == {"action": "unchanged"}
    assert len(waits) == 39


def test_cli_once_exit_codes_and_token_file(controller, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text(controller["token"] + "\n")
    token_file.chmod(0o600)
    assert read_token(str(token_file)) == controller["token"]
    args = ["agent", "--api", controller["url"], "--node", "edge-ber", "--token-file", str(token_file), "--once",
            "--state-dir", str(tmp_path / "state")]
    assert npms_main(args) == 0  # no bundle published yet: nothing to do, nothing touched
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["action"] == "no-bundle" and controller["token"] not in json.dumps(out)
    token_file.write_text("not-a-token\n")
    assert npms_main(args) == 1
    assert "HTTP 401" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
    (tmp_path / "empty").write_text("")
    assert npms_main(args[:5] + ["--token-file", str(tmp_path / "empty"), "--once"]) == 2
    assert npms_main(["agent", "--api", "ftp://x", "--node", "n", "--token-file", str(token_file), "--once"]) == 2
