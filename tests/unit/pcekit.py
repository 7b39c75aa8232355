"""Build small inventories in code for path-engine tests (no files, no loader)."""

import ipaddress

from npms.model import (Fec, Inventory, Link, Node, PceSettings, Site, SlaProfile,
                        Tenant, TrafficClass)


def build(nodes, links, profiles, classes, tenant_edges=None, pce=None, tenants=None):
    """nodes: {name: (role, country, region)}; links: [(a, b, kind, {metrics})];
    profiles: {name: {SlaProfile kwargs}}; classes: {name: {TrafficClass kwargs}} for tenant 't'.
    tenants: optional {tenant: (edges, classes)} for several tenants."""
    sites = {}
    nodemap = {}
    for i, (name, (role, country, region)) in enumerate(sorted(nodes.items()), start=1):
        sites["s-" + name] = Site("s-" + name, country, region, 0.0, 0.0)
        nodemap[name] = Node(name, role, "s-" + name, i, "linux",
                             ipaddress.IPv6Network("fcbb:0:%x::/48" % i))
    lks = tuple(Link(a, b, kind, **m) for a, b, kind, m in links)
    profs = {n: SlaProfile(name=n, **kw) for n, kw in profiles.items()}
    if tenants is None:
        edges = tenant_edges or [n for n, v in nodes.items() if v[0] == "edge"]
        tenants = {"t": (edges, classes)}
    tmap = {}
    for k, (tname, (edges, cls)) in enumerate(sorted(tenants.items()), start=1):
        tcs = []
        for cname, kw in sorted(cls.items()):
            kw = dict(kw)
            if isinstance(kw.get("fec"), tuple):
                kw["fec"] = Fec(*kw["fec"])
            kw.setdefault("dscp", ())
            tcs.append(TrafficClass(name=cname, **kw))
        tmap[tname] = Tenant(tname, 65000 + k, ipaddress.IPv6Network("fcbb:%x::/32" % (0x1000 * k)),
                             tuple(sorted(edges)), (), tuple(tcs), k)
    return Inventory(sites, nodemap, lks, profs, tmap, pce or PceSettings())


def M(lat=1.0, cost=10.0, loss=0.0, bw=1000.0, jit=0.0, via=()):
    return dict(latency_ms=lat, cost=cost, loss_pct=loss, bandwidth_mbps=bw, jitter_ms=jit,
                via_countries=tuple(via))
