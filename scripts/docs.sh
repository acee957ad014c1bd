#!/usr/bin/env bash
# Builds the docs site strictly: regenerates the reference pages from the code (docs/reference/cli.md from the
# typer app, docs/reference/pipeline-keys.md from pipeline.toml's pydantic model), then `mkdocs build --strict`.
# Installs nothing: run it with a Python that has longmagpie and the docs packages installed
# (pip install mkdocs-material mkdocstrings-python), e.g. PYTHON=.venv-test/bin/python bash scripts/docs.sh.
# Usage: scripts/docs.sh [SITE_DIR]   (default: a new temporary directory; `site` to keep it in the tree)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${1:-$(mktemp -d -t longmagpie-site.XXXXXX)}

"$PY" tests/docs/gen_reference.py
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --config-file mkdocs.yml --site-dir "$SITE"
echo "docs built in $SITE"
