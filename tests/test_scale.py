"""Scale: compile counts across calls and clones, local latents on new rows, Zarr
streaming, minibatch SVI."""

import os

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import skimpact
from skimpact import ImpactRegressor, Model
from skimpact._sinks import ZarrSink

from models import slopes

_COMPILES = [0]


def _count(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def _hier(X, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("obs", X.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, 1.0))
        numpyro.sample("y", dist.Normal(theta + X[:, 0], 0.3), obs=y)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0]) + 0.3 * rng.normal(size=n)).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _data(200)
    est = ImpactRegressor(
        Model(slopes), inference="svi", num_steps=300, num_samples=40, random_state=0, batch_size=64
    )
    return est.fit(X, y), X


def test_repeated_calls_and_clones_do_not_recompile(fitted):
    est, X = fitted
    est.counterfactual_predict(X, {"b": np.array([1.0, 0.0])})
    est.predict(X)
    before = _COMPILES[0]
    for value in (0.0, 1.0, 2.0):
        est.counterfactual_predict(X, {"b": np.array([value, 0.0])})
        est.predict(X)
    assert _COMPILES[0] == before
    # A clone with equal settings fitted on data of the same shape reuses the compiled SVI
    # steps and, for predictions, the compiled engine.
    twin = clone(est).fit(*_data(200, seed=1))
    twin.counterfactual_predict(X, {"b": np.array([3.0, 0.0])})
    twin.predict(X)
    assert _COMPILES[0] == before
    assert not np.allclose(twin.predict(X), est.predict(X))  # fitted anew, not shared


def test_any_row_count_compiles_once_per_bucket(fitted):
    est, X = fitted
    est.sample_posterior_predictive(X[:40])  # padded to 64 rows: compiles that shape
    before = _COMPILES[0]
    for n in (33, 47, 64, 200, 150):  # buckets of 64 and full 64-row batches
        out = est.sample_posterior_predictive(X[:n])
        assert out["predictions"]["y"].shape == (1, 40, n)
    assert _COMPILES[0] == before


def test_batch_size_does_not_change_predict(fitted):
    est, X = fitted
    one = est.predict(X)
    other = clone(est).set_params(batch_size=7).fit(*_data(200))
    np.testing.assert_allclose(one, other.predict(X), rtol=1e-5, atol=1e-5)


def test_local_latents_for_new_rows_of_any_count():
    X, y = _data(60)
    est = ImpactRegressor(_hier, inference="svi", num_steps=300, num_samples=30, random_state=0, batch_size=16)
    est.fit(X, y)
    inside = est.sample_posterior_predictive(X, in_sample=True)["posterior_predictive"]
    fitted_theta = est.posterior_["posterior"]["theta"].values
    np.testing.assert_array_equal(inside["theta"].values, fitted_theta)
    for n in (1, 17, 95):
        Xn, _ = _data(n, seed=n)
        new = est.sample_posterior_predictive(Xn)["predictions"]
        assert new["theta"].shape == (1, 30, n)
        # New rows draw theta ~ Normal(mu, 1) per draw of mu: spread about one.
        resid = new["theta"].values - est.posterior_["posterior"]["mu"].values[..., None]
        if n > 1:
            assert 0.6 < resid.std() < 1.4
    with pytest.raises(ValueError, match="in_sample=True"):
        est.sample_posterior_predictive(X[:10], in_sample=True)


def test_zarr_store_streams_and_matches_memory(fitted, tmp_path):
    est, X = fitted
    path = tmp_path / "pp.zarr"
    lazy = est.sample_posterior_predictive(X, store=path)
    eager = est.sample_posterior_predictive(X)
    y = lazy["predictions"]["y"]
    assert y.chunks is not None  # Dask-backed
    np.testing.assert_array_equal(y.values, eager["predictions"]["y"].values)
    reopened = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(reopened["predictions"]["y"].values, y.values)
    np.testing.assert_array_equal(reopened["posterior"]["b"].values, est.posterior_["posterior"]["b"].values)
    assert os.listdir(tmp_path) == ["pp.zarr"]
    with pytest.raises(FileExistsError):
        est.sample_posterior_predictive(X, store=path)


def test_zarr_effect_and_counterfactual(fitted, tmp_path):
    est, X = fitted
    cf = est.counterfactual_predict(X, {"b": np.array([0.0, 0.0])}, store=tmp_path / "cf.zarr")
    np.testing.assert_allclose(
        cf["predictions"]["y"].values,
        est.counterfactual_predict(X, {"b": np.array([0.0, 0.0])})["predictions"]["y"].values,
    )
    eff = est.effect(X, {"b": np.array([1.0, 0.0])}, store=tmp_path / "eff.zarr", kind="predictive")
    mem = est.effect(X, {"b": np.array([1.0, 0.0])}, kind="predictive")
    np.testing.assert_allclose(eff["predictions"]["y"].values, mem["predictions"]["y"].values, atol=1e-5)
    lazy_args = {"X": X, "intervention": {"b": np.array([1.0, 0.0])}}
    est_eff = est.estimate_effect(
        args_baseline={"X": X}, args_intervention=lazy_args, store=tmp_path / "est.zarr"
    )
    np.testing.assert_allclose(
        est_eff["predictions"]["y"].values, mem["predictions"]["y"].values, atol=1e-5
    )
    pipe_cf = skimpact.counterfactual_predict(
        make_pipeline(FunctionTransformer(), est), X, {0: 2.0}, store=tmp_path / "pipe.zarr"
    )
    X2 = X.copy()
    X2[:, 0] = 2.0
    np.testing.assert_allclose(
        pipe_cf["predictions"]["y"].values,
        est.sample_posterior_predictive(X2)["predictions"]["y"].values,
    )
    assert pipe_cf.attrs["intervention"] == '{"0": 2.0}'
    y = est.sample_posterior_predictive(X)["predictions"]["y"].values[0, 0]
    ll = est.log_likelihood(X, y, store=tmp_path / "ll.zarr")
    assert ll["log_likelihood"]["y"].chunks is not None
    np.testing.assert_allclose(
        ll["log_likelihood"]["y"].values, est.log_likelihood(X, y)["log_likelihood"]["y"].values
    )
    prior = est.sample_prior_predictive(X, store=tmp_path / "prior.zarr")
    assert prior["prior_predictive"]["y"].shape[-1] == X.shape[0]
    assert sorted(os.listdir(tmp_path)) == [
        "cf.zarr", "eff.zarr", "est.zarr", "ll.zarr", "pipe.zarr", "prior.zarr"
    ]


def test_interrupted_zarr_run_leaves_nothing(fitted, tmp_path):
    est, X = fitted
    path = tmp_path / "broken.zarr"
    calls = []
    original = ZarrSink.write

    def failing(self, name, index, array):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, name, index, array)

    ZarrSink.write = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            est.sample_posterior_predictive(X, store=path)
    finally:
        ZarrSink.write = original
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_minibatch_svi_recovers_coefficients():
    X, y = _data(5000, seed=3)
    est = ImpactRegressor(
        Model(slopes), inference="svi", num_steps=1500, learning_rate=0.02, num_samples=100,
        fit_batch_size=128, random_state=0,
    ).fit(X, y)
    b = est.posterior_["posterior"]["b"].mean(("chain", "draw")).values
    np.testing.assert_allclose(b, [1.0, -2.0], atol=0.08)
    assert 0.15 < float(est.posterior_["posterior"]["sigma"].mean()) < 0.5


def test_minibatch_rejects_local_latents_and_weights():
    X, y = _data(50)
    with pytest.raises(ValueError, match="local latent"):
        ImpactRegressor(_hier, inference="svi", num_steps=10, fit_batch_size=8).fit(X, y)
    with pytest.raises(ValueError, match="sample_weight"):
        ImpactRegressor(Model(slopes), inference="svi", num_steps=10, fit_batch_size=8).fit(
            X, y, sample_weight=np.ones(50)
        )
