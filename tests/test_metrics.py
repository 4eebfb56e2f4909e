"""Probabilistic metrics against closed forms, scorers, pointwise log-likelihood and LOO."""

import numpy as np
import pytest
from scipy import stats

from skimpact import ImpactClassifier, ImpactRegressor
from skimpact.metrics import (
    crps,
    interval_coverage,
    interval_width,
    log_score,
    log_score_scorer,
    neg_crps_scorer,
    neg_interval_width_scorer,
    predictive_draws,
)

SVI = dict(inference="svi", num_steps=500, num_samples=200, learning_rate=0.05, random_state=0)


def _normal_crps(y, mu, sigma):
    z = (y - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def test_crps_of_normal_draws_matches_the_analytic_normal_crps():
    rng = np.random.default_rng(0)
    y = np.array([-1.0, 0.5, 3.0, 7.0])
    mu, sigma = np.array([0.0, 0.0, 1.0, 2.0]), np.array([1.0, 2.0, 0.5, 3.0])
    draws = rng.normal(mu, sigma, size=(40000, 4))
    np.testing.assert_allclose(crps(y, draws, pointwise=True), _normal_crps(y, mu, sigma), rtol=0.01)
    assert crps(y, draws) == pytest.approx(_normal_crps(y, mu, sigma).mean(), rel=0.01)


def test_crps_of_a_point_mass_is_the_absolute_error_and_weights_average():
    draws = np.full((10, 3), 2.0)
    y = np.array([0.0, 2.0, 5.0])
    np.testing.assert_allclose(crps(y, draws, pointwise=True), [2.0, 0.0, 3.0])
    assert crps(y, draws, sample_weight=[1, 0, 1]) == pytest.approx(2.5)


def test_crps_of_two_equally_likely_values_is_exact():
    # F puts 1/2 on 0 and on 1; y = 0: E|X - y| = 1/2, E|X - X'| = 1/2 -> CRPS = 1/4.
    draws = np.array([[0.0], [1.0]])
    assert crps([0.0], draws) == pytest.approx(0.25)


def test_log_score_is_the_log_of_the_mean_density():
    y = np.array([0.3, -1.2])
    ll = np.stack([stats.norm.logpdf(y, 0, 1), stats.norm.logpdf(y, 1, 1)])
    expected = np.log(0.5 * (stats.norm.pdf(y, 0, 1) + stats.norm.pdf(y, 1, 1)))
    np.testing.assert_allclose(log_score(ll, pointwise=True), expected, rtol=1e-12)
    assert log_score(ll) == pytest.approx(expected.mean())
    # Stable for very negative log-likelihoods, where exp underflows.
    assert log_score(np.full((5, 1), -2000.0)) == pytest.approx(-2000.0)


def test_interval_coverage_and_width_match_normal_quantiles():
    rng = np.random.default_rng(1)
    draws = rng.normal(0, 1, size=(50000, 2))
    z = stats.norm.ppf(0.95)
    assert interval_width(draws, 0.9) == pytest.approx(2 * z, rel=0.02)
    assert interval_coverage([0.0, 3.0], draws, 0.9, pointwise=True).tolist() == [1.0, 0.0]
    y = rng.normal(0, 1, size=2000)
    many = rng.normal(0, 1, size=(2000, 2000))
    assert interval_coverage(y, many, 0.8) == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="prob"):
        interval_width(draws, 1.5)
    with pytest.raises(ValueError, match="n_draws"):
        crps([0.0, 1.0], np.zeros((5, 3)))


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = 1.0 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 80)
    return ImpactRegressor(**SVI).fit(X, y), X, y


def test_log_likelihood_is_the_normal_log_density_per_draw_and_row(fitted):
    est, X, y = fitted
    tree = est.log_likelihood(X, y)
    ll = tree["log_likelihood"]["y"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (1, 200, 80)
    post = est.posterior_["posterior"]
    mu = post["intercept"].values[0][:, None] + post["coef"].values[0] @ X.T
    expected = stats.norm.logpdf(y, mu, post["sigma"].values[0][:, None])
    np.testing.assert_allclose(ll.values[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tree["observed_data"]["y"].values, y)


def test_scorers_equal_the_metrics_on_the_estimators_draws(fitted):
    est, X, y = fitted
    draws = predictive_draws(est, X)
    assert draws.shape == (200, 80)
    assert neg_crps_scorer(est, X, y) == pytest.approx(-crps(y, draws))
    assert neg_interval_width_scorer(est, X, y) == pytest.approx(-interval_width(draws))
    assert log_score_scorer(est, X, y) == pytest.approx(log_score(est.log_likelihood(X, y)))
    # For y ~ N(mu, s) scored by N(mu, s) the expected CRPS is s / sqrt(pi); s = 0.5 here.
    assert -neg_crps_scorer(est, X, y) == pytest.approx(0.5 / np.sqrt(np.pi), rel=0.15)


@pytest.mark.slow
def test_loo_ranks_the_true_model_above_a_wrong_one(fitted):
    est, X, y = fitted
    good = est.loo(X, y, pointwise=True)
    bad = ImpactRegressor(**SVI).fit(X[:, :1], y).loo(X[:, :1], y)
    assert good.elpd > bad.elpd + 20
    in_sample = log_score(est.log_likelihood(X, y, in_sample=True), pointwise=True).sum()
    assert good.elpd < in_sample
    assert 2.0 < good.p < 8.0  # 4 parameters
    assert good.elpd_i.shape == (80,) and float(good.pareto_k.max()) < 0.7


@pytest.mark.slow
def test_classifier_log_likelihood_uses_the_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 1))
    y = np.where(X[:, 0] + rng.normal(0, 0.3, 60) > 0, "yes", "no")
    clf = ImpactClassifier(**SVI).fit(X, y)
    ll = clf.log_likelihood(X, y)["log_likelihood"]["y"].values
    p_yes = clf.predict_proba(X)[:, 1]
    # The mean over draws of p(y | draw) is the posterior predictive probability of y.
    mean_p = np.exp(ll).mean((0, 1))
    np.testing.assert_allclose(mean_p, np.where(y == "yes", p_yes, 1 - p_yes), atol=1e-4)
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.log_likelihood(X[:2], np.array(["yes", "maybe"]))
