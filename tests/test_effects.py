"""Effects: contrasts per draw, common random numbers, estimate_effect, summaries."""

import copy
import json

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import skimpact
from skimpact import ImpactRegressor, effect, estimate_effect, summarize_effect

N = 200


def _linear(X, y=None):
    """Linear-Gaussian regression: y ~ Normal(a + X b, s)."""
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0).expand([X.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(a + X @ b, s), obs=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    y = 1.0 + X @ [1.0, 2.0] + rng.normal(0.0, 1.0, N)
    return X, y


@pytest.fixture(scope="module")
def est(data):
    X, y = data
    return ImpactRegressor(_linear, inference="svi", num_steps=2000, num_samples=400, random_state=0).fit(X, y)


def _b1(est):
    return est.posterior_["posterior"]["b"].values[0, :, 1]


SHIFT = {1: lambda v: v + 1.0}


def test_common_random_numbers_cancel_the_noise(est, data):
    X, _ = data
    eff = est.effect(X, SHIFT, kind="predictive")
    draws = eff["predictions"]["y"].values[0]  # (draw, obs)
    sd_per_row = draws.std(axis=0)
    b1_sd = _b1(est).std()
    sigma = est.posterior_["posterior"]["s"].values.mean()
    # Each row's effect per draw is exactly b1 * 1: its sd over draws is the posterior sd of
    # b1, not the sd of a difference of two independent outcomes, sigma * sqrt(2).
    np.testing.assert_allclose(sd_per_row, b1_sd, rtol=1e-3)
    np.testing.assert_allclose(draws, np.broadcast_to(_b1(est)[:, None], draws.shape), atol=1e-4)
    assert b1_sd < 0.1 * sigma * np.sqrt(2)


def test_common_random_numbers_without_a_fixed_random_state(est, data):
    X, _ = data
    unseeded = copy.deepcopy(est).set_params(random_state=None)
    b1_sd = _b1(est).std()
    eff = unseeded.effect(X, SHIFT, kind="predictive")
    np.testing.assert_allclose(eff["predictions"]["y"].values[0].std(axis=0), b1_sd, rtol=1e-3)
    lazy = unseeded.estimate_effect(
        args_baseline={"X": X}, args_intervention={"X": X, "intervention": SHIFT}
    )
    np.testing.assert_allclose(lazy["predictions"]["y"].values[0].std(axis=0), b1_sd, rtol=1e-3)


def test_effect_is_intervention_minus_baseline_per_draw(est, data):
    X, _ = data
    iv, base = {0: 1.0}, {0: -1.0}
    eff = est.effect(X, iv, base, kind="predictive")
    assert sorted(eff.children) == ["posterior", "predictions"]
    assert dict(eff["predictions"].sizes) == {"chain": 1, "draw": 400, "obs": N}
    expected = (
        est.counterfactual_predict(X, iv)["predictions"]["y"].values
        - est.counterfactual_predict(X, base)["predictions"]["y"].values
    )
    # effect() runs both scenarios in one compiled program: equal up to float32 rounding
    np.testing.assert_allclose(eff["predictions"]["y"].values, expected, rtol=1e-6, atol=1e-5)
    assert json.loads(eff.attrs["intervention"]) == {"0": 1.0}
    assert json.loads(eff.attrs["baseline"]) == {"0": -1.0}
    assert eff.attrs["kind"] == "predictive"
    in_sample = effect(est, X, iv, base, in_sample=True, kind="predictive")
    assert sorted(in_sample.children) == ["posterior", "posterior_predictive"]


def test_baseline_none_is_the_factual(est, data):
    X, _ = data
    eff = est.effect(X, {0: 0.0}, kind="predictive")
    factual = est.sample_posterior_predictive(X)["predictions"]["y"].values
    cf = est.counterfactual_predict(X, {0: 0.0})["predictions"]["y"].values
    np.testing.assert_allclose(eff["predictions"]["y"].values, cf - factual, rtol=1e-6,
                               atol=1e-5)
    b0 = est.posterior_["posterior"]["b"].values[0, :, 0]
    np.testing.assert_allclose(eff["predictions"]["y"].values[0], -b0[:, None] * X[:, 0],
                               atol=1e-4)


def test_kind_mean_contrasts_the_conditional_mean(est, data):
    X, _ = data
    eff = est.effect(X, {1: 2.0}, {1: 0.0}, kind="mean")
    assert eff.attrs["kind"] == "mean"
    np.testing.assert_allclose(
        eff["predictions"]["y"].values[0], np.broadcast_to(2 * _b1(est)[:, None], (400, N)),
        rtol=1e-4, atol=1e-4,
    )
    with pytest.raises(ValueError, match="'predictive', 'mean' or 'probs'"):
        est.effect(X, {1: 2.0}, kind="median")


def test_estimate_effect_eager_lazy_and_mixed_agree(est, data):
    X, _ = data
    args_b, args_i = {"X": X, "intervention": {1: 0.0}}, {"X": X, "intervention": {1: 1.0}}
    out_b = est.counterfactual_predict(X, {1: 0.0})
    out_i = est.counterfactual_predict(X, {1: 1.0})
    eager = est.estimate_effect(output_baseline=out_b, output_intervention=out_i)
    lazy = estimate_effect(est, args_baseline=args_b, args_intervention=args_i)
    mixed = est.estimate_effect(output_baseline=out_b, args_intervention=args_i)
    direct = est.effect(X, {1: 1.0}, {1: 0.0}, kind="predictive")
    for tree in (eager, lazy, mixed):
        assert sorted(tree.children) == ["posterior", "predictions"]
        assert tree["predictions"]["y"].dims == ("chain", "draw", "obs")
        assert dict(tree["predictions"].sizes) == {"chain": 1, "draw": 400, "obs": N}
        np.testing.assert_allclose(
            tree["predictions"]["y"].values, direct["predictions"]["y"].values,
            rtol=1e-6, atol=1e-5,
        )
        assert json.loads(tree.attrs["intervention"]) == {"1": 1.0}
        assert json.loads(tree.attrs["baseline"]) == {"1": 0.0}


def test_estimate_effect_errors_name_both_sides(est, data):
    X, _ = data
    out = est.counterfactual_predict(X, {1: 0.0})
    cases = [
        ({"output_baseline": out,
          "output_intervention": est.counterfactual_predict(X, {1: 1.0}, in_sample=True)},
         "baseline is in group 'predictions' and the intervention in 'posterior_predictive'"),
        ({"output_baseline": out,
          "output_intervention": est.counterfactual_predict(X[:50], {1: 1.0})},
         r"'y' has dims .*'obs': 200.* in the baseline and .*'obs': 50.* in the intervention"),
        ({"output_baseline": out,
          "output_intervention": est.counterfactual_predict(X, {1: 1.0}, return_sites=["b"])},
         r"baseline \['y'\], intervention \['b'\]"),
        ({"output_baseline": out, "args_baseline": {"X": X}, "output_intervention": out},
         "exactly one of output_baseline .* got both"),
        ({"output_intervention": out}, "exactly one of output_baseline .* got neither"),
        ({"output_baseline": out, "args_intervention": {"intervention": {}}},
         "args_intervention must be a dict with at least 'X'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            est.estimate_effect(**kwargs)
    relabelled = out.copy()
    relabelled["predictions"] = relabelled["predictions"].to_dataset().assign_coords(
        obs=np.arange(N) + 10
    )
    with pytest.raises(ValueError, match=r"different 'obs' labels in the baseline \(0, 1, 2"):
        est.estimate_effect(output_baseline=out, output_intervention=relabelled)
    with pytest.raises(TypeError, match="output_intervention must be an xarray.DataTree"):
        est.estimate_effect(output_baseline=out, output_intervention={"y": 1})


def test_summarize_effect_ate_hdi_probability_and_groups(est, data):
    X, _ = data
    eff = est.effect(X, {1: 1.0}, {1: 0.0}, kind="mean")
    draws = eff["predictions"]["y"].values[0]  # (draw, obs)
    ate = draws.mean(axis=1)
    s94 = summarize_effect(eff)
    assert list(s94.columns) == ["mean", "sd", "hdi_lower", "hdi_upper", "prob_positive",
                                "credibly_positive"]
    assert s94.index.tolist() == ["ATE"]
    row = s94.loc["ATE"]
    np.testing.assert_allclose(row["mean"], ate.mean(), rtol=1e-6)
    np.testing.assert_allclose(row["sd"], ate.std(ddof=1), rtol=1e-5)
    inside = ((ate >= row["hdi_lower"]) & (ate <= row["hdi_upper"])).mean()
    assert 0.93 <= inside <= 0.96
    assert row["prob_positive"] == 1.0
    s50 = summarize_effect(eff, prob=0.5).loc["ATE"]
    assert row["hdi_lower"] < s50["hdi_lower"] < s50["hdi_upper"] < row["hdi_upper"]
    labels = pd.Series(np.where(X[:, 0] > 0, "high", "low"), name="x0_level")
    with pytest.warns(skimpact.ConstantEffectWarning):  # a linear model: one effect for all
        by = summarize_effect(eff, by=labels)
    assert by.index.name == "x0_level" and sorted(by.index) == ["high", "low"]
    np.testing.assert_allclose(by.loc["high", "mean"], draws[:, X[:, 0] > 0].mean(), rtol=1e-6)
    with pytest.warns(skimpact.ConstantEffectWarning):
        per_row = summarize_effect(eff, per_row=True)
    assert per_row.index.name == "obs" and len(per_row) == N
    np.testing.assert_allclose(per_row["mean"].to_numpy(), draws.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"one label per row \(200\)"):
        summarize_effect(eff, by=np.zeros(3))
    with pytest.raises(KeyError, match="No variable 'z'"):
        summarize_effect(eff, var="z")


def test_summarize_effect_prob_positive_and_a_global_site(est, data):
    X, _ = data
    eff = est.effect(X, {0: lambda v: v - 1.0}, return_sites=["y", "b"], kind="predictive")
    summary = summarize_effect(eff)  # the outcome by default
    np.testing.assert_allclose(
        summary.loc["ATE", "mean"], -est.posterior_["posterior"]["b"].values[0, :, 0].mean(),
        rtol=1e-4,
    )
    assert summary.loc["ATE", "prob_positive"] == 0.0
    b = summarize_effect(eff, var="b")  # b is not changed: a zero effect per feature
    assert b.index.names == ["effect", "b_dim_0"] and len(b) == 2
    np.testing.assert_array_equal(b["mean"].to_numpy(), 0.0)
    with pytest.raises(ValueError, match="has no row dim"):
        summarize_effect(eff, var="b", per_row=True)


@pytest.mark.slow
def test_pipeline_raw_column_interventions():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"dose": rng.normal(10.0, 3.0, 300), "age": rng.normal(50.0, 10.0, 300)})
    y = 0.5 * X["dose"].to_numpy() - 0.1 * X["age"].to_numpy() + rng.normal(0.0, 0.5, 300)
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("est", ImpactRegressor(inference="map", num_steps=800, random_state=0)),
    ]).fit(X, y)
    eff = skimpact.effect(pipe, X, {"dose": lambda d: d + 1.0}, kind="mean")
    coef = pipe[-1].posterior_["posterior"]["coef"].values[0, 0, 0]
    per_unit = coef / pipe[0].scale_[0]
    np.testing.assert_allclose(eff["predictions"]["y"].values, per_unit, rtol=1e-4)
    assert abs(per_unit - 0.5) < 0.05
    cp = skimpact.counterfactual_predict(pipe, X, {"dose": 0.0})
    assert json.loads(cp.attrs["intervention"]) == {"dose": 0.0}
