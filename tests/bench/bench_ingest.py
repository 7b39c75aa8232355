# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Telemetry ingestion benchmark: samples per second into SQLite and PostgreSQL, and
the time to aggregate one day of 10-second samples for 1,000 node pairs.

    python tests/bench/bench_ingest.py [--samples 300000] [--batch 1000] [--pairs 1000]

Measures, on one pinned core (the PostgreSQL server, started here in a temp dir by
tests/pgserver.py, runs as its own processes and is not pinned):
  (a) ingestion into SQLite (WAL, a temp file) and into PostgreSQL: ``Store.ingest`` of
      batches from 100 sources (validation, tagging, dedup record, one transaction per
      batch) followed by ``Store.refresh`` (window aggregation of every touched window);
      samples / (ingest + refresh time);
  (b) ``telemetry.aggregate_columns`` over 1,000 pairs x 8,640 samples (one day, every
      10 s; icmp/udp alternating, 1 % lost, one iperf per pair per window): first call
      and best of three; then turning the 145,000 aggregates into Measurement objects.

Human-readable lines first; the LAST line is one JSON object.  Targets missed are
reported, not fatal (exit 0), unless --strict.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

import numpy as np  # noqa: E402

from npms.store import Store  # noqa: E402
from npms.telemetry import aggregate_columns, measurements_from  # noqa: E402
from pgserver import PgServer  # noqa: E402

TARGET_SQLITE_SPS = 50000
TARGET_AGG_S = 1.0
NOW = 1_700_000_000.0


def say(text=""):
    print(text, flush=True)


def pin_one_cpu():
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):  # pragma: no cover
        return None


def make_batches(total, batch, seed=1):
    """Batches from 100 sources, each probing 20 peers every 10 s (icmp, udp, some iperf)."""
    rnd = random.Random(seed)
    sources = ["pop%03d" % i for i in range(100)]
    out = []
    t0 = NOW - 6 * 3600
    made = 0
    k = 0
    while made < total:
        src = sources[k % len(sources)]
        n = min(batch, total - made)
        items = []
        for i in range(n):
            dst = "pop%03d" % ((sources.index(src) + 1 + i % 20) % 100)
            ts = t0 + (k // len(sources)) * 10 * (batch // 20) + (i // 20) * 10 + rnd.random()
            kind = ("icmp", "udp", "udp", "icmp", "iperf")[(i // 20) % 5]  # every peer gets every kind
            d = {"src": src, "dst": dst, "kind": kind, "ts": ts, "tenant": None}
            if kind == "iperf":
                d.update(sent=1, received=1, bandwidth_mbps=float(rnd.choice((200, 500, 900))))
            else:
                lost = rnd.random() < 0.01
                d.update(sent=10, received=0 if lost else 10, rtt_ms=None if lost else round(20 + rnd.random() * 5, 3))
                if kind == "udp" and not lost:
                    d["jitter_ms"] = round(rnd.random(), 3)
            items.append(d)
        out.append((src, "b%06d" % k, items))
        made += n
        k += 1
    return out


def bench_store(url, batches, label):
    st = Store(url, rate_per_s=1e9, burst=1e9)
    n = sum(len(b[2]) for b in batches)
    gc.collect()
    t0 = time.perf_counter()
    for src, bid, items in batches:
        res = st.ingest(src, bid, items, now=NOW)
        assert not res["rejected"], res["rejected"][:3]
    t1 = time.perf_counter()
    groups = st.refresh()
    t2 = time.perf_counter()
    latest = st.latest(None, now=NOW)
    stored = st.count_samples()
    st.close()
    assert stored == n, "%s: %d of %d samples stored" % (label, stored, n)
    out = {"samples_per_s": round(n / (t2 - t0)), "ingest_only_samples_per_s": round(n / (t1 - t0)),
           "ingest_s": round(t1 - t0, 3), "refresh_s": round(t2 - t1, 3), "windows_aggregated": groups,
           "latest_pairs": len(latest)}
    say("(a) %-10s %7d samples in %d batches: %8.0f samples/s with window aggregation "
        "(ingest %.2f s = %.0f/s, aggregate %d windows %.2f s)"
        % (label, n, len(batches), out["samples_per_s"], out["ingest_s"], out["ingest_only_samples_per_s"],
           groups, out["refresh_s"]))
    return out


def day_columns(pairs, seed=2):
    rng = np.random.default_rng(seed)
    per = 8640
    n = pairs * per
    pair = np.repeat(np.arange(pairs, dtype=np.int64), per)
    ts = np.tile(NOW - 86400 + np.arange(per) * 10.0, pairs) + rng.random(n) * 0.5
    kind = np.tile(np.array([0, 1], dtype=np.int8), n // 2)
    kind[::60] = 4  # one iperf per pair per window
    lost = rng.random(n) < 0.01
    sent = np.where(kind == 4, 1.0, 10.0)
    received = np.where(lost & (kind != 4), 0.0, sent)
    rtt = np.where((kind != 4) & ~lost, 20.0 + rng.exponential(2.0, n), np.nan)
    jitter = np.where((kind == 1) & ~lost, rng.random(n), np.nan)
    bw = np.where(kind == 4, rng.choice([200.0, 500.0, 900.0], n), np.nan)
    return dict(pair=pair, ts=ts, kind=kind, sent=sent, received=received, rtt_ms=rtt, jitter_ms=jitter,
                bandwidth_mbps=bw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--samples", type=int, default=300000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    cpu = pin_one_cpu()
    out = {"samples": args.samples, "batch": args.batch, "cpu": cpu}
    say("telemetry ingestion benchmark; pinned to cpu %s" % cpu)
    batches = make_batches(args.samples, args.batch)

    tmp = tempfile.mkdtemp(prefix="npms-bench-")
    try:
        sq = bench_store("sqlite:///%s" % os.path.join(tmp, "bench.db"), batches, "SQLite")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["sqlite_samples_per_s"] = sq["samples_per_s"]
    out["sqlite"] = sq
    with PgServer(tuned_for_bench=True) as pg:
        pq = bench_store(pg.url, batches, "PostgreSQL")
    out["postgresql_samples_per_s"] = pq["samples_per_s"]
    out["postgresql"] = pq
    del batches
    gc.collect()

    cols = day_columns(args.pairs)
    n = len(cols["ts"])
    times = []
    for _run in range(3):
        t0 = time.perf_counter()
        agg = aggregate_columns(window_s=600, **cols)
        times.append(time.perf_counter() - t0)
    keys = [(None, "a%04d" % i, "b%04d" % i) for i in range(args.pairs)]
    t0 = time.perf_counter()
    ms = measurements_from(agg, keys, 600)
    mat = time.perf_counter() - t0
    out.update(aggregate_1000_pairs_day_s=round(min(times), 3), aggregate_first_call_s=round(times[0], 3),
               aggregate_windows=len(agg["pair"]), aggregate_input_samples=n,
               aggregate_to_measurements_s=round(mat, 3))
    expect = args.pairs * len(np.unique(np.floor(cols["ts"][:8640] / 600)))  # 145: the day is not aligned
    assert len(ms) == expect, (len(ms), expect)
    say("(b) aggregate %d pairs x one day of 10 s samples (%d samples) -> %d windows: %.3f s "
        "(first call %.3f s); as Measurement objects +%.3f s"
        % (args.pairs, n, len(ms), min(times), times[0], mat))
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    missed = []
    if out["sqlite_samples_per_s"] < TARGET_SQLITE_SPS:
        missed.append("SQLite ingestion %d/s < %d/s" % (out["sqlite_samples_per_s"], TARGET_SQLITE_SPS))
    if out["aggregate_1000_pairs_day_s"] >= TARGET_AGG_S:
        missed.append("aggregation %.3f s >= %.1f s" % (out["aggregate_1000_pairs_day_s"], TARGET_AGG_S))
    out["targets"] = {"sqlite_samples_per_s": TARGET_SQLITE_SPS, "aggregate_1000_pairs_day_s": TARGET_AGG_S}
    out["targets_missed"] = missed
    say("targets: %s" % ("all met" if not missed else "; ".join(missed)))
    print(json.dumps(out, sort_keys=True))
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
