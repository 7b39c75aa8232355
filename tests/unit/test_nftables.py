# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables resource without a node: input checks naming the field, the canonical
form, the rendered nft script, items read back from captured ``nft -j list ruleset``
output (clean and hand-edited), one transaction per run, and the rollback cookie.

tests/fixtures/nftables/ruleset_*.json were captured from this machine's nft (1.0.6) after
applying fixtures/nftables/config.json with the resource (see the README there)."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import time

import pytest

from npms.resources import base
from npms.resources import nftables as nft
from npms.resources.registry import build
from npms.runner import CommandError, Result, Runner

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "nftables")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


CONFIG = json.loads(fixture("config.json"))
CLEAN = fixture("ruleset_clean.json")
EDITED = fixture("ruleset_edited.json")
EMPTY = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}]}'


class FakeRunner(Runner):
    """Answers commands from a table (argv prefix -> stdout, or an exception) and records
    every call with its stdin."""

    where = "fake"

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.calls = []

    def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
        argv = tuple(str(a) for a in argv)
        self.calls.append((argv, stdin))
        for prefix, answer in self.answers.items():
            if argv[:len(prefix)] == prefix:
                if isinstance(answer, Exception):
                    raise answer
                if isinstance(answer, Result):
                    return answer
                return Result(argv, 0, answer, "")
        return Result(argv, 0, "", "")

    def argvs(self):
        return [c[0] for c in self.calls]


def resource(ruleset=EMPTY, answers=None):
    runner = FakeRunner({("nft", "-j", "list", "ruleset"): ruleset, **(answers or {})})
    return nft.NftTables(runner), runner


def normalized(config):
    res = nft.NftTables(FakeRunner())
    return [res.defaults(copy.deepcopy(i)) for i in base.normalize_all(res, config)]


# --- input -------------------------------------------------------------------------------
ITEM = {"tenant": "acme", "interfaces": ["cust0"]}


def with_(**fields):
    return [dict(ITEM, **fields)]


def rule(**fields):
    return with_(security_groups=[{"name": "web", "rules": [fields]}])


BAD = [
    ("tenant missing", [{"interfaces": ["cust0"]}], ["config[0]", "tenant is required"]),
    ("tenant not a label", [{"tenant": "ac me", "interfaces": ["x"]}], ["config[0]", "tenant", "'ac me'"]),
    ("unknown item field", with_(colour="red"), ["tenant acme", "unknown field(s) colour"]),
    ("tenant_id out of range", with_(tenant_id=300), ["tenant acme", "tenant_id", "out of range 1..255"]),
    ("interfaces not a list", with_(interfaces="cust0"), ["interfaces", "must be a list"]),
    ("interfaces empty", with_(interfaces=[]), ["interfaces", "at least one"]),
    ("interface name too long", with_(interfaces=["x" * 16]), ["interfaces[0]", "not an interface name"]),
    ("class without name", with_(classes=[{"dscp": [1]}]), ["classes[0]", "name is required"]),
    ("class listed twice", with_(classes=[{"name": "a", "dscp": [1]}, {"name": "a", "dscp": [2]}]),
     ["classes[1] (a)", "listed twice"]),
    ("dscp out of range", with_(classes=[{"name": "v", "dscp": [64]}]), ["classes[0] (v)", "dscp[0]", "out of range 0..63"]),
    ("dscp in two classes", with_(classes=[{"name": "a", "dscp": [46]}, {"name": "b", "dscp": [10, 46]}]),
     ["classes[1] (b)", "dscp", "46 is already in class a"]),
    ("two catch-all classes", with_(classes=[{"name": "a", "dscp": []}, {"name": "b", "dscp": []}]),
     ["classes[1] (b)", "dscp", "class a already takes everything else"]),
    ("rate not a number", with_(classes=[{"name": "a", "rate_mbps": "fast"}]), ["classes[0] (a)", "rate_mbps", "not a number"]),
    ("rate zero", with_(classes=[{"name": "a", "rate_mbps": 0}]), ["classes[0] (a)", "rate_mbps", "more than 0"]),
    ("burst negative", with_(classes=[{"name": "a", "rate_mbps": 1, "burst_kbytes": -1}]), ["classes[0] (a)", "burst_kbytes"]),
    ("unknown class field", with_(classes=[{"name": "a", "ceil_mbps": 3}]), ["classes[0]", "unknown field(s) ceil_mbps"]),
    ("group listed twice", with_(security_groups=[{"name": "g"}, {"name": "g"}]), ["security_groups[1] (g)", "listed twice"]),
    ("bad direction", rule(direction="sideways"), ["rules[0]", "direction", "'sideways' is not one of outbound, inbound, local"]),
    ("bad protocol", rule(protocol="gre"), ["rules[0]", "protocol", "'gre' is not one of"]),
    ("ports without tcp/udp", rule(protocol="icmp", ports=[80]), ["rules[0]", "ports", "only with protocol tcp or udp"]),
    ("port out of range", rule(protocol="tcp", ports=[70000]), ["rules[0]", "ports[0]", "out of range 1..65535"]),
    ("port range backwards", rule(protocol="udp", ports=["90-80"]), ["rules[0]", "ports[0]", "ends before it starts"]),
    ("port not a port", rule(protocol="tcp", ports=["http"]), ["rules[0]", "ports[0]", "not a port"]),
    ("bad source prefix", rule(sources=["10.0.0.1/8"]), ["rules[0]", "sources[0]", "not a network prefix"]),
    ("families differ", rule(sources=["10.0.0.0/8"], destinations=["fd00::/8"]),
     ["rules[0]", "sources and destinations", "same IP families"]),
    ("icmp with IPv6", rule(protocol="icmp", destinations=["fd00::/8"]), ["rules[0]", "protocol", "icmpv6"]),
    ("icmpv6 with IPv4", rule(protocol="icmpv6", sources=["10.0.0.0/8"]), ["rules[0]", "protocol", "use icmp"]),
    ("unknown rule field", rule(action="accept"), ["rules[0]", "unknown field(s) action"]),
    ("rule not a mapping", with_(security_groups=[{"name": "g", "rules": ["allow all"]}]), ["rules[0]", "must be a mapping"]),
    ("item not a mapping", ["acme"], ["config[0]", "must be a mapping"]),
    ("tenant twice", [ITEM, ITEM], ["config[1]", "tenant=acme is already given by config[0]"]),
]


@pytest.mark.parametrize("config,needles", [(c, n) for _i, c, n in BAD], ids=[i for i, _c, _n in BAD])
def test_bad_input_is_refused_before_the_node_is_touched(config, needles):
    res, runner = resource()
    with pytest.raises(base.ResourceError) as err:
        base.run(res, config, "merged")
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    assert runner.calls == []


@pytest.mark.parametrize("config,needle", [
    ([{"tenant": "acme"}], "interfaces is required to create or replace"),
    (with_(security_groups=[{"name": "g", "interfaces": ["other0"], "rules": [{"protocol": "tcp"}]}]),
     "security group g: interfaces: other0 not among the tenant's interfaces (cust0)"),
    (with_(classes=[{"name": "a", "burst_kbytes": 4}]), "class a: burst_kbytes: only with rate_mbps"),
])
def test_item_level_checks_name_the_tenant(config, needle):
    res, _runner = resource()
    with pytest.raises(base.ResourceError) as err:
        base.run(res, config, "replaced")
    assert needle in str(err.value) and "tenant acme" in str(err.value)


def test_canonical_form():
    [item] = normalized([{
        "tenant": "acme", "tenant_id": "7", "interfaces": ["b0", "a0", "b0"],
        "classes": [{"name": "z", "dscp": [46, 10, 46], "rate_mbps": 2.5}, {"name": "a", "rate_mbps": 10, "burst_kbytes": 8}],
        "security_groups": [{"name": "web", "interfaces": ["a0", "b0"], "rules": [
            {"protocol": "tcp", "ports": [443, 81, 80, "82 - 90", "1000-1000"],
             "sources": ["10.0.1.0/24", "10.0.0.0/24", "10.0.1.128/25", "fd00::/16"], "destinations": ["0.0.0.0/0", "::/0"]},
        ]}, {"name": "empty", "interfaces": ["a0"]}],
        "drift": ["ignored"],
    }])
    assert item == {
        "tenant": "acme", "tenant_id": 7, "interfaces": ["a0", "b0"],
        "classes": [{"name": "a", "dscp": [], "rate_mbps": 10, "burst_kbytes": 8},
                    {"name": "z", "dscp": [10, 46], "rate_mbps": 2.5, "burst_kbytes": 0}],
        # all interfaces is the default; without rules the interfaces do nothing
        "security_groups": [{"name": "empty", "rules": []}, {"name": "web", "rules": [{
            "direction": "outbound", "protocol": "tcp", "ports": ["80-90", 443, 1000],
            "sources": ["10.0.0.0/23", "fd00::/16"], "destinations": ["0.0.0.0/0", "::/0"]}]}],
    }


def test_registry_builds_it_for_linux_only():
    runner = FakeRunner()
    res = build("nftables", "linux", runner)
    assert isinstance(res, nft.NftTables) and res.runner is runner
    with pytest.raises(base.ResourceError, match="vpp dataplane has no nftables"):
        build("nftables", "vpp", runner)


# --- rendering -------------------------------------------------------------------------------
SMALL = {"tenant": "acme", "tenant_id": 1, "interfaces": ["cust-acme-ber"],
         "classes": [{"name": "voice", "dscp": [46], "rate_mbps": 5, "burst_kbytes": 64}, {"name": "default", "rate_mbps": 50}],
         "security_groups": [{"name": "web", "rules": [
             {"protocol": "tcp", "ports": [80, 443], "sources": ["10.1.0.0/16"], "destinations": ["10.2.0.0/16"]},
             {"protocol": "icmp"}]}]}

SMALL_SCRIPT = """\
table inet npms_acme
delete table inet npms_acme
table inet npms_acme {
    comment "galactic.npms nftables, tenant acme: edits by hand are undone"
    counter npms { comment "npms:nftables tenant=acme tenant_id=1"; }
    counter class_default { comment "npms class default"; }
    counter policed_default { comment "npms policed default"; }
    counter class_voice { comment "npms class voice"; }
    counter policed_voice { comment "npms policed voice"; }
    counter sg_web { comment "npms security group web"; }
    counter denied_outbound { comment "npms denied outbound"; }
    counter denied_inbound { comment "npms denied inbound"; }
    counter denied_local { comment "npms denied local"; }
    chain classes {
        type filter hook prerouting priority -140; policy accept;
        iifname "cust-acme-ber" counter name "npms" jump classify
    }
    chain classify {
        ip dscp 46 goto class_voice
        ip6 dscp 46 goto class_voice
        goto class_default
    }
    chain class_default {
        counter name "class_default"
        limit rate over 6250000 bytes/second counter name "policed_default" drop
    }
    chain class_voice {
        counter name "class_voice"
        limit rate over 625000 bytes/second burst 65536 bytes counter name "policed_voice" drop
    }
    chain filter {
        type filter hook forward priority 0; policy accept;
        iifname "cust-acme-ber" jump outbound
        oifname "cust-acme-ber" jump inbound
    }
    chain outbound {
        meta nfproto ipv6 meta l4proto { ipencap, ipv6 } accept comment "npms srv6 encapsulated"
        ct state established,related accept
        ct state invalid drop
        ip saddr 10.1.0.0/16 ip daddr 10.2.0.0/16 tcp dport { 80, 443 } counter name "sg_web" accept comment "sg web 0"
        meta l4proto icmp counter name "sg_web" accept comment "sg web 1"
        counter name "denied_outbound" drop
    }
    chain inbound {
        ct state established,related accept
        counter name "denied_inbound" drop
    }
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "cust-acme-ber" jump local
    }
    chain local {
        ct state established,related accept
        tcp dport 179 accept
        tcp sport 179 accept
        meta l4proto { icmp, ipv6-icmp } accept
        ct state invalid drop
        counter name "denied_local" drop
    }
}"""


def test_rendered_script():
    res, runner = resource()
    out = base.run(res, [SMALL], "rendered")
    assert "\n".join(out.rendered) == SMALL_SCRIPT
    assert runner.calls == []


def test_rendered_without_security_groups_has_no_filter():
    res, _runner = resource()
    out = base.run(res, [{"tenant": "t", "interfaces": ["a", "b"]}], "rendered")
    text = "\n".join(out.rendered)
    assert 'iifname { "a", "b" } counter name "npms" jump classify' in text
    assert "hook input" not in text and "denied" not in text and "drop" not in text


def test_dual_stack_rule_becomes_one_nft_rule_per_family():
    item = normalized(rule(protocol="udp", ports=[53], sources=["10.0.0.0/8", "fd00::/8"], destinations=["fd01::/16", "10.9.0.0/16"]))[0]
    text = nft.render_table(item)
    assert '        ip saddr 10.0.0.0/8 ip daddr 10.9.0.0/16 udp dport 53 counter name "sg_web" accept comment "sg web 0"' in text
    assert '        ip6 saddr fd00::/8 ip6 daddr fd01::/16 udp dport 53 counter name "sg_web" accept comment "sg web 0"' in text


def test_inbound_and_local_rules_go_to_their_chains_with_the_group_interfaces():
    config = with_(interfaces=["a0", "b0"], security_groups=[{"name": "g", "interfaces": ["b0"], "rules": [
        {"direction": "inbound", "protocol": "tcp", "ports": [22]}, {"direction": "local", "protocol": "udp", "ports": ["3784-3785"]}]}])
    text = "\n".join(nft.render_table(normalized(config)[0]))
    inbound = text[text.index("chain inbound"):text.index("chain input")]
    local = text[text.index("chain local"):]
    assert 'oifname "b0" tcp dport 22 counter name "sg_g" accept comment "sg g 0"' in inbound
    assert 'iifname "b0" udp dport 3784-3785 counter name "sg_g" accept comment "sg g 1"' in local
    # BGP and ICMP to the edge come before anything that drops
    assert local.index("tcp dport 179 accept") < local.index("ct state invalid drop") < local.index("sg g 1")


# --- reading the node ------------------------------------------------------------------------------
def test_gather_reads_back_exactly_what_was_applied():
    res, runner = resource(CLEAN)
    assert res.gather() == normalized(CONFIG)
    assert runner.argvs() == [("nft", "-j", "list", "ruleset")]


def test_a_second_run_against_the_captured_node_changes_nothing():
    res, runner = resource(CLEAN)
    out = base.run(res, CONFIG, "overridden")
    assert not out.changed and out.commands == []
    assert ("nft", "-f", "-") not in runner.argvs()


def test_parse_is_gather_on_text_and_skips_foreign_tables():
    res, _runner = resource()
    items = base.run(res, None, "parsed", running_config=CLEAN).parsed
    assert [i["tenant"] for i in items] == ["acme", "beta"]  # not filter, npms_steering (no marker), nat
    assert items == normalized(CONFIG)


def test_counters_are_facts():
    res, _runner = resource(CLEAN)
    facts = base.run(res, None, "gathered").facts["nftables_counters"]
    assert set(facts["acme"]) == {"npms", "class_default", "class_video", "policed_video", "class_voice", "policed_voice",
                                  "sg_web", "sg_bfd", "denied_outbound", "denied_inbound", "denied_local"}
    assert facts["beta"]["class_gold"] == {"packets": 0, "bytes": 0}


def test_hand_edits_show_as_drift_and_in_the_fields():
    res, _runner = resource(EDITED)
    acme, beta = res.gather()
    # the policer edited from 5 to 10 Mbit/s and without burst: read from the rule itself
    assert [c for c in acme["classes"] if c["name"] == "voice"] == [{"name": "voice", "dscp": [46], "rate_mbps": 10, "burst_kbytes": 0}]
    assert acme["drift"] == ["chain outbound: extra rule 1 `tcp dport 22 accept`"]
    assert beta["drift"] == ["chain classify: rule `ip dscp { 46, 48 } goto class_gold` is missing", "chain extra is not npms's"]


def test_hand_edited_tables_are_recreated_by_the_next_run():
    res, runner = resource(EDITED)
    out = base.run(res, CONFIG, "merged")
    assert out.changed
    assert out.commands.count("delete table inet npms_acme") == 1 and out.commands.count("delete table inet npms_beta") == 1
    assert [a for a in runner.argvs() if a[:2] == ("nft", "-f")] == [("nft", "-f", "-")]


def test_drift_fed_back_in_config_is_ignored():
    res, _runner = resource(EDITED)
    gathered = base.run(res, None, "gathered").gathered
    assert [i for i in base.normalize_all(res, gathered) if "drift" in i] == []


def test_a_table_of_the_same_name_without_the_marker_is_refused():
    res, runner = resource(CLEAN)
    with pytest.raises(base.ResourceError, match=r"table inet npms_steering exists but was not made by galactic.npms"):
        base.run(res, [{"tenant": "steering", "interfaces": ["x"]}], "merged", check_mode=True)
    assert ("nft", "-f", "-") not in runner.argvs()


def test_deleted_without_config_deletes_only_owned_tables():
    res, runner = resource(CLEAN)
    out = base.run(res, None, "deleted")
    assert out.commands == ["delete table inet npms_acme", "delete table inet npms_beta"]
    assert runner.calls[-2] == (("nft", "-f", "-"), "delete table inet npms_acme\ndelete table inet npms_beta\n")


def test_parse_refuses_what_is_not_nft_json():
    res, _runner = resource()
    with pytest.raises(base.ResourceError, match="JSON output of `nft -j list ruleset`"):
        base.run(res, None, "parsed", running_config="table inet x {}")


def test_unknown_expressions_are_drift_not_errors():
    doc = json.loads(CLEAN)
    for obj in doc["nftables"]:
        body = obj.get("rule")
        if body and body["table"] == "npms_beta" and body["chain"] == "class_gold":
            body["expr"].insert(0, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 5}})
    res, _runner = resource(json.dumps(doc))
    beta = res.gather()[1]
    assert len(beta["drift"]) == 1 and beta["drift"][0].startswith("chain class_gold: rule 1 is `<{\"mangle\"")


# --- changing the node -------------------------------------------------------------------------------
def test_merged_merges_classes_and_groups_by_name():
    res, _runner = resource(CLEAN)
    out = base.run(res, [{"tenant": "beta", "classes": [{"name": "rest", "rate_mbps": 50}, {"name": "silver", "dscp": [10]}]}],
                   "merged", check_mode=True)
    [beta] = [i for i in out.after if i["tenant"] == "beta"]
    assert beta["classes"] == [{"name": "gold", "dscp": [46, 48]},
                               {"name": "rest", "dscp": [], "rate_mbps": 50, "burst_kbytes": 0},
                               {"name": "silver", "dscp": [10]}]


def test_merged_checks_the_merged_classes():
    res, _runner = resource(CLEAN)
    with pytest.raises(base.ResourceError, match="class silver: dscp: 46 is already in class gold"):
        base.run(res, [{"tenant": "beta", "classes": [{"name": "silver", "dscp": [46]}]}], "merged", check_mode=True)


def test_one_transaction_for_all_changes():
    res, runner = resource(CLEAN)
    out = base.run(res, [CONFIG[0], {"tenant": "gamma", "interfaces": ["g0"]}], "overridden")
    assert out.changed
    nft_calls = [c for c in runner.calls if c[0][:2] == ("nft", "-f")]
    assert nft_calls == [(("nft", "-f", "-"), "\n".join(out.commands) + "\n")]
    assert out.commands[0] == "delete table inet npms_beta"
    assert out.commands[1:3] == ["table inet npms_gamma", "delete table inet npms_gamma"]


NFT_STDERR = """\
/dev/stdin:7:17-22: Error: Could not process rule: No such file or directory
        goto nowhere
             ^^^^^^^
"""


def test_a_failed_transaction_says_nothing_changed_and_names_nft_error():
    res, _runner = resource(EMPTY, {("nft", "-f", "-"): CommandError("fake", ("nft", "-f", "-"), 1, "", NFT_STDERR)})
    with pytest.raises(base.ResourceError) as err:
        base.run(res, [ITEM], "merged")
    assert err.value.rolled_back
    assert "the nft transaction failed and changed nothing" in str(err.value)
    assert "Error: Could not process rule: No such file or directory (in: goto nowhere)" in str(err.value)


def test_check_mode_runs_nothing_but_gather():
    res, runner = resource(CLEAN)
    out = base.run(res, [dict(CONFIG[1], classes=[])], "replaced", check_mode=True)
    assert out.changed and out.diff and runner.argvs() == [("nft", "-j", "list", "ruleset")]


# --- rollback cookie --------------------------------------------------------------------------------
COOKIE_DIR = "/tmp/npms-nftables.AbCd1234"


def test_rollback_is_armed_before_the_change():
    listing = "table inet npms_beta {\n}\n"
    res, runner = resource(CLEAN, {("nft", "list", "table"): listing, ("mktemp",): COOKIE_DIR + "\n"})
    res.rollback_timeout = 7
    out = base.run(res, [dict(CONFIG[1], classes=[]), {"tenant": "new", "interfaces": ["n0"]}], "replaced")
    assert out.changed and res.rollback_cookie == COOKIE_DIR + "/cookie"
    argvs = runner.argvs()
    assert argvs[1:] == [
        ("nft", "list", "table", "inet", "npms_beta"),
        ("mktemp", "-d", "-t", "npms-nftables.XXXXXXXX"),
        ("sh", "-c", 'umask 077 && cat > "$1/backup.nft" && : > "$1/cookie"', "sh", COOKIE_DIR),
        ("setsid", "-f", "sh", "-c", nft.ROLLBACK_SCRIPT, "npms-nftables-rollback", COOKIE_DIR, "7"),
        ("nft", "-f", "-"),
        ("nft", "-j", "list", "ruleset"),
    ]
    backup = runner.calls[3][1]
    # the changed table comes back as it was; the new one goes away
    assert backup == ("table inet npms_beta\ndelete table inet npms_beta\n" + listing
                      + "\ntable inet npms_new\ndelete table inet npms_new\n")


def test_no_rollback_without_a_change_or_in_check_mode():
    res, runner = resource(CLEAN)
    res.rollback_timeout = 5
    assert not base.run(res, CONFIG, "merged").changed
    assert base.run(res, [{"tenant": "new", "interfaces": ["n0"]}], "merged", check_mode=True).changed
    assert res.rollback_cookie is None and {a[0] for a in runner.argvs()} == {"nft"}


def test_a_failed_change_disarms_the_rollback():
    failure = CommandError("fake", ("nft", "-f", "-"), 1, "", NFT_STDERR)
    res, runner = resource(EMPTY, {("mktemp",): COOKIE_DIR + "\n", ("nft", "-f", "-"): failure})
    res.rollback_timeout = 5
    with pytest.raises(base.ResourceError, match="changed nothing"):
        base.run(res, [ITEM], "merged")
    assert runner.argvs()[-1] == ("rm", "-rf", COOKIE_DIR) and res.rollback_cookie is None


@pytest.mark.parametrize("cookie", ["/etc/passwd", "/tmp/npms-nftables.AbCd1234/../../etc/passwd/cookie",
                                    "npms-nftables.AbCd1234/cookie", "/tmp/npms-nftables.AbCd1234/backup.nft",
                                    "/tmp/npms-nftables.AbCd1234/cookie; rm -rf /"])
def test_only_npms_cookies_are_touched(cookie):
    runner = FakeRunner()
    for func in (nft.confirm_rollback, nft.rollback_now):
        with pytest.raises(base.ResourceError, match="is not a rollback cookie of galactic.npms"):
            func(runner, cookie)
    assert runner.calls == []


def test_confirm_after_the_rollback_ran_fails_saying_so():
    gone = Result(("rm",), 1, "", "rm: cannot remove '/tmp/npms-nftables.AbCd1234/cookie': No such file or directory\n")
    runner = FakeRunner({("rm",): gone})
    with pytest.raises(base.ResourceError, match="the rollback already restored the previous tables"):
        nft.confirm_rollback(runner, COOKIE_DIR + "/cookie")
    nft.confirm_rollback(FakeRunner(), COOKIE_DIR + "/cookie")


def test_rollback_now_restores_the_backup():
    runner = FakeRunner()
    nft.rollback_now(runner, COOKIE_DIR + "/cookie")
    assert runner.argvs() == [("rm", COOKIE_DIR + "/cookie"), ("nft", "-f", COOKIE_DIR + "/backup.nft"), ("rm", "-rf", COOKIE_DIR)]


@pytest.fixture
def fake_nft(tmp_path):
    """A directory with an `nft` that records its arguments (the real script, no root)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "nft.log"
    script = bindir / "nft"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"path": f"{bindir}:{os.environ['PATH']}", "log": log, "tmp": tmp_path}


def _rollback_dir(tmp):
    cookie_dir = tmp / "npms-nftables.Xy12Ab34"
    cookie_dir.mkdir()
    (cookie_dir / "backup.nft").write_text("table inet npms_x\n")
    (cookie_dir / "cookie").write_text("")
    return cookie_dir


def _wait_gone(path, seconds=10.0):
    end = time.monotonic() + seconds
    while path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return not path.exists()


def test_rollback_script_restores_unless_confirmed(fake_nft):
    env = dict(os.environ, PATH=fake_nft["path"])
    cookie_dir = _rollback_dir(fake_nft["tmp"])
    started = time.monotonic()
    # detached at once: returns before the sleep is over
    subprocess.run(["setsid", "-f", "sh", "-c", nft.ROLLBACK_SCRIPT, "x", str(cookie_dir), "1"], env=env, check=True,
                   capture_output=True, timeout=5)
    assert time.monotonic() - started < 1.0
    assert _wait_gone(cookie_dir)
    assert fake_nft["log"].read_text() == f"-f {cookie_dir}/backup.nft\n"


def test_rollback_script_does_nothing_once_confirmed(fake_nft):
    env = dict(os.environ, PATH=fake_nft["path"])
    cookie_dir = _rollback_dir(fake_nft["tmp"])
    subprocess.run(["setsid", "-f", "sh", "-c", nft.ROLLBACK_SCRIPT, "x", str(cookie_dir), "1"], env=env, check=True, timeout=5)
    (cookie_dir / "cookie").unlink()  # what confirm_rollback does
    assert _wait_gone(cookie_dir)
    assert not fake_nft["log"].exists()
