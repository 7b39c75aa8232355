# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests on a real namespace lab (root; `make integration`, run serially).

Every lab a test makes uses the prefix ``t3-<pid>-`` (or ``$NPMS_LAB_TEST_PREFIX``), so
it never collides with a demo lab (no prefix) or with another test run on the machine;
labs left by a test run that died are removed at the start of the next one.  Traffic
only flows between namespaces the tests made.

The terminal summary reports the lab's bring-up and teardown time and memory.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "lab"
PREFIX_ENV = "NPMS_LAB_TEST_PREFIX"
_STALE_RE = re.compile(r"^t3-(\d+)-$")

# Figures for the summary line, filled by the lab fixture.
METRICS: Dict[str, Any] = {}


def test_prefix() -> str:
    return os.environ.get(PREFIX_ENV) or f"t3-{os.getpid()}-"


test_prefix.__test__ = False  # a helper, not a test


def _reap_stale_labs() -> None:
    from npms_lab import RUN_DIR, Lab  # pylint: disable=import-outside-toplevel

    if not os.path.isdir(RUN_DIR):
        return
    for name in sorted(os.listdir(RUN_DIR)):
        m = _STALE_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            Lab(str(INVENTORY), name).down()


@pytest.fixture(scope="session")
def needs_root() -> None:
    """These tests make network namespaces: fail, naming why, when not root."""
    if os.geteuid() != 0:
        pytest.fail("creates network namespaces: run as root (make test does, in CI)", pytrace=False)


@pytest.fixture(scope="session")
def lab_host() -> None:
    """Fail (saying why) where a lab cannot run: not root, or binaries missing.

    `make test` installs everything the lab needs and CI runs as root, so a lab that
    cannot run is a broken set-up, never a reason to pass without checking."""
    try:
        from npms_lab import Lab, LabError  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        pytest.fail(f"npms_lab is not installed: {exc}", pytrace=False)
    try:
        Lab.check_host()
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    _reap_stale_labs()


@pytest.fixture(scope="module")
def lab(lab_host) -> Iterator[Any]:
    """The lab of inventory/lab, up for the whole module and down at its end."""
    from npms_lab import Lab  # pylint: disable=import-outside-toplevel

    the_lab = Lab(str(INVENTORY), test_prefix())
    result = the_lab.up()
    METRICS.setdefault("up_s", result.seconds)
    st = the_lab.status()
    METRICS.setdefault("processes", st.processes)
    METRICS.setdefault("rss_mib", st.rss_mib)
    METRICS.setdefault("namespaces", len(st.nodes))
    yield the_lab
    start = time.monotonic()
    removed = the_lab.down()
    if removed["namespaces"]:
        METRICS.setdefault("down_s", time.monotonic() - start)


@pytest.fixture(scope="session")
def lab_metrics() -> Dict[str, Any]:
    """Where a test records a figure for the summary line (e.g. ``down_s``)."""
    return METRICS


def pytest_terminal_summary(terminalreporter) -> None:
    if "up_s" not in METRICS:
        return
    down = METRICS.get("down_s")
    terminalreporter.write_line(
        "lab: %d namespaces up in %.1f s, down in %s; %d processes, %.0f MiB RSS"
        % (METRICS.get("namespaces", 0), METRICS["up_s"], "%.1f s" % down if down is not None else "-",
           METRICS.get("processes", 0), METRICS.get("rss_mib", 0.0)))
