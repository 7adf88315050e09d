# `make run`: install everything and serve on the embedded SQLite default.
# `make test`: install everything and run the tests (SQLite and a throwaway PostgreSQL).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test bench lint chromium
install: $(VENV)/.installed

# lxml and xmlsec must bundle the same libxml2: wheels only, so a mismatch fails here, loudly.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --only-binary lxml,xmlsec -e '.[test]'
	$(BIN)/python -c "import xmlsec, lxml.etree"
	touch $@

run: install
	$(BIN)/identity serve

test: install chromium
	$(BIN)/python -m pytest

# The browser tests drive Debian's Chromium (Playwright never downloads a browser of its own).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests (needs root and apt)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

lint: install
	$(BIN)/pip install --quiet ruff mypy
	$(BIN)/ruff check identity audit scim saml tests
	$(BIN)/mypy
