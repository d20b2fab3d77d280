"""Print the declared lower bounds of pyproject.toml as exact pins, one requirement a line.

``make test-min`` installs these together (``dask[array]>=2024.8`` becomes
``dask[array]==2024.8``, which PEP 440 matches to 2024.8.0) to show that the oldest versions
the metadata admits do work together. Usage: ``python scripts/lower_bounds.py [EXTRA...]``
(the runtime dependencies, plus the named optional-dependency groups).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name[extras] then a specifier list; only >= bounds are turned into pins
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)$")


def pin(requirement: str) -> str:
    """``'dask[array]>=2024.8'`` -> ``'dask[array]==2024.8'``; no lower bound: as it is."""
    match = REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, specifiers = match.groups()
    for spec in specifiers.split(","):
        spec = spec.strip()
        if spec.startswith(">="):
            return f"{name}=={spec[2:].strip()}"
    return requirement


def lower_bounds(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return [pin(r) for r in requirements]


if __name__ == "__main__":
    print("\n".join(lower_bounds(sys.argv[1:])))
