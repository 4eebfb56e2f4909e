"""The effect-handler toolbox through the estimator: prior predictive, return_sites
(deterministic sites included), masked missing outcomes and the model graph."""

import importlib.util
import sys
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from skimpact import ImpactRegressor


def mean_model(X, y=None):
    """Global coefficients with a deterministic per-row mean ``mu``."""
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        mu = numpyro.deterministic("mu", X @ b)
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def _data(n=60, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    y = (X @ np.array([1.0, -0.5]) + rng.normal(0, 0.3, n)).astype(np.float32)
    return X, y


def _fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ImpactRegressor(
            mean_model, inference="svi", num_steps=400, num_samples=100, random_state=0, **params
        ).fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return _fit(X, y), X, y


@pytest.mark.slow
def test_sample_prior_predictive_groups_and_moments(fitted):
    est, X, _ = fitted
    tree = est.sample_prior_predictive(X[:5], num_samples=4000)
    assert set(tree.children) == {"prior", "prior_predictive"}
    prior, pred = tree["prior"], tree["prior_predictive"]
    assert set(prior.data_vars) == {"b", "sigma", "mu"}
    assert dict(pred["y"].sizes) == {"chain": 1, "draw": 4000, "obs": 5}
    b = prior["b"].values.reshape(-1, 2)
    np.testing.assert_allclose(b.std(0), 1.0, atol=0.05)
    # mu = X b exactly, draw by draw.
    np.testing.assert_allclose(prior["mu"].values[0], b @ X[:5].T, rtol=1e-5, atol=1e-5)
    # Var y_i = |x_i|^2 Var b + E sigma^2 = |x_i|^2 + 1 under the prior.
    var = pred["y"].values[0].var(0)
    np.testing.assert_allclose(var, (X[:5] ** 2).sum(1) + 1.0, rtol=0.1)
    assert tree.attrs["quantity"] == "prior"
    again = est.sample_prior_predictive(X[:5], num_samples=4000)
    np.testing.assert_array_equal(again["prior"]["b"].values, prior["b"].values)
    only = est.sample_prior_predictive(X[:5], num_samples=10, return_sites=["mu"])
    assert set(only.children) == {"prior"} and set(only["prior"].data_vars) == {"mu"}


def test_return_sites_deterministic_on_every_prediction_method(fitted):
    est, X, _ = fitted
    b = est.posterior_["posterior"]["b"].values  # (chain, draw, 2)
    spp = est.sample_posterior_predictive(X, return_sites=["mu", "y"])
    assert set(spp["predictions"].data_vars) == {"mu", "y"}
    np.testing.assert_allclose(spp["predictions"]["mu"].values, b @ X.T, rtol=1e-5, atol=1e-5)
    cf = est.counterfactual_predict(X, {"b": np.zeros(2)}, return_sites=["mu"])
    assert set(cf["predictions"].data_vars) == {"mu"}
    np.testing.assert_array_equal(cf["predictions"]["mu"].values, 0.0)
    # Raising column 0 by one moves mu by b[0] in every draw and row.
    eff = est.effect(X, {0: X[:, 0] + 1.0}, return_sites=["mu"], kind="predictive")
    np.testing.assert_allclose(
        eff["predictions"]["mu"].values, np.broadcast_to(b[..., :1], (1, 100, 60)), atol=1e-5
    )
    with pytest.raises(KeyError, match="nope"):
        est.sample_posterior_predictive(X, return_sites=["nope"])


@pytest.mark.slow
def test_missing_outcomes_masked_equals_fit_on_observed_rows():
    X, y = _data(n=80, seed=2)
    missing = np.zeros(80, bool)
    missing[::7] = True
    y_nan = y.copy()
    y_nan[missing] = np.nan
    with pytest.raises(ValueError, match="missing='mask'"):
        _fit(X, y_nan)
    masked = _fit(X, y_nan, missing="mask")
    observed = _fit(X[~missing], y[~missing])
    for site in ("b", "sigma"):
        np.testing.assert_allclose(
            masked.posterior_["posterior"][site].values,
            observed.posterior_["posterior"][site].values,
            rtol=1e-4, atol=1e-5,
        )
    np.testing.assert_array_equal(
        np.isnan(masked.posterior_["observed_data"]["y"].values), missing
    )
    pred = masked.predict(X[missing])
    assert np.all(np.isfinite(pred))
    np.testing.assert_allclose(pred, observed.predict(X[missing]), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("graphviz") is None,
    reason="the graphviz Python package (extra skimpact[graph]) is not installed",
)
def test_render_model(fitted):
    est, X, y = fitted
    graph = est.render_model(X[:3], y[:3], render_distributions=True)
    source = graph.source
    for name in ("b", "sigma", "mu", "y", "cluster_obs"):
        assert name in source
    assert "Normal" in source and "HalfNormal" in source


def test_render_model_names_missing_extra(fitted, monkeypatch):
    est, X, y = fitted
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"skimpact\[graph\]"):
        est.render_model(X[:3], y[:3])
