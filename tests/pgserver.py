# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throw-away PostgreSQL server for the store tests and the ingestion benchmark.

    with PgServer() as pg:          # initdb + pg_ctl start in a temp dir, database 'npms'
        Store(pg.url)
    # stopped and removed

Uses Debian's postgresql package (``/usr/lib/postgresql/<ver>/bin``, installed by
``make setup``).  Listens on a Unix socket in its own directory only (no TCP), on a free
port number, so it never collides with a system PostgreSQL.  As root the cluster is
owned by the ``postgres`` user (initdb refuses to run as root).  Any failure raises
``PgServerError`` with what is missing and how to get it: callers fail, never skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import List, Optional

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PgServerError(RuntimeError):
    pass


def find_pg_bin() -> str:
    """The newest Debian PostgreSQL bin directory holding initdb and pg_ctl."""
    env = os.environ.get("NPMS_PG_BIN")

    def version_key(path):
        return [int(x) if x.isdigit() else x for x in path.split("/")]

    cands = [env] if env else sorted(glob.glob(PG_BIN_GLOB), key=version_key)[::-1]
    for d in cands:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "createdb")):
            return d
    raise PgServerError("PostgreSQL server binaries not found (looked for initdb, pg_ctl and createdb in %s): "
                        "install Debian's 'postgresql' package (make setup does), or set NPMS_PG_BIN"
                        % (env or PG_BIN_GLOB))


def _free_port() -> int:
    # The server listens on a Unix socket only; the port just names the socket file.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """initdb + pg_ctl start on enter; pg_ctl stop + rm -r on exit."""

    def __init__(self, dbname: str = "npms", tuned_for_bench: bool = False):
        self.dbname = dbname
        self.tuned = tuned_for_bench
        self.bin = find_pg_bin()
        self.dir: Optional[str] = None
        self.port = _free_port()
        self.user: Optional[str] = None
        self.started = False

    def _run(self, args: List[str], timeout: float = 120) -> None:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgServerError("%s: %s" % (" ".join(cmd), exc)) from exc
        if proc.returncode != 0:
            raise PgServerError("%s failed (exit %d):\n%s%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))

    def start(self) -> "PgServer":
        self.dir = tempfile.mkdtemp(prefix="npms-pg-")
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PgServerError("running as root needs the 'postgres' user (Debian's postgresql "
                                    "package creates it)") from exc
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            self.user = "postgres"
        data = os.path.join(self.dir, "data")
        self._run([os.path.join(self.bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8"])
        opts = "-k %s -p %d -c listen_addresses=''" % (self.dir, self.port)
        if self.tuned:
            # a benchmark on a throw-away cluster: durable commits still (fsync on), but
            # no full-page writes churn from frequent checkpoints
            opts += " -c max_wal_size=4GB -c shared_buffers=256MB"
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", data, "-o", opts, "-l",
                   os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start"])
        self.started = True
        self._run([os.path.join(self.bin, "createdb"), "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                   self.dbname])
        return self

    @property
    def url(self) -> str:
        return "postgresql+psycopg://postgres@/%s?host=%s&port=%d" % (self.dbname, self.dir, self.port)

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            if self.started:
                self._run([os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"), "-m", "fast",
                           "-w", "stop"])
        finally:
            self.started = False
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "PgServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
