"""The documentation site: `mkdocs build --strict` passes with no warning, every page is in nav."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(value) for value in nav.values()))
    return set()


def _config() -> dict[str, Any]:
    # mkdocs.yml holds no !!python tags, so the safe loader reads it.
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return config


def test_every_page_is_in_the_nav() -> None:
    config = _config()
    in_nav = _nav_pages(config["nav"])
    pages = {p.name for p in (ROOT / config["docs_dir"]).glob("*.md")}
    assert sorted(pages - in_nav) == []
    assert sorted(in_nav - pages) == []


def test_the_build_is_strict_and_checks_links_and_anchors() -> None:
    config = _config()
    assert config["strict"] is True
    validation = config["validation"]
    for key in ("omitted_files", "absolute_links", "unrecognized_links", "anchors"):
        assert validation[key] == "warn", key
    assert validation["links"]["not_found"] == "warn"
    assert validation["nav"]["omitted_files"] == "warn"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    assert (site / "index.html").is_file()
    assert (site / "operations" / "index.html").is_file()
