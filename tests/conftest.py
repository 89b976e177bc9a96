"""Shared fixtures: the demo study is written once per test session (≈ 8 s); the levels cache
(viewer.core.io.levels_cache) of every test, and of the commands they run, is one folder of
this session, never the user's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_levels_cache(tmp_path_factory):
    """A fresh cache folder for the session (inherited by the commands tests run)."""
    folder = tmp_path_factory.mktemp("levels-cache")
    before = os.environ.get("VIEWER_CACHE_DIR")
    os.environ["VIEWER_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("VIEWER_CACHE_DIR", None)
    else:
        os.environ["VIEWER_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory):
    from viewer.core.demo import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("demo") / "study")
