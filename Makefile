# The two commands a newcomer types: `make run` and `make test`. Everything sets itself up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format lock clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/relay demo

lint: $(STAMP)
	$(BIN)/ruff check relay tests
	$(BIN)/ruff format --check relay tests
	$(BIN)/mypy

# pytest exits 5 when it collected no test; that must fail, not pass silently.
test: lint
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing" >&2; exit 1; fi; exit $$rc

format: $(STAMP)
	$(BIN)/ruff format relay tests
	$(BIN)/ruff check --fix relay tests

# Regenerates the constraints file from a fresh resolve of pyproject.toml.
lock:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --disable-pip-version-check '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^relay' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
