# galactic.npms -- the two commands are `make demo` and `make test`.
#
#   make setup   Debian packages (apt, only when some are missing) + .venv + pip install
#   make test    setup, link, unit + integration tests, molecule, sanity, lint, build and doc checks
#   make demo    setup, then the main job: the control loop on the namespace lab (scripts/demo.py)
#   make bench   setup, then every tests/bench/bench_*.py (each prints a JSON last line)
#   make lint | sanity | unit | integration | molecule | build | docs | link | clean | distclean (also removes .venv)
#
# Runs as root on a clean Debian 12 checkout with no stdin (CI); as another user it
# uses sudo for apt.  Everything Python runs from .venv/bin explicitly.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
INVENTORY ?= inventory/lab
PYTEST_ARGS ?= -n auto
BUILD_DIR := build

# Debian packages the project needs (lab: namespaces, SRv6, WireGuard, nftables, FRR,
# traffic tools; store: PostgreSQL; sanity: rsync, shellcheck; unit tests: systemd-analyze).
APT_PACKAGES := python3-venv python3-dev git make rsync ca-certificates \
	iproute2 iputils-ping procps kmod nftables iptables \
	frr frr-pythontools wireguard-tools wireguard-go iperf3 tcpdump \
	postgresql shellcheck libnetfilter-queue-dev systemd nats-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export DEBIAN_FRONTEND := noninteractive
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup apt venv link test unit integration molecule sanity lint build docs demo bench clean distclean

help:
	@sed -n '1,9p' Makefile | sed 's/^# \{0,1\}//'

setup: apt venv

# Idempotent: dpkg-query finds every package installed -> no apt at all.
apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -q; \
	  $(SUDO) apt-get install -y -q --no-install-recommends \
	    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $$missing </dev/null; \
	fi

venv: $(STAMP)

# Re-runs only when the requirement files or pyproject change (or .venv is gone).
$(STAMP): requirements/base.txt requirements/test.txt pyproject.toml | apt
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 14), sys.version' \
	    || { echo "need Python 3.11-3.13 as $(PYTHON) (make PYTHON=python3.11 ...)" >&2; exit 1; }; \
	  echo "venv: creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(PIP) install -q -r requirements/test.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	@touch $@

link:
	@scripts/link-collection >/dev/null

# Every stage runs even when an earlier one fails; the summary names the failed ones.
TEST_STAGES := unit integration molecule sanity lint build docs

test: setup link
	@failed=""; \
	for stage in $(TEST_STAGES); do \
	  echo "=== make $$stage"; start=$$(date +%s); \
	  if $(MAKE) $$stage; then result=ok; else result=FAILED; failed="$$failed $$stage"; fi; \
	  echo "=== make $$stage: $$result ($$(( $$(date +%s) - start )) s)"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all passed"

unit: setup link
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit

# tests/integration/: the namespace lab and its front ends (root), run serially.
integration: setup link
	@if ls tests/integration/test_*.py >/dev/null 2>&1; then \
	  $(PY) -m pytest tests/integration; \
	else echo "integration: no tests/integration/test_*.py yet, skipped"; fi

# Every scenario under tests/molecule/ (molecule 25+ would look in extensions/molecule/);
# create / destroy bring the namespace lab up and down, so this needs root.
# One scenario at a time (molecule --all stops at the first failure and hides the rest).
molecule: setup link
	@failed=""; \
	for f in tests/molecule/*/molecule.yml; do \
	  s=$$(basename $$(dirname $$f)); echo "--- molecule scenario $$s"; \
	  MOLECULE_GLOB='tests/molecule/*/molecule.yml' $(BIN)/molecule test -s $$s || failed="$$failed $$s"; \
	done; \
	if [ -n "$$failed" ]; then echo "molecule: FAILED:$$failed"; exit 1; fi

sanity: setup
	tests/sanity/run.sh

lint: setup link
	$(BIN)/ansible-lint

build: setup
	scripts/check-build $(BUILD_DIR)

docs: setup link
	$(PY) scripts/check_docs.py

# The control loop on the namespace lab (root): two loops around a link impairment.
demo: setup link
	$(BIN)/npms validate $(INVENTORY)
	$(PY) scripts/demo.py

# Each benchmark's last stdout line must be one JSON object; it is also saved as
# tests/bench/output/<name>.json (git-ignored).
bench: setup
	@found=0; mkdir -p tests/bench/output; \
	for b in tests/bench/bench_*.py; do \
	  [ -e "$$b" ] || continue; found=1; name=$$(basename "$$b" .py); \
	  echo "=== $$b"; \
	  $(PY) "$$b" | tee "tests/bench/output/$$name.log"; \
	  tail -n 1 "tests/bench/output/$$name.log" | $(PY) -c 'import json, sys; d = json.loads(sys.stdin.read()); assert isinstance(d, dict); json.dump(d, sys.stdout, indent=2, sort_keys=True)' 2>/dev/null \
	    > "tests/bench/output/$$name.json" \
	    || { echo "bench: $$b: last line is not a JSON object" >&2; exit 1; }; \
	done; \
	[ $$found = 1 ] || echo "bench: no tests/bench/bench_*.py yet"

clean:
	rm -rf collections/ansible_collections $(BUILD_DIR) dist *.egg-info \
	  tests/output .pytest_cache .hypothesis galactic-npms-*.tar.gz
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
