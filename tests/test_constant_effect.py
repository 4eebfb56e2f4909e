"""Honest defaults: a model that gives every row the same effect says so."""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import skimpact
from skimpact import ConstantEffectWarning, ImpactRegressor, effect, summarize_effect
from skimpact.streaming import effect_summary

N = 120


def _interaction(X, y=None):
    """y ~ Normal(a + b x + (c + d x) t, s): the effect of t varies with x."""
    x, t = X[:, 0], X[:, 1]
    coef = numpyro.sample("coef", dist.Normal(0.0, 2.0).expand([4]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        mean = coef[0] + coef[1] * x + (coef[2] + coef[3] * x) * t
        numpyro.sample("y", dist.Normal(mean, s), obs=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    t = rng.binomial(1, 0.5, N).astype(float)
    y = 1.0 + x + (1.0 + x) * t + rng.normal(0, 0.3, N)
    return pd.DataFrame({"x": x, "T": t}), y


def _fit(model, X, y):
    return ImpactRegressor(model, inference="svi", num_steps=800, num_samples=100,
                           random_state=0).fit(X, y)


@pytest.mark.slow
def test_linear_model_effect_is_flagged_constant(data):
    X, y = data
    est = _fit(None, X, y)
    eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    assert eff.attrs["effect_varies_by_row"] == 0  # an int: NetCDF stores no booleans
    assert summarize_effect(eff).attrs["effect_varies_by_row"] is False  # ATE: no warning
    groups = pd.Series(np.where(X["x"] > 0, "high", "low"), name="x_level")
    for kwargs in ({"per_row": True}, {"by": groups}):
        with pytest.warns(ConstantEffectWarning, match="skimpact.effect_model") as record:
            table = summarize_effect(eff, **kwargs)
        assert len(record) == 1  # once per call, not per row or group
        assert table.attrs["effect_varies_by_row"] is False
    with pytest.warns(ConstantEffectWarning):
        streamed = effect_summary(est, X, {"T": 1.0}, {"T": 0.0}, per_row=True)
    assert streamed.attrs["effect_varies_by_row"] is False
    with pytest.warns(ConstantEffectWarning):
        effect_summary(est, X, {"T": 1.0}, {"T": 0.0}, by=groups.to_numpy())


@pytest.mark.slow
def test_interaction_model_effect_varies(data):
    X, y = data
    est = _fit(_interaction, X, y)
    eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    assert eff.attrs["effect_varies_by_row"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantEffectWarning)
        table = summarize_effect(eff, per_row=True)
        streamed = effect_summary(est, X, {"T": 1.0}, {"T": 0.0}, by=np.sign(X["x"]))
    assert table.attrs["effect_varies_by_row"] is True
    assert streamed.attrs["effect_varies_by_row"] is True
    # the per-row effects follow 1 + x
    assert np.corrcoef(table["mean"], 1.0 + X["x"])[0, 1] > 0.95


def test_float32_rounding_is_not_heterogeneity():
    from skimpact.effects import effect_varies_by_row

    draws = np.full((50, 30), 2.0, dtype=np.float32)
    draws += np.float32(2.0) * np.finfo(np.float32).eps * np.arange(30, dtype=np.float32)
    assert not effect_varies_by_row(draws)
    assert effect_varies_by_row(draws + np.linspace(0, 0.01, 30, dtype=np.float32))
    assert skimpact.ConstantEffectWarning.__mro__[1] is UserWarning
