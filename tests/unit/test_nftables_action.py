# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The galactic.npms.nftables action plugin with the module calls faked: it confirms the
rollback cookie through a reset connection, retries while the node is unreachable, and
fails saying the node restores its tables when the confirmation cannot arrive.  A real
run through ansible-playbook is in tests/integration/test_nftables.py."""

from __future__ import annotations

import importlib.util
import os
import time
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COOKIE = "/tmp/npms-nftables.AbCd1234/cookie"


def load_plugin():
    # only ansible imports: loadable from its file, without the collection loader
    spec = importlib.util.spec_from_file_location("npms_action_nftables", os.path.join(ROOT, "plugins", "action", "nftables.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLUGIN = load_plugin()


def action(args, answers, check_mode=False):
    """The plugin with ``_execute_module`` answering from ``answers`` (a list: dicts are
    returned, exceptions raised); ``calls`` records (module_args, connection resets so far)."""
    task = mock.MagicMock(args=args, check_mode=check_mode, async_val=0, action="galactic.npms.nftables")
    connection = mock.MagicMock()
    connection._shell.tmpdir = "/tmp/remote"  # pylint: disable=protected-access
    plugin = PLUGIN.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock())
    plugin.RETRY_INTERVAL = 0.05
    calls = []
    queue = list(answers)

    def execute(module_name=None, module_args=None, task_vars=None):
        assert module_name == "galactic.npms.nftables"
        calls.append((dict(module_args), connection.reset.call_count))
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    plugin._execute_module = execute  # pylint: disable=protected-access
    return plugin, calls


ARGS = {"config": [{"tenant": "acme", "interfaces": ["x"]}], "rollback_timeout": 2}
CHANGED = {"changed": True, "rollback_cookie": COOKIE, "commands": ["..."]}


def test_confirms_through_a_reset_connection():
    plugin, calls = action(ARGS, [CHANGED, {"changed": True, "confirmed": COOKIE}])
    result = plugin.run(task_vars={})
    assert result["changed"] and result["rollback_confirmed"] is True and not result.get("failed")
    assert calls == [(ARGS, 0), ({"confirm": COOKIE}, 1)]


def test_retries_while_unreachable_then_confirms():
    down = AnsibleConnectionFailure("ssh: connect to host edge port 22: Connection timed out")
    plugin, calls = action(ARGS, [CHANGED, down, down, {"changed": True, "confirmed": COOKIE}])
    result = plugin.run(task_vars={})
    assert result["rollback_confirmed"] is True and not result.get("failed")
    assert [c[0] for c in calls[1:]] == [{"confirm": COOKIE}] * 3


def test_unreachable_until_the_deadline_fails_saying_the_node_restores():
    down = AnsibleConnectionFailure("ssh: connect to host edge port 22: Connection timed out")
    plugin, calls = action(ARGS, [CHANGED, down])
    started = time.monotonic()
    result = plugin.run(task_vars={})
    assert 1.5 < time.monotonic() - started < 10
    assert result["failed"] is True and result["rollback_confirmed"] is False
    assert "could not be confirmed within rollback_timeout=2 s" in result["msg"]
    assert "Connection timed out" in result["msg"]
    assert "the node restores its previous nftables tables by itself" in result["msg"] and COOKIE in result["msg"]
    assert len(calls) > 3


def test_a_rollback_that_already_ran_fails_the_task_at_once():
    gone = {"failed": True, "msg": f"nftables: cannot confirm {COOKIE}: it is gone, so the rollback already restored the previous tables"}
    plugin, calls = action(ARGS, [CHANGED, gone])
    result = plugin.run(task_vars={})
    assert result["failed"] and "rollback already restored" in result["msg"] and len(calls) == 2


@pytest.mark.parametrize("answer,check_mode", [
    ({"changed": False, "commands": []}, False),                     # nothing changed: nothing armed
    (CHANGED, True),                                                 # check mode: never confirmed
    (dict(CHANGED, failed=True, msg="bad", rolled_back=True), False),  # failed: never confirmed
])
def test_no_confirmation_without_an_armed_rollback(answer, check_mode):
    plugin, calls = action(ARGS, [answer], check_mode=check_mode)
    result = plugin.run(task_vars={})
    assert len(calls) == 1 and "rollback_confirmed" not in result


def test_unknown_options_are_refused():
    plugin, calls = action({"config": [], "colour": "red"}, [CHANGED])
    with pytest.raises(AnsibleActionFail, match="colour"):
        plugin.run(task_vars={})
    assert calls == []
