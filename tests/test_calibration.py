"""Simulation-based calibration of effects: the table, the summary, errors, the rank plot,
and (slow) a reduced calibration panel with the default settings."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skimpact import ImpactClassifier, ImpactRegressor
from skimpact.calibration import CalibrationResult, calibrate_effect

FAST = dict(inference="nuts", num_warmup=150, num_samples=200, num_chains=1)
SHIFT = {0: 1.0}
BASE = {0: 0.0}


def simulate(rng):
    """60 rows; setting column 0 to 1 against 0 adds 0.7 to the mean of y."""
    X = rng.normal(size=(60, 2))
    return X, 0.5 + 0.7 * X[:, 0] - 0.3 * X[:, 1] + rng.normal(0, 0.5, 60), 0.7


@pytest.fixture(scope="module")
def result():
    return calibrate_effect(ImpactRegressor(**FAST), simulate, SHIFT, BASE, n_simulations=4,
                            random_state=0)


@pytest.mark.slow
def test_table_and_summary_are_consistent(result):
    table, s = result.table, result.summary
    assert list(table.index) == [0, 1, 2, 3] and table.index.name == "simulation"
    assert (table["true_effect"] == 0.7).all() and (table["n_draws"] == 200).all()
    assert (table["method"] == "nuts").all()
    assert ((table["lower"] < table["mean"]) & (table["mean"] < table["upper"])).all()
    assert table["covered"].tolist() == [
        lo <= 0.7 <= hi for lo, hi in zip(table["lower"], table["upper"])]
    np.testing.assert_allclose(table["z"], (table["mean"] - 0.7) / table["sd"])
    assert table["rank"].between(0, 200).all()
    assert s["n_simulations"] == 4 and s["prob"] == 0.94
    assert s["coverage"] == pytest.approx(table["covered"].mean())
    assert s["mean_bias_sd"] == pytest.approx(table["z"].mean())
    assert s["mean_width"] == pytest.approx((table["upper"] - table["lower"]).mean())
    # 60 rows, noise sd 0.5: the effect's posterior sd is about 0.5 / sqrt(60)
    assert 0.04 < s["mean_sd"] < 0.1 and abs(s["mean_bias_sd"]) < 2


@pytest.mark.slow
def test_per_row_truths_give_the_coverage_of_per_row_intervals(result):
    # the linear model's effect is one value for every row: each row's interval is the
    # average's, so a row covers its (constant) truth exactly when the average does
    def simulate_rows(rng):
        X, y, truth = simulate(rng)
        return X, y, np.full(len(X), truth)

    rows = calibrate_effect(ImpactRegressor(**FAST), simulate_rows, SHIFT, BASE,
                            n_simulations=2, random_state=0, per_row=True)
    cols = ["true_effect", "mean", "sd", "lower", "upper", "covered"]
    pd.testing.assert_frame_equal(rows.table[cols], result.table[cols].iloc[:2])
    assert rows.table["row_coverage"].tolist() == rows.table["covered"].astype(float).tolist()
    assert rows.summary["mean_row_coverage"] == pytest.approx(rows.table["covered"].mean())
    assert "row_coverage" not in result.table and "mean_row_coverage" not in result.summary


@pytest.mark.slow
def test_same_seed_same_table_and_parallel_agrees(result):
    again = calibrate_effect(ImpactRegressor(**FAST), simulate, SHIFT, BASE, n_simulations=2,
                             random_state=0, n_jobs=2)
    cols = ["true_effect", "mean", "sd", "lower", "upper", "rank"]
    pd.testing.assert_frame_equal(again.table[cols], result.table[cols].iloc[:2])


@pytest.mark.slow
def test_pipelines_and_classifiers_are_calibrated_through_their_seeds():
    def simulate_binary(rng):
        X = rng.normal(size=(80, 1))
        p1, p0 = 1 / (1 + np.exp(-(X[:, 0] + 1))), 1 / (1 + np.exp(-X[:, 0]))
        y = rng.binomial(1, p0)
        return X, y, float(np.mean(p1 - p0))

    out = calibrate_effect(make_pipeline(StandardScaler(), ImpactClassifier(**FAST)),
                           simulate_binary, {0: lambda x: x + 1.0}, n_simulations=1,
                           random_state=1, prob=0.5)
    row = out.table.iloc[0]
    assert 0 < row["mean"] < 1 and row["method"] == "nuts" and out.summary["prob"] == 0.5


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_simulations=0), r"`n_simulations` must be a positive integer"),
    (dict(prob=1.5), r"`prob` must be a number in \(0, 1\)"),
    (dict(random_state="seed"), r"`random_state` must be an int"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate_effect(ImpactRegressor(**FAST), simulate, SHIFT, **kwargs)


def test_bad_simulators_are_named():
    with pytest.raises(ValueError, match=r"`simulate` must be a callable"):
        calibrate_effect(ImpactRegressor(**FAST), "data.csv", SHIFT)
    with pytest.raises(ValueError, match=r"must return a tuple \(X, y, true_effect\); got tuple of 2"):
        calibrate_effect(ImpactRegressor(**FAST), lambda rng: simulate(rng)[:2], SHIFT,
                         n_simulations=1)


@pytest.mark.slow
def test_effects_with_a_class_dim_are_refused():
    def simulate_binary(rng):
        X = rng.normal(size=(40, 1))
        return X, (X[:, 0] + rng.normal(size=40) > 0).astype(int), 0.2

    with pytest.raises(ValueError, match=r"more than one value per draw.*kind='mean'"):
        calibrate_effect(ImpactClassifier(**FAST), simulate_binary, SHIFT, kind="probs",
                         n_simulations=1)


@pytest.mark.slow
def test_rank_plot_counts_the_ranks(result):
    import matplotlib

    matplotlib.use("Agg")
    from skimpact.plotting import plot_ranks

    ax = plot_ranks(result, bins=4)
    heights = [p.get_height() for p in ax.patches[-4:]]
    expected = np.histogram(result.table["rank"] / 200, bins=np.linspace(0, 1, 5))[0]
    assert heights == expected.tolist()
    with pytest.raises(ValueError, match=r"`bins` must be a positive integer"):
        plot_ranks(result, bins=0)
    with pytest.raises(ValueError, match=r"no simulations"):
        plot_ranks(CalibrationResult(result.table.iloc[:0], result.summary))


def _panel():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration_panel.py"
    spec = importlib.util.spec_from_file_location("_calibration_panel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("design", ["linear", "logistic"])
def test_reduced_panel_with_default_settings(design):
    # 20 simulations: coverage >= 0.75 fails with probability < 0.3 % at a true 0.94;
    # |mean bias| <= 0.6 posterior sd is about 2.7 standard errors of the mean.
    make, sim, intervention, baseline = _panel().DESIGNS[design]
    out = calibrate_effect(make(), sim, intervention, baseline, n_simulations=20,
                           random_state=0)
    assert out.summary["coverage"] >= 0.75
    assert abs(out.summary["mean_bias_sd"]) <= 0.6
