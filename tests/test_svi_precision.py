"""SVI's steps: a taper and an average that resolve posteriors narrower than the step."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from skimpact import ImpactRegressor
from skimpact.inference import _TAPER_FROM, _TAPER_TO, _tapered_adam


def test_the_step_tapers_over_the_last_third_and_the_parameters_are_averaged_there():
    lr, num_steps = 0.1, 30
    opt = _tapered_adam(lr, num_steps)
    state = opt.init({"x": jnp.zeros(())})
    path = []
    for _ in range(num_steps):  # a constant gradient: Adam's step is then its step size
        state = opt.update({"x": jnp.ones(())}, state)
        path.append(float(opt.get_params(state)["x"]))
    steps = -np.diff([0.0, *path])
    start = math.floor(num_steps * _TAPER_FROM)
    np.testing.assert_allclose(steps[:start], lr, rtol=1e-5)
    assert np.all(np.diff(steps[start:]) < 0)  # geometric, down to a tenth at the end
    np.testing.assert_allclose(steps[-1], lr * _TAPER_TO, rtol=1e-5)
    mean = float(state[1][3]["x"])
    np.testing.assert_allclose(mean, np.mean(path[start:]), rtol=1e-5)


@pytest.mark.slow
def test_svi_resolves_a_posterior_narrower_than_its_step():
    # 20,000 rows: the coefficients' posterior sd, 0.007, is below the step, 0.01. At a
    # constant step the mean jittered by about its sd and the scale had not shrunk.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 3))
    y = 0.5 + X @ [1.0, 2.0, -1.0] + rng.normal(size=20_000)
    est = ImpactRegressor(inference="svi", num_samples=1000, random_state=0).fit(X, y)
    assert est.diagnostics_["converged"]
    design = np.column_stack([np.ones(len(X)), X])
    ols, resid = np.linalg.lstsq(design, y, rcond=None)[:2]
    sd = np.sqrt(resid[0] / (len(y) - 4) * np.diag(np.linalg.inv(design.T @ design)))[1:]
    coef = est.posterior_["posterior"]["coef"].values.reshape(-1, 3)
    # the exact posterior is the least-squares fit here (flat enough priors, 20,000 rows)
    assert np.all(np.abs(coef.mean(0) - ols[1:]) < 0.3 * sd)
    assert np.all((coef.std(0) > 0.85 * sd) & (coef.std(0) < 1.2 * sd))
    # and the check of the guide's spread against the curvature agrees
    diag = est.diagnostics_
    assert 0.8 < diag["guide_sd_ratio_min"] <= diag["guide_sd_ratio_max"] < 1.25
