"""Qini and uplift curves and the policy value, against their definitions on known draws."""

import numpy as np
import pytest
import xarray as xr

from skimpact.uplift import policy_value, qini_curve, ranking, uplift_curve


@pytest.fixture(scope="module")
def draws():
    # draw s, row i: a_s + b_s * x_i, with b_s > 0, so every draw ranks the rows by x
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    a, b = rng.normal(1.0, 0.2, 500), rng.normal(2.0, 0.1, 500)
    return a[:, None] + b[:, None] * x[None, :], x


def test_qini_curve_is_the_cumulative_gain_of_the_ranking(draws):
    values, x = draws
    table, curves = qini_curve(values, n_points=41, return_draws=True)
    order = np.argsort(-x)
    np.testing.assert_array_equal(ranking(values), order)
    # one point per row: the k-th point sums the k rows of largest x, per draw
    expected = np.concatenate([np.zeros((500, 1)), np.cumsum(values[:, order], 1)], 1) / 40
    np.testing.assert_allclose(curves, expected, rtol=1e-12)
    np.testing.assert_allclose(table["mean"], expected.mean(0), rtol=1e-12)
    assert (table["hdi_lower"] <= table["mean"]).all() and (table["mean"] <= table["hdi_upper"]).all()
    # the curve ends at the ATE, where the random line also ends; it starts at 0
    ate = values.mean(1).mean()
    assert table["mean"].iloc[-1] == pytest.approx(ate) == table["random_mean"].iloc[-1]
    assert table["mean"].iloc[0] == 0.0 and table.index[0] == 0.0
    area = (expected - np.linspace(0, 1, 41)[None, :] * values.mean(1)[:, None]).mean(1)
    assert table.attrs["area"]["mean"] == pytest.approx(area.mean())
    assert area.mean() > 0  # ranking by a real gradient beats random targeting


def test_uplift_curve_is_the_average_effect_of_the_rows_treated(draws):
    values, x = draws
    table = uplift_curve(values, n_points=5)
    order = np.argsort(-x)
    k = np.array([1, 10, 20, 30, 40])
    np.testing.assert_array_equal(table["n_treated"], k)
    expected = [values[:, order[:j]].mean(1).mean() for j in k]
    np.testing.assert_allclose(table["mean"], expected, rtol=1e-12)
    assert np.all(np.diff(table["mean"]) < 0)  # the best rows first


def test_policy_value_treats_the_rows_credibly_above_the_threshold():
    rng = np.random.default_rng(1)
    mean = np.array([2.0, 1.0, 0.05, -1.0])
    values = mean + rng.normal(0, 0.1, size=(2000, 4))
    table = policy_value(values, threshold=0.5, min_prob=0.9)
    # P(effect > 0.5) is ~1 for rows 0 and 1, ~0 for rows 2 and 3
    treated = np.array([True, True, False, False])
    value = ((values - 0.5) * treated).mean(1)
    everyone = (values - 0.5).mean(1)
    assert table.loc["policy", "share_treated"] == 0.5
    np.testing.assert_allclose(table["mean"], [value.mean(), everyone.mean(),
                                              (value - everyone).mean()])
    assert table.loc["policy", "mean"] == pytest.approx((1.5 + 0.5) / 4, abs=0.01)
    assert table.loc["policy_vs_all", "prob_positive"] == 1.0
    # a threshold nothing credibly exceeds treats no one: value exactly 0
    assert policy_value(values, threshold=5.0).loc["policy", "mean"] == 0.0


def test_curves_take_an_effect_tree():
    values = np.random.default_rng(2).normal(size=(1, 30, 5))
    tree = xr.DataTree.from_dict(
        {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), values)})})
    tree.attrs["outcome"] = "y"
    np.testing.assert_allclose(qini_curve(tree)["mean"], qini_curve(values[0])["mean"])
    with pytest.raises(ValueError, match="shape"):
        qini_curve(values)
