# `make run`: install everything and serve on the embedded SQLite default.
# `make test`: install everything, run the static checks (ruff, mypy --strict, the import contracts),
#              then the tests (SQLite and a throwaway PostgreSQL). This is what .ci/run calls.
# `make check`: the inner loop: the same static checks, then the tests on SQLite only, no browser.
# `make bench`: the benchmarks in benchmarks/ (long: minutes; BENCH_DB=postgresql for PostgreSQL).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
BENCH_DB ?= sqlite

.PHONY: install run test check lint test-fast bench chromium
install: $(VENV)/.installed

# lxml and xmlsec must bundle the same libxml2: wheels only, so a mismatch fails here, loudly.
# The checkers (ruff, mypy, import-linter) are pinned in setup.cfg's `test` extra.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --only-binary lxml,xmlsec -e '.[test]'
	$(BIN)/python -c "import xmlsec, lxml.etree"
	touch $@

run: install
	$(BIN)/identity serve

# Two test processes (pytest-xdist), one per core, each with its own throwaway PostgreSQL; a test
# module stays in one process (--dist loadfile), so module-scoped servers are started once.
test: lint chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile

check: lint test-fast

# The configuration lives in pyproject.toml (ruff, mypy: strict, all four packages) and .importlinter.
lint: install
	$(BIN)/ruff check identity audit scim saml tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

# SQLite only and no browser: the PostgreSQL half of each database test and tests/browser are left to `make test`.
test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -k "not postgresql" --ignore=tests/browser

# Each script prints its own table (README "Performance"; docs/performance.md says how to read them).
# bench_scim seeds 200,000 users and serves them with gunicorn: expect several minutes per script.
bench: install
	$(BIN)/python -m benchmarks.bench_saml_acs --count 500 $(if $(filter postgresql,$(BENCH_DB)),--postgres)
	$(BIN)/python benchmarks/bench_audit_export.py --backend $(BENCH_DB)
	$(BIN)/python benchmarks/bench_scim.py --db $(BENCH_DB)

# The browser tests drive Debian's Chromium (Playwright never downloads a browser of its own).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests (needs root and apt)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
