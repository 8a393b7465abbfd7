"""jobkit's distribution: the license its metadata declares is in the repository and in both
archives, and the sdist holds jobkit alone, not the plugins under plugins/ (each is a
distribution of its own)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_declared_license_is_the_license_file():
    project = PYPROJECT["project"]
    license_text = (ROOT / "LICENSE").read_text()

    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    assert license_text.startswith("BSD 3-Clause License\n\nCopyright (c) ")
    assert ", the jobkit authors\n" in license_text.splitlines(keepends=True)[2]
    assert "Neither the name of the copyright holder nor the names of its" in license_text


def test_the_sdist_holds_jobkit_its_readme_changelog_and_license_only():
    sdist = PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]

    # only-include takes exact paths from the root; include would read "README.md" as a pattern
    # and take plugins/*/README.md along.
    assert "include" not in sdist
    assert sdist["only-include"] == ["src/jobkit", "README.md", "CHANGELOG.md", "LICENSE"]
    for path in sdist["only-include"]:
        assert (ROOT / path).exists(), path
