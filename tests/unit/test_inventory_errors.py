# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inventories: every problem names its file, object and field.

The table below breaks ``tests/fixtures/inventory/small.yml`` one thing at a time.  Each
case runs twice: as the merged single file, and laid out as an Ansible inventory
directory (hosts.yml, host_vars/, group_vars/all/*.yml), where the expected file is the
one that holds the broken value.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple

import pytest
import yaml

from npms.inventory import InventoryError, Problem, inventory_from_data, inventory_to_data, load_inventory
from npms.model import ROLES

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "inventory" / "small.yml"

# Where write_dir puts each network-wide variable.
GLOBAL_FILES = {
    "npms_sites": "group_vars/all/sites.yml",
    "npms_links": "group_vars/all/links.yml",
    "npms_sla_profiles": "group_vars/all/sla.yml",
    "npms_tenants": "group_vars/all/tenants.yml",
    "npms_pce": "group_vars/all/pce.yml",
}
EXTRA_FILE = "group_vars/all/extra.yml"


def small() -> Dict[str, Any]:
    with open(FIXTURE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def write_dir(root: Path, data: Dict[str, Any]) -> Path:
    """Lay a merged inventory dict out as an Ansible inventory directory."""
    groups: Dict[str, Dict[str, Any]] = {r: {} for r in ROLES}
    ungrouped: Dict[str, Any] = {}
    (root / "host_vars").mkdir(parents=True)
    (root / "group_vars" / "all").mkdir(parents=True)
    for host, hvars in data.get("hosts", {}).items():
        hvars = dict(hvars or {})
        role = hvars.get("npms_role")
        if role in ROLES:  # the role becomes group membership, as in the lab
            del hvars["npms_role"]
            groups[role][host] = None
        else:
            ungrouped[host] = None
        (root / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(hvars, sort_keys=False))
    tree: Dict[str, Any] = {"all": {"children": {r: {"hosts": h} for r, h in groups.items() if h}}}
    if ungrouped:
        tree["all"]["hosts"] = ungrouped
    (root / "hosts.yml").write_text(yaml.safe_dump(tree, sort_keys=False))
    extra = {}
    for key, value in data.items():
        if key == "hosts":
            continue
        if key in GLOBAL_FILES:
            (root / GLOBAL_FILES[key]).write_text(yaml.safe_dump({key: value}, sort_keys=False))
        else:
            extra[key] = value
    if extra:
        (root / EXTRA_FILE).write_text(yaml.safe_dump(extra, sort_keys=False))
    return root


class Case(NamedTuple):
    id: str
    mutate: Callable[[Dict[str, Any]], None]
    file: str  # relative file in the directory layout
    object: str
    field: str
    message: str  # substring of the message
    dir_object: str = ""  # the object in the directory layout, when it differs


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    """Mutation: set a dotted path (list indices as numbers) to value."""

    def mutate(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        cur: Any = data
        for p in parents:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value

    return mutate


def _del(path: str) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        cur: Any = data
        for p in parents:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        del cur[int(last) if isinstance(cur, list) else last]

    return mutate


def _do(*mutations: Callable[[Dict[str, Any]], None]) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        for m in mutations:
            m(data)

    return mutate


def _append(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        cur: Any = data
        for p in path.split("."):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        cur.append(value)

    return mutate


def _drop_links(pred: Callable[[Dict[str, Any]], bool]) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        data["npms_links"] = [lk for lk in data["npms_links"] if not pred(lk)]

    return mutate


HV = "host_vars/{}.yml".format
SITES, LINKS, SLA, TENANTS, PCE = (GLOBAL_FILES[k] for k in GLOBAL_FILES)
T_X = "tenant 'x'"

# One line per case reads as a table; keep the formatter off it.
# fmt: off
CASES: List[Case] = [
    # --- nodes ------------------------------------------------------------------------
    Case("host-unknown-key", _set("hosts.core-a.npms_sitee", "lon"),
         HV("core-a"), "node 'core-a'", "npms_sitee", "did you mean 'npms_site'"),
    Case("host-missing-site", _del("hosts.core-b.npms_site"), HV("core-b"), "node 'core-b'", "npms_site", "required"),
    Case("host-unknown-site", _set("hosts.core-b.npms_site", "ams"),
         HV("core-b"), "node 'core-b'", "npms_site", "unknown site 'ams'"),
    Case("node-id-string", _set("hosts.edge-1.npms_node_id", "11"),
         HV("edge-1"), "node 'edge-1'", "npms_node_id", "expected an integer, got a string"),
    Case("node-id-bool", _set("hosts.edge-1.npms_node_id", True),
         HV("edge-1"), "node 'edge-1'", "npms_node_id", "got a boolean"),
    Case("node-id-range", _set("hosts.edge-1.npms_node_id", 70000),
         HV("edge-1"), "node 'edge-1'", "npms_node_id", "between 1 and 65535"),
    Case("node-id-duplicate", _set("hosts.edge-2.npms_node_id", 11),
         HV("edge-2"), "node 'edge-2'", "npms_node_id", "already used by node 'edge-1'"),
    Case("dataplane-typo", _set("hosts.core-c.npms_dataplane", "vvp"),
         HV("core-c"), "node 'core-c'", "npms_dataplane", "did you mean 'vpp'"),
    Case("customer-vpp", _set("hosts.cust-x-1.npms_dataplane", "vpp"),
         HV("cust-x-1"), "node 'cust-x-1'", "npms_dataplane", "linux dataplane only"),
    Case("locator-missing", _del("hosts.edge-2.npms_locator"),
         HV("edge-2"), "node 'edge-2'", "npms_locator", "required"),
    Case("locator-ipv4", _set("hosts.edge-2.npms_locator", "10.0.0.0/8"),
         HV("edge-2"), "node 'edge-2'", "npms_locator", "not an IPv6 network"),
    Case("locator-host-bits", _set("hosts.edge-2.npms_locator", "fcbb:0:c::1/48"),
         HV("edge-2"), "node 'edge-2'", "npms_locator", "host bits set"),
    Case("locator-overlap", _set("hosts.edge-2.npms_locator", "fcbb:0:b:1::/64"),
         HV("edge-2"), "node 'edge-2'", "npms_locator", "overlaps fcbb:0:b::/48 (node 'edge-1'"),
    Case("customer-locator", _set("hosts.cust-x-1.npms_locator", "fcbb:0:99::/48"),
         HV("cust-x-1"), "node 'cust-x-1'", "npms_locator", "no SRv6 locator"),
    Case("customer-asn-missing", _del("hosts.cust-x-2.npms_asn"),
         HV("cust-x-2"), "node 'cust-x-2'", "npms_asn", "required"),
    Case("core-asn", _set("hosts.core-a.npms_asn", 65000),
         HV("core-a"), "node 'core-a'", "npms_asn", "only customer routers"),
    Case("loopback-cidr", _set("hosts.core-b.npms_loopback", "100.64.0.2/32"),
         HV("core-b"), "node 'core-b'", "npms_loopback", "not an IPv4 or IPv6 address"),
    Case("loopback-duplicate", _set("hosts.core-b.npms_loopback", "100.64.0.1"),
         HV("core-b"), "node 'core-b'", "npms_loopback", "already used by node 'core-a'"),
    Case("jinja-in-host-var", _set("hosts.core-b.npms_wan_address", "{{ lookup('env', 'WAN') }}"),
         HV("core-b"), "node 'core-b'", "npms_wan_address", "contains Jinja"),
    Case("role-typo", _set("hosts.core-b.npms_role", "cor"),
         HV("core-b"), "node 'core-b'", "npms_role", "did you mean 'core'"),
    Case("interface-peer-without-link", _set("hosts.core-a.npms_interfaces.0.peer", "edge-2"),
         HV("core-a"), "node 'core-a'", "npms_interfaces[0].peer", "no link in npms_links joins core-a and edge-2"),
    Case("interface-name-too-long", _set("hosts.core-a.npms_interfaces.0.name", "a-very-long-ifname"),
         HV("core-a"), "node 'core-a'", "npms_interfaces[0].name", "not a Linux interface name"),
    Case("interface-mtu-ipv6", _set("hosts.core-a.npms_interfaces.0.mtu", 1000),
         HV("core-a"), "node 'core-a'", "npms_interfaces[0].mtu", "at least 1280"),
    Case("interface-address-no-len", _set("hosts.core-a.npms_interfaces.0.addresses", ["10.0.0.0"]),
         HV("core-a"), "node 'core-a'", "npms_interfaces[0].addresses[0]", "prefix length"),
    Case("customer-unattached", _do(_del("npms_tenants.y")),
         HV("cust-y-1"), "node 'cust-y-1'", "npms_role", "not attached to any tenant"),
    # --- sites ------------------------------------------------------------------------
    Case("country-lower-case", _set("npms_sites.bom.country", "in"),
         SITES, "site 'bom'", "country", "two upper-case letters"),
    Case("country-norway-bool", _set("npms_sites.bom.country", False), SITES, "site 'bom'", "country", "quote it"),
    Case("site-lat-range", _set("npms_sites.lon.lat", 91), SITES, "site 'lon'", "lat", "between -90 and 90"),
    Case("site-unknown-key", _set("npms_sites.fra.regoin", "europe"),
         SITES, "site 'fra'", "regoin", "did you mean 'region'"),
    Case("site-not-mapping", _set("npms_sites.fra", "Frankfurt"),
         SITES, "site 'fra'", "npms_sites.fra", "expected a mapping"),
    # --- links ------------------------------------------------------------------------
    Case("link-unknown-node", _set("npms_links.0.b", "core-z"),
         LINKS, "link core-a<->core-z", "b", "unknown node 'core-z'"),
    Case("link-self-loop", _set("npms_links.0.b", "core-a"), LINKS, "link core-a<->core-a", "b", "itself"),
    Case("link-kind-mismatch", _set("npms_links.3.kind", "direct"),
         LINKS, "link edge-1<->core-a", "kind", "that is an access link"),
    Case("link-kind-unknown", _set("npms_links.3.kind", "acess"),
         LINKS, "link edge-1<->core-a", "kind", "did you mean 'access'"),
    Case("link-duplicate-reversed", _append("npms_links", {"a": "core-b", "b": "core-a", "kind": "core"}),
         LINKS, "link core-b<->core-a", "b", "duplicate link between core-a and core-b"),
    Case("link-customer-to-core", _append("npms_links", {"a": "cust-x-1", "b": "core-a"}),
         LINKS, "link cust-x-1<->core-a", "kind", "no link kind joins a customer node and a core node"),
    Case("link-loss-range", _set("npms_links.5.loss_pct", 150),
         LINKS, "link edge-1<->edge-2", "loss_pct", "between 0 and 100"),
    Case("link-negative-latency", _set("npms_links.1.latency_ms", -1),
         LINKS, "link core-b<->core-c", "latency_ms", ">= 0"),
    Case("link-latency-string", _set("npms_links.1.latency_ms", "22ms"),
         LINKS, "link core-b<->core-c", "latency_ms", "expected a number"),
    Case("link-zero-bandwidth", _set("npms_links.1.bandwidth_mbps", 0),
         LINKS, "link core-b<->core-c", "bandwidth_mbps", "greater than 0"),
    Case("link-via-country-name", _set("npms_links.2.via_countries", ["France"]),
         LINKS, "link core-a<->core-c", "via_countries[0]", "two upper-case letters"),
    Case("link-unknown-key", _set("npms_links.0.latency", 4),
         LINKS, "link core-a<->core-b", "latency", "did you mean 'latency_ms'"),
    # --- SLA profiles -----------------------------------------------------------------
    Case("profile-mode-typo", _set("npms_sla_profiles.fast.mode", "lowest_latncy"),
         SLA, "SLA profile 'fast'", "mode", "did you mean 'lowest_latency'"),
    Case("profile-bandwidth-required", _del("npms_sla_profiles.bulk.min_bandwidth_mbps"),
         SLA, "SLA profile 'bulk'", "min_bandwidth_mbps", "requires min_bandwidth_mbps"),
    Case("profile-loss-range", _set("npms_sla_profiles.video.max_loss_pct", 101),
         SLA, "SLA profile 'video'", "max_loss_pct", "between 0 and 100"),
    Case("profile-negative-jitter", _set("npms_sla_profiles.fast.max_jitter_ms", -0.5),
         SLA, "SLA profile 'fast'", "max_jitter_ms", ">= 0"),
    Case("profile-country-format", _set("npms_sla_profiles.fast.exclude_countries", ["IND"]),
         SLA, "SLA profile 'fast'", "exclude_countries[0]", "'IND' is not an ISO 3166-1 alpha-2"),
    Case("profile-unknown-region", _set("npms_sla_profiles.bulk.exclude_regions", ["asai"]),
         SLA, "SLA profile 'bulk'", "exclude_regions[0]", "did you mean 'asia'"),
    Case("profile-bool-as-string", _set("npms_sla_profiles.cheap.allow_direct", "yes"),
         SLA, "SLA profile 'cheap'", "allow_direct", "expected true or false"),
    Case("profile-hops-float", _set("npms_sla_profiles.fast.max_hops", 2.5),
         SLA, "SLA profile 'fast'", "max_hops", "expected an integer"),
    # --- tenants ----------------------------------------------------------------------
    Case("class-unknown-profile", _set("npms_tenants.x.traffic_classes.ef.sla", "gold"),
         TENANTS, T_X, "traffic_classes.ef.sla", "unknown SLA profile 'gold' (known: bulk, cheap, fast, video)"),
    Case("class-unknown-fallback", _set("npms_tenants.x.traffic_classes.ef.fallback", "cheep"),
         TENANTS, T_X, "traffic_classes.ef.fallback", "did you mean 'cheap'"),
    Case("class-fallback-is-primary", _set("npms_tenants.x.traffic_classes.ef.fallback", "fast"),
         TENANTS, T_X, "traffic_classes.ef.fallback", "must differ from the primary"),
    Case("class-dscp-range", _set("npms_tenants.x.traffic_classes.af11.dscp", [64]),
         TENANTS, T_X, "traffic_classes.af11.dscp[0]", "between 0 and 63"),
    Case("class-dscp-duplicate", _set("npms_tenants.x.traffic_classes.af11.dscp", [10, 46]),
         TENANTS, T_X, "traffic_classes.ef.dscp[0]", "DSCP 46 is already used by class 'af11'"),
    Case("class-two-defaults", _set("npms_tenants.x.traffic_classes.ef.default", True),
         TENANTS, T_X, "traffic_classes.ef.default", "only one class may be the default"),
    Case("class-no-dscp", _del("npms_tenants.x.traffic_classes.af11.dscp"),
         TENANTS, T_X, "traffic_classes.af11.dscp", "at least one DSCP"),
    Case("class-empty-dscp", _set("npms_tenants.x.traffic_classes.af11.dscp", []),
         TENANTS, T_X, "traffic_classes.af11.dscp", "at least one DSCP"),
    Case("interface-unknown-peer", _set("hosts.core-a.npms_interfaces.0.peer", "core-q"),
         HV("core-a"), "node 'core-a'", "npms_interfaces[0].peer", "unknown node 'core-q'"),
    Case("tenant-block-host-bits", _set("npms_tenants.x.locator_block", "fcbb:1000::1/32"),
         TENANTS, T_X, "locator_block", "host bits set"),
    Case("tenant-edge-listed-twice", _set("npms_tenants.x.edges", ["edge-1", "edge-2", "edge-1"]),
         TENANTS, T_X, "edges[2]", "listed twice"),
    Case("attachment-no-prefixes", _set("npms_tenants.x.attachments.1.prefixes", []),
         TENANTS, T_X, "attachments[1].prefixes", "at least one prefix"),
    Case("node-name-invalid", _do(lambda d: d["hosts"].__setitem__("core a", d["hosts"].pop("core-c")), _drop_links(lambda lk: "core-c" in (lk["a"], lk["b"]))),
         "hosts.yml", "node 'core a'", "hosts.core a", "not a valid host name"),
    Case("class-unknown-key", _set("npms_tenants.x.traffic_classes.ef.rate_limit", 5),
         TENANTS, T_X, "traffic_classes.ef.rate_limit", "did you mean 'rate_limit_mbps'"),
    Case("class-fec-block", _set("npms_tenants.x.traffic_classes.af41.fec", {"data": 200, "parity": 100}),
         TENANTS, T_X, "traffic_classes.af41.fec.parity", "at most 255"),
    Case("tenant-asn-zero", _set("npms_tenants.x.asn", 0), TENANTS, T_X, "asn", "between 1 and 4294967295"),
    Case("tenant-asn-too-big", _set("npms_tenants.x.asn", 2**32), TENANTS, T_X, "asn", "between 1 and 4294967295"),
    Case("tenant-id-duplicate", _set("npms_tenants.y.tenant_id", 1),
         TENANTS, "tenant 'y'", "tenant_id", "already used by tenant 'x'"),
    Case("tenant-block-too-long", _set("npms_tenants.x.locator_block", "fcbb:1000:1::/48"),
         TENANTS, T_X, "locator_block", "/32 or shorter"),
    Case("tenant-block-overlaps-node", _set("npms_tenants.y.locator_block", "fcbb::/16"),
         TENANTS, "tenant 'y'", "locator_block", "overlaps fcbb:0:1::/48 (node 'core-a'"),
    Case("tenant-blocks-overlap", _set("npms_tenants.y.locator_block", "fcbb:1000::/24"),
         TENANTS, "tenant 'y'", "locator_block", "(tenant 'x' locator_block)"),
    Case("tenant-edge-unknown", _set("npms_tenants.x.edges", ["edge-1", "edge-3"]),
         TENANTS, T_X, "edges[1]", "unknown node 'edge-3'"),
    Case("tenant-edge-is-core", _set("npms_tenants.y.edges", ["edge-1", "core-a"]),
         TENANTS, "tenant 'y'", "edges[1]", "is a core node, not an edge"),
    Case("tenant-edge-no-access", _drop_links(lambda lk: lk["a"] == "edge-2" and lk["kind"] == "access"),
         TENANTS, T_X, "edges[1]", "no access link"),
    Case("tenant-name-invalid", _do(lambda d: d["npms_tenants"].__setitem__("Acme Corp", d["npms_tenants"].pop("y"))),
         TENANTS, "tenant 'Acme Corp'", "npms_tenants.Acme Corp", "not a valid tenant name"),
    Case("tenant-unknown-key", _set("npms_tenants.x.prefixes", []), TENANTS, T_X, "prefixes", "unknown key"),
    Case("attachment-edge-not-in-tenant", _set("npms_tenants.y.attachments.0.edge", "edge-2"),
         TENANTS, "tenant 'y'", "attachments[0].edge", "not one of the tenant's edges"),
    Case("attachment-customer-is-edge", _set("npms_tenants.x.attachments.1.customer", "edge-1"),
         TENANTS, T_X, "attachments[1].customer", "not a customer router"),
    Case("attachment-without-link", _drop_links(lambda lk: lk["b"] == "cust-x-2"),
         TENANTS, T_X, "attachments[1].customer", "no attachment link between edge-2 and cust-x-2"),
    Case("attachment-customer-two-tenants", _set("npms_tenants.y.attachments.0.customer", "cust-x-1"),
         TENANTS, "tenant 'y'", "attachments[0].customer", "already attached to tenant 'x'"),
    Case("prefix-overlap-in-tenant", _set("npms_tenants.x.attachments.1.prefixes", ["10.0.0.0/16"]),
         TENANTS, T_X, "attachments[1].prefixes[0]", "overlaps 10.0.1.0/24 of attachments[0].prefixes[0]"),
    Case("prefix-longer-than-cap", _set("npms_tenants.x.attachments.1.prefixes", ["10.0.2.0/28"]),
         TENANTS, T_X, "attachments[1].prefixes[0]", "longer than max_prefix_len_v4 /26"),
    Case("prefix-host-bits", _set("npms_tenants.x.attachments.0.prefixes", ["10.0.1.1/24"]),
         TENANTS, T_X, "attachments[0].prefixes[0]", "host bits set"),
    Case("prefix-v6-cap", _set("npms_tenants.x.attachments.0.max_prefix_len_v6", 129),
         TENANTS, T_X, "attachments[0].max_prefix_len_v6", "between 0 and 128"),
    Case("jinja-in-tenant", _set("npms_tenants.x.traffic_classes.ef.sla", "{{ default_sla }}"),
         TENANTS, T_X, "traffic_classes.ef.sla", "contains Jinja"),
    # --- PCE and top level ------------------------------------------------------------
    Case("pce-backup-typo", _set("npms_pce.backup", "nodes"),
         PCE, "PCE settings", "npms_pce.backup", "did you mean 'node'"),
    Case("pce-hysteresis-range", _set("npms_pce.hysteresis_pct", 250),
         PCE, "PCE settings", "npms_pce.hysteresis_pct", "between 0 and 100"),
    Case("top-level-typo", _set("npms_tenant", {}),
         EXTRA_FILE, "inventory", "npms_tenant", "did you mean 'npms_tenants'",
         dir_object="group 'all'"),
]
# fmt: on


def _matches(problem: Problem, case: Case, file: str, obj: str) -> bool:
    return (
        problem.file == file
        and problem.object == obj
        and problem.field == case.field
        and case.message in problem.message
    )


def _problems(load: Callable[[], Any]) -> List[Problem]:
    with pytest.raises(InventoryError) as info:
        load()
    assert isinstance(info.value, ValueError)
    return info.value.problems


def test_fixture_is_valid() -> None:
    inv = inventory_from_data(small(), str(FIXTURE))
    assert sorted(inv.nodes) == ["core-a", "core-b", "core-c", "cust-x-1", "cust-x-2", "cust-y-1", "edge-1", "edge-2"]


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_inventory_dir(case: Case, tmp_path: Path) -> None:
    data = copy.deepcopy(small())
    case.mutate(data)
    root = write_dir(tmp_path / "inv", data)
    problems = _problems(lambda: load_inventory(root))
    expected_file = os.path.join(str(root), case.file)
    obj = case.dir_object or case.object
    assert any(_matches(p, case, expected_file, obj) for p in problems), "\n".join(map(str, problems))
    # The message line shows file, object and field together.
    line = f"{expected_file}: {obj} field '{case.field}': "
    assert line in str(InventoryError(problems))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_inventory_merged(case: Case) -> None:
    data = copy.deepcopy(small())
    case.mutate(data)
    problems = _problems(lambda: inventory_from_data(data, "merged.yml"))
    assert any(_matches(p, case, "merged.yml", case.object) for p in problems), "\n".join(map(str, problems))


def test_collects_many_problems_at_once(tmp_path: Path) -> None:
    data = copy.deepcopy(small())
    for case in CASES:
        if case.id in (
            "country-lower-case",
            "node-id-duplicate",
            "link-loss-range",
            "class-unknown-profile",
            "pce-backup-typo",
            "profile-bandwidth-required",
            "host-unknown-key",
        ):
            case.mutate(data)
    root = write_dir(tmp_path / "inv", data)
    problems = _problems(lambda: load_inventory(root))
    files = {os.path.relpath(p.file, root) for p in problems}
    assert files >= {SITES, HV("edge-2"), HV("core-a"), LINKS, TENANTS, PCE, SLA}
    assert len(problems) >= 7
    # one line per problem
    assert len(str(InventoryError(problems)).splitlines()) == len(problems)


def test_error_format() -> None:
    p = Problem(
        "inventory/lab/group_vars/all/tenants.yml",
        "tenant 'acme'",
        "traffic_classes.ef.sla",
        "unknown SLA profile 'gold' (known: bronze, realtime)",
    )
    assert str(InventoryError([p, p])) == (
        "inventory/lab/group_vars/all/tenants.yml: tenant 'acme' field 'traffic_classes.ef.sla': "
        "unknown SLA profile 'gold' (known: bronze, realtime)"
    )


# --------------------------------------------------------------------------------------
# Problems only an Ansible inventory directory can have
# --------------------------------------------------------------------------------------
@pytest.fixture
def inv_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "inv", small())


def _hosts_tree(root: Path) -> Dict[str, Any]:
    return yaml.safe_load((root / "hosts.yml").read_text())


def test_dir_layout_loads_like_merged(inv_dir: Path) -> None:
    from_dir = load_inventory(inv_dir)
    merged = inventory_from_data(small(), str(inv_dir))
    assert from_dir == merged
    assert from_dir.source == str(inv_dir)


def test_host_in_two_role_groups(inv_dir: Path) -> None:
    tree = _hosts_tree(inv_dir)
    tree["all"]["children"]["edge"]["hosts"]["core-a"] = None
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(tree))
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.file == str(inv_dir / "hosts.yml")
        and p.object == "node 'core-a'"
        and p.field == "groups"
        and "several role groups (core, edge)" in p.message
        for p in problems
    ), problems


def test_role_disagrees_with_group(inv_dir: Path) -> None:
    with open(inv_dir / "host_vars" / "edge-1.yml", "a", encoding="utf-8") as fh:
        fh.write("npms_role: core\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.file == str(inv_dir / "host_vars" / "edge-1.yml")
        and p.object == "node 'edge-1'"
        and p.field == "npms_role"
        and "disagrees with the host's group 'edge'" in p.message
        for p in problems
    ), problems


def test_host_without_role(inv_dir: Path) -> None:
    tree = _hosts_tree(inv_dir)
    del tree["all"]["children"]["customer"]["hosts"]["cust-y-1"]
    tree["all"]["hosts"] = {"cust-y-1": None}
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(tree))
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.file == str(inv_dir / "host_vars" / "cust-y-1.yml") and p.field == "npms_role" and "no role" in p.message
        for p in problems
    ), problems


def test_role_from_nested_group_and_group_vars_precedence(inv_dir: Path) -> None:
    # core -> core_asia (nested) holds core-c; group_vars/core.yml sets a default that
    # the nested group overrides, and host_vars overrides both.
    tree = _hosts_tree(inv_dir)
    del tree["all"]["children"]["core"]["hosts"]["core-c"]
    tree["all"]["children"]["core"]["children"] = {"core_asia": {"hosts": {"core-c": None}}}
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(tree))
    (inv_dir / "group_vars" / "core.yml").write_text("npms_dataplane: vpp\n")
    (inv_dir / "group_vars" / "core_asia.yml").write_text("npms_dataplane: linux\n")
    hv = inv_dir / "host_vars" / "core-b.yml"
    hv.write_text(hv.read_text() + "npms_dataplane: linux\n")
    data = yaml.safe_load((inv_dir / "host_vars" / "core-c.yml").read_text())
    del data["npms_dataplane"]
    (inv_dir / "host_vars" / "core-c.yml").write_text(yaml.safe_dump(data))
    inv = load_inventory(inv_dir)
    assert inv.nodes["core-c"].role == "core"
    assert inv.nodes["core-c"].dataplane == "linux"  # core_asia beats core
    assert inv.nodes["core-a"].dataplane == "vpp"  # group default
    assert inv.nodes["core-b"].dataplane == "linux"  # host_vars beats group
    assert inv.nodes["edge-1"].dataplane == "linux"  # not in group core


def test_unknown_host_vars_and_group_vars(inv_dir: Path) -> None:
    (inv_dir / "host_vars" / "core-x.yml").write_text("npms_site: lon\n")
    (inv_dir / "group_vars" / "cores.yml").write_text("npms_dataplane: vpp\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.file == str(inv_dir / "host_vars" / "core-x.yml")
        and p.object == "node 'core-x'"
        and "no such host" in p.message
        for p in problems
    ), problems
    assert any(
        p.file == str(inv_dir / "group_vars" / "cores.yml")
        and p.object == "group 'cores'"
        and "did you mean 'core'" in p.message
        for p in problems
    ), problems


def test_global_variable_in_group_vars(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "edge.yml").write_text("npms_pce: {backup: none}\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert [str(p) for p in problems] == [
        f"{inv_dir / 'group_vars' / 'edge.yml'}: group 'edge' field 'npms_pce': network-wide variable: set it in group_vars/all"
    ]


def test_variable_set_in_two_files(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "zz-more.yml").write_text("npms_pce: {backup: none}\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.file == str(inv_dir / "group_vars" / "all" / "zz-more.yml")
        and p.field == "npms_pce"
        and "also set in" in p.message
        and "pce.yml" in p.message
        for p in problems
    ), problems


def test_unknown_npms_variable_reported_once(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "defaults.yml").write_text("npms_dataplan: vpp\nntp_server: 192.0.2.123\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert [(p.object, p.field) for p in problems] == [("group 'all'", "npms_dataplan")]
    assert "did you mean 'npms_dataplane'" in problems[0].message


def test_yaml_duplicate_key(inv_dir: Path) -> None:
    (inv_dir / "host_vars" / "core-b.yml").write_text(
        "npms_site: fra\nnpms_node_id: 2\nnpms_node_id: 3\nnpms_locator: 'fcbb:0:2::/48'\n"
    )
    problems = _problems(lambda: load_inventory(inv_dir))
    assert len(problems) == 1  # no cascade of "missing" fields from an unreadable file
    assert problems[0].file == str(inv_dir / "host_vars" / "core-b.yml")
    assert problems[0].field == "line 3, column 1"
    assert "duplicate key 'npms_node_id'" in problems[0].message


def test_yaml_syntax_error(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "sla.yml").write_text("npms_sla_profiles:\n  fast: {mode: lowest_latency\n")
    problems = _problems(lambda: load_inventory(inv_dir))
    assert problems[0].file == str(inv_dir / "group_vars" / "all" / "sla.yml")
    assert problems[0].message.startswith("invalid YAML")


def test_vault_value_rejected_only_for_npms(inv_dir: Path) -> None:
    vault = "!vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"
    hv = inv_dir / "host_vars" / "core-b.yml"
    hv.write_text(hv.read_text() + "ansible_password: " + vault)
    load_inventory(inv_dir)  # Ansible's own variables may be vaulted
    hv.write_text(hv.read_text() + "npms_wan_address: " + vault)
    problems = _problems(lambda: load_inventory(inv_dir))
    assert [(p.object, p.field) for p in problems] == [("node 'core-b'", "npms_wan_address")]
    assert "vault-encrypted" in problems[0].message


def test_jinja_allowed_outside_npms_and_unsafe(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "conn.yml").write_text(
        "ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    hv = inv_dir / "host_vars" / "cust-x-1.yml"
    hv.write_text(
        hv.read_text().replace(
            "npms_node_id: 101", "npms_node_id: 101\nnpms_interfaces:\n  - {name: !unsafe 'x{{y}}', addresses: []}"
        )
    )
    inv = load_inventory(inv_dir)
    assert inv.nodes["cust-x-1"].interfaces[0].name == "x{{y}}"


def test_single_ansible_yaml_file_with_inline_vars(tmp_path: Path) -> None:
    data = small()
    hosts = data.pop("hosts")
    tree: Dict[str, Any] = {"all": {"vars": data, "children": {}}}
    for host, hvars in hosts.items():
        role = hvars.pop("npms_role")
        tree["all"]["children"].setdefault(role, {"hosts": {}})["hosts"][host] = hvars
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(tree))
    inv = load_inventory(path)
    assert inv == inventory_from_data(small(), inv.source)
    assert inventory_to_data(inventory_from_data(tree, "x.yml")) == inventory_to_data(inv)
    # a problem in the inline tree names the file and the host
    tree["all"]["children"]["edge"]["hosts"]["edge-1"]["npms_node_id"] = "eleven"
    path.write_text(yaml.safe_dump(tree))
    problems = _problems(lambda: load_inventory(path))
    assert [(p.file, p.object, p.field) for p in problems] == [(str(path), "node 'edge-1'", "npms_node_id")]


def test_hosts_yml_path_reads_adjacent_vars(inv_dir: Path) -> None:
    assert load_inventory(inv_dir / "hosts.yml").nodes == load_inventory(inv_dir).nodes


def test_missing_inventory(tmp_path: Path) -> None:
    problems = _problems(lambda: load_inventory(tmp_path / "nope"))
    assert problems[0].message == "no such file or directory"
    (tmp_path / "empty").mkdir()
    problems = _problems(lambda: load_inventory(tmp_path / "empty"))
    assert problems[0].field == "hosts.yml"


def test_bad_group_tree(inv_dir: Path) -> None:
    tree = _hosts_tree(inv_dir)
    tree["all"]["children"]["core"]["host"] = tree["all"]["children"]["core"].pop("hosts")
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(tree))
    problems = _problems(lambda: load_inventory(inv_dir))
    assert any(
        p.object == "group 'core'"
        and p.field == "host"
        and "did you mean 'hosts'" in p.message
        and p.file == str(inv_dir / "hosts.yml")
        for p in problems
    ), problems
