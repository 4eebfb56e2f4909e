"""The core estimator: parameters, fitting, recovery of known values, pandas, errors, pickling."""

import pickle

import joblib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import xarray as xr
from models import linear, linear_with_input, payments_model, seed_data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from skimpact import ImpactClassifier, ImpactRegressor, InferenceError, Model

FAST = dict(inference="svi", num_steps=1500, num_samples=200, random_state=0)


@pytest.fixture(scope="module")
def data():
    return seed_data()


@pytest.fixture(scope="module")
def svi_fit(data):
    X, y = data
    return ImpactRegressor(Model(linear, prior_scale=1.0), **FAST).fit(X, y)


@pytest.fixture(scope="module")
def nuts_fit(data):
    X, y = data
    est = ImpactRegressor(
        Model(linear), inference="nuts", num_warmup=300, num_samples=300, num_chains=2,
        random_state=0,
    )
    return est.fit(X, y)


@pytest.fixture(scope="module")
def frame_fit():
    rng = np.random.default_rng(1)
    n = 150
    X = pd.DataFrame(
        {"price": rng.normal(10, 2, n), "promo": rng.binomial(1, 0.5, n)},
        index=pd.Index([f"store{i}" for i in range(n)], name="store"),
    )
    y = 50 - 3 * X["price"] + 8 * X["promo"] + rng.normal(0, 2, n)
    return X, y, ImpactRegressor(**FAST).fit(X, y)


# ----------------------------------------------------------------------------- params
def test_model_exposes_factory_defaults_and_given_hyperparameters():
    m = Model(linear)
    assert m.get_params() == {"factory": linear, "prior_scale": 1.0}
    assert Model(linear, prior_scale=0.3).get_params()["prior_scale"] == 0.3
    assert repr(Model(linear, prior_scale=0.3)) == "Model(linear, prior_scale=0.3)"


def test_unknown_hyperparameter_names_the_factory():
    with pytest.raises(ValueError, match=r"Unknown hyperparameter.*scale.*linear"):
        Model(linear, scale=1.0)


def test_get_set_params_reach_model_hyperparameters():
    est = ImpactRegressor(Model(linear, prior_scale=1.0), inference="svi", num_steps=10)
    params = est.get_params(deep=True)
    assert params["model__prior_scale"] == 1.0
    assert params["num_steps"] == 10
    est.set_params(model__prior_scale=0.25, num_steps=20)
    assert est.model.hyperparameters["prior_scale"] == 0.25
    assert est.num_steps == 20


def test_clone_is_independent_and_unfitted(svi_fit):
    c = clone(svi_fit)
    assert not hasattr(c, "posterior_")
    assert c.model is not svi_fit.model
    assert c.model == svi_fit.model
    c.set_params(model__prior_scale=9.0)
    assert svi_fit.model.hyperparameters["prior_scale"] == 1.0
    assert "prior_scale=1.0" in repr(svi_fit)


@pytest.mark.slow
def test_grid_search_over_factory_hyperparameters(data):
    X, y = data
    est = ImpactRegressor(Model(linear, prior_scale=1.0), inference="svi", num_steps=300, num_samples=50,
                          random_state=0)
    search = GridSearchCV(est, {"model__prior_scale": [0.01, 1.0]}, cv=2).fit(X, y)
    assert search.best_params_ == {"model__prior_scale": 1.0}
    assert search.cv_results_["mean_test_score"][0] < search.cv_results_["mean_test_score"][1]


# -------------------------------------------------------------------------- recovery
def _within(post, name, truth, mass=0.99):
    draws = post[name].values.reshape(post.sizes["chain"] * post.sizes["draw"], -1)
    lo, hi = np.quantile(draws, [(1 - mass) / 2, (1 + mass) / 2], axis=0)
    return np.all((lo <= truth) & (truth <= hi))


def test_seed_linear_model_recovered_by_svi(svi_fit):
    post = svi_fit.posterior_["posterior"]
    assert _within(post, "a", 1.0) and _within(post, "b", [2.0]) and _within(post, "sigma", 0.5)
    assert abs(float(post["b"].mean()) - 2.0) < 0.1
    assert abs(float(post["sigma"].mean()) - 0.5) < 0.06


def test_seed_linear_model_recovered_by_nuts(nuts_fit):
    post = nuts_fit.posterior_["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 300
    assert _within(post, "a", 1.0) and _within(post, "b", [2.0]) and _within(post, "sigma", 0.5)
    assert nuts_fit.posterior_["sample_stats"]["diverging"].shape == (2, 300)


@pytest.mark.slow
def test_default_linear_model_recovers_coefficients_with_map(frame_fit):
    X, y, _ = frame_fit
    est = ImpactRegressor(inference="map", num_steps=2000, num_samples=20, random_state=0)
    post = est.fit(X, y).posterior_["posterior"]
    assert post.sizes["chain"] == 1
    coef = post["coef"].isel(chain=0, draw=0)
    np.testing.assert_allclose(coef.sel(feature=["price", "promo"]), [-3.0, 8.0], atol=0.5)
    # every MAP draw is the same point estimate
    assert float(post["coef"].std("draw").max()) < 1e-5


def test_default_linear_model_on_dataframe_recovers_coefficients(frame_fit):
    _, _, est = frame_fit
    post = est.posterior_["posterior"]
    assert list(post["coef"].dims) == ["chain", "draw", "feature"]
    assert list(post["feature"].values) == ["price", "promo"]
    assert _within(post, "coef", [-3.0, 8.0])
    assert _within(post, "sigma", 2.0)


def test_classifier_recovers_logistic_coefficients_with_string_labels():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 2))
    logits = 0.5 + 1.5 * X[:, 0] - 1.0 * X[:, 1]
    y = np.where(rng.random(600) < 1 / (1 + np.exp(-logits)), "buy", "skip")
    clf = ImpactClassifier(**FAST).fit(X, y)
    assert clf.classes_.tolist() == ["buy", "skip"]
    # class 1 is "skip": its logit is -logits; beta is per feature sd
    beta = clf.posterior_["posterior"]["beta"].values.reshape(-1, 2) / X.std(0)
    lo, hi = np.quantile(beta, [0.005, 0.995], axis=0)
    assert np.all((lo <= [-1.5, 1.0]) & ([-1.5, 1.0] <= hi))
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X)) <= {"buy", "skip"}
    assert clf.score(X, y) > 0.7


@pytest.mark.slow
def test_multiclass_classifier_predicts_labels():
    rng = np.random.default_rng(4)
    centers = np.array([[0, 3], [3, 0], [-3, -3]])
    labels = rng.integers(0, 3, 300)
    X = centers[labels] + rng.normal(size=(300, 2))
    clf = ImpactClassifier(inference="svi", num_steps=1000, num_samples=100, random_state=0).fit(X, labels)
    assert clf.predict_proba(X).shape == (300, 3)
    assert clf.score(X, labels) > 0.95


# ---------------------------------------------------------------------- determinism
def test_fixed_random_state_makes_fit_and_predictions_deterministic(data, svi_fit):
    X, y = data
    again = ImpactRegressor(Model(linear, prior_scale=1.0), **FAST).fit(X, y)
    xr.testing.assert_equal(again.posterior_["posterior"], svi_fit.posterior_["posterior"])
    np.testing.assert_array_equal(again.predict(X), svi_fit.predict(X))
    a = svi_fit.sample_posterior_predictive(X[:10])["predictions"]["y"]
    b = svi_fit.sample_posterior_predictive(X[:10])["predictions"]["y"]
    xr.testing.assert_equal(a, b)


def test_different_random_states_differ(data, svi_fit):
    X, y = data
    other = ImpactRegressor(Model(linear, prior_scale=1.0), **{**FAST, "random_state": 1})
    other.fit(X, y)
    assert not np.array_equal(
        other.posterior_["posterior"]["a"].values, svi_fit.posterior_["posterior"]["a"].values
    )


# --------------------------------------------------------------------- output schema
def test_posterior_tree_schema(svi_fit):
    tree = svi_fit.posterior_
    assert set(tree.children) == {"posterior", "observed_data"}
    post = tree["posterior"]
    # the outcome is observed when the guide is set up, so it is never a latent draw
    assert set(post.data_vars) == {"a", "b", "sigma"}
    assert post["a"].dims == ("chain", "draw")
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 200
    for key in ("created_at", "skimpact_version", "inference", "inference_settings"):
        assert key in tree.attrs
    assert tree.attrs["inference"] == "svi"
    assert '"num_steps": 1500' in tree.attrs["inference_settings"]


def test_posterior_predictive_groups_follow_in_sample(data, svi_fit):
    X, _ = data
    new = svi_fit.sample_posterior_predictive(X[:7])
    assert set(new.children) == {"posterior", "predictions"}
    assert new["predictions"]["y"].dims == ("chain", "draw", "obs")
    assert new["predictions"]["y"].shape == (1, 200, 7)
    same = svi_fit.sample_posterior_predictive(X, in_sample=True)
    assert set(same.children) == {"posterior", "posterior_predictive"}


def test_predictive_draws_match_the_model(data, svi_fit):
    X, _ = data
    draws = svi_fit.sample_posterior_predictive(X[:1])["predictions"]["y"].values.ravel()
    post = svi_fit.posterior_["posterior"]
    mu = (post["a"] + post["b"].isel(b_dim_0=0) * X[0, 0]).values.ravel()
    sigma = post["sigma"].values.ravel()
    z = (draws - mu) / sigma  # standardised noise: mean 0, sd 1
    assert abs(z.mean()) < 0.2 and abs(z.std() - 1) < 0.15


def test_pandas_in_and_out_keeps_the_row_index(frame_fit):
    X, y, est = frame_fit
    new = X.iloc[[5, 2, 9]]
    tree = est.sample_posterior_predictive(new)
    assert tree["predictions"]["obs"].values.tolist() == ["store5", "store2", "store9"]
    interval = est.predict_interval(new, coverage=0.9)
    assert list(interval.index) == ["store5", "store2", "store9"]
    assert list(interval.columns) == ["lower", "upper"]
    assert np.all(interval["lower"] < est.predict(new)) and np.all(est.predict(new) < interval["upper"])
    q = est.predict_quantiles(new, [0.1, 0.5, 0.9])
    assert list(q.columns) == [0.1, 0.5, 0.9] and list(q.index) == list(new.index)
    assert np.all(np.diff(q.to_numpy(), axis=1) > 0)
    # 90% intervals cover about 90% of the training outcomes
    cover = est.predict_interval(X, coverage=0.9)
    rate = np.mean((cover["lower"] <= y) & (y <= cover["upper"]))
    assert 0.82 < rate < 0.97


def test_interval_on_arrays_is_an_array(data, svi_fit):
    X, _ = data
    out = svi_fit.predict_interval(X[:4])
    assert isinstance(out, np.ndarray) and out.shape == (4, 2)


def test_score_is_r2(data, svi_fit):
    X, y = data
    pred = svi_fit.predict(X)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert svi_fit.score(X, y) == pytest.approx(r2, rel=1e-6)
    assert svi_fit.score(X, y) > 0.9


# ------------------------------------------------------------------ inputs / outcome
def test_keyword_inputs_are_passed_to_the_model():
    rng = np.random.default_rng(5)
    X, C = rng.normal(size=(200, 1)), rng.normal(size=200)
    y = 2 * X[:, 0] - 1.5 * C + rng.normal(0, 0.5, 200)
    est = ImpactRegressor(linear_with_input, **FAST).fit(X, y, C=C)
    assert est.input_names_ == ("C",)
    assert abs(float(est.posterior_["posterior"]["g"].mean()) + 1.5) < 0.15
    with pytest.raises(ValueError, match=r"missing \['C'\]"):
        est.predict(X)
    assert est.predict(X[:3], C=C[:3]).shape == (3,)


def test_inputs_can_come_from_dataframe_columns():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": rng.normal(size=200), "C": rng.normal(size=200)})
    y = 2 * df["x"] - 1.5 * df["C"] + rng.normal(0, 0.5, 200)
    est = ImpactRegressor(linear_with_input, inputs=["C"], **FAST).fit(df, y)
    assert est.n_features_in_ == 1 and est.feature_names_in_.tolist() == ["x"]
    assert abs(float(est.posterior_["posterior"]["g"].mean()) + 1.5) < 0.15
    assert est.predict(df.iloc[:4]).shape == (4,)


def test_custom_outcome_argument_name():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 2))
    payments = X @ [1.0, -1.0] + rng.normal(0, 1, 100)
    est = ImpactRegressor(payments_model, outcome="payments", **FAST).fit(X, payments)
    assert est.model_info_.outcome_site == "payments"
    assert est.sample_posterior_predictive(X[:3])["predictions"]["payments"].shape[-1] == 3


# ----------------------------------------------------------------------------- errors
def test_unfitted_use_raises_not_fitted(data):
    X, _ = data
    with pytest.raises(NotFittedError):
        ImpactRegressor().predict(X)
    with pytest.raises(NotFittedError):
        ImpactRegressor().sample_posterior_predictive(X)


def test_nan_in_x_names_the_column():
    X = pd.DataFrame({"good": [1.0, 2.0, 3.0], "bad": [1.0, np.nan, 3.0]})
    with pytest.raises(ValueError, match=r"X contains NaN or infinity in column\(s\) \['bad'\]"):
        ImpactRegressor(inference="svi", num_steps=10).fit(X, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"column\(s\) \[1\]"):
        ImpactRegressor(inference="svi", num_steps=10).fit(np.array([[1.0, np.inf], [2.0, 1.0]]), [1.0, 2.0])


def test_nan_in_y_is_a_clear_error():
    with pytest.raises(ValueError, match=r"y contains NaN.*missing='mask'"):
        ImpactRegressor(inference="svi", num_steps=10).fit(np.ones((3, 1)), [1.0, np.nan, 3.0])


def test_wrong_number_of_features_uses_sklearn_message(data, svi_fit):
    with pytest.raises(ValueError, match="X has 2 features, but ImpactRegressor is expecting 1"):
        svi_fit.predict(np.ones((3, 2)))


def _broken_factory(width=1.0):
    raise RuntimeError("width must be positive")


def _not_a_model(width=1.0):
    return 42


def test_factory_failures_name_the_factory_and_hyperparameters(data):
    X, y = data
    with pytest.raises(ValueError, match=r"_broken_factory.*\{'width': 2\.0\}.*width must be"):
        ImpactRegressor(Model(_broken_factory, width=2.0), inference="svi", num_steps=5).fit(X, y)
    with pytest.raises(TypeError, match=r"_not_a_model.*returned int"):
        ImpactRegressor(Model(_not_a_model), inference="svi", num_steps=5).fit(X, y)


def _unobserved_model(X, y=None):
    b = numpyro.sample("b", dist.Normal(0, 1))
    numpyro.deterministic("mu", X[:, 0] * b)
    numpyro.sample("out", dist.Normal(0, 1))


def test_model_without_outcome_site_lists_its_sites(data):
    X, y = data
    with pytest.raises(ValueError, match=r"No sample site.*`y=`.*b \(sample\), mu \(deterministic\)"):
        ImpactRegressor(_unobserved_model, inference="svi", num_steps=5).fit(X, y)


def test_nan_svi_loss_is_an_error_with_the_step_number(data):
    X, y = data
    est = ImpactRegressor(Model(linear), inference="svi", learning_rate=1e8, num_steps=50, random_state=0)
    with pytest.raises(InferenceError, match=r"SVI loss became (nan|inf) at step \d+ of 50\..*learning_rate"):
        est.fit(X, y)


def test_bad_inference_setting_is_rejected(data):
    X, y = data
    with pytest.raises(ValueError, match="inference. parameter of ImpactRegressor must be a str among"):
        ImpactRegressor(inference="vi").fit(X, y)


# ---------------------------------------------------------------------------- pickle
def test_pickle_and_joblib_round_trip_predict_identically(data, svi_fit, tmp_path):
    X, _ = data
    expected = svi_fit.predict(X)
    restored = pickle.loads(pickle.dumps(svi_fit))
    np.testing.assert_array_equal(restored.predict(X), expected)
    path = tmp_path / "est.joblib"
    joblib.dump(svi_fit, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict(X), expected)
    xr.testing.assert_equal(
        loaded.sample_posterior_predictive(X[:5])["predictions"],
        svi_fit.sample_posterior_predictive(X[:5])["predictions"],
    )


def _mu_outside_plate(X, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 2.0))
    mu = numpyro.deterministic("mu", X[:, 0] * b)
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 0.5), obs=y)


def test_per_row_deterministic_outside_the_plate_gets_the_row_dim(frame_fit):
    X, y, _ = frame_fit
    est = ImpactRegressor(_mu_outside_plate, inference="map", num_steps=200, num_samples=5,
                          random_state=0).fit(X[["price"]], y)
    mu = est.posterior_["posterior"]["mu"]
    assert mu.dims == ("chain", "draw", "obs")
    assert mu["obs"].values.tolist() == X.index.tolist()


def _weights_factory(w=None):
    return linear_with_input


def test_cache_keys_tell_array_hyperparameters_apart():
    w = np.arange(5000.0)
    changed = w.copy()
    changed[2500] = -1.0  # hidden in the middle of numpy's truncated repr
    assert Model(_weights_factory, w=w).cache_key() == Model(_weights_factory, w=w.copy()).cache_key()
    assert Model(_weights_factory, w=w).cache_key() != Model(_weights_factory, w=changed).cache_key()
