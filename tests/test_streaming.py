"""Streaming effect summaries in one process: the numbers of the full arrays, and parts of a
table predicted apart get that table's random numbers."""

import contextlib

import jax
import numpy as np
import pandas as pd
import pytest

from skimpact import (
    ConstantEffectWarning, ImpactClassifier, ImpactRegressor, effect, summarize_effect,
)
from skimpact.blockwise import stream_effect
from skimpact.effect_summaries import EffectSummarySink
from skimpact.estimands import SubsetSums, estimand_masks
from skimpact.predictive import _COMPILED
from skimpact.scenarios import fitted_scenario
from skimpact.streaming import effect_summary

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

        def add_reduced(self, reduced, batch_rows, rows):
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


# ------------------------------------------------------------- reductions on the device
class _OnHost(EffectSummarySink):
    """The sink with its device reduction turned off: the engine hands it every block of
    draws, which it reduces on the host."""

    def allocate(self, *args, **kwargs):
        super().allocate(*args, **kwargs)
        self.reduction = None


class _Recording(EffectSummarySink):
    """The sink noting the largest array it is handed and whether it ever got draws."""

    def allocate(self, *args, **kwargs):
        super().allocate(*args, **kwargs)
        self.largest, self.wrote = 0, False

    def write(self, name, index, array):
        self.wrote = True
        super().write(name, index, array)

    def add_reduced(self, reduced, batch_rows, rows):
        self.largest = max([self.largest] + [v.size for v in reduced.values()])
        super().add_reduced(reduced, batch_rows, rows)


@pytest.fixture(scope="module")
def clf(reg):
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(150, 2)), columns=["x", "z"])
    labels = np.where(X["x"] + X["z"] + rng.normal(0, 0.5, 150) > 0, "yes", "no")
    return ImpactClassifier(**SVI, batch_size=16).fit(X, labels)


def _block_sinks(kw):
    """The same sink twice, allocated for 200 draws of 20 rows of 3 classes."""
    sinks = [EffectSummarySink("y", **kw) for _ in range(2)]
    for sink in sinks:
        sink.allocate({"y": (200, 20, 3)}, {"y": np.float32}, row_axes={"y": -2})
    return sinks


@pytest.mark.parametrize("interval", ["hdi", "quantile"])
def test_a_block_reduced_on_the_device_equals_it_reduced_on_the_host(interval):
    rng = np.random.default_rng(3)
    draws = rng.normal(0.3, 1.0, size=(200, 20, 3)).astype(np.float32)
    draws[:, :8] = np.round(draws[:, :8], 1)  # ties: windows of equal width, equal draws
    labels = np.array(list("cabba") * 4)
    subsets = {"ATE": np.ones(20, bool), "ATT": np.arange(20) % 3 == 0}
    kw = dict(by=labels, per_row=True, interval=interval, prob=0.8)
    host, device = _block_sinks(dict(kw, subsets=SubsetSums(subsets)))
    host.write("y", (slice(None), slice(0, 20)), draws)
    # the device gets a batch of 24 rows: 2 of padding (NaN) on either side of the 20
    padded = np.full((200, 24, 3), np.nan, np.float32)
    padded[:, 2:22] = draws
    mask = (np.arange(24) >= 2) & (np.arange(24) < 22)
    inputs = [np.pad(v, [(2, 2)] + [(0, 0)] * (v.ndim - 1), mode="edge")
              for v in device.reduction_inputs]
    reduced = jax.jit(device.reduction)({"y": padded}, mask, *inputs)
    device.add_reduced({k: np.asarray(v) for k, v in reduced.items()}, slice(2, 22),
                       slice(0, 20))
    for by in (False, True):
        pd.testing.assert_frame_equal(device.frame(by=by), host.frame(by=by), rtol=1e-6)
    assert device.frame(by=True).index.unique(0).tolist() == ["c", "a", "b"]
    assert device.frame().index.unique(0).tolist() == ["ATE", "ATT"]
    got, want = device.row_frame(), host.row_frame()
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-6, atol=1e-7)
    bounds = [c for c in got.columns if c.endswith(("_lower", "_upper"))]
    if interval == "hdi":  # draws themselves, the same ones chosen
        np.testing.assert_array_equal(got[bounds].to_numpy(), want[bounds].to_numpy())
    assert device.varies_by_row == host.varies_by_row


@pytest.mark.parametrize("kind", ["mean", "predictive"])
@pytest.mark.parametrize("kw", [
    {}, {"by": "segment"}, {"per_row": True}, {"per_row": True, "interval": "quantile"},
    {"treated": "z"}])
def test_summaries_on_the_device_equal_those_on_the_host(reg, rows, kind, kw):
    sink_kw = {"prob": 0.8, "interval": kw.get("interval", "hdi"),
               "per_row": kw.get("per_row", False)}
    if "by" in kw:
        sink_kw["by"] = np.select([rows["x"] > 0.5, rows["x"] < -0.5], ["high", "low"], "mid")
    if "treated" in kw:
        sink_kw["subsets"] = SubsetSums(estimand_masks(rows["z"].to_numpy() > 0))
    device, host = _Recording("y", **sink_kw), _OnHost("y", **sink_kw)
    for sink in (device, host):
        stream_effect(reg, rows, {"z": lambda v: v + 1.0}, sink=sink, kind=kind)
    assert not device.wrote and device.largest < 40 * 16  # never a batch's draws
    table = device.row_frame() if sink_kw["per_row"] else device.frame(by="by" in kw)
    want = host.row_frame() if sink_kw["per_row"] else host.frame(by="by" in kw)
    pd.testing.assert_frame_equal(table, want, rtol=1e-6, atol=1e-7)
    if not sink_kw["per_row"]:
        np.testing.assert_allclose(device.sums, host.sums, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["predictive", "probs"])
def test_classifier_summaries_equal_those_of_the_full_arrays(clf, rows, kind):
    # predictive: differences of 0/1 draws (ties everywhere); probs: a class dim per row
    shift = {"z": 1.0}
    full = effect(clf, rows, shift, kind=kind)
    pd.testing.assert_frame_equal(effect_summary(clf, rows, shift, kind=kind),
                                  summarize_effect(full), rtol=1e-5)
    per_row = effect_summary(clf, rows, shift, kind=kind, per_row=True)
    want = summarize_effect(full, per_row=True)
    pd.testing.assert_index_equal(per_row.index, want.index)
    np.testing.assert_allclose(per_row.to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-6)
    labels = np.where(rows["x"] > 0, "high", "low")
    pd.testing.assert_frame_equal(effect_summary(clf, rows, shift, kind=kind, by=labels),
                                  summarize_effect(full, by=labels), rtol=1e-5)


def test_repeated_summaries_compile_nothing(reg, rows):
    key = reg.predictor_.program.cache_key

    def compilations():
        return {k[1:]: fn._cache_size() for k, fn in _COMPILED.items() if k[0] == key}

    def summaries(value, labels):
        with pytest.warns(ConstantEffectWarning):  # the linear model's effect is constant
            by = effect_summary(reg, rows, {"z": value}, {"z": 0.0}, kind="mean", by=labels)
        with pytest.warns(ConstantEffectWarning):
            per_row = effect_summary(reg, rows, {"z": value}, {"z": 0.0}, kind="mean",
                                     per_row=True)
        return by, per_row

    first = summaries(1.0, np.where(rows["x"] > 0, "high", "low"))
    before = compilations()
    for value in (2.0, -1.0):  # other values, other labels of as many groups
        by, per_row = summaries(value, np.where(rows["z"] > 0, "up", "down"))
        np.testing.assert_allclose(by["mean"], value * first[0]["mean"].iloc[0], rtol=1e-5)
        np.testing.assert_allclose(per_row["mean"], value * first[1]["mean"], rtol=1e-5)
    assert compilations() == before


@pytest.mark.slow
def test_progress_bar_counts_the_rows_of_reduced_batches(rows, capsys):
    est = ImpactRegressor(**SVI, batch_size=16, progress_bar=True).fit(
        rows, rows["x"] + 2.0 * rows["z"])
    capsys.readouterr()
    effect_summary(est, rows, {"z": 1.0}, {"z": 0.0})
    assert "101/101" in capsys.readouterr().err
