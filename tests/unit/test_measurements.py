# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Window aggregates: what ``parse_measurements`` accepts, and how it names what it rejects.

A batch is all or nothing: one bad item rejects it, and every problem names the source,
the item's position (``measurement #i``) and the field.
"""

import pytest

from npms.measurements import Measurement, MeasurementError, parse_measurements

GOOD = {"src": "c1", "dst": "c2", "latency_ms": 10.0}


def problems_of(items, source="measurements"):
    with pytest.raises(MeasurementError) as exc:
        parse_measurements(items, source=source)
    assert exc.value.problems, "MeasurementError without problems"
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


# --------------------------------------------------------------------------------------
# Good batches
# --------------------------------------------------------------------------------------

def test_minimal_item_gets_defaults():
    (m,) = parse_measurements([GOOD])
    assert m == Measurement(src="c1", dst="c2", latency_ms=10.0)
    assert (m.jitter_ms, m.loss_pct, m.tenant, m.samples) == (0.0, 0.0, None, 0)
    assert m.latency_p95_ms is None and m.bandwidth_mbps is None and m.cost is None
    assert m.key == (None, "c1", "c2")


def test_full_item_is_read_field_by_field():
    item = {"src": "e1", "dst": "c1", "tenant": "acme", "latency_ms": 4, "latency_p95_ms": 6.5,
            "latency_p99_ms": 9.0, "jitter_ms": 0.25, "loss_pct": 0.5, "bandwidth_mbps": 750,
            "cost": 3, "samples": 60, "window_start": 1700000000, "window_s": 60}
    (m,) = parse_measurements([item])
    assert m.latency_ms == 4.0 and isinstance(m.latency_ms, float)
    assert (m.latency_p95_ms, m.latency_p99_ms, m.jitter_ms, m.loss_pct) == (6.5, 9.0, 0.25, 0.5)
    assert (m.bandwidth_mbps, m.cost, m.samples) == (750.0, 3.0, 60)
    assert isinstance(m.samples, int)
    assert (m.window_start, m.window_s) == (1700000000.0, 60.0)
    assert m.key == ("acme", "e1", "c1")
    assert m.to_dict()["tenant"] == "acme"


def test_latency_p50_is_an_alias_of_latency():
    (m,) = parse_measurements([{"src": "c1", "dst": "c2", "latency_p50_ms": 7.5}])
    assert m.latency_ms == 7.5


def test_bounds_are_inclusive():
    (m,) = parse_measurements([{"src": "c1", "dst": "c2", "latency_ms": 0, "loss_pct": 100,
                                "latency_p95_ms": 0, "jitter_ms": 0}])
    assert m.loss_pct == 100.0 and m.latency_ms == 0.0


def test_same_pair_for_different_tenants_and_directions_is_not_a_duplicate():
    items = [GOOD, {"src": "c2", "dst": "c1", "latency_ms": 10.0},
             {"src": "e1", "dst": "c1", "latency_ms": 1.0},
             {"src": "e1", "dst": "c1", "latency_ms": 1.0, "tenant": "a"},
             {"src": "e1", "dst": "c1", "latency_ms": 1.0, "tenant": "b"}]
    assert len(parse_measurements(items)) == 5


def test_mapping_with_a_measurements_list_and_generators_are_accepted():
    assert len(parse_measurements({"measurements": [GOOD]})) == 1
    assert len(parse_measurements(iter([GOOD]))) == 1
    assert len(parse_measurements(dict(GOOD, src="c%d" % i) for i in range(3, 6))) == 3


def test_empty_and_none_are_empty_batches():
    assert parse_measurements([]) == []
    assert parse_measurements(None) == []
    assert parse_measurements({"measurements": []}) == []


def test_null_optional_fields_are_absent_fields():
    (m,) = parse_measurements([dict(GOOD, tenant=None, bandwidth_mbps=None, cost=None, jitter_ms=None)])
    assert m.tenant is None and m.bandwidth_mbps is None and m.jitter_ms == 0.0


def test_measurement_objects_pass_through():
    m = Measurement("c1", "c2", 3.0)
    assert parse_measurements([m]) == [m]


# --------------------------------------------------------------------------------------
# Bad items: each names the item's position and the field
# --------------------------------------------------------------------------------------

BAD_ITEMS = [
    # (id, item, field named, words in the problem)
    ("negative-latency", dict(GOOD, latency_ms=-1.0), "latency_ms", ["out of range", "-1.0"]),
    ("negative-jitter", dict(GOOD, jitter_ms=-0.1), "jitter_ms", ["out of range"]),
    ("loss-over-100", dict(GOOD, loss_pct=100.5), "loss_pct", ["out of range", "0.0..100.0"]),
    ("negative-loss", dict(GOOD, loss_pct=-1), "loss_pct", ["out of range"]),
    ("nan-latency", dict(GOOD, latency_ms=float("nan")), "latency_ms", ["not a finite number"]),
    ("inf-bandwidth", dict(GOOD, bandwidth_mbps=float("inf")), "bandwidth_mbps", ["not a finite number"]),
    ("bool-loss", dict(GOOD, loss_pct=True), "loss_pct", ["expected a number", "True"]),
    ("string-latency", dict(GOOD, latency_ms="10"), "latency_ms", ["expected a number", "'10'"]),
    ("p95-below-p50", dict(GOOD, latency_p95_ms=9.0), "latency_p95_ms", ["p95 9.000 is below p50 10.000"]),
    ("p99-below-p95", dict(GOOD, latency_p95_ms=12.0, latency_p99_ms=11.0), "latency_p99_ms",
     ["p99 11.000 is below p95 12.000"]),
    ("unknown-field", dict(GOOD, latnecy_ms=3.0), "latnecy_ms", ["unknown field", "latency_ms"]),
    ("missing-src", {"dst": "c2", "latency_ms": 1.0}, "src", ["required node name", "None"]),
    ("empty-dst", {"src": "c1", "dst": "", "latency_ms": 1.0}, "dst", ["required node name"]),
    ("non-string-src", {"src": 7, "dst": "c2", "latency_ms": 1.0}, "src", ["required node name", "7"]),
    ("src-is-dst", {"src": "c1", "dst": "c1", "latency_ms": 1.0}, "dst", ["same node 'c1'"]),
    ("missing-latency", {"src": "c1", "dst": "c2", "jitter_ms": 1.0}, "latency_ms", ["required"]),
    ("latency-twice", dict(GOOD, latency_p50_ms=10.0), "latency_p50_ms", ["not both"]),
    ("bad-tenant", dict(GOOD, tenant=5), "tenant", ["expected a tenant name or null"]),
    ("empty-tenant", dict(GOOD, tenant=""), "tenant", ["expected a tenant name or null"]),
    ("fractional-samples", dict(GOOD, samples=2.5), "samples", ["expected an integer"]),
    ("negative-window", dict(GOOD, window_s=-60), "window_s", ["out of range"]),
]


@pytest.mark.parametrize("item, field, words", [b[1:] for b in BAD_ITEMS], ids=[b[0] for b in BAD_ITEMS])
def test_bad_item_is_rejected_naming_position_and_field(item, field, words):
    # the bad item is the third of the batch; the two good ones are not blamed
    batch = [GOOD, dict(GOOD, src="c3"), item]
    problems = problems_of(batch, source="probe.json")
    assert len(problems) == 1, problems
    text = problems[0]
    assert text.startswith("probe.json: measurement #2"), text
    assert "field '%s'" % field in text, text
    for w in words:
        assert w in text, "%r not in %r" % (w, text)


def test_position_and_pair_are_both_named():
    (text,) = problems_of([GOOD, {"src": "e1", "dst": "c1", "tenant": "acme", "latency_ms": -3}])
    assert text.startswith("measurements: measurement #1 (e1->c1, tenant acme) field 'latency_ms'")


def test_duplicate_pair_names_both_positions():
    (text,) = problems_of([GOOD, dict(GOOD, src="c3"), dict(GOOD, latency_ms=11.0)])
    assert "measurement #2" in text and "duplicate of measurement #0" in text


def test_duplicate_tenant_pair():
    item = {"src": "e1", "dst": "c1", "tenant": "acme", "latency_ms": 1.0}
    (text,) = problems_of([item, dict(item, latency_ms=2.0)])
    assert "measurement #1" in text and "duplicate of measurement #0" in text


@pytest.mark.parametrize("items, words", [
    ("c1 c2 10", ["expected a list of measurements", "str"]),
    (b"[]", ["expected a list of measurements", "bytes"]),
    (42, ["expected a list of measurements", "int"]),
    (3.5, ["expected a list of measurements", "float"]),
], ids=["string", "bytes", "int", "float"])
def test_non_list_input_is_rejected(items, words):
    (text,) = problems_of(items, source="ms.yml")
    assert text.startswith("ms.yml:")
    for w in words:
        assert w in text


@pytest.mark.parametrize("item, kind", [("c1->c2", "str"), (["c1", "c2", 10], "list"), (None, "NoneType"),
                                        (10, "int")])
def test_non_mapping_item_is_rejected(item, kind):
    (text,) = problems_of([GOOD, item])
    assert text == "measurements: measurement #1: expected a mapping, got %s" % kind


def test_every_problem_of_a_batch_is_listed():
    bad = [dict(GOOD, latency_ms=-1), GOOD, {"src": "c1", "dst": "c1", "latency_ms": 1, "loss_pct": 200},
           dict(GOOD, src="c4", nope=1)]
    problems = problems_of(bad)
    assert len(problems) == 4, problems
    assert problems[0].startswith("measurements: measurement #0 (c1->c2) field 'latency_ms'")
    assert problems[1].startswith("measurements: measurement #2 (c1->c1) field 'dst'")
    assert problems[2].startswith("measurements: measurement #2 (c1->c1) field 'loss_pct'")
    assert problems[3].startswith("measurements: measurement #3 (c4->c2) field 'nope'")


def test_one_item_with_several_problems_lists_each():
    problems = problems_of([{"src": "c1", "latency_ms": float("nan"), "loss_pct": -1, "extra": 1}])
    fields = sorted(p.split("field '")[1].split("'")[0] for p in problems)
    assert fields == ["dst", "extra", "latency_ms", "loss_pct"]


def test_a_bad_batch_returns_nothing():
    # all or nothing: the caller never gets the good half of a bad batch
    result = None
    with pytest.raises(MeasurementError):
        result = parse_measurements([GOOD, dict(GOOD, src="c9", loss_pct=101)])
    assert result is None


def test_measurement_error_is_a_value_error():
    # callers that catch ValueError (the CLI's input errors) catch bad measurements too
    with pytest.raises(ValueError):
        parse_measurements([dict(GOOD, loss_pct=-5)])


def test_measurement_objects_are_validated_too():
    with pytest.raises(MeasurementError) as exc:
        parse_measurements([Measurement("c1", "c2", latency_ms=-5.0, loss_pct=250.0)])
    assert "measurement #0" in str(exc.value) and "loss_pct" in str(exc.value)
