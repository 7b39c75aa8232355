# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast path engine: the rules of ``pce`` computed for all pairs at once with numpy.

How it stays exact (it must give the reference engine's answer, byte for byte):

* Core all-pairs shortest paths (Floyd-Warshall on the shared integer weights) are
  computed once per pruning key and shared by every tenant.  Edges never transit, so a
  pair's candidates are just ``src -> a ~> b -> dst`` over its access POPs (plus the direct
  arc): a handful per pair, vectorised over all pairs of a tenant.
* Ties: ``NH[a, b]`` is the smallest-named tight successor, so the core path it spells is
  the lexicographically smallest optimal one; ties between candidates of a pair are
  settled by comparing their node sequences, as the reference does.
* When the least-weight path breaks a bound, a lower bound per metric (float APSP) may
  prove that nothing is admitted; otherwise that pair goes to the exact search of
  ``pce.constrained_best`` (counted in ``stats['slow_pairs']``), run step for step but for
  all such pairs of a tenant and variant in lockstep (``_search_batch``).  Backups reuse the
  core paths when they avoid the primary's transit nodes, re-solve the detour around them
  when it could win (``_avoiding_dist``), and skip the search when no path avoiding the
  primary's POPs can meet the bounds (``_backup_infeasible``).
* Results are materialised (metrics, SIDs, reasons) through the same functions as the
  reference engine, lazily: the compute step keeps only choices, and the network they
  were computed from (``update`` works on a copy), so a result set is a snapshot.
* ``update`` after new core measurements repairs each core solution (only the core pairs
  whose walk crossed a changed arc or a changed next hop are walked again) and recomputes
  only the pairs that a change can reach (``_Best.dirty``): a pair answered by its
  least-weight candidate when a changed candidate could win or its winner changed; a pair
  with an exact search when the search popped a changed arc or a core whose bounds moved
  (if every change made arcs worse: only the partial paths that decided the search count;
  else anything it read).  The recomputed pairs form a new layer of the block
  (``_BlockView``) over the previous answer.  A pair's choice and its backup are judged
  apart: a layer recomputes the backup alone where only the backup search may change
  (the choice stays in its older layer), and keeps the older backup where the recomputed
  choice has the same transit cores.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import heapq
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import pce as P
from .pce import (BEST_EFFORT, INF, UNREACHABLE, Choice, Network, PathSet, ReferenceEngine,
                  Variant, diagnose, make_result, normalise_current, path_metrics, profile_chain,
                  variants_for, violations)

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

FINF = float("inf")


class _CoreSolution:
    """Everything about the core graph under one pruning key.

    Built from scratch, or repaired from the solution of the previous measurements
    (``prev``): only the core pairs whose distance, next hops or arcs changed are walked
    again.  ``chg`` then says what changed (``None`` for a fresh build): ``D`` (distance),
    ``path`` (distance, node sequence or any metric sum), ``lb`` per lower-bound metric,
    ``rows`` (cores whose outgoing arcs changed) and ``any``; the engine's ``update`` uses it
    to find the pairs to recompute.
    """

    def __init__(self, eng: "FastEngine", variant: Variant, prev: "Optional[_CoreSolution]" = None,
                 arc_chg=None):
        C = eng.C
        m = eng.core
        allowed = _arc_bounds_ok(m, variant)
        if variant.exclude_countries:
            bad = np.array([eng.net.country[c] in variant.exclude_countries for c in eng.cores])
            allowed &= ~eng.via_mask(variant.exclude_countries)
        else:
            bad = np.zeros(C, dtype=bool)
        if variant.exclude_regions:
            bad |= np.array([eng.net.region[c] in variant.exclude_regions for c in eng.cores])
        self.node_bad = bad
        allowed &= ~bad[:, None] & ~bad[None, :]
        self.allowed = allowed
        w = P.arc_weight(variant.mode, m["lat"], m["cost"] * variant.fec_overhead, m["loss"], m["bw"])
        w = np.where(allowed, w, INF)
        np.fill_diagonal(w, 0)
        self.W = w
        self.variant = variant
        self.words = (C + 63) // 64
        self._lb: Dict[str, Any] = {}
        self._succ: Optional[Dict[str, List[Tuple[str, int]]]] = None
        self.chg = None
        if prev is not None:
            w_chg = w != prev.W
            arcs = np.nonzero(w_chg | (arc_chg & (allowed | prev.allowed)))
            if len(arcs[0]) <= _REPAIR_MAX_ARCS:
                self._repair(eng, prev, w_chg, arcs)
                return
        self.D = D = _floyd_warshall(w)
        self.NH = _next_hops(w, D, np.arange(C), np.arange(C))
        self.mask = np.zeros((C, C, self.words), dtype=np.uint64)
        self.P = {k: np.full((C, C), FINF) for k in ("lat", "lat95", "jit", "losslog", "cost", "bw")}
        self.P["hops"] = np.full((C, C), 10 ** 6, dtype=np.int64)
        a_idx, b_idx = np.nonzero(D < INF)
        self._walk_pairs(eng, a_idx, b_idx)

    def _walk_pairs(self, eng, a_idx, b_idx):
        """Walk the core paths of the pairs (a_idx, b_idx) along ``NH``: node masks and
        metric sums (the pairs' entries must be empty / unreachable beforehand)."""
        m, nh, mask, variant = eng.core, self.NH, self.mask, self.variant
        cur = a_idx.copy()
        sums = {k: np.zeros(len(a_idx)) for k in ("lat", "lat95", "jit", "losslog", "cost")}
        hops = np.zeros(len(a_idx), dtype=np.int64)
        bw = np.full(len(a_idx), FINF)
        _setbit(mask, a_idx, b_idx, cur)
        active = cur != b_idx
        lossl = eng.core_losslog
        while active.any():
            ca, cb, cc = a_idx[active], b_idx[active], cur[active]
            nxt = nh[cc, cb]
            sums["lat"][active] += m["lat"][cc, nxt]
            sums["lat95"][active] += m["lat95"][cc, nxt]
            sums["jit"][active] += m["jit"][cc, nxt]
            sums["losslog"][active] += lossl[cc, nxt]
            sums["cost"][active] += m["cost"][cc, nxt] * variant.fec_overhead
            bw[active] = np.minimum(bw[active], m["bw"][cc, nxt])
            hops[active] += 1
            _setbit(mask, ca, cb, nxt)
            cur[active] = nxt
            active = cur != b_idx
        for k, v in sums.items():
            self.P[k][a_idx, b_idx] = v
        self.P["bw"][a_idx, b_idx] = bw
        self.P["hops"][a_idx, b_idx] = hops

    def _repair(self, eng, prev, w_chg, arcs):
        """The previous solution with the changes of a few arcs (``arcs``: their (u, v)
        index arrays; weight or any metric changed) applied.

        Distances are integers, so Floyd-Warshall again gives the same D as a fresh build;
        next hops are recomputed in the columns whose distances changed and the rows whose
        arcs changed; a core path is walked again when its old walk crossed a changed arc
        or a node whose next hop changed (else it and its sums are unchanged)."""
        C = eng.C
        W = self.W
        self.D = D = _floyd_warshall(W) if w_chg.any() else prev.D
        chgD = D != prev.D
        cols = np.nonzero(chgD.any(axis=0))[0]
        rows = np.nonzero(w_chg.any(axis=1))[0]
        NH = prev.NH.copy()
        if len(cols):
            NH[:, cols] = _next_hops(W, D, np.arange(C), cols)
        if len(rows):
            NH[rows, :] = _next_hops(W, D, rows, np.arange(C))
        self.NH = NH
        chgNH = NH != prev.NH
        # which old walks are stale
        stale = chgD.copy()
        for u, v in zip(*arcs):
            b_on = np.nonzero(prev.NH[u, :] == v)[0]  # targets whose path leaves u for v
            b_on = b_on[b_on != u]
            if len(b_on):
                has_u = (prev.mask[:, b_on, u // 64] >> np.uint64(u % 64)) & np.uint64(1)
                stale[:, b_on] |= has_u.astype(bool)
        if chgNH.any():
            xs, bs = np.nonzero(chgNH)
            chgbits = np.zeros((C, self.words), dtype=np.uint64)
            np.bitwise_or.at(chgbits, (bs, xs // 64), np.uint64(1) << (xs % 64).astype(np.uint64))
            stale |= ((prev.mask & chgbits[None, :, :]) != 0).any(axis=2)
        self.mask = prev.mask.copy()
        self.P = {k: v.copy() for k, v in prev.P.items()}
        a_idx, b_idx = np.nonzero(stale)
        self.mask[a_idx, b_idx] = 0
        for k, v in self.P.items():
            v[a_idx, b_idx] = 10 ** 6 if k == "hops" else FINF
        live = D[a_idx, b_idx] < INF
        self._walk_pairs(eng, a_idx[live], b_idx[live])
        path = np.zeros((C, C), dtype=bool)
        path[a_idx, b_idx] = True
        # a re-walked pair whose path and sums came out the same did not change
        same = (self.mask[a_idx, b_idx] == prev.mask[a_idx, b_idx]).all(axis=1)
        same &= D[a_idx, b_idx] == prev.D[a_idx, b_idx]
        for k, v in self.P.items():
            same &= v[a_idx, b_idx] == prev.P[k][a_idx, b_idx]
        seq = np.zeros((C, C), dtype=bool)  # the node sequence may differ on the same node set
        if chgNH.any():
            seq[a_idx, b_idx] = ((prev.mask[a_idx, b_idx] & chgbits[b_idx]) != 0).any(axis=1)
        path[a_idx[same], b_idx[same]] = False
        path |= seq
        lb = {}
        for metric, old in prev._lb.items():
            new = self.lower_bound(eng, metric)
            lb[metric] = new != old
        rows_chg = np.zeros(C, dtype=bool)
        rows_chg[arcs[0]] = True
        self.chg = {"D": chgD, "path": path | chgD, "lb": lb, "rows": rows_chg, "any": len(arcs[0]) > 0,
                    "arcs": (np.asarray(arcs[0], dtype=np.int64), np.asarray(arcs[1], dtype=np.int64)),
                    "worse_w": bool((self.W[arcs] >= prev.W[arcs]).all())}
        self.chg["worse_all"] = self.chg["worse_w"] and eng._metrics_worse

    def lower_bound(self, eng, metric: str):
        """Least possible sum of one metric between cores (same pruning)."""
        if metric not in self._lb:
            key = (metric, self.allowed.tobytes())
            got = eng._lb_cache.get(key)
            if got is None:
                if metric == "hops":
                    w = np.where(self.allowed, 1.0, FINF)
                else:
                    w = np.where(self.allowed, eng.core_additive(metric), FINF)
                np.fill_diagonal(w, 0.0)
                got = eng._lb_cache[key] = _floyd_warshall(w)
            self._lb[metric] = got
        return self._lb[metric]

    def successors(self, cores) -> Dict[str, List[Tuple[str, int]]]:
        """name -> [(next core name, arc weight)] over the allowed core arcs."""
        if self._succ is None:
            self._succ = {}
            for i, name in enumerate(cores):
                row = self.W[i]
                js = np.nonzero(row < INF)[0]
                self._succ[name] = [(cores[j], int(row[j])) for j in js if j != i]
        return self._succ

    def core_path(self, a: int, b: int) -> List[int]:
        out = [a]
        while a != b:
            a = int(self.NH[a, b])
            out.append(a)
        return out


_REPAIR_MAX_ARCS = 64  # more changed core arcs than this: build the solution afresh


def _next_hops(w, D, rows, cols):
    """NH[a, b] for a in rows, b in cols: the smallest tight successor of a towards b (the
    lexicographic rule), -1 where b is unreachable, a itself on the diagonal.

    A successor y of a is tight when w[a, y] + D[y, b] == D[a, b]; no y gives less (D is
    least), so the tight ones are those of the least sum over y != a, and argmin returns
    the first (smallest) of them."""
    through = w[rows][:, :, None] + D[None, :, cols]  # [a, y, b]; INF + INF fits in int64
    through[np.arange(len(rows)), rows, :] = 2 * INF  # y != a
    nh = np.where(D[rows][:, cols] < INF, through.argmin(axis=1), -1)
    same = rows[:, None] == cols[None, :]
    nh[same] = rows[:, None].repeat(len(cols), 1)[same]
    return nh


def _floyd_warshall(w):
    """All-pairs least sums of an arc matrix (diagonal 0, missing arcs INF or inf)."""
    D = w.copy()
    for k in range(D.shape[0]):
        np.minimum(D, D[:, k:k + 1] + D[k:k + 1, :], out=D)
    return D


def _arc_bounds_ok(m, variant: Variant):
    """The per-arc pruning rules of ``pce.arc_allowed`` that read only an arc's metrics
    (geo, direct-path policy and node rules are applied by the callers)."""
    ok = m["exists"] & (m["loss"] < 1.0) & (m["bw"] + P.BOUND_EPS >= variant.min_bandwidth_mbps)
    if variant.max_latency_ms is not None:
        ok &= m["lat"] <= variant.max_latency_ms + P.BOUND_EPS
    if variant.max_jitter_ms is not None:
        ok &= m["jit"] <= variant.max_jitter_ms + P.BOUND_EPS
    if variant.max_loss is not None:
        ok &= m["loss"] <= variant.max_loss + P.BOUND_EPS
    return ok


def _setbit(mask, a, b, node):
    word = node // 64
    bit = (np.uint64(1) << (node % 64).astype(np.uint64))
    np.bitwise_or.at(mask, (a, b, word), bit)


class _Edges:
    """A tenant's access and direct arcs as arrays, for one variant."""

    def __init__(self, eng: "FastEngine", tenant: str, variant: Variant, sol: _CoreSolution):
        t = eng.tenant_struct(tenant)
        self.t = t
        E, K = t["A"].shape
        out = {}
        for direction in ("out", "in"):
            mt = t[direction]
            ok = _arc_bounds_ok(mt, variant)
            cores = np.where(t["A"] >= 0, t["A"], 0)
            ok &= ~sol.node_bad[cores]
            if variant.exclude_countries:
                ok &= ~np.array([[bool(set(v) & set(variant.exclude_countries)) for v in row]
                                 for row in mt["via"]], dtype=bool).reshape(E, K)
            w = P.arc_weight(variant.mode, mt["lat"], mt["cost"] * variant.fec_overhead, mt["loss"], mt["bw"])
            out[direction] = (ok, np.where(ok, w, INF))
        self.out_ok, self.Wout = out["out"]
        self.in_ok, self.Win = out["in"]
        d = t["direct"]
        ok = _arc_bounds_ok(d, variant) & variant.allow_direct
        if variant.exclude_countries:
            ok &= ~d["via_excl"](variant.exclude_countries)
        self.direct_ok = ok
        self.Wd = np.where(ok, P.arc_weight(variant.mode, d["lat"], d["cost"] * variant.fec_overhead,
                                            d["loss"], d["bw"]), INF)


class _Best:
    """Best path per pair of one tenant under one variant, with optional node drops."""

    def __init__(self, eng, tenant, variant, sol, ed, need, drop_masks=None, drop_direct=None,
                 drops_fn=None, lazy=False):
        self.drops_fn = drops_fn
        self.lazy = lazy  # exact searches left for ``_run_searches`` (several Bests at once)
        self.done = False
        self.net = eng.net  # the measurements this was computed from (results are snapshots)
        self.searched: Dict[Tuple[int, int], Any] = {}  # pair -> arcs its exact search popped
        self.searched_matter: Dict[Tuple[int, int], set] = {}  # pair -> arcs of the paths that decided it
        self.searched_ext: Dict[Tuple[int, int], dict] = {}  # pair -> arc -> extreme sums of the paths expanded over it
        self.drop_masks = drop_masks
        t = ed.t
        A = t["A"]
        E, K = A.shape
        Ac = np.where(A >= 0, A, 0)
        # candidate weights of the needed pairs only [p, i, j] (other pairs stay INF:
        # nothing reads them)
        eye = np.eye(E, dtype=bool)
        S, D = np.nonzero(need & ~eye)
        KK = K * K
        As, Ad = Ac[S][:, :, None], Ac[D][:, None, :]
        wc = ed.Wout[S][:, :, None] + sol.D[As, Ad]
        np.minimum(wc, INF, out=wc)
        wc = wc + ed.Win[D][:, None, :]
        np.minimum(wc, INF, out=wc)
        n_need = len(S)
        # row of each needed pair in the per-pair tables (``flat_p``, ``conflict_p``); other
        # pairs point at a last row of INF (no candidate), so that nothing is allocated per E x E x K x K
        pidx = np.full((E, E), n_need, dtype=np.int64)
        pidx[S, D] = np.arange(n_need)
        conflict = None
        conflict_p = None
        if drop_masks is not None:
            # candidate valid only if a, b and the core path avoid the dropped nodes
            dm = drop_masks[S, D]  # [p, w]
            hit = ((sol.mask[As, Ad] & dm[:, None, None, :]) != 0).any(axis=-1)
            a_bit = t.get("bits")  # [E, K, w]: the access POPs as node masks
            if a_bit is None:
                a_bit = t["bits"] = _bits(Ac, sol.words)
            a_drop = ((a_bit[S] & dm[:, None, :]) != 0).any(-1)  # [p, i]
            b_drop = ((a_bit[D] & dm[:, None, :]) != 0).any(-1)  # [p, j]
            ends = a_drop[:, :, None] | b_drop[:, None, :]
            conflict = hit & ~ends & (wc < INF)
            conflict_p = np.where(conflict, wc, INF).reshape(n_need, KK)  # lower bounds of detours around the drops
            wc = np.where(hit | ends, INF, wc)
        wd = ed.Wd[S, D]
        if drop_direct is not None:
            wd = np.where(drop_direct[S, D], INF, wd)
        flat_p = np.concatenate([wc.reshape(-1, KK), wd[:, None]], axis=1)
        best_p = flat_p.min(axis=1)
        flat = np.full((n_need + 1, KK + 1), INF, dtype=np.int64)
        flat[:n_need] = flat_p
        best = np.full((E, E), INF, dtype=np.int64)
        best[S, D] = best_p
        self.eng, self.tenant, self.variant, self.sol, self.ed = eng, tenant, variant, sol, ed
        self.E, self.K = E, K
        self.flat, self.pidx = flat, pidx  # candidate weights of pair (s, d): flat[pidx[s, d]]
        self.w = best
        self.arg = np.zeros((E, E), dtype=np.int64)
        self.arg[S, D] = flat_p.argmin(axis=1)
        self.ties = np.zeros((E, E), dtype=bool)
        self.ties[S, D] = (flat_p == best_p[:, None]).sum(axis=1) > 1
        self.explicit: Dict[Tuple[int, int], Optional[List[str]]] = {}
        self.why: Dict[Tuple[int, int], Any] = {}  # str, or (path, note): see _why
        self.slow = 0
        self._pending: List[Tuple[int, int, List[str]]] = []  # (s, d, least-weight path)
        idx = np.arange(E)
        finite = best < INF
        finite[idx, idx] = False
        self.unsure = np.zeros((E, E), dtype=bool)
        if conflict is not None:
            lbc = np.full((E, E), INF, dtype=np.int64)
            lbc[S, D] = conflict_p.min(axis=1)
            self.unsure = finite & (lbc <= best)
            # a detour around the dropped nodes might also win where no clean candidate exists
            self.unsure |= (~finite) & (lbc < INF)
            self.unsure[idx, idx] = False
        self.need = need
        self.admitted = np.zeros((E, E), dtype=bool)
        # pairs whose winner is a detour around the dropped nodes: exact paths, found below
        self.replaced: Dict[Tuple[int, int], Optional[List[str]]] = {}
        if conflict is not None and (need & self.unsure).any():
            self._replace(need & self.unsure, conflict_p, drop_masks)
        self._resolve(finite)

    # -- per-pair path of the vectorised winner ------------------------------------------
    def path_idx(self, s: int, d: int) -> List[int]:
        """Global-name-rank path (cores as core positions mapped to names later)."""
        k = int(self.arg[s, d])
        return self._cand_path(s, d, k)

    def _cand_path(self, s, d, k) -> List[str]:
        t = self.ed.t
        names = t["names"]
        if k == self.K * self.K:
            return [names[s], names[d]]
        i, j = divmod(k, self.K)
        a, b = int(t["A"][s, i]), int(t["A"][d, j])
        cores = self.eng.cores
        return [names[s]] + [cores[c] for c in self.sol.core_path(a, b)] + [names[d]]

    def _resolve(self, finite):
        eng, variant, sol, ed = self.eng, self.variant, self.sol, self.ed
        E, K = self.E, self.K
        t = ed.t
        need = self.need & finite & ~self.unsure
        # ties between candidates: settle by node sequence, as the reference does
        for s, d in zip(*np.nonzero(need & self.ties)):
            cands = np.nonzero(self.flat[self.pidx[s, d]] == self.w[s, d])[0]
            paths = [(tuple(self.net.index[n] for n in self._cand_path(s, d, int(k))), int(k)) for k in cands]
            self.arg[s, d] = min(paths)[1]
        # metrics of the winner, vectorised over the needed pairs only (an update needs few)
        PS, PD = np.nonzero(need)
        arg = self.arg[PS, PD]
        is_dir = arg == K * K
        i, j = np.divmod(np.where(is_dir, 0, arg), K)
        Ac = np.where(t["A"] >= 0, t["A"], 0)
        a = Ac[PS, i]
        b = Ac[PD, j]
        mo, mi, dr = t["out"], t["in"], t["direct"]

        def pick(name):
            if name == "hops":
                via = 2 + sol.P["hops"][a, b]
                return np.where(is_dir, 1, via)
            via = mo[name][PS, i] + sol.P[name][a, b] + mi[name][PD, j]
            return np.where(is_dir, dr[name][PS, PD], via)
        ok_p = np.ones(len(PS), dtype=bool)
        if variant.max_latency_ms is not None:
            ok_p &= pick("lat") <= variant.max_latency_ms + P.BOUND_EPS
        if variant.max_jitter_ms is not None:
            ok_p &= pick("jit") <= variant.max_jitter_ms + P.BOUND_EPS
        if variant.max_loss is not None:
            ok_p &= -np.expm1(-pick("losslog")) <= variant.max_loss + P.BOUND_EPS
        if variant.max_hops is not None:
            ok_p &= pick("hops") <= variant.max_hops
        ok = np.zeros((E, E), dtype=bool)
        ok[PS[ok_p], PD[ok_p]] = True
        self.admitted = need & ok
        # broken bounds: prove infeasible by lower bounds, else ask the exact search
        broken = need & ~ok
        if broken.any():
            BS, BD = np.nonzero(broken)
            lbs = {}
            for metric, bound in variant.bounds().items():
                lbs[metric] = self._lower_bound(metric, BS, BD)
            for q, (s, d) in enumerate(zip(BS.tolist(), BD.tolist())):
                proven = False
                for metric, bound in variant.bounds().items():
                    lb = lbs[metric][q]
                    if metric == "loss":
                        lb = -math.expm1(-lb)
                    if metric == "hops" and lb > bound:
                        proven = True
                    elif metric != "hops" and lb > bound + P.LB_EPS:
                        proven = True
                # the words of the broken bounds are built only if asked for (``get``)
                path = self._cand_path(s, d, int(self.arg[s, d]))
                if proven:
                    self.explicit[(s, d)] = None
                    self.why[(s, d)] = (path, "")
                else:
                    self._slow(s, d, path)
        arcs = self.net.arcs_for(self.tenant) if self.replaced else None
        for (s, d), path in self.replaced.items():
            if path is None:
                self.explicit[(s, d)] = None
                self.why[(s, d)] = "no path"
                continue
            if _admits(arcs, path, variant):
                self.explicit[(s, d)] = path
                self.admitted[s, d] = True
            else:
                self._slow(s, d, path)
        self._prepare_slow()
        if not self.lazy:
            _run_searches([self])

    def _finish(self, found, expanded):
        """Results of this Best's exact searches (``_prepare_slow``'s queries, in order)."""
        for (s, d, least), (path, why), ex in zip(self._where, found, expanded):
            self.searched[(s, d)], self.searched_matter[(s, d)], self.searched_ext[(s, d)] = ex
            self.explicit[(s, d)] = path
            if path is None:
                self.why[(s, d)] = (least, why)
            else:
                self.admitted[s, d] = True
        self._queries, self._where = [], []
        # pairs not answered by their least-weight candidate alone (see ``dirty``), and
        # those of them whose path an exact search found (no detour first): bounds that
        # only grow cannot prove such a pair infeasible
        self.special = np.zeros((self.E, self.E), dtype=bool)
        for key in self.explicit:
            self.special[key] = True
        for key in self.replaced:
            self.special[key] = True
        self.search_alone = np.zeros((self.E, self.E), dtype=bool)
        for key in self.searched:
            if key not in self.replaced and self.explicit.get(key) is not None:
                self.search_alone[key] = True
        # pairs answered by a detour around the dropped nodes (or by none) without a search
        self.detour_only = np.zeros((self.E, self.E), dtype=bool)
        self.replaced_mask = np.zeros((self.E, self.E), dtype=bool)
        for key in self.replaced:
            self.replaced_mask[key] = True
            if key not in self.searched:
                self.detour_only[key] = True
        # backups (whose reasons are never shown) proven to have no admitted path: by
        # bounds, by an exhausted search, or with no path at all
        self.none_proven = np.zeros((self.E, self.E), dtype=bool)
        if self.drops_fn is not None:
            for key, path in self.explicit.items():
                why = self.why.get(key)
                if path is None and not (isinstance(why, tuple) and why[1]):
                    self.none_proven[key] = True
            self.none_proven |= self.need & (self.w >= INF) & ~self.special  # no candidate, no detour
        self.done = True

    def _lower_bound(self, metric, S, D):
        """Per pair (``S[q]``, ``D[q]``): least sum of a metric over every candidate (same
        pruning as the walk)."""
        sol, ed = self.sol, self.ed
        t = ed.t
        Ac = np.where(t["A"] >= 0, t["A"], 0)
        core = sol.lower_bound(self.eng, metric)[Ac[S][:, :, None], Ac[D][:, None, :]]  # [q, i, j]
        key = {"latency": "lat", "jitter": "jit", "loss": "losslog"}.get(metric)
        if metric == "hops":
            ao = np.where(ed.out_ok, 1.0, FINF)
            ai = np.where(ed.in_ok, 1.0, FINF)
            dd = np.where(ed.direct_ok & (self.ed.Wd < INF), 1.0, FINF)
        else:
            ao = np.where(ed.out_ok, t["out"][key], FINF)
            ai = np.where(ed.in_ok, t["in"][key], FINF)
            dd = np.where(ed.direct_ok, t["direct"][key], FINF)
        K = ao.shape[1]
        lb = (ao[S][:, :, None] + core + ai[D][:, None, :]).reshape(len(S), K * K).min(axis=1)
        return np.minimum(lb, dd[S, D])

    def _replace(self, pairs, conflict_p, drop_masks):
        """Exact best candidate of ``pairs`` when detours around the dropped nodes may win.

        A candidate whose core path crosses a dropped node is re-solved on the core minus
        those nodes (distances to its egress POP avoiding the dropped set, ``_avoiding_dist``);
        its lexicographically smallest tight path is then walked as the reference does.
        Candidates, queries and weights are built for all pairs at once; only the tight
        options of each pair are turned into paths.
        """
        eng, sol, t = self.eng, self.sol, self.ed.t
        K = self.K
        Ac = np.where(t["A"] >= 0, t["A"], 0)
        C = eng.C
        S, D = np.nonzero(pairs)
        n_pairs = len(S)
        best = self.w[S, D]
        finite = best < INF
        cw = conflict_p[self.pidx[S, D]]
        sel = np.where(finite[:, None], cw <= best[:, None], cw < INF)
        pi, k = np.nonzero(sel)  # per pair, candidates in index order
        ci, cj = np.divmod(k, K)
        cs, cd = S[pi], D[pi]
        ca, cb = Ac[cs, ci], Ac[cd, cj]
        # one query per (egress POP, dropped set), numbered in order of first use
        cmask = drop_masks[cs, cd]  # [n, words]
        if len(pi):
            # a dict numbers the distinct rows in order of first use (np.unique(axis=0) costs
            # more than the rows it sorts when there are few)
            keys = np.ascontiguousarray(np.concatenate([cb.astype(np.uint64)[:, None], cmask], axis=1))
            size = keys.shape[1] * 8
            raw = keys.tobytes()
            seen: Dict[bytes, int] = {}
            first_l = []
            cq_l = []
            for r in range(len(pi)):
                key = raw[r * size:(r + 1) * size]
                q = seen.get(key)
                if q is None:
                    q = seen[key] = len(first_l)
                    first_l.append(r)
                cq_l.append(q)
            cq = np.array(cq_l, dtype=np.int64)
            first = np.array(first_l, dtype=np.int64)
            q_target = cb[first]
            q_words = np.ascontiguousarray(cmask[first])
        else:
            cq = np.zeros(0, dtype=np.int64)
            q_target = np.zeros(0, dtype=np.int64)
            q_words = np.zeros((0, sol.words), dtype=np.uint64)
        excl = _unpack(q_words, C)
        dist = _avoiding_dist(sol, q_target, excl, q_words)
        core = dist[cq, ca]
        reach = core < INF
        wv = np.where(reach, self.ed.Wout[cs, ci] + np.where(reach, core, 0) + self.ed.Win[cd, cj], INF)
        # least weight per pair over its options (tied clean candidates, reachable detours)
        has = finite | (np.bincount(pi[reach], minlength=n_pairs) > 0)
        low = np.where(finite, best, INF)
        np.minimum.at(low, pi[reach], wv[reach])
        options: List[List[Any]] = [[] for _p in range(n_pairs)]
        tie = finite & (best == low) & has
        if tie.any():
            tp, tk = np.nonzero((self.flat[self.pidx[S, D]] == best[:, None]) & tie[:, None])
            for p, kk in zip(tp.tolist(), tk.tolist()):
                options[p].append(self._cand_path(int(S[p]), int(D[p]), kk))
        wi = np.nonzero(reach & (wv == low[pi]))[0]
        walks = list(zip(cq[wi].tolist(), ca[wi].tolist(), cb[wi].tolist()))
        walked = _walk_many(sol.W, dist, excl, walks)
        for p, w in zip(pi[wi].tolist(), walked):
            options[p].append(w)
        index, names, cores = self.net.index, t["names"], eng.cores
        S_l, D_l, has_l = S.tolist(), D.tolist(), has.tolist()
        for p in range(n_pairs):  # pairs without any option first, as the pair-by-pair loop
            if not has_l[p]:
                self.replaced[(S_l[p], D_l[p])] = None
        for p in range(n_pairs):
            if not has_l[p]:
                continue
            s, d = S_l[p], D_l[p]
            paths = []
            for path in options[p]:
                if isinstance(path[0], int):  # a walk over core positions
                    path = [names[s]] + [cores[c] for c in path] + [names[d]]
                paths.append((tuple(index[n] for n in path), path))
            self.replaced[(s, d)] = min(paths)[1]
        self.unsure &= ~pairs

    def _slow(self, s, d, path):
        """The least-weight ``path`` breaks a bound: queue the pair for the exact search
        within the bounds (``_flush_slow`` runs the queued pairs together)."""
        self._pending.append((s, d, path))

    def _prepare_slow(self):
        """The exact searches the queued pairs need (``_queries``; ``_where``: their pairs),
        after the bounds at the source and the backup bounds proved the others empty."""
        pending, self._pending = self._pending, []
        self._queries, self._where = [], []
        if not pending:
            return
        self.slow += len(pending)
        eng, t, variant, C = self.eng, self.ed.t, self.variant, self.eng.C
        S = np.array([p[0] for p in pending], dtype=np.int64)
        D = np.array([p[1] for p in pending], dtype=np.int64)
        lbs = self._to_dst_bounds(S, D)
        arcs = self.net.arcs_for(self.tenant)
        queries, where = [], []
        for q, (s, d, least) in enumerate(pending):
            src = t["names"][s]
            at_src = {m: ({src: v[1][q]} if v[1][q] is not None else {}) for m, v in lbs.items()}
            if P.bounds_infeasible(at_src, variant, src):
                self.explicit[(s, d)] = None
                self.why[(s, d)] = (least, "")
                continue
            drop_nodes, drop_links = self.drops_fn(s, d) if self.drops_fn else ((), ())
            if drop_nodes and self._backup_infeasible(s, d, drop_nodes, drop_links, lbs, q):
                # a backup's reason is never shown, only whether there is one: no search
                self.explicit[(s, d)] = None
                self.why[(s, d)] = (least, "")
                continue
            row = {}
            for m, (to_dst, _at) in lbs.items():
                r = np.empty(C + 1, dtype=to_dst.dtype)
                r[:C] = to_dst[q]
                r[C] = 0
                row[m] = r
            queries.append((s, d, set(drop_nodes), set(drop_links), row, self.ed, arcs))
            where.append((s, d, least))
        self._queries, self._where = queries, where

    def _backup_infeasible(self, s, d, drop_nodes, drop_links, lbs, q) -> bool:
        """True when no path avoiding the dropped nodes can meet the bounds.

        The exact search (and the reference's) bounds a backup by the pair's graph without
        the drops; a node-disjoint backup cannot use the primary's access POPs, so bounding
        over the remaining access arcs proves many searches empty before they start.  Only
        used where the search's words are not shown (backups), because a search that runs
        out of its candidate limit says so; here the answer is "none" either way.
        """
        t, ed, eng = self.ed.t, self.ed, self.eng
        src, dst = t["names"][s], t["names"][d]
        A = t["A"]
        keys = {"latency": "lat", "jitter": "jit", "loss": "losslog"}
        at_src: Dict[str, Dict[str, float]] = {}
        for metric in self.variant.bounds():
            core = self.sol.lower_bound(eng, metric)
            best = FINF
            ins = [(int(A[d, j]), 1.0 if metric == "hops" else float(t["in"][keys.get(metric, "lat")][d, j]))
                   for j in range(A.shape[1]) if ed.Win[d, j] < INF and eng.cores[int(A[d, j])] not in drop_nodes
                   and (eng.cores[int(A[d, j])], dst) not in drop_links]
            for k in range(A.shape[1]):
                a = int(A[s, k])
                if ed.Wout[s, k] >= INF or eng.cores[a] in drop_nodes or (src, eng.cores[a]) in drop_links:
                    continue
                out = 1.0 if metric == "hops" else float(t["out"][keys.get(metric, "lat")][s, k])
                for b, w_in in ins:
                    best = min(best, out + float(core[a, b]) + w_in)
            if ed.Wd[s, d] < INF and (src, dst) not in drop_links:
                best = min(best, 1.0 if metric == "hops" else float(t["direct"][keys.get(metric, "lat")][s, d]))
            at_src[metric] = {src: best}
        return P.bounds_infeasible(at_src, self.variant, src)

    def _still_pushed(self, ext, lbs, q, col) -> bool:
        """Whether partial paths with the extreme sums ``ext`` at core ``col`` pass the bound
        checks of ``_search_batch`` with the bounds ``lbs`` (``_to_dst_bounds``, row ``q``),
        computed as the search computes them."""
        lat, jit, keep, hops = ext
        bounds = self.variant.bounds()
        slack = P.BOUND_EPS + P.LB_EPS
        if "latency" in bounds and lat + float(lbs["latency"][0][q, col]) > bounds["latency"] + slack:
            return False
        if "jitter" in bounds and jit + float(lbs["jitter"][0][q, col]) > bounds["jitter"] + slack:
            return False
        if "loss" in bounds and -math.expm1(math.log(keep) - float(lbs["loss"][0][q, col])) > bounds["loss"] + slack:
            return False
        return not ("hops" in bounds and hops + float(lbs["hops"][0][q, col]) > bounds["hops"])

    def _to_dst_bounds(self, S, D, sol=None) -> Dict[str, Tuple[Any, List[Optional[float]]]]:
        """Per pair (``S[q]``, ``D[q]``): least weight and least sum of each bounded metric
        from every core to the destination, and from the source (``ReferenceEngine.
        lower_bounds`` on the pair's graph without drops).  ``metric -> ([Q, C] array with
        0 (weight) or inf where the destination is unreachable, [value at the source or
        None])``."""
        ed, t, eng = self.ed, self.ed.t, self.eng
        sol = sol or self.sol
        Ac = np.where(t["A"] >= 0, t["A"], 0)
        ok_in = ed.in_ok[D] & (ed.Win[D] < INF)  # [Q, K]
        ok_out = ed.out_ok[S] & (ed.Wout[S] < INF)
        direct = ed.Wd[S, D] < INF
        B = Ac[D]  # [Q, K] the destinations' access POPs
        out: Dict[str, Tuple[Any, List[Optional[float]]]] = {}
        keys = {"latency": "lat", "jitter": "jit", "loss": "losslog", "hops": None}
        for metric in ["weight"] + list(self.variant.bounds()):
            if metric == "weight":
                core, arc_in, arc_out, arc_d, none = sol.D, ed.Win[D], ed.Wout[S], ed.Wd[S, D], INF
            elif metric == "hops":
                core, none = sol.lower_bound(eng, "hops"), FINF
                arc_in, arc_out, arc_d = np.ones(B.shape), np.ones(B.shape), np.ones(len(S))
            else:
                core = sol.lower_bound(eng, metric)
                key = keys[metric]
                arc_in, arc_out, arc_d, none = t["in"][key][D], t["out"][key][S], t["direct"][key][S, D], FINF
            cb = core[:, B].transpose(1, 0, 2) + arc_in[:, None, :]  # [Q, C, K]
            to_dst = np.where(ok_in[:, None, :], cb, none).min(axis=2)
            to_dst = np.minimum(to_dst, none)
            first = np.take_along_axis(to_dst, np.where(ok_out, Ac[S], 0), 1)
            from_src = np.where(ok_out, arc_out + first, none).min(axis=1)
            from_src = np.where(direct, np.minimum(from_src, arc_d), from_src)
            cast = int if metric == "weight" else float
            at_src = [cast(v) if v < none else None for v in from_src.tolist()]
            if metric == "weight":
                to_dst = np.where(to_dst < INF, to_dst, 0)
            out[metric] = (to_dst, at_src)
        return out

    # -- the scalar interface (what pce.choose_chain / diagnose expect) -------------------
    def get(self, s: int, d: int) -> Tuple[Optional[Choice], str]:
        if (s, d) in self.explicit:
            path = self.explicit[(s, d)]
            if path is None:
                return None, self._why(s, d)
        elif self.w[s, d] >= INF:
            return None, "no path"
        elif not self.admitted[s, d]:
            raise AssertionError("pair %d,%d was not resolved" % (s, d))
        else:
            path = self._cand_path(s, d, int(self.arg[s, d]))
        arcs = self.net.arcs_for(self.tenant)
        return Choice(self.variant, list(path), path_metrics(arcs, path, self.variant)), ""

    def path_of(self, s, d) -> List[str]:
        """The admitted path of pair (s, d) here, as ``get`` gives it, without metrics."""
        if (s, d) in self.explicit:
            return list(self.explicit[(s, d)])
        return self._cand_path(s, d, int(self.arg[s, d]))

    def why_or_later(self, s, d):
        """``get(s, d)[1]`` for a pair without a choice here, without building words: a
        string, or this Best's ``_LaterWhy`` (never empty) whose ``text()`` gives them."""
        if (s, d) in self.explicit:
            if self.explicit[(s, d)] is not None:
                return ""
            why = self.why.get((s, d), "no path")
            return _LaterWhy(self, s, d) if isinstance(why, tuple) else why
        if self.w[s, d] >= INF:
            return "no path"
        if not self.admitted[s, d]:
            raise AssertionError("pair %d,%d was not resolved" % (s, d))
        return ""

    def _why(self, s, d) -> str:
        """Why the pair has no admitted path, in the reference's words."""
        why = self.why.get((s, d), "no path")
        if isinstance(why, tuple):  # (least-weight path, search note): words built now
            path, note = why
            broken = violations(path_metrics(self.net.arcs_for(self.tenant), path, self.variant),
                                self.variant)
            why = self.why[(s, d)] = "best path: %s" % "; ".join([*broken, note] if note else broken)
        return why

    def weights(self, mask):
        """Weight of each admitted choice (``mask``), as ``weight_key`` gives it."""
        w = self.w.copy()
        if self.explicit:
            arcs = self.net.arcs_for(self.tenant)
            for (s, d), path in self.explicit.items():
                if mask[s, d] and path is not None:
                    w[s, d] = path_metrics(arcs, path, self.variant).weight
        return w

    def weight_key(self, s, d):
        """(weight, name ranks) of the pair's admitted choice, without building metrics."""
        if (s, d) in self.explicit:
            path = self.explicit[(s, d)]
            arcs = self.net.arcs_for(self.tenant)
            w = path_metrics(arcs, path, self.variant).weight
        else:
            path = self._cand_path(s, d, int(self.arg[s, d]))
            w = int(self.w[s, d])
        return (w, tuple(self.net.index[n] for n in path))

    # -- what a change of core arcs can reach (FastEngine.update) --------------------------
    def dirty(self, sol: "_CoreSolution", owned):
        """Pairs of ``owned`` whose answer here may differ on the repaired solution ``sol``.

        A pair answered by its least-weight candidate reads its candidates' core pairs: it
        is unchanged when no candidate that tied for the least weight changed (distance,
        path or sums) and every changed candidate now weighs more than that least weight
        (so it neither wins, ties, nor makes a detour around dropped nodes look possible);
        a candidate from or to a dropped POP is never read.  Other pairs (bounds broken, a
        detour, an exact search) are recomputed when any candidate or its lower bounds
        changed, with two exceptions when every changed arc got worse (``worse_all``: weight,
        latency, jitter and loss only grew, so bounds and heap keys only grow):

        * a pair whose path an exact search found is judged by its least-weight candidate
          as above, by its bounds at the source, and by what the search popped: a search
          whose popped partial paths avoid the changed arcs and the cores whose bounds to
          the destination moved pops the same paths again;
        * a detour around dropped nodes (``replaced``) stays when its own path avoids the
          changed arcs (``worse_w``: distances avoiding the drops only grew).

        * a backup proven to have no admitted path (``none_proven``) keeps having none.

        Otherwise an exact search is recomputed when it popped a core whose arcs changed or
        the bounds to the destination's POPs changed."""
        need = self.need & owned
        chg = sol.chg
        if chg is None or sol.variant.prune_key != self.variant.prune_key:
            return need
        out = np.zeros_like(need)
        if chg["any"] and chg["worse_all"]:  # arcs that only got worse add no admitted path
            need = need & ~self.none_proven
        if not chg["any"] or not need.any():
            return out
        t = self.ed.t
        A = t["A"]
        valid = A >= 0
        Ac = np.where(valid, A, 0)
        special = self.special & need
        # worse arcs only: a pair answered by an exact search alone is judged below by its
        # least-weight candidate (as a plain pair), its bounds and what the search popped
        alone = self.search_alone & need if chg["worse_all"] else np.zeros_like(need)
        by_path = self.detour_only & need  # a detour is judged by its own path (below), not by its candidates
        # changed core pairs with their lower bounds (a bound not computed before was not
        # read before), and their rows and columns: shared by the blocks of one update
        key = tuple(m for m in self.variant.bounds() if m in chg["lb"])
        memo = chg.setdefault("memo", {})
        if key not in memo:
            lbm = chg["path"].copy()
            for metric in key:
                lbm |= chg["lb"][metric]
            memo[key] = (lbm, lbm.any(axis=1), lbm.any(axis=0))
        lbm, rows_any, cols_any = memo[key]
        # only pairs with a changed candidate: a source POP with a changed row, a
        # destination POP with a changed column
        src = (rows_any[Ac] & valid).any(axis=1)
        dst = (cols_any[Ac] & valid).any(axis=1)
        S, D = np.nonzero(need & src[:, None] & dst[None, :])
        if len(S):
            vv = valid[S][:, :, None] & valid[D][:, None, :]
            a, b = Ac[S][:, :, None], Ac[D][:, None, :]
            cc = chg["path"][a, b] & vv  # [P, K, K]
            sp = (special & ~alone & ~by_path)[S, D]
            hit_sp = sp & (lbm[a, b] & vv).any(axis=(1, 2))
            out[S[hit_sp], D[hit_sp]] = True
            plain = ~sp & ~by_path[S, D] & cc.any(axis=(1, 2))
            if plain.any():
                S2, D2, cc2 = S[plain], D[plain], cc[plain]
                ed = self.ed
                wc = ed.Wout[S2][:, :, None] + sol.D[Ac[S2][:, :, None], Ac[D2][:, None, :]]
                np.minimum(wc, INF, out=wc)
                wc = wc + ed.Win[D2][:, None, :]
                np.minimum(wc, INF, out=wc)
                K = A.shape[1]
                w_old = self.w[S2, D2][:, None, None]
                old = self.flat[self.pidx[S2, D2], :K * K].reshape(-1, K, K)
                bad = cc2 & (((old == w_old) & (w_old < INF)) | ((wc <= w_old) & (wc < INF)))
                if self.drop_masks is not None:  # a candidate from or to a dropped POP is never read
                    dm = self.drop_masks[S2, D2]
                    a_bit = t.get("bits")
                    if a_bit is None:
                        a_bit = t["bits"] = _bits(Ac, sol.words)
                    a_drop = ((a_bit[S2] & dm[:, None, :]) != 0).any(-1)
                    b_drop = ((a_bit[D2] & dm[:, None, :]) != 0).any(-1)
                    bad &= ~(a_drop[:, :, None] | b_drop[:, None, :])
                hit = bad.any(axis=(1, 2))
                out[S2[hit], D2[hit]] = True
        special &= ~out
        if not special.any():
            return out
        todo = [key for key in self.searched if special[key]]
        if todo and not chg["worse_all"]:
            cols = chg["D"].any(axis=0)
            for metric in self.variant.bounds():
                if metric in chg["lb"]:
                    cols = cols | chg["lb"][metric].any(axis=0)
            rows = chg["rows"]
            for (s, d) in todo:
                ex = np.array([c for _p, c in self.searched[(s, d)] if c < len(rows)], dtype=np.int64)
                if cols[A[d][valid[d]]].any() or rows[ex].any():
                    out[s, d] = True
        elif todo:
            # worse arcs only: see the docstring
            arcs = set(zip(chg["arcs"][0].tolist(), chg["arcs"][1].tolist()))
            # a core's bound to the destination can move only if its D or lower bound
            # towards one of the destination's POPs changed: the exact bounds are compared
            # only for searches that popped such a core
            to = chg["D"].copy()
            for metric in self.variant.bounds():
                if metric in chg["lb"]:
                    to |= chg["lb"][metric]
            # may[c, d]: core c's bound towards one of d's POPs changed (all destinations at once)
            may = (to[:, Ac] & valid[None, :, :]).any(axis=2)  # [C, E]
            S0 = np.array([k[0] for k in todo], dtype=np.int64)
            D0 = np.array([k[1] for k in todo], dtype=np.int64)
            at_src = (may[Ac[S0], D0[:, None]] & valid[S0]).any(axis=1).tolist()
            exact, rest = [], []
            # a search that found its path: only the partial paths that decided it matter
            # (the others, crossing worse arcs or with grown bounds, only come later)
            ref = {key: self.searched_matter[key] if self.explicit.get(key) is not None else self.searched[key]
                   for key in todo}
            for q, key in enumerate(todo):
                if not arcs.isdisjoint(ref[key]):
                    out[key] = True
                elif at_src[q]:
                    exact.append(key)
                else:
                    rest.append(key)
            if rest:  # a popped core whose bound to the destination may have moved
                C = self.eng.C
                cols, owner = [], []
                for i, key in enumerate(rest):
                    cs = [c for _p, c in ref[key] if c < C]
                    cols += cs
                    owner += [i] * len(cs)
                dcol = np.array([key[1] for key in rest], dtype=np.int64)
                own = np.array(owner, dtype=np.int64)
                hit = np.zeros(len(rest), dtype=bool)
                hit[own[may[np.array(cols, dtype=np.int64), dcol[own]]]] = True
                exact += [key for key, h in zip(rest, hit.tolist()) if h]
            todo = exact
        if todo and chg["worse_all"]:
            S3 = np.array([k[0] for k in todo], dtype=np.int64)
            D3 = np.array([k[1] for k in todo], dtype=np.int64)
            old, new = self._to_dst_bounds(S3, D3), self._to_dst_bounds(S3, D3, sol)
            moved = np.zeros((len(todo), self.eng.C), dtype=bool)
            src_moved = np.zeros(len(todo), dtype=bool)
            for metric, (arr, at) in old.items():
                moved |= arr != new[metric][0]
                src_moved |= np.array([x != y for x, y in zip(at, new[metric][1])], dtype=bool)
            C = self.eng.C
            # a search that found its path pops the same partial paths in the same order
            # when none crosses a changed arc, their keys (weight bounds) stayed and each
            # still passes the bound checks it passed when pushed; bounds only grew, so no
            # entry it did not pop can come earlier, and its path keeps the source feasible
            moved_w = old["weight"][0] != new["weight"][0]
            for q, key in enumerate(todo):
                found = self.explicit.get(key) is not None
                if not found and src_moved[q]:  # the bounds at the source decide whether to search at all
                    out[key] = True
                    continue
                row = moved_w[q] if found else moved[q]
                for par, col in (ref[key] if found else self.searched[key]):
                    if (col < C and row[col]) or (par, col) in arcs:
                        out[key] = True
                        break
                    if found and col < C and moved[q, col] and \
                            not self._still_pushed(self.searched_ext[key][(par, col)], new, q, col):
                        out[key] = True
                        break
        if self.replaced:
            cores = self.eng.cores
            arcs = {(cores[u], cores[v]) for u, v in zip(*(x.tolist() for x in chg["arcs"]))}
            tails = {u for u, _v in arcs}
            todo = special & ~out & self.replaced_mask
            keys = list(zip(*(x.tolist() for x in np.nonzero(todo))))
            through: Dict[Tuple[int, int], int] = {}
            if keys and not chg["worse_w"]:
                detours = [key for key in keys if self.detour_only[key]]
                through = dict(zip(detours, self._through_changed(sol, chg, detours).tolist()))
            for key in keys:
                path = self.replaced[key]
                if path is not None and not tails.isdisjoint(path) and any(
                        (x, y) in arcs for x, y in zip(path, path[1:])):
                    out[key] = True
                elif chg["worse_w"]:
                    continue  # weights only grew: what it did not cross stayed, the rest got heavier
                elif key not in through:  # answered by a search after the detour
                    out[key] = True
                elif through[key] < INF if path is None else through[key] <= self._path_weight(sol, key, path):
                    # a path over a changed arc could now tie or win (or be the first path at all)
                    out[key] = True
        return out

    def _path_weight(self, sol, key, path) -> int:
        """Weight of a path of pair ``key`` (names) under ``sol``'s arc weights."""
        s, d = key
        ed, cpos = self.ed, self.eng.cpos
        if len(path) == 2:
            return int(ed.Wd[s, d])
        A = ed.t["A"]
        i = int(np.nonzero(A[s] == cpos[path[1]])[0][0])
        j = int(np.nonzero(A[d] == cpos[path[-2]])[0][0])
        w = int(ed.Wout[s, i]) + int(ed.Win[d, j])
        for x, y in zip(path[1:-2], path[2:-1]):
            w += int(sol.W[cpos[x], cpos[y]])
        return min(w, INF)

    def _through_changed(self, sol, chg, keys):
        """Per pair of ``keys``: a lower bound on the weight of any path over one of the
        changed core arcs that avoids the pair's dropped nodes (INF: there is none), from the
        unrestricted core distances of ``sol``."""
        u, v = chg["arcs"]
        wuv = sol.W[u, v]
        live = wuv < INF
        u, v, wuv = u[live], v[live], wuv[live]
        if not keys or not len(u):
            return np.full(len(keys), INF, dtype=np.int64)
        S = np.array([k[0] for k in keys], dtype=np.int64)
        D = np.array([k[1] for k in keys], dtype=np.int64)
        t, ed = self.ed.t, self.ed
        Ac = np.where(t["A"] >= 0, t["A"], 0)
        a_bit = t.get("bits")
        if a_bit is None:
            a_bit = t["bits"] = _bits(Ac, sol.words)
        dm = self.drop_masks[S, D]  # [P, words]
        a_drop = ((a_bit[S] & dm[:, None, :]) != 0).any(-1)  # [P, K]
        b_drop = ((a_bit[D] & dm[:, None, :]) != 0).any(-1)
        to_u = np.minimum(ed.Wout[S][:, :, None] + sol.D[Ac[S][:, :, None], u[None, None, :]], INF)  # [P, K, n]
        to_u = np.where(a_drop[:, :, None], INF, to_u).min(axis=1)  # [P, n]
        from_v = np.minimum(sol.D[v[None, :, None], Ac[D][:, None, :]] + ed.Win[D][:, None, :], INF)  # [P, n, K]
        from_v = np.where(b_drop[:, None, :], INF, from_v).min(axis=2)  # [P, n]
        lb = np.minimum(np.minimum(to_u + wuv[None, :], INF) + from_v, INF)
        ends_dropped = ((dm[:, u // 64] >> (u % 64).astype(np.uint64)) & np.uint64(1)).astype(bool)
        ends_dropped |= ((dm[:, v // 64] >> (v % 64).astype(np.uint64)) & np.uint64(1)).astype(bool)
        return np.where(ends_dropped, INF, lb).min(axis=1)


class _LaterWhy:
    """A Best's words for a pair with no admitted path, built on ``text()``."""

    __slots__ = ("best", "s", "d")

    def __init__(self, best, s, d):
        self.best, self.s, self.d = best, s, d

    def text(self) -> str:
        return self.best._why(self.s, self.d)


class _Diagnosis:
    """``pce.diagnose`` of a failed pair, run on ``text()`` over the block's diagnosis
    Bests (computed with the block, so the words are those of its measurements)."""

    __slots__ = ("block", "variant", "s", "d")

    def __init__(self, block, variant, s, d):
        self.block, self.variant, self.s, self.d = block, variant, s, d

    def text(self) -> str:
        block, s, d = self.block, self.s, self.d

        def best_fn(var):
            # computed by ``_explain_failures`` (never built now: the engine may have
            # moved on to newer measurements since)
            b = block.best[("diag", var)]
            if not b.need[s, d]:
                raise AssertionError("no diagnosis computed for pair %d,%d" % (s, d))
            return b.get(s, d)
        return diagnose(self.variant, best_fn)


def _run_searches(bests) -> None:
    """Run the exact searches of ``bests`` (lazy or not yet finished) and finish them.

    Searches of the same variant (same core solution, bounds and candidate limit) share
    one ``_search_batch`` whatever their tenant: each query keeps its own heap, so it pops
    and answers exactly as alone; batching only shares the vectorised rounds."""
    groups: Dict[Any, List[_Best]] = {}
    for b in bests:
        key = (b.variant, id(b.sol), id(b.net), b.net.inventory.pce.max_candidates)
        groups.setdefault(key, []).append(b)
    for (variant, _sid, _nid, limit), group in groups.items():
        queries = [q for b in group for q in b._queries]
        if queries:
            found, expanded = _search_batch(group[0].eng, variant, group[0].sol, queries, limit)
        else:
            found, expanded = [], []
        at = 0
        for b in group:
            n = len(b._queries)
            b._finish(found[at:at + n], expanded[at:at + n])
            at += n


def _admits(arcs, path, variant) -> bool:
    """``not violations(path_metrics(arcs, path, variant), variant)`` without the costs,
    weights and words: the same sums in the same order, the same comparisons."""
    lat = jit = 0.0
    keep = 1.0
    for u, v in zip(path, path[1:]):
        a = arcs[(u, v)]
        lat += a.latency_ms
        jit += a.jitter_ms
        keep *= 1.0 - a.loss
    if variant.max_latency_ms is not None and lat > variant.max_latency_ms + P.BOUND_EPS:
        return False
    if variant.max_jitter_ms is not None and jit > variant.max_jitter_ms + P.BOUND_EPS:
        return False
    if variant.max_loss is not None and 1.0 - keep > variant.max_loss + P.BOUND_EPS:
        return False
    return variant.max_hops is None or len(path) - 1 <= variant.max_hops


class _Bucket:
    """The children of one expansion, sorted as the heap would pop them.

    ``pce.constrained_best`` pushes every child of an expansion onto its heap; here only the
    least child is in the heap, and popping it pushes the next one.  The heap therefore pops
    the same entries in the same order (its keys are unique: they end in the node-name
    sequence) while building entries only for the children that are reached.  Children
    are ``start .. start + n - 1`` of the round's sorted lists ``cols, f, w, lat, jit, keep``.
    """

    __slots__ = ("path", "pcols", "ranks", "hops", "start", "n", "cols", "f", "w", "lat", "jit", "keep")

    def __init__(self, path, pcols, ranks, hops, start, n, lists):
        self.path, self.pcols, self.ranks, self.hops, self.start, self.n = path, pcols, ranks, hops, start, n
        self.cols, self.f, self.w, self.lat, self.jit, self.keep = lists


_LIMIT_WHY = "no admitted path found within the search limit (%d partial paths)"


def _search_batch(eng, variant, sol, queries, limit):
    """``pce.constrained_best`` for many pairs of one tenant and variant, in lockstep.

    ``queries``: ``(s, d, drop_nodes, drop_links, lbs, ed, arcs)`` (``ed``, ``arcs``: the pair's
    tenant under ``variant``: queries of several tenants and blocks share the rounds); ``lbs`` holds the lower bounds to
    the destination as arrays over the cores plus the destination (last column):
    ``"weight"`` (0 where unreachable, as ``lbs.get(node, 0)``) and one per bounded metric
    (inf where unreachable).  Each query pops, prunes, settles and counts its partial paths
    exactly as the scalar search does; what is vectorised is building the children of all
    the expansions of one round (the same IEEE operations in the same order; the loss
    bound, which goes through log/expm1, is re-checked with ``math`` wherever numpy and
    libm could round differently).  Returns ``[(path or None, why)]`` and, per query,
    ``(popped, decisive, extremes)``: the arcs (parent core or -1 for the source, core or C
    for the destination) of the partial paths it popped (what a later change must miss for
    the search to run the same); the arcs of the partial paths that discarded another as
    dominated or were the answer (when arcs only get worse, the others can only be popped
    later or not at all, which changes nothing); and per arc of an expanded partial path,
    the extreme sums of those paths.
    """
    C, cores, index, cpos = eng.C, eng.cores, eng.net.index, eng.cpos
    bounds = variant.bounds()
    max_lat, max_jit = bounds.get("latency"), bounds.get("jitter")
    max_loss, max_hops = bounds.get("loss"), bounds.get("hops")
    slack = P.BOUND_EPS + P.LB_EPS
    Q = len(queries)
    W, LAT, JIT, LOSS = sol.W, eng.core["lat"], eng.core["jit"], eng.core["loss"]
    q_arcs = [qq[6] for qq in queries]
    # the arcs into each query's destination: an extra column of the core matrices
    Wl = np.full((Q, C), INF, dtype=np.int64)
    Ll = np.full((Q, C), FINF)
    Jl = np.full((Q, C), FINF)
    Xl = np.ones((Q, C))
    excl = np.zeros((Q, C + 1), dtype=bool)
    rank = np.empty((Q, C + 1), dtype=np.int64)
    rank[:, :C] = [index[c] for c in cores]
    LBW = np.zeros((Q, C + 1), dtype=np.int64)
    LB = {m: np.zeros((Q, C + 1)) for m in bounds}
    heaps: List[list] = []
    settled: List[dict] = []
    expanded: List[int] = []
    dsts: List[str] = []
    dlinks: List[Dict[int, List[int]]] = []
    results: List[Any] = [None] * Q
    # per query: the arcs (parent core or -1, core or C) of the partial paths popped, and
    # for those expanded the extreme partial sums (latency, jitter, kept fraction, hops):
    # only expanded partial paths can decide a search (see ``matter``)
    popped: List[set] = [set() for _q in range(Q)]
    extremes: List[dict] = [{} for _q in range(Q)]
    # per query: the partial paths (core positions, C for the destination) that discarded
    # another as dominated, and the path found: what a later change must leave alone (see
    # ``_Best.dirty``)
    matter: List[set] = [set() for _q in range(Q)]
    push, pop = heapq.heappush, heapq.heappop
    for q, (s, d, drop_nodes, drop_links, lbs, ed, _arcs) in enumerate(queries):
        t = ed.t
        names, A = t["names"], t["A"]
        K = A.shape[1]
        mi, mo, dr = t["in"], t["out"], t["direct"]
        src, dst = names[s], names[d]
        dsts.append(dst)
        rank[q, C] = index[dst]
        for j in range(K):
            if ed.Win[d, j] < INF:
                b = int(A[d, j])
                Wl[q, b] = ed.Win[d, j]
                Ll[q, b], Jl[q, b], Xl[q, b] = mi["lat"][d, j], mi["jit"][d, j], mi["loss"][d, j]
        for n in drop_nodes:
            if n in cpos:
                excl[q, cpos[n]] = True
            elif n == dst:
                excl[q, C] = True
        dmap: Dict[int, List[int]] = {}
        for u, v in drop_links:
            if u in cpos and (v in cpos or v == dst):
                dmap.setdefault(cpos[u], []).append(cpos.get(v, C))
        dlinks.append(dmap)
        LBW[q] = lbs["weight"]
        for m in bounds:
            LB[m][q] = lbs[m]
        heap: List[Any] = []
        heaps.append(heap)
        # the source's expansion, as the scalar search does it (a handful of arcs)
        settled.append({})
        expanded.append(1)
        if 1 > limit:
            results[q] = (None, _LIMIT_WHY % limit)
            continue
        first = [(int(A[s, k]), int(ed.Wout[s, k]), mo["lat"][s, k], mo["jit"][s, k], mo["loss"][s, k])
                 for k in range(K) if ed.Wout[s, k] < INF]
        if ed.Wd[s, d] < INF:
            first.append((C, int(ed.Wd[s, d]), dr["lat"][s, d], dr["jit"][s, d], dr["loss"][s, d]))
        kids = []
        for col, arc_w, alat, ajit, aloss in first:
            nxt = dst if col == C else cores[col]
            if nxt in drop_nodes or (src, nxt) in drop_links:
                continue
            nlat, njit, nkeep = 0.0 + float(alat), 0.0 + float(ajit), 1.0 * (1.0 - float(aloss))
            if max_lat is not None and nlat + float(LB["latency"][q, col]) > max_lat + slack:
                continue
            if max_jit is not None and njit + float(LB["jitter"][q, col]) > max_jit + slack:
                continue
            if max_loss is not None and -math.expm1(math.log(nkeep) - float(LB["loss"][q, col])) > max_loss + slack:
                continue
            if max_hops is not None and 0 + 1 + float(LB["hops"][q, col]) > max_hops:
                continue
            kids.append((arc_w + int(LBW[q, col]), arc_w, int(rank[q, col]), col, nlat, njit, nkeep))
        if kids:
            kids.sort()
            b = _Bucket((src,), (), (index[src],), 0, 0, len(kids), [[k[i] for k in kids] for i in (3, 0, 1, 4, 5, 6)])
            push(heap, (kids[0][0], kids[0][1], b.ranks + (kids[0][2],), b, 0))
    rank_l = rank.tolist()
    M3 = np.stack([LAT, JIT, LOSS], axis=2)  # [C, C, 3]
    Ml3 = np.stack([Ll, Jl, Xl], axis=2)  # [Q, C, 3]

    def wgt_col(batch):
        return np.array([e[6] for e in batch], dtype=np.int64)
    active = [q for q in range(Q) if results[q] is None]
    while active:
        batch = []  # (q, col, lat, jit, keep, hops, weight, path, pcols, ranks)
        for q in active:
            heap, rank_q, popped_q, settled_q = heaps[q], rank_l[q], popped[q], settled[q]
            while True:
                if not heap:
                    results[q] = (None, "")
                    break
                _f, weight, ranks, b, pos = pop(heap)
                i = b.start + pos
                if pos + 1 < b.n:
                    push(heap, (b.f[i + 1], b.w[i + 1], b.ranks + (rank_q[b.cols[i + 1]],), b, pos + 1))
                col = b.cols[i]
                arc = (b.pcols[-1] if b.pcols else -1, col)
                popped_q.add(arc)
                if col == C:
                    path = b.path + (dsts[q],)
                    if _admits(q_arcs[q], path, variant):
                        results[q] = (list(path), "")  # its metrics are built with the result
                        matter[q].add(b.pcols + (C,))
                        break
                    continue
                lat, jit, keep = b.lat[i], b.jit[i], b.keep[i]
                hops = b.hops + 1
                r0, r1 = (lat if max_lat is not None else 0.0), (jit if max_jit is not None else 0.0)
                r2, r3 = (-keep if max_loss is not None else 0.0), (hops if max_hops is not None else 0)
                here = settled_q.get(col)
                if here is None:
                    here = settled_q[col] = []
                else:
                    dominated = False
                    for o in here:
                        if o[0] <= r0 and o[1] <= r1 and o[2] <= r2 and o[3] <= r3:
                            dominated = True
                            matter[q].add(o[4])
                            break
                    if dominated:
                        continue
                pcols = b.pcols + (col,)
                here.append((r0, r1, r2, r3, pcols))
                ext = extremes[q].get(arc)
                if ext is None:
                    extremes[q][arc] = (lat, jit, keep, hops)
                elif lat > ext[0] or jit > ext[1] or keep < ext[2] or hops > ext[3]:
                    extremes[q][arc] = (max(lat, ext[0]), max(jit, ext[1]), min(keep, ext[2]), max(hops, ext[3]))
                expanded[q] += 1
                if expanded[q] > limit:
                    results[q] = (None, _LIMIT_WHY % limit)
                    break
                batch.append((q, col, lat, jit, keep, hops, weight, b.path + (cores[col],), pcols, ranks))
                break
        if not batch:
            break
        B = len(batch)
        qs = np.array([e[0] for e in batch])
        xs = np.array([e[1] for e in batch])
        state = np.array([(e[2], e[3], e[4]) for e in batch])  # lat, jit, keep
        Wr = np.empty((B, C + 1), dtype=np.int64)
        Wr[:, :C] = W[xs]
        Wr[:, C] = Wl[qs, xs]
        valid = Wr < INF
        valid &= ~excl[qs]
        rr = [i for i, e in enumerate(batch) for _c in e[8]]
        valid[rr, [c for e in batch for c in e[8]]] = False  # no node twice
        for i, e in enumerate(batch):
            heads = dlinks[e[0]].get(e[1])
            if heads:
                valid[i, heads] = False
        R = np.empty((B, C + 1, 3))
        R[:, :C] = M3[xs]
        R[:, C] = Ml3[qs, xs]
        nlat = state[:, 0:1] + R[:, :, 0]
        njit = state[:, 1:2] + R[:, :, 1]
        nkeep = state[:, 2:3] * (1.0 - R[:, :, 2])
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if max_lat is not None:
                valid &= ~(nlat + LB["latency"][qs] > max_lat + slack)
            if max_jit is not None:
                valid &= ~(njit + LB["jitter"][qs] > max_jit + slack)
            if max_loss is not None:
                lbl = LB["loss"][qs]
                v = -np.expm1(np.log(nkeep) - lbl)
                thr = max_loss + slack
                near = valid & (np.abs(v - thr) <= 1e-12)
                valid &= ~(v > thr)
                for i, c in zip(*np.nonzero(near)):
                    valid[i, c] = not (-math.expm1(math.log(float(nkeep[i, c])) - float(lbl[i, c])) > thr)
            if max_hops is not None:
                hops1 = np.array([e[5] + 1 for e in batch], dtype=np.float64)[:, None]
                valid &= ~(hops1 + LB["hops"][qs] > max_hops)
        rows, cols = np.nonzero(valid)
        if not len(rows):
            active = [q for q in active if results[q] is None]
            continue
        nw = wgt_col(batch)[rows] + Wr[rows, cols]
        f = nw + LBW[qs[rows], cols]
        order = _children_order(rows, f, nw, rank[qs[rows], cols])
        rows, cols = rows[order], cols[order]
        # memoryviews, not lists: most children are never popped, and an item read from a
        # memoryview is the same Python int or float that ``tolist`` would have built
        lists = (memoryview(cols), memoryview(np.ascontiguousarray(f[order])),
                 memoryview(np.ascontiguousarray(nw[order])), memoryview(nlat[rows, cols]),
                 memoryview(njit[rows, cols]), memoryview(nkeep[rows, cols]))
        counts = np.bincount(rows, minlength=B).tolist()
        start = 0
        for i, e in enumerate(batch):
            n = counts[i]
            if not n:
                continue
            q = e[0]
            b = _Bucket(e[7], e[8], e[9], e[5], start, n, lists)
            push(heaps[q], (lists[1][start], lists[2][start], e[9] + (rank_l[q][lists[0][start]],), b, 0))
            start += n
        active = [q for q in active if results[q] is None]
    out = []
    for ex, ext, paths in zip(popped, extremes, matter):
        arcs = set()
        for pcols in paths:
            arcs.add((-1, pcols[0]))
            arcs.update(zip(pcols, pcols[1:]))
        out.append((ex, arcs, ext))
    return results, out


def _children_order(rows, f, nw, rank):
    """``np.lexsort((rank, nw, f, rows))``: children by expansion, then by heap key.
    Sorting by (rows, f) alone costs about half as much; the few runs of one expansion's
    children that tie on f are then put in (nw, rank) order."""
    order = np.lexsort((f, rows))
    r, k = rows[order], f[order]
    same = (r[1:] == r[:-1]) & (k[1:] == k[:-1])
    if same.any():
        tied = np.zeros(len(order), dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        sub = np.nonzero(tied)[0]
        run = np.cumsum(~np.concatenate(([False], same)))[sub]
        o = order[sub]
        order[sub] = o[np.lexsort((rank[o], nw[o], run))]
    return order


def _unpack(masks, C):
    """[Q, words] uint64 node bit masks -> [Q, C] bool."""
    as_bytes = masks.astype("<u8").view(np.uint8).reshape(masks.shape[0], -1)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :C].astype(bool)


def _avoiding_dist(sol, targets, excl, excl_words):
    """``dist[q, x]``: least weight of x ~> ``targets[q]`` on the core without the nodes in
    ``excl[q]`` (INF for excluded or cut-off nodes), exact for every node.

    A node whose core path to the target (the one ``NH`` spells) avoids the excluded nodes
    keeps its distance: that path still exists and nothing shorter appeared.  Only the
    other ("hit") nodes are relaxed, Bellman-Ford style, over all their arcs until nothing
    changes; every query at once.
    """
    Q, C = excl.shape
    dist = np.ascontiguousarray(sol.D[:, targets].T)  # [Q, C]: D[x, target]
    hit = ((sol.mask[:, targets, :] & excl_words[None, :, :]) != 0).any(axis=2).T
    dist[hit | excl] = INF
    qi, xi = np.nonzero(hit & ~excl)
    W = sol.W
    while len(qi):
        relax = np.minimum((W[xi] + dist[qi]).min(axis=1), INF)
        better = relax < dist[qi, xi]
        if not better.any():
            break
        dist[qi[better], xi[better]] = relax[better]
    return dist


def _walk(W, dist, excl, a, b):
    """Smallest-named tight successors from a to b under ``dist`` (to b) avoiding ``excl``
    (one walk: the definition ``_walk_many`` is tested against)."""
    out = [a]
    while a != b:
        ok = (~excl) & (W[a] < INF) & (W[a] + dist == dist[a])
        ok[a] = False
        a = int(np.argmax(ok))
        out.append(a)
    return out


def _walk_many(W, dist, excl, walks):
    """``_walk(W, dist[q], excl[q], a, b)`` for every ``(q, a, b)`` of ``walks``, one step of
    all of them at a time (the same comparisons row by row)."""
    paths = [[a] for _q, a, _b in walks]
    if not walks:
        return paths
    qs = np.array([w[0] for w in walks], dtype=np.int64)
    cur = np.array([w[1] for w in walks], dtype=np.int64)
    end = np.array([w[2] for w in walks], dtype=np.int64)
    idx = np.nonzero(cur != end)[0]
    while len(idx):
        c, q = cur[idx], qs[idx]
        n = np.arange(len(idx))
        dq = dist[q]
        Wc = W[c]
        ok = (~excl[q]) & (Wc < INF) & (Wc + dq == dq[n, c][:, None])
        ok[n, c] = False
        nxt = ok.argmax(axis=1)
        cur[idx] = nxt
        for i, x in zip(idx.tolist(), nxt.tolist()):
            paths[i].append(x)
        idx = idx[nxt != end[idx]]
    return paths


def _bits(idx, words):
    out = np.zeros(idx.shape + (words,), dtype=np.uint64)
    w = idx // 64
    b = (np.uint64(1) << (idx % 64).astype(np.uint64))
    it = np.nditer(idx, flags=["multi_index"])
    for _item in it:
        mi = it.multi_index
        out[mi + (int(w[mi]),)] |= b[mi]
    return out


class FastEngine:
    """Vectorised engine; ``compute`` for everything, ``update`` after new measurements."""

    def __init__(self, net: Network):
        if np is None:
            raise RuntimeError("galactic.npms fast path engine needs numpy: pip install numpy")
        self.net = net
        self.ref = ReferenceEngine(net)
        self.cores = list(net.cores)
        self.C = len(self.cores)
        self.cpos = {c: i for i, c in enumerate(self.cores)}
        self._drops: Dict[Tuple[str, str, str], Any] = {}
        self._last_args = (None, None, None)
        self._views: Optional[List[_BlockView]] = None  # the last answer, for update()
        self._edge_index: Optional[Dict[str, List[Tuple[str, str]]]] = None
        self._arc_chg = None  # core arcs changed by the last update
        self._build_core()

    # -- arrays -------------------------------------------------------------------------
    def _build_core(self):
        C = self.C
        m = {k: np.full((C, C), FINF) for k in ("lat", "lat95", "jit", "loss", "bw", "cost")}
        m["exists"] = np.zeros((C, C), dtype=bool)
        self._via = {}
        for (u, v), arc in self.net.core_arcs.items():
            i, j = self.cpos[u], self.cpos[v]
            _put_arc(m, i, j, arc)
            m["exists"][i, j] = True
            if arc.via:
                self._via[(i, j)] = set(arc.via)
        for k in ("loss",):
            m[k] = np.where(m["exists"], m[k], 1.0)
        for k in ("bw",):
            m[k] = np.where(m["exists"], m[k], 0.0)
        self.core = m
        self.core_losslog = -np.log1p(-np.minimum(m["loss"], 1.0 - 1e-15))
        self._lb_cache: Dict[Any, Any] = {}
        self._solutions: Dict[Any, _CoreSolution] = {}
        self._tenants: Dict[str, dict] = {}
        self._edges: Dict[Any, _Edges] = {}

    def _patch_core(self, pairs) -> None:
        """New core arrays after the arcs ``pairs`` were measured again; every core solution
        built so far is repaired (``_CoreSolution`` with ``prev``), recording what changed."""
        old = self.core
        m = {k: v.copy() for k, v in old.items()}
        for (u, v) in set(pairs):
            arc = self.net.core_arcs[(u, v)]
            _put_arc(m, self.cpos[u], self.cpos[v], arc)
        chg = np.zeros((self.C, self.C), dtype=bool)
        for k in ("lat", "lat95", "jit", "loss", "bw", "cost"):
            chg |= m[k] != old[k]
        self._arc_chg = chg
        i, j = np.nonzero(chg)
        self._metrics_worse = bool(all((m[k][i, j] >= old[k][i, j]).all() for k in ("lat", "jit", "loss")))
        self.core = m
        self.core_losslog = -np.log1p(-np.minimum(m["loss"], 1.0 - 1e-15))
        self._lb_cache = {}
        self._solutions = {key: _CoreSolution(self, sol.variant, prev=sol, arc_chg=chg)
                           for key, sol in self._solutions.items()}

    def via_mask(self, countries):
        out = np.zeros((self.C, self.C), dtype=bool)
        for (i, j), via in self._via.items():
            if via & set(countries):
                out[i, j] = True
        return out

    def core_additive(self, metric):
        m = self.core
        if metric == "latency":
            return m["lat"]
        if metric == "jitter":
            return m["jit"]
        return self.core_losslog

    def solution(self, variant: Variant) -> _CoreSolution:
        key = variant.prune_key
        sol = self._solutions.get(key)
        if sol is None:
            sol = self._solutions[key] = _CoreSolution(self, variant)
        return sol

    def tenant_struct(self, tenant: str) -> dict:
        t = self._tenants.get(tenant)
        if t is not None:
            return t
        arcs = self.net.arcs_for(tenant)
        names = sorted(self.net.inventory.tenants[tenant].edges)
        epos = {n: i for i, n in enumerate(names)}
        E = len(names)
        if self._edge_index is None:  # edge -> its access and direct arcs (inventory: fixed)
            self._edge_index = {}
            for uv in self.net.edge_arcs:
                for n in set(uv):
                    self._edge_index.setdefault(n, []).append(uv)
        mine = {uv for n in names for uv in self._edge_index.get(n, ())}
        own = [(uv, arcs[uv]) for uv in mine if uv in arcs]  # the tenant's arcs but the core ones
        up_sets: Dict[str, set] = {n: set() for n in names}
        for (u, v), arc in own:
            if arc.kind == "access" and u in up_sets:
                up_sets[u].add(v)
        ups = [sorted(up_sets[n]) for n in names]
        K = max([len(x) for x in ups] + [1])
        A = np.full((E, K), -1, dtype=np.int64)
        for i, row in enumerate(ups):
            A[i, :len(row)] = [self.cpos[c] for c in row]

        def side(direction):
            mt = {k: np.full((E, K), FINF) for k in ("lat", "lat95", "jit", "loss", "bw", "cost")}
            mt["exists"] = np.zeros((E, K), dtype=bool)
            via = [[() for _k in range(K)] for _e in range(E)]
            for i, row in enumerate(ups):
                for k, c in enumerate(row):
                    arc = arcs[(names[i], c)] if direction == "out" else arcs[(c, names[i])]
                    _put_arc(mt, i, k, arc)
                    mt["exists"][i, k] = True
                    via[i][k] = arc.via
            mt["loss"] = np.where(mt["exists"], mt["loss"], 1.0)
            mt["bw"] = np.where(mt["exists"], mt["bw"], 0.0)
            mt["losslog"] = -np.log1p(-np.minimum(mt["loss"], 1.0 - 1e-15))
            mt["via"] = via
            return mt

        d = {k: np.full((E, E), FINF) for k in ("lat", "lat95", "jit", "loss", "bw", "cost")}
        d["exists"] = np.zeros((E, E), dtype=bool)
        dvia = {}
        for (u, v), arc in own:
            if arc.kind == "direct" and u in epos and v in epos:
                i, j = epos[u], epos[v]
                _put_arc(d, i, j, arc)
                d["exists"][i, j] = True
                if arc.via:
                    dvia[(i, j)] = set(arc.via)
        d["loss"] = np.where(d["exists"], d["loss"], 1.0)
        d["bw"] = np.where(d["exists"], d["bw"], 0.0)
        d["losslog"] = -np.log1p(-np.minimum(d["loss"], 1.0 - 1e-15))

        direct_via = dvia

        def via_excl(countries):
            out = np.zeros((E, E), dtype=bool)
            for (i, j), via in direct_via.items():
                out[i, j] = bool(via & set(countries))
            return out
        d["via_excl"] = via_excl
        t = {"names": names, "pos": epos, "A": A, "out": side("out"), "in": side("in"), "direct": d}
        self._tenants[tenant] = t
        return t

    def edges(self, tenant, variant) -> _Edges:
        key = (tenant, variant.prune_key)
        ed = self._edges.get(key)
        if ed is None:
            ed = self._edges[key] = _Edges(self, tenant, variant, self.solution(variant))
        return ed

    # -- compute ------------------------------------------------------------------------
    def compute(self, tenants=None, traffic_classes=None, current=None) -> PathSet:
        with _no_gc():
            return self._compute(tenants, traffic_classes, current)

    def _compute(self, tenants=None, traffic_classes=None, current=None) -> PathSet:
        self._last_args = (tenants, traffic_classes, current)
        inv = self.net.inventory
        current = normalise_current(current)
        blocks, built = [], []
        stats = {"engine": "fast", "slow_pairs": 0, "pairs": 0}
        for tname in sorted(tenants or inv.tenants):
            tenant = inv.tenants[tname]
            for tc in sorted(tenant.traffic_classes, key=lambda c: c.name):
                if traffic_classes and tc.name not in traffic_classes:
                    continue
                blk = _Block(self, tname, tc, current, stats, build=False)
                built.append(blk)
                blocks.append(_BlockView.full(blk))
        _build_blocks(built)
        self._views = blocks
        return _LazyPathSet(blocks, stats)

    def update(self, measurements: Iterable[Any]) -> PathSet:
        """Apply new window aggregates and recompute what they can change.

        The network is copied first: the answers returned before keep the measurements
        they were computed from.  A change of core arcs repairs the core solutions (all-pairs
        paths per pruning key) and records which core pairs changed; a tenant's access or
        direct arcs belong to that tenant alone, whose blocks are recomputed whole.  In the
        other blocks only the pairs that ``_BlockView.dirty`` finds are recomputed, as a new
        layer over the previous answer.
        """
        with _no_gc():
            return self._update(measurements)

    def _update(self, measurements: Iterable[Any]) -> PathSet:
        old_net = self.net
        net = _fork_network(old_net)
        changed = net.apply_measurements(measurements)
        self.net = net
        self.ref = ReferenceEngine(net)  # its graphs hold the old metrics
        core_changed = [uv for uv in changed if uv in net.core_arcs]
        other = set(changed) - set(core_changed)
        inv = net.inventory
        touched = {t for t, ten in inv.tenants.items() if any(u in ten.edges or v in ten.edges for u, v in other)}
        for t, arcs in old_net.tenant_arcs.items():  # what arcs_for would build, without rebuilding
            if t not in touched and t not in net.tenant_arcs:
                arcs = dict(arcs)
                for uv in core_changed:
                    arcs[uv] = net.core_arcs[uv]
                net.tenant_arcs[t] = arcs
        for t in touched:
            self._tenants.pop(t, None)
        for key in [k for k in self._edges if k[0] in touched]:
            del self._edges[key]
        self._arc_chg = None
        if core_changed:
            self._patch_core(core_changed)
        if self._views is None or (core_changed and inv.pce.backup not in ("node", "none")):
            return self._compute(*self._last_args)  # link backups are searched when materialised
        current = normalise_current(self._last_args[2])
        stats = {"engine": "fast", "slow_pairs": 0, "pairs": 0, "incremental": True, "choice_pairs": 0, "backup_pairs": 0}
        views, built, layers = [], [], []

        def block(view, only=None, backup_dirty=None, prev=None):
            built.append(_Block(self, view.tname, view.tc, current, stats, only=only, build=False,
                                backup_dirty=backup_dirty, prev=prev))
            return built[-1]
        for view in self._views:
            if view.tname in touched:
                view = _BlockView.full(block(view))
            elif core_changed:
                dirty, bk_dirty = view.dirty(self)
                if len(view.layers) >= _MAX_LAYERS and (dirty | bk_dirty).any():  # compact: one layer again
                    view = _BlockView.full(block(view))
                elif (dirty | bk_dirty).any():
                    layers.append((len(views), block(view, dirty, bk_dirty, view)))
            views.append(view)
        _build_blocks(built)  # the recomputed pairs of all blocks, their searches batched
        for i, blk in layers:  # which backups a layer holds is known once it is built
            views[i] = views[i].with_layer(blk)
        self._views = views
        return _LazyPathSet(views, stats)


class _Block:
    """Pairs of one tenant and traffic class (all, or ``only`` those): choices,
    hysteresis, backups.  It keeps the network it was computed from (``net``, ``ref``), so
    that its results are a snapshot of those measurements.

    An update's layer (``prev``: the view it goes over) computes the choices of ``only``
    and the backups of ``bk_only``: the pairs whose backup search may answer differently
    (``backup_dirty``) and those of ``only`` whose primary path or variant changed.  A pair
    whose backup alone may change keeps its primary from ``prev`` (``borrowed``); a pair
    whose primary was recomputed the same keeps its backup there."""

    def __init__(self, eng: FastEngine, tname: str, tc, current, stats, only=None, build=True,
                 backup_dirty=None, prev: "Optional[_BlockView]" = None):
        self.eng, self.tname, self.tc = eng, tname, tc
        self.net, self.ref = eng.net, eng.ref
        t = eng.tenant_struct(tname)
        self.names = t["names"]
        E = len(self.names)
        self.E = E
        self.current = current
        self.stats = stats
        idx = np.arange(E)
        open_ = np.ones((E, E), dtype=bool) if only is None else only.copy()
        open_[idx, idx] = False
        self.only = open_.copy()
        self.prev = prev
        self.backup_dirty = backup_dirty
        self.bk_only = open_.copy()  # pairs whose backup this block computes (see _backup_pairs)
        self.borrowed: Dict[Tuple[int, int], _Block] = {}  # pair -> the layer of prev with its primary
        self._given = None  # pairs whose primary path is given pair by pair (_primary_masks)
        self.level = np.full((E, E), -1, dtype=np.int64)  # index into the profile chain
        self.vi = np.full((E, E), -1, dtype=np.int64)  # variant index within the level
        self.direct = np.zeros((E, E), dtype=bool)  # chosen by the direct-path rule
        self.failures: Dict[Tuple[int, int], List[str]] = {}
        self.chain = profile_chain(self.net.inventory, tc)
        self.variants = [variants_for(p, tc, lvl) for p, lvl in self.chain]
        self.best: Dict[Any, _Best] = {}
        self.primary: Dict[Tuple[int, int], Choice] = {}
        self.kept: Dict[Tuple[int, int], Tuple[bool, str]] = {}
        # the Best that answers a pair's backup: backups[bk_of[s, d]] (-1: none); an array, not a
        # dict of (s, d) keys: a full compute would build a tuple per pair
        self.backups: List[_Best] = []
        self.bk_of = np.full((E, E), -1, dtype=np.int32)
        self._open = open_
        if build:
            _build_blocks([self])

    def _steps(self):
        """The block's computation as a generator: it yields the lazy ``_Best``s whose exact
        searches must run before it can go on (``_build_blocks`` runs those of many blocks
        together), and resumes once they are finished."""
        eng, tname, E, open_, stats = self.eng, self.tname, self.E, self._open, self.stats
        for li, (profile, lvl) in enumerate(self.chain):
            if not open_.any():
                break
            vs = self.variants[li]
            for vi, v in enumerate(vs):  # the direct path first, any variant, in order
                ok = open_ & self._direct_admitted(eng.edges(tname, v), v)
                self.level[ok] = li
                self.vi[ok] = vi
                self.direct |= ok
                open_ &= ~ok
            bests = []
            for vi, v in enumerate(vs):
                b = _Best(eng, tname, v, eng.solution(v), eng.edges(tname, v), open_.copy(), lazy=True)
                self.best[("chain", li, vi)] = b
                bests.append(b)
            yield bests
            found = np.zeros((E, E), dtype=bool)
            for b in bests:
                found |= open_ & b.admitted
            pick1 = np.zeros((E, E), dtype=bool)
            if len(bests) > 1:  # lossless_fec: the better of no-FEC and FEC, ties to no FEC
                both = open_ & bests[0].admitted & bests[1].admitted
                w0, w1 = bests[0].weights(both), bests[1].weights(both)
                pick1 |= both & (w1 < w0)
                for s, d in zip(*np.nonzero(both & (w1 == w0))):  # equal weights: name order
                    if bests[1].weight_key(int(s), int(d)) < bests[0].weight_key(int(s), int(d)):
                        pick1[s, d] = True
                pick1 |= open_ & bests[1].admitted & ~bests[0].admitted
            self.level[found] = li
            self.vi[found] = np.where(pick1[found], 1, 0)
            failed = open_ & ~found
            if lvl != BEST_EFFORT and failed.any():
                yield from self._explain_failures(profile, vs, bests, failed)
            open_ &= ~found
        if self.current:
            self._hysteresis()
        if self.net.inventory.pce.backup != "none":
            if self.prev is not None:
                self._backup_pairs()
            yield from self._backups()
        # what an update's layer read from the view below is needed only while it is built:
        # kept, it would hold every older view's layers for as long as this one lives
        self.prev = self.backup_dirty = None
        self.borrowed = {}
        for b in self.best.values():
            stats["slow_pairs"] += b.slow
        stats["pairs"] += int((self.only | self.bk_only).sum())
        if "choice_pairs" in stats:  # an update: what it recomputed of each pair
            stats["choice_pairs"] += int(self.only.sum())
            stats["backup_pairs"] += int(self.bk_only.sum()) if self.net.inventory.pce.backup == "node" else 0

    def _explain_failures(self, profile, vs, bests, failed):
        """The reference's words for why a level failed (pce.choose_chain / diagnose)."""
        E = self.E
        todo = []
        for s, d in zip(*np.nonzero(failed)):
            s, d = int(s), int(d)
            why: Any = ""
            for b in bests:  # a failed pair has no choice in any: the first words win
                if why:
                    break
                why = b.why_or_later(s, d)
            todo.append((s, d, why))
        diag = np.zeros((E, E), dtype=bool)
        for s, d, why in todo:
            if isinstance(why, str) and why in ("", "no path"):
                diag[s, d] = True
        if diag.any():  # what diagnose() will ask, computed for all those pairs at once
            loose = P._unbounded(vs[0], keep_bandwidth=True)
            b = self._diag_best(loose, diag, lazy=True)
            if not b.done:
                yield [b]
            if vs[0].min_bandwidth_mbps > 0:
                b = self._diag_best(P._unbounded(vs[0]), diag, lazy=True)
                if not b.done:
                    yield [b]
        # the words are built when the result is (``_failure_words``): the Bests they read
        # are all computed here, from this block's measurements
        for s, d, why in todo:
            if isinstance(why, str) and why in ("", "no path"):
                why = _Diagnosis(self, vs[0], s, d)
            self.failures.setdefault((s, d), []).append((profile.name, why))

    def _failure_words(self, s, d) -> List[str]:
        """The reasons of the levels the pair failed, in words (built once, on first use)."""
        got = self.failures.get((s, d))
        if not got:
            return []
        if isinstance(got[0], str):
            return got
        words = ["no path meets %s (%s)" % (name, why if isinstance(why, str) else why.text())
                 for name, why in got]
        self.failures[(s, d)] = words
        return words

    def _diag_best(self, variant, need, lazy=False) -> _Best:
        key = ("diag", variant)
        b = self.best.get(key)
        if b is not None and not (need & ~b.need).any():
            return b
        if b is not None:
            need = need | b.need
        b = _Best(self.eng, self.tname, variant, self.eng.solution(variant),
                  self.eng.edges(self.tname, variant), need, lazy=lazy)
        self.best[key] = b
        return b

    @staticmethod
    def _direct_admitted(ed: _Edges, v: Variant):
        """Direct arcs within the bounds (one arc: its own metrics are the path's, already
        checked by ``_Edges`` for the same variant), unless no hop at all is allowed."""
        if v.max_hops is not None and v.max_hops < 1:
            return np.zeros_like(ed.direct_ok)
        return ed.direct_ok.copy()

    # -- choices ------------------------------------------------------------------------
    def choice(self, s, d) -> Optional[Choice]:
        """The chosen path before hysteresis (None: unreachable)."""
        li = int(self.level[s, d])
        if li < 0:
            return None
        variant = self.variants[li][int(self.vi[s, d])]
        if self.direct[s, d]:
            path = [self.names[s], self.names[d]]
            return Choice(variant, path, path_metrics(self.net.arcs_for(self.tname), path, variant))
        choice, _why = self.best[("chain", li, int(self.vi[s, d]))].get(s, d)
        return choice

    def final(self, s, d) -> Optional[Choice]:
        """The chosen path after hysteresis."""
        if (s, d) in self.primary:
            return self.primary[(s, d)]
        return self.choice(s, d)

    def _hysteresis(self):
        net = self.net
        arcs = net.arcs_for(self.tname)
        settings = net.inventory.pce
        for s in range(self.E):
            for d in range(self.E):
                if s == d or not self.only[s, d]:
                    continue
                cur = self.current.get((self.tname, self.tc.name, self.names[s], self.names[d]))
                if not cur or self.level[s, d] < 0:
                    continue
                ch = self.choice(s, d)
                ch2, kept, note = P.hysteresis(net, arcs, settings, ch, cur, self.names[s], self.names[d], self.tc)
                self.primary[(s, d)] = ch2
                # a path kept with (or without) FEC: its backup is computed under that variant
                self.vi[s, d] = self.variants[int(self.level[s, d])].index(ch2.variant)
                self.kept[(s, d)] = (kept, note)

    def _primary_path(self, s, d) -> List[str]:
        """The final primary path of a pair of this block (or borrowed), without metrics."""
        got = self.borrowed.get((s, d))
        if got is not None:
            return got._primary_path(s, d)
        if (s, d) in self.primary:
            return self.primary[(s, d)].path
        li = int(self.level[s, d])
        if li < 0:
            return []
        if self.direct[s, d]:
            return [self.names[s], self.names[d]]
        return self.best[("chain", li, int(self.vi[s, d]))].path_of(s, d)

    def _primary_masks(self, S, D):
        """Transit-core masks ``[n, words]`` and direct flags ``[n]`` of the final primary
        paths of pairs (``S[q]``, ``D[q]``) of this block: from the chain Best's candidate
        and core solution where that gives the path, else from the path itself.  A node-
        disjoint backup depends on nothing else of the primary (links between dropped
        nodes are dropped with them)."""
        eng = self.eng
        n = len(S)
        masks = np.zeros((n, (eng.C + 63) // 64), dtype=np.uint64)
        direct = np.zeros(n, dtype=bool)
        if not n:
            return masks, direct
        lv, vv, rule = self.level[S, D], self.vi[S, D], self.direct[S, D]
        simple = (lv >= 0) & ~rule
        direct[(lv >= 0) & rule] = True
        # paths given pair by pair: kept by hysteresis, or found by a search or a detour
        # (``explicit`` of the pair's own chain Best); borrowed ones from their layer
        given = self._given
        if given is None:  # the choices are final once backups are asked for: built once
            given = _keys_mask(self.E, self.primary)
            for key, b in self.best.items():
                if key[0] == "chain" and b.explicit:
                    given |= _keys_mask(self.E, b.explicit) & (self.level == key[1]) & (self.vi == key[2]) & ~self.direct
            self._given = given
        borrowed = _keys_mask(self.E, self.borrowed)[S, D] if self.borrowed else np.zeros(n, dtype=bool)
        own = np.nonzero(given[S, D] & ~borrowed)[0].tolist()
        simple &= ~given[S, D] & ~borrowed
        A = self.eng.tenant_struct(self.tname)["A"]
        Ac = np.where(A >= 0, A, 0)
        K = A.shape[1]
        code = lv * 8 + vv  # (level, variant index): at most 2 variants per level
        for c in np.nonzero(np.bincount(code[simple]))[0].tolist() if simple.any() else []:
            li, vi = divmod(c, 8)
            q = np.nonzero(simple & (code == c))[0]
            b = self.best[("chain", li, vi)]
            arg = b.arg[S[q], D[q]]
            comb = arg < K * K
            i, j = np.divmod(np.where(comb, arg, 0), K)
            masks[q[comb]] = b.sol.mask[Ac[S[q[comb]], i[comb]], Ac[D[q[comb]], j[comb]]]
            direct[q[~comb]] = True
        for q in own:
            path = self._primary_path(int(S[q]), int(D[q]))
            direct[q] = len(path) == 2
            for name in path[1:-1]:
                c = eng.cpos[name]
                masks[q, c // 64] |= np.uint64(1) << np.uint64(c % 64)
        if borrowed.any():
            q = np.nonzero(borrowed)[0]
            masks[q], direct[q] = self.prev.primary_masks(S[q], D[q])
        return masks, direct

    def _backup_pairs(self) -> None:
        """``bk_only`` of an update's layer, and the primaries it borrows from ``prev``:
        a pair of ``only`` keeps its backup where its primary's variant, transit cores and
        directness are those of ``prev`` and its backup search would answer the same."""
        prev = self.prev
        S, D = np.nonzero(self.only)
        new_m, new_d = self._primary_masks(S, D)
        old_m, old_d = prev.primary_masks(S, D)
        old_lv, old_vi = prev.chain_levels(S, D)
        changed = np.zeros_like(self.only)
        changed[S, D] = (self.level[S, D] != old_lv) | (self.vi[S, D] != old_vi) | (new_d != old_d) \
            | (new_m != old_m).any(axis=1)
        borrow = self.backup_dirty & ~self.only
        S, D = np.nonzero(borrow)
        self.level[S, D], self.vi[S, D] = prev.chain_levels(S, D)
        for s, d in zip(S.tolist(), D.tolist()):
            self.borrowed[(s, d)] = prev.layers[prev.owner[s, d]]
        self.bk_only = changed | self.backup_dirty

    # -- backups (node-disjoint, vectorised per variant) ----------------------------------
    def _drops(self, s, d):
        path = self._primary_path(s, d)
        links = set()
        for u, v in zip(path, path[1:]):
            links.add((u, v))
            links.add((v, u))
        return set(path[1:-1]), links

    def _backups(self):
        eng = self.eng
        E = self.E
        settings = self.net.inventory.pce
        if settings.backup != "node":
            return  # link-disjoint backups go pair by pair through the exact search
        words = (eng.C + 63) // 64
        made = []
        for li in range(len(self.chain)):
            for vi, variant in enumerate(self.variants[li]):
                group = self.bk_only & (self.level == li) & (self.vi == vi)
                if not group.any():
                    continue
                masks = np.zeros((E, E, words), dtype=np.uint64)
                is_direct = np.zeros((E, E), dtype=bool)
                sol = eng.solution(variant)
                S, D = np.nonzero(group)
                masks[S, D], is_direct[S, D] = self._primary_masks(S, D)
                bk = _Best(eng, self.tname, variant, sol, eng.edges(self.tname, variant), group.copy(),
                           masks, is_direct, self._drops, lazy=True)
                self.best[("backup", li, vi)] = bk
                made.append((li, vi, variant, group, masks, is_direct, bk))
        yield [m[-1] for m in made]
        loose_made = []
        for li, vi, variant, group, masks, is_direct, bk in made:
            todo = group & ~bk.admitted
            S, D = np.nonzero(group & bk.admitted)
            self.bk_of[S, D] = len(self.backups)
            self.backups.append(bk)
            if variant.level != BEST_EFFORT and todo.any():
                loose = P._unbounded(variant)
                lb = _Best(eng, self.tname, loose, eng.solution(loose), eng.edges(self.tname, loose),
                           todo, masks, is_direct, self._drops, lazy=True)
                self.best[("backup-loose", li, vi)] = lb
                loose_made.append((todo, lb))
        yield [m[1] for m in loose_made]
        for todo, lb in loose_made:
            S, D = np.nonzero(todo & lb.admitted)
            self.bk_of[S, D] = len(self.backups)
            self.backups.append(lb)

    # -- what a change of core arcs can reach ---------------------------------------------
    def _dirty_of(self, eng: FastEngine, owned, kinds):
        out = np.zeros_like(owned)
        for key, b in self.best.items():
            if key[0] in kinds:
                sol = eng._solutions.get(b.variant.prune_key)
                out |= b.dirty(sol, owned) if sol is not None else (b.need & owned)
        return out

    def dirty_backup(self, eng: FastEngine, owned):
        """Pairs of ``owned`` whose backup search may answer differently after ``eng``'s core
        solutions were repaired (for the same primary path)."""
        return self._dirty_of(eng, owned, ("backup", "backup-loose"))

    def dirty(self, eng: FastEngine, owned):
        """Pairs of ``owned`` whose choice may change after ``eng``'s core solutions were
        repaired: any of this block's searches for it may answer differently, or the
        current path that hysteresis judged crosses a changed arc."""
        out = self._dirty_of(eng, owned, ("chain", "diag"))
        if self.kept and eng._arc_chg is not None:
            chg, cpos = eng._arc_chg, eng.cpos
            for (s, d) in self.kept:
                if owned[s, d] and not out[s, d]:
                    path = self.current.get((self.tname, self.tc.name, self.names[s], self.names[d])) or []
                    out[s, d] = any(u in cpos and v in cpos and chg[cpos[u], cpos[v]] for u, v in zip(path, path[1:]))
        return out

    # -- materialise --------------------------------------------------------------------
    def result(self, s, d, bk_block: "Optional[_Block]" = None):
        """The pair's PathResult; its node-disjoint backup is ``bk_block``'s (default: this
        block's), the layer that computed it."""
        net = self.net
        settings = net.inventory.pce
        src, dst = self.names[s], self.names[d]
        cur = self.current.get((self.tname, self.tc.name, src, dst))
        failures = self._failure_words(s, d)
        choice = self.final(s, d)
        if choice is None:
            return make_result(net, self.tname, self.tc.name, src, dst, None, UNREACHABLE, failures,
                               False, "", None, cur)
        kept, note = self.kept.get((s, d), (False, ""))
        if settings.backup == "node":
            layer = bk_block or self
            i = int(layer.bk_of[s, d])
            bk = layer.backups[i].get(s, d)[0] if i >= 0 else None
        else:
            bk = self.ref.backup(self.tname, choice, src, dst, settings.max_candidates, settings.backup)
        return make_result(net, self.tname, self.tc.name, src, dst, choice,
                           self.chain[int(self.level[s, d])][1], failures, kept, note, bk, cur)


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector paused while the engine runs: it allocates hundreds of
    thousands of small acyclic objects (search heap entries, tuples), which trigger
    collections that walk every live object again and again; reference counting frees
    them all the same.  The previous state is restored (a collection then runs normally)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _build_blocks(blocks) -> None:
    """Run the blocks' ``_steps`` side by side: at each step the exact searches all of them
    wait for run in shared batches (``_run_searches``), then each block goes on."""
    waiting = []
    for blk in blocks:
        gen = blk._steps()
        bests = next(gen, None)
        if bests is not None:
            waiting.append((gen, bests))
    while waiting:
        _run_searches([b for _g, bests in waiting for b in bests])
        nxt = []
        for gen, _bests in waiting:
            bests = next(gen, None)
            if bests is not None:
                nxt.append((gen, bests))
        waiting = nxt


_MAX_LAYERS = 8  # a block with this many layers is recomputed whole by the next update


class _BlockView:
    """The answer for one tenant and traffic class as layers of ``_Block``s: ``owner[s, d]``
    is the layer that computed the choice of pair (s, d), ``bk_owner[s, d]`` the one that
    computed its backup (a full compute has one layer; each update adds one for the pairs
    it recomputed).  Layers are never changed once built."""

    def __init__(self, layers: List[_Block], owner, bk_owner):
        self.layers = layers
        self.owner = owner
        self.bk_owner = bk_owner
        top = layers[-1]
        self.tname, self.tc, self.names, self.E = top.tname, top.tc, top.names, top.E

    @classmethod
    def full(cls, block: _Block) -> "_BlockView":
        return cls([block], np.zeros((block.E, block.E), dtype=np.int64), np.zeros((block.E, block.E), dtype=np.int64))

    def with_layer(self, block: _Block) -> "_BlockView":
        """This view with ``block``'s choices and backups taken from it; layers left with
        neither dropped."""
        new = len(self.layers)
        owner = np.where(block.only, new, self.owner)
        bk_owner = np.where(block.bk_only, new, self.bk_owner)
        layers = self.layers + [block]
        idx = np.arange(self.E)
        off = ~np.eye(self.E, dtype=bool)
        used = np.bincount(owner[off], minlength=len(layers)) + np.bincount(bk_owner[off], minlength=len(layers))
        keep = used > 0
        keep[-1] = True
        if not keep.all():
            remap = np.cumsum(keep) - 1
            owner, bk_owner = remap[owner], remap[bk_owner]
            owner[idx, idx] = 0
            bk_owner[idx, idx] = 0
            layers = [lay for lay, k in zip(layers, keep) if k]
        return _BlockView(layers, owner, bk_owner)

    def primary_masks(self, S, D):
        """``_Block._primary_masks`` of pairs (``S[q]``, ``D[q]``), each from its chain's layer."""
        own = self.owner[S, D]
        masks = np.zeros((len(S), (self.layers[0].eng.C + 63) // 64), dtype=np.uint64)
        direct = np.zeros(len(S), dtype=bool)
        for i in np.nonzero(np.bincount(own))[0].tolist():
            q = np.nonzero(own == i)[0]
            masks[q], direct[q] = self.layers[i]._primary_masks(S[q], D[q])
        return masks, direct

    def chain_levels(self, S, D):
        """(profile level, variant index) of pairs (``S[q]``, ``D[q]``), from their chain's layer."""
        own = self.owner[S, D]
        lv = np.empty(len(S), dtype=np.int64)
        vi = np.empty(len(S), dtype=np.int64)
        for i in np.nonzero(np.bincount(own))[0].tolist():
            q = np.nonzero(own == i)[0]
            lv[q], vi[q] = self.layers[i].level[S[q], D[q]], self.layers[i].vi[S[q], D[q]]
        return lv, vi

    def dirty(self, eng: FastEngine):
        """(pairs whose choice may change, pairs whose backup may change)."""
        out = np.zeros((self.E, self.E), dtype=bool)
        bk = np.zeros((self.E, self.E), dtype=bool)
        diag = np.arange(self.E)
        for i, layer in enumerate(self.layers):
            owned = self.owner == i
            owned[diag, diag] = False
            if owned.any():
                out |= layer.dirty(eng, owned)
            owned = self.bk_owner == i
            owned[diag, diag] = False
            if owned.any():
                bk |= layer.dirty_backup(eng, owned)
        return out, bk

    def results(self):
        layers, owner, bk_owner = self.layers, self.owner.tolist(), self.bk_owner.tolist()
        for s in range(self.E):
            row, bk_row = owner[s], bk_owner[s]
            for d in range(self.E):
                if s != d:
                    yield layers[row[d]].result(s, d, layers[bk_row[d]])


def _keys_mask(E, keys):
    """An E x E mask of the (s, d) keys of a dict or list."""
    out = np.zeros((E, E), dtype=bool)
    if keys:
        idx = np.array(list(keys), dtype=np.int64).reshape(-1, 2)
        out[idx[:, 0], idx[:, 1]] = True
    return out


def _fork_network(net: Network) -> Network:
    """A copy of ``net`` that measurements can be applied to without changing ``net``
    (arcs are immutable; the maps that ``apply_measurements`` changes are copied)."""
    out = copy.copy(net)
    out.core_arcs = dict(net.core_arcs)
    out.measurements = dict(net.measurements)
    out.tenant_arcs = dict(net.tenant_arcs)
    return out


class _LazyPathSet(PathSet):
    """A PathSet whose results are built on first use (compute keeps only choices)."""

    def __init__(self, blocks, stats):
        self._blocks = blocks
        self._results = None
        self.stats = stats

    @property
    def results(self):
        if self._results is None:
            out = []
            for b in self._blocks:
                out.extend(b.results())
            self._results = sorted(out, key=lambda r: r.key)
        return self._results

    @results.setter
    def results(self, value):
        self._results = value


def _put_arc(m: Dict[str, Any], i: int, j: int, arc: Any) -> None:
    """One arc's measurements into the arrays ``m`` at [i, j]: the core arrays (build and
    patch alike), a tenant's access arrays [edge, k] and its direct arrays [edge, edge]."""
    m["lat"][i, j] = arc.latency_ms
    m["lat95"][i, j] = arc.latency_p95_ms
    m["jit"][i, j] = arc.jitter_ms
    m["loss"][i, j] = arc.loss
    m["bw"][i, j] = arc.bandwidth_mbps
    m["cost"][i, j] = arc.cost
