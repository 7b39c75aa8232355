# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``npms`` command line: version, validate, paths."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from npms import __version__, cli
from npms.inventory import load_inventory
from npms.pce import compute_paths

from npms_testlib import LAB, VENV_BIN, run, write_tiny_inventory


def npms(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _err = npms(capsys, "version")
    assert code == 0
    assert out == "npms %s\n" % __version__


def test_every_command_has_help(capsys):
    for name, _help, _spec in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: npms %s" % name in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_validate_lab(capsys):
    inv = load_inventory(LAB)
    code, out, err = npms(capsys, "validate", LAB)
    assert (code, err) == (0, "")
    assert out == "OK: %d nodes, %d links, %d tenants\n" % (len(inv.nodes), len(inv.links), len(inv.tenants))


def test_validate_tiny_inventory(capsys, tmp_path):
    code, out, err = npms(capsys, "validate", write_tiny_inventory(tmp_path))
    assert (code, err) == (0, "")
    assert out == "OK: 6 nodes, 5 links, 1 tenants\n"


def test_validate_broken_names_file_and_field(capsys, tmp_path):
    path = write_tiny_inventory(tmp_path, voice_sla="platinum")
    code, out, err = npms(capsys, "validate", path)
    assert code == 2
    assert out == ""
    assert "invalid inventory" in err
    problem = [line for line in err.splitlines() if "platinum" in line]
    assert problem, err
    assert os.path.join("group_vars", "all.yml") in problem[0]  # the file
    assert "shop" in problem[0]  # the object
    assert "sla" in problem[0]  # the field


def test_validate_missing_inventory(capsys, tmp_path):
    code, out, err = npms(capsys, "validate", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert "nowhere" in err


def test_console_script_validate():
    """The installed `npms` command (pip install -e .) works from a subprocess."""
    proc = run([os.path.join(VENV_BIN, "npms"), "validate", "inventory/lab"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: ")


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_paths_json_is_compute_paths(capsys, engine):
    code, out, err = npms(capsys, "paths", LAB, "--format", "json", "--engine", engine)
    assert (code, err) == (0, "")
    assert json.loads(out) == compute_paths(load_inventory(LAB), engine=engine).to_list()


def test_paths_yaml_filters_tenant_and_class(capsys):
    inv = load_inventory(LAB)
    tenant = sorted(inv.tenants)[0]
    tclass = inv.tenants[tenant].traffic_classes[0].name
    code, out, _err = npms(capsys, "paths", LAB, "-f", "yaml", "--tenant", tenant, "--class", tclass)
    assert code == 0
    rows = yaml.safe_load(out)
    assert rows == compute_paths(inv, tenants=[tenant], traffic_classes=[tclass]).to_list()
    assert rows and {(r["tenant"], r["traffic_class"]) for r in rows} == {(tenant, tclass)}


def test_paths_table(capsys):
    code, out, _err = npms(capsys, "paths", LAB)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["TENANT", "CLASS", "SRC", "DST", "VERDICT"]
    rows = compute_paths(load_inventory(LAB)).to_list()
    assert len(lines) == 2 + len(rows) + 2  # header, rule, rows, blank, summary
    assert lines[-1].startswith("%d paths: " % len(rows))
    first = rows[0]
    assert lines[2].split()[:5] == [first["tenant"], first["traffic_class"], first["src"], first["dst"], first["verdict"]]


def test_paths_verbose_shows_reason(capsys):
    code, out, _err = npms(capsys, "paths", LAB, "--verbose")
    assert code == 0
    assert "    reason: " in out and "    sids:   " in out


def test_paths_measurements_file(capsys, tmp_path):
    """A measurement that makes one core link terrible moves paths off it."""
    inv = load_inventory(LAB)
    core = [lk for lk in inv.links if lk.kind == "core"][0]
    window = [{"src": core.a, "dst": core.b, "latency_ms": 400.0, "loss_pct": 20.0},
              {"src": core.b, "dst": core.a, "latency_ms": 400.0, "loss_pct": 20.0}]
    mfile = tmp_path / "window.json"
    mfile.write_text(json.dumps({"measurements": window}))
    code, out, err = npms(capsys, "paths", LAB, "-m", str(mfile), "-f", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == compute_paths(inv, measurements=window).to_list()


def test_paths_bad_measurements(capsys, tmp_path):
    mfile = tmp_path / "bad.yml"
    mfile.write_text("- {src: a, dst: b, latency_ms: fast}\n")
    code, out, err = npms(capsys, "paths", LAB, "--measurements", str(mfile))
    assert code == 2 and out == ""
    assert "bad.yml" in err and "latency_ms" in err


def test_paths_unknown_tenant(capsys):
    code, _out, err = npms(capsys, "paths", LAB, "--tenant", "nobody")
    assert code == 2
    assert "nobody" in err


def test_paths_broken_inventory(capsys, tmp_path):
    code, out, err = npms(capsys, "paths", write_tiny_inventory(tmp_path, voice_sla="platinum"))
    assert code == 2 and out == ""
    assert "platinum" in err


def test_paths_current_roundtrip(capsys, tmp_path):
    """The JSON output fed back as --current (hysteresis) is accepted."""
    code, out, _err = npms(capsys, "paths", LAB, "-f", "json")
    assert code == 0
    cur = tmp_path / "current.json"
    cur.write_text(out)
    code, out2, err = npms(capsys, "paths", LAB, "-f", "json", "--current", str(cur))
    assert (code, err) == (0, "")
    assert json.loads(out2) == json.loads(out)
