# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``npms`` command line.

Subcommands come from the ``COMMANDS`` table below: each row names a setup function
(``"relative.module:function"``, relative to this package) that receives its argparse
sub-parser, adds its arguments and returns the function that runs it
(``run(args) -> exit code``).  Later parts (``lab``, ``loop``, ...) add one row each and
keep their code in their own module.

Only the standard library is imported at module level: the inventory, the path engine,
PyYAML, networkx and numpy are imported when a command runs, so this module imports
anywhere (including ansible-test's import sanity test).

Exit codes: 0 success, 1 failure while running, 2 bad input (usage, inventory,
measurements).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

PROG = "npms"

# (name, one-line help, "module:setup_function"); module is relative to this package.
COMMANDS = (
    ("version", "print the version", ".cli:setup_version"),
    ("validate", "validate an inventory (nothing touches a node)", ".cli:setup_validate"),
    ("paths", "compute paths for every tenant, class and edge pair", ".cli:setup_paths"),
    ("lab", "the inventory's network in network namespaces: up, down, status, impair, restore", ".lab_cli:setup_lab"),
    ("containerlab", "write the lab as a containerlab topology (for Docker hosts)", "npms_lab.containerlab:setup_containerlab"),
    ("probe", "active probes: responder, run (samples as JSON), targets (who probes whom)", ".probe:setup_probe"),
    ("api", "the controller's HTTP API: node tokens, serve", ".api:setup_api"),
    ("nats", "probe samples over NATS (optional): serve into the store, push a batch", ".nats_ingest:setup_nats"),
    ("agent", "pull-mode sidecar: poll the API for this node's bundle and apply it", ".agent:setup_agent"),
    ("loop", "the control loop (Nornir): probe, ingest, compute, render, deploy, verify, report", ".loop:setup_loop"),
)


class CliError(Exception):
    """An error the user can fix: printed as lines on stderr, exit code ``code``."""

    def __init__(self, lines, code=EXIT_INVALID):
        if isinstance(lines, str):
            lines = [lines]
        self.lines = [str(line) for line in lines]
        self.code = code
        super().__init__("\n".join(self.lines))


def _write(text: str = "", stream=None) -> None:
    """One line to stdout (or ``stream``); the CLI's only way of printing."""
    (stream or sys.stdout).write(text + "\n")


def _resolve(spec: str) -> Callable:
    module_name, attr = spec.split(":", 1)
    if module_name.startswith("."):
        module = importlib.import_module(module_name, __package__)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="galactic.npms: SLA-aware multi-tenant SRv6/WireGuard backbone.",
    )
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, __version__))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text, spec in COMMANDS:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        run = _resolve(spec)(sp)
        sp.set_defaults(_run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        for line in exc.lines:
            _write(line, sys.stderr)
        return exc.code
    except BrokenPipeError:
        # `npms paths ... | head`: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- helpers


def load_inventory(path: str):
    """Load and validate an inventory; CliError with every problem when it is bad."""
    from .inventory import InventoryError, load_inventory as _load

    try:
        return _load(path)
    except InventoryError as exc:
        problems = list(getattr(exc, "problems", None) or str(exc).splitlines())
        raise CliError(["%s: invalid inventory (%d problem%s):" % (path, len(problems), "" if len(problems) == 1 else "s")]
                       + ["  %s" % p for p in problems])
    except OSError as exc:
        raise CliError("%s: cannot read inventory: %s" % (path, exc.strerror or exc))


def read_data_file(path: str) -> Any:
    """Read a JSON or YAML file (by extension; anything else: JSON, then YAML)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise CliError("%s: cannot read: %s" % (path, exc.strerror or exc))
    ext = os.path.splitext(path)[1].lower()
    if ext != ".json":
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML is a dependency
            yaml = None
        if yaml is not None:
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                if ext in (".yml", ".yaml"):
                    raise CliError("%s: not valid YAML: %s" % (path, exc))
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError("%s: not valid JSON: %s" % (path, exc))


def load_measurements(path: Optional[str]) -> List[Any]:
    if not path:
        return []
    from .measurements import MeasurementError, parse_measurements

    data = read_data_file(path)
    try:
        return parse_measurements(data, source=path)
    except MeasurementError as exc:
        problems = list(getattr(exc, "problems", None) or str(exc).splitlines())
        raise CliError(["%s: invalid measurements (%d problem%s):" % (path, len(problems), "" if len(problems) == 1 else "s")]
                       + ["  %s" % p for p in problems])


# --------------------------------------------------------------------------- version


def setup_version(parser: argparse.ArgumentParser) -> Callable:
    return run_version


def run_version(args: argparse.Namespace) -> int:
    _write("%s %s" % (PROG, __version__))
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def setup_validate(parser: argparse.ArgumentParser) -> Callable:
    parser.add_argument("inventory", metavar="INVENTORY", help="inventory directory or file (e.g. inventory/lab)")
    return run_validate


def run_validate(args: argparse.Namespace) -> int:
    inv = load_inventory(args.inventory)
    _write("OK: %d nodes, %d links, %d tenants" % (len(inv.nodes), len(inv.links), len(inv.tenants)))
    return EXIT_OK


# --------------------------------------------------------------------------- paths

FORMATS = ("table", "json", "yaml")
ENGINES = ("fast", "reference")


def setup_paths(parser: argparse.ArgumentParser) -> Callable:
    parser.add_argument("inventory", metavar="INVENTORY", help="inventory directory or file (e.g. inventory/lab)")
    parser.add_argument("--measurements", "-m", metavar="FILE",
                        help="window aggregates per directed node pair (JSON or YAML list, or a mapping "
                             "with a 'measurements' list); without it the inventory's nominal link values are used")
    parser.add_argument("--current", metavar="FILE",
                        help="the previous result (JSON or YAML, as printed by --format json) for hysteresis")
    parser.add_argument("--tenant", "-t", action="append", metavar="T",
                        help="only this tenant (repeatable)")
    parser.add_argument("--class", "-c", dest="traffic_class", action="append", metavar="C",
                        help="only this traffic class (repeatable)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--engine", choices=ENGINES, default="fast",
                        help="fast (default) or reference (networkx); both give the same answer")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="table: also show SID list, backup path and reason under each row")
    return run_paths


def compute(inventory_path: str, measurements_path: Optional[str] = None, current_path: Optional[str] = None,
            tenants: Optional[List[str]] = None, traffic_classes: Optional[List[str]] = None,
            engine: str = "fast") -> List[Dict[str, Any]]:
    """The CLI's path computation: files in, list of result dicts out."""
    inv = load_inventory(inventory_path)
    measurements = load_measurements(measurements_path)
    current = read_data_file(current_path) if current_path else None
    from .pce import compute_paths

    try:
        result = compute_paths(inv, measurements=measurements, current=current,
                               tenants=tenants or None, traffic_classes=traffic_classes or None,
                               engine=engine)
    except (KeyError, ValueError) as exc:
        # unknown tenant / class names and similar input problems
        raise CliError("paths: %s" % (exc.args[0] if isinstance(exc, KeyError) and exc.args else exc))
    return result.to_list()


def run_paths(args: argparse.Namespace) -> int:
    rows = compute(args.inventory, args.measurements, args.current, args.tenant, args.traffic_class, args.engine)
    if args.format == "json":
        _write(json.dumps(rows, indent=2, sort_keys=True))
    elif args.format == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(rows, sort_keys=False, default_flow_style=None, width=120))
    else:
        sys.stdout.write(format_table(rows, verbose=args.verbose))
    return EXIT_OK


def _num(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt % value
    except (TypeError, ValueError):
        return str(value)


def _path_text(path: Any) -> str:
    if not path:
        return "-"
    return " > ".join(str(p) for p in path)


TABLE_COLUMNS = (
    # header, right-aligned, cell(row)
    ("TENANT", False, lambda r: str(r.get("tenant", ""))),
    ("CLASS", False, lambda r: str(r.get("traffic_class", ""))),
    ("SRC", False, lambda r: str(r.get("src", ""))),
    ("DST", False, lambda r: str(r.get("dst", ""))),
    ("VERDICT", False, lambda r: str(r.get("verdict", ""))),
    ("MODE", False, lambda r: str(r.get("mode") or "-")),
    ("LAT ms", True, lambda r: _num((r.get("metrics") or {}).get("latency_ms"), "%.1f")),
    ("JIT ms", True, lambda r: _num((r.get("metrics") or {}).get("jitter_ms"), "%.1f")),
    ("LOSS %", True, lambda r: _num((r.get("metrics") or {}).get("loss_pct"), "%.2f")),
    ("BW Mb/s", True, lambda r: _num((r.get("metrics") or {}).get("bandwidth_mbps"), "%.0f")),
    ("HOPS", True, lambda r: _num((r.get("metrics") or {}).get("hops"), "%d")),
    ("PATH", False, lambda r: ("direct: " if r.get("direct") else "") + _path_text(r.get("path"))),
)


def format_table(rows: List[Dict[str, Any]], verbose: bool = False) -> str:
    """A plain-text table, one row per (tenant, class, src, dst), and a verdict summary."""
    if not rows:
        return "no paths (no tenant / class / edge pair selected)\n"
    cells = [[col[2](r) for col in TABLE_COLUMNS] for r in rows]
    widths = [max(len(col[0]), *(len(c[i]) for c in cells)) for i, col in enumerate(TABLE_COLUMNS)]

    def line(values):
        out = []
        for i, (value, col) in enumerate(zip(values, TABLE_COLUMNS)):
            last = i == len(TABLE_COLUMNS) - 1
            out.append(value if last else (value.rjust(widths[i]) if col[1] else value.ljust(widths[i])))
        return "  ".join(out).rstrip()

    lines = [line([c[0] for c in TABLE_COLUMNS]), line(["-" * w for w in widths])]
    for row, c in zip(rows, cells):
        lines.append(line(c))
        if verbose:
            indent = " " * 4
            lines.append(indent + "sids:   " + (", ".join(row.get("sid_list") or []) or "-"))
            lines.append(indent + "backup: " + _path_text(row.get("backup_path")))
            lines.append(indent + "reason: " + str(row.get("reason") or "-"))
    counts: Dict[str, int] = {}
    for r in rows:
        counts[str(r.get("verdict"))] = counts.get(str(r.get("verdict")), 0) + 1
    summary = ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts))
    lines.append("")
    lines.append("%d paths: %s" % (len(rows), summary))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
