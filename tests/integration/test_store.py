# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The telemetry store, the same tests on SQLite (WAL, a temp file) and on a real
PostgreSQL server that this file starts (tests/pgserver.py) and removes.

No namespace lab; safe to run alongside other tests.  Without PostgreSQL's server
binaries the PostgreSQL half FAILS with what to install (it never skips).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from npms.store import RateLimited, Store, StoreError
from npms.telemetry import Sample, aggregate, window_start

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pgserver import PgServer, PgServerError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0  # 20 s into a minute, 200 s into a 10-minute window
W0 = window_start(NOW, 600) - 1200  # a complete window, two windows before the current one


@pytest.fixture(scope="session")
def pg_server():
    try:
        server = PgServer().start()
    except PgServerError as exc:
        pytest.fail("PostgreSQL store tests need a PostgreSQL server: %s" % exc, pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty store URL: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "store.db")
    server = request.getfixturevalue("pg_server")
    name = "t_%s" % uuid.uuid4().hex[:12]
    admin = sa.create_engine(server.url.replace("/npms?", "/postgres?"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE %s" % name)
    admin.dispose()
    return server.url.replace("/npms?", "/%s?" % name)


@pytest.fixture
def store(url):
    st = Store(url, rate_per_s=1e9, burst=1e9)
    yield st
    st.close()


def smp(src="core-fra", dst="core-lon", ts=W0 + 1, kind="icmp", tenant=None, sent=10, received=10, rtt=10.0,
        **kw):
    d = {"src": src, "dst": dst, "kind": kind, "ts": ts, "tenant": tenant, "sent": sent, "received": received}
    if kind in ("icmp", "udp"):
        d["rtt_ms"] = rtt if received else None
    d.update(kw)
    return d


def raw_count(st: Store, lo: float = float("-inf"), hi: float = float("inf")) -> int:
    s = st.t["samples"]
    with st.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(s)
                            .where((s.c.ts >= lo) & (s.c.ts < hi))).scalar_one()


# --------------------------------------------------------------------------------------

def test_sqlite_store_runs_wal(tmp_path):
    st = Store("sqlite:///%s" % (tmp_path / "s.db"))
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    st.close()


def test_ingest_then_duplicate_batch_counts_once(store):
    batch = [smp(ts=W0 + i, rtt=10.0 + i) for i in range(20)]
    first = store.ingest("core-fra", "b-1", batch, now=NOW)
    assert first == {"source": "core-fra", "batch_id": "b-1", "accepted": 20, "rejected": [], "duplicate": False}
    again = store.ingest("core-fra", "b-1", batch, now=NOW + 5)
    assert again["duplicate"] is True and again["accepted"] == 20
    assert raw_count(store) == 20
    assert store.stats()["accepted"] == 20 and store.stats()["duplicates"] == 1
    # the same batch id from another source is another batch
    other = store.ingest("core-lon", "b-1", [smp(src="core-lon", dst="core-fra")], now=NOW)
    assert other["duplicate"] is False and other["accepted"] == 1
    (m,) = store.windows(None, W0, W0 + 600)[:1]
    assert m.samples == 20, "the window counts the first batch once"


def test_partial_batch_keeps_the_good_and_counts_the_bad(store):
    batch = [smp(ts=W0 + 1), smp(ts=W0 + 2, rtt_msec=3), smp(ts=W0 + 3), smp(ts=W0 + 4, received=11),
             smp(ts=W0 + 5, src="core-par"), smp(ts=W0 + 6), smp(ts=NOW + 3600)]
    res = store.ingest("core-fra", "p-1", batch, now=NOW)
    assert res["accepted"] == 3
    assert [r["index"] for r in res["rejected"]] == [1, 3, 4, 6]
    assert "field 'rtt_msec'" in res["rejected"][0]["reason"]
    assert raw_count(store) == 3
    assert sorted(s for s in (m.samples for m in store.windows(None, W0, W0 + 600))) == [3]
    stats = store.stats()
    assert stats["accepted"] == 3
    assert stats["rejected_by_reason"] == {"unknown_field": 1, "received_gt_sent": 1, "wrong_source": 1,
                                           "in_future": 1}
    assert store.batch_info("core-fra", "p-1")["rejected"] == 4


def test_rate_limit_per_source(url):
    st = Store(url, rate_per_s=100.0, burst=1000)
    try:
        ok = st.ingest("core-fra", "r-1", [smp(ts=W0 + i * 0.1) for i in range(1000)], now=NOW)
        assert ok["accepted"] == 1000
        with pytest.raises(RateLimited) as exc:
            st.ingest("core-fra", "r-2", [smp(ts=W0 + 200)], now=NOW)
        assert exc.value.retry_after_s == pytest.approx(0.01)
        assert st.batch_info("core-fra", "r-2") is None and raw_count(st) == 1000, "nothing of it stored"
        # another source has its own bucket
        assert st.ingest("core-lon", "r-1", [smp(src="core-lon", dst="core-fra")], now=NOW)["accepted"] == 1
        # five seconds later: 500 tokens back
        assert st.ingest("core-fra", "r-2", [smp(ts=W0 + 200)], now=NOW + 5)["accepted"] == 1
        assert st.stats()["rate_limited"] == 1
    finally:
        st.close()


def test_windows_and_latest_hand_checked(store):
    # window W0: rtt 10, 20, 30, 40 (one-way 5..20); window W0+600: rtt 8; current window: rtt 100
    store.ingest("core-fra", "w-1", [smp(ts=W0 + 1, rtt=10.0), smp(ts=W0 + 2, rtt=40.0, received=8),
                                     smp(ts=W0 + 3, kind="udp", rtt=20.0, jitter_ms=1.0, received=9)], now=NOW)
    store.ingest("core-fra", "w-2", [smp(ts=W0 + 599, kind="udp", rtt=30.0, jitter_ms=2.0),
                                     smp(ts=W0 + 300, kind="iperf", sent=1, received=1, bandwidth_mbps=250.0),
                                     smp(ts=W0 + 600, rtt=8.0), smp(ts=NOW - 1, rtt=100.0)], now=NOW)
    ws = store.windows(None, W0, W0 + 1200)
    assert [(m.window_start, m.samples) for m in ws] == [(W0, 5), (W0 + 600, 1)]
    m = ws[0]
    assert (m.src, m.dst, m.tenant, m.window_s) == ("core-fra", "core-lon", None, 600.0)
    assert m.latency_ms == 12.5 and m.latency_p95_ms == pytest.approx(19.25)
    assert m.latency_p99_ms == pytest.approx(19.85)
    assert m.jitter_ms == 1.5 and m.loss_pct == pytest.approx(7.5) and m.bandwidth_mbps == 250.0
    # latest: the last complete window, not the one filling now
    (last,) = store.latest(None, now=NOW)
    assert (last.window_start, last.latency_ms) == (W0 + 600, 4.0)
    (cur,) = store.windows(None, window_start(NOW, 600), NOW + 600)
    assert cur.latency_ms == 50.0 and cur.samples == 1
    # a late sample for an aggregated window recomputes that window
    store.ingest("core-fra", "w-3", [smp(ts=W0 + 650, rtt=20.0)], now=NOW)
    (last,) = store.latest(None, now=NOW)
    assert (last.latency_ms, last.samples) == (7.0, 2)
    # the store gives what telemetry.aggregate gives on the same samples
    assert store.windows(None, W0, W0 + 600)[0] == aggregate([
        Sample("core-fra", "core-lon", "icmp", W0 + 1, None, 10, 10, 10.0),
        Sample("core-fra", "core-lon", "icmp", W0 + 2, None, 10, 8, 40.0),
        Sample("core-fra", "core-lon", "udp", W0 + 3, None, 10, 9, 20.0, jitter_ms=1.0),
        Sample("core-fra", "core-lon", "udp", W0 + 599, None, 10, 10, 30.0, jitter_ms=2.0),
        Sample("core-fra", "core-lon", "iperf", W0 + 300, None, 1, 1, bandwidth_mbps=250.0)])[0]


def test_window_length_is_configurable_and_fixed_per_store(url):
    st = Store(url, window_s=60, rate_per_s=1e9, burst=1e9)
    st.ingest("core-fra", "c-1", [smp(ts=W0 + 10 * i) for i in range(12)], now=NOW)
    assert [m.samples for m in st.windows(None, W0, W0 + 600)] == [6, 6]
    st.close()
    with pytest.raises(StoreError, match="window_s=60"):
        Store(url, window_s=600)


def test_tenant_visibility(store):
    w = W0 + 5
    store.ingest("core-fra", "v-1", [smp(ts=w, rtt=10.0)], now=NOW)
    store.ingest("edge-ber", "v-1", [
        smp("edge-ber", "core-fra", ts=w, tenant="acme", rtt=4.0),
        smp("edge-ber", "core-fra", ts=w, tenant="globex", rtt=40.0),  # same node names, other tenant
        smp("edge-ber", "core-lon", ts=w, tenant="globex", rtt=60.0)], now=NOW)

    def seen(tenant, read):
        return sorted(((m.tenant, m.src, m.dst, m.latency_ms) for m in read(tenant)), key=lambda r: (r[0] or "", r))

    for read in (lambda t: store.windows(t, W0, W0 + 600), lambda t: store.latest(t, now=NOW)):
        assert seen(None, read) == [(None, "core-fra", "core-lon", 5.0)]
        assert seen("acme", read) == [(None, "core-fra", "core-lon", 5.0), ("acme", "edge-ber", "core-fra", 2.0)]
        assert seen("globex", read) == [(None, "core-fra", "core-lon", 5.0), ("globex", "edge-ber", "core-fra", 20.0),
                                        ("globex", "edge-ber", "core-lon", 30.0)]
        assert seen("initech", read) == [(None, "core-fra", "core-lon", 5.0)]


def test_inventory_checks_at_ingest(url):
    from npms.inventory import load_inventory

    st = Store(url, inventory=load_inventory(ROOT / "inventory" / "lab"), rate_per_s=1e9, burst=1e9)
    try:
        batch = [smp("edge-syd", "core-sin", tenant="globex"), smp("edge-syd", "core-sin", tenant="acme", ts=W0 + 2),
                 smp("edge-syd", "core-sin", ts=W0 + 3)]
        res = st.ingest("edge-syd", "i-1", batch, now=NOW)
        assert res["accepted"] == 1
        assert [(r["index"], "field 'tenant'" in r["reason"]) for r in res["rejected"]] == [(1, True), (2, True)]
    finally:
        st.close()


def test_retention_purge(url):
    st = Store(url, retention_s=3600, rate_per_s=1e9, burst=1e9)
    try:
        st.ingest("core-fra", "old", [smp(ts=NOW - 7000 + i) for i in range(5)], now=NOW)
        st.ingest("core-fra", "new", [smp(ts=NOW - 1800 + i) for i in range(3)], now=NOW)
        assert len(st.windows(None, 0, NOW)) == 2
        removed = st.purge(now=NOW)
        assert removed == 5 + 1  # five samples and the old window's aggregate
        assert raw_count(st) == 3
        assert [m.samples for m in st.windows(None, 0, NOW)] == [3]
        assert st.purge(now=NOW) == 0
        # batch records go once older than retention: then nothing of the store is left
        assert st.purge(now=NOW + 3600 + 1800 + 600) == 3 + 1 + 2
        assert st.batch_info("core-fra", "new") is None
    finally:
        st.close()


def test_bad_arguments_are_store_errors(store):
    with pytest.raises(StoreError, match="source"):
        store.ingest("", "x", [])
    with pytest.raises(StoreError, match="batch_id"):
        store.ingest("core-fra", "", [])
    with pytest.raises(StoreError, match="items"):
        store.ingest("core-fra", "x", {"src": "core-fra"})
    with pytest.raises(StoreError, match="unsupported database|store URL"):
        Store("mysql://nobody@localhost/npms")


# --------------------------------------------------------------------------------------
# Crash safety: a killed ingester loses nothing it acknowledged, and leaves no half batch
# --------------------------------------------------------------------------------------

BATCH = 20000
CHILD = textwrap.dedent("""
    import sys
    from npms.store import Store
    url, acks, now, tag = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    st = Store(url, rate_per_s=1e9, burst=1e9)
    with open(acks, "a", buffering=1) as log:
        for k in range(10000):
            base = now - 80000 + k * 30  # batch k: ts in [base, base + 20)
            items = [dict(src="core-fra", dst="core-lon", kind="icmp", ts=base + i * 0.001, tenant=None,
                          sent=10, received=10, rtt_ms=10.0) for i in range({batch})]
            log.write("start %d\\n" % k)
            st.ingest("core-fra", "%s-%d" % (tag, k), items, now=now)
            log.write("ack %d\\n" % k)
""").format(batch=BATCH)


def test_killed_ingestion_loses_nothing_acknowledged(url, tmp_path):
    mid_batch_kills = 0
    acked_all = set()
    for attempt in range(3):
        acks = tmp_path / ("acks-%d" % attempt)
        acks.touch()
        now = NOW + attempt * 10000
        proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(acks), str(now), "a%d" % attempt],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while acks.read_text().count("ack") < 2 + attempt:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the ingester acknowledged nothing in 120 s"
            time.sleep(0.01)
        time.sleep(0.05 + 0.07 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        lines = acks.read_text().split("\n")
        acked = {int(x.split()[1]) for x in lines if x.startswith("ack ")}
        started = {int(x.split()[1]) for x in lines if x.startswith("start ")}
        mid_batch_kills += bool(started - acked)
        acked_all |= {(attempt, k) for k in acked}
        st = Store(url)
        try:
            b = st.t["batches"]
            with st.engine.connect() as conn:
                stored = {int(r[0].split("-")[1]): r[1] for r in conn.execute(
                    sa.select(b.c.batch_id, b.c.accepted).where(b.c.received_at == now))}
            assert acked <= set(stored), "an acknowledged batch is missing: %s" % sorted(acked - set(stored))
            assert set(stored) <= started, "a batch that was never sent is stored"
            for k in started:
                base = now - 80000 + k * 30
                n = raw_count(st, base, base + 30)
                assert n == (BATCH if k in stored else 0), "batch %d: %d of %d samples stored" % (k, n, BATCH)
                if k in stored:
                    assert stored[k] == BATCH
        finally:
            st.close()
    assert mid_batch_kills >= 1, "no kill landed inside ingest(); the test proved nothing"
