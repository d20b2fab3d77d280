"""Packaging a user can trust: the license the metadata declares, a citation file, a changelog,
project URLs, and environment.yml in step with pyproject.toml's dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"netCDF4": "netcdf4", "types-PyYAML": "types-pyyaml", "playwright": "playwright"}


def _requirement(spec: str) -> tuple[str, str]:
    """``'dask[array]>=2024.8'`` -> ``('dask', '>=2024.8')`` (extras dropped, spaces removed)."""
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*?)\s*$", spec)
    assert match, spec
    name, version = match.groups()
    return CONDA_NAMES.get(name, name).lower(), version.replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    """environment.yml = `pip install -e .[xarray,test,docs]`: same packages, same bounds."""
    project = PYPROJECT["project"]
    wanted = dict(_requirement(s) for s in project["dependencies"])
    for extra in ("xarray", "test", "docs"):
        for spec in project["optional-dependencies"][extra]:
            name, version = _requirement(spec)
            assert wanted.get(name, version) == version, (name, wanted[name], version)
            wanted[name] = version
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for entry in env["dependencies"]:
        if isinstance(entry, str):
            name, version = _requirement(entry)
            conda[name] = version
    conda.pop("python")
    conda.pop("pip")
    conda.pop("memcached")  # optional system service, documented as such
    python = next(e for e in env["dependencies"] if isinstance(e, str) and e.startswith("python"))
    assert python.replace(" ", "") == "python" + PYPROJECT["project"]["requires-python"]
    assert conda == wanted


def test_license_is_the_declared_one() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_citation_and_changelog() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == PYPROJECT["project"]["version"]
    assert citation["license"] == PYPROJECT["project"]["license"]
    assert citation["authors"] and citation["title"].startswith("swiftzarr_batch")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {PYPROJECT['project']['version']}" in changelog


def test_project_urls_point_somewhere_real() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert {"Documentation", "Changelog", "Source"} <= set(urls)
    for name, url in urls.items():
        # no hosted site exists yet: the URLs name files of the source distribution
        assert (ROOT / url.split("#")[0]).exists() or url.startswith("https://"), (name, url)
