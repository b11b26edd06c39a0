# Every target works from a fresh clone: the virtual environment is created
# and the hash-checked lock files installed on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all test test-future lint types unit traceability demo bench lock clean security attack

all: test

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/traceability.py check

# docs/traceability.md is generated from the code and the tests (R36): run
# this after naming a recommendation in a test or the code (lint fails until then).
traceability: $(STAMP)
	$(BIN)/python tools/traceability.py generate

types: $(STAMP)
	$(BIN)/mypy

# The suite runs on every core (pytest-xdist); a test module stays on one
# worker (--dist loadfile), so its module fixtures are built once. Modules go
# out in collection order (--no-loadscope-reorder): xdist would otherwise send
# the modules with the most tests first, and the API fuzz (two tests, four
# minutes) would start last and run alone at the end.
WORKERS ?= auto
XDIST   := -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# Each run's results per ANSM recommendation go to $(REPORT)
# (traceability-results.md, .json); an addressed recommendation with no
# passing test fails the build. A run narrowed by PYTEST_ARGS only reports.
REPORT := build/report
# The test runs go through eatmydata where it is installed (.ci/run installs
# it): fsync and O_SYNC become no-ops for the test processes and the servers
# they start. No test's outcome depends on data reaching the disk (a power
# cut is a killed process, whose writes the kernel keeps; the tests that check
# the product's fsync calls watch os.fsync itself), and the suite's thousands
# of atomic writes and commits no longer wait for the disk.
NO_SYNC := $(shell command -v eatmydata 2>/dev/null)
# The same run's coverage (.coverage) goes through tools/coverage_gate.py
# (R36): a security core under 95% branch coverage, or a line of one that the
# tests do not run and tools/coverage_gate.toml gives no reason for, fails it.
unit: $(STAMP)
	@mkdir -p $(REPORT) && rm -f $(REPORT)/junit.xml .coverage
	$(NO_SYNC) $(BIN)/pytest $(XDIST) --cov --cov-report=term --junitxml=$(REPORT)/junit.xml $(PYTEST_ARGS); \
		status=$$?; \
		$(BIN)/python tools/traceability.py results $(REPORT)/junit.xml --out $(REPORT) \
			$(if $(PYTEST_ARGS),--no-gate) || status=1; \
		$(BIN)/python tools/coverage_gate.py .coverage --out $(REPORT) \
			$(if $(PYTEST_ARGS),--no-gate) || status=1; \
		exit $$status

# Static analysis and the dependency check (R42): bandit (its settings in
# pyproject.toml) and semgrep with the repository's own rules (tools/semgrep;
# their cases checked first), both offline, no registry and no metrics; then
# the shipped locks against PyPI's vulnerability data (tools/vulncheck.py,
# decisions in tools/vulncheck.toml). semgrep has a virtual environment of its
# own (build/tools/semgrep, from tools/semgrep/requirements.lock): it pins
# click and jsonschema below the versions the product locks.
SEMGREP_VENV := build/tools/semgrep
SEMGREP      := $(SEMGREP_VENV)/bin/semgrep
SEMGREP_ARGS := --metrics=off --disable-version-check --quiet
SCANNED      := fwcommon repo_metadata hsm_mock signer update_server client tools deploy

$(SEMGREP): tools/semgrep/requirements.lock
	$(PYTHON) -m venv $(SEMGREP_VENV)
	$(SEMGREP_VENV)/bin/pip install --quiet --require-hashes --no-deps -r $<
	touch $@

security: $(STAMP) $(SEMGREP)
	$(BIN)/bandit -q -c pyproject.toml -r $(SCANNED)
	$(SEMGREP) --test $(SEMGREP_ARGS) tools/semgrep
	$(SEMGREP) scan $(SEMGREP_ARGS) --error --config tools/semgrep/rules.yml \
		--exclude tools/semgrep $(SCANNED)
	$(BIN)/python tools/vulncheck.py

# The attack simulation alone: the checks above, then the API fuzzed from its
# OpenAPI document against a real server, with and without a session
# (tests/attack; pass 1 of make unit runs it too, make test-future does not).
attack: security
	$(NO_SYNC) $(BIN)/pytest -p no:cacheprovider tests/attack

test: lint types security unit test-future

# The whole suite again with the wall clock FUTURE_DAYS ahead, so that no test
# depends on the date it runs. datefudge moves the wall clock only: the
# monotonic clock that timeouts and sleeps use stays true (libfaketime 0.9.10
# shifts it too, and Python's lock timeouts then wait for the shifted time).
# The API fuzz (tests/attack) runs once, in pass 1: its inputs have no date.
FUTURE_DAYS ?= 400
test-future: $(STAMP)
	@if ! command -v datefudge >/dev/null; then \
		echo "test-future: datefudge is not installed (apt-get install datefudge)"; \
		if [ "$$CI" = true ]; then exit 1; fi; exit 0; fi
	$(NO_SYNC) datefudge "$$(date -u -d '+$(FUTURE_DAYS) days' '+%Y-%m-%d %H:%M:%S')" \
		$(BIN)/pytest -q -p no:cacheprovider $(XDIST) --ignore=tests/attack $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash demo/run.sh

bench: $(STAMP)
	bash benchmarks/system.sh
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Regenerate the locks after changing requirements*.in (needs pip-tools).
# The device's lock (requirements-device.lock) takes its versions from the
# server's; the locks name no index or wheel directory of the machine they
# were made on.
COMPILE := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock:
	$(BIN)/pip install --quiet pip-tools
	$(COMPILE) -o requirements.lock requirements.in
	$(COMPILE) -o requirements-device.lock requirements-device.in
	$(COMPILE) -o requirements-dev.lock requirements-dev.in

# The wheels of both distributions, built from this checkout into build/dist:
# fwupdate (everything) and fwupdate-device (what a device installs).
.PHONY: dist
dist: $(STAMP)
	$(BIN)/python tools/dist.py build/dist

# The product's SBOMs (CycloneDX JSON) from the hash-locked dependencies:
# build/sbom/fwupdate.cdx.json and build/sbom/fwupdate-device.cdx.json.
.PHONY: sbom
sbom: $(STAMP)
	$(BIN)/python tools/sbom.py build/sbom

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
