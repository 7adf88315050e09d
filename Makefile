# `make run`: install everything and serve on the embedded SQLite default.
# `make test`: install everything and run the tests (SQLite and a throwaway PostgreSQL).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test bench lint
install: $(VENV)/.installed

# lxml and xmlsec must bundle the same libxml2: wheels only, so a mismatch fails here, loudly.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --only-binary lxml,xmlsec -e '.[test]'
	$(BIN)/python -c "import xmlsec, lxml.etree"
	touch $@

run: install
	$(BIN)/identity serve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/pip install --quiet ruff mypy
	$(BIN)/ruff check identity audit scim saml tests
	$(BIN)/mypy
