"""Fixtures for the RTL cross-check (tests/rtl): a session-wide cache of builds and runs."""

from __future__ import annotations

import pytest
from pe_campaign import RtlRuns


@pytest.fixture(scope="session")
def rtl_runs(tmp_path_factory: pytest.TempPathFactory) -> RtlRuns:
    """Session-wide cache of Verilator builds and bench runs."""
    return RtlRuns(tmp_path_factory)
