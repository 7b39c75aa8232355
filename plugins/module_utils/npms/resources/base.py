# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource engine: one state machine for every dataplane resource.

A resource (SRv6 local SIDs, SR policies, steering, WireGuard, nftables, ...) is a list
of *items*, each a plain dict identified by its key fields.  A :class:`Resource`
subclass says how to validate an item (``normalize``), read the items it owns from the
node (``gather``), turn one change into commands (``render_change``) and carry it out
(``apply_change``).  :func:`run` does the rest, the same way for every resource and
every front end (Ansible module, Nornir task, CLI):

* the state verbs of Ansible's network resource modules: ``merged``, ``replaced``,
  ``overridden``, ``deleted``, ``gathered``, ``rendered`` and ``parsed``;
* check mode (the plan is computed and returned, nothing is applied);
* a diff (``before`` / ``after`` as YAML-ish text, secret fields removed);
* all-or-nothing application: when a change fails, the changes already made are undone
  in reverse order and :class:`ResourceError` says what failed and that it was rolled
  back (a resource whose backend is transactional, such as ``nft -f``, overrides
  :meth:`Resource.apply` instead);
* ``deleted`` and ``overridden`` only ever touch what :meth:`Resource.gather` returns,
  i.e. what the resource owns on the node (routes with the npms protocol number,
  npms tables and interfaces): nothing else on the node is deleted.

Items are compared after ``normalize``, so ``fc00::1`` and ``fc00:0::1`` are the same.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

STATES = ("merged", "replaced", "overridden", "deleted", "gathered", "rendered", "parsed")
CHANGING_STATES = ("merged", "replaced", "overridden", "deleted")
REDACTED = "<redacted>"

ADD, DELETE, MODIFY = "add", "delete", "modify"


class ResourceError(Exception):
    """Bad input or a failed change.  The message names the resource, the item (by its
    key) and the field; ``rolled_back`` says whether partial changes were undone."""

    def __init__(self, message: str, rolled_back: bool = False, commands: Sequence[str] = ()):
        super().__init__(message)
        self.rolled_back = rolled_back
        self.commands = list(commands)


@dataclass(frozen=True)
class Change:
    """One item to add, delete or modify (``before`` / ``after`` are whole items)."""

    op: str
    key: Tuple[Any, ...]
    before: Optional[Dict[str, Any]] = None
    after: Optional[Dict[str, Any]] = None

    def inverse(self) -> "Change":
        if self.op == ADD:
            return Change(DELETE, self.key, before=self.after)
        if self.op == DELETE:
            return Change(ADD, self.key, after=self.before)
        return Change(MODIFY, self.key, before=self.after, after=self.before)


@dataclass
class ResourceResult:
    """What a run did; ``to_dict()`` is what modules and tasks return."""

    resource: str
    state: str
    changed: bool = False
    commands: List[str] = field(default_factory=list)
    before: Optional[List[Dict[str, Any]]] = None
    after: Optional[List[Dict[str, Any]]] = None
    gathered: Optional[List[Dict[str, Any]]] = None
    rendered: Optional[List[str]] = None
    parsed: Optional[List[Dict[str, Any]]] = None
    diff: Optional[Dict[str, str]] = None
    facts: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"changed": self.changed}
        if self.state in CHANGING_STATES:
            out["commands"] = list(self.commands)
            out["before"] = self.before
            if self.changed:
                out["after"] = self.after
        for name in ("gathered", "rendered", "parsed"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.facts:
            out["facts"] = self.facts
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def item_key(item: Mapping[str, Any], fields: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(_hashable(item.get(f)) for f in fields)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _drop_none(item: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


class Resource:
    """Base class of every resource.  Subclasses set ``name`` and ``key_fields`` and
    implement ``normalize``, ``gather``, ``render_change`` and ``apply_change``."""

    #: resource name as the modules and tasks know it (``srv6_localsid``)
    name = "resource"
    #: fields that identify an item
    key_fields: Tuple[str, ...] = ("name",)
    #: fields never returned, diffed or logged (their values are also scrubbed from messages)
    secret_fields: Tuple[str, ...] = ()
    #: fields that ``merged`` merges element-wise by the given key instead of replacing
    #: (``{"peers": ("public_key",)}``)
    merge_lists: Dict[str, Tuple[str, ...]] = {}
    #: fields only ``gather`` sets, to say what is wrong on the node (``incomplete``,
    #: ``drift``); a wanted item never has them, so an item that carries one differs
    #: and the next merged / replaced / overridden run repairs it
    report_fields: Tuple[str, ...] = ()

    def __init__(self, driver: Any = None):
        self.driver = driver

    # --- to implement -----------------------------------------------------------------
    def normalize(self, item: Mapping[str, Any], where: str) -> Dict[str, Any]:
        """The canonical form of a user item.  Raise ResourceError naming ``where``
        (e.g. ``srv6_localsid config[2]``) and the field for anything invalid.
        Optional fields the user left out are absent (or None) in the result."""
        raise NotImplementedError

    def defaults(self, item: Dict[str, Any]) -> Dict[str, Any]:
        """``item`` completed with the values the node would have for what was left
        out, so that a replaced / overridden item compares equal to what gather reads
        back.  Default: unchanged."""
        return item

    def gather(self) -> List[Dict[str, Any]]:
        """The items this resource owns on the node, normalized (and with defaults)."""
        raise NotImplementedError

    def render_change(self, change: Change) -> List[str]:
        """Human-readable commands for one change (what ``commands`` and ``rendered``
        show; for command-line drivers, exactly what ``apply_change`` runs)."""
        raise NotImplementedError

    def apply_change(self, change: Change) -> None:
        raise NotImplementedError

    def parse(self, text: str) -> List[Dict[str, Any]]:
        """Items from ``running_config`` text (state ``parsed``)."""
        raise ResourceError(f"{self.name}: state parsed is not supported")

    def check_items(self, items: List[Dict[str, Any]]) -> None:
        """Checks across items (after each was normalized); raise ResourceError."""

    def facts(self, have: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Extra facts to return after a run (e.g. WireGuard public keys)."""
        return {}

    def diff_text(self, items: Iterable[Mapping[str, Any]]) -> str:
        """``--diff`` text of (redacted) items; a resource whose node speaks a
        configuration language (FRR) shows that instead of JSON."""
        return to_text(items)

    # --- may override -------------------------------------------------------------------
    def apply(self, changes: Sequence[Change]) -> None:
        """Carry out ``changes`` all-or-nothing: on a failure, undo the ones made."""
        done: List[Change] = []
        for change in changes:
            try:
                self.apply_change(change)
            except Exception as exc:  # noqa: BLE001 -- any failure must trigger the undo
                undo_errors = []
                for made in reversed(done):
                    try:
                        self.apply_change(made.inverse())
                    except Exception as undo_exc:  # noqa: BLE001
                        undo_errors.append(f"{self.describe(made.key)}: {self.scrub(str(undo_exc))}")
                what = f"{self.name}: {change.op} {self.describe(change.key)} failed: {self.scrub(str(exc))}"
                if undo_errors:
                    raise ResourceError(what + "; the rollback also failed for " + "; ".join(undo_errors)) from None
                note = f"; rolled back {len(done)} earlier change(s)" if done else "; nothing else had been changed"
                raise ResourceError(what + note, rolled_back=True) from None
            done.append(change)

    def order(self, changes: List[Change]) -> List[Change]:
        """The order to apply changes in; default: deletes, then modifies, then adds."""
        rank = {DELETE: 0, MODIFY: 1, ADD: 2}
        return sorted(changes, key=lambda c: rank[c.op])

    def merge_item(self, have: Dict[str, Any], want: Dict[str, Any]) -> Dict[str, Any]:
        """``merged``: ``want``'s fields over ``have``'s; lists named in ``merge_lists``
        merged element-wise by their key."""
        out = copy.deepcopy(have)
        for name, value in want.items():
            if value is None:
                continue
            if name in self.merge_lists and isinstance(value, list) and isinstance(out.get(name), list):
                fields = self.merge_lists[name]
                merged = {item_key(e, fields): e for e in out[name]}
                for element in value:
                    k = item_key(element, fields)
                    merged[k] = {**merged.get(k, {}), **_drop_none(element)}
                out[name] = [merged[k] for k in sorted(merged, key=repr)]
            else:
                out[name] = copy.deepcopy(value)
        return out

    def describe(self, key: Tuple[Any, ...]) -> str:
        return ", ".join(f"{f}={v}" for f, v in zip(self.key_fields, key))

    def redact(self, item: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
        if item is None:
            return None
        out = {}
        for k, v in item.items():
            if k in self.secret_fields:
                continue
            if isinstance(v, list):
                v = [self.redact(e) if isinstance(e, Mapping) else e for e in v]
            elif isinstance(v, Mapping):
                v = self.redact(v)
            out[k] = v
        return out

    def scrub(self, text: str) -> str:
        """Hook for resources that know secret values (none by default)."""
        return text


# --- the engine ------------------------------------------------------------------------
def normalize_all(resource: Resource, config: Optional[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    if config is None:
        return []
    if not isinstance(config, (list, tuple)):
        raise ResourceError(f"{resource.name}: config must be a list of items, got {type(config).__name__}")
    items: List[Dict[str, Any]] = []
    seen: Dict[Tuple[Any, ...], int] = {}
    for index, raw in enumerate(config):
        where = f"{resource.name} config[{index}]"
        if not isinstance(raw, Mapping):
            raise ResourceError(f"{where}: must be a mapping, got {type(raw).__name__}")
        item = resource.normalize(raw, where)
        key = item_key(item, resource.key_fields)
        if key in seen:
            raise ResourceError(f"{where}: {resource.describe(key)} is already given by config[{seen[key]}]")
        seen[key] = index
        items.append(item)
    resource.check_items(items)
    return items


def plan(resource: Resource, want: List[Dict[str, Any]], have: List[Dict[str, Any]], state: str) -> Tuple[List[Change], List[Dict[str, Any]]]:
    """The changes that take ``have`` to what ``state`` asks for, and the resulting items."""
    fields = resource.key_fields
    have_by = {item_key(h, fields): h for h in have}
    want_by = {item_key(w, fields): w for w in want}
    result = dict(have_by)
    changes: List[Change] = []

    def put(key, target):
        old = have_by.get(key)
        if old is None:
            changes.append(Change(ADD, key, after=target))
        elif old != target:
            changes.append(Change(MODIFY, key, before=old, after=target))
        result[key] = target

    def target(item):
        item = resource.defaults(item)
        return {k: v for k, v in item.items() if k not in resource.report_fields}

    if state == "merged":
        for key, w in want_by.items():
            base = have_by.get(key)
            put(key, target(resource.merge_item(base, w) if base is not None else _drop_none(w)))
    elif state in ("replaced", "overridden"):
        for key, w in want_by.items():
            put(key, target(_drop_none(w)))
        if state == "overridden":
            for key, h in have_by.items():
                if key not in want_by:
                    changes.append(Change(DELETE, key, before=h))
                    del result[key]
    elif state == "deleted":
        targets = want_by.keys() if want else list(have_by.keys())
        for key in targets:
            if key in have_by:
                changes.append(Change(DELETE, key, before=have_by[key]))
                del result[key]
    else:
        raise ResourceError(f"{resource.name}: state {state!r} changes nothing; use one of {', '.join(CHANGING_STATES)}")
    after = [result[k] for k in sorted(result, key=repr)]
    return resource.order(changes), after


def predict(resource: Resource, have: Sequence[Mapping[str, Any]], changes: Sequence[Change]) -> List[Dict[str, Any]]:
    """The items the node will hold once ``changes`` are applied to ``have`` (sorted by key)."""
    final = {item_key(h, resource.key_fields): dict(h) for h in have}
    for change in changes:
        if change.op == DELETE:
            final.pop(change.key, None)
        else:
            final[change.key] = dict(change.after or {})
    return [final[k] for k in sorted(final, key=repr)]


def to_text(items: Optional[Iterable[Mapping[str, Any]]]) -> str:
    """Stable text for diffs: one JSON object per item, sorted."""
    if not items:
        return ""
    lines = sorted(json.dumps(i, sort_keys=True) for i in items)
    return "\n".join(lines) + "\n"


def run(
    resource: Resource,
    config: Optional[Sequence[Mapping[str, Any]]],
    state: str = "merged",
    check_mode: bool = False,
    running_config: Optional[str] = None,
) -> ResourceResult:
    """Do what ``state`` asks with ``config`` on the node behind ``resource.driver``."""
    if state not in STATES:
        raise ResourceError(f"{resource.name}: unknown state {state!r}; use one of {', '.join(STATES)}")
    result = ResourceResult(resource=resource.name, state=state)
    if state == "parsed":
        if running_config is None:
            raise ResourceError(f"{resource.name}: state parsed needs running_config")
        result.parsed = [resource.redact(i) for i in resource.parse(running_config)]
        return result
    # Validate everything before the node is touched.
    want = normalize_all(resource, config)
    if state == "rendered":
        if not want:
            raise ResourceError(f"{resource.name}: state rendered needs config")
        commands: List[str] = []
        for item in want:
            commands += resource.render_change(Change(ADD, item_key(item, resource.key_fields), after=resource.defaults(_drop_none(item))))
        result.rendered = commands
        return result
    have = resource.gather()
    if state == "gathered":
        result.gathered = [resource.redact(h) for h in have]
        result.facts = resource.facts(have)
        return result
    if state in ("merged", "replaced") and not want:
        raise ResourceError(f"{resource.name}: state {state} needs config")
    changes, predicted = plan(resource, want, have, state)
    result.before = [resource.redact(h) for h in have]
    for change in changes:
        result.commands += resource.render_change(change)
    result.changed = bool(changes)
    if changes:
        result.diff = {"before": resource.diff_text(result.before),
                       "after": resource.diff_text([resource.redact(i) for i in predicted])}
    if changes and not check_mode:
        resource.apply(changes)
        after = resource.gather()
        result.after = [resource.redact(a) for a in after]
        result.facts = resource.facts(after)
        # What the node reads back must be what was asked for: else the resource's
        # normalize/defaults disagree with the node and every run would report a change.
        unmet = plan(resource, want, after, state)[0]
        if unmet:
            result.warnings.append(
                f"{resource.name}: after applying, the node still differs for "
                + "; ".join(f"{c.op} {resource.describe(c.key)}" for c in unmet)
            )
    else:
        result.after = [resource.redact(i) for i in predicted]
        result.facts = resource.facts(have)
    return result


def validate_choice(value: Any, choices: Sequence[Any], where: str, field_name: str) -> Any:
    if value not in choices:
        raise ResourceError(f"{where}: {field_name}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def require(item: Mapping[str, Any], field_name: str, where: str) -> Any:
    value = item.get(field_name)
    if value is None or value == "":
        raise ResourceError(f"{where}: {field_name} is required")
    return value


def unknown_fields(item: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(item) - set(allowed))
    if extra:
        raise ResourceError(f"{where}: unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(allowed))}")


Factory = Callable[..., Resource]
