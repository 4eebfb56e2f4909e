"""Shared test configuration: reference data location, and the fits several test modules use.

The fits are session-scoped: each test process (each xdist worker) fits them once, for every
module that asks; a test must not change the estimator it is given."""

from pathlib import Path

import pytest

from models import fit_dose_age

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"reference data folder {SHARED_DATA} is absent (it sits beside the repo in CI)",
)


@pytest.fixture(scope="session")
def dose_age_svi():
    """The default model fitted by SVI to ``models.dose_age_data()`` (1500 steps, converged),
    with the ConvergenceWarnings of its fit: diagnostics, plots and tracking use it."""
    return fit_dose_age(inference="svi", num_steps=1500, num_samples=100)


@pytest.fixture(scope="session")
def dose_age_nuts():
    """The default model fitted by NUTS (2 chains of 150 draws) to ``models.dose_age_data()``,
    with the ConvergenceWarnings of its fit."""
    return fit_dose_age(inference="nuts", num_warmup=150, num_samples=150, num_chains=2)
