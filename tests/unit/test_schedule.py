# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/schedule.yml for real, against a scratch root (npms_schedule_root): check
mode writes nothing, a run writes the cron file or the systemd units, a second run changes
nothing, switching methods leaves one schedule, state absent removes it; and the files
say flock, timeout and the interval."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from npms_testlib import ROOT, VENV_BIN

PLAYBOOK = os.path.join(ROOT, "playbooks", "schedule.yml")
CRON = "etc/cron.d/npms-loop"
UNITS = ("etc/systemd/system/npms-loop.service", "etc/systemd/system/npms-loop.timer")


@pytest.fixture()
def play(tmp_path):
    """ansible-playbook schedule.yml on localhost with root=<tmp>/root/; returns (rc, recap changed, output)."""
    inventory = tmp_path / "hosts"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env_path = os.environ.get("PATH", "")
    if shutil.which("crontab") is None:
        # ansible.builtin.cron insists on finding crontab even when it only writes a
        # cron.d file (which is all this playbook does); a host without cron has no crontab.
        stand_in = tmp_path / "bin"
        stand_in.mkdir()
        (stand_in / "crontab").write_text("#!/bin/sh\necho 'crontab: not used for cron.d files' >&2\nexit 1\n")
        (stand_in / "crontab").chmod(0o755)
        env_path = f"{stand_in}{os.pathsep}{env_path}"
    root = tmp_path / "root"

    def go(*extra, check=False):
        settings = dict(item.split("=", 1) for item in extra)
        cmd = ["ansible-playbook", "-i", str(inventory), PLAYBOOK, "-e", f"npms_schedule_root={root}/",
               "-e", json.dumps(settings)]
        if check:
            cmd.append("--check")
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{env_path}", "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300, check=False)
        out = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", out)
        assert recap, out
        return proc.returncode, int(recap.group(1)), out

    go.root = root
    go.inventory = str(inventory)
    return go


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def loop_command(inventory):
    return (f"{os.path.dirname(sys.executable)}/ansible-playbook -i {inventory} "
            f"{ROOT}/playbooks/control_loop.yml")


@pytest.mark.parametrize("method, written", [("cron", [CRON]), ("systemd", list(UNITS))])
def test_install_is_idempotent_and_removable(play, method, written):
    rc, changed, out = play(f"npms_schedule_method={method}", check=True)
    assert rc == 0 and changed > 0, out
    assert files(play.root) == []  # check mode wrote nothing
    rc, changed, out = play(f"npms_schedule_method={method}")
    assert rc == 0 and changed > 0, out
    assert files(play.root) == sorted(written)
    rc, changed, out = play(f"npms_schedule_method={method}")
    assert rc == 0 and changed == 0, out
    rc, changed, out = play(f"npms_schedule_method={method}", "npms_schedule_state=absent")
    assert rc == 0 and changed > 0, out
    assert files(play.root) == []
    rc, changed, out = play(f"npms_schedule_method={method}", "npms_schedule_state=absent")
    assert rc == 0 and changed == 0, out


def test_cron_entry_runs_the_loop_every_ten_minutes_under_flock_and_timeout(play):
    rc, _changed, out = play()  # cron is the default method
    assert rc == 0, out
    text = (play.root / CRON).read_text()
    assert text.splitlines() == [
        "#Ansible: galactic.npms control loop",
        f"*/10 * * * * root cd {ROOT} && flock -n /run/npms-loop.lock timeout --kill-after=30 540 "
        f"{loop_command(play.inventory)} 2>&1 | logger -t npms-loop",
    ]
    assert oct((play.root / CRON).stat().st_mode & 0o777) == "0o644"


def test_systemd_timer_and_service(play):
    rc, _changed, out = play("npms_schedule_method=systemd", "npms_schedule_interval_min=15",
                             "npms_schedule_timeout_s=840", "npms_schedule_command=/opt/npms/bin/npms loop --once")
    assert rc == 0, out
    service = (play.root / UNITS[0]).read_text()
    timer = (play.root / UNITS[1]).read_text()
    assert "\nExecStart=/usr/bin/flock -n /run/npms-loop.lock timeout --kill-after=30 840 /opt/npms/bin/npms loop --once\n" \
        in service
    assert "\nType=oneshot\n" in service and f"\nWorkingDirectory={ROOT}\n" in service
    assert "\nOnCalendar=*:0/15\n" in timer and "\nUnit=npms-loop.service\n" in timer
    assert "WantedBy=timers.target" in timer
    # systemctl is never called against a scratch root
    assert "Enable and start the timer" in out and "systemctl" not in out
    # the units as systemd reads them (ExecStart, OnCalendar) (systemd-analyze: Debian systemd, which make setup installs)
    proc = subprocess.run(["systemd-analyze", "verify", "./npms-loop.service", "./npms-loop.timer"],
                          cwd=play.root / "etc/systemd/system", capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_switching_method_leaves_one_schedule(play):
    assert play("npms_schedule_method=systemd")[0] == 0
    assert files(play.root) == sorted(UNITS)
    rc, changed, out = play("npms_schedule_method=cron", "npms_schedule_interval_min=60", "npms_schedule_timeout_s=3000")
    assert rc == 0 and changed > 0, out
    assert files(play.root) == [CRON]
    assert (play.root / CRON).read_text().splitlines()[1].startswith("0 * * * * root ")
    assert "timeout --kill-after=30 3000 " in (play.root / CRON).read_text()


@pytest.mark.parametrize("extra, words", [
    (["npms_schedule_timeout_s=590"], "npms_schedule_timeout_s + 30 s at most the interval"),
    (["npms_schedule_interval_min=7"], "a divisor of 60 (got 7)"),
    (["npms_schedule_method=at"], "must be cron or systemd"),
])
def test_bad_settings_fail_before_anything_is_written(play, extra, words):
    rc, _changed, out = play(*extra)
    assert rc != 0 and words in " ".join(out.split()), out
    assert files(play.root) == []
