"""Dask inputs on a local cluster of two worker processes: the same numbers as in memory,
nothing left at the target when a partition fails or a worker dies."""

import os
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import models
from skimpact import (
    ConstantEffectWarning, ImpactClassifier, ImpactRegressor, counterfactual_predict, effect,
    summarize_effect,
)
from skimpact.streaming import effect_summary

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

SVI = dict(inference="svi", num_steps=150, num_samples=30, random_state=0)
# partitions of uneven lengths, none a multiple of the batch size
LENGTHS = (70, 45, 61, 24)


@pytest.fixture(scope="module")
def client():
    # a task whose worker dies fails at once (no retry on another worker)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    here = sys.modules[__name__]
    for module in (models, here):  # the test models and functions, on the workers too
        cloudpickle.register_pickle_by_value(module)
    with cluster, distributed.Client(cluster) as c:
        yield c
    for module in (models, here):
        cloudpickle.unregister_pickle_by_value(module)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["x", "z"])
    y = 1.0 + X["x"] + 2.0 * X["z"] + rng.normal(0, 0.5, n)
    return X, y.to_numpy()


def _new_rows(n=sum(LENGTHS), seed=1):
    X = _data(n, seed)[0]
    X.index = 1000 + 3 * np.arange(n)  # row labels that are not positions
    X["segment"] = np.where(X["x"] > 0, "high", "low")
    return X


def _partitioned(X):
    bounds = np.cumsum((0,) + LENGTHS)
    parts = [X.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return dd.from_delayed([dask.delayed(p) for p in parts], meta=X.iloc[:0],
                           divisions=[X.index[a] for a in bounds[:-1]] + [X.index[-1]])


@pytest.fixture(scope="module")
def reg():
    X, y = _data()
    return ImpactRegressor(**SVI, batch_size=32).fit(X, y)


@pytest.mark.slow
def test_point_predictions_equal_in_memory(client, reg):
    X = _new_rows()[["x", "z"]]
    ddf = _partitioned(X)
    pred = reg.predict(ddf, {"z": 0.5})
    assert isinstance(pred, da.Array) and pred.chunks == (LENGTHS,)
    np.testing.assert_array_equal(pred.compute(), reg.predict(X, {"z": 0.5}))
    interval = reg.predict_interval(ddf, coverage=0.8)
    assert isinstance(interval, dd.DataFrame)
    interval = interval.compute()
    pd.testing.assert_frame_equal(interval, reg.predict_interval(X, coverage=0.8))
    arr = da.from_array(X.to_numpy(), chunks=(50, 1))
    with pytest.warns(UserWarning, match="valid feature names"):
        want = reg.predict_quantiles(X.to_numpy(), [0.1, 0.5])
    np.testing.assert_array_equal(reg.predict_quantiles(arr, [0.1, 0.5]).compute(), want)


@pytest.mark.slow
def test_trees_equal_in_memory_with_dask_index(client, reg, tmp_path):
    X = _new_rows()[["x", "z"]]
    ddf = _partitioned(X)
    shift = {"z": lambda v: v + 1.0}
    tree = counterfactual_predict(reg, ddf, shift, store=tmp_path / "cf.zarr")
    memory = counterfactual_predict(reg, X, shift)
    got, want = tree["predictions"]["y"], memory["predictions"]["y"]
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got["obs"].values, X.index.to_numpy())
    eff = reg.effect(ddf, shift, store=tmp_path / "effect.zarr")
    np.testing.assert_array_equal(eff["predictions"]["y"].values,
                                  effect(reg, X, shift)["predictions"]["y"].values)
    assert eff.attrs["quantity"] == "effect"
    assert sorted(os.listdir(tmp_path)) == ["cf.zarr", "effect.zarr"]  # no partial store left


@pytest.mark.slow
def test_summaries_equal_those_of_the_full_arrays(client, reg):
    X = _new_rows()
    ddf = _partitioned(X)
    shift = {"z": lambda v: v + 1.0}
    full = effect(reg, X[["x", "z"]], shift)
    ate = effect_summary(reg, ddf[["x", "z"]], shift)
    pd.testing.assert_frame_equal(ate, summarize_effect(full), rtol=1e-5)
    with pytest.warns(ConstantEffectWarning):  # a linear model: one effect for every row
        groups = effect_summary(reg, ddf, shift, by="segment", prob=0.9)
    with pytest.warns(ConstantEffectWarning):
        by_segment = summarize_effect(full, by=X["segment"], prob=0.9)
    pd.testing.assert_frame_equal(groups, by_segment, rtol=1e-5)
    rows = effect_summary(reg, ddf[["x", "z"]], shift, per_row=True)
    assert isinstance(rows, dd.DataFrame)
    with pytest.warns(ConstantEffectWarning):
        want = summarize_effect(full, per_row=True)
    rows = rows.compute()
    np.testing.assert_array_equal(rows.index, X.index)
    np.testing.assert_allclose(rows.to_numpy(), want.to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_classifier_and_pipeline_equal_in_memory(client):
    X, y = _data(seed=3)
    clf = ImpactClassifier(**SVI).fit(X, np.where(y > 1, "yes", "no"))
    pipe = make_pipeline(StandardScaler(), ImpactRegressor(**SVI)).fit(X, y)
    new = _new_rows()[["x", "z"]]
    ddf = _partitioned(new)
    np.testing.assert_array_equal(clf.predict(ddf).compute(), clf.predict(new))
    np.testing.assert_allclose(clf.predict_proba(ddf).compute(), clf.predict_proba(new),
                               rtol=1e-12)
    pd.testing.assert_frame_equal(effect_summary(clf, ddf, {"z": 1.0}),
                                  summarize_effect(effect(clf, new, {"z": 1.0})), rtol=1e-5)
    # raw-column interventions go before the scaler, on each partition
    pd.testing.assert_frame_equal(
        effect_summary(pipe, ddf, {"z": 1.0}, {"z": 0.0}, kind="mean"),
        summarize_effect(effect(pipe, new, {"z": 1.0}, {"z": 0.0}, kind="mean")), rtol=1e-5)


@pytest.mark.slow
def test_input_columns_travel_with_their_partition(client):
    X, y = _data(seed=4)
    X["C"] = np.random.default_rng(4).normal(size=len(X))
    est = ImpactRegressor(models.linear_with_input, inputs=["C"], **SVI).fit(X, y)
    new = _new_rows()[["x", "z"]].assign(C=0.5)
    np.testing.assert_array_equal(est.predict(_partitioned(new)).compute(), est.predict(new))
    with pytest.raises(ValueError, match="Per-row input"):
        ImpactRegressor(models.linear_with_input, **SVI).fit(X[["x", "z"]], y, C=X["C"]) \
            .predict(_partitioned(new[["x", "z"]]), C=new["C"].to_numpy())


@pytest.mark.slow
def test_empty_partitions_are_skipped(client, reg):
    X = _new_rows()[["x", "z"]]
    parts = [X.iloc[:0], X.iloc[:90], X.iloc[:0], X.iloc[90:]]  # as a filter leaves them
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=X.iloc[:0])
    np.testing.assert_array_equal(reg.predict(ddf).compute(), reg.predict(X))


@pytest.mark.slow
def test_failed_partition_leaves_nothing(client, reg, tmp_path):
    X = _new_rows()[["x", "z"]]
    X.iloc[120, 0] = np.nan  # in the third partition
    target = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match="NaN"):
        counterfactual_predict(reg, _partitioned(X), {"z": 0.0}, store=target)
    assert os.listdir(tmp_path) == []


def _die_on_marker(values):
    if np.any(values > 100):  # the marker row: this worker process ends here
        os._exit(1)
    return values + 1.0


@pytest.mark.slow
def test_killed_worker_leaves_nothing(client, reg, tmp_path):
    X = _new_rows()[["x", "z"]]
    X.iloc[150, 1] = 1000.0  # in the third partition
    # KilledWorker, or the plain error when the scheduler forgot the task first
    with pytest.raises((distributed.KilledWorker, RuntimeError)):
        reg.effect(_partitioned(X), {"z": _die_on_marker}, store=tmp_path / "out.zarr")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_refusals(reg, tmp_path):
    X = _new_rows()[["x", "z"]]
    ddf = _partitioned(X)
    with pytest.raises(ValueError, match="pass store="):
        counterfactual_predict(reg, ddf, {"z": 0.0})
    with pytest.raises(ValueError, match="in_sample=True is not available"):
        effect(reg, ddf, {"z": 0.0}, in_sample=True, store=tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="one entry per row"):
        effect(reg, ddf, {"z": X["z"].to_numpy() + 1}, store=tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="must name a column of the Dask DataFrame"):
        effect_summary(reg, ddf, {"z": 0.0}, by=np.zeros(len(X)))
    with pytest.raises(NotFittedError):
        ImpactRegressor().predict(ddf)
    assert os.listdir(tmp_path) == []
