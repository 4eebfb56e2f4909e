"""Interventions: model sites (do semantics), inputs, columns, shifts, errors, compilation."""

import json

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from skimpact import ImpactRegressor, counterfactual_predict
from skimpact.predictive import _COMPILED

N = 100


def _model(X, y=None, t=None):
    """y = a + X b + g t + u + noise, with a small local latent u per row."""
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0).expand([X.shape[1]]).to_event(1))
    g = numpyro.sample("g", dist.Normal(0.0, 5.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    with numpyro.plate("obs", X.shape[0]):
        u = numpyro.sample("u", dist.Normal(0.0, 0.1))
        mu = numpyro.deterministic("mu", a + X @ b + g * t + u)
        numpyro.sample("y", dist.Normal(mu, s), obs=y)


def _mean_outside_plate(X, y=None):
    """A per-row deterministic site computed outside the data plate."""
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0).expand([X.shape[1]]).to_event(1))
    mu = numpyro.deterministic("mu", a + X @ b)
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        rng.normal(size=(N, 2)), columns=["x0", "x1"], index=pd.RangeIndex(1000, 1000 + N)
    )
    t = rng.binomial(1, 0.5, N).astype(np.float32)
    y = 1.0 + X.to_numpy() @ [1.0, 2.0] + 3.0 * t + rng.normal(size=N)
    return X, y, t


@pytest.fixture(scope="module")
def est(data):
    X, y, t = data
    return ImpactRegressor(_model, inference="svi", num_steps=1500, num_samples=100, random_state=0).fit(
        X, y, t=t
    )


def _post(est, name):
    """Posterior draws of ``name`` with chains flattened."""
    v = est.posterior_["posterior"][name].values
    return v.reshape((-1,) + v.shape[2:])


def _draws(tree, name):
    group = next(g for g in ("posterior_predictive", "predictions") if g in tree.children)
    v = tree[group][name].values
    return v.reshape((-1,) + v.shape[2:])


def test_do_on_global_site_propagates_downstream(est, data):
    X, _, t = data
    tree = est.counterfactual_predict(
        X, {"b": [0.0, 0.0]}, in_sample=True, return_sites=["b", "mu"], t=t
    )
    assert np.all(_draws(tree, "b") == 0.0)
    # mu = a + X @ 0 + g t + u with every other site at its posterior draw.
    expected = _post(est, "a")[:, None] + _post(est, "g")[:, None] * t + _post(est, "u")
    np.testing.assert_allclose(_draws(tree, "mu"), expected, rtol=1e-5, atol=1e-5)


def test_unnamed_sites_follow_posterior_in_sample_and_prior_for_new_rows(est, data):
    X, _, t = data
    fitted_u = _post(est, "u")
    in_sample = est.counterfactual_predict(X, {"t": 1.0}, in_sample=True, t=t)
    np.testing.assert_array_equal(_draws(in_sample, "u"), fitted_u)
    new = est.counterfactual_predict(X, {"t": 1.0}, t=t)
    u_new = _draws(new, "u")
    assert not np.allclose(u_new, fitted_u)
    # Drawn from the prior Normal(0, 0.1) given the global parameters.
    assert 0.08 < u_new.std() < 0.12


def test_do_on_deterministic_site_sets_the_outcome_mean(est, data):
    X, _, t = data
    np.testing.assert_allclose(est.predict(X, intervention={"mu": 2.5}, t=t), 2.5)
    values = np.linspace(-1.0, 1.0, N)
    np.testing.assert_allclose(est.predict(X, intervention={"mu": values}, t=t), values, atol=1e-5)


def test_do_on_local_latent_with_per_row_values(est, data):
    X, _, t = data
    values = np.linspace(0.0, 1.0, N)
    tree = est.counterfactual_predict(X, {"u": values}, return_sites=["u", "mu"], t=t)
    np.testing.assert_allclose(_draws(tree, "u"), np.broadcast_to(values, (100, N)), atol=1e-6)
    base = _post(est, "a")[:, None] + _post(est, "b") @ X.to_numpy().T + _post(est, "g")[:, None] * t
    np.testing.assert_allclose(_draws(tree, "mu") - base, np.broadcast_to(values, (100, N)),
                               atol=1e-4)


def test_input_intervention_replaces_the_input(est, data):
    X, _, t = data
    diff = est.predict(X, intervention={"t": 1}, t=t) - est.predict(X, intervention={"t": 0}, t=t)
    np.testing.assert_allclose(diff, _post(est, "g").mean(), rtol=1e-4)


def test_column_and_input_shifts_use_the_factual_value(est, data):
    X, _, t = data
    factual = est.predict(X, t=t)
    shifted = est.predict(X, intervention={"x1": lambda v: v + 1.0}, t=t)
    np.testing.assert_allclose(shifted - factual, _post(est, "b")[:, 1].mean(), rtol=1e-4)
    flipped = est.predict(X, intervention={"t": lambda v: 1 - v}, t=t)
    g = _post(est, "g").mean()
    np.testing.assert_allclose(flipped - factual, np.where(t == 1, -g, g), rtol=1e-4)


def test_shift_on_sites(est, data):
    X, _, t = data
    tree = est.counterfactual_predict(
        X, {"u": lambda u: u + 1.0}, in_sample=True, return_sites=["u", "mu"], t=t
    )
    np.testing.assert_allclose(_draws(tree, "u"), _post(est, "u") + 1.0, atol=1e-6)
    np.testing.assert_allclose(_draws(tree, "mu"), _post(est, "mu") + 1.0, atol=1e-4)
    scaled = est.counterfactual_predict(
        X, {"mu": lambda m: m * 1.1}, in_sample=True, return_sites=["mu"], t=t
    )
    np.testing.assert_allclose(_draws(scaled, "mu"), _post(est, "mu") * 1.1, rtol=1e-5,
                               atol=1e-5)


def test_several_names_at_once(est, data):
    X, _, t = data
    tree = est.counterfactual_predict(
        X, {"t": 1.0, "x0": 0.0, "u": 0.0}, in_sample=True, return_sites=["mu"], t=t
    )
    expected = (
        _post(est, "a")[:, None]
        + _post(est, "b")[:, 1:] * X["x1"].to_numpy()
        + _post(est, "g")[:, None]
    )
    np.testing.assert_allclose(_draws(tree, "mu"), expected, rtol=1e-5, atol=1e-5)


def test_groups_attrs_and_entry_points_agree(est, data):
    X, _, t = data
    iv = {"t": 1, "u": np.zeros(N)}
    out = est.counterfactual_predict(X, iv, t=t)
    assert sorted(out.children) == ["posterior", "predictions"]
    assert dict(out["predictions"].sizes) == {"chain": 1, "draw": 100, "obs": N}
    np.testing.assert_array_equal(out["predictions"]["obs"].values, X.index.to_numpy())
    assert json.loads(out.attrs["intervention"]) == {"t": 1, "u": "array of shape (100,)"}
    in_sample = est.counterfactual_predict(X, iv, in_sample=True, t=t)
    assert sorted(in_sample.children) == ["posterior", "posterior_predictive"]
    spp = est.sample_posterior_predictive(X, intervention=iv, t=t)
    module = counterfactual_predict(est, X, iv, t=t)
    for other in (spp, module):
        np.testing.assert_array_equal(other["predictions"]["y"].values,
                                      out["predictions"]["y"].values)
    assert json.loads(module.attrs["intervention"]) == {"t": 1, "u": "array of shape (100,)"}


def test_unknown_name_lists_sites_and_inputs(est, data):
    X, _, t = data
    with pytest.raises(KeyError, match="Unknown intervention name 'nope'") as info:
        est.counterfactual_predict(X, {"nope": 1.0}, t=t)
    message = str(info.value)
    for name in ("'a'", "'b'", "'g'", "'mu'", "'u'", "model inputs: ['t']", "'x0'"):
        assert name in message


def test_value_that_does_not_broadcast_names_the_expected_shape(est, data):
    X, _, t = data
    with pytest.raises(ValueError, match=r"site 'u' has shape \(3,\).*\(100,\)"):
        est.counterfactual_predict(X, {"u": np.zeros(3)}, t=t)
    with pytest.raises(ValueError, match=r"site 'b' has shape \(3,\).*\(2,\)"):
        est.counterfactual_predict(X, {"b": np.zeros(3)}, t=t)
    with pytest.raises(ValueError, match=r"input 't' has shape \(3,\).*\(100,\)"):
        est.counterfactual_predict(X, {"t": np.zeros(3)}, t=t)
    with pytest.raises(ValueError, match=r"column 'x0' has shape \(3,\).*\(100,\)"):
        est.counterfactual_predict(X, {"x0": np.zeros(3)}, t=t)


def test_intervening_on_the_outcome_or_with_a_non_dict_is_an_error(est, data):
    X, _, t = data
    with pytest.raises(ValueError, match="Cannot intervene on the outcome site 'y'"):
        est.counterfactual_predict(X, {"y": 1.0}, t=t)
    with pytest.raises(TypeError, match="must be a dict"):
        est.counterfactual_predict(X, [("t", 1.0)], t=t)


def test_deterministic_site_outside_the_data_plate_takes_per_row_values():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X @ [1.0, -1.0] + rng.normal(size=60)
    est = ImpactRegressor(
        _mean_outside_plate, inference="map", num_steps=500, learning_rate=0.05, random_state=0
    ).fit(X, y)
    for rows in (60, 25):
        values = np.arange(rows, dtype=float)
        np.testing.assert_allclose(est.predict(X[:rows], intervention={"mu": values}), values)
    with pytest.raises(ValueError, match=r"site 'mu' has shape \(7,\).*\(25,\)"):
        est.predict(X[:25], intervention={"mu": np.zeros(7)})


def _compilations(est):
    key = est.predictor_.program.cache_key
    return {k[1]: fn._cache_size() for k, fn in _COMPILED.items() if k[0] == key}


@pytest.mark.slow
def test_repeated_calls_with_same_names_and_shapes_do_not_recompile(est, data):
    X, _, t = data

    def shift(u):
        return u + 0.5

    scenarios = [
        lambda v: {"t": v},
        lambda v: {"u": np.full(N, v), "x1": v},
        lambda v: {"mu": v, "u": shift},
    ]
    for make in scenarios:
        est.counterfactual_predict(X, make(0.0), t=t)
        est.effect(X, make(0.0), kind="mean", t=t)
        before = _compilations(est)
        for value in (1.0, -2.0, 3.5):
            est.counterfactual_predict(X, make(value), t=t)
            est.effect(X, make(value), kind="mean", t=t)
        assert _compilations(est) == before
    # The counter does see compilations: a new shift function is a new program.
    def other_shift(u):
        return u - 0.5

    before = sum(_compilations(est).values())
    est.counterfactual_predict(X, {"mu": 0.0, "u": other_shift}, t=t)
    assert sum(_compilations(est).values()) == before + 1
