# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nornir tasks of galactic.npms: plain functions ``(task, ...) -> Result``.

Each task reaches its node through the host's npms runner (see
:func:`npms_nornir.connections.get_runner`) and honours ``task.is_dry_run()``.
"""

from __future__ import annotations

import shlex
from typing import Any, Optional, Sequence, Union

from nornir.core.task import Result

from npms.runner import CommandError

from .connections import get_runner


def command(
    task: Any,
    argv: Union[str, Sequence[Any]],
    stdin: Optional[str] = None,
    check: bool = True,
    timeout: float = 60.0,
    read_only: bool = False,
    dry_run: Optional[bool] = None,
    connection: Optional[str] = None,
) -> Result:
    """Run one command on the host (inside its namespace for lab hosts).

    Args:
      argv: the command as a list (or a string, split like a shell would, without a shell).
      stdin: input for the command; never kept in the result (it may hold a key).
      check: a non-zero exit fails the result (the output is kept on it either way).
      timeout: seconds before the command is killed (the result then fails with rc 124).
      read_only: the command only reads state, so it also runs in a dry run and never
        reports ``changed``.
      dry_run: overrides Nornir's global dry run for this task.
      connection: connection plugin name (default: the host's ``npms_connection``, else netns).

    Returns:
      ``result`` is stdout; ``stdout``, ``stderr``, ``rc`` and ``argv`` are attributes too.
      A command that is not ``read_only`` reports ``changed``; in a dry run it is not run
      (``result`` is None, ``rc`` is None, ``dry_run`` is True).
    """
    args = tuple(shlex.split(argv) if isinstance(argv, str) else (str(a) for a in argv))
    if not args:
        raise ValueError("command: empty argv")
    runner = get_runner(task, connection)
    if task.is_dry_run(dry_run) and not read_only:
        return Result(host=task.host, result=None, changed=False, argv=args, rc=None, stdout="", stderr="", dry_run=True)
    try:
        res = runner.run(args, stdin=stdin, check=False, timeout=timeout)
    except CommandError as exc:  # could not start, or timed out
        return Result(host=task.host, result=exc.stdout, failed=True, exception=exc, argv=args, rc=exc.rc,
                      stdout=exc.stdout, stderr=exc.stderr, dry_run=False)
    failed = check and not res.ok
    exception = CommandError(runner.where, args, res.rc, res.stdout, res.stderr) if failed else None
    return Result(
        host=task.host,
        result=res.stdout,
        changed=not read_only and res.ok,
        failed=failed,
        exception=exception,
        argv=args,
        rc=res.rc,
        stdout=res.stdout,
        stderr=res.stderr,
        dry_run=False,
    )
