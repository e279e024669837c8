"""Which parametrized cases CI runs: all of them with TLMSIM_FULL=1, else a chosen subset.

CI has a 15-minute budget. The long tail of near-duplicate cases (more RTL configurations,
more reuse on/off configurations, more shipped models of an already covered family) runs
with ``TLMSIM_FULL=1 python -m pytest -q``; skipped cases say so, like the golden studies.
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("TLMSIM_FULL") == "1"


def ci_subset(cases, keep) -> list:
    """``cases`` as pytest params; those not in ``keep`` are skipped unless TLMSIM_FULL=1."""
    skip = pytest.mark.skip(reason="set TLMSIM_FULL=1 (a case CI leaves out for time)")
    return [case if FULL or case in keep else pytest.param(case, marks=skip) for case in cases]
