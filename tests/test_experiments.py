"""Calibration to experiments: measured average effects as likelihood terms of the fit."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skimpact import (
    Experiment, ExperimentConflictWarning, ImpactRegressor, effect, summarize_effect,
)

TAU = 1.0
SHIFT = {"T": lambda t: t + 1.0}


def _confounded(n, seed=0):
    """T is nearly the observed W plus a little of the unobserved U, so the observational
    data say little about T's own effect, and that little is biased by U. A randomised
    experiment on 10% of the rows (half of them get T + 1) measures the effect, with the
    regression-adjusted difference in means and its standard error."""
    rng = np.random.default_rng(seed)
    W, U = rng.normal(size=n), rng.normal(size=n)
    T = W + 0.04 * U + 0.015 * rng.normal(size=n)
    y = TAU * T + W + 0.08 * U + rng.normal(size=n)
    X = pd.DataFrame({"T": T, "W": W})
    rows = rng.choice(n, n // 10, replace=False)
    treated = rng.integers(0, 2, rows.size)
    y_exp = TAU * (T[rows] + treated) + W[rows] + 0.08 * U[rows] + rng.normal(size=rows.size)
    design = np.column_stack([np.ones(rows.size), treated, T[rows], W[rows]])
    coef, resid = np.linalg.lstsq(design, y_exp, rcond=None)[:2]
    se = float(np.sqrt(resid[0] / (rows.size - 4) * np.linalg.inv(design.T @ design)[1, 1]))
    experiment = Experiment(X=X.iloc[rows], intervention=SHIFT, effect=float(coef[1]), se=se)
    return X, y, experiment


def _ate(est, X):
    return summarize_effect(effect(est, X, SHIFT, kind="mean")).iloc[0]


@pytest.fixture(scope="module")
def small():
    return _confounded(400, seed=1)


def _svi(**kw):
    return ImpactRegressor(inference="svi", num_steps=800, learning_rate=0.05, num_samples=200,
                           random_state=0, **kw)


@pytest.mark.slow  # two NUTS fits of a strongly correlated posterior
def test_one_experiment_removes_the_confounding_bias_with_nuts():
    X, y, experiment = _confounded(1000)
    est = ImpactRegressor(inference="nuts", num_warmup=200, num_samples=200, random_state=0)
    observational = _ate(clone(est).fit(X, y), X)
    calibrated = _ate(clone(est).fit(X, y, experiments=[experiment]), X)
    # the observational fit is biased by at least 2 posterior sd ...
    assert observational["mean"] - TAU >= 2 * observational["sd"]
    # ... the experiment brings the mean within 1 sd of the truth and narrows the interval
    assert abs(calibrated["mean"] - TAU) <= calibrated["sd"]
    width = calibrated["hdi_upper"] - calibrated["hdi_lower"]
    assert width < 0.5 * (observational["hdi_upper"] - observational["hdi_lower"])


@pytest.mark.slow
def test_an_experiment_moves_the_svi_fit_to_the_truth(small):
    X, y, experiment = small
    plain = _ate(_svi().fit(X, y), X)
    est = _svi().fit(X, y, experiments=experiment)  # one Experiment needs no list
    calibrated = _ate(est, X)
    assert abs(plain["mean"] - TAU) > 0.5
    assert abs(calibrated["mean"] - TAU) < 0.3
    assert calibrated["sd"] < plain["sd"]
    # the experiment enters the fit only: predictions and the posterior are as usual
    assert set(est.posterior_["posterior"].data_vars) == {
        "alpha", "beta", "noise", "coef", "intercept", "sigma"}


@pytest.mark.slow
def test_svi_too_narrow_along_a_ridge_says_so(small):
    # T is nearly W: the data leave T's own coefficient loose along a ridge, and on 200
    # rows SVI's 800 steps spread the guide along it to less than half its true width
    X, y, _ = small
    X, y = X.iloc[:200], y[:200]
    design = np.column_stack([np.ones(len(X)), X])
    resid = np.linalg.lstsq(design, y, rcond=None)[1]
    exact_sd = np.sqrt(resid[0] / (len(y) - 3) * np.linalg.inv(design.T @ design)[1, 1])
    with pytest.warns(ConvergenceWarning, match="narrower along some direction"):
        est = _svi().fit(X, y)
    assert _ate(est, X)["sd"] < 0.5 * exact_sd
    assert est.diagnostics_["converged"] is False
    assert est.diagnostics_["guide_sd_ratio_min"] < 0.5


@pytest.mark.slow
def test_experiments_are_fit_data_for_clone_and_grid_search(small):
    X, y, experiment = small
    est = _svi()
    assert "experiments" not in est.get_params()
    # Whether a fold's observational fit contradicts the experiment depends on how sure
    # its SVI fit is (z -3.0 to -3.3 on the first half with SVI; -1.3 with a long NUTS
    # run): any conflict is warned as one, and nothing else is.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExperimentConflictWarning)
        search = GridSearchCV(est, {"model": [None]}, cv=2).fit(X, y, experiments=[experiment])
    assert all(w.category is ExperimentConflictWarning for w in caught)
    # the refit checked the experiment against its observational fit and was fit with it
    check, = search.best_estimator_.diagnostics_["experiment_conflicts"]
    assert check["experiment"] == 0 and np.isfinite(check["z"])
    assert abs(_ate(search.best_estimator_, X)["mean"] - TAU) < 0.3


@pytest.mark.slow
def test_an_experiment_in_a_pipeline_is_given_in_the_final_estimator_columns(small):
    X, y, experiment = small
    pipe = Pipeline([("scale", StandardScaler()), ("est", _svi())])
    X_exp = pipe[:-1].fit(X).transform(experiment.X)
    scaled = Experiment(X=X_exp, intervention={0: lambda t: t + 1.0 / X["T"].std(ddof=0)},
                        effect=experiment.effect, se=experiment.se)
    pipe.fit(X, y, est__experiments=[scaled])
    assert abs(_ate(pipe, X)["mean"] - TAU) < 0.3


@pytest.mark.slow
def test_an_experiment_with_a_baseline():
    """An experiment's intervention and baseline are scenarios as in effect()."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 1))
    y = 2 * X[:, 0] + rng.normal(0, 0.5, 100)
    exp = Experiment(X=X[:10], intervention={0: 1.0}, baseline={0: 0.0}, effect=2.0, se=0.01)
    est = ImpactRegressor(inference="nuts", num_warmup=100, num_samples=100,
                          random_state=0).fit(X, y, experiments=[exp])
    coef = est.posterior_["posterior"]["coef"].values
    assert abs(coef.mean() - 2.0) < 0.02


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"se": None}, ValueError, "Experiment needs `se`, the standard error"),
        ({"se": 0.0}, ValueError, "Experiment `se` must be positive"),
        ({"se": -1.0}, ValueError, "Experiment `se` must be positive"),
        ({"effect": np.nan}, ValueError, "Experiment `effect` must be a finite number"),
        ({"effect": None}, ValueError, "Experiment needs `effect`"),
        ({"intervention": {}}, ValueError, "needs `intervention`, a non-empty dict"),
        ({"X": None}, ValueError, "Experiment needs `X`"),
        ({"baseline": 0.0}, TypeError, "`baseline` must be a dict or None"),
        ({"inputs": [1]}, TypeError, "`inputs` must be a dict"),
    ],
)
def test_bad_experiment(kwargs, exc, words):
    args = {"X": np.zeros((3, 2)), "intervention": {0: 1.0}, "effect": 1.0, "se": 0.1, **kwargs}
    with pytest.raises(exc) as info:
        Experiment(**args)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "experiment, exc, words",
    [
        (Experiment(X=pd.DataFrame({"T": [0.0], "V": [1.0]}), intervention=SHIFT, effect=1.0,
                    se=0.1), ValueError, "experiments[0]: The feature names should match"),
        (Experiment(X=pd.DataFrame({"T": [0.0], "W": [1.0]}), intervention={"price": 1.0},
                    effect=1.0, se=0.1), KeyError, "experiments[0]: Unknown intervention name"),
        (Experiment(X=pd.DataFrame({"T": [0.0], "W": [1.0]}), intervention={"y": 1.0},
                    effect=1.0, se=0.1), ValueError, "Cannot intervene on the outcome site"),
        ({"X": 1}, TypeError, "experiments[0] is a dict; give skimpact.Experiment"),
    ],
)
def test_experiment_that_does_not_fit_the_estimator(small, experiment, exc, words):
    X, y, _ = small
    with pytest.raises(exc) as info:
        _svi().fit(X, y, experiments=[experiment])
    assert words in str(info.value)


def test_experiments_must_be_a_list(small):
    X, y, _ = small
    with pytest.raises(TypeError, match="`experiments` must be a list of skimpact.Experiment"):
        _svi().fit(X, y, experiments="lift")


# ------------------------------------------------------- grounding: correct, not average
def _hidden_confounder(n=2000, seed=0, effect_of=lambda x: 1.0 + 0.0 * x):
    """A hidden u drives both the binary treatment t and y; the effect of t is
    ``effect_of(x)``. Returns X = [t, x], y, the true per-row effects and the rng."""
    rng = np.random.default_rng(seed)
    u, x = rng.normal(size=n), rng.normal(size=n)
    t = (u + 0.5 * rng.normal(size=n) > 0).astype(float)
    tau = effect_of(x)
    y = tau * t + 2.0 * u + x + 0.5 * rng.normal(size=n)
    return np.column_stack([t, x]), y, tau, rng


GROUNDED = {"inference": "svi", "num_steps": 1500, "num_samples": 300, "random_state": 0}
ARMS = ({0: 1.0}, {0: 0.0})


def _summary(est, X):
    return summarize_effect(effect(est, X, *ARMS)).iloc[0]


@pytest.fixture(scope="module")
def confounded():
    X, y, _, rng = _hidden_confounder()
    rows = rng.choice(len(X), len(X) // 10, replace=False)
    # a randomised experiment on 10% of the rows measures the true effect 1.0, se 0.1
    exp = Experiment(X=X[rows], intervention=ARMS[0], baseline=ARMS[1], effect=1.0, se=0.1)
    observational = ImpactRegressor(**GROUNDED).fit(X, y)
    with pytest.warns(ExperimentConflictWarning, match=r"measured 1 .* observational fit "
                      r"predicts 3\.9.*biased.*grounded on the experiments"):
        grounded = ImpactRegressor(**GROUNDED).fit(X, y, experiments=[exp])
    return X, y, exp, observational, grounded


def test_a_conflicting_experiment_corrects_the_confounded_fit(confounded):
    X, _, _, observational, grounded = confounded
    obs, fixed = _summary(observational, X), _summary(grounded, X)
    assert (obs["mean"] - 1.0) / obs["sd"] > 10  # the observational fit: 3.93 ± 0.075
    # within max(1 posterior sd, 0.1) of the truth (was 3.0 ± 0.1 as a pooled compromise)
    assert abs(fixed["mean"] - 1.0) <= max(fixed["sd"], 0.1)
    check = grounded.diagnostics_["experiment_conflicts"][0]
    assert check["conflict"] and check["z"] < -10
    assert grounded.diagnostics_["experiment_bias"] == "constant"
    bias = grounded.posterior_["posterior"]["experiment_bias"]
    assert float(bias.mean()) == pytest.approx(obs["mean"] - 1.0, abs=0.3)


def test_pooling_a_conflicting_experiment_is_a_compromise_and_says_so(confounded):
    X, y, exp, observational, grounded = confounded
    with pytest.warns(ExperimentConflictWarning, match="compromise, not a correction"):
        pooled = ImpactRegressor(experiment_bias="none", **GROUNDED).fit(X, y, experiments=[exp])
    mean = _summary(pooled, X)["mean"]
    assert 1.5 < mean < _summary(observational, X)["mean"] - 0.5  # between, near neither
    assert "experiment_bias" not in pooled.posterior_["posterior"]


def test_grounded_predictions_are_corrected_by_the_treatment_change(confounded):
    X, _, _, _, grounded = confounded
    untreated = X[X[:, 0] == 0][:50]
    factual = grounded.predict(untreated)
    moved = grounded.counterfactual_predict(untreated, {0: 1.0})
    bias = float(grounded.posterior_["posterior"]["experiment_bias"].mean())
    plain = moved["predictions"]["y"].mean(("chain", "draw")).values - factual
    # the model's own contrast (3.9) less its bias: about the true 1.0
    assert np.mean(plain) == pytest.approx(1.0, abs=0.25)
    assert bias > 2.0


@pytest.mark.slow
def test_an_experiment_that_agrees_narrows_the_interval_without_a_warning():
    X, _, _, rng = _hidden_confounder()
    y = 1.0 * X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=len(X))  # no confounder: 1.0
    nuts = {"inference": "nuts", "num_warmup": 300, "num_samples": 500, "random_state": 0}
    observational = ImpactRegressor(**nuts).fit(X, y)
    rows = rng.choice(len(X), len(X) // 10, replace=False)
    exp = Experiment(X=X[rows], intervention=ARMS[0], baseline=ARMS[1], effect=1.0, se=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentConflictWarning)
        joint = ImpactRegressor(**nuts).fit(X, y, experiments=[exp])
    assert joint.diagnostics_["experiment_bias"] == "none"
    sd_obs, sd_joint = _summary(observational, X)["sd"], _summary(joint, X)["sd"]
    assert sd_joint < min(sd_obs, exp.se)


@pytest.mark.slow
def test_a_subgroup_experiment_corrects_heterogeneous_effects_everywhere():
    import numpyro
    import numpyro.distributions as dist

    def interaction(X, y=None):
        a = numpyro.sample("a", dist.Normal(0, 5))
        b = numpyro.sample("b", dist.Normal(0, 5).expand([2]).to_event(1))
        g = numpyro.sample("g", dist.Normal(0, 5).expand([2]).to_event(1))
        s = numpyro.sample("s", dist.HalfNormal(5))
        t, x = X[:, 0], X[:, 1]
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(a + X @ b + t * (g[0] + g[1] * x), s), obs=y)

    X, y, tau, rng = _hidden_confounder(effect_of=lambda x: 1.0 + x)
    sub = np.flatnonzero(X[:, 1] > 0)
    rows = rng.choice(sub, 200, replace=False)
    measured = float(np.mean(1.0 + X[rows, 1]))  # the experiment's true average effect
    exp = Experiment(X=X[rows], intervention=ARMS[0], baseline=ARMS[1], effect=measured,
                     se=0.1)
    observational = ImpactRegressor(interaction, **GROUNDED).fit(X, y)
    with pytest.warns(ExperimentConflictWarning):
        grounded = ImpactRegressor(interaction, **GROUNDED).fit(X, y, experiments=[exp])
    outside = X[:, 1] <= 0

    def rmse(est):
        cate = summarize_effect(effect(est, X[outside], *ARMS), per_row=True)["mean"]
        return float(np.sqrt(np.mean((cate.to_numpy() - tau[outside]) ** 2)))

    experiment_alone = float(np.sqrt(np.mean((measured - tau[outside]) ** 2)))
    assert rmse(grounded) < min(rmse(observational), experiment_alone)
    assert rmse(grounded) < 0.3


def test_grounding_needs_one_treatment_column_or_input(confounded):
    X, y, _, _, _ = confounded
    two = Experiment(X=X[:100], intervention={0: 1.0, 1: 0.0}, baseline={0: 0.0, 1: 0.0},
                     effect=1.0, se=0.1)
    with pytest.raises(ValueError, match=r"one treatment.*change \['0', '1'\]"):
        ImpactRegressor(experiment_bias="constant", **GROUNDED).fit(X, y, experiments=[two])


@pytest.mark.parametrize("make, exc, words", [
    (lambda X: [Experiment(X=X[:50], intervention={0: 1.0}, baseline={0: 1.0}, effect=0.5,
                           se=0.1)],
     ValueError, r"experiments\[0\] changes nothing"),
    (lambda X: [Experiment(X=X[:50], intervention={0: 1.0}, baseline={0: 0.0}, effect=e,
                           se=0.05) for e in (5.0, -5.0)],
     ValueError, r"experiments\[0\] and experiments\[1\] measure the same contrast .* differ "
                 r"by 141\.4 standard errors"),
])
def test_experiments_that_cannot_both_be_right_are_refused(confounded, make, exc, words):
    X, y, _, _, _ = confounded
    with pytest.raises(exc, match=words):
        ImpactRegressor(**GROUNDED).fit(X, y, experiments=make(X))


def test_an_experiment_outside_the_training_range_warns(confounded):
    X, y, _, _, _ = confounded
    far = X[:50].copy()
    far[:, 1] += 100.0
    exp = Experiment(X=far, intervention={0: 1.0}, baseline={0: 0.0}, effect=1.0, se=0.1)
    with pytest.warns(UserWarning, match=r"outside the training range of column\(s\) \[1\]"):
        with pytest.warns(ExperimentConflictWarning):
            ImpactRegressor(**GROUNDED).fit(X, y, experiments=[exp])


@pytest.mark.slow
def test_grounding_with_nuts(confounded):
    X, y, exp, _, _ = confounded
    nuts = ImpactRegressor(inference="nuts", num_warmup=300, num_samples=300, random_state=0)
    with pytest.warns(ExperimentConflictWarning, match="grounded"):
        nuts.fit(X, y, experiments=[exp])
    fixed = _summary(nuts, X)
    assert abs(fixed["mean"] - 1.0) <= max(fixed["sd"], 0.1)


def test_a_bias_that_varies_with_columns_is_linear_in_them():
    from skimpact.grounding import Grounding

    g = Grounding(treatment=("column", 0), columns=(1,), scale=2.0)
    assert g.sites == ("experiment_bias", "experiment_bias_coef")
    factual = np.array([[0.0, 1.0], [1.0, -2.0]])
    treated = factual.copy()
    treated[:, 0] = 1.0
    values = {"experiment_bias": 0.5, "experiment_bias_coef": np.array([0.25])}
    # delta(x) = 0.5 + 0.25 x1 per unit of treatment; row 2 was treated already
    np.testing.assert_allclose(g.shift(values, treated, {}, factual, {}), [0.75, 0.0])


def test_experiment_bias_is_validated():
    from sklearn.utils._param_validation import InvalidParameterError

    X, y, _, _ = _hidden_confounder(200)
    with pytest.raises(InvalidParameterError, match="experiment_bias"):
        ImpactRegressor(experiment_bias="always").fit(X, y)


def test_grounding_through_a_pipeline_in_the_final_estimator_columns(confounded):
    X, y, _, _, _ = confounded
    frame = pd.DataFrame(X, columns=["t", "x"])
    pipe = Pipeline([("scale", StandardScaler()), ("est", ImpactRegressor(**GROUNDED))])
    scaler = StandardScaler().fit(frame)
    rows = np.random.default_rng(1).choice(len(frame), 200, replace=False)
    arm = {0: (1.0 - scaler.mean_[0]) / scaler.scale_[0]}  # t = 1 and 0 in scaled units
    control = {0: (0.0 - scaler.mean_[0]) / scaler.scale_[0]}
    trial = Experiment(X=scaler.transform(frame.iloc[rows]), intervention=arm,
                       baseline=control, effect=1.0, se=0.1)
    with pytest.warns(ExperimentConflictWarning, match="grounded"):
        pipe.fit(frame, y, est__experiments=[trial])
    fixed = summarize_effect(effect(pipe, frame, {"t": 1.0}, {"t": 0.0})).iloc[0]
    assert abs(fixed["mean"] - 1.0) <= max(fixed["sd"], 0.1)
