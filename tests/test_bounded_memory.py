"""Reductions over draws (predict, predict_proba, predict_quantiles, predict_interval, score,
the draw scorers, the log-score scorer) keep one batch of draws at a time: their largest
allocation is a batch, not rows x draws, and their values are those of the reduction of all
draws."""

import tracemalloc

import numpy as np
import pytest

import models
from skimpact import ImpactClassifier, ImpactRegressor, Model
from skimpact.effects import outcome_draws
from skimpact.metrics import (
    crps, interval_width, log_score, log_score_scorer, neg_crps_scorer, neg_interval_width_scorer,
)
from skimpact.pipeline import predict_interval, predict_quantiles

N_DRAWS, N_ROWS, BATCH = 400, 20_000, 256


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 2))
    y = 3.0 + X @ [1.0, -2.0] + 0.3 * rng.normal(size=N_ROWS)
    return X, y


@pytest.fixture(scope="module")
def regressor(data):
    X, y = data
    return ImpactRegressor(Model(models.slopes), inference="svi", num_steps=200, num_samples=N_DRAWS,
                           random_state=0, batch_size=BATCH).fit(X[:300], y[:300])


def _peak(fn):
    """The call's result and the peak bytes it traced (NumPy's buffers included)."""
    fn()  # compile first: compilation allocates on its own
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


#: what keeping every draw of every row in float64 takes
ALL_DRAWS = N_DRAWS * N_ROWS * 8


@pytest.mark.parametrize("call", ["predict", "quantiles", "interval", "score", "crps", "width",
                                  "log_score"])
def test_reductions_hold_one_batch_of_draws(regressor, data, call):
    X, y = data
    calls = {
        "predict": lambda: regressor.predict(X),
        "quantiles": lambda: predict_quantiles(regressor, X, [0.1, 0.5, 0.9]),
        "interval": lambda: predict_interval(regressor, X, 0.8),
        "score": lambda: regressor.score(X, y),
        "crps": lambda: neg_crps_scorer(regressor, X, y),
        "width": lambda: neg_interval_width_scorer(regressor, X, y),
        "log_score": lambda: log_score_scorer(regressor, X, y),
    }
    _, peak = _peak(calls[call])
    assert peak < ALL_DRAWS / 10, (call, peak)


@pytest.mark.slow
def test_reductions_equal_the_reductions_of_all_draws(regressor, data):
    X, y = data
    means = outcome_draws(regressor, X, stat="mean")
    np.testing.assert_array_equal(regressor.predict(X), means.mean(0))
    draws = outcome_draws(regressor, X)
    q = [0.1, 0.5, 0.9]
    np.testing.assert_array_equal(predict_quantiles(regressor, X, q), np.quantile(draws, q, 0).T)
    np.testing.assert_array_equal(predict_interval(regressor, X, 0.8),
                                  np.quantile(draws, [(1 - 0.8) / 2, (1 + 0.8) / 2], 0).T)
    assert neg_crps_scorer(regressor, X, y) == pytest.approx(-crps(y, draws), rel=1e-12)
    assert neg_interval_width_scorer(regressor, X, y) == pytest.approx(
        -interval_width(draws, 0.9), rel=1e-12)
    assert log_score_scorer(regressor, X, y) == pytest.approx(
        log_score(regressor.log_likelihood(X, y)), rel=1e-12)


@pytest.mark.slow
def test_classifier_probabilities_hold_one_batch_of_draws(data):
    X, y = data
    labels = np.where(y > 3.0, "high", "low")
    clf = ImpactClassifier(inference="svi", num_steps=200, num_samples=N_DRAWS, random_state=0,
                           batch_size=BATCH).fit(X[:300], labels[:300])
    probs, peak = _peak(lambda: clf.predict_proba(X))
    assert peak < ALL_DRAWS / 10
    full = np.asarray(outcome_draws(clf, X, stat="probs"), dtype=np.float64).mean(0)
    np.testing.assert_array_equal(probs, full)
    assert clf.predict(X).shape == (N_ROWS,)


def test_draw_quantiles_are_numpys_to_the_bit():
    # NaN and infinite draws included: NumPy's linear method, its order statistics, its
    # interpolation from the nearer end, and NaN for a row with a NaN
    from skimpact._sinks import draw_quantiles

    rng = np.random.default_rng(3)
    q = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    for shape, dtype in [((1,), np.float32), ((7, 3), np.float32), ((50, 2, 4), np.float64),
                         ((1000, 20), np.float32)]:
        draws = rng.normal(size=shape).astype(dtype)
        if draws.ndim > 1:
            draws[1, 0] = np.nan
            draws[0, -1] = np.inf
        with np.errstate(invalid="ignore"):  # inf - inf, as in NumPy
            got, want = draw_quantiles(draws, q), np.quantile(draws, q, axis=0)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
