"""Shared fixtures: the demo study is written once per test session (≈ 8 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory):
    from viewer.core.demo import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("demo") / "study")
