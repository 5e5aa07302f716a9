# fedbearer — `make help` lists the targets. The two that matter: `make demo` and `make test`;
# both set everything up on a fresh machine (venv, Python packages, the release build).
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.deps: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: build
build: $(VENV)/.deps ## build the Rust extension (release) into the venv
	$(VENV)/bin/maturin develop --release -q

.PHONY: dev
dev: build ## set up everything for development

.PHONY: system-deps
system-deps: ## install chromium, chromium-driver, redis-server (Debian) if missing
	scripts/system-deps.sh

.PHONY: demo
demo: build ## interactive login against the embedded identity provider (no network)
	$(PY) -m fedbearer demo

.PHONY: lint
lint: $(VENV)/.deps ## rustfmt, clippy, ruff, mypy
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy --ignore-missing-imports python/fedbearer

.PHONY: test-rust
test-rust: ## Rust unit tests (the pyo3-free core needs no Python)
	cargo test --no-default-features -q

.PHONY: test-python
test-python: build system-deps ## the pytest suite against the built extension
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: ## each cargo-fuzz target for FUZZ_SECONDS (default 45) from the committed corpora
	scripts/fuzz.sh $(FUZZ_SECONDS)

FUZZ_SECONDS ?= 45

.PHONY: test
test: system-deps build lint test-rust test-python fuzz ## everything CI runs
	@echo "all checks passed"

.PHONY: bench
bench: build ## benchmarks side by side with the reference SDK; writes docs/benchmarks.md
	$(PY) benches/run_all.py

.PHONY: clean
clean: ## remove build outputs and the venv
	rm -rf target $(VENV) .hypothesis .pytest_cache .ruff_cache
