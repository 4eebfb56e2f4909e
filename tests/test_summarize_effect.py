"""summarize_effect: sorted subgroups and the note that MAP has no posterior uncertainty."""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from skimpact import ImpactRegressor, summarize_effect


def _tree(draws, **attrs):
    tree = xr.DataTree.from_dict(
        {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), draws)})})
    tree.attrs.update(attrs)
    return tree


def test_groups_are_sorted_not_in_order_of_appearance():
    # rows 0-1 in "z", 2-3 in "a", 4-5 in "m"; the effect of each row is its position
    draws = np.broadcast_to(np.arange(6.0), (1, 50, 6))
    labels = np.array(["z", "z", "a", "a", "m", "m"])
    table = summarize_effect(_tree(draws), by=labels)
    assert table.index.tolist() == ["a", "m", "z"]
    np.testing.assert_allclose(table["mean"], [2.5, 4.5, 0.5])
    ordered = pd.Series(pd.Categorical(labels, categories=["z", "m", "a", "unused"]), name="g")
    table = summarize_effect(_tree(draws), by=ordered)
    assert table.index.tolist() == ["z", "m", "a"] and table.index.name == "g"
    assert summarize_effect(_tree(draws), by=[3, 3, 1, 1, 2, 2]).index.tolist() == [1, 2, 3]


@pytest.mark.slow
def test_map_effects_warn_that_they_have_no_posterior_uncertainty():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = X @ [1.0, 2.0] + rng.normal(0.0, 0.5, 100)
    est = ImpactRegressor(inference="map", num_steps=500, num_samples=20,
                          learning_rate=0.05, random_state=0).fit(X, y)
    eff = est.effect(X, {1: X[:, 1] + 1.0}, kind="mean")
    with pytest.warns(UserWarning, match=r"MAP fit \(inference='map'\): a point estimate with "
                                         r"no posterior uncertainty.*inference='nuts' or 'svi'"):
        ate = summarize_effect(eff).loc["ATE"]
    assert ate["sd"] < 1e-9 and ate["mean"] == pytest.approx(2.0, abs=0.1)  # one point
    lazy = est.estimate_effect(args_baseline={"X": X},
                               args_intervention={"X": X, "intervention": {1: 0.0}})
    with pytest.warns(UserWarning, match="MAP fit"):
        summarize_effect(lazy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summarize_effect(_tree(np.zeros((1, 10, 3)), inference="svi"))


def test_share_of_rows_credibly_positive_has_the_known_value():
    # 30 rows helped for sure (effect 1 +- 0.1), 10 rows with no effect (0 +- 1): the ATE
    # is positive, yet only 3/4 of the rows are credibly helped, 1 of the "b" group
    rng = np.random.default_rng(0)
    draws = np.concatenate([rng.normal(1.0, 0.1, (1, 2000, 30)),
                            rng.normal(0.0, 1.0, (1, 2000, 10))], axis=2)
    tree = _tree(draws)
    ate = summarize_effect(tree)
    assert ate.loc["ATE", "prob_positive"] == 1.0
    assert ate.loc["ATE", "credibly_positive"] == 0.75
    groups = np.array(["a"] * 20 + ["b"] * 20)
    by = summarize_effect(tree, by=groups)
    assert by["credibly_positive"].tolist() == [1.0, 0.5]
    # prob sets both the interval and what counts as credible: P(> 0) of a N(0, 1) row is
    # about 0.5, so at prob=0.4 every row counts
    assert summarize_effect(tree, prob=0.4).loc["ATE", "credibly_positive"] == 1.0

    from skimpact.effect_summaries import EffectSummarySink

    sink = EffectSummarySink("y", by=groups)
    flat = draws[0]
    sink.allocate({"y": flat.shape}, {"y": flat.dtype}, row_axes={"y": -1})
    for lo in range(0, 40, 16):
        sink.write("y", (slice(None), slice(lo, lo + 16)), flat[:, lo:lo + 16])
    assert sink.frame()["credibly_positive"].tolist() == [0.75]
    assert sink.frame(by=True)["credibly_positive"].tolist() == [1.0, 0.5]
