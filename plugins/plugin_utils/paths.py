# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one controller-side implementation behind the ``galactic.npms.paths`` lookup and filter.

Inventory (path, merged dict or loaded ``Inventory``) + measurements (list of window
aggregates or a JSON/YAML file) + options in, the path engine's result list out.  The
lookup and the filter only translate options and errors; the core library does the work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.galactic.npms.plugins.module_utils.npms.inventory import (
    InventoryError,
    inventory_from_data,
    load_inventory,
)
from ansible_collections.galactic.npms.plugins.module_utils.npms.measurements import (
    MeasurementError,
    parse_measurements,
)
from ansible_collections.galactic.npms.plugins.module_utils.npms.model import Inventory

ENGINES = ("fast", "reference")


class PathsError(ValueError):
    """Bad input for the path engine; the message names the file, object and field."""


def plain(value):
    """A copy of ``value`` made of plain dict / list / str / int / float / bool / None.

    Values coming from templating (ansible-core 2.19 data tagging) are subclasses of the
    builtin types; the core library gets the builtins.
    """
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def resolve_path(path, basedirs=()):
    """An absolute path: as given when absolute; else the first of ``basedirs`` (then the
    current directory) under which it exists; else relative to the current directory."""
    path = os.path.expanduser(to_text(path))
    if os.path.isabs(path):
        return path
    for base in list(basedirs) + [os.getcwd()]:
        if base:
            candidate = os.path.join(to_text(base), path)
            if os.path.exists(candidate):
                return os.path.normpath(candidate)
    return os.path.abspath(path)


def name_list(value, what):
    """None, a name, a comma separated string of names or a list of names -> list or None."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise PathsError("%s: expected a name or a list of names, got %r" % (what, value))
    return [str(v) for v in value]


def _read_data_file(path):
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise PathsError("%s: cannot read: %s" % (path, exc.strerror or exc)) from exc
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PathsError("%s: not valid JSON: %s" % (path, exc)) from exc
    import yaml  # pylint: disable=import-outside-toplevel  # JSON is YAML too

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PathsError("%s: not valid YAML: %s" % (path, exc)) from exc


def get_inventory(inventory, basedirs=()):
    """Load / validate the inventory; PathsError with every problem when it is bad."""
    try:
        if isinstance(inventory, Inventory):
            return inventory
        if isinstance(inventory, Mapping):
            return inventory_from_data(plain(inventory), "inventory (data)")
        if isinstance(inventory, str) and inventory:
            return load_inventory(resolve_path(inventory, basedirs))
    except InventoryError as exc:
        raise PathsError("invalid inventory:\n%s" % exc) from exc
    raise PathsError("inventory: expected an inventory directory or file path, or a mapping, got %r" % (inventory,))


def get_measurements(measurements, basedirs=()):
    """Window aggregates from a list (or ``{measurements: [...]}``) or a JSON/YAML file."""
    if measurements is None or measurements == "" or measurements == []:
        return []
    source = "measurements"
    if isinstance(measurements, str):
        source = resolve_path(measurements, basedirs)
        measurements = _read_data_file(source)
    else:
        measurements = plain(measurements)
    try:
        return parse_measurements(measurements, source=source)
    except MeasurementError as exc:
        raise PathsError("invalid measurements:\n%s" % exc) from exc


def get_current(current, basedirs=()):
    """The previous result (list of result dicts, as returned before) or a file holding it."""
    if current is None or current == "" or current == []:
        return None
    if isinstance(current, str):
        current = _read_data_file(resolve_path(current, basedirs))
    return plain(current)  # its shape is checked by pce.normalise_current


def compute(inventory, measurements=None, tenants=None, traffic_classes=None, current=None,
            engine="fast", basedirs=()):
    """Compute every selected path; returns the engine's result dicts (``PathSet.to_list()``).

    ``basedirs``: directories against which relative file paths are tried first (the
    playbook directory for the lookup); then the current directory.
    """
    from ansible_collections.galactic.npms.plugins.module_utils.npms.pce import (  # pylint: disable=import-outside-toplevel
        compute_paths,  # numpy / networkx load only when paths are computed
    )

    if engine not in ENGINES:
        raise PathsError("engine: expected one of %s, got %r" % (", ".join(ENGINES), engine))
    inv = get_inventory(inventory, basedirs)
    parsed = get_measurements(measurements, basedirs)
    prev = get_current(current, basedirs)
    tenant_names = name_list(plain(tenants), "tenant")
    class_names = name_list(plain(traffic_classes), "traffic_class")
    try:
        result = compute_paths(inv, measurements=parsed, current=prev, tenants=tenant_names,
                               traffic_classes=class_names, engine=engine)
    except MeasurementError as exc:
        raise PathsError("invalid measurements:\n%s" % exc) from exc
    except (KeyError, ValueError, RuntimeError) as exc:
        raise PathsError(to_text(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)) from exc
    return result.to_list()
