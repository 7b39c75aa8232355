# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy fan-out of a no-change loop over many simulated nodes, Nornir and Ansible.

    python tests/bench/bench_loop_fanout.py [--nodes 1000] [--ansible-nodes 200] [--latency-ms 20]

Every simulated node already runs this loop's bundle (its state file says so), so the
deploy step is what a quiet loop costs: hand each node its bundle, read the version it
runs, find nothing to do.  Bundles are real ones (the lab's edge-ber content, renamed per
node, about 20 KB each).

* Nornir: the real ``npms_nornir.tasks.deploy_bundle`` task, 100 threads, over a
  connection plugin whose runner answers the node's commands from memory after
  ``--latency-ms`` (a command's round trip to a real node over SSH; it sleeps, it does not
  burn CPU).
* Ansible: ``ansible-playbook`` running the real ``galactic.npms.bundle`` module on each
  host (connection local, state files in a temporary directory, forks 50), for
  ``--ansible-nodes`` hosts; the 1,000-node figure is extrapolated linearly and marked so.

Target (issue 7): a 1,000-node no-change fan-out under 2 minutes with Nornir.  The LAST
stdout line is one JSON object.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGET_NORNIR_S = 120.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--ansible-nodes", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=100)
    args = ap.parse_args()

    from nornir.core import Nornir  # pylint: disable=import-outside-toplevel
    from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory  # pylint: disable=import-outside-toplevel
    from nornir.core.plugins.connections import ConnectionPluginRegister  # pylint: disable=import-outside-toplevel
    from nornir.plugins.runners import ThreadedRunner  # pylint: disable=import-outside-toplevel

    from npms.bundle import bundle_content, make_bundle  # pylint: disable=import-outside-toplevel
    from npms.inventory import load_inventory  # pylint: disable=import-outside-toplevel
    from npms.pce import compute_paths  # pylint: disable=import-outside-toplevel
    from npms.runner import Result, Runner  # pylint: disable=import-outside-toplevel
    from npms_nornir.tasks import deploy_bundle  # pylint: disable=import-outside-toplevel

    inv = load_inventory(os.path.join(ROOT, "inventory", "lab"))
    paths = [r.to_dict() for r in compute_paths(inv)]
    content = bundle_content(inv, "edge-ber", paths)
    names = [f"sim-{i:04d}" for i in range(args.nodes)]
    bundles = {n: make_bundle(n, content, 7) for n in names}
    size = len(json.dumps(bundles[names[0]]))
    states = {f"/var/lib/npms/bundle-{n}.json": json.dumps({"epoch": 7, "hash": bundles[n]["hash"], "node": n})
              for n in names}
    delay = args.latency_ms / 1000.0
    calls = {"n": 0}

    class SimRunner(Runner):
        where = "sim"

        def run(self, argv, stdin=None, check=True, timeout=60.0, env=None):
            calls["n"] += 1
            time.sleep(delay)
            argv = tuple(argv)
            if argv[0] == "cat" and argv[1] in states:
                return Result(argv, 0, states[argv[1]], "")
            return Result(argv, 1, "", "not simulated")

    class SimConnection:
        def __init__(self):
            self.connection = None

        def open(self, hostname, username=None, password=None, port=None, platform=None, extras=None, configuration=None):
            self.connection = SimRunner()

        def close(self):
            self.connection = None

    ConnectionPluginRegister.register("npms_sim", SimConnection)
    hosts = Hosts({n: Host(name=n, hostname=n, data={"npms_connection": "npms_sim", "dataplane": "linux"}) for n in names})
    nr = Nornir(inventory=Inventory(hosts=hosts, groups=Groups(), defaults=Defaults()),
                runner=ThreadedRunner(num_workers=args.workers))
    t0 = time.perf_counter()
    res = nr.run(task=deploy_bundle, bundles=bundles)
    nornir_s = time.perf_counter() - t0
    up_to_date = sum(1 for r in res.values() if not r.failed and (r[0].result or {}).get("up_to_date"))
    print(f"nornir: {args.nodes} nodes in {nornir_s:.2f} s ({args.workers} threads, {args.latency_ms:g} ms per command), "
          f"{up_to_date} up to date, {sum(1 for r in res.values() if r.failed)} failed, {calls['n']} commands")

    # Ansible: the real module on each host (connection local)
    work = tempfile.mkdtemp(prefix="npms-fanout-")
    try:
        n_ans = min(args.ansible_nodes, args.nodes)
        bdir, sdir = os.path.join(work, "bundles"), os.path.join(work, "state")
        os.makedirs(bdir)
        os.makedirs(sdir)
        for n in names[:n_ans]:
            with open(os.path.join(bdir, n + ".json"), "w", encoding="utf-8") as fh:
                json.dump(bundles[n], fh)
            with open(os.path.join(sdir, n + ".json"), "w", encoding="utf-8") as fh:
                fh.write(states[f"/var/lib/npms/bundle-{n}.json"])
        with open(os.path.join(work, "hosts.yml"), "w", encoding="utf-8") as fh:
            json.dump({"all": {"hosts": {n: {"ansible_connection": "local",
                                             "ansible_python_interpreter": sys.executable} for n in names[:n_ans]}}}, fh)
        with open(os.path.join(work, "deploy.yml"), "w", encoding="utf-8") as fh:
            fh.write(f"""---
- name: No-change deploy fan-out
  hosts: all
  gather_facts: false
  tasks:
    - name: Deploy this loop's bundle
      galactic.npms.bundle:
        bundle: "{{{{ lookup('file', '{bdir}/' ~ inventory_hostname ~ '.json') | from_json }}}}"
        state_path: "{sdir}/{{{{ inventory_hostname }}}}.json"
""")
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_FORKS="50",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        t0 = time.perf_counter()
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                               os.path.join(work, "hosts.yml"), os.path.join(work, "deploy.yml")],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        ansible_s = time.perf_counter() - t0
        ok = proc.returncode == 0 and "changed=0" in proc.stdout and "failed=1" not in proc.stdout
        print(f"ansible: {n_ans} nodes in {ansible_s:.2f} s (forks 50, connection local), "
              f"rc {proc.returncode}, {'no change on any node' if ok else 'UNEXPECTED: ' + proc.stdout[-500:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ansible_1000 = ansible_s * args.nodes / n_ans
    out = {
        "nodes": args.nodes, "bundle_bytes": size, "latency_ms": args.latency_ms,
        "nornir_deploy_s": round(nornir_s, 3), "nornir_workers": args.workers, "nornir_up_to_date": up_to_date,
        "ansible_nodes_measured": n_ans, "ansible_deploy_s": round(ansible_s, 3),
        "ansible_deploy_s_extrapolated": round(ansible_1000, 1), "ansible_ok": ok,
        "target_nornir_s": TARGET_NORNIR_S, "nornir_meets_target": nornir_s < TARGET_NORNIR_S,
    }
    print(json.dumps(out, sort_keys=True))
    return 0 if up_to_date == args.nodes and ok else 1


if __name__ == "__main__":
    sys.exit(main())
