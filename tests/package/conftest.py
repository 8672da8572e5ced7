"""The files every package test reads: see tests/package_work.py."""

from __future__ import annotations

import pytest

from tests.package_work import Work, build_work


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    return build_work(tmp_path_factory.mktemp("package"))
