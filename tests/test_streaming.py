"""Streaming effect summaries in one process: the numbers of the full arrays, and parts of a
table predicted apart get that table's random numbers."""

import contextlib

import numpy as np
import pandas as pd
import pytest

from skimpact import ConstantEffectWarning, ImpactRegressor, effect, summarize_effect
from skimpact.blockwise import stream_effect
from skimpact.scenarios import fitted_scenario
from skimpact.streaming import effect_summary
from skimpact.effect_summaries import EffectSummarySink

SVI = dict(inference="svi", num_steps=150, num_samples=40, random_state=0)


@pytest.fixture(scope="module")
def reg():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(150, 2)), columns=["x", "z"])
    y = X["x"] + 2.0 * X["z"] + rng.normal(0, 0.5, 150)
    return ImpactRegressor(**SVI, batch_size=16).fit(X, y)


@pytest.fixture(scope="module")
def rows():
    X = pd.DataFrame(np.random.default_rng(1).normal(size=(101, 2)), columns=["x", "z"])
    X.index = X.index * 2 + 7
    return X


@pytest.mark.slow
def test_parts_get_the_random_numbers_of_the_table(reg, rows):
    pred = reg.predictor_
    whole, _ = pred.predict(fitted_scenario(reg, rows, None, {})[1], pred.key())
    parts = []
    for lo, hi in ((0, 5), (5, 40), (40, 41), (41, 101)):  # across batch boundaries
        part = fitted_scenario(reg, rows.iloc[lo:hi], None, {})[1]
        parts.append(pred.predict(part, pred.key(), rows_of=(lo, 101))[0]["y"])
    np.testing.assert_array_equal(np.concatenate(parts, -1), whole["y"])
    with pytest.raises(ValueError, match="does not hold 101 rows"):
        pred.predict(fitted_scenario(reg, rows, None, {})[1], pred.key(), rows_of=(10, 101))


def _constant_effect_warning(kw):
    """The linear model's per-row effects are all equal, which per_row=True reports."""
    if kw.get("per_row"):
        return pytest.warns(ConstantEffectWarning)
    return contextlib.nullcontext()


@pytest.mark.parametrize("kw", [{}, {"prob": 0.8}, {"per_row": True}])
def test_summary_equals_that_of_the_full_arrays(reg, rows, kw):
    shift = {"z": lambda v: v + 1.0}
    with _constant_effect_warning(kw):
        full = summarize_effect(effect(reg, rows, shift), **kw)
    with _constant_effect_warning(kw):
        streamed = effect_summary(reg, rows, shift, **kw)
    pd.testing.assert_index_equal(streamed.index, full.index)
    np.testing.assert_allclose(streamed.to_numpy(), full.to_numpy(), rtol=1e-5, atol=1e-7)


def test_groups_and_quantile_intervals(reg, rows):
    shift = {"z": 1.0}
    labels = np.where(rows["x"] > 0, "high", "low")
    full = effect(reg, rows, shift, kind="mean")
    by_array = effect_summary(reg, rows, shift, kind="mean", by=labels)
    pd.testing.assert_frame_equal(by_array, summarize_effect(full, by=labels), rtol=1e-5)
    by_column = effect_summary(reg, rows.assign(segment=labels), shift, kind="mean",
                               by="segment")
    assert by_column.index.name == "segment"
    np.testing.assert_allclose(by_column.to_numpy(), by_array.to_numpy())
    q = effect_summary(reg, rows, shift, kind="mean", interval="quantile", prob=0.5)
    per_draw = full["predictions"]["y"].mean("obs").values.ravel()
    np.testing.assert_allclose(q[["eti_lower", "eti_upper"]].to_numpy()[0],
                               np.quantile(per_draw, [0.25, 0.75]), rtol=1e-5)


def test_sink_merges_partitions_in_order():
    draws = np.random.default_rng(2).normal(1.0, 1.0, size=(200, 9))
    labels = np.array(list("abcabcaab"))
    whole = EffectSummarySink("y", by=labels)
    whole.allocate({"y": draws.shape}, {"y": draws.dtype}, row_axes={"y": -1})
    whole.write("y", (slice(None), slice(0, 9)), draws)
    halves = []
    for lo, hi in ((0, 4), (4, 9)):
        sink = EffectSummarySink("y", by=labels[lo:hi])
        sink.allocate({"y": (200, hi - lo)}, {"y": draws.dtype}, row_axes={"y": -1})
        sink.write("y", (slice(None), slice(0, hi - lo)), draws[:, lo:hi])
        halves.append(sink)
    merged = halves[0].merge(halves[1])
    pd.testing.assert_frame_equal(merged.frame(by=True), whole.frame(by=True))
    assert merged.frame(by=True).index.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(whole.frame()["mean"].iloc[0], draws.mean())


def test_stream_effect_aborts_its_sink_on_failure(reg, rows):
    class Failing(EffectSummarySink):
        aborted = False

        def write(self, name, index, array):
            raise OSError("disk full")

        def abort(self):
            Failing.aborted = True

    with pytest.raises(OSError, match="disk full"):
        stream_effect(reg, rows, {"z": 1.0}, sink=Failing("y"))
    assert Failing.aborted


def test_refusals(reg, rows):
    with pytest.raises(ValueError, match="`interval` must be 'hdi'"):
        effect_summary(reg, rows, {"z": 1.0}, interval="eti")
    with pytest.raises(ValueError, match="`prob` must be a number in"):
        effect_summary(reg, rows, {"z": 1.0}, prob=1.5)
    with pytest.raises(ValueError, match=r"`by` needs one label per row \(101\)"):
        effect_summary(reg, rows, {"z": 1.0}, by=np.zeros(3))
    with pytest.raises(KeyError, match="neither a column of X"):
        effect_summary(reg, rows, {"z": 1.0}, by="region")
    with pytest.raises(ValueError, match="An effect needs an intervention"):
        effect_summary(reg, rows, {})
