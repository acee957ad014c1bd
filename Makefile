# The developer loop (CI runs `bash scripts/test.sh`, which installs everything and runs every tier).
#   make dev        a venv (.venv-dev) with the extension built in place (maturin develop) and the core test deps
#   make test-fast  the fast tier: no vLLM, Ray, S3 server, browser or slow test (optional deps skip)
#   make test       everything, as CI does
#   make lint       ruff, cargo fmt and clippy
#   make docs       the docs site, built strictly (needs the `docs` extra)
VENV ?= .venv-dev
PY := $(VENV)/bin/python
FAST := not vllm and not ray and not s3 and not browser and not slow

.PHONY: dev test-fast test lint docs

dev:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" "pytest>=8" "hypothesis>=6.100" ruff
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release

test-fast:
	$(PY) -m pytest tests -q -m "$(FAST)"

test:
	bash scripts/test.sh

lint:
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

docs:
	bash scripts/docs.sh
