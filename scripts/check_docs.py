# -*- coding: utf-8 -*-
# Copyright (c) galactic.npms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check that ``ansible-doc`` shows the documentation of every galactic.npms plugin and role,
and that the Markdown pages' relative links lead somewhere.

Run from the repository root after ``scripts/link-collection`` (``make docs``).  For each
plugin type it compares the plugin files with what ``ansible-doc --list`` finds, then
renders every plugin's documentation with ``ansible-doc --json``; roles with
``meta/argument_specs.yml`` are rendered with ``ansible-doc -t role``.  Every relative
link in README.md, CHANGELOG.md, docs/ and roles' READMEs must name an existing file, and
an anchor must name a heading of that page (GitHub's heading ids).  Exit 1 on any gap.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

COLLECTION = "galactic.npms"
# plugins/<dir> -> ansible-doc type; plugin_utils, module_utils, doc_fragments, action
# (documented by its module) and nornir have no documentation of their own.
TYPES = {
    "modules": "module",
    "lookup": "lookup",
    "filter": "filter",
    "test": "test",
    "inventory": "inventory",
    "connection": "connection",
    "callback": "callback",
    "become": "become",
    "cache": "cache",
    "cliconf": "cliconf",
    "httpapi": "httpapi",
    "netconf": "netconf",
    "shell": "shell",
    "strategy": "strategy",
    "vars": "vars",
}


def ansible_doc(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def expected_names(directory, doc_type):
    """Plugin names the files promise (filter/test: their YAML documentation files)."""
    names = set()
    for entry in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(entry)
        if stem.startswith("_") or stem.startswith("."):
            continue
        if doc_type in ("filter", "test"):
            if ext in (".yml", ".yaml"):
                names.add(stem)
        elif ext == ".py" or (doc_type == "module" and ext == ".ps1"):
            names.add(stem)
    return names


_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def heading_ids(text):
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated id numbered (-1, -2, ...)."""
    ids, seen = set(), {}
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else "%s-%d" % (slug, n))
    return ids


def markdown_link_problems(paths):
    """``[(page, link, why)]`` for relative links (outside code) that lead nowhere."""
    problems = []
    texts = {}

    def text_of(path):
        if path not in texts:
            with open(path, encoding="utf-8") as fh:
                texts[path] = fh.read()
        return texts[path]
    for page in paths:
        in_fence = False
        for line in text_of(page).splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path, _sep, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
                if not os.path.exists(dest):
                    problems.append((page, target, "no such file"))
                elif anchor and dest.endswith(".md") and anchor not in heading_ids(text_of(dest)):
                    problems.append((page, target, "no heading with this id"))
    return problems


def markdown_pages():
    pages = [p for p in ("README.md", "CHANGELOG.md") if os.path.isfile(p)]
    return pages + sorted(glob.glob("docs/*.md")) + sorted(glob.glob("roles/*/README.md"))


def main():
    failures = []
    checked = 0
    pages = markdown_pages()
    for page, target, why in markdown_link_problems(pages):
        failures.append("%s: link %s: %s" % (page, target, why))
    for directory, doc_type in sorted(TYPES.items()):
        path = os.path.join("plugins", directory)
        if not os.path.isdir(path):
            continue
        want = expected_names(path, doc_type)
        rc, out, err = ansible_doc("-t", doc_type, "--list", "--json", COLLECTION)
        if rc != 0:
            failures.append("%s: ansible-doc --list failed (rc %d): %s" % (doc_type, rc, err.strip()))
            continue
        listed = {name.split(".")[-1] for name in json.loads(out or "{}")}
        for name in sorted(want - listed):
            failures.append("%s %s.%s: not listed by ansible-doc --list" % (doc_type, COLLECTION, name))
        for name in sorted(listed - want):
            if doc_type in ("filter", "test"):
                failures.append("%s %s.%s: no documentation file plugins/%s/%s.yml" % (doc_type, COLLECTION, name, directory, name))
        names = sorted(listed | want)
        if not names:
            continue
        fqcns = ["%s.%s" % (COLLECTION, n) for n in names]
        rc, out, err = ansible_doc("-t", doc_type, "--json", *fqcns)
        docs = json.loads(out) if rc == 0 and out.strip() else {}
        for fqcn in fqcns:
            entry = docs.get(fqcn) or {}
            if not entry.get("doc"):
                failures.append("%s %s: ansible-doc shows no documentation (rc %d) %s" % (doc_type, fqcn, rc, err.strip()))
            elif doc_type != "module" and "examples" not in entry:
                failures.append("%s %s: no EXAMPLES" % (doc_type, fqcn))
            else:
                checked += 1
    if os.path.isdir("roles"):
        for role in sorted(os.listdir("roles")):
            if not os.path.isfile(os.path.join("roles", role, "meta", "argument_specs.yml")):
                failures.append("role %s: no meta/argument_specs.yml" % role)
                continue
            rc, out, err = ansible_doc("-t", "role", "--json", "%s.%s" % (COLLECTION, role))
            if rc != 0 or not out.strip():
                failures.append("role %s.%s: ansible-doc failed (rc %d): %s" % (COLLECTION, role, rc, err.strip()))
            else:
                checked += 1
    for line in failures:
        print("check-docs: " + line, file=sys.stderr)
    print("check-docs: %d plugin/role documentation pages OK, links of %d Markdown pages checked, %d problem(s)"
          % (checked, len(pages), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
