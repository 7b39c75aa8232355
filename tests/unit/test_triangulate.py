# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edge triangulation (npms.triangulate) on the lab inventory: an edge that declares no
POPs gets the 3 best-answering of its 6 nearest, and the overlay then builds its tunnels."""

from __future__ import annotations

import os

import pytest

from npms.inventory import InventoryError, inventory_from_data, inventory_to_data, load_inventory
from npms.overlay import node_overlay, tunnel_name
from npms.pce import compute_paths
from npms.triangulate import (Candidate, InventoryGeolocator, TriangulationError, candidate_pops, choose_upstreams,
                              distance_km, triangulate, upstreams_of, with_upstreams)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = load_inventory(os.path.join(ROOT, "inventory", "lab"))


def auto_edge(edge="edge-ber", auto=True):
    """The lab with ``edge``'s access links removed (and npms_upstreams: auto)."""
    data = inventory_to_data(LAB)
    data["npms_links"] = [lk for lk in data["npms_links"] if not (lk["kind"] == "access" and edge in (lk["a"], lk["b"]))]
    if auto:
        data["hosts"][edge]["npms_upstreams"] = "auto"
    return data


def test_an_edge_without_pops_needs_npms_upstreams_auto():
    with pytest.raises(InventoryError) as err:
        inventory_from_data(auto_edge(auto=False))
    assert "edge 'edge-ber' has no access link to any POP" in str(err.value) and "npms_upstreams: auto" in str(err.value)
    inv = inventory_from_data(auto_edge())
    assert inv.nodes["edge-ber"].auto_upstreams and not inv.nodes["edge-bos"].auto_upstreams
    assert inventory_from_data(inventory_to_data(inv)) == inv


def test_only_edges_triangulate():
    data = inventory_to_data(LAB)
    data["hosts"]["core-fra"]["npms_upstreams"] = "auto"
    with pytest.raises(InventoryError, match="node 'core-fra' field 'npms_upstreams': only edges choose their POPs"):
        inventory_from_data(data)
    data["hosts"]["core-fra"]["npms_upstreams"] = "sometimes"
    with pytest.raises(InventoryError, match="npms_upstreams"):
        inventory_from_data(data)


def test_distance_is_great_circle():
    # Berlin - Frankfurt (lab site coordinates): about 424 km; a quarter of the equator: 10,008 km
    assert distance_km((52.52, 13.40), (50.11, 8.68)) == pytest.approx(423.4, abs=1)
    assert distance_km((0, 0), (0, 90)) == pytest.approx(10007.5, abs=1)


def test_candidates_are_the_six_nearest_pops():
    got = candidate_pops(LAB, "edge-ber")
    assert [c.pop for c in got] == ["core-fra", "core-par", "core-lon", "core-bom", "core-nyc", "core-sin"]
    assert got[0].address == LAB.nodes["core-fra"].wan_address
    assert [c.pop for c in candidate_pops(LAB, "edge-bos", count=2)] == ["core-nyc", "core-lon"]


def test_a_pop_in_a_country_every_profile_excludes_is_not_offered(monkeypatch):
    data = inventory_to_data(LAB)
    for prof in data["npms_sla_profiles"].values():
        prof["exclude_countries"] = sorted(set(prof.get("exclude_countries") or []) | {"IN"})
    inv = inventory_from_data(data)
    assert "core-bom" not in [c.pop for c in candidate_pops(inv, "edge-tok")]
    assert "core-bom" in [c.pop for c in candidate_pops(LAB, "edge-tok")]


def test_geolocation_is_pluggable_and_unknown_addresses_are_named():
    class Fixed:
        def locate(self, address):
            return (40.71, -74.01) if address == "203.0.113.9" else None

    assert [c.pop for c in candidate_pops(LAB, "edge-ber", "203.0.113.9", geolocator=Fixed(), count=1)] == ["core-nyc"]
    with pytest.raises(TriangulationError, match="cannot geolocate its WAN address 192.0.2.200"):
        candidate_pops(LAB, "edge-ber", "192.0.2.200")
    geo = InventoryGeolocator(LAB, extra={"192.0.2.0/24": (1.35, 103.82)})
    assert [c.pop for c in candidate_pops(LAB, "edge-ber", "192.0.2.200", geolocator=geo, count=1)] == ["core-sin"]


def test_the_fastest_three_that_answer_win():
    cands = [Candidate("a", "x", 100), Candidate("b", "x", 200), Candidate("c", "x", 300), Candidate("d", "x", 400),
             Candidate("e", "x", 500)]
    rtt = {"a": None, "b": 30.0, "c": 10.0, "d": 30.0, "e": 20.0}
    # a never answered; b and d tie on RTT: the nearer (b) first
    assert choose_upstreams(cands, rtt) == ["c", "e", "b"]
    assert choose_upstreams(cands, rtt, keep=5) == ["c", "e", "b", "d"]


def test_triangulate_then_the_overlay_builds_tunnels_to_the_chosen_pops():
    inv = inventory_from_data(auto_edge())
    assert not [t for t in node_overlay(inv, "edge-ber", [])["wireguard"] if "core" in str(t)]
    measured = {"198.51.100.2": 9.0, "198.51.100.3": 14.0, "198.51.100.1": None, "198.51.100.4": 120.0,
                "198.51.100.6": 95.0, "198.51.100.5": 180.0}
    pinged = []

    def ping(address):
        pinged.append(address)
        return measured[address]

    result = triangulate(inv, "edge-ber", ping)
    assert len(pinged) == 6 and result["upstreams"] == ["core-fra", "core-par", "core-nyc"]
    assert result["candidates"][2] == {"pop": "core-lon", "address": "198.51.100.1", "distance_km": 931.3, "rtt_ms": None}
    joined = with_upstreams(inv, upstreams_of([result]), {"edge-ber": {"core-fra": 9.0}})
    access = {lk.b: lk for lk in joined.links if lk.a == "edge-ber" and lk.kind == "access"}
    assert sorted(access) == ["core-fra", "core-nyc", "core-par"]
    assert access["core-fra"].latency_ms == 4.5
    names = {t["name"] for t in node_overlay(joined, "edge-ber", [])["wireguard"]}
    assert tunnel_name(joined, "acme", "edge-ber", "core-fra") in names
    assert tunnel_name(joined, "acme", "edge-ber", "core-lon") not in names
    # the POP side gets its end of the tunnel too, and the path engine routes over them
    assert tunnel_name(joined, "acme", "core-nyc", "edge-ber") in {t["name"] for t in node_overlay(joined, "core-nyc", [])["wireguard"]}
    paths = [r for r in compute_paths(joined) if r.src == "edge-ber"]
    assert paths and all(r.path[1] in access or r.path[1].startswith("edge-") for r in paths)
    # idempotent: the same upstreams again add nothing
    assert with_upstreams(joined, upstreams_of([result])).links == joined.links


def test_too_few_answers_is_an_error_not_a_thin_attachment():
    inv = inventory_from_data(auto_edge())
    with pytest.raises(TriangulationError, match=r"only 2 of 6 candidate POPs answered \(no answer from core-bom"):
        triangulate(inv, "edge-ber", lambda a: 10.0 if a in ("198.51.100.2", "198.51.100.3") else None)
    with pytest.raises(TriangulationError, match="not a POP"):
        with_upstreams(inv, {"edge-ber": ["edge-bos"]})
