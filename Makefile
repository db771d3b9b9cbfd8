# The two commands a newcomer types: `make run` and `make test`. Everything sets itself up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format lock lock-checks deploy-check venvs clean bench lambda-layer sbom

# checkov pins its own botocore, older than relay's: the deploy checks get a venv of their own,
# locked apart in $(CHECKS_LOCK) (`make lock-checks` regenerates it).
CHECKS_VENV := .venv-checks
CHECKS_STAMP := $(CHECKS_VENV)/.installed
CHECKS_LOCK := requirements/checks.txt
TEMPLATE := deploy/cloudformation/relay.yaml

# Every dependency from the lock, each file checked against its hash; then relay itself, editable,
# built by the lock's setuptools (no build isolation, so nothing unhashed is fetched).
$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(CHECKS_STAMP): $(CHECKS_LOCK)
	rm -rf $(CHECKS_VENV)
	$(PYTHON) -m venv $(CHECKS_VENV)
	$(CHECKS_VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile \
		--require-hashes -r $(CHECKS_LOCK)
	touch $(CHECKS_STAMP)

run: $(STAMP)
	$(BIN)/relay demo

lint: $(STAMP)
	$(BIN)/ruff check relay tests examples bench deploy
	$(BIN)/ruff format --check relay tests examples bench deploy
	$(BIN)/mypy

# The infrastructure template and the image: cfn-lint, hadolint, then checkov on both.
# --skip-download: checkov runs offline (no guideline or policy downloads).
deploy-check: $(STAMP) $(CHECKS_STAMP)
	$(BIN)/cfn-lint --include-checks I -- $(TEMPLATE)
	$(CHECKS_VENV)/bin/hadolint deploy/Dockerfile
	$(CHECKS_VENV)/bin/checkov --quiet --compact --skip-download \
		--framework cloudformation dockerfile --directory deploy

# The Node that runs the AWS CDK's jsii kernel when tests/deploy/ synthesizes relay's construct:
# jsii supports Node 22 and 24, not the machine's 20, so a Node 22 comes from npm (the `node`
# package) into deploy/cdk/node_modules; the tests hand it to jsii as JSII_NODE.
CDK_NODE := deploy/cdk/node_modules/.installed

$(CDK_NODE): deploy/cdk/package.json deploy/cdk/package-lock.json
	cd deploy/cdk && npm ci --no-audit --no-fund --loglevel=error
	touch $(CDK_NODE)

# Both venvs (and the CDK's Node) install side by side on a fresh clone (much of an install is
# waiting on the index). Serial make runs it before lint; under a top-level -j it would race
# lint's install.
venvs:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(CHECKS_STAMP) $(CDK_NODE)

# The suite runs in 4 worker processes (pytest-xdist), each with moto servers and emulators of
# its own on ports of its own. Most tests wait on loopback servers, not the CPU, so on CI's 2
# cores 4 workers beat 2 and 3 by far; 6 gained a few more seconds, 8 lost, and each worker
# past 4 leaves the timing-minded tests less CPU. worksteal: a worker that runs out takes tests
# queued on another, so the few slow tests do not end the run alone (20 s sooner than load).
# `make test PYTEST_ARGS=` runs the suite in one process.
PYTEST_ARGS ?= -n 4 --dist worksteal

# pytest exits 5 when it collected no test; that must fail, not pass silently.
test: venvs lint deploy-check
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing" >&2; exit 1; fi; exit $$rc

format: $(STAMP)
	$(BIN)/ruff format relay tests examples bench deploy
	$(BIN)/ruff check --fix relay tests examples bench deploy

# The Lambda layer for step processors (README, "For step processors"): python/relay/ with the
# modules relay.producer imports and no dependency (botocore comes with every Python runtime).
# Standard library only, so it needs no venv. tests/system/test_lambda_layer.py runs the same.
LAMBDA_LAYER ?= dist/relay-layer.zip
lambda-layer:
	$(PYTHON) deploy/lambda_layer.py --out $(LAMBDA_LAYER)

# The locks, each with every file's sha256 (pip install --require-hashes), resolved by uv for
# every platform (--universal: the image builds for amd64 and arm64): requirements/runtime.txt,
# relay's runtime and its otel extra (the image, the SBOM); dev.txt, everything `make` installs,
# held to runtime.txt's versions; build.txt, setuptools and wheel to build relay without build
# isolation; sbom.txt, the SBOM tool. A lock's pins are kept unless pyproject asks otherwise:
# `make lock LOCK_ARGS=--upgrade` moves them all, `LOCK_ARGS="--upgrade-package aiohttp"` one.
LOCK_TOOL := uv==0.13.8
LOCK_ARGS ?=
COMPILE = .lockenv/bin/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--quiet --custom-compile-command "make lock" $(LOCK_ARGS)
lock:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --disable-pip-version-check '$(LOCK_TOOL)'
	$(COMPILE) pyproject.toml --extra otel -o requirements/runtime.txt
	$(COMPILE) requirements/build.in -o requirements/build.txt
	$(COMPILE) pyproject.toml requirements/build.in --extra dev \
		-c requirements/runtime.txt -c requirements/build.txt -o requirements/dev.txt
	$(COMPILE) requirements/sbom.in -o requirements/sbom.txt
	rm -rf .lockenv

# The SBOM: CycloneDX JSON of relay's runtime environment exactly as the lock installs it (what
# the image runs; deploy/Dockerfile writes the same into the image), relay the root component
# (from pyproject.toml). The environment and the tool each get a venv of their own, both from
# hashed locks, so the tool's own dependencies stay out of the list.
RUNTIME_VENV := .venv-runtime
SBOM_VENV := .venv-sbom
SBOM ?= dist/relay.cdx.json

$(RUNTIME_VENV)/.installed: requirements/runtime.txt
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements/runtime.txt
	touch $@

$(SBOM_VENV)/.installed: requirements/sbom.txt
	rm -rf $(SBOM_VENV)
	$(PYTHON) -m venv $(SBOM_VENV)
	$(SBOM_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements/sbom.txt
	touch $@

sbom: $(RUNTIME_VENV)/.installed $(SBOM_VENV)/.installed
	mkdir -p $(dir $(SBOM))
	$(SBOM_VENV)/bin/cyclonedx-py environment --pyproject pyproject.toml --mc-type application \
		--output-reproducible --of JSON -o $(SBOM) $(RUNTIME_VENV)/bin/python
	@echo "$(SBOM): $$($(PYTHON) -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' $(SBOM)) components"

# Regenerates the deploy checks' lock (requirements/checks.in), keeping its pins unless
# LOCK_ARGS=--upgrade. Python 3.11.5 at least: checkov's soupsieve needs it.
lock-checks:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --disable-pip-version-check '$(LOCK_TOOL)'
	.lockenv/bin/uv pip compile --universal --python-version 3.11.5 --generate-hashes --quiet \
		--custom-compile-command "make lock-checks" $(LOCK_ARGS) requirements/checks.in -o $(CHECKS_LOCK)
	rm -rf .lockenv

# The benchmark, not part of `make test` (bench/README.md). It installs its own SQS endpoint
# (fauxqs and a Node >= 22.5, from npm, into bench/sqs_server/node_modules). A quick run:
#   make bench BENCH_ARGS="--workloads W1 --messages 2000"
BENCH_NODE := bench/sqs_server/node_modules/.installed

$(BENCH_NODE): bench/sqs_server/package.json bench/sqs_server/package-lock.json
	cd bench/sqs_server && npm ci --no-audit --no-fund --loglevel=error
	touch $(BENCH_NODE)

bench: $(STAMP) $(BENCH_NODE)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CHECKS_VENV) $(RUNTIME_VENV) $(SBOM_VENV) deploy/cdk/node_modules .pytest_cache .mypy_cache .ruff_cache build *.egg-info
