"""Fixtures for the unit tests."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Install fake distributions whose ``jobkit`` entry points are the only ones jobkit sees;
    with autoload switched back on (conftest switches it off)."""
    monkeypatch.delenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    distributions: list[importlib.metadata.Distribution] = []

    def entry_points(**selection):
        found = [ep for dist in distributions for ep in dist.entry_points]
        return importlib.metadata.EntryPoints(found).select(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    def install(name: str, version: str, entry_points: dict[str, str]) -> None:
        dist_info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        lines = "".join(f"{ep_name} = {value}\n" for ep_name, value in entry_points.items())
        (dist_info / "entry_points.txt").write_text(f"[jobkit]\n{lines}")
        distributions.append(importlib.metadata.PathDistribution(Path(dist_info)))

    return install
