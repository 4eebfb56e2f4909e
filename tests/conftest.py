"""Shared test configuration: reference data location."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"reference data folder {SHARED_DATA} is absent (it sits beside the repo in CI)",
)
