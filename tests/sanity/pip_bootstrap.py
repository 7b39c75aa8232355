# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible-test sanity --venv`` work where only PyPI is reachable.

ansible-test bootstraps pip into each of its virtual environments with a ``get-pip.py``
it downloads from ci-files.testing.ansible.com and caches as
``~/.ansible/test/cache/get_pip_<version>.py``.  When that host cannot be reached, this
writes the cached file itself: a small stand-in that runs pip from the matching pip wheel
(downloaded from PyPI with the project's own pip), the way get-pip.py does.  A real cached
get-pip.py is left alone.  Run by tests/sanity/run.sh with the project's virtualenv Python.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import types

SHIM = '''\
"""Stand-in for get-pip.py, written by galactic.npms tests/sanity/pip_bootstrap.py."""
import sys

sys.path.insert(0, {wheel!r})
from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
'''


def pip_version() -> str:
    from ansible_test._internal.python_requirements import get_venv_packages  # pylint: disable=import-outside-toplevel

    return get_venv_packages(types.SimpleNamespace(version="%d.%d" % sys.version_info[:2]))["pip"]


def main() -> int:
    version = pip_version()
    cache = os.path.expanduser("~/.ansible/test/cache")
    script = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))
    if os.path.exists(script):
        return 0
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "--dest", cache, "pip==%s" % version], check=True)
        wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
    if not wheels:
        print("pip_bootstrap: no pip %s wheel in %s" % (version, cache), file=sys.stderr)
        return 1
    with open(script + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(SHIM.format(wheel=wheels[0]))
    os.replace(script + ".tmp", script)
    print("pip_bootstrap: wrote %s (pip %s from %s)" % (script, version, wheels[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
