"""The README's quickstart runs and finds the simulated effect."""

import runpy
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


@pytest.mark.slow
def test_quickstart_recovers_the_true_effect():
    module = runpy.run_path(str(QUICKSTART))
    ate = module["main"]()
    assert ate["hdi_lower"] < module["TRUE_EFFECT"] < ate["hdi_upper"]
    assert abs(ate["mean"] - module["TRUE_EFFECT"]) < 0.15
    assert ate["hdi_upper"] - ate["hdi_lower"] < 0.5
