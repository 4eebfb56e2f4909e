"""Pipelines, metadata routing, searches, parallel cross-validation and sample weights."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import sklearn
from scipy.stats import loguniform
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skimpact
from skimpact import ImpactClassifier, ImpactRegressor, Model
from skimpact.metrics import log_score_scorer, neg_crps_scorer
from skimpact.builtin_models import linear_model

MAP = dict(inference="map", num_steps=300, num_samples=1, learning_rate=0.05, random_state=0)
SVI = dict(inference="svi", num_steps=300, num_samples=50, learning_rate=0.05, random_state=0)


def offset_model(prior_scale=1.0):
    """Linear model with an extra per-row keyword input ``C`` whose slope is ``a``."""

    def model(X, y=None, *, C):
        a = numpyro.sample("a", dist.Normal(0.0, prior_scale))
        b = numpyro.sample("b", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(a * C + X @ b, sigma), obs=y)

    return model


def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "x1": rng.normal(5.0, 2.0, n),
            "x2": rng.normal(size=n),
            "g": rng.choice(["a", "b", "c"], n),
        }
    )
    y = 2.0 * X["x1"] - X["x2"] + X["g"].map({"a": 0.0, "b": 1.0, "c": -1.0}) + rng.normal(
        0, 0.5, n
    )
    return X, y.to_numpy()


def _pipeline(**settings):
    return make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["x1", "x2"]), ("cat", OneHotEncoder(), ["g"])]
        ),
        ImpactRegressor(**{**MAP, **settings}),
    )


# ------------------------------------------------------------------------- pipelines
def test_pipeline_fits_predicts_scores_dataframe():
    X, y = _frame()
    pipe = _pipeline().fit(X, y)
    pred = pipe.predict(X)
    assert pred.shape == (len(X),)
    assert pipe.score(X, y) > 0.95
    np.testing.assert_allclose(pipe.score(X, y), 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rtol=1e-6)


def test_effect_of_raw_column_goes_through_the_transformers():
    X, y = _frame()
    pipe = _pipeline().fit(X, y)
    eff = skimpact.effect(pipe, X, {"x1": lambda v: v + 1.0}, kind="mean")
    per_row = eff["predictions"]["y"].values.mean((0, 1))
    # kind="mean" is the change of the conditional mean: predict on the shifted raw frame.
    shifted = X.assign(x1=X["x1"] + 1.0)
    np.testing.assert_allclose(per_row, pipe.predict(shifted) - pipe.predict(X), atol=1e-4)
    assert per_row.mean() == pytest.approx(2.0, abs=0.1)
    cf = skimpact.counterfactual_predict(pipe, X, {"x1": 0.0})
    assert cf["predictions"]["y"].shape[-1] == len(X)


def test_effect_on_a_model_site_inside_the_final_estimator():
    X, y = _frame()
    pipe = _pipeline().fit(X, y)
    est = pipe[-1]
    alpha = est.posterior_["posterior"]["alpha"].values  # (chain, draw)
    eff = skimpact.effect(pipe, X, {"alpha": 0.0}, kind="mean")
    y_scale = float(est.predictor_.program.scales["y_scale"])
    expected = np.broadcast_to((-alpha * y_scale)[..., None], eff["predictions"]["y"].shape)
    np.testing.assert_allclose(eff["predictions"]["y"].values, expected, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------- metadata routing
def _routing_data(n=100, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    C = rng.normal(size=n)
    y = 1.5 * C + X @ [1.0, -0.5] + rng.normal(0, 0.3, n)
    return X, C, y


@pytest.mark.slow
def test_model_inputs_route_through_pipeline_and_grid_search():
    X, C, y = _routing_data()
    with sklearn.config_context(enable_metadata_routing=True):
        est = (
            ImpactRegressor(Model(offset_model), **MAP)
            .set_fit_request(C=True)
            .set_predict_request(C=True)
            .set_score_request(C=True)
        )
        pipe = make_pipeline(StandardScaler(), est).fit(X, y, C=C)
        a_hat = float(pipe[-1].posterior_["posterior"]["a"].mean())
        assert a_hat == pytest.approx(1.5, abs=0.1)
        Xs = StandardScaler().fit(X).transform(X)
        np.testing.assert_allclose(pipe.predict(X, C=C), pipe[-1].predict(Xs, C=C), rtol=1e-5)
        assert pipe.score(X, y, C=C) > 0.9

        search = GridSearchCV(
            pipe, {"impactregressor__model__prior_scale": [0.01, 1.0]}, cv=2
        ).fit(X, y, C=C)
        assert search.best_params_ == {"impactregressor__model__prior_scale": 1.0}
        assert search.best_estimator_.predict(X, C=C).shape == (len(X),)

        unrequested = make_pipeline(StandardScaler(), ImpactRegressor(Model(offset_model), **MAP))
        with pytest.raises(TypeError, match="not routed to any object"):
            unrequested.fit(X, y, C=C)


def test_request_setters_need_routing_enabled():
    with pytest.raises(RuntimeError, match="enable_metadata_routing"):
        ImpactRegressor().set_fit_request(C=True)


# ---------------------------------------------------------------------------- searches
@pytest.mark.slow
def test_grid_search_over_model_and_inference_parameters_with_probabilistic_scorers():
    X, y = _frame(n=90)
    search = GridSearchCV(
        _pipeline(**SVI),
        {
            "impactregressor__model": [Model(linear_model)],
            "impactregressor__model__prior_scale": [0.01, 2.5],
            "impactregressor__num_steps": [50, 300],
        },
        scoring={"crps": neg_crps_scorer, "log": log_score_scorer, "r2": "r2"},
        refit="crps",
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert search.best_params_["impactregressor__model__prior_scale"] == 2.5
    assert search.best_params_["impactregressor__num_steps"] == 300
    res = search.cv_results_
    assert len(res["mean_test_crps"]) == 4
    best = search.best_index_
    assert res["mean_test_log"][best] == np.max(res["mean_test_log"])
    assert res["mean_test_crps"][best] < 0 < res["mean_test_r2"][best]


@pytest.mark.slow
def test_randomized_search_samples_hyperparameters_and_inference_settings():
    X, y = _frame(n=90)
    search = RandomizedSearchCV(
        ImpactRegressor(Model(linear_model), **MAP),
        {"model__prior_scale": loguniform(0.01, 10.0), "learning_rate": [0.02, 0.05]},
        n_iter=3,
        scoring=neg_crps_scorer,
        cv=2,
        random_state=0,
    ).fit(X[["x1", "x2"]], y)
    scales = [p["model__prior_scale"] for p in search.cv_results_["params"]]
    assert len(set(scales)) == 3 and all(0.01 <= s <= 10.0 for s in scales)
    assert search.best_estimator_.model_.hyperparameters["prior_scale"] == search.best_params_[
        "model__prior_scale"
    ]


# ------------------------------------------------------------------ parallel backends
def _cv(n_jobs=None):
    X, y = _frame(n=80)
    return cross_validate(
        ImpactRegressor(**SVI),
        X[["x1", "x2"]],
        y,
        cv=2,
        scoring={"crps": neg_crps_scorer, "r2": "r2"},
        n_jobs=n_jobs,
    )


@pytest.mark.slow
def test_cross_validate_in_processes_and_on_dask_equals_sequential():
    import distributed
    import joblib

    sequential = _cv()
    processes = _cv(n_jobs=2)
    # Two threads in one worker: fits run concurrently in one process, which NumPyro's
    # global handler stack only survives because the estimators serialise tracing.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            on_dask = _cv(n_jobs=2)
    with joblib.parallel_config(backend="threading"):
        threads = _cv(n_jobs=2)
    for key in ("test_crps", "test_r2"):
        for parallel in (processes, on_dask, threads):
            np.testing.assert_allclose(parallel[key], sequential[key], rtol=1e-6)
    assert np.all(sequential["test_r2"] > 0.8)  # the group effect is left out of X


# ------------------------------------------------------------------------ sample_weight
@pytest.mark.slow
@pytest.mark.parametrize("model", [None, Model(offset_model)])
def test_weighted_fit_equals_repeated_rows(model):
    X, C, y = _routing_data(n=40, seed=2)
    w = np.random.default_rng(3).integers(0, 4, size=40)
    inputs = {} if model is None else {"C": C}
    rep_inputs = {} if model is None else {"C": np.repeat(C, w)}
    weighted = ImpactRegressor(model, **MAP).fit(X, y, sample_weight=w, **inputs)
    repeated = ImpactRegressor(model, **MAP).fit(
        np.repeat(X, w, axis=0), np.repeat(y, w), **rep_inputs
    )
    for site in weighted.model_info_.latent_sites:
        np.testing.assert_allclose(
            weighted.posterior_["posterior"][site].values,
            repeated.posterior_["posterior"][site].values,
            rtol=1e-3, atol=1e-4,
        )
    np.testing.assert_allclose(
        weighted.predict(X, **inputs), repeated.predict(X, **inputs), rtol=1e-3, atol=1e-4
    )
    # Weights scale the likelihood only: unweighted, the fit differs.
    plain = ImpactRegressor(model, **MAP).fit(X, y, **inputs)
    assert not np.allclose(plain.predict(X, **inputs), weighted.predict(X, **inputs), atol=1e-3)


@pytest.mark.slow
def test_weighted_classifier_matches_repeated_rows():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 2))
    y = (X[:, 0] + rng.normal(0, 0.5, 50) > 0).astype(int)
    w = rng.integers(0, 3, size=50)
    a = ImpactClassifier(**MAP).fit(X, y, sample_weight=w)
    b = ImpactClassifier(**MAP).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- example
@pytest.mark.slow
def test_pipeline_search_example_runs_and_recovers_the_price_effect(capsys):
    import pathlib
    import runpy

    from skimpact import summarize_effect

    path = pathlib.Path(__file__).parents[1] / "examples" / "pipeline_search.py"
    search, eff = runpy.run_path(str(path))["main"]()
    printed = capsys.readouterr().out
    assert "best hyperparameters:" in printed and "ATE" in printed
    assert set(search.best_params_) == {
        "impactregressor__model__prior_scale", "impactregressor__num_steps"
    }
    ate = summarize_effect(eff).loc["ATE"]
    assert ate["mean"] == pytest.approx(-3.0, abs=0.15)
