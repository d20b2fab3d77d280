#!/usr/bin/env bash
# W8's rechunker contender needs zarr < 3, so it gets its own venv (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv-rechunker
[ -x $VENV/bin/python ] || python3 -m venv $VENV
$VENV/bin/python -m pip install -q --disable-pip-version-check "rechunker==0.5.4" \
  "zarr>=2.18,<3" "s3fs>=2024.10" "dask[array]" "numpy<2.3"
