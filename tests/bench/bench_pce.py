# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Path engine benchmark: the synthetic 100-POP / 1,000-edge network on one core.

    python tests/bench/bench_pce.py [--baseline-seconds 60] [--pops 100 --tenants 20 --edges 50]

Measures
  (a) full recompute with the fast engine (engine set-up + compute), and separately the
      time to materialise every result (``to_list()``), plus how many pairs the engine
      sent to its exact slow path (``PathSet.stats['slow_pairs']``);
  (b) incremental: one core link's measurements change in both directions (latency x3,
      loss 2 %), time of ``FastEngine.update``; checked against a fresh full compute; then
      the link back to its first measurements (not a target: arcs that got better), checked
      against the first compute;
  (b') both timings again on fresh engines (``--repeat``, default 3 runs in all): the
      figures compared with the targets are the medians;
  (c) peak RSS;
  (d) the networkx baseline: the reference engine computing random pairs one by one for
      ``--baseline-seconds``, extrapolated to all pairs -> speedup_vs_networkx;
  (e) agreement: the fast results of the baseline's pairs equal the reference results.

Human-readable lines first; the LAST line is one JSON object.  Exit status 1 when any
result disagrees (baseline pairs or incremental vs full), else 0 (targets missed are
reported, not fatal, unless --strict).
"""

import os

# one core, one thread: set before numpy is imported (npms.pce imports it)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

import synth  # noqa: E402
from npms.pce import Network, ReferenceEngine  # noqa: E402

TARGET_FULL_S = 2.0
TARGET_INCREMENTAL_S = 0.2


def pin_one_cpu():
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def say(text=""):
    print(text, flush=True)


def all_pairs(inv):
    out = []
    for tname in sorted(inv.tenants):
        tenant = inv.tenants[tname]
        for tc in sorted(tenant.traffic_classes, key=lambda c: c.name):
            for s in sorted(tenant.edges):
                for d in sorted(tenant.edges):
                    if s != d:
                        out.append((tname, tc.name, s, d))
    return out


def changed_core_link(ms, results):
    """The most used core link of the answer; both directions, latency x3 and loss 2 %."""
    used = {}
    for r in results:
        for u, v in zip(r.path, r.path[1:]):
            if u.startswith("pop") and v.startswith("pop"):
                key = tuple(sorted((u, v)))
                used[key] = used.get(key, 0) + 1
    a, b = max(sorted(used), key=lambda k: used[k]) if used else ("pop000", "pop001")
    out = []
    for m in ms:
        if (m["src"], m["dst"]) in ((a, b), (b, a)):
            lat = round(m["latency_ms"] * 3.0, 3)
            out.append(dict(m, latency_ms=lat, latency_p95_ms=round(lat * 1.1, 3), loss_pct=2.0))
    return (a, b), used.get((a, b), 0), out


def baseline(inv, ms, pairs, seconds, seed):
    """Reference engine, random pairs one by one, for ``seconds``.

    Sampled tenants are warmed up first (one untimed pair per class builds the networkx
    graphs a full run would build once per tenant), so the per-pair time is the cost a
    full reference run would pay per pair: conservative for the speedup.
    """
    net = Network(inv, ms)
    eng = ReferenceEngine(net)
    settings = inv.pce
    rnd = random.Random(seed)
    tenants = sorted(inv.tenants)
    sample_tenants = tenants[::max(1, len(tenants) // 4)][:4]
    by_tenant = {t: [p for p in pairs if p[0] == t] for t in sample_tenants}
    classes = {t: {c.name: c for c in inv.tenants[t].traffic_classes} for t in sample_tenants}
    arcs = {t: net.arcs_for(t) for t in sample_tenants}
    t0 = time.perf_counter()
    for t in sample_tenants:
        seen = set()
        for key in by_tenant[t]:
            if key[1] not in seen:
                seen.add(key[1])
                eng._pair(t, classes[t][key[1]], key[2], key[3], arcs[t], settings, {})
    warm_s = time.perf_counter() - t0
    pool = [p for t in sample_tenants for p in by_tenant[t]]
    rnd.shuffle(pool)
    results = {}
    t0 = time.perf_counter()
    for key in pool:
        t, c, s, d = key
        results[key] = eng._pair(t, classes[t][c], s, d, arcs[t], settings, {})
        if time.perf_counter() - t0 >= seconds:
            break
    elapsed = time.perf_counter() - t0
    return results, elapsed, warm_s, sample_tenants


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--baseline-seconds", type=float, default=60.0,
                    help="time cap of the networkx baseline sample (default 60)")
    ap.add_argument("--pops", type=int, default=100)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--edges", type=int, default=50, help="edges per tenant")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a time target is missed")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs of the full recompute and the incremental update, each on a fresh engine; "
                         "the figures compared with the targets are their medians (default 3)")
    args = ap.parse_args(argv)

    cpu = pin_one_cpu()
    from npms.pce_fast import FastEngine

    out = {"cpu": cpu, "pops": args.pops, "tenants": args.tenants, "edges": args.tenants * args.edges}
    t0 = time.perf_counter()
    inv = synth.build(pops=args.pops, tenants=args.tenants, edges_per_tenant=args.edges, seed=args.seed)
    ms = synth.core_measurements(inv)
    out["build_s"] = round(time.perf_counter() - t0, 3)
    pairs = all_pairs(inv)
    out["pairs"] = len(pairs)
    out["core_links"] = sum(1 for lk in inv.links if lk.kind == "core")
    out["measurements"] = len(ms)
    say("synthetic network: %d POPs, %d core links, %d edges, %d tenants, %d classes -> %d pairs; %d measurements"
        % (args.pops, out["core_links"], out["edges"], args.tenants,
           len(next(iter(inv.tenants.values())).traffic_classes), len(pairs), len(ms)))
    say("pinned to cpu %s; network built in %.2f s" % (cpu, out["build_s"]))

    # (a) full recompute -----------------------------------------------------------------
    gc.collect()
    t0 = time.perf_counter()
    net = Network(inv, ms)
    out["network_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    eng = FastEngine(net)
    t1 = time.perf_counter()
    paths = eng.compute()
    t2 = time.perf_counter()
    out["engine_init_s"] = round(t1 - t0, 3)
    out["compute_s"] = round(t2 - t1, 3)
    out["full_recompute_s"] = round(t2 - t0, 3)
    t0 = time.perf_counter()
    full_list = paths.to_list()
    out["materialise_s"] = round(time.perf_counter() - t0, 3)
    stats = dict(getattr(paths, "stats", {}) or {})
    out["engine_stats"] = stats
    out["slow_pairs"] = stats.get("slow_pairs")
    out["verdicts"] = paths.verdict_counts()
    say("(a) full recompute (fast engine): %.3f s  [set-up %.3f s + compute %.3f s; Network() %.3f s not included]"
        % (out["full_recompute_s"], out["engine_init_s"], out["compute_s"], out["network_s"]))
    say("    materialise %d results (to_list): %.3f s" % (len(full_list), out["materialise_s"]))
    say("    pairs sent to the exact slow path: %s of %s; engine stats: %s"
        % (stats.get("slow_pairs", "n/a"), stats.get("pairs", len(pairs)), stats))
    say("    verdicts: %s" % ", ".join("%s %d" % kv for kv in out["verdicts"].items()))
    failures = []
    if len(full_list) != len(pairs):
        failures.append("fast engine gave %d results for %d pairs" % (len(full_list), len(pairs)))

    # (b) incremental ---------------------------------------------------------------------
    link, link_use, changed = changed_core_link(ms, paths.results)
    t0 = time.perf_counter()
    paths2 = eng.update(changed)
    out["incremental_s"] = round(time.perf_counter() - t0, 3)
    out["incremental_recomputed_pairs"] = (getattr(paths2, "stats", {}) or {}).get("pairs")
    t0 = time.perf_counter()
    inc_list = paths2.to_list()
    out["incremental_materialise_s"] = round(time.perf_counter() - t0, 3)
    out["incremental_link"] = "%s-%s" % link
    moved = sum(1 for a, b in zip(full_list, inc_list) if a["path"] != b["path"])
    out["incremental_moved_paths"] = moved
    say("(b) incremental: %s (on %d primary paths) latency x3, loss 2 %% both ways: update %.3f s, "
        "materialise %.3f s; %d paths moved" % (out["incremental_link"], link_use, out["incremental_s"],
                                                out["incremental_materialise_s"], moved))
    st2 = getattr(paths2, "stats", {}) or {}
    out["incremental_slow_pairs"] = st2.get("slow_pairs")
    say("    pairs recomputed by the update: %s of %d (their choice: %s, their backup: %s; exact searches: %s)"
        % (out["incremental_recomputed_pairs"], len(pairs), st2.get("choice_pairs"), st2.get("backup_pairs"),
           st2.get("slow_pairs")))
    keyed = {(m.get("tenant"), m["src"], m["dst"]): m for m in ms}
    for m in changed:
        keyed[(m.get("tenant"), m["src"], m["dst"])] = m
    fresh_list = FastEngine(Network(inv, list(keyed.values()))).compute().to_list()
    inc_mismatch = sum(1 for a, b in zip(inc_list, fresh_list) if a != b) + abs(len(inc_list) - len(fresh_list))
    out["incremental_mismatches"] = inc_mismatch
    say("    update vs fresh full compute: %s" % ("identical" if not inc_mismatch else "%d results differ" % inc_mismatch))
    if inc_mismatch:
        failures.append("incremental update differs from a full compute on %d results" % inc_mismatch)
    del paths2, inc_list, fresh_list
    gc.collect()
    # the same link back to its first measurements: arcs that got better, which an update
    # judges with looser rules; its answer must be the first full compute's again
    back = [m for m in ms if (m["src"], m["dst"]) in (link, link[::-1])]
    t0 = time.perf_counter()
    paths3 = eng.update(back)
    out["incremental_back_s"] = round(time.perf_counter() - t0, 3)
    out["incremental_back_recomputed_pairs"] = (getattr(paths3, "stats", {}) or {}).get("pairs")
    back_list = paths3.to_list()
    back_mismatch = sum(1 for a, b in zip(back_list, full_list) if a != b) + abs(len(back_list) - len(full_list))
    out["incremental_back_mismatches"] = back_mismatch
    say("    the link back to its first measurements: update %.3f s, %s pairs recomputed; vs the first full "
        "compute: %s" % (out["incremental_back_s"], out["incremental_back_recomputed_pairs"],
                         "identical" if not back_mismatch else "%d results differ" % back_mismatch))
    if back_mismatch:
        failures.append("the update back to the first measurements differs from the first compute on %d results" % back_mismatch)
    del paths3, back_list
    gc.collect()

    # (b') the same two timings again on fresh engines: one sample on a shared machine is
    # noise; the targets are judged on the median
    del eng, paths
    gc.collect()
    full_runs, inc_runs = [out["full_recompute_s"]], [out["incremental_s"]]
    for _r in range(max(0, args.repeat - 1)):
        net_r = Network(inv, ms)
        gc.collect()
        t0 = time.perf_counter()
        eng_r = FastEngine(net_r)
        paths_r = eng_r.compute()
        full_runs.append(round(time.perf_counter() - t0, 3))
        t0 = time.perf_counter()
        eng_r.update(changed)
        inc_runs.append(round(time.perf_counter() - t0, 3))
        del eng_r, paths_r, net_r
        gc.collect()
    out["full_recompute_runs_s"], out["incremental_runs_s"] = full_runs, inc_runs
    out["full_recompute_first_s"], out["incremental_first_s"] = full_runs[0], inc_runs[0]
    out["full_recompute_s"] = round(statistics.median(full_runs), 3)
    out["incremental_s"] = round(statistics.median(inc_runs), 3)
    out["full_recompute_min_s"], out["incremental_min_s"] = min(full_runs), min(inc_runs)
    say("(b') %d runs on fresh engines: full recompute %s s, median %.3f s; incremental %s s, median %.3f s"
        % (len(full_runs), ", ".join("%.3f" % x for x in full_runs), out["full_recompute_s"],
           ", ".join("%.3f" % x for x in inc_runs), out["incremental_s"]))

    # (c) peak RSS -------------------------------------------------------------------------
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    say("(c) peak RSS so far: %.1f MiB" % out["peak_rss_mib"])

    # (d) networkx baseline ------------------------------------------------------------------
    say("(d) networkx baseline: reference engine, random pairs, %.0f s ..." % args.baseline_seconds)
    ref, elapsed, warm_s, sample_tenants = baseline(inv, ms, pairs, args.baseline_seconds, args.seed)
    per_pair = elapsed / max(1, len(ref))
    out["baseline_pairs"] = len(ref)
    out["baseline_s"] = round(elapsed, 3)
    out["baseline_warmup_s"] = round(warm_s, 3)
    out["baseline_per_pair_ms"] = round(per_pair * 1000.0, 3)
    out["baseline_extrapolated_s"] = round(per_pair * len(pairs), 1)
    out["speedup_vs_networkx"] = round(out["baseline_extrapolated_s"] / max(out["full_recompute_s"], 1e-9), 1)
    say("    %d pairs of tenants %s in %.1f s (warm-up %.1f s untimed): %.1f ms per pair -> all %d pairs "
        "~%.0f s" % (len(ref), ",".join(sample_tenants), elapsed, warm_s, per_pair * 1000, len(pairs),
                     out["baseline_extrapolated_s"]))
    # the reference engine's per-pair time includes building the result (metrics, SIDs,
    # reason); the fast engine's compute is lazy, so also compare with materialising
    with_mat = out["full_recompute_s"] + out["materialise_s"]
    out["speedup_vs_networkx_incl_materialise"] = round(out["baseline_extrapolated_s"] / max(with_mat, 1e-9), 1)
    say("    speedup vs networkx: %.0fx (%.0fx counting the fast engine's materialise time)"
        % (out["speedup_vs_networkx"], out["speedup_vs_networkx_incl_materialise"]))

    # (e) agreement ------------------------------------------------------------------------
    fast_by_key = {(r["tenant"], r["traffic_class"], r["src"], r["dst"]): r for r in full_list}
    mismatches = []
    for key, r in ref.items():
        if fast_by_key.get(key) != r.to_dict():
            mismatches.append(key)
    out["mismatches"] = len(mismatches)
    say("(e) agreement on the %d baseline pairs: %s" % (
        len(ref), "all identical" if not mismatches else "%d differ, e.g. %s" % (
            len(mismatches), ", ".join("/".join(k) for k in mismatches[:5]))))
    if mismatches:
        failures.append("%d of %d baseline pairs differ between the engines" % (len(mismatches), len(ref)))
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)

    out["full_target_met"] = out["full_recompute_s"] < TARGET_FULL_S
    out["incremental_target_met"] = out["incremental_s"] < TARGET_INCREMENTAL_S
    say("targets: full recompute %.3f s < %.1f s: %s; incremental %.3f s < %.1f s: %s" % (
        out["full_recompute_s"], TARGET_FULL_S, "met" if out["full_target_met"] else "MISSED",
        out["incremental_s"], TARGET_INCREMENTAL_S, "met" if out["incremental_target_met"] else "MISSED"))
    if args.strict and not (out["full_target_met"] and out["incremental_target_met"]):
        failures.append("a time target was missed (--strict)")
    out["ok"] = not failures
    for f in failures:
        say("FAILED: %s" % f)
    say(json.dumps(out, sort_keys=True, default=str))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
