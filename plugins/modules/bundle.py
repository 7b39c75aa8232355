#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle
author: galactic.npms contributors (@galactic)
version_added: 0.1.0
short_description: Make a node hold its config bundle (the deploy and verify steps of the loop)
description:
  - Applies a config bundle (C(npms.bundle), every resource's configuration for this node,
    versioned by epoch and content hash) through the galactic.npms resources, in order,
    each with state C(overridden); the same code as the Nornir task C(deploy_bundle) and
    the pull-mode agent.
  - The node records the bundle it runs in O(state_path) and refuses a bundle older than
    that (a late update), unless O(rollback). The same epoch and hash again changes
    nothing without reading the resources, unless O(verify).
  - When a resource fails, the node is put back to O(previous) if that is the bundle it
    runs, and the task fails with C(rolled_back=true).
options:
  bundle:
    description: The bundle (as M(galactic.npms.loop_step) C(render) returns it per node).
    type: dict
    required: true
  previous:
    description: The bundle the node ran before (the rollback target).
    type: dict
  verify:
    description: Read every resource back and report what differs; changes nothing.
    type: bool
    default: false
  rollback:
    description: Put the node back to an older bundle on purpose (skips the age check).
    type: bool
    default: false
  state_path:
    description: Where the node records the bundle it runs.
    type: path
    default: /var/lib/npms/bundle.json
  dataplane:
    description: The node's dataplane (FRR is always configured the Linux way).
    type: str
    choices: [linux, vpp]
    default: linux
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

EXAMPLES = r"""
- name: Deploy this loop's bundle
  galactic.npms.bundle:
    bundle: "{{ npms_render.bundles[inventory_hostname] }}"
    previous: "{{ npms_render.previous[inventory_hostname] | default(omit) }}"
"""

RETURN = r"""
epoch:
  description: The bundle's epoch.
  returned: always
  type: int
running:
  description: "C({epoch, hash}) of the bundle the node runs after the task."
  returned: always
  type: dict
resources:
  description: Per resource, its result (commands, before, after).
  returned: always
  type: dict
rolled_back:
  description: Whether the node was put back to its previous bundle after a failure.
  returned: always
  type: bool
up_to_date:
  description: The node already ran this bundle.
  returned: when true
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.galactic.npms.plugins.module_utils.npms.bundle import BundleError, apply_bundle
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.registry import build
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import CommandError, LocalRunner


def main():
    module = AnsibleModule(
        argument_spec={
            "bundle": {"type": "dict", "required": True},
            "previous": {"type": "dict"},
            "verify": {"type": "bool", "default": False},
            "rollback": {"type": "bool", "default": False},
            "state_path": {"type": "path", "default": "/var/lib/npms/bundle.json"},
            "dataplane": {"type": "str", "default": "linux", "choices": ["linux", "vpp"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    runner = LocalRunner()

    def factory(name):
        return build(name, p["dataplane"], runner=runner)

    try:
        out = apply_bundle(runner, p["bundle"], previous=p["previous"], check_mode=module.check_mode or p["verify"],
                           state_path=p["state_path"], resource_factory=factory, force=p["verify"] or p["rollback"],
                           rollback=p["rollback"])
    except (BundleError, CommandError) as exc:
        module.fail_json(msg=str(exc))
    diff = [{"before_header": name, "after_header": name, "before": r["diff"]["before"], "after": r["diff"]["after"]}
            for name, r in out["resources"].items() if r.get("diff")]
    result = {k: v for k, v in out.items() if k != "error"}
    if module._diff and diff:  # pylint: disable=protected-access
        result["diff"] = diff
    if out["error"]:
        module.fail_json(msg=out["error"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
