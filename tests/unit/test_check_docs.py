# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/check_docs.py's Markdown link check (``make docs``): a relative link must name
an existing file, and an anchor a heading of that page, with GitHub's heading ids."""

import importlib.util
import os

import pytest

from npms_testlib import ROOT

_spec = importlib.util.spec_from_file_location("check_docs", os.path.join(ROOT, "scripts", "check_docs.py"))
check_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_docs)


@pytest.mark.parametrize("heading, want", [
    ("# The path engine: how paths are chosen", "the-path-engine-how-paths-are-chosen"),
    ("### Long-running callers: `FastEngine.update`", "long-running-callers-fastengineupdate"),
    ("## Ties", "ties"),
    ("## npms_pce", "npms_pce"),
])
def test_heading_ids_are_githubs(heading, want):
    assert want in check_docs.heading_ids(heading + "\n")


def test_repeated_headings_are_numbered_and_fenced_ones_ignored():
    text = "## Notes\n\n## Notes\n\n```sh\n# not a heading\n```\n"
    assert check_docs.heading_ids(text) == {"notes", "notes-1"}


def test_links_that_lead_nowhere_are_reported(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    page = docs / "page.md"
    page.write_text(
        "# Page\n\n## Here\n\n"
        "[ok](other.md) [ok anchor](other.md#a-section) [same page](#here) [web](https://example.com/x)\n"
        "[missing file](gone.md) [missing anchor](other.md#nowhere) [bad self](#there)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a fence](nowhere.md)\n```\n",
        encoding="utf-8")
    got = check_docs.markdown_link_problems([str(page)])
    assert sorted((link, why) for _page, link, why in got) == [
        ("#there", "no heading with this id"),
        ("gone.md", "no such file"),
        ("other.md#nowhere", "no heading with this id"),
    ]
