# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hand-checked path choices on small graphs, one behaviour per test.

Every graph is drawn above its test and the expected path is worked out by hand in the
comments, from the rules in the ``npms.pce`` module docstring.  Each test runs with both
engines (``reference``: networkx, ``fast``: numpy); they must give the same answer.

Node indices in ``pcekit.build`` follow the sorted node names starting at 1, so End SIDs
(``fcbb:0:<index>::1``) and the tenant's decap SIDs (``fcbb:1000:<index>::d4`` for the
first tenant) can be written down by hand.
"""

import math

import pytest

from npms.measurements import MeasurementError
from npms.model import PceSettings
from npms.pce import BEST_EFFORT, MET, MET_FALLBACK, UNREACHABLE, compute_paths
from pcekit import M, build

ENGINES = ("reference", "fast")


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def run(inv, engine, measurements=(), current=None):
    return compute_paths(inv, measurements=measurements, current=current, engine=engine)


def pick(paths, src="e1", dst="e2", cls="c", tenant="t"):
    r = paths.get(tenant, cls, src, dst)
    assert r is not None, "no result for %s %s %s->%s" % (tenant, cls, src, dst)
    return r


def core(*names, country="DE", region="europe"):
    return {n: ("core", country, region) for n in names}


def edge(*names, country="DE", region="europe"):
    return {n: ("edge", country, region) for n in names}


# ======================================================================================
# Modes
# ======================================================================================

# Two disjoint routes between e1 and e2:
#
#            lat 10 / cost 10     lat 10 / cost 10
#        +------------------ c1 ------------------+
#   e1 --+                                        +-- e2
#        +------------------ c2 ------------------+
#            lat 30 / cost 2      lat 30 / cost 2
#
#   via c1: latency 20, cost 20      via c2: latency 60, cost 4
TWO_ROUTES = dict(
    nodes={**core("c1", "c2"), **edge("e1", "e2")},
    links=[("e1", "c1", "access", M(lat=10, cost=10)), ("c1", "e2", "access", M(lat=10, cost=10)),
           ("e1", "c2", "access", M(lat=30, cost=2)), ("c2", "e2", "access", M(lat=30, cost=2))],
)


def two_routes(profile):
    return build(TWO_ROUTES["nodes"], TWO_ROUTES["links"], {"p": profile}, {"c": {"sla": "p"}})


def test_lowest_cost_takes_the_cheap_slow_route(engine):
    r = pick(run(two_routes({"mode": "lowest_cost"}), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.verdict == MET
    assert r.metrics.cost == pytest.approx(4.0)
    assert r.metrics.latency_ms == pytest.approx(60.0)


def test_lowest_latency_takes_the_fast_expensive_route(engine):
    r = pick(run(two_routes({"mode": "lowest_latency"}), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.verdict == MET
    assert r.metrics.latency_ms == pytest.approx(20.0)
    assert r.metrics.cost == pytest.approx(20.0)


def test_both_directions_are_computed(engine):
    # the graph is symmetric: e2 -> e1 mirrors e1 -> e2
    r = pick(run(two_routes({"mode": "lowest_latency"}), engine), "e2", "e1")
    assert r.path == ["e2", "c1", "e1"]


# zero_loss: loss composes multiplicatively.
#
#            loss 10 %            loss 10 %
#        +------------------ c1 ------------------+
#   e1 --+                                        +-- e2
#        +------------------ c2 ------------------+
#            loss 0 %             loss 19.5 %
#
#   via c1: 1 - 0.9 * 0.9 = 19 %  (an additive model would say 20 %)
#   via c2: 19.5 %
#   -> c1 is the lower-loss route; adding the percentages would have picked c2.
LOSSY = dict(
    nodes={**core("c1", "c2"), **edge("e1", "e2")},
    links=[("e1", "c1", "access", M(loss=10)), ("c1", "e2", "access", M(loss=10)),
           ("e1", "c2", "access", M(loss=0)), ("c2", "e2", "access", M(loss=19.5))],
)


def test_zero_loss_composes_loss_multiplicatively(engine):
    inv = build(LOSSY["nodes"], LOSSY["links"], {"p": {"mode": "zero_loss", "max_loss_pct": 25}},
                {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.metrics.loss == pytest.approx(0.19)
    assert r.to_dict()["metrics"]["loss_pct"] == pytest.approx(19.0)
    assert r.verdict == MET


def test_zero_loss_without_a_bound_means_no_loss_at_all(engine):
    # zero_loss with no max_loss_pct: any loss breaks the SLA; with no fallback the
    # verdict is best effort, still on the lowest-loss route, and the reason says why.
    inv = build(LOSSY["nodes"], LOSSY["links"], {"p": {"mode": "zero_loss"}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.verdict == BEST_EFFORT
    assert r.path == ["e1", "c1", "e2"]
    assert "no path meets p" in r.reason
    assert "loss" in r.reason


def test_zero_loss_prefers_a_lossless_route_over_a_faster_lossy_one(engine):
    #        lat 1, loss 0.1 %      lat 1
    #   e1 ---------------- c1 ---------------- e2
    #    \                                      /
    #     +--- lat 50 --- c2 --- lat 50 -------+        (lossless)
    inv = build({**core("c1", "c2"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=1, loss=0.1)), ("c1", "e2", "access", M(lat=1)),
                 ("e1", "c2", "access", M(lat=50)), ("c2", "e2", "access", M(lat=50))],
                {"p": {"mode": "zero_loss", "max_loss_pct": 1.0}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.metrics.loss == 0.0


# lossless_fec (target: the default 0.01 % residual loss; FEC 10+2: overhead 1.2).
#
#            lat 20, loss 0         lat 20, loss 0          "clean": latency 40, cost 20
#        +------------------ c1 ------------------+
#   e1 --+                                        +-- e2
#        +------------------ c2 ------------------+
#            lat 10, loss 1 %       lat 0, loss 0           "lossy": latency 10, cost 20
#
# Without FEC only the clean route meets 0.01 %.  With FEC 10+2 a 1 % path loss leaves
# ~0.0055 % (1 % * C(11,2) * 1 %^2 ...) < 0.01 %: the lossy route is admitted and, being
# 30 ms faster, wins; its cost is charged 1.2x (24) and it needs 1.2x the bandwidth.
def fec_graph(lossy_bw=1000.0, clean_lat=20.0, fec=(10, 2), min_bw=None, lossy_loss=1.0):
    prof = {"mode": "lossless_fec"}
    if min_bw is not None:
        prof["min_bandwidth_mbps"] = min_bw
    cls = {"sla": "p"}
    if fec:
        cls["fec"] = fec
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=clean_lat)), ("c1", "e2", "access", M(lat=clean_lat)),
                  ("e1", "c2", "access", M(lat=10, loss=lossy_loss, bw=lossy_bw)),
                  ("c2", "e2", "access", M(lat=0, bw=lossy_bw))],
                 {"p": prof}, {"c": cls})


def test_lossless_fec_turns_fec_on_for_a_faster_lossy_route(engine):
    r = pick(run(fec_graph(), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.fec is True
    assert r.verdict == MET
    assert r.metrics.loss == pytest.approx(0.01)
    assert r.metrics.residual_loss < 0.0001
    assert r.metrics.cost == pytest.approx(24.0)  # 20 charged 1.2x for the parity packets
    assert "FEC 10+2 on" in r.reason


def test_lossless_fec_keeps_fec_off_when_the_clean_route_is_faster(engine):
    # clean route now 2 x 4 ms = 8 ms < 10 ms: no FEC needed, none charged
    r = pick(run(fec_graph(clean_lat=4.0), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.fec is False
    assert r.metrics.cost == pytest.approx(20.0)
    assert "FEC" not in r.reason


def test_lossless_fec_ties_go_to_no_fec(engine):
    # both routes lossless and identical but c2 has lat 10+0 vs c1 5+5: same latency,
    # same cost.  The FEC variant would charge cost 24 > 20, so no FEC; and between the
    # equal no-FEC routes the name order picks c1.
    r = pick(run(fec_graph(clean_lat=5.0, lossy_loss=0.0), engine))
    assert r.fec is False
    assert r.path == ["e1", "c1", "e2"]


def test_lossless_fec_charges_the_overhead_on_bandwidth(engine):
    # 100 Mbit/s needed; with FEC 120.  The lossy route has 110: enough without FEC but
    # not with it, and without FEC its 1 % loss misses the target -> the clean route.
    r = pick(run(fec_graph(lossy_bw=110.0, min_bw=100.0), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.fec is False
    # with 130 Mbit/s the FEC route fits again
    r = pick(run(fec_graph(lossy_bw=130.0, min_bw=100.0), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.fec is True


def test_lossless_fec_without_fec_on_the_class_cannot_use_the_lossy_route(engine):
    r = pick(run(fec_graph(fec=None), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.fec is False


def test_lossless_fec_loss_too_high_for_fec_is_not_admitted(engine):
    # 5 % path loss: residual after 10+2 is about 0.51 % (fec_residual_loss) > 0.01 %; the clean
    # route (40 ms) is taken without FEC.
    r = pick(run(fec_graph(lossy_loss=5.0), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.fec is False


# sustained_bandwidth: weight = sum of 100000 / bandwidth per arc (OSPF style).
#
#            40000 Mbit/s          1500 Mbit/s
#        +------------------ c1 ------------------+     2.5 + 66.7 = 69.2
#   e1 --+                                        +-- e2
#        +------------------ c2 ------------------+     40 + 40    = 80
#            2500 Mbit/s           2500 Mbit/s
def bw_graph(min_bw):
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(bw=40000)), ("c1", "e2", "access", M(bw=1500)),
                  ("e1", "c2", "access", M(bw=2500)), ("c2", "e2", "access", M(bw=2500))],
                 {"p": {"mode": "sustained_bandwidth", "min_bandwidth_mbps": min_bw}}, {"c": {"sla": "p"}})


def test_sustained_bandwidth_minimises_inverse_bandwidth(engine):
    r = pick(run(bw_graph(1000), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.metrics.bandwidth_mbps == pytest.approx(1500.0)  # the bottleneck


def test_sustained_bandwidth_threshold_prunes_thin_links(engine):
    # 2000 Mbit/s required: the 1500 Mbit/s link is pruned, c2's 2500 fits
    r = pick(run(bw_graph(2000), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.metrics.bandwidth_mbps == pytest.approx(2500.0)
    assert r.verdict == MET


def test_sustained_bandwidth_threshold_met_exactly_is_enough(engine):
    r = pick(run(bw_graph(2500), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.verdict == MET


def test_sustained_bandwidth_threshold_nobody_meets(engine):
    # 3000 required: neither route has it; no fallback -> best effort on the best route,
    # the reason names the bandwidth
    r = pick(run(bw_graph(3000), engine))
    assert r.verdict == BEST_EFFORT
    assert r.path == ["e1", "c1", "e2"]
    assert "3000 Mbit/s" in r.reason


# ======================================================================================
# Constraints
# ======================================================================================

# Geo: three routes, fastest first.
#
#        lat 1        lat 1
#   e1 ------- c2(IN, asia) ------- e2          2 ms
#    |\                            /|
#    | +- lat 5 - c1(FR) - lat 5 -+ |           10 ms, link c1-e2 crosses RU
#    |              via RU          |
#    +--- lat 20 -- c3(US) - lat 20-+           40 ms
def geo_graph(profile, e1_country="DE", e1_region="europe", e2_country="GB"):
    nodes = {"c1": ("core", "FR", "europe"), "c2": ("core", "IN", "asia"),
             "c3": ("core", "US", "north-america"),
             "e1": ("edge", e1_country, e1_region), "e2": ("edge", e2_country, "europe")}
    links = [("e1", "c2", "access", M(lat=1)), ("c2", "e2", "access", M(lat=1)),
             ("e1", "c1", "access", M(lat=5)), ("c1", "e2", "access", M(lat=5, via=("RU",))),
             ("e1", "c3", "access", M(lat=20)), ("c3", "e2", "access", M(lat=20))]
    return build(nodes, links, {"p": dict(profile, mode="lowest_latency")}, {"c": {"sla": "p"}})


def test_geo_no_exclusion_takes_the_fastest_route(engine):
    assert pick(run(geo_graph({}), engine)).path == ["e1", "c2", "e2"]


def test_geo_exclude_country_avoids_transit_in_it(engine):
    r = pick(run(geo_graph({"exclude_countries": ("IN",)}), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.verdict == MET


def test_geo_exclude_region_avoids_transit_in_it(engine):
    r = pick(run(geo_graph({"exclude_regions": ("asia",)}), engine))
    assert r.path == ["e1", "c1", "e2"]


def test_geo_exclude_country_avoids_links_via_it(engine):
    # c1 is in FR, but its link to e2 crosses RU
    r = pick(run(geo_graph({"exclude_countries": ("IN", "RU")}), engine))
    assert r.path == ["e1", "c3", "e2"]


def test_geo_exclusion_of_everything_is_unreachable(engine):
    r = pick(run(geo_graph({"exclude_countries": ("IN", "RU", "US")}), engine))
    assert r.verdict == UNREACHABLE
    assert r.path == [] and r.sid_list == [] and r.metrics is None
    assert "IN" in r.reason


def test_geo_source_edge_is_exempt_from_exclusion(engine):
    # e1 itself is in India: excluding IN forbids transit there, not sending from there
    r = pick(run(geo_graph({"exclude_countries": ("IN",)}, e1_country="IN", e1_region="asia"), engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.verdict == MET
    r = pick(run(geo_graph({"exclude_regions": ("asia",)}, e1_country="IN", e1_region="asia"), engine))
    assert r.path == ["e1", "c1", "e2"]


def test_geo_destination_edge_is_exempt_from_exclusion(engine):
    r = pick(run(geo_graph({"exclude_countries": ("IN",)}, e1_country="IN", e1_region="asia"), engine),
             "e2", "e1")
    assert r.path == ["e2", "c1", "e1"]
    assert r.verdict == MET


def test_geo_exclusion_applies_to_best_effort_too(engine):
    # a latency bound nobody meets -> best effort, which still avoids IN
    r = pick(run(geo_graph({"exclude_countries": ("IN",), "max_latency_ms": 1}), engine))
    assert r.verdict == BEST_EFFORT
    assert r.path == ["e1", "c1", "e2"]


# Bandwidth threshold (any mode) and hop limit.
#
#        lat 1        lat 1        lat 1
#   e1 ------- c1 ------- c2 ------- e2         3 hops, 3 ms, core c1-c2: 100 Mbit/s
#    \                               /
#     +------ lat 10 --- c3 -- lat 10            2 hops, 20 ms
def hops_graph(profile):
    return build({**core("c1", "c2", "c3"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=1)), ("c1", "c2", "core", M(lat=1, bw=100)),
                  ("c2", "e2", "access", M(lat=1)),
                  ("e1", "c3", "access", M(lat=10)), ("c3", "e2", "access", M(lat=10))],
                 {"p": dict(profile, mode="lowest_latency")}, {"c": {"sla": "p"}})


def test_unconstrained_takes_the_three_hop_fast_route(engine):
    r = pick(run(hops_graph({}), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.metrics.hops == 3


def test_hop_limit(engine):
    r = pick(run(hops_graph({"max_hops": 2}), engine))
    assert r.path == ["e1", "c3", "e2"]
    assert r.verdict == MET
    assert r.metrics.hops == 2


def test_hop_limit_nobody_meets_names_the_hops(engine):
    r = pick(run(hops_graph({"max_hops": 1}), engine))
    assert r.verdict == BEST_EFFORT
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert "hops > 1" in r.reason


def test_bandwidth_threshold_in_a_latency_mode(engine):
    r = pick(run(hops_graph({"min_bandwidth_mbps": 500}), engine))
    assert r.path == ["e1", "c3", "e2"]
    assert r.verdict == MET
    assert r.metrics.bandwidth_mbps == pytest.approx(1000.0)


# Path bounds in lowest_cost: the cheap route breaks the bound only as a whole path
# (each of its arcs is within it), so the engine has to look past the cheapest path.
#
#        cost 1, lat 30       cost 1, lat 30
#   e1 ------------- c1 ------------- e2        cost 2,  latency 60
#    \                                /
#     +--- cost 10, lat 10 -- c2 -- cost 10, lat 10    cost 20, latency 20
def bound_graph(cheap, profile, fallback=None):
    """cheap: metrics of each arc of the cheap route (M kwargs)."""
    profiles = {"p": dict(profile, mode="lowest_cost")}
    cls = {"sla": "p"}
    if fallback:
        profiles["f"] = dict(fallback, mode="lowest_cost")
        cls["fallback"] = "f"
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(cost=1, **cheap)), ("c1", "e2", "access", M(cost=1, **cheap)),
                  ("e1", "c2", "access", M(cost=10, lat=10)), ("c2", "e2", "access", M(cost=10, lat=10))],
                 profiles, {"c": cls})


@pytest.mark.parametrize("cheap, bound, within", [
    ({"lat": 30}, {"max_latency_ms": 50}, {"max_latency_ms": 60}),
    ({"jit": 3}, {"max_jitter_ms": 5}, {"max_jitter_ms": 6}),
    # 1 - 0.994^2 = 1.1964 %
    ({"loss": 0.6}, {"max_loss_pct": 1.0}, {"max_loss_pct": 1.2}),
], ids=["latency", "jitter", "loss"])
def test_path_bound_in_lowest_cost(engine, cheap, bound, within):
    r = pick(run(bound_graph(cheap, within), engine))
    assert r.path == ["e1", "c1", "e2"], "within the bound the cheap route is taken"
    r = pick(run(bound_graph(cheap, bound), engine))
    assert r.path == ["e1", "c2", "e2"], "the cheap route breaks the bound as a whole path"
    assert r.verdict == MET
    assert r.metrics.cost == pytest.approx(20.0)


@pytest.mark.parametrize("cheap, bound", [
    ({"lat": 60}, {"max_latency_ms": 50}),
    ({"jit": 6}, {"max_jitter_ms": 5}),
    ({"loss": 2.0}, {"max_loss_pct": 1.0}),
], ids=["latency", "jitter", "loss"])
def test_arc_over_the_bound_is_pruned(engine, cheap, bound):
    r = pick(run(bound_graph(cheap, bound), engine))
    assert r.path == ["e1", "c2", "e2"]
    assert r.verdict == MET


# allow_direct.
#
#   e1 ================= e2      direct internet path: lat 30, loss 0.5 %, cost 0
#    \                  /
#     c1 ---- c2 ------+        core: 3 x lat 5 = 15 ms, cost 30, lossless
def direct_graph(profile, direct_loss=0.5):
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "e2", "direct", M(lat=30, loss=direct_loss, cost=0)),
                  ("e1", "c1", "access", M(lat=5)), ("c1", "c2", "core", M(lat=5)),
                  ("c2", "e2", "access", M(lat=5))],
                 {"p": dict(profile, mode="lowest_latency")}, {"c": {"sla": "p"}})


def test_direct_path_chosen_when_allowed_and_meeting_the_sla(engine):
    # the core path is faster, but an admitted direct path wins by rule
    r = pick(run(direct_graph({"allow_direct": True, "max_latency_ms": 50, "max_loss_pct": 1}), engine))
    assert r.path == ["e1", "e2"]
    assert r.direct is True
    assert r.verdict == MET
    assert r.sid_list == ["fcbb:1000:4::d4"]  # e2 is node 4: only its decap SID
    assert "direct internet path" in r.reason


def test_direct_path_not_used_when_not_allowed(engine):
    r = pick(run(direct_graph({"allow_direct": False, "max_latency_ms": 50, "max_loss_pct": 1}), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.direct is False


@pytest.mark.parametrize("bound", [{"max_latency_ms": 20, "max_loss_pct": 1},
                                   {"max_latency_ms": 50, "max_loss_pct": 0.1}],
                         ids=["too-slow", "too-lossy"])
def test_direct_path_not_used_when_it_breaks_the_sla(engine, bound):
    r = pick(run(direct_graph(dict(bound, allow_direct=True)), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.direct is False
    assert r.verdict == MET


def test_direct_path_under_best_effort_when_allowed(engine):
    # nothing meets 10 ms; best effort keeps the direct policy: the direct path is
    # allowed and (with no bounds) admitted -> it is chosen
    r = pick(run(direct_graph({"allow_direct": True, "max_latency_ms": 10}), engine))
    assert r.verdict == BEST_EFFORT
    assert r.path == ["e1", "e2"]


def test_direct_path_at_full_loss_is_never_used(engine):
    r = pick(run(direct_graph({"allow_direct": True}, direct_loss=100.0), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]


# ======================================================================================
# Fallback chain
# ======================================================================================

#   e1 --- lat L/2 --- c1 --- lat L/2 --- e2
#   gold: latency <= 20 ms; silver (fallback): latency <= 50 ms
def chain_graph(latency, country="DE"):
    return build({"c1": ("core", country, "europe"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=latency / 2.0)), ("c1", "e2", "access", M(lat=latency / 2.0))],
                 {"gold": {"mode": "lowest_latency", "max_latency_ms": 20, "exclude_countries": ("IN",)},
                  "silver": {"mode": "lowest_latency", "max_latency_ms": 50}},
                 {"c": {"sla": "gold", "fallback": "silver"}})


def test_chain_met(engine):
    r = pick(run(chain_graph(15), engine))
    assert r.verdict == MET
    assert r.profile == "gold"
    assert r.reason.startswith("meets gold")


def test_chain_met_fallback_names_the_failed_bound(engine):
    r = pick(run(chain_graph(30), engine))
    assert r.verdict == MET_FALLBACK
    assert r.profile == "silver"
    assert r.path == ["e1", "c1", "e2"]
    assert "no path meets gold" in r.reason
    assert "latency 30.0 ms > 20.0 ms" in r.reason


def test_chain_unmet_best_effort_names_both_failures(engine):
    r = pick(run(chain_graph(80), engine))
    assert r.verdict == BEST_EFFORT
    assert r.profile == "gold"  # best effort runs under the SLA profile's mode and geo
    assert r.path == ["e1", "c1", "e2"]
    assert "no path meets gold" in r.reason and "latency 80.0 ms > 20.0 ms" in r.reason
    assert "no path meets silver" in r.reason and "latency 80.0 ms > 50.0 ms" in r.reason


def test_chain_geo_failure_falls_back_to_a_profile_without_it(engine):
    # the only transit core is in IN, which gold excludes; silver does not: 15 ms meets it
    r = pick(run(chain_graph(15, country="IN"), engine))
    assert r.verdict == MET_FALLBACK
    assert r.path == ["e1", "c1", "e2"]
    assert "no path meets gold (no path avoiding IN)" in r.reason


def test_chain_unreachable(engine):
    # gold: no path avoiding IN; silver: 80 ms > 50 ms; best effort runs under gold's
    # geo exclusion -> nothing at all
    r = pick(run(chain_graph(80, country="IN"), engine))
    assert r.verdict == UNREACHABLE
    assert r.path == [] and r.backup_path == [] and r.profile is None
    assert "no path meets gold (no path avoiding IN)" in r.reason
    assert "latency 80.0 ms > 50.0 ms" in r.reason


def test_unreachable_when_the_edge_has_no_working_link(engine):
    inv = build({**core("c1"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(loss=100)), ("c1", "e2", "access", M())],
                {"p": {"mode": "lowest_cost"}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.verdict == UNREACHABLE
    assert r.path == []


# ======================================================================================
# Backup
# ======================================================================================

#             lat 1
#       +---- c1 ----- c2 ----+           primary: e1 c1 c2 e2 (3 ms)
#       |     |  \   / |      |
#   e1 -+     |   \ /  |      +- e2       (all access and c1-c2: lat 1)
#       |     |   / \  |      |           c1-c3, c1-c4, c2-c3: lat 1 cross links
#       +---- c3 ----- c4 ----+           c3-c4: lat 20
#       lat 5         lat 5
#
# Node-disjoint backup: c1 and c2 are forbidden -> e1 c3 c4 e2 (5 + 20 + 5 = 30).
# Link-disjoint backup: only the primary's links are forbidden -> e1 c3 c1 c4 e2
#   (5 + 1 + 1 + 5 = 12) beats e1 c3 c4 e2.
def backup_graph(backup="node"):
    return build({**core("c1", "c2", "c3", "c4"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=1)), ("c1", "c2", "core", M(lat=1)),
                  ("c2", "e2", "access", M(lat=1)),
                  ("e1", "c3", "access", M(lat=5)), ("c3", "c4", "core", M(lat=20)),
                  ("c4", "e2", "access", M(lat=5)),
                  ("c1", "c3", "core", M(lat=1)), ("c1", "c4", "core", M(lat=1)),
                  ("c2", "c3", "core", M(lat=1))],
                 {"p": {"mode": "lowest_latency"}}, {"c": {"sla": "p"}},
                 pce=PceSettings(backup=backup))


def test_backup_is_node_disjoint(engine):
    r = pick(run(backup_graph(), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.backup_path == ["e1", "c3", "c4", "e2"]
    assert r.backup_metrics.latency_ms == pytest.approx(30.0)
    # c3 is node 3, c4 node 4, e2 node 6
    assert r.backup_sid_list == ["fcbb:1000:3::1", "fcbb:1000:4::1", "fcbb:1000:6::d4"]


def test_backup_link_disjoint_may_share_nodes(engine):
    r = pick(run(backup_graph("link"), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.backup_path == ["e1", "c3", "c1", "c4", "e2"]


def test_backup_none(engine):
    r = pick(run(backup_graph("none"), engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.backup_path == [] and r.backup_sid_list == [] and r.backup_metrics is None


def test_no_backup_when_single_homed(engine):
    #   e1 --- c1 --- c2 --- e2        e1 only reaches the core through c1
    #          |      |
    #          +- c3 -+--- e2
    inv = build({**core("c1", "c2", "c3"), **edge("e1", "e2")},
                [("e1", "c1", "access", M()), ("c1", "c2", "core", M()), ("c2", "e2", "access", M()),
                 ("c1", "c3", "core", M(lat=5)), ("c3", "e2", "access", M(lat=5))],
                {"p": {"mode": "lowest_latency"}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.path == ["e1", "c1", "c2", "e2"]
    assert r.backup_path == []
    # the other way round e2 is dual-homed but the far end (e1) is not: still no backup
    r = pick(run(inv, engine), "e2", "e1")
    assert r.backup_path == []


def test_backup_falls_back_to_best_effort(engine):
    # the only disjoint route breaks the 10 ms bound: the backup is still given
    #   e1 - c1 - e2 (2 ms)      e1 - c2 - e2 (40 ms)
    inv = build({**core("c1", "c2"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=1)), ("c1", "e2", "access", M(lat=1)),
                 ("e1", "c2", "access", M(lat=20)), ("c2", "e2", "access", M(lat=20))],
                {"p": {"mode": "lowest_latency", "max_latency_ms": 10}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.backup_path == ["e1", "c2", "e2"]


# ======================================================================================
# Hysteresis (defaults: 10 % and at least 1 unit of the objective)
# ======================================================================================

#        lat 10          lat 10
#   e1 --------- c1 ---------- e2          20 ms
#    \                        /
#     +-- lat X/2 -- c2 -- lat X/2         X ms
def hyst_graph(via_c2, profile=None):
    prof = {"mode": "lowest_latency"}
    prof.update(profile or {})
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=10)), ("c1", "e2", "access", M(lat=10)),
                  ("e1", "c2", "access", M(lat=via_c2 / 2.0)), ("c2", "e2", "access", M(lat=via_c2 / 2.0))],
                 {"p": prof}, {"c": {"sla": "p"}})


CURRENT_VIA_C2 = {("t", "c", "e1", "e2"): ["e1", "c2", "e2"]}


def test_hysteresis_keeps_current_path_within_margin(engine):
    # c2 route 21 ms vs best 20 ms: gain 1 ms <= max(10 % of 21, 1) = 2.1 ms -> keep
    r = pick(run(hyst_graph(21), engine, current=CURRENT_VIA_C2))
    assert r.path == ["e1", "c2", "e2"]
    assert r.kept is True and r.changed is False
    assert "kept current path" in r.reason
    assert r.metrics.latency_ms == pytest.approx(21.0)
    assert r.backup_path == ["e1", "c1", "e2"]


def test_hysteresis_moves_beyond_margin(engine):
    # 30 ms vs 20 ms: gain 10 ms > max(3, 1) -> move
    r = pick(run(hyst_graph(30), engine, current=CURRENT_VIA_C2))
    assert r.path == ["e1", "c1", "e2"]
    assert r.kept is False and r.changed is True
    assert "moved: latency improves by 10 ms" in r.reason


def test_hysteresis_minimum_margin_applies_on_small_values(engine):
    # 2 ms vs 1.2 ms: 10 % of 2 is 0.2 but the minimum margin is 1 ms -> keep;
    # with a 0.5 ms minimum the 0.8 ms gain is enough -> move
    def graph(pce):
        return build({**core("c1", "c2"), **edge("e1", "e2")},
                     [("e1", "c1", "access", M(lat=0.6)), ("c1", "e2", "access", M(lat=0.6)),
                      ("e1", "c2", "access", M(lat=1)), ("c2", "e2", "access", M(lat=1))],
                     {"p": {"mode": "lowest_latency"}}, {"c": {"sla": "p"}}, pce=pce)

    assert pick(run(graph(PceSettings()), engine, current=CURRENT_VIA_C2)).path == ["e1", "c2", "e2"]
    moved = pick(run(graph(PceSettings(hysteresis_min=0.5)), engine, current=CURRENT_VIA_C2))
    assert moved.path == ["e1", "c1", "e2"]


def test_hysteresis_same_path_is_not_a_change(engine):
    r = pick(run(hyst_graph(30), engine, current={("t", "c", "e1", "e2"): ["e1", "c1", "e2"]}))
    assert r.path == ["e1", "c1", "e2"]
    assert r.changed is False and r.kept is False


def test_hysteresis_accepts_a_previous_result_list(engine):
    previous = run(hyst_graph(30), engine).to_list()
    for row in previous:
        if (row["src"], row["dst"]) == ("e1", "e2"):
            row["path"] = ["e1", "c2", "e2"]
    r = pick(run(hyst_graph(21), engine, current=previous))
    assert r.path == ["e1", "c2", "e2"] and r.kept is True


# Current path that now violates the SLA, named by its worst link.
#
#        loss 1 %        loss 3.1 % (measured c1->c2)
#   e1 ---------- c1 ---------- c2 --------- e2       1 - 0.99 * 0.969 = 4.069 % > 4 %
#    \                                      /
#     +------------- lat 50 -- c3 -- lat 50+          lossless, 100 ms
def test_hysteresis_leaves_a_current_path_that_breaks_the_sla(engine):
    inv = build({**core("c1", "c2", "c3"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=1, loss=1.0)), ("c1", "c2", "core", M(lat=1)),
                 ("c2", "e2", "access", M(lat=1)),
                 ("e1", "c3", "access", M(lat=50)), ("c3", "e2", "access", M(lat=50))],
                {"p": {"mode": "lowest_latency", "max_loss_pct": 4.0}}, {"c": {"sla": "p"}})
    current = {("t", "c", "e1", "e2"): ["e1", "c1", "c2", "e2"]}
    # before the measurement the current path is also the best: kept as is
    assert pick(run(inv, engine, current=current)).path == ["e1", "c1", "c2", "e2"]
    ms = [{"src": "c1", "dst": "c2", "latency_ms": 1.0, "loss_pct": 3.1}]
    r = pick(run(inv, engine, measurements=ms, current=current))
    assert r.path == ["e1", "c3", "e2"]
    assert r.changed is True and r.kept is False
    assert "current path e1>c1>c2>e2 violates p" in r.reason
    assert "loss 3.1% on c1 to c2" in r.reason


def test_hysteresis_leaves_a_current_path_over_a_link_now_down(engine):
    inv = hyst_graph(21)
    ms = [{"src": "e1", "dst": "c2", "latency_ms": 10.5, "loss_pct": 100.0}]
    r = pick(run(inv, engine, measurements=ms, current=CURRENT_VIA_C2))
    assert r.path == ["e1", "c1", "e2"]
    assert "e1 to c2 is down" in r.reason


def test_hysteresis_leaves_a_current_path_through_an_excluded_node(engine):
    inv = build({"c1": ("core", "DE", "europe"), "c2": ("core", "IN", "asia"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=10)), ("c1", "e2", "access", M(lat=10)),
                 ("e1", "c2", "access", M(lat=10.5)), ("c2", "e2", "access", M(lat=10.5))],
                {"p": {"mode": "lowest_latency", "exclude_countries": ("IN",)}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine, current=CURRENT_VIA_C2))
    assert r.path == ["e1", "c1", "e2"]
    assert "c2 is in an excluded country or region" in r.reason


# ======================================================================================
# Tie-break, SID list
# ======================================================================================

def test_equal_weights_go_to_the_smallest_node_names(engine):
    #      +-- cb --+
    #   e1 +-- ca --+ e2     all arcs identical; links declared cb first
    #      +-- cc --+
    inv = build({**core("cb", "ca", "cc"), **edge("e1", "e2")},
                [("e1", "cb", "access", M()), ("cb", "e2", "access", M()),
                 ("e1", "cc", "access", M()), ("cc", "e2", "access", M()),
                 ("e1", "ca", "access", M()), ("ca", "e2", "access", M())],
                {"p": {"mode": "lowest_cost"}}, {"c": {"sla": "p"}})
    paths = run(inv, engine)
    assert pick(paths).path == ["e1", "ca", "e2"]
    assert pick(paths, "e2", "e1").path == ["e2", "ca", "e1"]
    # node-disjoint backup: the next name
    assert pick(paths).backup_path == ["e1", "cb", "e2"]


def test_tie_break_compares_the_whole_name_sequence(engine):
    #   e1 - a1 - z1 - e2 ; e1 - a1 - b1 - e2 ; e1 - b0 - a0 - e2    all 3 x cost 10
    #   -> [e1, a1, b1, e2]: a1 < b0 at the first core, then b1 < z1
    inv = build({**core("a1", "z1", "b1", "b0", "a0"), **edge("e1", "e2")},
                [("e1", "a1", "access", M()), ("a1", "z1", "core", M()), ("z1", "e2", "access", M()),
                 ("a1", "b1", "core", M()), ("b1", "e2", "access", M()),
                 ("e1", "b0", "access", M()), ("b0", "a0", "core", M()), ("a0", "e2", "access", M())],
                {"p": {"mode": "lowest_cost"}}, {"c": {"sla": "p"}})
    assert pick(run(inv, engine)).path == ["e1", "a1", "b1", "e2"]


def test_tie_break_fewer_hops_before_names(engine):
    #   e1 - c1 - c2 - e2 : latency 3+3+4 = 10, cost 5+5+10 = 20
    #   e1 - c9 - e2      : latency 5+5   = 10, cost 10+10  = 20  -> fewer hops wins
    inv = build({**core("c1", "c2", "c9"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=3, cost=5)), ("c1", "c2", "core", M(lat=3, cost=5)),
                 ("c2", "e2", "access", M(lat=4, cost=10)),
                 ("e1", "c9", "access", M(lat=5, cost=10)), ("c9", "e2", "access", M(lat=5, cost=10))],
                {"p": {"mode": "lowest_latency"}}, {"c": {"sla": "p"}})
    assert pick(run(inv, engine)).path == ["e1", "c9", "e2"]


def test_tie_break_secondary_objective_before_names(engine):
    #   lowest_cost: both routes cost 20; via c1 latency 30, via c2 latency 20 -> c2
    inv = build({**core("c1", "c2"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=15)), ("c1", "e2", "access", M(lat=15)),
                 ("e1", "c2", "access", M(lat=10)), ("c2", "e2", "access", M(lat=10))],
                {"p": {"mode": "lowest_cost"}}, {"c": {"sla": "p"}})
    assert pick(run(inv, engine)).path == ["e1", "c2", "e2"]


def test_edges_never_carry_transit(engine):
    #   e1 - e3 - e2 would be 2 ms (access to an edge is not possible, so use direct
    #   links e1=e3 and e3=e2); the core route is 20 ms.  The direct e1=e2 does not exist.
    inv = build({**core("c1"), **edge("e1", "e2", "e3")},
                [("e1", "e3", "direct", M(lat=1)), ("e3", "e2", "direct", M(lat=1)),
                 ("e1", "c1", "access", M(lat=10)), ("c1", "e2", "access", M(lat=10)),
                 ("e3", "c1", "access", M(lat=10))],
                {"p": {"mode": "lowest_latency", "allow_direct": True}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine))
    assert r.path == ["e1", "c1", "e2"]
    assert r.backup_path == []  # the only other route would transit e3


def test_sid_list_lists_transit_tenant_end_sids_then_the_decap_sid(engine):
    # sorted names: c1=1 c2=2 e1=3 e2=4
    #   e1 - c1 - c2 - e2
    inv = build({**core("c1", "c2"), **edge("e1", "e2")},
                [("e1", "c1", "access", M()), ("c1", "c2", "core", M()), ("c2", "e2", "access", M())],
                {"p": {"mode": "lowest_cost"}}, {"c": {"sla": "p"}})
    paths = run(inv, engine)
    assert pick(paths).sid_list == ["fcbb:1000:1::1", "fcbb:1000:2::1", "fcbb:1000:4::d4"]
    assert pick(paths, "e2", "e1").sid_list == ["fcbb:1000:2::1", "fcbb:1000:1::1", "fcbb:1000:3::d4"]


def test_sid_list_uses_each_tenants_own_transit_and_decap_sids(engine):
    # two tenants on the same two edges: tenant 1 block fcbb:1000::/32, tenant 2 fcbb:2000::/32
    inv = build({**core("c1"), **edge("e1", "e2")},
                [("e1", "c1", "access", M()), ("c1", "e2", "access", M())],
                {"p": {"mode": "lowest_cost"}}, {},
                tenants={"t": (["e1", "e2"], {"c": {"sla": "p"}}), "u": (["e1", "e2"], {"c": {"sla": "p"}})})
    paths = run(inv, engine)
    assert pick(paths, tenant="t").sid_list == ["fcbb:1000:1::1", "fcbb:1000:3::d4"]
    assert pick(paths, tenant="u").sid_list == ["fcbb:2000:1::1", "fcbb:2000:3::d4"]


def test_every_ordered_pair_and_class_has_one_result(engine):
    inv = build({**core("c1"), **edge("e1", "e2", "e3")},
                [("e1", "c1", "access", M()), ("c1", "e2", "access", M()), ("c1", "e3", "access", M())],
                {"p": {"mode": "lowest_cost"}, "q": {"mode": "lowest_latency"}},
                {"a": {"sla": "p"}, "b": {"sla": "q"}})
    paths = run(inv, engine)
    keys = [r.key for r in paths]
    assert len(keys) == 2 * 3 * 2
    assert keys == sorted(keys)
    names = ("e1", "e2", "e3")
    assert {(r.src, r.dst) for r in paths} == {(a, b) for a in names for b in names if a != b}


# ======================================================================================
# Measurements
# ======================================================================================

def test_measurement_overrides_nominal_values(engine):
    # nominal: via c1 20 ms, via c2 60 ms.  Measured e1->c1 at 50 ms: via c1 is 60 ms+.
    inv = two_routes({"mode": "lowest_latency"})
    ms = [{"src": "e1", "dst": "c1", "latency_ms": 55.0, "jitter_ms": 2.0}]
    paths = run(inv, engine, measurements=ms)
    r = pick(paths)
    assert r.path == ["e1", "c2", "e2"]
    # the reverse direction was not measured: still via c1
    assert pick(paths, "e2", "e1").path == ["e2", "c1", "e1"]
    # a measurement that keeps c1 the best shows up in the metrics
    ms = [{"src": "e1", "dst": "c1", "latency_ms": 12.5, "jitter_ms": 2.0, "loss_pct": 0.5,
           "bandwidth_mbps": 300.0, "cost": 1.0}]
    r = pick(run(inv, engine, measurements=ms))
    assert r.path == ["e1", "c1", "e2"]
    assert r.metrics.latency_ms == pytest.approx(22.5)
    assert r.metrics.jitter_ms == pytest.approx(2.0)
    assert r.metrics.loss == pytest.approx(0.005)
    assert r.metrics.bandwidth_mbps == pytest.approx(300.0)
    assert r.metrics.cost == pytest.approx(11.0)


def test_measurement_without_bandwidth_or_cost_keeps_the_nominal_ones(engine):
    inv = two_routes({"mode": "lowest_latency"})
    ms = [{"src": "e1", "dst": "c1", "latency_ms": 12.0}]
    r = pick(run(inv, engine, measurements=ms))
    assert r.metrics.cost == pytest.approx(20.0)
    assert r.metrics.bandwidth_mbps == pytest.approx(1000.0)


def test_measured_p95_is_reported(engine):
    inv = two_routes({"mode": "lowest_latency"})
    ms = [{"src": "e1", "dst": "c1", "latency_ms": 10.0, "latency_p95_ms": 14.0}]
    r = pick(run(inv, engine, measurements=ms))
    assert r.metrics.latency_p95_ms == pytest.approx(24.0)  # 14 measured + 10 nominal


def test_core_measurement_applies_to_every_tenant(engine):
    #   e1 - c1 - c2 - e2 (core c1-c2 nominal 1 ms) ; e1 - c3 - e2 (10 ms)
    inv = build({**core("c1", "c2", "c3"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=1)), ("c1", "c2", "core", M(lat=1)),
                 ("c2", "e2", "access", M(lat=1)),
                 ("e1", "c3", "access", M(lat=5)), ("c3", "e2", "access", M(lat=5))],
                {"p": {"mode": "lowest_latency"}}, {},
                tenants={"t": (["e1", "e2"], {"c": {"sla": "p"}}), "u": (["e1", "e2"], {"c": {"sla": "p"}})})
    ms = [{"src": "c1", "dst": "c2", "latency_ms": 40.0}]
    paths = run(inv, engine, measurements=ms)
    assert pick(paths, tenant="t").path == ["e1", "c3", "e2"]
    assert pick(paths, tenant="u").path == ["e1", "c3", "e2"]


def test_tenant_measurement_overrides_the_shared_one(engine):
    # two tenants on e1, e2.  Shared measurement: e1->c1 at 50 ms (c1 route slow).
    # Tenant t's own measurement: e1->c1 at 2 ms (c1 route fast for t only).
    inv = build({**core("c1", "c2"), **edge("e1", "e2")}, TWO_ROUTES["links"],
                {"p": {"mode": "lowest_latency"}}, {},
                tenants={"t": (["e1", "e2"], {"c": {"sla": "p"}}), "u": (["e1", "e2"], {"c": {"sla": "p"}})})
    ms = [{"src": "e1", "dst": "c1", "latency_ms": 50.0},
          {"src": "e1", "dst": "c1", "latency_ms": 2.0, "tenant": "t"}]
    paths = run(inv, engine, measurements=ms)
    t = pick(paths, tenant="t")
    u = pick(paths, tenant="u")
    assert t.path == ["e1", "c1", "e2"]
    assert t.metrics.latency_ms == pytest.approx(12.0)
    assert u.path == ["e1", "c2", "e2"]
    assert u.metrics.latency_ms == pytest.approx(60.0)


def _three_node_inv():
    #   e1 - c1 - e2 ; e1 == e2 direct ; c1 - c2 core ; tenant t: e1, e2 ; tenant u: e3 - c1
    return build({**core("c1", "c2"), **edge("e1", "e2", "e3")},
                 [("e1", "c1", "access", M()), ("c1", "e2", "access", M()), ("c1", "c2", "core", M()),
                  ("e1", "e2", "direct", M()), ("e3", "c1", "access", M())],
                 {"p": {"mode": "lowest_cost"}}, {},
                 tenants={"t": (["e1", "e2"], {"c": {"sla": "p"}}), "u": (["e3"], {"c": {"sla": "p"}})})


@pytest.mark.parametrize("bad, words", [
    ({"src": "e1", "dst": "zz9", "latency_ms": 1.0}, ["e1->zz9", "unknown core/edge node 'zz9'"]),
    ({"src": "e1", "dst": "c2", "latency_ms": 1.0}, ["e1->c2", "no core, access or direct link"]),
    ({"src": "c1", "dst": "c2", "latency_ms": 1.0, "tenant": "t"}, ["c1->c2", "tenant", "core links are shared"]),
    ({"src": "e1", "dst": "c1", "latency_ms": 1.0, "tenant": "nobody"}, ["e1->c1", "unknown tenant 'nobody'"]),
    ({"src": "e3", "dst": "c1", "latency_ms": 1.0, "tenant": "t"}, ["e3->c1", "not in tenant 't'"]),
    ({"src": "e1", "dst": "c1", "latency_ms": -1.0}, ["#1", "e1->c1", "latency_ms", "out of range"]),
], ids=["unknown-node", "no-link", "tenant-on-core", "unknown-tenant", "pair-not-in-tenant", "negative"])
def test_bad_measurement_is_rejected_and_named(engine, bad, words):
    good = {"src": "c1", "dst": "c2", "latency_ms": 3.0}
    with pytest.raises(MeasurementError) as exc:
        run(_three_node_inv(), engine, measurements=[good, bad])
    text = str(exc.value)
    for w in words:
        assert w in text, "%r not in %r" % (w, text)
    assert len(exc.value.problems) == 1  # the good one is not blamed


def test_good_measurements_of_every_kind_are_accepted(engine):
    ms = [{"src": "c1", "dst": "c2", "latency_ms": 3.0},
          {"src": "e1", "dst": "c1", "latency_ms": 3.0},
          {"src": "e1", "dst": "c1", "latency_ms": 2.0, "tenant": "t"},
          {"src": "e1", "dst": "e2", "latency_ms": 2.0, "tenant": "t"},
          {"src": "e3", "dst": "c1", "latency_ms": 2.0, "tenant": "u"}]
    paths = run(_three_node_inv(), engine, measurements=ms)
    assert len(paths) == 2  # t: e1->e2, e2->e1 ; u has one edge: no pairs
    assert all(math.isfinite(r.metrics.latency_ms) for r in paths)


def test_unknown_traffic_class_is_rejected_with_the_known_ones_named():
    from npms.inventory import load_inventory
    from npms_testlib import LAB
    inv = load_inventory(LAB)
    with pytest.raises(ValueError, match=r"unknown traffic class 'nope' \(known: af11, af41, be, ef\)"):
        compute_paths(inv, traffic_classes=["nope"])


# ======================================================================================
# Hysteresis corner cases: FEC on or off for a kept path, loops, the direct-path rule
# ======================================================================================

def _fec_hyst_graph(lossy_lat):
    #   e1 - c1 - e2 : 2 x 5 ms, lossless                          10 ms
    #   e1 - c2 - e2 : lossy_lat + 0 ms, 1 % loss (meets the target only with FEC 10+2)
    return build({**core("c1", "c2"), **edge("e1", "e2")},
                 [("e1", "c1", "access", M(lat=5)), ("c1", "e2", "access", M(lat=5)),
                  ("e1", "c2", "access", M(lat=lossy_lat, loss=1.0)), ("c2", "e2", "access", M(lat=0))],
                 {"p": {"mode": "lossless_fec"}}, {"c": {"sla": "p", "fec": (10, 2)}})


def test_hysteresis_keeps_a_current_fec_path_within_margin(engine):
    # current: the lossy route with FEC (10.5 ms), admitted under the profile with FEC;
    # the best is the clean route (10 ms): gain 0.5 ms < 1 ms -> keep, FEC on
    r = pick(run(_fec_hyst_graph(10.5), engine, current=CURRENT_VIA_C2))
    assert r.path == ["e1", "c2", "e2"]
    assert r.kept is True and r.fec is True


def test_hysteresis_keeps_a_current_clean_path_without_fec(engine):
    # current: the clean route (10 ms); best: the lossy route with FEC (9.5 ms): gain
    # 0.5 ms < 1 ms -> keep the clean route, which needs no FEC
    r = pick(run(_fec_hyst_graph(9.5), engine, current={("t", "c", "e1", "e2"): ["e1", "c1", "e2"]}))
    assert r.path == ["e1", "c1", "e2"] and r.kept is True
    assert r.fec is False
    assert r.metrics.cost == pytest.approx(20.0)


@pytest.mark.parametrize("loop", [["e1", "c1", "c2", "c1", "e2"], ["e1", "c1", "e1", "c1", "e2"]],
                         ids=["core-twice", "source-twice"])
def test_hysteresis_never_keeps_a_looping_current_path(engine, loop):
    #   e1 - c1 - e2 (0.1 + 1 ms), core c1 - c2 (0.1 ms): either loop costs 0.2 ms more
    inv = build({**core("c1", "c2"), **edge("e1", "e2")},
                [("e1", "c1", "access", M(lat=0.1)), ("c1", "e2", "access", M(lat=1)),
                 ("c1", "c2", "core", M(lat=0.1))],
                {"p": {"mode": "lowest_latency"}}, {"c": {"sla": "p"}})
    r = pick(run(inv, engine, current={("t", "c", "e1", "e2"): loop}))
    assert r.path == ["e1", "c1", "e2"]
    assert r.kept is False


def test_hysteresis_does_not_override_the_direct_path_rule(engine):
    inv = direct_graph({"allow_direct": True, "max_latency_ms": 50, "max_loss_pct": 1})
    r = pick(run(inv, engine, current={("t", "c", "e1", "e2"): ["e1", "c1", "c2", "e2"]}))
    assert "by -" not in r.reason
    assert r.path == ["e1", "e2"] and r.direct is True
