#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter: $PYTHON, then PATH, then pyenv's versions.
# Exits 1 with a clear message when there is none.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
for name in python3.14 python3.13 python3.12 python3 python; do
  p=$(command -v "$name" 2>/dev/null) && candidates+=("$p")
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root 2>/dev/null)
  for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do candidates+=("$p"); done
fi
for p in "${HOME}"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
  [ -x "$p" ] && candidates+=("$p")
done
for p in "${candidates[@]}"; do
  if ok "$p"; then
    "$p" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: swiftzarr_batch needs Python >= 3.12 (zarr >= 3.2 requires it)." >&2
echo "  Looked at \$PYTHON, python3.1x/python3 on PATH and pyenv versions; none is >= 3.12." >&2
echo "  Install one (e.g. 'pyenv install 3.12', or your distribution's python3.12) or set PYTHON=/path/to/python3.12." >&2
exit 1
