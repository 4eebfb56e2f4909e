"""Effects run both scenarios in one compiled pass over each batch: results equal two
separate predictions with the same key, and one program is compiled, not two."""

import jax
import numpy as np
import pytest

from skimpact import ImpactRegressor, Model, counterfactual_predict, effect
from skimpact.effects import outcome_draws
from skimpact.predictive import memory_budget

from models import slopes

_COMPILES = [0]


def _count(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


_model = slopes()


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0]) + 0.3 * rng.normal(size=150)).astype(np.float32)
    # 64-row batches: two full ones and a padded one
    est = ImpactRegressor(Model(lambda: _model), num_steps=200, num_samples=30,
                          random_state=0, batch_size=64).fit(X, y)
    return est, X


@pytest.mark.parametrize("baseline", [None, {"b": np.array([0.5, 0.0])}])
def test_predictive_effect_equals_two_predictions(fitted, baseline):
    est, X = fitted
    inter = {0: X[:, 0] + 1.0}
    eff = effect(est, X, inter, baseline, kind="predictive")["predictions"]["y"].values
    one = counterfactual_predict(est, X, inter)["predictions"]["y"].values
    two = counterfactual_predict(est, X, baseline)["predictions"]["y"].values
    np.testing.assert_allclose(eff, one - two, rtol=1e-6, atol=1e-6)
    # common random numbers: the noise cancels, only the shifted mean remains
    b = est.posterior_["posterior"]["b"].values[..., 0]
    if baseline is None:
        np.testing.assert_allclose(eff, np.broadcast_to(b[..., None], eff.shape), atol=1e-4)


def test_mean_effect_equals_two_mean_predictions(fitted):
    est, X = fitted
    inter, base = {"b": np.array([1.0, 1.0])}, {1: np.zeros(len(X))}
    eff = effect(est, X, inter, base, kind="mean")["predictions"]["y"].values
    diff = outcome_draws(est, X, inter, stat="mean") - outcome_draws(est, X, base, stat="mean")
    np.testing.assert_allclose(eff.reshape(diff.shape), diff, rtol=1e-6, atol=1e-6)


def test_effect_compiles_one_program_once(fitted):
    est, X = fitted
    before = _COMPILES[0]
    effect(est, X, {"b": np.array([2.0, 0.0])}, {"b": np.zeros(2)})  # a new pair of scenarios
    assert _COMPILES[0] - before == 1  # both scenarios in one program
    before = _COMPILES[0]
    for v in (0.0, 3.0):
        effect(est, X[:100], {"b": np.array([v, 1.0])}, {"b": np.ones(2)})
    assert _COMPILES[0] == before


def test_cpu_batches_fit_the_cache():
    assert memory_budget(jax.devices("cpu")[0]) == 4 * 2**20


def test_contrast_of_different_rows_is_refused(fitted):
    est, X = fitted
    pred = est.predictor_
    with pytest.raises(ValueError, match="same rows; got 5 and 150"):
        pred.predict_contrast(pred.scenario(X[:5], {}), pred.scenario(X, {}), pred.key())
