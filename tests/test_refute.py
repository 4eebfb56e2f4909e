"""Refuters and sensitivity to unobserved confounding, on simulated data with a known truth."""

import joblib
import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skimpact import ImpactClassifier, ImpactRegressor, refute, sensitivity
from skimpact.plotting import plot_sensitivity
from skimpact.refute import METHODS

matplotlib.use("Agg")

N = 300
SHIFT = {"T": lambda t: t + 1.0}


@pytest.fixture(scope="module")
def data():
    """T depends on the observed W and the unobserved U; three outcomes: a true effect of 2
    (clean), no effect, and no effect but confounded by U."""
    rng = np.random.default_rng(0)
    W, U = rng.normal(size=N), rng.normal(size=N)
    T = 0.6 * W + 0.3 * U + 0.5 * rng.normal(size=N)
    X = pd.DataFrame({"T": T, "W": W})
    return {
        "X": X,
        "clean": 2.0 * T + W + rng.normal(size=N),
        "null": W + rng.normal(size=N),
        "confounded": W + 0.5 * U + rng.normal(size=N),
    }


def _est():
    return ImpactRegressor(inference="svi", num_steps=500, learning_rate=0.05, num_samples=100,
                           random_state=0)


@pytest.mark.slow
def test_null_effect_placebo_and_dummy_outcome_pass(data):
    result = refute(_est(), data["X"], data["null"], SHIFT,
                    methods=("placebo", "dummy_outcome"), n_refits=2, random_state=0)
    table = result.table
    assert table.index.tolist() == ["placebo", "dummy_outcome"]
    assert result.passed
    assert (table["refuted_lower"] <= 0).all() and (table["refuted_upper"] >= 0).all()
    assert (table["n_refits"] == 2).all()
    assert result.tree["placebo"]["ate"].dims == ("refit", "draw")
    assert result.tree["placebo"]["ate"].shape == (2, 100)


@pytest.mark.slow  # two joblib worker processes each import JAX and compile the model
# loky replaces a worker whose memory grew past its leak threshold (JAX keeps the compiled
# programs) and says so; the jobs run on the new worker and the results are unchanged
@pytest.mark.filterwarnings("ignore:A worker stopped while some jobs:UserWarning")
def test_clean_data_every_refuter_passes_through_a_pipeline_with_two_jobs(data):
    pipe = Pipeline([("scale", StandardScaler()), ("est", _est())])
    result = refute(pipe, data["X"], data["clean"], SHIFT, n_refits=2, n_jobs=2,
                    random_state=0)
    table = result.table
    assert table.index.tolist() == list(METHODS)
    assert result.passed, table
    # the original effect is the true 2 within its interval; placebo and dummy vanish
    assert table["original_lower"].iloc[0] < 2.0 < table["original_upper"].iloc[0]
    assert abs(table.loc["placebo", "refuted_mean"]) < 0.3
    assert abs(table.loc["dummy_outcome", "refuted_mean"]) < 0.3
    assert abs(table.loc["random_common_cause", "refuted_mean"] - 2.0) < 0.3
    assert table.loc["placebo", "rule"].startswith("passes if the 94% interval")
    assert result.tree["original"]["ate"].dims == ("draw",)
    assert result.tree["dummy_outcome"].attrs["passed"] == 1
    assert "permuted" in result.tree["placebo"].attrs["rule"]


@pytest.mark.slow
def test_confounded_data_is_flagged_by_sensitivity_and_clean_data_is_not(data):
    est = _est().fit(data["X"], data["confounded"])
    conf = sensitivity(est, data["X"], data["confounded"], SHIFT,
                       strengths=[0.2, 0.4, 0.6, 0.8], random_state=0)
    # the fit without U finds an effect where there is none ...
    assert conf.table.loc[0.0, "excludes_zero"]
    # ... which a confounder weaker than the observed W would explain away
    assert conf.fragile
    assert 0 < conf.robustness_value < conf.benchmarks["W"]
    assert "strongest observed column" in conf.rule
    clean = sensitivity(_est(), data["X"], data["clean"], SHIFT,
                        strengths=[0.2, 0.4, 0.6, 0.8], random_state=0)
    assert not clean.fragile
    assert clean.robustness_value > clean.benchmarks["W"]
    assert clean.table["mean"].iloc[0] > clean.table["mean"].iloc[-1]
    ate = clean.tree["effect"]["ate"]
    assert ate.dims == ("strength", "refit", "draw")
    assert ate["strength"].values.tolist() == [0.0, 0.2, 0.4, 0.6, 0.8]
    ax = plot_sensitivity(clean)
    assert ax.get_xlabel() == "confounder strength"
    assert len(ax.lines) == 4  # mean, zero, robustness value, benchmark W


@pytest.mark.slow
def test_refits_run_on_a_dask_cluster(data):
    distributed = pytest.importorskip("distributed")
    args = (_est(), data["X"], data["null"], SHIFT)
    kwargs = {"methods": ("data_subset",), "n_refits": 2, "random_state": 1}
    local = refute(*args, **kwargs).table
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = refute(*args, **kwargs).table
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.slow
def test_classifier_refuted_on_the_probability(data):
    X = data["X"]
    y = (data["clean"] > np.median(data["clean"])).astype(int)
    clf = ImpactClassifier(inference="svi", num_steps=300, num_samples=50, random_state=0)
    result = refute(clf, X, y, SHIFT, methods=("dummy_outcome",), n_refits=1, random_state=0)
    assert result.tree.attrs["kind"] == "mean"
    assert 0 < result.table["original_mean"].iloc[0] < 1  # a change in probability
    assert result.passed


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"methods": ("placebo", "bootstrap")}, ValueError, "Unknown refuter(s) ['bootstrap']"),
        ({"methods": ("placebo", "placebo")}, ValueError, "lists a refuter twice"),
        ({"n_refits": 0}, ValueError, "`n_refits` must be a positive integer"),
        ({"subset_fraction": 1.0}, ValueError, "`subset_fraction` must be a number in (0, 1)"),
        ({"prob": 1.5}, ValueError, "`prob` must be a number in (0, 1)"),
        ({"kind": "probs"}, ValueError, "`kind` must be 'mean' or 'predictive'"),
    ],
)
def test_refute_bad_arguments(data, kwargs, exc, words):
    est = _est().fit(data["X"], data["null"])
    with pytest.raises(exc) as info:
        refute(est, data["X"], data["null"], SHIFT, **kwargs)
    assert words in str(info.value)


def test_refute_bad_scenarios(data):
    X, y = data["X"], data["null"]
    with pytest.raises(ValueError, match="names no column of X"):
        refute(_est(), X, y, {"noise": 1.0})
    with pytest.raises(ValueError, match="non-empty dict"):
        refute(_est(), X, y, {})
    with pytest.raises(TypeError, match="`baseline` must be a dict or None"):
        refute(_est(), X, y, SHIFT, baseline=0.0)


def test_sensitivity_bad_arguments(data):
    X, y = data["X"], data["null"]
    with pytest.raises(ValueError, match="exactly one column of X"):
        sensitivity(_est(), X, y, {"T": 1.0, "W": 0.0})
    with pytest.raises(ValueError, match=r"`strengths` must be numbers in \(0, 1\)"):
        sensitivity(_est(), X, y, SHIFT, strengths=[0.5, 1.0])
    with pytest.raises(ValueError, match="numeric outcome"):
        sensitivity(_est(), X, np.where(y > 0, "a", "b"), SHIFT)
    with pytest.raises(ValueError, match="must be finite and vary"):
        sensitivity(_est(), X.assign(T=1.0), y, SHIFT)


@pytest.mark.slow
def test_refits_use_the_sample_weights():
    """Rows of weight 0 have the opposite effect: the weighted effect is +2, the unweighted
    one about 0, so a refit that dropped the weights would leave the original interval."""
    rng = np.random.default_rng(1)
    n = 400
    T = rng.normal(size=n)
    kept = np.arange(n) < n // 2
    y = np.where(kept, 2.0, -2.0) * T + rng.normal(0, 0.5, n)
    X = pd.DataFrame({"T": T})
    w = kept.astype(float)
    fitted = _est().fit(X, y, sample_weight=w)
    result = refute(fitted, X, y, SHIFT, methods=("data_subset", "placebo"), n_refits=1,
                    random_state=0, sample_weight=w)
    table = result.table
    assert abs(table.loc["data_subset", "original_mean"] - 2.0) < 0.2
    assert abs(table.loc["data_subset", "refuted_mean"] - 2.0) < 0.2
    assert result.passed, table
    shifted = sensitivity(_est(), X, y, SHIFT, strengths=[0.3], random_state=0,
                          sample_weight=w).table
    assert abs(shifted.loc[0.0, "mean"] - 2.0) < 0.2
    # the weighted refit moves towards 0 (2.04 -> 1.80, sd 0.05); unweighted it is -0.17
    assert 1.0 < shifted.loc[0.3, "mean"] < shifted.loc[0.0, "mean"] - 0.1


@pytest.mark.slow
def test_a_fitted_estimator_must_be_fitted_on_the_data_the_refits_repeat(data):
    from skimpact import Experiment

    X, y = data["X"], data["null"]
    w = np.linspace(0.5, 1.5, N)
    fitted = _est().fit(X, y, sample_weight=w)
    cases = [
        (X, y, None, "not on these y and sample_weight"),  # weights forgotten
        (X, y, w[::-1], "not on these y and sample_weight"),
        (X, y[::-1], w, "not on these y and sample_weight"),
        (X.iloc[::-1], y, w, "not on these X (and the per-row inputs)"),
    ]
    for Xc, yc, wc, words in cases:
        for check in (refute, sensitivity):
            with pytest.raises(ValueError, match=r"Pass the X, y and sample_weight") as info:
                check(fitted, Xc, yc, SHIFT, sample_weight=wc)
            assert words in str(info.value)
    lift = Experiment(X=X.iloc[:20], intervention={"T": X["T"].iloc[:20] + 1.0}, effect=0.0,
                      se=0.1)
    calibrated = _est().fit(X, y, experiments=[lift])
    assert calibrated.posterior_.attrs["experiments"] == 1
    with pytest.raises(ValueError, match=r"fitted with 1 experiment\(s\).*could not come out"):
        refute(calibrated, X, y, SHIFT)
