# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every galactic.npms resource module does: argspec in, one engine run, results out.

A module is its DOCUMENTATION, its ``config`` suboptions and a call to :func:`main`;
the work is in ``npms.resources`` (the same code the Nornir tasks and the CLI run).
"""

from __future__ import annotations

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources import base
from ansible_collections.galactic.npms.plugins.module_utils.npms.resources.registry import DEFAULT_VPP_SOCKET, build
from ansible_collections.galactic.npms.plugins.module_utils.npms.runner import CommandError

STATE_OPTIONS = {
    "state": {"type": "str", "default": "merged", "choices": list(base.STATES)},
    "running_config": {"type": "str"},
}
DATAPLANE_OPTIONS = {
    "dataplane": {"type": "str", "default": "linux", "choices": ["linux", "vpp"]},
    "vpp_api_socket": {"type": "path", "default": DEFAULT_VPP_SOCKET},
    "vpp_api_dir": {"type": "path"},
}


def argument_spec(config_options, dataplane=True, extra=None):
    spec = {"config": {"type": "list", "elements": "dict", "options": copy.deepcopy(config_options)}}
    spec.update(copy.deepcopy(STATE_OPTIONS))
    if dataplane:
        spec.update(copy.deepcopy(DATAPLANE_OPTIONS))
    spec.update(extra or {})
    return spec


def _clean(items):
    """Module params fill every unset suboption with None: drop them so the engine sees
    what the user wrote."""
    if isinstance(items, list):
        return [_clean(i) for i in items]
    if isinstance(items, dict):
        return {k: _clean(v) for k, v in items.items() if v is not None}
    return items


def main(resource_name, config_options, dataplane=True, extra=None, required_if=None, build_options=None):
    """``build_options`` maps module options to the resource's own constructor options
    (a callable of the params, or an option name)."""
    module = AnsibleModule(
        argument_spec=argument_spec(config_options, dataplane, extra),
        required_if=[("state", "parsed", ("running_config",)), ("state", "rendered", ("config",))] + list(required_if or []),
        supports_check_mode=True,
    )
    params = module.params
    try:
        resource = build(
            resource_name,
            dataplane=params.get("dataplane") or "linux",
            vpp_socket=params.get("vpp_api_socket") or DEFAULT_VPP_SOCKET,
            vpp_api_dir=params.get("vpp_api_dir"),
            **{name: (source(params) if callable(source) else params.get(source))
               for name, source in (build_options or {}).items()}
        )
        result = base.run(resource, _clean(params["config"]), params["state"], module.check_mode, params.get("running_config"))
    except base.ResourceError as exc:
        module.fail_json(msg=str(exc), rolled_back=exc.rolled_back)
    except CommandError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc)
    except (ImportError, OSError, ConnectionError) as exc:
        module.fail_json(msg=f"{resource_name}: {exc}")
    out = result.to_dict()
    for warning in out.pop("warnings", []):
        module.warn(warning)
    if module._diff and result.diff:  # pylint: disable=protected-access
        out["diff"] = result.diff
    module.exit_json(**out)
