"""The built-in heterogeneous-effect model: y = mu(x, pi_hat(x)) + tau(x) T + noise."""

import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import skimpact
from skimpact import ImpactRegressor, effect, effect_model, summarize_effect
from skimpact.effect_model import EffectModel, effect_model_factory

N = 300
SVI = {"inference": "svi", "num_steps": 1500, "num_samples": 200, "random_state": 0}


@pytest.fixture(scope="module")
def binary_data():
    """Confounded binary treatment (units with high x1 are treated more often) whose
    effect is 1 + x1; x2 only moves the outcome."""
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=N), rng.normal(size=N)
    t = rng.binomial(1, 1 / (1 + np.exp(-x1))).astype(float)
    tau = 1.0 + x1
    y = np.sin(2 * x2) + x1 + tau * t + rng.normal(0, 0.3, N)
    return pd.DataFrame({"x1": x1, "T": t, "x2": x2}), y, tau


@pytest.fixture(scope="module")
def binary(binary_data):
    """That data, and ``effect_model("T")`` fitted to it."""
    X, y, tau = binary_data
    return X, y, tau, ImpactRegressor(effect_model("T"), **SVI).fit(X, y)


@pytest.mark.slow
def test_recovers_a_known_heterogeneous_effect(binary):
    X, y, tau, est = binary
    eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    assert eff.attrs["effect_varies_by_row"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", skimpact.ConstantEffectWarning)
        rows = summarize_effect(eff, per_row=True)
    ate = summarize_effect(eff).loc["ATE"]
    assert np.corrcoef(rows["mean"], tau)[0, 1] > 0.9
    assert ate["hdi_lower"] <= tau.mean() <= ate["hdi_upper"]
    inside = (rows["hdi_lower"] <= tau) & (tau <= rows["hdi_upper"])
    assert inside.mean() > 0.8
    # the model's own per-row effect site is the same contrast
    site = est.posterior_["posterior"]["tau"].mean(("chain", "draw")).values
    np.testing.assert_allclose(site, rows["mean"], atol=1e-3)


@pytest.mark.slow
def test_propensity_and_scales_come_from_the_training_data(binary):
    X, _, _, est = binary
    inputs = est.predictor_.program.scales
    assert inputs["t_mask"].tolist() == [0.0, 1.0, 0.0]
    coef = np.asarray(inputs["ps_coef"])
    assert coef[1] == 0.0 and coef[0] > 0.5 > abs(coef[2])  # T depends on x1 only


@pytest.mark.slow
def test_continuous_treatment_by_position():
    rng = np.random.default_rng(2)
    x = rng.normal(size=N)
    dose = rng.normal(1.0 + 0.5 * x, 1.0)
    slope = 0.5 + 0.5 * x
    y = np.cos(x) + slope * dose + rng.normal(0, 0.3, N)
    X = np.column_stack([x, dose])
    est = ImpactRegressor(effect_model(1), **SVI).fit(X, y)
    assert float(est.predictor_.program.scales["ps_binary"]) == 0.0
    eff = effect(est, X, {1: X[:, 1] + 1.0})  # one more unit of dose
    rows = summarize_effect(eff, per_row=True)
    assert np.corrcoef(rows["mean"], slope)[0, 1] > 0.9
    ate = summarize_effect(eff).loc["ATE"]
    assert ate["hdi_lower"] <= slope.mean() <= ate["hdi_upper"]


@pytest.mark.slow
def test_hyperparameters_clone_pickle_and_refusals(binary):
    X, y, _, est = binary
    params = est.get_params()
    assert params["model__treatment"] == "T" and params["model__tau_scale"] == 0.5
    other = clone(est).set_params(model__tau_scale=0.2)
    assert isinstance(other.model, EffectModel) and other.model.hyperparameters["tau_scale"] == 0.2
    assert est.model.hyperparameters["tau_scale"] == 0.5
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.predict(X.iloc[:5]), est.predict(X.iloc[:5]), rtol=1e-5)
    with pytest.raises(ValueError, match=r"treatment 'dose' is not a column.*'x1', 'T', 'x2'"):
        ImpactRegressor(effect_model("dose"), **SVI).fit(X, y)
    with pytest.raises(ValueError, match="no column names"):
        ImpactRegressor(effect_model("T"), **SVI).fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match=r"position in 0\.\.2; got 5"):
        ImpactRegressor(effect_model(5), **SVI).fit(X.to_numpy(), y)


def test_single_index_starts_along_the_score_of_a_steep_prognosis():
    """A control outcome that is an exponential of one linear score of many covariates (as
    in IHDP's response surface B) is followed by the single index of ``mu``: its direction
    starts at the least-squares one, which points along the score, and its knots span the
    data. Rows of weight zero (y unobserved, NaN) are left out."""
    rng = np.random.default_rng(4)
    n, p = 400, 12
    x = rng.normal(size=(n, p))
    beta = np.where(np.arange(p) < 6, 0.3, 0.0)
    score = x @ beta
    t = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0]))).astype(float)
    y = np.exp(score) + (score - np.exp(score)) * t + rng.normal(0, 0.1, n)
    X = np.column_stack([t, x])
    weights = np.ones(n)
    weights[:10], y[:10] = 0.0, np.nan
    inputs = effect_model(0).fit_inputs(X, y, weights)
    loc = np.asarray(inputs["index_loc"], dtype=float)
    assert loc[0] == 0.0 and np.all(np.isfinite(loc))  # the treatment is no covariate
    along = loc[1:p + 1] / np.asarray(inputs["x_scale"])[1:]  # per unit of raw x
    cosine = along @ beta / np.linalg.norm(along) / np.linalg.norm(beta)
    assert cosine > 0.98
    # the index Z @ loc / sqrt(d) starts with sd 1, and the knots run from its min to max
    Z = (X[10:] - np.asarray(inputs["x_loc"])) / np.asarray(inputs["x_scale"])
    Z[:, 0] = 0.0
    pi = 1 / (1 + np.exp(-(Z @ np.asarray(inputs["ps_coef"]) + float(inputs["ps_intercept"]))))
    Z_mu = np.column_stack([Z, (pi - float(inputs["ps_loc"])) / float(inputs["ps_scale"])])
    index = Z_mu @ loc / np.sqrt(Z_mu.shape[1])
    knots = np.asarray(inputs["index_knots"])
    np.testing.assert_allclose(index.std(), 1.0, rtol=1e-3)
    np.testing.assert_allclose([knots[0], knots[-1]], [index.min(), index.max()], rtol=1e-3)
    assert np.all(np.diff(knots) > 0)


@pytest.mark.slow
def test_defaults_fit_with_the_settings_the_model_declares(binary):
    X, y, tau, _ = binary
    # the user's num_samples wins; inference and num_steps come from fit_settings()
    est = ImpactRegressor(effect_model("T"), num_samples=300, random_state=0).fit(X, y)
    reason = est.diagnostics_["inference_choice"]["reason"]
    assert reason.startswith("EffectModel.fit_settings() declares inference='svi', "
                             "num_steps=4000, used in place of the estimator's defaults.")
    assert est.inference_ == "svi" and est.posterior_["posterior"].sizes["draw"] == 300
    assert json.loads(est.posterior_.attrs["inference_settings"])["num_steps"] == 4000
    assert est.get_params()["inference"] == "auto"  # the estimator's own setting is kept
    rows = summarize_effect(effect(est, X, {"T": 1.0}, {"T": 0.0}), per_row=True)
    assert np.corrcoef(rows["mean"], tau)[0, 1] > 0.9
    inside = (rows["hdi_lower"] <= tau) & (tau <= rows["hdi_upper"])
    assert inside.mean() > 0.8


class _Declares(EffectModel):
    """An effect model declaring the settings given at construction."""

    def __init__(self, declared):
        super().__init__(effect_model_factory, treatment="T")
        self.declared = declared

    def fit_settings(self):
        return self.declared


@pytest.mark.parametrize("declared, error, match", [
    ({"seed": 1}, ValueError, r"fit_settings\(\) declares \['seed'\]; a model may declare "
                              r"only \['inference', 'guide'"),
    ({"inference": "gibbs"}, ValueError, r"'inference' parameter of _Declares.fit_settings"),
    ({"num_steps": 0}, ValueError, r"'num_steps' parameter of _Declares.fit_settings"),
])
def test_bad_declared_settings_are_refused(binary_data, declared, error, match):
    X, y, _ = binary_data
    with pytest.raises(error, match=match):
        ImpactRegressor(_Declares(declared)).fit(X, y)
