# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Telemetry store: validated samples in, window aggregates out (SQLAlchemy Core).

SQLite (WAL) is the embedded default; PostgreSQL, or CockroachDB through its
PostgreSQL wire protocol, is a URL away (``postgresql+psycopg://user@host/db``).
SQLAlchemy Core rather than the ORM: ingestion is bulk inserts of plain tuples, and
an ORM object per sample would cost more than the rest of the pipeline together.

Ingestion (``Store.ingest``), per batch:
  1. rate limit: a token bucket per source, in samples per second; an empty bucket
     raises ``RateLimited`` before anything is read or written;
  2. ``telemetry.validate_samples``: bad samples are rejected with a reason and counted,
     the good ones kept (a batch is never all-or-nothing at this stage);
  3. one transaction: the (source, batch_id) row, the samples, the dirty-window marks and
     the counters commit together, so an acknowledged batch is a durable one and a crash
     leaves either the whole batch or none of it; the same (source, batch_id) again is
     reported as a duplicate and stored nothing (a re-sent batch is not counted twice).

Aggregates: chosen design, and why.  Each batch marks the (pair, window) groups it
touched as *dirty* (one small upsert per group, in the batch's transaction).  Reads
(``windows``, ``latest``) first call ``refresh``, which recomputes only the dirty groups
from their raw samples with ``telemetry.aggregate_columns`` (the one implementation of
the aggregation) and upserts them into ``aggregates``; after that reads are plain index
look-ups on ``aggregates`` and never scan raw samples.  Why not recompute per batch:
nodes push small batches often (every loop, or every few seconds), and recomputing a
window's percentiles on every batch costs O(samples in window) per batch, quadratic over
a window; marking is O(groups) per batch and each dirty group is recomputed once per
read cycle (the path engine reads every ten minutes).  Percentiles cannot be maintained
incrementally exactly, hence recomputation from samples rather than running sums.  A
dirty mark carries a sequence number bumped by every batch that touches the group;
refresh removes a mark only if its sequence is the one it read, so a batch that lands
while a refresh runs (another process, PostgreSQL read committed) keeps its group dirty.

Tenancy: a pair is (tenant, src, dst); core-to-core pairs are stored with tenant ''
(shared), edge pairs with their tenant, so two tenants' data for the same node names
never mix.  ``windows(None, ...)`` returns shared pairs only, ``windows('acme', ...)``
shared pairs plus acme's.

Durability: SQLite runs WAL with ``synchronous=NORMAL``: a committed batch survives a
killed process (tested), not necessarily a power cut (``synchronous='FULL'`` for that).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .measurements import Measurement
from .telemetry import KIND_CODE, aggregate_columns, validate_samples

try:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.dialects import postgresql as _pg
    from sqlalchemy.dialects import sqlite as _sqlite
except ImportError:  # pragma: no cover - exercised by ansible-test sanity only
    sa = None

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


class StoreError(Exception):
    """The store cannot do what was asked (bad arguments, mismatched store, database error)."""


class RateLimited(Exception):
    """The source sent more samples than its rate allows; retry after ``retry_after_s``."""

    def __init__(self, source: str, retry_after_s: float):
        self.source = source
        self.retry_after_s = retry_after_s
        super().__init__("source %r is over its sample rate; retry after %.3f s" % (source, retry_after_s))


SAMPLE_COLUMNS = ("pair_id", "window_start", "kind", "ts", "sent", "received", "rtt_ms", "rtt_min_ms",
                  "rtt_max_ms", "jitter_ms", "reordered", "connect_ms", "ttfb_ms", "bandwidth_mbps",
                  "duration_s")
_NAME = 200  # longest node / tenant / source name
_BATCH_ID = 200


def _tables(md: "sa.MetaData") -> Dict[str, "sa.Table"]:
    C, T = sa.Column, sa.Table
    f, i, s = sa.Float, sa.Integer, sa.String
    t = {}
    t["meta"] = T("npms_meta", md, C("key", s(64), primary_key=True), C("value", s(256), nullable=False))
    t["pairs"] = T("npms_pairs", md,
                   C("id", i, primary_key=True, autoincrement=True),
                   C("tenant", s(_NAME), nullable=False),  # '' = shared (core-to-core)
                   C("src", s(_NAME), nullable=False), C("dst", s(_NAME), nullable=False),
                   sa.UniqueConstraint("tenant", "src", "dst", name="npms_pairs_key"))
    t["batches"] = T("npms_batches", md,
                     C("source", s(_NAME), primary_key=True), C("batch_id", s(_BATCH_ID), primary_key=True),
                     C("received_at", f, nullable=False), C("accepted", i, nullable=False),
                     C("rejected", i, nullable=False))
    t["samples"] = T("npms_samples", md,
                     C("pair_id", i, sa.ForeignKey("npms_pairs.id"), nullable=False),
                     C("window_start", f, nullable=False), C("kind", s(8), nullable=False),
                     C("ts", f, nullable=False), C("sent", i, nullable=False), C("received", i, nullable=False),
                     C("rtt_ms", f), C("rtt_min_ms", f), C("rtt_max_ms", f), C("jitter_ms", f),
                     C("reordered", i), C("connect_ms", f), C("ttfb_ms", f), C("bandwidth_mbps", f),
                     C("duration_s", f),
                     sa.Index("npms_samples_window", "pair_id", "window_start"))
    t["aggregates"] = T("npms_aggregates", md,
                        C("pair_id", i, sa.ForeignKey("npms_pairs.id"), primary_key=True),
                        C("window_start", f, primary_key=True), C("window_s", f, nullable=False),
                        C("latency_p50_ms", f, nullable=False), C("latency_p95_ms", f, nullable=False),
                        C("latency_p99_ms", f, nullable=False), C("jitter_ms", f, nullable=False),
                        C("loss_pct", f, nullable=False), C("bandwidth_mbps", f),
                        C("samples", i, nullable=False))
    t["dirty"] = T("npms_dirty", md,
                   C("pair_id", i, sa.ForeignKey("npms_pairs.id"), primary_key=True),
                   C("window_start", f, primary_key=True), C("seq", i, nullable=False))
    t["counters"] = T("npms_counters", md, C("name", s(96), primary_key=True),
                      C("value", sa.BigInteger, nullable=False))
    return t


class Store:
    """Samples, window aggregates and retention in one SQL database (see the module doc)."""

    def __init__(self, url: str = "sqlite:///npms-store.db", *, window_s: int = 600,
                 retention_s: int = 7 * 86400, rate_per_s: float = 2000.0, burst: int = 20000,
                 inventory: Any = None, max_age_s: float = 86400, max_future_s: float = 60,
                 sqlite_synchronous: str = "NORMAL"):
        if sa is None:
            raise ImportError("npms.store needs SQLAlchemy (pip install 'sqlalchemy>=2.0'; "
                              "PostgreSQL also 'psycopg[binary]>=3.1')")
        if np is None:
            raise ImportError("npms.store needs numpy (pip install 'numpy>=1.26')")
        if not window_s or window_s <= 0 or retention_s <= 0 or rate_per_s <= 0 or burst <= 0:
            raise StoreError("window_s, retention_s, rate_per_s and burst must be positive")
        if sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError("sqlite_synchronous: OFF, NORMAL, FULL or EXTRA")
        self.url = url
        self.window_s = int(window_s) if float(window_s).is_integer() else float(window_s)
        self.retention_s = float(retention_s)
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.inventory = inventory
        self.max_age_s = float(max_age_s)
        self.max_future_s = float(max_future_s)
        self._buckets: Dict[str, Tuple[float, float]] = {}
        self._rate_limited = 0
        self._lock = threading.Lock()
        self._pair_cache: Dict[Tuple[str, str, str], int] = {}
        try:
            self.engine = self._make_engine(url, sqlite_synchronous.upper())
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise StoreError("store URL %r: %s" % (_safe_url(url), exc)) from exc
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
            raise StoreError("SQLite %s is too old (needs 3.35+ for RETURNING)" % sqlite3.sqlite_version)
        if self.dialect == "sqlite":
            self._insert = _sqlite.insert
        elif self.dialect in ("postgresql", "cockroachdb"):
            self._insert = _pg.insert
        else:
            raise StoreError("store URL %r: unsupported database %r (sqlite, postgresql, cockroachdb)"
                             % (_safe_url(url), self.dialect))
        md = sa.MetaData()
        self.t = _tables(md)
        ph = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_samples_sql = "INSERT INTO npms_samples (%s) VALUES (%s)" % (
            ", ".join(SAMPLE_COLUMNS), ", ".join([ph] * len(SAMPLE_COLUMNS)))
        try:
            md.create_all(self.engine)
            self._check_meta()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError("store %s: cannot create or open the tables: %s" % (_safe_url(url), exc)) from exc

    # -- set-up ----------------------------------------------------------------------------
    @staticmethod
    def _make_engine(url: str, synchronous: str) -> "sa.Engine":
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
                # We issue BEGIN ourselves (below): pysqlite's implicit BEGIN is deferred,
                # and a deferred read that later writes fails with SQLITE_BUSY under
                # concurrent writers instead of waiting for the lock.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=%s" % synchronous)
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn):  # pragma: no cover - trivial
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("npms_write")
                                     else "BEGIN")
            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def _write(self):
        """A connection whose transaction takes the write lock up front (SQLite)."""
        return self.engine.connect().execution_options(npms_write=True)

    def _check_meta(self) -> None:
        meta = self.t["meta"]
        with self._write() as conn, conn.begin():
            conn.execute(self._insert(meta).values(key="window_s", value=repr(float(self.window_s)))
                         .on_conflict_do_nothing(index_elements=["key"]))
            have = conn.execute(sa.select(meta.c.value).where(meta.c.key == "window_s")).scalar_one()
        if float(have) != float(self.window_s):
            raise StoreError("store %s was created with window_s=%s; open it with that window (or use a "
                             "new store) rather than %s" % (_safe_url(self.url), float(have), self.window_s))

    # -- ingestion -------------------------------------------------------------------------
    def _take_tokens(self, source: str, n: int, now: float) -> None:
        """Token bucket per source; a batch passes while the bucket is not empty.

        The batch's samples are then taken even if that drives the bucket negative: a
        batch larger than ``burst`` is thus still accepted (once), and the source waits
        until its debt is repaid.
        """
        with self._lock:
            tokens, last = self._buckets.get(source, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate_per_s)
            if tokens < 1.0 and n > 0:
                self._rate_limited += 1
                self._buckets[source] = (tokens, now)
                raise RateLimited(source, (1.0 - tokens) / self.rate_per_s)
            self._buckets[source] = (tokens - n, now)

    def _pair_ids(self, keys: Iterable[Tuple[str, str, str]]) -> Dict[Tuple[str, str, str], int]:
        cache = self._pair_cache
        missing = [k for k in keys if k not in cache]
        if missing:
            pairs = self.t["pairs"]
            with self._write() as conn, conn.begin():
                conn.execute(self._insert(pairs).on_conflict_do_nothing(index_elements=["tenant", "src", "dst"]),
                             [{"tenant": t, "src": s, "dst": d} for t, s, d in missing])
                rows = conn.execute(sa.select(pairs.c.id, pairs.c.tenant, pairs.c.src, pairs.c.dst)).all()
            with self._lock:
                for pid, t, s, d in rows:
                    cache[(t, s, d)] = pid
        return cache

    def ingest(self, source: str, batch_id: str, items: Sequence[Any], now: Optional[float] = None) -> dict:
        """Validate, tag and store one batch from ``source``; one transaction per batch.

        Returns ``{"source", "batch_id", "accepted", "rejected": [{"index", "reason"}],
        "duplicate"}``.  A duplicate (the same source and batch_id again, e.g. a retry
        after a lost acknowledgement) stores nothing and reports what the first one
        accepted, with ``rejected`` empty.  Raises ``RateLimited`` (nothing touched) or
        ``StoreError`` (bad arguments, database failure: nothing of the batch stored).
        """
        if not isinstance(source, str) or not source or len(source) > _NAME:
            raise StoreError("source: expected a node name (1..%d characters), got %r" % (_NAME, source))
        if not isinstance(batch_id, str) or not batch_id or len(batch_id) > _BATCH_ID:
            raise StoreError("batch_id: expected a string of 1..%d characters, got %r" % (_BATCH_ID, batch_id))
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
            raise StoreError("items: expected a list of samples, got %s" % type(items).__name__)
        items = list(items)
        now = time.time() if now is None else float(now)
        self._take_tokens(source, len(items), now)
        good, bad = validate_samples(items, source, inventory=self.inventory, now=now,
                                     max_age_s=self.max_age_s, max_future_s=self.max_future_s)
        ids = self._pair_ids({(s.tenant or "", s.src, s.dst) for s in good})
        w = self.window_s
        floor = math.floor
        rows = [(ids[(s.tenant or "", s.src, s.dst)], floor(s.ts / w) * w, s.kind, s.ts, s.sent, s.received,
                 s.rtt_ms, s.rtt_min_ms, s.rtt_max_ms, s.jitter_ms, s.reordered, s.connect_ms, s.ttfb_ms,
                 s.bandwidth_mbps, s.duration_s) for s in good]
        touched = {(r[0], r[1]) for r in rows}
        reasons: Dict[str, int] = {}
        for r in bad:
            reasons[r.code] = reasons.get(r.code, 0) + 1
        batches, dirty, counters = self.t["batches"], self.t["dirty"], self.t["counters"]
        result = {"source": source, "batch_id": batch_id, "accepted": len(rows),
                  "rejected": [r.to_dict() for r in bad], "duplicate": False}
        try:
            with self._write() as conn, conn.begin():
                new = conn.execute(
                    self._insert(batches).values(source=source, batch_id=batch_id, received_at=now,
                                                 accepted=len(rows), rejected=len(bad))
                    .on_conflict_do_nothing(index_elements=["source", "batch_id"])
                    .returning(batches.c.source)).first()
                if new is None:
                    first = conn.execute(sa.select(batches.c.accepted).where(
                        (batches.c.source == source) & (batches.c.batch_id == batch_id))).scalar_one()
                    self._count(conn, {"duplicates": 1})
                    result.update(accepted=first, rejected=[], duplicate=True)
                    return result
                if rows:
                    self._insert_rows(conn, rows)
                    ins = self._insert(dirty)
                    conn.execute(ins.on_conflict_do_update(index_elements=["pair_id", "window_start"],
                                                           set_={"seq": dirty.c.seq + 1}),
                                 [{"pair_id": p, "window_start": ws, "seq": 1} for p, ws in sorted(touched)])
                counts = {"accepted": len(rows)}
                counts.update(("rejected:" + k, v) for k, v in reasons.items())
                self._count(conn, counts)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError("store: batch %r from %r not stored: %s" % (batch_id, source, exc)) from exc
        return result

    def _insert_rows(self, conn, rows: List[tuple]) -> None:
        """Bulk insert of sample tuples: executemany (SQLite), COPY (PostgreSQL, ~2x faster)."""
        if self.dialect == "postgresql":
            cur = conn.connection.driver_connection.cursor()
            with cur.copy("COPY npms_samples (%s) FROM STDIN" % ", ".join(SAMPLE_COLUMNS)) as copy:
                write = copy.write_row
                for r in rows:
                    write(r)
            cur.close()
        else:
            conn.exec_driver_sql(self._insert_samples_sql, rows)

    def _count(self, conn, counts: Dict[str, int]) -> None:
        counters = self.t["counters"]
        ins = self._insert(counters)
        conn.execute(ins.on_conflict_do_update(index_elements=["name"],
                                               set_={"value": counters.c.value + ins.excluded.value}),
                     [{"name": k, "value": v} for k, v in sorted(counts.items()) if v])

    # -- aggregates ------------------------------------------------------------------------
    def refresh(self) -> int:
        """Recompute the aggregates of every dirty (pair, window); return how many."""
        dirty, samples, agg = self.t["dirty"], self.t["samples"], self.t["aggregates"]
        with self.engine.connect() as conn:
            if conn.execute(sa.select(dirty.c.pair_id).limit(1)).first() is None:
                return 0
        with self._write() as conn, conn.begin():
            marks = conn.execute(sa.select(dirty.c.pair_id, dirty.c.window_start, dirty.c.seq)).all()
            if not marks:
                return 0
            q = (sa.select(samples.c.pair_id, samples.c.ts, samples.c.kind, samples.c.sent, samples.c.received,
                           samples.c.rtt_ms, samples.c.jitter_ms, samples.c.bandwidth_mbps)
                 .select_from(samples.join(dirty, (samples.c.pair_id == dirty.c.pair_id)
                                           & (samples.c.window_start == dirty.c.window_start)))
                 .order_by(samples.c.pair_id, samples.c.window_start))
            data = conn.execute(q).all()
            if data:
                cols = list(zip(*data))
                kc = KIND_CODE
                nan = float("nan")
                res = aggregate_columns(
                    np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.float64),
                    np.array([kc[k] for k in cols[2]], dtype=np.int8),
                    np.array(cols[3], dtype=np.float64), np.array(cols[4], dtype=np.float64),
                    np.array([nan if v is None else v for v in cols[5]], dtype=np.float64),
                    np.array([nan if v is None else v for v in cols[6]], dtype=np.float64),
                    np.array([nan if v is None else v for v in cols[7]], dtype=np.float64),
                    window_s=self.window_s)
                bw = res["bandwidth"]
                out = [{"pair_id": p, "window_start": ws, "window_s": float(self.window_s), "latency_p50_ms": a,
                        "latency_p95_ms": b, "latency_p99_ms": c, "jitter_ms": j, "loss_pct": lo,
                        "bandwidth_mbps": None if math.isnan(x) else x, "samples": n}
                       for p, ws, a, b, c, j, lo, x, n in zip(
                           res["pair"].tolist(), res["window_start"].tolist(), res["p50"].tolist(),
                           res["p95"].tolist(), res["p99"].tolist(), res["jitter"].tolist(),
                           res["loss_pct"].tolist(), bw.tolist(), res["samples"].tolist())]
                if out:
                    ins = self._insert(agg)
                    conn.execute(ins.on_conflict_do_update(
                        index_elements=["pair_id", "window_start"],
                        set_={c: getattr(ins.excluded, c) for c in (
                            "window_s", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "jitter_ms",
                            "loss_pct", "bandwidth_mbps", "samples")}), out)
            conn.execute(sa.delete(dirty).where((dirty.c.pair_id == sa.bindparam("p"))
                                                & (dirty.c.window_start == sa.bindparam("w"))
                                                & (dirty.c.seq == sa.bindparam("s"))),
                         [{"p": p, "w": w, "s": s} for p, w, s in marks])
        return len(marks)

    def _read(self, tenant: Optional[str], where) -> List[Measurement]:
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise StoreError("tenant: expected a tenant name or None, got %r" % (tenant,))
        self.refresh()
        agg, pairs = self.t["aggregates"], self.t["pairs"]
        vis = pairs.c.tenant == "" if tenant is None else pairs.c.tenant.in_(["", tenant])
        q = (sa.select(pairs.c.tenant, pairs.c.src, pairs.c.dst, agg.c.window_start, agg.c.window_s,
                       agg.c.latency_p50_ms, agg.c.latency_p95_ms, agg.c.latency_p99_ms, agg.c.jitter_ms,
                       agg.c.loss_pct, agg.c.bandwidth_mbps, agg.c.samples)
             .select_from(agg.join(pairs, agg.c.pair_id == pairs.c.id))
             .where(vis).where(where(agg))
             .order_by(agg.c.window_start, pairs.c.tenant, pairs.c.src, pairs.c.dst))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [Measurement(src=s, dst=d, latency_ms=p50, jitter_ms=j, loss_pct=lo, latency_p95_ms=p95,
                            latency_p99_ms=p99, bandwidth_mbps=bw, tenant=t or None, samples=n,
                            window_start=ws, window_s=wl)
                for t, s, d, ws, wl, p50, p95, p99, j, lo, bw, n in rows]

    def windows(self, tenant: Optional[str], start: float, end: float) -> List[Measurement]:
        """Aggregates of the windows starting in [start, end) visible to ``tenant``.

        ``tenant`` None: core-to-core (shared) pairs only; a name: shared pairs plus that
        tenant's edge pairs.  Sorted by (window_start, tenant, src, dst).
        """
        return self._read(tenant, lambda a: (a.c.window_start >= float(start)) & (a.c.window_start < float(end)))

    def latest(self, tenant: Optional[str], now: Optional[float] = None) -> List[Measurement]:
        """Per visible pair, the aggregate of its last *complete* window at ``now``.

        What the path engine reads each loop: a window still filling is left out (its
        percentiles would move as samples arrive).  No staleness cut: a pair whose probes
        stopped keeps its last window until retention removes it (see ``windows``).
        """
        now = time.time() if now is None else float(now)
        cut = now - float(self.window_s)
        agg = self.t["aggregates"]
        a2 = agg.alias("a2")
        last = (sa.select(sa.func.max(a2.c.window_start)).where(a2.c.pair_id == agg.c.pair_id)
                .where(a2.c.window_start <= cut).scalar_subquery())
        return self._read(tenant, lambda a: a.c.window_start == last)

    # -- housekeeping ----------------------------------------------------------------------
    def purge(self, now: Optional[float] = None) -> int:
        """Remove samples, aggregates and batch records older than ``retention_s``.

        Whole windows go (a window is removed once it ended before now - retention), so an
        aggregate never outlives its samples only in part.  Returns the rows removed.
        """
        now = time.time() if now is None else float(now)
        cutoff = now - self.retention_s
        last_start = cutoff - float(self.window_s)
        t = self.t
        removed = 0
        with self._write() as conn, conn.begin():
            for table in (t["samples"], t["aggregates"], t["dirty"]):
                removed += conn.execute(sa.delete(table).where(table.c.window_start <= last_start)).rowcount
            removed += conn.execute(sa.delete(t["batches"]).where(t["batches"].c.received_at < cutoff)).rowcount
        return removed

    def batch_info(self, source: str, batch_id: str) -> Optional[dict]:
        """The record of one batch (``None`` if unknown): received_at, accepted, rejected."""
        b = self.t["batches"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(b.c.received_at, b.c.accepted, b.c.rejected)
                               .where((b.c.source == source) & (b.c.batch_id == batch_id))).first()
        return None if row is None else {"source": source, "batch_id": batch_id, "received_at": row[0],
                                         "accepted": row[1], "rejected": row[2]}

    def count_samples(self) -> int:
        """Raw samples held (all tenants)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.t["samples"])).scalar_one()

    def stats(self) -> dict:
        """Counters since the store was created (rate_limited: this process only)."""
        c = self.t["counters"]
        with self.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(c.c.name, c.c.value)).all())
        return {"accepted": int(rows.get("accepted", 0)),
                "rejected_by_reason": {k.split(":", 1)[1]: int(v) for k, v in sorted(rows.items())
                                       if k.startswith("rejected:")},
                "duplicates": int(rows.get("duplicates", 0)),
                "rate_limited": self._rate_limited}

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # pylint: disable=broad-except
        return "<unparsable URL>"


__all__ = ["Store", "StoreError", "RateLimited", "SAMPLE_COLUMNS"]
