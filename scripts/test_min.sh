#!/usr/bin/env bash
# make test-min: the declared lower bounds of pyproject.toml, installed together in their own
# venv (.venv-min), running the seed walkthrough and a dask write against a local Swift.
# The pins come from scripts/lower_bounds.py (">=X" becomes "==X"), so raising a bound in
# pyproject.toml is all it takes to test the new one. Binary wheels only: a bound with no wheel
# for this Python is a bound nobody can install either (raise it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MIN_VENV:-.venv-min}
python=$(bash scripts/find_python.sh)
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$python" scripts/lower_bounds.py xarray > "$reqs"
stamp="$VENV/.lower-bounds"
if ! cmp -s "$reqs" "$stamp" 2>/dev/null; then
  echo "test-min: installing the lower bounds into $VENV:" $(cat "$reqs")
  rm -rf "$VENV"
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q --only-binary=:all: -r "$reqs"
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  cp "$reqs" "$stamp"
fi
echo "test-min: versions in $VENV:"
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
names = ["zarr", "dask", "distributed", "xarray", "numpy", "fsspec", "python-swiftclient",
         "tenacity", "httptools", "requests", "pyyaml", "tqdm", "netCDF4", "numcodecs", "pandas"]
print("  " + ", ".join(f"{n} {version(n)}" for n in names))
PY
# one local Swift for both runs; its ST_* variables are set for the command it runs
"$VENV/bin/python" -m swiftzarr_batch.testing.swift_server run -- bash -c "
  set -e
  '$VENV/bin/python' examples/seed_walkthrough.py --container min-demo > /dev/null
  echo 'test-min: seed walkthrough passed'
  '$VENV/bin/python' examples/distributed_write.py --workers 2 --threads 1 --steps 8
  echo 'test-min: dask write passed'
"
