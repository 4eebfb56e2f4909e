"""Diagnostics after every fit, convergence warnings, the posterior summary and the
progress bar of batched predictions."""

import warnings

import numpy as np
import pytest
import xarray as xr
from arviz_stats.base import array_stats
from sklearn.exceptions import ConvergenceWarning

from skimpact import ImpactRegressor
from skimpact.convergence import (
    ELBO_RTOL,
    RHAT_MAX,
    check_convergence,
    draws_by_chain,
    elbo_convergence,
    finish_fit,
    loss_problems,
    loss_window,
    mcmc_diagnostics,
    rhat_limits,
)
from skimpact.posterior_summary import row_dims, summary
from skimpact.tracking import diagnostic_metrics

from models import dose_age_data, fit_dose_age


@pytest.fixture(scope="module")
def svi(dose_age_svi):
    return dose_age_svi


@pytest.fixture(scope="module")
def nuts(dose_age_nuts):
    return dose_age_nuts


def test_svi_converged_fit_has_no_warning(svi):
    est, caught = svi
    diag = est.diagnostics_
    assert caught == []
    assert diag["converged"] and diag["elbo_converged"]
    # the 1000 steps at the full learning rate are judged in windows of 100, in float64
    # as the check reads them
    assert diag["elbo_full_rate_steps"] == 1000 and diag["elbo_window"] == 100
    loss = np.asarray(diag["loss"], float)[:1000]
    last, prev = loss[-100:].mean(), loss[-200:-100].mean()
    expected = abs(last - prev) / max(abs(last), abs(prev))
    assert diag["elbo_rel_change"] == pytest.approx(expected, rel=1e-3)


def test_svi_too_few_steps_warns_what_to_change():
    est, caught = fit_dose_age(inference="svi", num_steps=150, num_samples=20)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "num_steps" in message and "has not settled" in message
    assert est.diagnostics_["converged"] is False
    assert est.diagnostics_["elbo_rel_change"] > ELBO_RTOL


def test_elbo_convergence_on_known_traces():
    rng = np.random.default_rng(0)
    steps = np.arange(1000)
    settled = 100.0 + 50.0 * np.exp(-steps / 50.0) + rng.normal(0, 1.0, 1000)
    out = elbo_convergence(settled)
    assert out["elbo_window"] == 100 and out["elbo_converged"]
    assert out["elbo_problem"] is None and out["elbo_drop_ratio"] > 3
    falling = np.linspace(1000.0, 500.0, 1000)
    out = elbo_convergence(falling)
    assert out["elbo_rel_change"] == pytest.approx(50.05 / 574.77, rel=1e-3)
    assert out["elbo_problem"] == "not settled" and not out["elbo_converged"]
    # A small loss with noise: relative change above the tolerance but within the noise.
    noisy = 5.0 + 20.0 * np.exp(-np.arange(400) / 10.0) + rng.normal(0, 1.0, 400)
    out = elbo_convergence(noisy)
    assert out["elbo_rel_change"] > ELBO_RTOL and out["elbo_noise_ratio"] < 3
    assert out["elbo_converged"]
    short = elbo_convergence(np.ones(6))
    assert np.isnan(short["elbo_rel_change"]) and not short["elbo_converged"]


def test_elbo_convergence_flags_divergence_and_stalls():
    rng = np.random.default_rng(1)
    # Noise about a level that never falls: the parameters did not move (learning_rate=0).
    flat = elbo_convergence(100.0 + rng.normal(0, 1.0, 1000))
    assert flat["elbo_problem"] == "stalled" and not flat["elbo_converged"]
    assert flat["elbo_drop_ratio"] < 3 and flat["elbo_noise_ratio"] < 3  # settled, but stalled
    assert elbo_convergence(np.full(500, 7.0))["elbo_problem"] == "stalled"  # MAP, lr=0
    # Growing without bound, and a slow upward drift within two windows' noise.
    blowup = elbo_convergence(400.0 * np.exp(np.arange(1000) / 40.0))
    assert blowup["elbo_problem"] == "diverged" and blowup["elbo_drop_ratio"] < 0
    drift = elbo_convergence(100.0 + np.linspace(0, 5, 1000) + rng.normal(0, 1.0, 1000))
    assert drift["elbo_problem"] == "diverged"
    # Too short for two windows, still judged on its halves.
    assert elbo_convergence(np.geomspace(10.0, 1e9, 40))["elbo_problem"] == "diverged"
    # A steady fall of 0.07 % per window: below the relative tolerance, but the last
    # window still makes a tenth of the whole fall.
    slow = elbo_convergence(np.linspace(374.0, 371.5, 1000))
    assert slow["elbo_rel_change"] < ELBO_RTOL and slow["elbo_problem"] == "not settled"


def test_only_the_steps_at_the_full_rate_are_judged():
    rng = np.random.default_rng(2)
    # settled at the full rate, then 2 nats lower as a taper stills the parameters
    settled = np.r_[100.0 + 50.0 * np.exp(-np.arange(2000) / 50.0), np.linspace(100, 98, 1000)]
    settled += rng.normal(0, 1.0, 3000)
    assert elbo_convergence(settled)["elbo_problem"] == "not settled"
    judged = elbo_convergence(settled, full_rate_steps=2000)
    assert judged["elbo_converged"] and judged["elbo_full_rate_steps"] == 2000
    # thrown about at the full rate, brought down by the taper: still diverged
    thrown = np.r_[np.linspace(900.0, 5000.0, 200), np.linspace(5000.0, 80.0, 100)]
    verdict = elbo_convergence(thrown, full_rate_steps=200)
    assert verdict["elbo_problem"] == "diverged"
    message = loss_problems({"loss": thrown, **verdict})[0]
    assert "of the 200 steps at the full learning rate" in message


def test_a_full_rank_guide_off_the_curvature_warns_once_the_loss_settled():
    settled = {"loss": np.ones(10), "elbo_problem": None, "elbo_converged": True,
               "guide": "AutoMultivariateNormal"}
    assert loss_problems({**settled, "guide_sd_ratio_min": 0.4,
                          "guide_sd_ratio_max": 2.9}) == []
    narrow, = loss_problems({**settled, "guide_sd_ratio_min": 0.2, "guide_sd_ratio_max": 1.1})
    assert "is 5x narrower along some direction" in narrow and "ridge" in narrow
    wide, = loss_problems({**settled, "guide_sd_ratio_min": 0.9, "guide_sd_ratio_max": 24.0})
    assert "is 24x wider" in wide and "many rows" in wide
    # before the loss settled, its own message says what to change
    unsettled = {**settled, "elbo_problem": "not settled", "elbo_converged": False,
                 "elbo_rel_change": 0.1, "elbo_window": 5}
    only, = loss_problems({**unsettled, "guide_sd_ratio_min": 0.2, "guide_sd_ratio_max": 1.0})
    assert "has not settled" in only


def test_loss_window():
    assert [loss_window(n) for n in (1, 30, 100, 499, 500, 3000)] == [1, 30, 50, 50, 50, 300]


def test_tiny_learning_rate_stalls():
    est, caught = fit_dose_age(inference="svi", num_steps=300, num_samples=20, learning_rate=1e-7)
    diag = est.diagnostics_
    assert diag["elbo_problem"] == "stalled" and diag["converged"] is False
    assert diag["elbo_drop_ratio"] < 3
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "stalled" in message and "raise it" in message


def test_diverged_loss_warns_to_lower_learning_rate():
    loss = 400.0 * np.exp(np.arange(600) / 50.0)
    with pytest.warns(ConvergenceWarning, match="diverged") as caught:
        out = finish_fit({"loss": loss}, "map", None)
    assert out["elbo_problem"] == "diverged" and not out["converged"]
    assert "Lower `learning_rate`" in str(caught[0].message)


def test_finish_fit_is_pure_and_warns():
    rng = np.random.default_rng(2)
    diag = {"loss": 100.0 + rng.normal(0, 1.0, 600), "fit_seconds": 1.0}
    with pytest.warns(ConvergenceWarning, match="stalled"):
        out = finish_fit(diag, "svi", None)
    assert set(diag) == {"loss", "fit_seconds"}  # input untouched
    assert out["elbo_problem"] == "stalled" and out["converged"] is False
    assert out["fit_seconds"] == 1.0 and out["elbo_window"] == 60
    ds = xr.Dataset({"a": (("chain", "draw"), rng.normal(size=(2, 300)))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nuts = finish_fit({"num_divergences": 0}, "nuts", ds)
    assert nuts["converged"] and nuts["num_draws"] == 300 and "elbo_window" not in nuts


def test_draws_by_chain_and_row_dims():
    ds = xr.Dataset(
        {
            "b": (("chain", "draw", "feature"), np.arange(24.0).reshape(2, 3, 4)),
            "mu": (("chain", "draw", "obs"), np.zeros((2, 3, 5))),
            "z": (("chain", "draw", "k"), np.zeros((2, 3, 2))),
        },
        coords={"chain": [0, 1], "draw": [0, 1, 2], "feature": list("abcd"), "obs": range(5)},
    )
    assert row_dims(ds) == {"obs"}
    flat = draws_by_chain(ds["b"].transpose("feature", "draw", "chain"))
    assert flat.shape == (2, 3, 4) and flat.dtype == float
    np.testing.assert_array_equal(flat, np.arange(24.0).reshape(2, 3, 4))


def test_nuts_diagnostics_match_arviz_stats(nuts):
    est, _ = nuts
    diag = est.diagnostics_
    post = est.posterior_["posterior"]
    assert diag["num_chains"] == 2 and diag["num_draws"] == 150
    assert diag["num_divergences"] == int(est.posterior_["sample_stats"]["diverging"].sum())
    beta = post["beta"].transpose("chain", "draw", "feature").values.astype(float)
    rhat = array_stats.rhat(beta, chain_axis=0, draw_axis=1)
    ess = array_stats.ess(beta, method="bulk", chain_axis=0, draw_axis=1)
    assert diag["r_hat"]["beta"] == pytest.approx(float(np.max(rhat)))
    assert diag["ess_bulk"]["beta"] == pytest.approx(float(np.min(ess)))
    # the sampled sites only: coef, intercept and sigma are deterministic transforms of
    # them and would repeat their problems under other names
    assert set(diag["r_hat"]) == {"alpha", "beta", "noise"}
    expected = check_convergence(diag, "nuts")
    assert diag["converged"] == (expected == [])
    metrics = diagnostic_metrics(est)
    assert metrics["max_r_hat"] == pytest.approx(max(diag["r_hat"].values()))
    assert metrics["min_ess_tail"] == pytest.approx(min(diag["ess_tail"].values()))
    assert metrics["num_divergences"] == diag["num_divergences"]


def test_mcmc_diagnostics_single_chain_and_constant_draws():
    rng = np.random.default_rng(1)
    steady = rng.normal(size=(1, 400))
    drifting = steady + np.linspace(0.0, 3.0, 400)
    ds = xr.Dataset(
        {
            "steady": (("chain", "draw"), steady),
            "drifting": (("chain", "draw"), drifting),
            "fixed": (("chain", "draw", "k"), np.ones((1, 400, 2))),
        }
    )
    diag = mcmc_diagnostics(ds)
    # One chain: r_hat compares its halves, so a drift shows and a steady chain passes.
    assert diag["r_hat"]["steady"] < 1.01 < diag["r_hat"]["drifting"]
    halves = np.stack([steady[0, :200], steady[0, 200:]])
    assert diag["r_hat"]["steady"] == pytest.approx(
        float(array_stats.rhat(halves, chain_axis=0, draw_axis=1))
    )
    assert diag["ess_bulk"]["steady"] > 300 > diag["ess_bulk"]["drifting"]
    # Draws that never move (a MAP point) have no r_hat or ESS.
    assert np.isnan(diag["r_hat"]["fixed"]) and np.isnan(diag["ess_bulk"]["fixed"])
    table = summary(ds, var_names=["fixed"])
    assert list(table.index) == ["fixed[0]", "fixed[1]"]
    assert table[["ess_bulk", "ess_tail", "r_hat"]].isna().all().all()


def _ar1(rng, rho, shape):
    """Exact but autocorrelated draws: stationary AR(1) chains along the last axis."""
    noise = rng.normal(size=shape)
    x = np.empty(shape)
    x[..., 0] = noise[..., 0] / np.sqrt(1 - rho**2)
    for t in range(1, shape[-1]):
        x[..., t] = rho * x[..., t - 1] + noise[..., t]
    return x


@pytest.mark.slow
def test_exact_draws_rarely_trip_the_rhat_check_and_disagreeing_chains_do():
    # 2 chains of 500 autocorrelated draws (bulk ESS about 340) of 30 elements, as in a
    # hierarchical model with 30 group intercepts: the largest of 30 r_hats passes 1.01
    # in most fits by chance alone, so a fixed 1.01 warned of chains that sample exactly
    rng = np.random.default_rng(0)
    fits = [mcmc_diagnostics(xr.Dataset(
        {"z": (("chain", "draw", "k"), _ar1(rng, 0.5, (30, 2, 500)).transpose(1, 2, 0))}))
        for _ in range(40)]
    assert np.mean([f["r_hat"]["z"] > 1.01 for f in fits]) > 0.5
    tripped = [any("r_hat" in m for m in check_convergence({**f, "num_divergences": 0}, "nuts"))
               for f in fits]
    assert sum(tripped) <= 2  # RHAT_FALSE_ALARM = 1% per fit
    assert all(1.01 < f["r_hat_limit"]["z"] < 1.06 for f in fits)
    # one chain shifted by one posterior sd: the chains disagree, and it shows
    draws = _ar1(rng, 0.5, (30, 2, 500)).transpose(1, 2, 0)
    draws[1, :, 3] += 1.0
    diag = mcmc_diagnostics(xr.Dataset({"z": (("chain", "draw", "k"), draws)}))
    message = next(m for m in check_convergence({**diag, "num_divergences": 0}, "nuts")
                   if "r_hat" in m)
    assert "z (" in message and "chains disagree" in message
    assert "what exact draws of their ESS reach by chance" in message
    # with a bulk ESS of thousands the limit is RHAT_MAX itself
    assert rhat_limits([5000.0], n_chains=4, n_elements=30)[0] == RHAT_MAX


def test_check_convergence_messages():
    good = {
        "num_divergences": 0, "num_chains": 4,
        "r_hat": {"a": 1.001}, "ess_bulk": {"a": 900.0}, "ess_tail": {"a": 800.0},
    }
    assert check_convergence(good, "nuts") == []
    bad = {
        "num_divergences": 3, "num_chains": 4,
        "r_hat": {"a": 1.05, "b": 1.0}, "ess_bulk": {"a": 120.0, "b": 900.0},
        "ess_tail": {"a": 300.0, "b": 350.0},
    }
    divergences, rhat, ess = check_convergence(bad, "nuts")
    assert "3 divergent" in divergences and "target_accept_prob" in divergences
    assert "a (1.050)" in rhat and "b (" not in rhat and "num_warmup" in rhat
    assert "below 400" in ess and "a (bulk 120, tail 300)" in ess and "b (tail 350)" in ess
    assert "bulk ESS measures" in ess and "num_samples" in ess
    assert "4 chains disagree" in rhat
    # one chain: its two halves, and what one chain cannot show
    one = check_convergence({**bad, "num_chains": 1, "r_hat": {"a": 1.2}}, "nuts")[1]
    assert "single chain's two halves" in one and "num_chains=2" in one
    assert "chains disagree" not in one


def test_a_deterministic_copy_of_a_sample_site_is_judged_once():
    rng = np.random.default_rng(0)
    drift = np.cumsum(rng.normal(size=(1, 400)), axis=1)  # one badly mixed chain
    ds = xr.Dataset({"beta": (("chain", "draw"), drift), "coef": (("chain", "draw"), drift)})
    with pytest.warns(ConvergenceWarning) as caught:
        out = finish_fit({"num_divergences": 0, "num_chains": 1}, "nuts", ds,
                         sample_sites=["beta"])
    assert set(out["r_hat"]) == {"beta"}
    assert all("coef" not in str(w.message) for w in caught)


def test_summary_table(nuts, svi):
    est, _ = nuts
    table = est.summary(prob=0.9)
    assert list(table.columns) == [
        "mean", "sd", "median", "hdi_lower", "hdi_upper", "ess_bulk", "ess_tail", "r_hat"
    ]
    assert list(table.index[:4]) == ["alpha", "beta[dose]", "beta[age]", "noise"]
    coef = est.posterior_["posterior"]["coef"].sel(feature="dose").values.ravel()
    row = table.loc["coef[dose]"]
    assert row["mean"] == pytest.approx(coef.mean(), rel=1e-5)
    assert row["sd"] == pytest.approx(coef.std(ddof=1), rel=1e-4)
    lo, hi = array_stats.hdi(coef.astype(float), 0.9)
    assert (row["hdi_lower"], row["hdi_upper"]) == pytest.approx((lo, hi))
    assert row["mean"] == pytest.approx(2.0, abs=0.3)
    assert table.loc["beta[dose]", "r_hat"] <= est.diagnostics_["r_hat"]["beta"] + 1e-12
    # SVI draws are independent draws of the guide: no chain to judge, no ESS or r_hat.
    svi_table = svi[0].summary(var_names=["sigma"])
    assert list(svi_table.index) == ["sigma"]
    assert svi_table["mean"].iloc[0] == pytest.approx(0.5, abs=0.15)
    assert list(svi_table.columns) == ["mean", "sd", "median", "hdi_lower", "hdi_upper"]
    forced = summary(svi[0].posterior_, var_names=["sigma"], mcmc=True)
    assert list(forced.columns[-3:]) == ["ess_bulk", "ess_tail", "r_hat"]
    assert summary(svi[0].posterior_).equals(svi[0].summary())


def test_progress_bar_on_batched_predictions(capsys):
    X, y = dose_age_data()
    params = dict(inference="svi", num_steps=200, num_samples=20, random_state=0)
    plain = ImpactRegressor(**params).fit(X, y).predict(X)
    est = ImpactRegressor(progress_bar=True, batch_size=30, **params).fit(X, y)
    capsys.readouterr()
    shown = est.predict(X)
    err = capsys.readouterr().err
    np.testing.assert_allclose(shown, plain, rtol=1e-6)
    assert "predict" in err and "80/80" in err
    # prediction settings are frozen at fit like everything else
    est.set_params(progress_bar=False)
    est.predict(X)
    assert "80/80" in capsys.readouterr().err


def test_a_loss_thrown_between_levels_is_told_to_lower_the_step_size():
    # a too-large learning rate: the loss jumps between levels, window to window, and ends
    # no lower than it started (beyond its noise); ranks, not means, judge the levels
    rng = np.random.default_rng(3)
    levels = np.repeat([900.0, 700.0, 1400.0, 900.0, 1400.0, 700.0, 900.0, 1400.0, 700.0, 900.0], 40)
    loss = levels * rng.lognormal(0.0, 0.3, 400)
    with pytest.warns(ConvergenceWarning, match="diverged") as caught:
        out = finish_fit({"loss": loss}, "svi", None)
    assert out["elbo_problem"] == "diverged" and out["elbo_levels_differ"] is True
    message = str(caught[0].message)
    assert "jumped between windows" in message and "Lower `learning_rate`" in message
    # the same noise about one level: the parameters never moved, so the advice is to raise it
    flat = elbo_convergence(900.0 * rng.lognormal(0.0, 0.3, 400))
    assert flat["elbo_problem"] == "stalled" and flat["elbo_levels_differ"] is False
