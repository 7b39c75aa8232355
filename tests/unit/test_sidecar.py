# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The galactic.npms.sidecar role for real, against a scratch root (sidecar_root): check
mode writes nothing, a run writes npms-agent.service and the token file (0600, exact
content), a second run changes nothing, a new interval rewrites the unit, state absent
removes both; the token never shows in ansible-playbook's output (-v --diff), and
systemd-analyze accepts the unit."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess

import pytest

from npms_testlib import ROOT, VENV_BIN
from test_schedule import files

UNIT = "etc/systemd/system/npms-agent.service"
TOKEN = "etc/npms/agent.token"
API = "https://controller.example.net:8467"

PLAYBOOK = """\
- name: Install the npms agent
  hosts: localhost
  gather_facts: false
  roles:
    - role: galactic.npms.sidecar
"""


@pytest.fixture()
def play(tmp_path):
    """ansible-playbook -v --diff of the role on localhost with sidecar_root=<tmp>/root/ and a
    fresh random token; returns (rc, recap changed, output).  Every output is checked for
    the token (the one in use and any given to a call)."""
    (tmp_path / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={VENV_BIN}/python\n")
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    root = tmp_path / "root"
    token = secrets.token_urlsafe(32)

    def go(check=False, **settings):
        settings = {"sidecar_root": f"{root}/", "sidecar_api_url": API, "sidecar_token": token, **settings}
        cmd = [f"{VENV_BIN}/ansible-playbook", "-v", "--diff", "-i", str(tmp_path / "hosts"), str(tmp_path / "site.yml"),
               "-e", json.dumps(settings)]
        if check:
            cmd.append("--check")
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300, check=False)
        out = proc.stdout + proc.stderr
        for secret in {token, *str(settings["sidecar_token"]).split()}:
            assert secret not in out, "the token shows in the output"
        recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", out)
        assert recap, out
        return proc.returncode, int(recap.group(1)), out

    go.root = root
    go.token = token
    return go


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def exec_start(unit_text):
    lines = [line for line in unit_text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, unit_text
    return lines[0]


def test_install_is_idempotent_and_removable(play):
    rc, changed, out = play(check=True)
    assert rc == 0 and changed > 0, out
    assert files(play.root) == []  # check mode wrote nothing
    rc, changed, out = play()
    assert rc == 0 and changed > 0, out
    assert files(play.root) == sorted([TOKEN, UNIT])
    assert (play.root / TOKEN).read_text() == play.token + "\n"
    assert mode(play.root / TOKEN) == 0o600
    assert mode(play.root / UNIT) == 0o644
    assert mode(play.root / "var/lib/npms") == 0o700 and mode(play.root / "etc/npms/wireguard") == 0o700
    # systemctl is never called against a scratch root
    assert "Enable and start npms-agent" in out and "systemctl" not in out
    rc, changed, out = play()
    assert rc == 0 and changed == 0, out
    rc, changed, out = play(check=True)
    assert rc == 0 and changed == 0, out
    rc, changed, out = play(sidecar_state="absent")
    assert rc == 0 and changed > 0, out
    assert files(play.root) == []
    assert (play.root / "var/lib/npms").is_dir()  # the bundle the node runs is kept
    rc, changed, out = play(sidecar_state="absent")
    assert rc == 0 and changed == 0, out


def test_unit_runs_the_agent_and_follows_the_settings(play):
    npms = f"{VENV_BIN}/npms"
    rc, _changed, out = play(sidecar_npms_bin=npms)
    assert rc == 0, out
    unit = (play.root / UNIT).read_text()
    assert exec_start(unit) == (f"ExecStart={npms} agent --api {API} --node localhost "
                                "--token-file /etc/npms/agent.token --interval 60 --state-dir /var/lib/npms")
    for line in ("Type=simple", "Restart=always", "RestartSec=10", "KillMode=process",
                 "CapabilityBoundingSet=CAP_NET_ADMIN CAP_DAC_OVERRIDE", "NoNewPrivileges=yes",
                 "ProtectSystem=full", "ReadWritePaths=-/etc/npms/wireguard", "DeviceAllow=/dev/net/tun rw",
                 "WantedBy=multi-user.target"):
        assert f"\n{line}\n" in unit, line
    assert "ProtectKernelTunables" not in unit.replace("# Deliberately not set: ProtectKernelTunables", "")

    rc, changed, out = play(sidecar_npms_bin=npms, sidecar_interval_s=30)
    assert rc == 0 and changed == 1, out  # the unit only; the token file is untouched
    assert " --interval 30 " in exec_start((play.root / UNIT).read_text())

    # the node, the paths and a URL with "%" (a systemd specifier unless doubled)
    rc, changed, out = play(sidecar_npms_bin=npms, sidecar_node="edge-ber", sidecar_api_url=f"{API}/npms%2Fv1",
                            sidecar_token_file="/etc/npms/edge.token", sidecar_state_dir="/srv/npms",
                            sidecar_read_write_paths=["/etc/npms/wireguard", "/etc/npms/extra"])
    assert rc == 0 and changed > 0, out
    unit = (play.root / UNIT).read_text()
    assert exec_start(unit) == (f"ExecStart={npms} agent --api {API}/npms%%2Fv1 --node edge-ber "
                                "--token-file /etc/npms/edge.token --interval 60 --state-dir /srv/npms")
    assert "\nReadWritePaths=-/etc/npms/wireguard\nReadWritePaths=-/etc/npms/extra\n" in unit
    assert (play.root / "etc/npms/edge.token").read_text() == play.token + "\n"
    assert mode(play.root / "srv/npms") == 0o700

    # the unit as systemd reads it (ExecStart, specifiers, options) (systemd-analyze: Debian systemd, which make setup installs)
    proc = subprocess.run(["systemd-analyze", "verify", "./npms-agent.service"],
                          cwd=play.root / "etc/systemd/system", capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "npms-agent.service" not in proc.stderr, proc.stdout + proc.stderr


def test_a_new_token_rewrites_the_file_without_showing_either(play):
    assert play()[0] == 0
    new = secrets.token_urlsafe(32)
    rc, changed, out = play(sidecar_token=new)  # play() checks that neither token is in the output
    assert rc == 0 and changed == 1, out
    assert (play.root / TOKEN).read_text() == new + "\n"
    assert mode(play.root / TOKEN) == 0o600


@pytest.mark.parametrize("settings, words", [
    ({"sidecar_api_url": "controller:8467"}, "sidecar_api_url an http(s) URL (got controller:8467)"),
    ({"sidecar_interval_s": 0}, "sidecar_interval_s positive seconds (got 0)"),
    ({"sidecar_npms_bin": "npms"}, "absolute paths"),
    ({"sidecar_node": "edge ber"}, "without spaces"),
    ({"sidecar_state": "running"}, "value of sidecar_state must be one of: present, absent, got: running"),
    ({"sidecar_interval_s": "often"}, "argument 'sidecar_interval_s' is of type str"),
    ({"sidecar_token": ""}, "Check that sidecar_token is one non-empty line"),
    ({"sidecar_token": "first-line\nsecond-line"}, "Check that sidecar_token is one non-empty line"),
])
def test_bad_settings_fail_before_anything_is_written(play, settings, words):
    rc, _changed, out = play(**settings)
    assert rc != 0 and words in " ".join(out.split()), out
    assert files(play.root) == []
