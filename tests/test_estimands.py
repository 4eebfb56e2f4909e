"""ATE, ATT, ATC and the relative lift: each per draw equals its closed form in the
posterior's coefficients, and the truth of the simulation lies in its interval."""

import warnings

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skimpact import ImpactRegressor, effect, summarize_effect
from skimpact.effects import outcome_draws
from skimpact.streaming import effect_summary

N = 400


def per_arm(X):
    """Columns T, x and T * x: an effect 1 * coef_T + x * coef_Tx."""
    return np.column_stack([X, X[:, 0] * X[:, 1]])


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    t = (rng.random(N) < 1 / (1 + np.exp(-1.5 * x))).astype(float)  # treated have larger x
    y = 5.0 + x + t * (1.0 + 2.0 * x) + rng.normal(0, 0.5, N)
    X = np.column_stack([t, x])
    est = make_pipeline(FunctionTransformer(per_arm), ImpactRegressor(
        inference="svi", num_steps=1500, num_samples=300, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    post = est[-1].posterior_["posterior"]
    coef = post["coef"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    intercept = post["intercept"].stack(sample=("chain", "draw")).values
    return est, X, t.astype(bool), x, coef.astype(float), intercept.astype(float)


@pytest.mark.slow
def test_att_atc_and_lift_equal_their_closed_forms(fit):
    est, X, t, x, coef, intercept = fit
    eff = effect(est, X, {0: 1.0}, {0: 0.0})
    base = outcome_draws(est, X, {0: 0.0}, stat="mean")
    table = summarize_effect(eff, treated=t, baseline_outcome=base)
    assert table.index.tolist() == ["ATE", "ATT", "ATC"] and table.index.name == "effect"
    for name, rows in (("ATE", np.ones(N, bool)), ("ATT", t), ("ATC", ~t)):
        xbar = x[rows].mean()
        effect_draws = coef[:, 0] + coef[:, 2] * xbar              # closed form per draw
        baseline = intercept + coef[:, 1] * xbar
        np.testing.assert_allclose(table.loc[name, "mean"], effect_draws.mean(), rtol=1e-4)
        np.testing.assert_allclose(table.loc[name, "sd"], effect_draws.std(ddof=1), rtol=1e-3)
        lift = effect_draws / baseline
        np.testing.assert_allclose(table.loc[name, "lift_mean"], lift.mean(), rtol=1e-4)
        np.testing.assert_allclose(table.loc[name, "lift_sd"], lift.std(ddof=1), rtol=1e-3)
        true_effect = 1.0 + 2.0 * xbar                              # the simulation's truth
        assert table.loc[name, "hdi_lower"] <= true_effect <= table.loc[name, "hdi_upper"]
        true_lift = true_effect / (5.0 + xbar)
        assert table.loc[name, "lift_hdi_lower"] <= true_lift <= table.loc[name, "lift_hdi_upper"]
    # the treated have larger x, so a larger effect: ATT > ATE > ATC
    assert table.loc["ATT", "mean"] > table.loc["ATE", "mean"] > table.loc["ATC", "mean"]


def test_without_new_arguments_the_table_is_unchanged(fit):
    est, X, t, *_ = fit
    eff = effect(est, X, {0: 1.0}, {0: 0.0})
    old = summarize_effect(eff)
    new = summarize_effect(eff, treated=t)
    assert list(old.columns) == list(new.columns)
    np.testing.assert_allclose(old.loc["ATE"].to_numpy(), new.loc["ATE"].to_numpy(), rtol=1e-5)
    by = summarize_effect(eff, by=t.astype(int))
    np.testing.assert_allclose(by["mean"].to_numpy(), new.loc[["ATC", "ATT"], "mean"].to_numpy(),
                               rtol=1e-5)


def test_lift_per_row_and_by_group_and_from_a_tree():
    draws = np.tile([1.0, 2.0, 3.0, 4.0], (1, 50, 1)) * np.linspace(0.9, 1.1, 50)[None, :, None]
    tree = xr.DataTree.from_dict(
        {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), draws)})})
    base = xr.DataTree.from_dict(
        {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), np.full_like(draws, 10.0))})})
    rows = summarize_effect(tree, per_row=True, baseline_outcome=base)
    np.testing.assert_allclose(rows["lift_mean"], [0.1, 0.2, 0.3, 0.4])
    groups = summarize_effect(tree, by=["a", "a", "b", "b"], baseline_outcome=base)
    np.testing.assert_allclose(groups["lift_mean"], [0.15, 0.35])
    with pytest.raises(ValueError, match="`treated` adds"):
        summarize_effect(tree, per_row=True, treated=[0, 1, 0, 1])


def test_streaming_summary_reports_att_and_atc_as_the_full_arrays(fit):
    est, X, t, *_ = fit
    full = summarize_effect(effect(est, X, {0: 1.0}, {0: 0.0}), treated=t)
    streamed = effect_summary(est, X, {0: 1.0}, {0: 0.0}, treated=t)
    assert streamed.index.tolist() == ["ATE", "ATT", "ATC"]
    np.testing.assert_allclose(streamed.to_numpy(), full.to_numpy(), rtol=1e-5)


def test_streaming_summary_reports_the_lift_of_the_full_arrays(fit):
    est, X, t, *_ = fit
    base = outcome_draws(est, X, {0: 0.0}, stat="mean")
    eff = effect(est, X, {0: 1.0}, {0: 0.0})
    full = summarize_effect(eff, treated=t, baseline_outcome=base)
    streamed = effect_summary(est, X, {0: 1.0}, {0: 0.0}, treated=t, lift=True)
    assert list(streamed.columns) == list(full.columns)
    np.testing.assert_allclose(streamed.to_numpy(), full.to_numpy(), rtol=1e-4)
    by = effect_summary(est, X, {0: 1.0}, {0: 0.0}, by=t.astype(int), lift=True)
    full_by = summarize_effect(eff, by=t.astype(int), baseline_outcome=base)
    np.testing.assert_allclose(by.loc[[0, 1], ["lift_mean", "lift_sd"]].to_numpy(),
                               full_by.loc[[0, 1], ["lift_mean", "lift_sd"]].to_numpy(),
                               rtol=1e-4)
    with pytest.raises(ValueError, match="`lift` adds the relative lift"):
        effect_summary(est, X, {0: 1.0}, {0: 0.0}, per_row=True, lift=True)
