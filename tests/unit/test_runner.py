"""The runner seam: results, errors, and that stdin (secrets) never leaks into either."""

import subprocess

import pytest

from npms.runner import CommandError, LocalRunner, NetnsRunner, netns_argv


def test_local_runner_returns_output_and_rc():
    res = LocalRunner().run(["sh", "-c", "cat; echo err >&2; exit 0"], stdin="hello\n")
    assert res.ok and res.stdout == "hello\n" and res.stderr == "err\n"


def test_failure_names_where_command_and_last_stderr_line():
    with pytest.raises(CommandError) as exc:
        LocalRunner().run(["sh", "-c", "echo first >&2; echo 'RTNETLINK answers: File exists' >&2; exit 2"])
    assert exc.value.rc == 2
    assert str(exc.value).startswith("local: sh -c")
    assert str(exc.value).endswith("exit 2: RTNETLINK answers: File exists")


def test_check_false_returns_the_failure():
    res = LocalRunner().run(["false"], check=False)
    assert res.rc == 1 and not res.ok


def test_missing_command_and_timeout_are_command_errors():
    with pytest.raises(CommandError, match="command not found"):
        LocalRunner().run(["npms-no-such-command"])
    with pytest.raises(CommandError, match="timed out after 0.2 s"):
        LocalRunner().run(["sleep", "5"], timeout=0.2)


def test_stdin_secret_is_not_in_result_or_error():
    secret = "cGFzc3dvcmQtcHJpdmF0ZS1rZXktZG8tbm90LWxvZw=="
    res = LocalRunner().run(["sh", "-c", "wc -c >/dev/null"], stdin=secret)
    assert secret not in repr(res)
    with pytest.raises(CommandError) as exc:
        LocalRunner().run(["sh", "-c", "cat >/dev/null; exit 3"], stdin=secret)
    assert secret not in str(exc.value) and secret not in repr(exc.value.__dict__)


def test_netns_runner_wraps_with_ip_netns_exec():
    assert netns_argv("core-lon", ["ip", "-j", "link"]) == ("ip", "netns", "exec", "core-lon", "ip", "-j", "link")
    runner = NetnsRunner("npms-test-absent")
    assert runner.where == "npms-test-absent" and not runner.exists()
    with pytest.raises(CommandError) as exc:
        runner.run(["true"])
    assert str(exc.value).startswith("npms-test-absent: true: exit")


def test_netns_runner_runs_inside_the_namespace():
    ns = "npms-test-runner"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        out = NetnsRunner(ns).run(["ip", "-o", "link", "show"]).stdout
        # a fresh namespace has only its own loopback, none of the host's interfaces
        assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
