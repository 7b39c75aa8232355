# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of galactic.npms.nftables: run the module, then confirm its rollback cookie.

With ``rollback_timeout`` the module leaves a rollback armed on the node.  Right after a
change (not in check mode) this plugin resets the connection and runs the module again
with ``confirm: <cookie>`` through a new one: if the change cut the controller off, that
confirmation cannot arrive, the node restores its previous tables by itself when the
timeout runs out, and the task fails saying so.  The idea is community.general's
iptables_state.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "galactic.npms.nftables"


class ActionModule(ActionBase):
    """Run galactic.npms.nftables; confirm its rollback cookie through a fresh connection."""

    _VALID_ARGS = frozenset(("config", "state", "running_config", "rollback_timeout", "confirm"))
    #: seconds between confirmation attempts
    RETRY_INTERVAL = 1.0

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        started = time.monotonic()
        result.update(self._execute_module(module_name=MODULE, module_args=dict(self._task.args), task_vars=task_vars))
        cookie = result.get("rollback_cookie")
        if not cookie or result.get("failed") or self._task.check_mode:
            return result
        timeout = int(self._task.args.get("rollback_timeout") or 0)
        # The node started counting before the module returned: measured from before it ran.
        deadline = started + timeout
        error = self._confirm(cookie, deadline, task_vars)
        result["rollback_confirmed"] = error is None
        if error is not None:
            result["failed"] = True
            result["msg"] = (
                f"nftables: the change was applied but could not be confirmed within rollback_timeout={timeout} s "
                f"({error}); the node restores its previous nftables tables by itself when the timeout runs out "
                f"(rollback cookie {cookie})"
            )
        return result

    def _confirm(self, cookie, deadline, task_vars):
        """None once confirmed, else why not."""
        try:
            # a connection kept open (ssh ControlPersist) could survive rules that block new ones
            self._connection.reset()
        except AttributeError:
            display.warning("galactic.npms.nftables: the connection cannot be reset; confirming over the same one")
        error = "no attempt was made before the deadline"
        while time.monotonic() < deadline:
            try:
                res = self._execute_module(module_name=MODULE, module_args={"confirm": cookie}, task_vars=task_vars)
            except AnsibleConnectionFailure as exc:
                error = f"the node cannot be reached: {exc}"
                time.sleep(self.RETRY_INTERVAL)
                continue
            if res.get("unreachable"):
                error = f"the node cannot be reached: {res.get('msg', '')}".rstrip(": ")
                time.sleep(self.RETRY_INTERVAL)
                continue
            if res.get("failed"):
                return res.get("msg") or "the confirmation failed"
            display.vv(f"galactic.npms.nftables: confirmed {cookie}")
            return None
        return error
