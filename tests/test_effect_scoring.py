"""Effect-aware scorers: their losses by definition, and model selection by them picking the
model whose effects vary as the simulated ones do, where a predictive score cannot tell."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skimpact import ImpactRegressor
from skimpact.effect_scoring import pseudo_outcome
from skimpact.metrics import effect_scorer

N = 300


def per_arm(X):
    """X, and the treatment (column T) times each covariate."""
    out = X.copy()
    for c in X.columns.drop("T"):
        out[f"T_{c}"] = X["T"] * X[c]
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"T": (rng.random(N) < 0.5).astype(float), "x": rng.normal(size=N),
                      "z": rng.normal(size=N)})
    tau = 1.0 + 2.0 * X["x"].to_numpy()
    y = X["x"] + 0.5 * X["z"] + X["T"] * tau + rng.normal(0, 0.5, N)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def search(data):
    X, y = data
    pipe = make_pipeline(FunctionTransformer(), ImpactRegressor(
        inference="svi", num_steps=800, num_samples=100, random_state=0))
    grid = GridSearchCV(pipe, {"functiontransformer__func": [None, per_arm]},
                        cv=KFold(2, shuffle=True, random_state=0),
                        scoring={"r": effect_scorer("T"), "dr": effect_scorer("T", method="dr")},
                        refit="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return grid.fit(X, y)


@pytest.mark.slow
def test_both_losses_pick_the_per_arm_model_through_a_pipeline(search):
    funcs = search.cv_results_["param_functiontransformer__func"]
    for name in ("r", "dr"):
        scores = search.cv_results_[f"mean_test_{name}"]
        assert funcs[int(np.argmax(scores))] is per_arm, (name, scores)
    assert search.best_params_["functiontransformer__func"] is per_arm


@pytest.mark.slow
def test_scores_are_the_losses_of_their_definitions(search, data):
    X, y = data
    est = search.best_estimator_
    for method in ("r", "dr"):
        scorer = effect_scorer("T", method=method, cv=3)
        t = X["T"].to_numpy()
        tau = scorer.effects(est, X)
        nuisance = scorer.nuisances(X[["x", "z"]], t, y)
        if method == "r":
            loss = ((y - nuisance["m"]) - (t - nuisance["e"]) * tau) ** 2
        else:
            loss = (pseudo_outcome(y, t, nuisance) - tau) ** 2
        assert scorer(est, X, y) == pytest.approx(-loss.mean())
        # the per-row effects are near the truth, so the DR loss is near the pseudo-outcome's
        # own spread around the true effect
        assert np.sqrt(np.mean((tau - (1 + 2 * X["x"])) ** 2)) < 0.3


@pytest.mark.slow
def test_refuses_a_treatment_that_is_not_binary_or_an_arm_too_small(search, data):
    X, y = data
    est = search.best_estimator_
    with pytest.raises(ValueError, match="must be binary"):
        effect_scorer("x")(est, X, y)
    few = X.assign(T=np.r_[np.ones(5), np.zeros(N - 5)])
    with pytest.raises(ValueError, match="at least 10 rows in each arm"):
        effect_scorer("T")(est, few, y)
    with pytest.raises(KeyError, match="not a column of X"):
        effect_scorer("dose")(est, X, y)
