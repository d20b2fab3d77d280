#!/usr/bin/env bash
# Create the benchmark venv (benchmarks/.venv, git-ignored) with the project and the peers.
# The peers are never project dependencies. zarr-swiftstore installs a top-level package named
# `zarrswift`, which is also the name of this project's compatibility shim, so it goes into its
# own directory (benchmarks/.venv/peers) that only its worker puts on sys.path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv
STAMP=$VENV/.bench-installed
PEERS="zarr-swiftstore==3.0.2"
OTHERS="swiftspec==0.0.4 obstore>=0.8 s3fs>=2024.10 py-spy>=0.4 pyinstrument>=5"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt "$0" ]; then exit 0; fi
python=$(bash scripts/find_python.sh)
[ -x $VENV/bin/python ] || "$python" -m venv $VENV
$VENV/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
$VENV/bin/python -m pip install -q --disable-pip-version-check -e '.[xarray,testing]' $OTHERS
$VENV/bin/python -m pip uninstall -q -y zarr-swiftstore 2>/dev/null || true
$VENV/bin/python -m pip install -q --disable-pip-version-check --no-deps --upgrade \
  --target $VENV/peers $PEERS
$VENV/bin/python -m swiftzarr_batch.testing.swift_server install >/dev/null
touch "$STAMP"
