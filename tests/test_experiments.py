"""Calibration to experiments: measured average effects as likelihood terms of the fit."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skimpact import Experiment, ImpactRegressor, effect, summarize_effect

TAU = 1.0
SHIFT = {"T": lambda t: t + 1.0}


def _confounded(n, seed=0):
    """T is nearly the observed W plus a little of the unobserved U, so the observational
    data say little about T's own effect, and that little is biased by U. A randomised
    experiment on 10% of the rows (half of them get T + 1) measures the effect, with the
    regression-adjusted difference in means and its standard error."""
    rng = np.random.default_rng(seed)
    W, U = rng.normal(size=n), rng.normal(size=n)
    T = W + 0.04 * U + 0.015 * rng.normal(size=n)
    y = TAU * T + W + 0.08 * U + rng.normal(size=n)
    X = pd.DataFrame({"T": T, "W": W})
    rows = rng.choice(n, n // 10, replace=False)
    treated = rng.integers(0, 2, rows.size)
    y_exp = TAU * (T[rows] + treated) + W[rows] + 0.08 * U[rows] + rng.normal(size=rows.size)
    design = np.column_stack([np.ones(rows.size), treated, T[rows], W[rows]])
    coef, resid = np.linalg.lstsq(design, y_exp, rcond=None)[:2]
    se = float(np.sqrt(resid[0] / (rows.size - 4) * np.linalg.inv(design.T @ design)[1, 1]))
    experiment = Experiment(X=X.iloc[rows], intervention=SHIFT, effect=float(coef[1]), se=se)
    return X, y, experiment


def _ate(est, X):
    return summarize_effect(effect(est, X, SHIFT, kind="mean")).iloc[0]


@pytest.fixture(scope="module")
def small():
    return _confounded(400, seed=1)


def _svi(**kw):
    return ImpactRegressor(inference="svi", num_steps=800, learning_rate=0.05, num_samples=200,
                           random_state=0, **kw)


@pytest.mark.slow  # two NUTS fits of a strongly correlated posterior
def test_one_experiment_removes_the_confounding_bias_with_nuts():
    X, y, experiment = _confounded(1000)
    est = ImpactRegressor(inference="nuts", num_warmup=200, num_samples=200, random_state=0)
    observational = _ate(clone(est).fit(X, y), X)
    calibrated = _ate(clone(est).fit(X, y, experiments=[experiment]), X)
    # the observational fit is biased by at least 2 posterior sd ...
    assert observational["mean"] - TAU >= 2 * observational["sd"]
    # ... the experiment brings the mean within 1 sd of the truth and narrows the interval
    assert abs(calibrated["mean"] - TAU) <= calibrated["sd"]
    width = calibrated["hdi_upper"] - calibrated["hdi_lower"]
    assert width < 0.5 * (observational["hdi_upper"] - observational["hdi_lower"])


def test_an_experiment_moves_the_svi_fit_to_the_truth(small):
    X, y, experiment = small
    plain = _ate(_svi().fit(X, y), X)
    est = _svi().fit(X, y, experiments=experiment)  # one Experiment needs no list
    calibrated = _ate(est, X)
    assert abs(plain["mean"] - TAU) > 0.5
    assert abs(calibrated["mean"] - TAU) < 0.3
    assert calibrated["sd"] < plain["sd"]
    # the experiment enters the fit only: predictions and the posterior are as usual
    assert set(est.posterior_["posterior"].data_vars) == {
        "alpha", "beta", "noise", "coef", "intercept", "sigma"}


def test_experiments_are_fit_data_for_clone_and_grid_search(small):
    X, y, experiment = small
    est = _svi()
    assert "experiments" not in est.get_params()
    search = GridSearchCV(est, {"model": [None]}, cv=2).fit(X, y, experiments=[experiment])
    assert abs(_ate(search.best_estimator_, X)["mean"] - TAU) < 0.3


def test_an_experiment_in_a_pipeline_is_given_in_the_final_estimator_columns(small):
    X, y, experiment = small
    pipe = Pipeline([("scale", StandardScaler()), ("est", _svi())])
    X_exp = pipe[:-1].fit(X).transform(experiment.X)
    scaled = Experiment(X=X_exp, intervention={0: lambda t: t + 1.0 / X["T"].std(ddof=0)},
                        effect=experiment.effect, se=experiment.se)
    pipe.fit(X, y, est__experiments=[scaled])
    assert abs(_ate(pipe, X)["mean"] - TAU) < 0.3


def test_an_experiment_with_a_baseline():
    """An experiment's intervention and baseline are scenarios as in effect()."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 1))
    y = 2 * X[:, 0] + rng.normal(0, 0.5, 100)
    exp = Experiment(X=X[:10], intervention={0: 1.0}, baseline={0: 0.0}, effect=2.0, se=0.01)
    est = ImpactRegressor(inference="nuts", num_warmup=100, num_samples=100,
                          random_state=0).fit(X, y, experiments=[exp])
    coef = est.posterior_["posterior"]["coef"].values
    assert abs(coef.mean() - 2.0) < 0.02


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"se": None}, ValueError, "Experiment needs `se`, the standard error"),
        ({"se": 0.0}, ValueError, "Experiment `se` must be positive"),
        ({"se": -1.0}, ValueError, "Experiment `se` must be positive"),
        ({"effect": np.nan}, ValueError, "Experiment `effect` must be a finite number"),
        ({"effect": None}, ValueError, "Experiment needs `effect`"),
        ({"intervention": {}}, ValueError, "needs `intervention`, a non-empty dict"),
        ({"X": None}, ValueError, "Experiment needs `X`"),
        ({"baseline": 0.0}, TypeError, "`baseline` must be a dict or None"),
        ({"inputs": [1]}, TypeError, "`inputs` must be a dict"),
    ],
)
def test_bad_experiment(kwargs, exc, words):
    args = {"X": np.zeros((3, 2)), "intervention": {0: 1.0}, "effect": 1.0, "se": 0.1, **kwargs}
    with pytest.raises(exc) as info:
        Experiment(**args)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "experiment, exc, words",
    [
        (Experiment(X=pd.DataFrame({"T": [0.0], "V": [1.0]}), intervention=SHIFT, effect=1.0,
                    se=0.1), ValueError, "experiments[0]: The feature names should match"),
        (Experiment(X=pd.DataFrame({"T": [0.0], "W": [1.0]}), intervention={"price": 1.0},
                    effect=1.0, se=0.1), KeyError, "experiments[0]: Unknown intervention name"),
        (Experiment(X=pd.DataFrame({"T": [0.0], "W": [1.0]}), intervention={"y": 1.0},
                    effect=1.0, se=0.1), ValueError, "Cannot intervene on the outcome site"),
        ({"X": 1}, TypeError, "experiments[0] is a dict; give skimpact.Experiment"),
    ],
)
def test_experiment_that_does_not_fit_the_estimator(small, experiment, exc, words):
    X, y, _ = small
    with pytest.raises(exc) as info:
        _svi().fit(X, y, experiments=[experiment])
    assert words in str(info.value)


def test_experiments_must_be_a_list(small):
    X, y, _ = small
    with pytest.raises(TypeError, match="`experiments` must be a list of skimpact.Experiment"):
        _svi().fit(X, y, experiments="lift")
