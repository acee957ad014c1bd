#!/usr/bin/env bash
# Checks python/longmagpie/_core.pyi against the compiled module installed in a venv (mypy.stubtest):
# every function, class, method, parameter name, kind and default of the stub must match the binding.
# Usage: bash scripts/stubtest.sh [VENV]   (VENV default .venv-test, with the longmagpie wheel installed;
# mypy is installed into it when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-.venv-test}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PY="$VENV/bin/python"
if ! "$PY" -c "import mypy.stubtest" 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check mypy
fi
ALLOW=()
if [ -s "$ROOT/scripts/stubtest-allowlist.txt" ]; then
  ALLOW=(--allowlist "$ROOT/scripts/stubtest-allowlist.txt")
fi
# The stub is read from the source tree (MYPYPATH), the module imported from the venv: run outside the
# repository so that neither the working directory nor a `maturin develop` build in python/ shadows the wheel.
# Only the stub is checked: the modules it imports (longmagpie.options, ...) are followed silently.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '[mypy]\nfollow_imports = silent\n' >"$WORK/mypy.ini"
cd "$WORK"
MYPYPATH="$ROOT/python" "$PY" -m mypy.stubtest longmagpie._core --mypy-config-file "$WORK/mypy.ini" ${ALLOW[@]+"${ALLOW[@]}"}
