# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options and behaviour shared by the galactic.npms dataplane resource modules."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """Documentation fragments: resource states, and the dataplane choice."""

    DOCUMENTATION = r"""
options:
  state:
    description:
      - C(merged) adds the items of O(config) and changes the fields they give; other items
        and fields are left alone.
      - C(replaced) makes each item of O(config) exactly as given (fields left out take
        their defaults); other items are left alone.
      - C(overridden) makes the resource exactly O(config); items that galactic.npms
        manages on the node and O(config) does not list are deleted.
      - C(deleted) deletes the items of O(config) (only their keys are needed), or every
        item galactic.npms manages on the node when O(config) is empty. Nothing that
        galactic.npms did not create is ever deleted.
      - C(gathered) returns the items on the node in RV(gathered), changing nothing.
      - C(rendered) returns the commands that would create O(config) in RV(rendered),
        without touching the node.
      - C(parsed) reads O(running_config) and returns its items in RV(parsed).
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description:
      - Text to read for O(state=parsed); the output of the commands C(gathered) uses.
    type: str
notes:
  - All changes of one task apply all-or-nothing. When one fails, those already made are
    undone and the task fails with C(rolled_back=true) and the item and error named.
  - Every item of O(config) is checked before the node is touched; a bad one fails the
    task naming the item and the field.
  - Supports check mode (the plan is returned in RV(commands), nothing changes) and diff
    mode (before and after, one JSON object per item).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

    DATAPLANE = r"""
options:
  dataplane:
    description:
      - The dataplane of the node. C(linux) uses iproute2, wg and nft on the target;
        C(vpp) talks to VPP's binary API (vpp_papi) on the target.
    type: str
    choices: [linux, vpp]
    default: linux
  vpp_api_socket:
    description:
      - VPP's API socket, for O(dataplane=vpp).
    type: path
    default: /run/vpp/api.sock
  vpp_api_dir:
    description:
      - Directory of VPP's API JSON files (C(share/vpp/api)), for O(dataplane=vpp). When not
        set the definitions are loaded from the running VPP.
    type: path
requirements:
  - For O(dataplane=vpp), the Python package C(vpp_papi) on the target.
"""
