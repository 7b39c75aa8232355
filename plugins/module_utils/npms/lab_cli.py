# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``npms lab``: the namespace lab's front end lives in the ``npms_lab`` package (``lab/``).

It is imported when the ``npms`` parser is built, not when this module is: the core
library (and ansible-test's import test) must not depend on the lab.  Without
``npms_lab`` the command still exists and says what is missing.
"""

from __future__ import annotations

import argparse
from typing import Callable

from .cli import EXIT_FAILED, CliError


def setup_lab(parser: argparse.ArgumentParser) -> Callable:
    try:
        from npms_lab.cli import setup  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        reason = str(exc)
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

        def unavailable(args: argparse.Namespace) -> int:
            raise CliError("npms lab: the npms_lab package is not installed (it is lab/ in the galactic.npms "
                           f"repository: pip install -e <repository>): {reason}", EXIT_FAILED)

        return unavailable
    return setup(parser)
