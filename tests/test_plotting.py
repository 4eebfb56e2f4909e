"""Plots render headless (Agg): each is saved as a PNG of the expected size."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from skimpact import plotting  # noqa: E402

from models import dose_age_data  # noqa: E402

DPI = 50


@pytest.fixture(scope="module")
def fits(dose_age_svi):
    return (dose_age_svi[0], *dose_age_data())


@pytest.fixture(scope="module")
def nuts(dose_age_nuts):
    return dose_age_nuts[0]


def _saved(fig, tmp_path, size=(4, 3)):
    fig.set_size_inches(*size)
    path = tmp_path / "plot.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    image = mpimg.imread(path)
    assert path.stat().st_size > 2000
    assert image.shape[:2] == (size[1] * DPI, size[0] * DPI)
    # Something was drawn: the image is not a single colour.
    assert image[..., :3].std() > 0.01
    return image


def test_plot_effect_forest_and_dist(fits, tmp_path):
    svi, X, _ = fits
    scenarios = {
        "dose + 1": svi.effect(X, {"dose": X["dose"] + 1.0}, kind="mean"),
        "age = 0": svi.effect(X, {"age": 0.0}, kind="mean"),
    }
    fig, ax = plt.subplots()
    assert plotting.plot_effect(scenarios, ax=ax) is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age = 0", "dose + 1"]
    # The marker of "dose + 1" sits at the mean ATE, 2 per unit of dose.
    ate = scenarios["dose + 1"]["predictions"]["y"].mean().item()
    assert ax.lines[0].get_xdata()[0] == pytest.approx(ate, rel=1e-5)
    assert ate == pytest.approx(2.0, abs=0.3)
    _saved(fig, tmp_path)
    ax = plotting.plot_effect(scenarios, kind="dist")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dose + 1", "age = 0"]
    _saved(ax.figure, tmp_path, (5, 3))
    with pytest.raises(ValueError, match="kind"):
        plotting.plot_effect(scenarios, kind="bars")


def test_plot_effect_by_feature_scatters_rows_and_bins_averages(fits, tmp_path):
    svi, X, _ = fits
    eff = svi.effect(X, {"dose": X["dose"] + 1.0}, kind="mean")
    ax = plotting.plot_effect_by_feature(eff, X["age"], bins=8)
    assert ax.get_xlabel() == "age"
    draws = eff["predictions"]["y"].values.reshape(-1, len(X))
    points = ax.collections[0].get_offsets()
    assert points.shape == (80, 2)  # one point per row, at its posterior mean
    np.testing.assert_allclose(points[:, 0], X["age"].to_numpy())
    np.testing.assert_allclose(points[:, 1], draws.mean(0), rtol=1e-5)
    line = ax.lines[0]  # eight bins of ten rows each: their average age and average effect
    order = np.argsort(X["age"].to_numpy(), kind="stable")
    blocks = order.reshape(8, 10)
    np.testing.assert_allclose(line.get_xdata(), X["age"].to_numpy()[blocks].mean(1))
    np.testing.assert_allclose(line.get_ydata(), draws[:, blocks].mean((0, 2)), rtol=1e-5)
    band = ax.collections[1].get_paths()[0].vertices  # the HDI band spans the bins
    assert band[:, 0].min() == pytest.approx(line.get_xdata().min())
    assert band[:, 0].max() == pytest.approx(line.get_xdata().max())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "row (posterior mean)", "94% HDI of the bin average", "bin average (8 bins)"]
    _saved(ax.figure, tmp_path)
    with pytest.raises(ValueError, match="one value per row"):
        plotting.plot_effect_by_feature(eff, X["age"][:10])
    with pytest.raises(ValueError, match="`bins` must be a positive integer; got 0"):
        plotting.plot_effect_by_feature(eff, X["age"], bins=0)
    with pytest.raises(ValueError, match="`kind` must be 'auto', 'numeric' or 'categorical'"):
        plotting.plot_effect_by_feature(eff, X["age"], kind="smooth")
    with pytest.raises(ValueError, match="NaN or infinite"):
        plotting.plot_effect_by_feature(eff, np.where(X["age"] > 0, np.nan, X["age"]))
    with pytest.raises(ValueError, match="kind='categorical'"):
        plotting.plot_effect_by_feature(eff, np.array(["a"] * 80, dtype=object), kind="numeric")


def test_plot_effect_by_feature_per_category(fits, tmp_path):
    svi, X, _ = fits
    eff = svi.effect(X, {"dose": X["dose"] + 1.0}, kind="mean")
    group = pd.Series(np.where(X["age"] > 0.5, "old", np.where(X["age"] < -0.5, "young",
                                                               "middle")), name="age group")
    ax = plotting.plot_effect_by_feature(eff, group)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["middle", "old", "young"]
    assert ax.get_xlabel() == "age group"
    assert ax.collections[0].get_offsets().shape == (80, 2)
    (bars,) = ax.containers  # one error bar per category at its average effect
    draws = eff["predictions"]["y"].values.reshape(-1, len(X))
    expected = [draws[:, (group == g).to_numpy()].mean() for g in ["middle", "old", "young"]]
    np.testing.assert_allclose(bars.lines[0].get_ydata(), expected, rtol=1e-5)
    _saved(ax.figure, tmp_path)
    ordered = group.astype(pd.CategoricalDtype(["young", "middle", "old"]))
    ax = plotting.plot_effect_by_feature(eff, ordered)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["young", "middle", "old"]
    plt.close(ax.figure)
    ax = plotting.plot_effect_by_feature(eff, (X["age"] > 0).astype(int), kind="categorical")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    plt.close(ax.figure)


def test_plot_ppc(fits, tmp_path):
    svi, X, y = fits
    ppc = svi.sample_posterior_predictive(X, in_sample=True)
    fig, ax = plt.subplots()
    assert plotting.plot_ppc(ppc, y, num_draws=20, ax=ax) is ax
    assert len(ax.lines) == 21
    _saved(fig, tmp_path)
    prior = svi.sample_prior_predictive(X, num_samples=20)
    _saved(plotting.plot_ppc(prior, y, num_draws=10).figure, tmp_path)


def test_plot_loss(fits, tmp_path):
    svi, _, _ = fits
    ax = plotting.plot_loss(svi, smooth=25)
    raw, smooth = ax.lines
    np.testing.assert_array_equal(raw.get_ydata(), svi.diagnostics_["loss"])
    assert len(smooth.get_ydata()) == 1500 - 24
    assert smooth.get_ydata()[-1] == pytest.approx(svi.diagnostics_["loss"][-25:].mean(), rel=1e-5)
    _saved(ax.figure, tmp_path)
    with pytest.raises(ValueError, match="NUTS"):
        plotting.plot_loss({"num_divergences": 0})


def test_plot_trace(nuts, tmp_path):
    axes = plotting.plot_trace(nuts, ["alpha", "beta"])
    assert axes.shape == (2, 2)
    # Two chains, and two elements of beta per chain.
    assert len(axes[0, 1].lines) == 2 and len(axes[1, 1].lines) == 4
    np.testing.assert_array_equal(
        axes[0, 1].lines[1].get_ydata(), nuts.posterior_["posterior"]["alpha"].values[1]
    )
    _saved(axes[0, 0].figure, tmp_path, (6, 4))
    fig, own = plt.subplots(1, 2)
    assert plotting.plot_trace(nuts, ["noise"], axes=own)[0, 0] is own[0]
    plt.close(fig)


def test_plot_qini_and_uplift_draw_the_band_and_the_random_line(tmp_path):
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 0.3, size=(200, 1)) + rng.normal(size=(1, 50))
    ax = plotting.plot_qini(draws, n_points=21)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["94% HDI", "posterior mean", "random targeting"]
    # the mean curve ends at the ATE, as the random line does
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(draws.mean())
    assert ax.lines[1].get_ydata()[-1] == pytest.approx(draws.mean())
    _saved(ax.figure, tmp_path)
    ax = plotting.plot_uplift(draws, n_points=21)
    assert ax.lines[0].get_ydata()[0] == pytest.approx(draws[:, np.argmax(draws.mean(0))].mean())
    _saved(ax.figure, tmp_path)
