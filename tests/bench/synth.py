"""Synthetic network for the path-engine benchmark (issue 2, section 4).

100 POPs with full-mesh core links and a measurement per directed core pair; 1,000 edges,
each attached to its 3 nearest POPs and with direct links to 2 other edges of its tenant
(a ring); 20 tenants of 50 edges; 5 traffic classes (one per SLA mode).  Seeded: the same
arguments give the same network.
"""

import ipaddress
import math
import random

from npms.model import (Fec, Inventory, Link, Node, PceSettings, Site, SlaProfile, Tenant,
                        TrafficClass)

COUNTRIES = [("IN", "asia"), ("DE", "europe"), ("GB", "europe"), ("FR", "europe"), ("US", "north-america"),
             ("SG", "asia"), ("JP", "asia"), ("BR", "south-america"), ("AU", "oceania"), ("ZA", "africa")]


def _km(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(min(1.0, h)))


def _one_way_ms(km):
    return 0.5 + km * 1.4 / 200.0  # fibre at 200 km/ms, 40 % route stretch


def build(pops=100, tenants=20, edges_per_tenant=50, seed=7):
    rnd = random.Random(seed)
    sites, nodes, links = {}, {}, []
    pop_names = ["pop%03d" % i for i in range(pops)]
    coords = {}
    for i, name in enumerate(pop_names):
        country, region = COUNTRIES[i % len(COUNTRIES)]
        coords[name] = (rnd.uniform(-45, 60), rnd.uniform(-180, 180))
        sites[name] = Site(name, country, region, *coords[name])
        nodes[name] = Node(name, "core", name, i + 1, "linux", ipaddress.IPv6Network("fcbb:0:%x::/48" % (i + 1)))
    for i, a in enumerate(pop_names):
        for b in pop_names[i + 1:]:
            lat = _one_way_ms(_km(coords[a], coords[b]))
            links.append(Link(a, b, "core", cost=float(rnd.randint(1, 20)), latency_ms=round(lat, 3),
                              jitter_ms=round(rnd.uniform(0.05, 2.0), 3),
                              loss_pct=round(rnd.uniform(0.1, 2.0), 3) if rnd.random() < 0.05 else 0.0,
                              bandwidth_mbps=float(rnd.choice((1000, 2500, 10000, 40000)))))
    profiles = {
        "rt": SlaProfile("rt", "lowest_latency", max_latency_ms=150, max_jitter_ms=30, max_loss_pct=1.0),
        "rt-noin": SlaProfile("rt-noin", "lowest_latency", max_latency_ms=150, max_jitter_ms=30,
                              max_loss_pct=1.0, exclude_countries=("IN",)),
        "biz": SlaProfile("biz", "lowest_cost", max_latency_ms=250),
        "video": SlaProfile("video", "lossless_fec", max_loss_pct=0.01, max_latency_ms=200),
        "clean": SlaProfile("clean", "zero_loss", max_hops=6),
        "bulk": SlaProfile("bulk", "sustained_bandwidth", min_bandwidth_mbps=2000),
        "be": SlaProfile("be", "lowest_cost", allow_direct=True, max_loss_pct=5.0),
    }
    tmap = {}
    node_id = pops + 1
    for t in range(tenants):
        tname = "t%02d" % t
        edges = []
        for e in range(edges_per_tenant):
            name = "%s-e%02d" % (tname, e)
            here = (rnd.uniform(-45, 60), rnd.uniform(-180, 180))
            country, region = COUNTRIES[rnd.randrange(1, len(COUNTRIES))]
            sites[name] = Site(name, country, region, *here)
            nodes[name] = Node(name, "edge", name, node_id, "linux",
                               ipaddress.IPv6Network("fcbb:0:%x::/48" % node_id))
            node_id += 1
            near = sorted(pop_names, key=lambda p: _km(coords[p], here))[:3]
            for p in near:
                links.append(Link(name, p, "access", cost=float(rnd.randint(1, 5)),
                                  latency_ms=round(_one_way_ms(_km(coords[p], here)) + rnd.uniform(0.5, 3), 3),
                                  jitter_ms=round(rnd.uniform(0.1, 3.0), 3),
                                  loss_pct=round(rnd.uniform(0.1, 1.0), 3) if rnd.random() < 0.1 else 0.0,
                                  bandwidth_mbps=float(rnd.choice((500, 1000, 2500, 10000)))))
            edges.append(name)
        for i, name in enumerate(edges):
            other = edges[(i + 1) % len(edges)]
            here = (sites[name].lat, sites[name].lon)
            there = (sites[other].lat, sites[other].lon)
            links.append(Link(name, other, "direct", cost=0.0,
                              latency_ms=round(_one_way_ms(_km(here, there)) * 1.5, 3),
                              jitter_ms=round(rnd.uniform(1, 10), 3),
                              loss_pct=round(rnd.uniform(0.0, 3.0), 3), bandwidth_mbps=200.0))
        classes = (
            TrafficClass("ef", (46,), "rt-noin" if t % 2 else "rt", fallback="biz"),
            TrafficClass("af41", (34,), "video", fallback="rt", fec=Fec(10, 2)),
            TrafficClass("af21", (18,), "clean", fallback="biz"),
            TrafficClass("af11", (10,), "bulk", fallback="biz"),
            TrafficClass("be", (), "be", default=True),
        )
        tmap[tname] = Tenant(tname, 65000 + t, ipaddress.IPv6Network("fcbb:%x::/32" % (0x1000 + t)),
                             tuple(edges), (), classes, t + 1)
    inv = Inventory(sites, nodes, tuple(links), profiles, tmap, PceSettings())
    return inv


def core_measurements(inv, seed=11, scale=1.0):
    """One window aggregate per directed core pair, near the links' nominal values."""
    rnd = random.Random(seed)
    out = []
    for link in inv.links:
        if link.kind != "core":
            continue
        for src, dst in ((link.a, link.b), (link.b, link.a)):
            lat = link.latency_ms * scale * rnd.uniform(0.97, 1.05)
            out.append({"src": src, "dst": dst, "latency_ms": round(lat, 3),
                        "latency_p95_ms": round(lat * 1.1, 3), "jitter_ms": link.jitter_ms,
                        "loss_pct": link.loss_pct, "bandwidth_mbps": link.bandwidth_mbps * 0.8,
                        "samples": 60})
    return out
