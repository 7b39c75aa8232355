# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo`: the ten-minute control loop on the namespace lab, in about two minutes.

Lab up; one loop (probe, ingest, compute, render, deploy, verify, report); the paths of
acme's EF and best-effort traffic from edge-ber to edge-bos; EF and best-effort pings from
the same customer host and the tunnel counters that show their different paths;
`npms lab impair` makes a link of the EF path lossy; the next loop moves EF off it and the
report names the cause; a customer ping runs throughout.  Lab down at the end (also on
Ctrl-C or failure).  The window is 30 s instead of 600 s so that each loop has its own.

Needs root.  On a kernel without SRv6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL) the
Linux nodes encapsulate with npms's eBPF program instead (npms.resources.srv6_bpf); the
demo says which one it uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVENTORY = os.path.join(ROOT, "inventory", "lab")
PREFIX = os.environ.get("NPMS_DEMO_PREFIX", "demo-")
WINDOW_S = 30
EF = ("acme", "ef", "edge-ber", "edge-bos")
BE = ("acme", "be", "edge-ber", "edge-bos")


def say(text: str = "") -> None:
    print(text, flush=True)


def next_window() -> None:
    wait = WINDOW_S - time.time() % WINDOW_S + 0.5
    say(f"(waiting {wait:.0f} s for the next {WINDOW_S}-second window)")
    time.sleep(wait)


def wait_for_route(node, prefix, seconds=60):
    """The edge announces the other site's prefixes once its BGP session is up."""
    deadline = time.monotonic() + seconds
    while prefix not in ns_run(node, "ip", "route", "show", prefix).stdout and time.monotonic() < deadline:
        time.sleep(1)


def path_of(report, key):
    return next(p for p in report["paths"] if (p["tenant"], p["traffic_class"], p["src"], p["dst"]) == key)


def ns_run(node, *argv, timeout=60):
    return subprocess.run(["ip", "netns", "exec", PREFIX + node, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)


def tx(node, dev):
    out = ns_run(node, "ip", "-j", "-s", "link", "show", "dev", dev)
    return json.loads(out.stdout)[0]["stats64"]["tx"]["packets"] if out.returncode == 0 else 0


def main() -> int:
    if os.geteuid() != 0:
        say("make demo builds network namespaces: run it as root")
        return 1
    from nornir import InitNornir  # pylint: disable=import-outside-toplevel

    from npms.inventory import load_inventory  # pylint: disable=import-outside-toplevel
    from npms.loop import summary_text  # pylint: disable=import-outside-toplevel
    from npms.overlay import tunnel_name  # pylint: disable=import-outside-toplevel
    from npms.resources.srv6_bpf import encap_mode  # pylint: disable=import-outside-toplevel
    from npms_lab import Lab  # pylint: disable=import-outside-toplevel
    from npms_nornir.loop import LoopSettings, run_once  # pylint: disable=import-outside-toplevel

    inv = load_inventory(INVENTORY)
    lab = Lab(INVENTORY, PREFIX)
    if encap_mode() == "bpf":
        say("NOTE: this kernel has no SRv6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL): the Linux nodes "
            "encapsulate with npms's eBPF program, and the kernel's own SRH processing does End and decapsulation.")
    lab.up()
    background = None
    try:
        nr = InitNornir(inventory={"plugin": "NpmsInventory", "options": {"lab_state": PREFIX}},
                        runner={"plugin": "threaded", "options": {"num_workers": 20}}, logging={"enabled": False})
        settings = LoopSettings(state_dir=tempfile.mkdtemp(prefix="npms-demo-"), window_s=WINDOW_S)
        say(f"\n=== loop 1 (state in {settings.state_dir})")
        next_window()
        first = run_once(nr, inv, settings)
        say(summary_text(first, tenants=["acme"]))
        ef, be = path_of(first, EF), path_of(first, BE)
        say(f"acme EF  edge-ber -> edge-bos: {' > '.join(ef['path'])}  ({ef['reason']})")
        say(f"acme BE  edge-ber -> edge-bos: {' > '.join(be['path'])}  ({be['reason']})")
        if first["failed_nodes"]:
            say(f"nodes that failed to deploy (see the report): {', '.join(first['failed_nodes'])}")
        else:
            wait_for_route("cust-acme-ber", "10.10.3.0/24")
            background = subprocess.Popen(["ip", "netns", "exec", PREFIX + "h-cust-acme-ber", "ping", "-n", "-q", "-i", "0.5",
                                           "10.10.3.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            tunnels = {cls: tunnel_name(inv, "acme", "edge-ber", p["path"][1]) for cls, p in (("ef", ef), ("be", be))}
            for cls, tos in (("ef", 0xB8), ("be", 0)):
                before = {c: tx("edge-ber", t) for c, t in tunnels.items()}
                ns_run("h-cust-acme-ber", "ping", "-n", "-q", "-c", "20", "-i", "0.2", "-Q", str(tos), "10.10.3.2")
                delta = {c: tx("edge-ber", t) - before[c] for c, t in tunnels.items()}
                say(f"20 pings with DSCP {cls}: packets out of edge-ber's EF tunnel {tunnels['ef']}: {delta['ef']}, "
                    f"its best-effort tunnel {tunnels['be']}: {delta['be']} (the background ping is best effort too)")
        a, b = ef["path"][1], ef["path"][2]
        link = next(f"{x}~{y}" for x, y in ((a, b), (b, a)) if any(lk.name == f"{x}~{y}" for lk in lab.plan().links))
        say(f"\n=== npms lab impair {link} --loss 30   (the EF path's link {a} - {b})")
        lab.impair(link, loss_pct=30.0)
        try:
            next_window()
            say("=== loop 2")
            second = run_once(nr, inv, settings)
        finally:
            lab.restore(link)
        say(summary_text(second, tenants=["acme"]))
        moved = path_of(second, EF)
        say(f"acme EF  edge-ber -> edge-bos now: {' > '.join(moved['path'])}")
        for c in second["changes"]:
            if (c["tenant"], c["traffic_class"], c["src"], c["dst"]) == EF:
                say(f"why: {c['reason']}")
        if background is not None:
            background.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
            out = background.communicate(timeout=10)[0]
            say("customer ping throughout: " + (out.strip().splitlines()[-2] if out.strip() else "no output"))
        say(f"\nreports: {settings.state_dir}/reports/ (JSON); bundles: {settings.state_dir}/bundles/")
        return 0
    finally:
        if background is not None and background.poll() is None:
            background.kill()
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
