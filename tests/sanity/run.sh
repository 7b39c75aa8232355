#!/usr/bin/env bash
# ansible-test sanity for galactic.npms.
#
# ansible-test refuses a symlinked collection directory, so this copies the collection
# (the files git would commit: tracked + untracked-but-not-ignored; without git, the
# tree minus .venv, collections, .git and build outputs) to a real
# <tmp>/ansible_collections/galactic/npms and runs sanity there, each test in its own
# virtual environment built by ansible-test (--venv; needs PyPI the first time, then
# cached under ~/.ansible/test/venv).
#
#   tests/sanity/run.sh                      all sanity tests, Python 3.11
#   tests/sanity/run.sh --test pylint        one test (any ansible-test sanity option)
#   NPMS_SANITY_PYTHON=3.12 tests/sanity/run.sh
#   NPMS_SANITY_KEEP=1 tests/sanity/run.sh   keep the copy (path printed)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ansible_test="${ANSIBLE_TEST:-$root/.venv/bin/ansible-test}"
python_version="${NPMS_SANITY_PYTHON:-3.11}"

work="$(mktemp -d "${TMPDIR:-/tmp}/npms-sanity.XXXXXX")"
if [ -z "${NPMS_SANITY_KEEP:-}" ]; then
    trap 'rm -rf "$work"' EXIT
fi
dest="$work/ansible_collections/galactic/npms"
mkdir -p "$dest"

excludes=(--exclude=/.venv --exclude=/collections/ansible_collections --exclude=/.git
          --exclude=/build --exclude=/dist --exclude=/tests/output --exclude='*.egg-info'
          --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis
          --exclude=/.cache --exclude='/galactic-npms-*.tar.gz')
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # what a commit would contain, including files not yet added
    git -C "$root" ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do
              # tracked files deleted in the work tree are listed too: skip them
              if [ -e "$root/$f" ] || [ -L "$root/$f" ]; then printf '%s\0' "$f"; fi
          done \
        | rsync -a --from0 --files-from=- "${excludes[@]}" "$root/" "$dest/"
else
    rsync -a "${excludes[@]}" "$root/" "$dest/"
fi

# ansible-test's pip bootstrap script comes from ci-files.testing.ansible.com, which may
# be unreachable: cache a stand-in that installs pip from PyPI (no-op when one is cached).
"$root/.venv/bin/python" "$root/tests/sanity/pip_bootstrap.py"

echo "sanity: $(find "$dest" -type f | wc -l) files copied to $dest"
cd "$dest"
start=$(date +%s)
status=0
"$ansible_test" sanity --python "$python_version" --venv --color no "$@" || status=$?
echo "sanity: finished in $(( $(date +%s) - start )) s, exit $status"
if [ -n "${NPMS_SANITY_KEEP:-}" ]; then
    echo "sanity: copy kept at $dest"
fi
exit "$status"
