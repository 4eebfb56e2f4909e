"""inference="auto": the rule, what it records, and that explicit settings win."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from skimpact import ImpactClassifier, ImpactRegressor, choice
from skimpact.choice import choose_guide, expected_leapfrog_steps, latent_dimension


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, 1.0 + X @ [1.0, -0.5] + rng.normal(0, 0.5, n)


# num_samples is read by both methods: it leaves the choice to the rule
SMALL_NUTS = dict(num_samples=100, random_state=0)
SMALL_SVI = dict(num_steps=300, num_samples=50, random_state=0)


@pytest.fixture(scope="module")
def auto_fit():
    X, y = _data()
    return ImpactRegressor(**SMALL_NUTS).fit(X, y)


def test_defaults_are_auto():
    params = ImpactRegressor().get_params()
    assert params["inference"] == "auto" and params["guide"] == "auto"
    assert ImpactClassifier().get_params()["inference"] == "auto"


@pytest.mark.slow
def test_auto_picks_nuts_for_a_small_regression_and_records_why(auto_fit):
    est = auto_fit
    made = est.diagnostics_["inference_choice"]
    assert est.inference_ == "nuts" and made["method"] == "nuts" and made["guide"] is None
    assert made["latent_dim"] == 4  # the built-in model: two coefficients, intercept, scale
    assert made["reason"].startswith("NUTS: expected") and "latent dims" in made["reason"]
    assert 0 < made["gradient_seconds"] < 0.1
    assert made["expected_nuts_seconds"] <= choice.NUTS_BUDGET_SECONDS
    assert "num_divergences" in est.diagnostics_ and "loss" not in est.diagnostics_
    attrs = est.posterior_.attrs
    assert attrs["inference"] == "nuts" and attrs["inference_choice"] == made["reason"]
    assert json.loads(attrs["inference_settings"])["inference"] == "nuts"
    assert est.effect(*_data()[:1], {0: 1.0}).attrs["inference"] == "nuts"


@pytest.mark.slow
def test_auto_picks_svi_with_a_full_rank_guide_when_nuts_is_too_slow(monkeypatch):
    monkeypatch.setattr(choice, "NUTS_BUDGET_SECONDS", 0.0)
    X, y = _data()
    est = ImpactRegressor(num_samples=50, random_state=0).fit(X, y)
    made = est.diagnostics_["inference_choice"]
    assert est.inference_ == "svi" and made["guide"] == "AutoMultivariateNormal"
    assert made["reason"].startswith("SVI: NUTS would take about")
    assert est.diagnostics_["guide"] == "AutoMultivariateNormal"
    assert est.posterior_.attrs["guide"] == "AutoMultivariateNormal"
    monkeypatch.setattr(choice, "FULL_RANK_MAX_DIM", 2)
    est = ImpactRegressor(**SMALL_SVI).fit(X, y)
    assert est.diagnostics_["guide"] == "AutoLowRankMultivariateNormal"


@pytest.mark.slow
def test_explicit_settings_win():
    X, y = _data()
    svi = ImpactRegressor(inference="svi", guide="AutoNormal", **SMALL_SVI).fit(X, y)
    assert svi.inference_ == "svi" and svi.diagnostics_["guide"] == "AutoNormal"
    assert svi.diagnostics_["inference_choice"]["reason"] == (
        "inference='svi' was set; guide AutoNormal as set.")
    mapped = ImpactRegressor(inference="map", **SMALL_SVI).fit(X, y)
    assert mapped.inference_ == "map"
    assert mapped.diagnostics_["inference_choice"]["guide"] == "AutoDelta"
    batched = ImpactRegressor(fit_batch_size=20, **SMALL_SVI).fit(X, y)
    assert batched.inference_ == "svi"
    assert batched.diagnostics_["inference_choice"]["reason"].startswith("fit_batch_size")


@pytest.mark.slow
def test_settings_only_one_method_reads_decide_auto():
    X, y = _data()
    svi = ImpactRegressor(num_steps=1500, learning_rate=0.02, num_samples=50,
                          random_state=0).fit(X, y)
    reason = svi.diagnostics_["inference_choice"]["reason"]
    # they were ignored without a word when the rule picked NUTS
    assert svi.inference_ == "svi"
    assert reason.startswith("SVI: num_steps=1500, learning_rate=0.02 set, which only SVI")
    nuts = ImpactRegressor(num_warmup=150, num_samples=50, random_state=0).fit(X, y)
    assert nuts.inference_ == "nuts"
    assert nuts.diagnostics_["inference_choice"]["reason"] == (
        "NUTS: num_warmup=150 set, which only NUTS reads.")
    both = ImpactRegressor(num_steps=1500, num_warmup=150, num_samples=50,
                           random_state=0).fit(X, y)
    assert both.inference_ == "nuts"  # the rule decides, and says what it ignores
    assert "NUTS ignores num_steps=1500" in both.diagnostics_["inference_choice"]["reason"]


@pytest.mark.parametrize("gradient, expected, limit", [
    # 4 latent dims: NUTS's guess is 2 x 1000 iterations x 11.3 leapfrog steps, SVI's
    # 3000 steps, each one gradient
    (1e-6, "nuts", "5 s, as SVI's expected 0.003 s is small"),  # compilation dominates
    (1e-3, "svi", "2 x SVI's expected 3 s"),  # 11 s (one chain) within the budget
    (6e-3, "svi", "the 30 s budget"),
])
def test_auto_weighs_nuts_against_the_svi_fit_it_would_replace(monkeypatch, gradient,
                                                               expected, limit):
    monkeypatch.setattr(choice, "gradient_seconds", lambda *a: gradient)
    settings = {**ImpactRegressor().get_params(), "guide": "auto"}
    made = choice.choose_inference("auto", None, (), {}, latent_dim=4, n_rows=100,
                                   settings=settings, key=None)
    assert made.method == expected and f"limit {made.limit_seconds:.3g} s: {limit}" \
        in made.reason
    assert made.expected_svi_seconds == pytest.approx(3000 * gradient)
    assert made.limit_seconds == choice.nuts_limit(3000 * gradient)[0]
    nuts_guess = 1000 * expected_leapfrog_steps(4) * gradient
    assert (made.method == "nuts") == (nuts_guess <= made.limit_seconds)


def test_svi_with_guide_auto_picks_by_dimension():
    assert choose_guide("auto", 1) == "AutoMultivariateNormal"
    assert choose_guide("auto", choice.FULL_RANK_MAX_DIM) == "AutoMultivariateNormal"
    assert choose_guide("auto", choice.FULL_RANK_MAX_DIM + 1) == "AutoLowRankMultivariateNormal"
    assert choose_guide("auto", choice.LOW_RANK_MAX_DIM + 1) == "AutoNormal"
    assert choose_guide("AutoLaplaceApproximation", 10**6) == "AutoLaplaceApproximation"


def test_rule_helpers():
    assert latent_dimension({"b": (3, 2), "s": (), "y": (9,)}, ("b", "s")) == 7
    assert expected_leapfrog_steps(1) == 8.0
    assert expected_leapfrog_steps(10**4) == pytest.approx(80.0)
    assert expected_leapfrog_steps(10**20) == 1023.0


def test_unknown_inference_names_the_options():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"'inference'.*'auto'"):
        ImpactRegressor(inference="laplace").fit(*_data())


def test_mean_field_guide_on_correlated_posterior_warns_with_the_fix():
    # an uncentred covariate and its product with the treatment: strongly correlated coefs
    rng = np.random.default_rng(0)
    n = 400
    x, t = rng.normal(size=n) + 3, rng.binomial(1, 0.5, n).astype(float)
    X = pd.DataFrame({"t": t, "x": x, "tx": t * x})
    y = 1 + 2 * t + x + 1.5 * t * x + rng.normal(size=n)
    with pytest.warns(ConvergenceWarning,
                      match=r"mean-field guide AutoNormal.*guide='AutoMultivariateNormal'.*"
                            r"inference='nuts'"):
        est = ImpactRegressor(inference="svi", guide="AutoNormal", **SMALL_SVI).fit(X, y)
    assert est.diagnostics_["laplace_max_abs_corr"] > 0.9
    assert set(est.diagnostics_["laplace_pair"]) == {"beta[0]", "beta[2]"}
    assert est.diagnostics_["converged"] is False


def _correlated(n=400, seed=0):
    """Ten nearly identical columns: a posterior correlated enough to need deep trees."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    X = z + 0.01 * rng.normal(size=(n, 10))
    return X, X.sum(axis=1) + rng.normal(size=n)


@pytest.mark.slow
def test_auto_measures_nuts_and_switches_to_svi_when_trees_run_deep(monkeypatch):
    # the guess thinks every tree takes one step, so it picks NUTS for both data sets;
    # the first warm-up loop measures the steps the posterior really needs
    monkeypatch.setattr(choice, "expected_leapfrog_steps", lambda dim: 1.0)
    X, y = _correlated()
    est = ImpactRegressor(random_state=0)

    def budget_between(model, *a, **k):
        # a budget of 200 leapfrog steps per iteration at the measured gradient time
        seconds = real_gradient_seconds(model, *a, **k)
        monkeypatch.setattr(choice, "NUTS_BUDGET_SECONDS", 1000 * 200 * seconds)
        return seconds

    real_gradient_seconds = choice.gradient_seconds
    monkeypatch.setattr(choice, "gradient_seconds", budget_between)
    est.fit(X, y)
    made = est.diagnostics_["inference_choice"]
    assert est.inference_ == "svi" and made["method"] == "svi"
    assert made["reason"].startswith("SVI: NUTS was expected to take")
    # it stopped as soon as the steps taken by NUTS's two default chains exceeded the
    # budget's share of the first 100 warm-up iterations (200 x 100 steps), in loops of
    # 10 iterations (the mean is per chain)
    ran, mean = map(int, re.search(r"first (\d+) warm-up iterations averaged (\d+)",
                                   made["reason"]).groups())
    chains = 2
    assert ran % 10 == 0 and ran < 100 and ran * mean * chains > 0.99 * 200 * 100
    assert made["expected_nuts_seconds"] > choice.NUTS_BUDGET_SECONDS
    # well-conditioned data need a few steps per iteration: NUTS goes on
    easy = ImpactRegressor(random_state=0).fit(*_data())
    assert easy.inference_ == "nuts"
