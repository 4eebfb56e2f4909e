"""Bad inputs and faults, as a hostile but ordinary user would try them.

A table-driven matrix: every case is a callable that does one bad (or tricky) thing with
the public API, and either

* the exception type it must raise and a regex of the words that name the problem and the
  fix (``pytest.raises(T, match=...)``), or a warning type (``pytest.warns``), or
* ``None``: the callable itself asserts the correct result.

The cases are grouped by what goes wrong (inputs, parameters, factories, interventions,
effects, stores, numerics, concurrency), one table and one test per group. Fitted
estimators are module-scoped fixtures, fitted once and reused; cases that need to change an
estimator work on a deep copy.

Every warning is an error here unless a case asks for it: fixtures and cases silence the
ConvergenceWarning of their deliberately short fits explicitly.
"""

import copy
import importlib
import inspect
import json
import pickle
import pkgutil
import re
import subprocess
import sys
import threading
import warnings
from numbers import Real
from types import SimpleNamespace
from unittest import mock

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.reparam import LocScaleReparam
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

import skimpact
from skimpact import (
    ConstantEffectWarning,
    ImpactClassifier,
    ImpactRegressor,
    Model,
    counterfactual_predict,
    effect,
    estimate_effect,
    mediation,
    refute,
    sensitivity,
    summarize_effect,
)
from skimpact.calibration import calibrate_effect
from skimpact.metrics import effect_scorer
from skimpact.uplift import policy_value, qini_curve, uplift_curve
from skimpact.streaming import effect_summary
from skimpact.posterior import FittedPosterior

from models import payments_model

pytestmark = pytest.mark.filterwarnings("error")

FAST = {"inference": "svi", "guide": "AutoNormal", "num_steps": 500, "num_samples": 50, "random_state": 0}


# ------------------------------------------------------------------------------ data
def _make_data():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({
        "dose": rng.integers(0, 5, n).astype(np.int64),
        "age": rng.normal(size=n),
        "bmi": rng.normal(size=n),
    })
    y = (1.0 + 2.0 * df["dose"] + 1.0 * df["age"] - 0.5 * df["bmi"]
         + rng.normal(0, 0.3, n)).to_numpy()
    # integer ndarray for the Pipeline: slope 3 on column 0, -1 on column 1
    xi = np.column_stack([rng.integers(0, 10, n), rng.integers(-5, 5, n)]).astype(np.int64)
    yi = 0.5 + 3.0 * xi[:, 0] - 1.0 * xi[:, 1] + rng.normal(0, 0.3, n)
    # three classes with string labels
    xc = rng.normal(size=(240, 2))
    score = xc @ np.array([2.0, -1.0])
    yc = np.where(score < -0.7, "lo", np.where(score > 0.7, "hi", "mid"))
    # small ndarray data for NUTS
    xn = rng.normal(size=(100, 2))
    yn = 0.5 + xn @ np.array([1.0, -1.0]) + rng.normal(0, 0.3, 100)
    # a string column for the ColumnTransformer
    dfc = df[["age", "bmi"]].assign(city=rng.choice(["a", "b", "c"], n))
    yct = (df["age"] + np.where(dfc["city"] == "b", 2.0, 0.0)
           + rng.normal(0, 0.3, n)).to_numpy()
    return SimpleNamespace(df=df, y=y, xi=xi, yi=yi, xc=xc, yc=yc, xn=xn, yn=yn, dfc=dfc,
                           yct=yct, rng=rng)


D = _make_data()
N = len(D.df)
TRUE_DOSE = 2.0
XK = D.df[["age", "bmi"]].to_numpy()  # the features of the custom model (dose is an input)
DOSE = D.df["dose"].to_numpy()
TRUE_XI0 = 3.0


# ---------------------------------------------------------------------------- models
def dose_model(X, y=None, dose=None):
    """Linear in the features plus ``g * dose``, ``dose`` a keyword input (per row)."""
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    g = numpyro.sample("g", dist.Normal(0.0, 2.0))
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        mu = numpyro.deterministic("mu", a + X @ b + g * dose)
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def plain_model(X, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    a = numpyro.sample("a", dist.Normal(0.0, 5.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(a + X @ b, 1.0), obs=y)


def negative_scale_model(X, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ b, -1.0), obs=y)


def numpy_model(X, y=None):
    """Uses NumPy functions on latent (traced) values: works eagerly, fails under jit."""
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    s = numpyro.sample("s", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(np.dot(X, b), np.exp(s)), obs=y)


def asarray_model(X, y=None):
    """Converts a latent (traced) value to a NumPy array."""
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ np.asarray(b), 1.0), obs=y)


def discrete_model(X, y=None):
    """A discrete latent site: a Bernoulli switch of the intercept."""
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ b + z, 1.0), obs=y)


def row_sized_model(X, y=None):
    """A latent of one value per row sampled outside the row plate."""
    u = numpyro.sample("u", dist.Normal(0.0, 1.0).expand([X.shape[0]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ b + u, 1.0), obs=y)


def group_model(X, y=None, group=None):
    """Group intercepts indexed by an integer input: three groups."""
    a = numpyro.sample("a", dist.Normal(0.0, 2.0).expand([3]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(a[group] + X @ b, 0.5), obs=y)


GROUP = np.arange(100) % 3


def cauchy_model(X, y=None):
    """An outcome distribution without a mean."""
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Cauchy(X @ b, 0.5), obs=y)


def other_linear(prior_scale=0.1):
    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)

    return model


def failing_factory(prior_scale=1.0):
    raise RuntimeError("boom")


def not_a_model_factory(prior_scale=1.0):
    return 5


def plus_half(v):
    return v + 0.5


def shift_site_numpy(v):
    return np.exp(v)


def shift_site_wrong_shape(v):
    return jnp.ones(7)


def shift_column_wrong_shape(v):
    return v[:3]


def shift_column_nan(v):
    return v * np.nan


# -------------------------------------------------------------------------- fixtures
def _fit(est, X, y, **kw):
    """Fit quietly: short fits may not converge, which these tests do not judge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


@pytest.fixture(scope="module")
def reg():
    """The default model on a DataFrame with an int64 column ``dose``."""
    return _fit(ImpactRegressor(**FAST), D.df, D.y)


@pytest.fixture(scope="module")
def custom():
    """A custom model whose ``dose`` (int64) comes from a DataFrame column via inputs=."""
    return _fit(ImpactRegressor(dose_model, inputs=["dose"], **FAST), D.df, D.y)


@pytest.fixture(scope="module")
def custom_kw():
    """The same model with ``dose`` passed as a keyword input to fit."""
    X = XK
    return _fit(ImpactRegressor(dose_model, **FAST), X, D.y, dose=DOSE)


@pytest.fixture(scope="module")
def nuts():
    return _fit(ImpactRegressor(inference="nuts", num_warmup=100, num_samples=100,
                                random_state=0), D.xn, D.yn)


@pytest.fixture(scope="module")
def clf():
    """Three classes with string labels."""
    return _fit(ImpactClassifier(**FAST), D.xc, D.yc)


@pytest.fixture(scope="module")
def pipe():
    """StandardScaler + the default model on an integer ndarray."""
    return _fit(make_pipeline(StandardScaler(), ImpactRegressor(**FAST)), D.xi, D.yi)


@pytest.fixture(scope="module")
def ct_pipe():
    """ColumnTransformer (scaled numbers, one-hot city) + the default model."""
    ct = ColumnTransformer([
        ("num", StandardScaler(), ["age", "bmi"]),
        ("cat", OneHotEncoder(sparse_output=False), ["city"]),
    ])
    return _fit(Pipeline([("ct", ct), ("est", ImpactRegressor(**FAST))]), D.dfc, D.yct)


@pytest.fixture(scope="module")
def ct_pipe_ignore():
    """As ct_pipe, its OneHotEncoder encoding unknown cities as all zeros."""
    ct = ColumnTransformer([
        ("num", StandardScaler(), ["age", "bmi"]),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]),
    ])
    return _fit(Pipeline([("ct", ct), ("est", ImpactRegressor(**FAST))]), D.dfc, D.yct)


@pytest.fixture(scope="module")
def inputs_pipe():
    """A Pipeline (scaled age and bmi, dose passed through as a DataFrame column) ending in
    the custom model that takes ``dose`` from its X via inputs=."""
    ct = ColumnTransformer([("num", StandardScaler(), ["age", "bmi"])], remainder="passthrough",
                           verbose_feature_names_out=False).set_output(transform="pandas")
    est = ImpactRegressor(dose_model, inputs=["dose"], **FAST)
    return _fit(Pipeline([("ct", ct), ("est", est)]), D.df, D.y)


@pytest.fixture(scope="module")
def grouped():
    return _fit(ImpactRegressor(group_model, **FAST), D.xn, D.yn + GROUP, group=GROUP)


@pytest.fixture(scope="module")
def cauchy():
    return _fit(ImpactRegressor(cauchy_model, **FAST), D.xn, D.yn)


@pytest.fixture(scope="module")
def reg_effect(reg):
    return reg.effect(D.df, {"dose": 1}, baseline={"dose": 0}, kind="mean")


class Fixtures:
    """Lazy access to fixtures by attribute, so a case fits only what it uses."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)


def _internal_names():
    """Names a message must not show a user: skimpact's private classes and functions
    (``_Table``, ``_fit``) and the internal collaborators of the estimators."""
    names = {"InputLayout", "FittedPosterior", "PredictiveEngine", "Program", "ModelInfo",
             "ModelRef", "DeferredTree"}
    for info in pkgutil.iter_modules(skimpact.__path__):
        try:
            module = importlib.import_module(f"skimpact.{info.name}")
        except ImportError:  # an optional dependency (dask) missing
            continue
        names.update(
            k for k, v in vars(module).items()
            if k.startswith("_") and not k.startswith("__")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and getattr(v, "__module__", "").startswith("skimpact")
        )
    return names


INTERNAL_NAME = re.compile(r"(?<!\w)(" + "|".join(sorted(map(re.escape, _internal_names())))
                           + r")\b")


def assert_no_internal_names(message):
    found = INTERNAL_NAME.findall(message)
    assert not found, f"the message names internals {found}: {message}"


def run_case(fn, expected, match, request):
    """Run one case; the message it raises or warns must name no internals (a private
    skimpact name or a collaborator such as InputLayout)."""
    fx = Fixtures(request)
    if expected is None:
        fn(fx)
    elif isinstance(expected, type) and issubclass(expected, Warning):
        with pytest.warns(expected, match=match) as record:
            fn(fx)
        for w in record:
            assert_no_internal_names(str(w.message))
    else:
        with pytest.raises(expected, match=match) as excinfo:
            fn(fx)
        assert_no_internal_names(str(excinfo.value))


def case(id, fn, expected=None, match=None, marks=()):
    return pytest.param(fn, expected, match, id=id, marks=marks)


def ate(tree, var=None):
    return float(summarize_effect(tree, var=var)["mean"].iloc[0])


def unfitted():
    return ImpactRegressor(**FAST)


def with_city(df):
    return df.assign(city=np.where(df["age"] > 0, "north", "south"))


def fit_quick(est, X=None, y=None, **kw):
    return _fit(est, D.df if X is None else X, D.y if y is None else y, **kw)


# ============================================================================== inputs
def _nan_at(df, col, value=np.nan):
    out = df.copy()
    out[col] = out[col].astype(float)
    out.loc[out.index[3], col] = value
    return out


def _with_none(labels):
    out = np.asarray(labels).astype(object)
    out[[3, 7]] = None
    return out


def _none_labels_masked(fx):
    for labels in (D.yc, np.where(D.yc == "hi", 1, 0)):  # strings, and integers
        y = _with_none(labels)
        est = _fit(ImpactClassifier(missing="mask", **FAST), D.xc, y)
        assert sorted(est.classes_.tolist()) == sorted(np.unique(labels).tolist())
        kept = np.ones(len(y), bool)
        kept[[3, 7]] = False
        assert np.mean(est.predict(D.xc[kept]) == labels[kept]) > 0.8


INPUT_CASES = [
    case("string-column-fit", lambda fx: fit_quick(ImpactRegressor(**FAST), with_city(D.df)),
         ValueError, r"city.*OneHotEncoder"),
    case("string-column-predict",
         lambda fx: fx.reg.predict(D.df.assign(dose=D.df["dose"].astype(str))),
         ValueError, r"dose.*(OneHotEncoder|OrdinalEncoder)"),
    case("categorical-column-fit",
         lambda fx: fit_quick(ImpactRegressor(**FAST),
                              D.df.assign(dose=D.df["dose"].astype("category"))),
         ValueError, r"dose.*(OneHotEncoder|OrdinalEncoder)"),
    case("object-ndarray-fit",
         lambda fx: fit_quick(ImpactRegressor(**FAST), np.array([["a", 1.0]] * N, dtype=object)),
         ValueError, r"non-numeric.*OneHotEncoder"),
    case("duplicate-column-names",
         lambda fx: fit_quick(ImpactRegressor(**FAST), pd.concat([D.df, D.df[["age"]]], axis=1)),
         ValueError, r"duplicate column.*age.*unique"),
    case("nan-in-X-fit", lambda fx: fit_quick(ImpactRegressor(**FAST), _nan_at(D.df, "age")),
         ValueError, r"NaN.*age.*(Impute|SimpleImputer)"),
    case("inf-in-X-fit",
         lambda fx: fit_quick(ImpactRegressor(**FAST), _nan_at(D.df, "bmi", np.inf)),
         ValueError, r"infinity.*bmi"),
    case("nan-in-X-predict", lambda fx: fx.reg.predict(_nan_at(D.df, "age")),
         ValueError, r"NaN.*age"),
    case("nan-in-y-fit", lambda fx: fit_quick(ImpactRegressor(**FAST), y=np.r_[np.nan, D.y[1:]]),
         ValueError, r"y contains NaN.*missing='mask'"),
    case("wrong-y-length-fit", lambda fx: fit_quick(ImpactRegressor(**FAST), y=D.y[:50]),
         ValueError, r"inconsistent numbers of samples"),
    case("y-none-fit", lambda fx: ImpactRegressor(**FAST).fit(D.df, None),
         ValueError, r"requires y"),
    case("string-y-regressor",
         lambda fx: fit_quick(ImpactRegressor(**FAST), y=np.array(["a", "b"] * (N // 2))),
         ValueError, r"(?i)\by\b.*numeric.*ImpactClassifier"),
    case("wrong-feature-count-predict", lambda fx: fx.reg.predict(D.df[["dose", "age"]]),
         ValueError, r"2 features.*expecting 3"),
    case("renamed-columns-predict", lambda fx: fx.reg.predict(D.df.rename(columns={"age": "AGE"})),
         ValueError, r"feature names"),
    case("one-dimensional-X-predict", lambda fx: fx.nuts.predict(D.xn[:, 0]),
         ValueError, r"(?s)Expected 2D array.*Reshape your data"),
    case("group-code-out-of-range-predict",
         lambda fx: fx.grouped.predict(D.xn[:3], group=np.array([0, 1, 7])),
         IndexError, r"out of bounds.*index 7.*'group' from 0 to 7.*clamp"),
    case("group-code-negative-predict",
         lambda fx: fx.grouped.predict(D.xn[:3], group=np.array([0, -1, 2])),
         IndexError, r"'group' indexes an array.*negative.*factorize"),
    case("group-code-out-of-range-fit",
         lambda fx: fit_quick(ImpactRegressor(group_model, **FAST), D.xn, D.yn,
                              group=np.arange(100) % 4),
         IndexError, r"out of bounds.*index 3"),
    # a float index: JAX's "Indexer must have integer or boolean type, got float32"
    case("group-code-float-predict",
         lambda fx: fx.grouped.predict(D.xn[:3], group=np.array([0.5, 1.0, 2.0])),
         TypeError, r"Input 'group' \(e\.g\. 0\.5\) indexes an array.*must hold integers"),
    case("group-code-float-intervention",
         lambda fx: fx.grouped.effect(D.xn, {"group": 0.5}, kind="mean", group=GROUP),
         TypeError, r"Input 'group'.*indexes an array.*must hold integers.*intervene with "
                    r"integers"),
    case("group-code-float-fit",
         lambda fx: fit_quick(ImpactRegressor(group_model, **FAST), D.xn, D.yn,
                              group=GROUP + 0.5),
         TypeError, r"Input\(s\) \['group'\] index an array.*must hold integers"),
    case("group-code-in-range-predicts-its-group",
         lambda fx: np.testing.assert_allclose(
             fx.grouped.predict(D.xn[:3], group=np.array([2, 2, 2]))
             - fx.grouped.predict(D.xn[:3], group=np.array([1, 1, 1])),
             fx.grouped.posterior_["posterior"]["a"].values[0, :, 2].mean()
             - fx.grouped.posterior_["posterior"]["a"].values[0, :, 1].mean(), rtol=1e-4)),
    case("complex-X-fit",
         lambda fx: fit_quick(ImpactRegressor(**FAST), D.df.to_numpy() + 1j),
         ValueError, r"Complex data not supported.*np\.real"),
    # "... a minimum of 1 is required by InputLayout"
    case("empty-X-predict", lambda fx: fx.reg.predict(D.df.iloc[:0]),
         ValueError, r"0 sample.*required by ImpactRegressor\.$"),
    case("empty-X-fit", lambda fx: fit_quick(ImpactRegressor(**FAST), D.df.iloc[:0], D.y[:0]),
         ValueError, r"0 sample.*required by ImpactRegressor\.$"),
    # "X does not have valid feature names, but InputLayout was fitted with feature names"
    case("ndarray-after-dataframe-fit-predict", lambda fx: fx.reg.predict(D.df.to_numpy()),
         UserWarning, r"^X does not have valid feature names, but ImpactRegressor was fitted"),
    case("score-wrong-y-length", lambda fx: fx.reg.score(D.df, D.y[:10]),
         ValueError, r"inconsistent numbers of samples"),
    case("negative-sample-weight",
         lambda fx: fit_quick(ImpactRegressor(**FAST), sample_weight=-np.ones(N)),
         ValueError, r"sample_weight.*non-negative"),
    case("sample-weight-strings",  # was "could not convert string to float: 'a'"
         lambda fx: fit_quick(ImpactRegressor(**FAST), sample_weight=np.array(["a"] * N)),
         ValueError, r"sample_weight holds non-numeric values.*one non-negative number per row"),
    # the fit ran on nothing: coefficients at their start, and warnings that blamed NUTS
    case("sample-weight-all-zero",
         lambda fx: fit_quick(ImpactRegressor(**FAST), sample_weight=np.zeros(N)),
         ValueError, r"sample_weight is zero on every row.*no data to learn from"),
    case("sample-weight-zero-on-every-observed-row",
         lambda fx: fit_quick(ImpactRegressor(missing="mask", **FAST),
                              y=np.where(np.arange(N) < 10, np.nan, D.y),
                              sample_weight=(np.arange(N) < 10).astype(float)),
         ValueError, r"sample_weight is zero on every row whose outcome is observed \(190 "
                     r"rows.*no data to learn from"),
    # predict blamed "a distribution without a finite mean (a Cauchy, say)"
    *[case(f"y-all-nan-masked-{name}",
           lambda fx, model=model: fit_quick(ImpactRegressor(model, missing="mask", **FAST),
                                             D.xn, np.full(len(D.yn), np.nan)),
           ValueError, r"y has no observed value: all 100 are missing \(NaN\).*no outcome to "
                       r"learn from")
      for name, model in (("custom-model", plain_model), ("default-model", None))],
    case("classifier-labels-all-none-masked",
         lambda fx: _fit(ImpactClassifier(missing="mask", **FAST), D.xc,
                         np.full(len(D.yc), None, dtype=object)),
         ValueError, r"y has no observed value"),
    case("sample-weight-wrong-length",
         lambda fx: fit_quick(ImpactRegressor(**FAST), sample_weight=np.ones(3)),
         ValueError, r"sample_weight has shape \(3,\)"),
    case("missing-model-input-predict", lambda fx: fx.custom_kw.predict(XK),
         ValueError, r"missing \['dose'\].*same keyword inputs"),
    case("extra-model-input-predict",
         lambda fx: fx.custom_kw.predict(XK, dose=DOSE,
                                         C=np.ones(N)),
         ValueError, r"unexpected \['C'\]"),
    case("input-named-like-a-method-parameter",
         lambda fx: fit_quick(ImpactRegressor(group_model, **FAST), D.xn, D.yn,
                              store=np.arange(100) % 4),
         ValueError, r"'store' is passed as a keyword.*sample_posterior_predictive\(\).*"
                     r"inputs=\['store'\]"),
    case("input-column-missing-predict", lambda fx: fx.custom.predict(D.df[["age", "bmi"]]),
         ValueError, r"\['dose'\].*not columns of X"),
    case("input-column-and-keyword", lambda fx: fx.custom.predict(D.df, dose=np.ones(N)),
         ValueError, r"both as columns of X.*once"),
    case("input-nan-predict",
         lambda fx: fx.custom_kw.predict(XK, dose=np.r_[np.nan, np.ones(N - 1)]),
         ValueError, r"input 'dose'.*NaN"),
    case("input-wrong-length-predict",
         lambda fx: fx.custom_kw.predict(XK, dose=np.ones(N - 1)),
         ValueError, r"'dose' has 199 rows; X has 200"),
    case("input-string-values",
         lambda fx: fx.custom_kw.predict(XK, dose=np.array(["x"] * N)),
         ValueError, r"'dose' holds non-numeric"),
    case("inputs-with-ndarray-X",
         lambda fx: fit_quick(ImpactRegressor(dose_model, inputs=["dose"], **FAST),
                              D.df.to_numpy()),
         TypeError, r"DataFrame"),
    case("classifier-one-class",
         lambda fx: _fit(ImpactClassifier(**FAST), D.xc, np.array(["a"] * 240)),
         ValueError, r"at least 2 classes"),
    case("classifier-continuous-y", lambda fx: _fit(ImpactClassifier(**FAST), D.xc, D.xc[:, 0]),
         ValueError, r"Unknown label type"),
    # None labels: "Unknown label type: unknown", or "'<' not supported between instances
    # of 'NoneType' and 'str'"
    case("classifier-none-labels-masked", _none_labels_masked, marks=pytest.mark.slow),
    case("classifier-none-labels-error",
         lambda fx: _fit(ImpactClassifier(**FAST), D.xc, _with_none(D.yc)),
         ValueError, r"y contains missing labels \(None or NaN\) in 2 rows.*missing='mask'"),
    case("classifier-unseen-label-loglik",
         lambda fx: fx.clf.log_likelihood(D.xc, np.r_[["zz"], D.yc[1:]]),
         ValueError, r"not seen in fit.*classes"),
    case("loglik-nan-y", lambda fx: fx.reg.log_likelihood(D.df, np.r_[np.nan, D.y[1:]]),
         ValueError, r"y contains NaN"),
    case("loglik-wrong-y-length", lambda fx: fx.reg.log_likelihood(D.df, D.y[:5]),
         ValueError, r"y must have shape \(200,\)"),
]


@pytest.mark.parametrize("fn, expected, match", INPUT_CASES)
def test_inputs(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ========================================================================== parameters
def _params_frozen(fx, **params):
    """After fit, set_params changes nothing until the next fit."""
    est = copy.deepcopy(fx.reg)
    before = est.predict(D.df)
    ll_before = est.log_likelihood(D.df, D.y)["log_likelihood"]["y"].values
    est.set_params(**params)
    np.testing.assert_array_equal(est.predict(D.df), before)
    np.testing.assert_array_equal(est.log_likelihood(D.df, D.y)["log_likelihood"]["y"].values,
                                  ll_before)


def _stalled(fx):
    with pytest.warns(ConvergenceWarning, match=r"learning_rate"):
        est = ImpactRegressor(inference="svi", num_steps=300, num_samples=20, learning_rate=1e-9,
                              random_state=0).fit(D.df, D.y)
    assert est.diagnostics_["converged"] is False


def _site_value_on_boundary(fx):
    # do(noise = 0) lies on the boundary of Exponential's support: a meaningful intervention
    # (no noise), so each draw's sampled outcome equals its conditional mean
    tree = fx.reg.counterfactual_predict(D.df, {"noise": 0.0})
    sampled = tree["predictions"]["y"].mean(("chain", "draw")).values
    np.testing.assert_allclose(sampled, fx.reg.predict(D.df), rtol=1e-5, atol=1e-4)


def _map_not_settled(fx):
    # "The SVI loss has not settled" from a MAP fit, which runs no SVI a user chose
    with pytest.warns(ConvergenceWarning, match=r"^The MAP optimisation's loss has not "
                                                r"settled"):
        ImpactRegressor(inference="map", num_steps=20, random_state=0).fit(D.df, D.y)


def _diverged(fx):
    # the loss climbs from ~880 to ~1180: the advice must be to lower the step size
    with pytest.warns(ConvergenceWarning, match=r"diverged.*[Ll]ower `?learning_rate"):
        est = ImpactRegressor(inference="svi", guide="AutoNormal", num_steps=400, num_samples=20,
                              learning_rate=2.0,
                              random_state=0).fit(D.df, D.y)
    assert est.diagnostics_["converged"] is False


PARAMETER_CASES = [
    case("learning-rate-negative", lambda fx: fit_quick(ImpactRegressor(inference="svi", learning_rate=-1)),
         InvalidParameterError, r"learning_rate"),
    case("learning-rate-zero", lambda fx: fit_quick(ImpactRegressor(inference="svi", learning_rate=0)),
         InvalidParameterError, r"learning_rate"),
    case("learning-rate-string", lambda fx: fit_quick(ImpactRegressor(inference="svi", learning_rate="fast")),
         InvalidParameterError, r"learning_rate"),
    case("learning-rate-tiny-stalls-not-converged", _stalled),
    case("learning-rate-huge-diverges-not-converged", _diverged),
    case("map-fit-warning-names-the-map-loss", _map_not_settled),
    case("unknown-inference", lambda fx: fit_quick(ImpactRegressor(inference="vi")),
         InvalidParameterError, r"'inference'.*svi"),
    case("unknown-guide-name", lambda fx: fit_quick(ImpactRegressor(**{**FAST, "guide": "AutoFoo"})),
         ValueError, r"Unknown guide 'AutoFoo'.*AutoNormal"),
    case("guide-not-callable", lambda fx: fit_quick(ImpactRegressor(guide=5)),
         InvalidParameterError, r"'guide'"),
    case("outcome-not-str", lambda fx: fit_quick(ImpactRegressor(outcome=5)),
         InvalidParameterError, r"'outcome'"),
    case("outcome-unknown-argument",
         lambda fx: fit_quick(ImpactRegressor(plain_model, outcome="yy")),
         ValueError, r"no argument 'yy'.*outcome="),
    case("inputs-string-not-list", lambda fx: fit_quick(ImpactRegressor(inputs="dose")),
         InvalidParameterError, r"'inputs'"),
    case("inputs-non-str-names", lambda fx: fit_quick(ImpactRegressor(inputs=[1])),
         ValueError, r"`inputs` must list column names"),
    case("inputs-unknown-column",
         lambda fx: fit_quick(ImpactRegressor(dose_model, inputs=["nope"], **FAST)),
         ValueError, r"\['nope'\].*not columns of X"),
    case("batch-size-zero", lambda fx: fit_quick(ImpactRegressor(batch_size=0)),
         InvalidParameterError, r"'batch_size'"),
    case("batch-size-negative", lambda fx: fit_quick(ImpactRegressor(batch_size=-5)),
         InvalidParameterError, r"'batch_size'"),
    case("fit-batch-size-zero", lambda fx: fit_quick(ImpactRegressor(inference="svi", fit_batch_size=0)),
         InvalidParameterError, r"'fit_batch_size'"),
    case("fit-batch-size-with-nuts",
         lambda fx: fit_quick(ImpactRegressor(inference="nuts", fit_batch_size=10, num_warmup=10,
                                              num_samples=10)),
         ValueError, r"fit_batch_size.*'svi' or 'map'"),
    case("num-steps-zero", lambda fx: fit_quick(ImpactRegressor(inference="svi", num_steps=0)),
         InvalidParameterError, r"'num_steps'"),
    # bools are Integral: num_steps=True failed inside fori_loop ("got int32 and bool"),
    # num_samples=True fitted one draw
    *[case(f"{name.replace('_', '-')}-bool", lambda fx, name=name: fit_quick(ImpactRegressor(
        **{**FAST, "inference": "svi", name: True})),
           InvalidParameterError, rf"'{name}'.*not a bool; got True")
      for name in ("num_steps", "num_samples", "num_warmup", "num_chains", "batch_size",
                   "fit_batch_size", "learning_rate")],
    case("num-samples-float", lambda fx: fit_quick(ImpactRegressor(num_samples=2.5)),
         InvalidParameterError, r"'num_samples'"),
    case("target-accept-above-one", lambda fx: fit_quick(ImpactRegressor(target_accept_prob=1.5)),
         InvalidParameterError, r"'target_accept_prob'"),
    case("missing-unknown-option", lambda fx: fit_quick(ImpactRegressor(missing="drop")),
         InvalidParameterError, r"'missing'.*mask"),
    case("random-state-string", lambda fx: fit_quick(ImpactRegressor(random_state="seed")),
         InvalidParameterError, r"'random_state'"),
    case("model-string", lambda fx: fit_quick(ImpactRegressor(model="linear")),
         InvalidParameterError, r"'model'"),
    case("reparam-unknown-site",
         lambda fx: fit_quick(ImpactRegressor(reparam={"theta": LocScaleReparam(0)}, **FAST)),
         ValueError, r"'theta'.*latent sites are.*alpha"),
    case("prior-num-samples-zero", lambda fx: fx.reg.sample_prior_predictive(D.df, num_samples=0),
         ValueError, r"num_samples must be a positive integer"),
    case("prior-num-samples-float",
         lambda fx: fx.reg.sample_prior_predictive(D.df, num_samples=2.5),
         ValueError, r"num_samples must be a positive integer"),
    case("set-params-reparam-frozen",
         lambda fx: _params_frozen(fx, reparam={"alpha": LocScaleReparam(0)})),
    case("set-params-outcome-frozen", lambda fx: _params_frozen(fx, outcome="payments")),
    case("set-params-inference-frozen", lambda fx: _params_frozen(fx, inference="nuts")),
    case("set-params-model-frozen", lambda fx: _params_frozen(fx, model=Model(other_linear))),
    case("set-params-batch-size-frozen",
         lambda fx: _params_frozen(fx, batch_size=7, num_samples=3)),
]


@pytest.mark.parametrize("fn, expected, match", PARAMETER_CASES)
def test_parameters(fn, expected, match, request):
    run_case(fn, expected, match, request)


# =========================================================================== factories
def _lambda_model_pickle(fx):
    est = ImpactRegressor(lambda X, y=None: None)
    pickle.dumps(est)


FACTORY_CASES = [
    case("outcome-argument-not-y", lambda fx: fit_quick(ImpactRegressor(payments_model, **FAST)),
         ValueError, r"outcome='payments'"),
    case("invalid-distribution-parameter",
         lambda fx: fit_quick(ImpactRegressor(negative_scale_model, **FAST)),
         # the distribution is built before its site: naming the site before it is fine
         ValueError, r"(Site 'y'|after its site 'b').*scale"),
    case("numpy-on-traced-values-in-model",
         lambda fx: fit_quick(ImpactRegressor(numpy_model, **FAST), D.xn, D.yn),
         TypeError, r"jax\.numpy"),
    # inference='auto' traced the model compiled first: a raw TracerArrayConversionError
    case("numpy-on-traced-values-auto-inference",
         lambda fx: fit_quick(ImpactRegressor(asarray_model, random_state=0), D.xn, D.yn),
         TypeError, r"traced JAX value to NumPy.*after its site 'b'.*jax\.numpy"),
    # "install funsor" (SVI) and "grad requires real- or complex-valued inputs ... got
    # int32" (inference='auto')
    *[case(f"discrete-latent-site-{inference}",
           lambda fx, inference=inference: fit_quick(
               ImpactRegressor(discrete_model, **{**FAST, "inference": inference}), D.xn, D.yn),
           ValueError, r"discrete latent site\(s\) 'z' \(BernoulliProbs\).*Marginalise.*"
                       r"continuous.*funsor")
      for inference in ("svi", "auto", "nuts")],
    # fitted, then predict on 7 rows: "add got incompatible shapes for broadcasting:
    # (100,), (7,)"; with fit_batch_size "Model and guide shapes disagree at site"
    *[case(f"row-sized-latent-outside-plate{name}",
           lambda fx, kw=kw: fit_quick(ImpactRegressor(row_sized_model, **{**FAST, **kw}),
                                       D.xn, D.yn).predict(D.xn[:7]),
           ValueError, r"Latent site\(s\) 'u' \(shape \(100,\) for 100 rows\).*shape must "
                       r"not depend on the number of rows.*inside the row plate \(with "
                       r"numpyro\.plate\('obs'")
      for name, kw in (("", {}), ("-minibatch", {"fit_batch_size": 20}))],
    case("unknown-hyperparameter", lambda fx: Model(other_linear, prior_sd=1.0),
         ValueError, r"Unknown hyperparameter.*prior_sd.*prior_scale"),
    case("factory-not-callable", lambda fx: Model(5), TypeError, r"factory must be callable"),
    case("factory-raises", lambda fx: fit_quick(ImpactRegressor(Model(failing_factory), **FAST)),
         ValueError, r"failing_factory failed.*boom"),
    case("factory-returns-non-model",
         lambda fx: fit_quick(ImpactRegressor(Model(not_a_model_factory), **FAST)),
         TypeError, r"returned int, not a NumPyro model"),
    case("lambda-model-pickle", _lambda_model_pickle, pickle.PicklingError, r"lambda.*top level"),
    case("grid-hyperparameter-set-params-unknown",
         lambda fx: ImpactRegressor(Model(other_linear)).set_params(model__prior_sd=2.0),
         ValueError, r"Unknown hyperparameter.*prior_sd"),
]


@pytest.mark.parametrize("fn, expected, match", FACTORY_CASES)
def test_factories(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ======================================================================= interventions
def _int_column_scalar(fx):
    eff = fx.reg.effect(D.df, {"dose": 0.5}, baseline={"dose": 0}, kind="mean")
    coef = float(fx.reg.posterior_["posterior"]["coef"].sel(feature="dose").mean())
    assert ate(eff) == pytest.approx(0.5 * coef, rel=1e-3)
    assert ate(eff) == pytest.approx(0.5 * TRUE_DOSE, abs=0.1)


def _int_column_shift(fx):
    eff = fx.reg.effect(D.df, {"dose": plus_half}, kind="mean")
    assert ate(eff) == pytest.approx(0.5 * TRUE_DOSE, abs=0.1)


def _int_input_scalar(fx):
    eff = fx.custom.effect(D.df, {"dose": 0.5}, baseline={"dose": 0}, kind="mean")
    g = float(fx.custom.posterior_["posterior"]["g"].mean())
    assert ate(eff) == pytest.approx(0.5 * g, rel=1e-3)
    assert ate(eff) == pytest.approx(0.5 * TRUE_DOSE, abs=0.1)


def _int_kw_input_shift(fx):
    X = XK
    eff = fx.custom_kw.effect(X, {"dose": plus_half}, kind="mean", dose=DOSE)
    assert ate(eff) == pytest.approx(0.5 * TRUE_DOSE, abs=0.1)


def _pipeline_int_ndarray_shift(fx):
    eff = effect(fx.pipe, D.xi, {0: plus_half}, kind="mean")
    assert ate(eff) == pytest.approx(0.5 * TRUE_XI0, abs=0.15)


def _pipeline_int_ndarray_scalar(fx):
    eff = effect(fx.pipe, D.xi, {0: 0.5}, baseline={0: 0}, kind="mean")
    assert ate(eff) == pytest.approx(0.5 * TRUE_XI0, abs=0.15)


def _scalar_on_vector_site(fx):
    a = fx.reg.predict(D.df, {"beta": 0.0})
    b = fx.reg.predict(D.df, {"beta": np.zeros(3)})
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.ptp(a) < 1e-4  # no feature effect left: one value for every row


def _numpy_int_key(fx):
    a = fx.nuts.predict(D.xn, {np.int64(1): 0.0})
    b = fx.nuts.predict(D.xn, {1: 0.0})
    np.testing.assert_array_equal(a, b)


def _aligned_series(fx):
    a = fx.reg.predict(D.df, {"age": D.df["age"] + 1.0})
    b = fx.reg.predict(D.df, {"age": (D.df["age"] + 1.0).to_numpy()})
    np.testing.assert_array_equal(a, b)


def _ct_raw_column(fx):
    eff = effect(fx.ct_pipe, D.dfc, {"age": D.dfc["age"] + 1.0}, kind="mean")
    assert ate(eff) == pytest.approx(1.0, abs=0.1)


def _ct_raw_string_column(fx):
    eff = effect(fx.ct_pipe, D.dfc, {"city": "b"}, baseline={"city": "a"}, kind="mean")
    assert ate(eff) == pytest.approx(2.0, abs=0.2)


def _ct_ignore_known_string(fx):
    eff = effect(fx.ct_pipe_ignore, D.dfc, {"city": "b"}, baseline={"city": "a"}, kind="mean")
    assert ate(eff) == pytest.approx(2.0, abs=0.2)


def _bad_intervention(method, value):
    def fn(fx):
        if method == "effect":
            fx.reg.effect(D.df, value)
        elif method == "predict":
            fx.reg.predict(D.df, value)
        else:
            fx.reg.counterfactual_predict(D.df, value)

    return fn


NOT_A_DICT = [("list", []), ("zero", 0), ("empty-string", ""), ("set", set())]

INTERVENTION_CASES = [
    case("int-column-scalar-0.5-keeps-value", _int_column_scalar),
    case("int-column-shift-plus-0.5", _int_column_shift),
    case("int-model-input-scalar-0.5", _int_input_scalar),
    case("int-keyword-input-shift-plus-0.5", _int_kw_input_shift),
    case("pipeline-int-ndarray-shift-plus-0.5", _pipeline_int_ndarray_shift),
    case("pipeline-int-ndarray-scalar-0.5", _pipeline_int_ndarray_scalar),
    case("pipeline-columntransformer-raw-column", _ct_raw_column),
    case("pipeline-columntransformer-raw-string-column", _ct_raw_string_column),
    case("pipeline-onehot-ignore-known-category", _ct_ignore_known_string),
    # a typo ("B" for "b") encoded as all zeros: an 'effect' of 0.46 where b's is 2
    case("pipeline-onehot-ignore-unknown-category",
         lambda fx: effect(fx.ct_pipe_ignore, D.dfc, {"city": "B"}, baseline={"city": "a"},
                           kind="mean"),
         ValueError, r"column 'city' to \['B'\].*did not see in fit.*known categories are "
                     r"\['a', 'b', 'c'\]"),
    case("pipeline-onehot-ignore-unknown-integer-category",
         lambda fx: effect(_fit(make_pipeline(
             ColumnTransformer([("dose", OneHotEncoder(handle_unknown="ignore"), ["dose"])],
                               remainder="passthrough"),
             ImpactRegressor(**FAST)), D.df, D.y), D.df, {"dose": 7}, kind="mean"),
         ValueError, r"column 'dose' to \[7\].*known categories are \[0, 1, 2, 3, 4\]"),
    case("pipeline-onehot-ignore-unknown-baseline",
         lambda fx: effect(fx.ct_pipe_ignore, D.dfc, {"city": "b"}, baseline={"city": "zz"},
                           kind="mean"),
         ValueError, r"column 'city' to \['zz'\].*did not see in fit"),
    *[
        case(f"{method}-intervention-{name}", _bad_intervention(method, value),
             TypeError, r"intervention.*must be a dict")
        for method in ("effect", "counterfactual_predict") for name, value in NOT_A_DICT
    ],
    case("nan-column-value", lambda fx: fx.reg.predict(D.df, {"dose": np.nan}),
         ValueError, r"column 'dose'.*NaN"),
    case("inf-column-array",
         lambda fx: fx.reg.predict(D.df, {"age": np.r_[np.inf, np.zeros(N - 1)]}),
         ValueError, r"column 'age'.*infinite"),
    case("inf-site-value", lambda fx: fx.reg.predict(D.df, {"alpha": np.inf}),
         ValueError, r"site 'alpha'.*infinite"),
    case("nan-input-value", lambda fx: fx.custom.predict(D.df, {"dose": np.nan}),
         ValueError, r"input 'dose'.*NaN"),
    case("nan-from-column-shift", lambda fx: fx.reg.predict(D.df, {"age": shift_column_nan}),
         ValueError, r"shift_column_nan.*'age'.*NaN"),
    case("none-column-value", lambda fx: fx.reg.predict(D.df, {"age": None}),
         ValueError, r"column 'age'.*missing"),
    case("unknown-name-lists-sites", lambda fx: fx.reg.predict(D.df, {"price": 1.0}),
         KeyError, r"'price'.*Model sites.*alpha.*columns of X.*dose"),
    case("outcome-site", lambda fx: fx.reg.predict(D.df, {"y": 0.0}),
         ValueError, r"outcome site 'y'.*upstream"),
    case("column-and-site-same-name",
         lambda fx: fit_quick(ImpactRegressor(**FAST), D.df.rename(columns={"age": "alpha"}))
         .predict(D.df.rename(columns={"age": "alpha"}), {"alpha": 0.0}),
         ValueError, r"'alpha' is ambiguous.*column of X and a model site.*[Rr]ename"),
    case("bool-key", lambda fx: fx.nuts.predict(D.xn, {True: 0.0}),
         TypeError, r"True is a bool.*int position"),
    case("float-key", lambda fx: fx.nuts.predict(D.xn, {1.0: 0.0}),
         TypeError, r"1\.0 is a float.*int position"),
    case("out-of-range-int-key", lambda fx: fx.nuts.predict(D.xn, {5: 0.0}),
         KeyError, r"Unknown intervention name 5.*columns of X: \[0, 1\]"),
    case("numpy-int64-key-like-int", _numpy_int_key),
    case("scalar-on-vector-site-broadcasts", _scalar_on_vector_site),
    case("site-value-wrong-shape", lambda fx: fx.reg.predict(D.df, {"beta": np.zeros(4)}),
         ValueError, r"site 'beta'.*shape \(4,\).*broadcast"),
    case("site-value-string", lambda fx: fx.reg.predict(D.df, {"alpha": "high"}),
         TypeError, r"site 'alpha' must be numeric"),
    case("site-value-outside-support",
         lambda fx: fx.reg.counterfactual_predict(D.df, {"noise": -1.0}),
         ValueError, r"'noise'.*(support|positive)"),
    case("site-value-on-support-boundary", _site_value_on_boundary),
    case("column-value-wrong-length", lambda fx: fx.reg.predict(D.df, {"age": np.zeros(3)}),
         ValueError, r"column 'age' has shape \(3,\).*\(200,\)"),
    case("column-value-2d", lambda fx: fx.reg.predict(D.df, {"age": np.zeros((N, 1))}),
         ValueError, r"column 'age' has shape \(200, 1\)"),
    case("column-value-string-on-numeric", lambda fx: fx.reg.predict(D.df, {"age": "old"}),
         ValueError, r"non-numeric column\(s\) \['age'\]"),
    case("column-shift-wrong-shape",
         lambda fx: fx.reg.predict(D.df, {"age": shift_column_wrong_shape}),
         ValueError, r"shift_column_wrong_shape.*'age' returned shape \(3,\)"),
    case("site-shift-wrong-shape",
         lambda fx: fx.reg.predict(D.df, {"alpha": shift_site_wrong_shape}),
         ValueError, r"shift_site_wrong_shape.*'alpha'.*\(7,\).*broadcast"),
    case("site-shift-uses-numpy", lambda fx: fx.reg.predict(D.df, {"alpha": shift_site_numpy}),
         TypeError, r"shift_site_numpy.*jax\.numpy"),
    case("input-value-wrong-shape", lambda fx: fx.custom.predict(D.df, {"dose": np.zeros(3)}),
         ValueError, r"input 'dose' has shape \(3,\).*broadcast"),
    case("series-index-mismatch",
         lambda fx: fx.reg.predict(
             D.df, {"age": pd.Series(D.df["age"].to_numpy(), index=D.df.index + 1000)}),
         ValueError, r"index does not match.*to_numpy"),
    case("series-aligned-works", _aligned_series),
    case("pipeline-unknown-name-lists-raw-columns",
         lambda fx: counterfactual_predict(fx.pipe, D.xi, {"dose": 1.0}),
         KeyError, r"raw columns of the Pipeline's input: \[0, 1\]"),
    case("pipeline-ct-unknown-name-lists-raw-columns",
         lambda fx: counterfactual_predict(fx.ct_pipe, D.dfc, {"dose": 1.0}),
         KeyError, r"raw columns of the Pipeline's input: \['age', 'bmi', 'city'\]"),
    case("pipeline-raw-column-wrong-length",
         lambda fx: counterfactual_predict(fx.pipe, D.xi, {0: np.zeros(5)}),
         ValueError, r"column 0 has shape \(5,\).*\(200,\)"),
    case("pipeline-raw-column-nan",
         lambda fx: counterfactual_predict(fx.pipe, D.xi, {1: np.nan}),
         ValueError, r"column 1.*NaN"),
]


@pytest.mark.parametrize("fn, expected, match", INTERVENTION_CASES)
def test_interventions(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ============================================================================= effects
def _multiclass_default_kind(fx):
    eff = fx.clf.effect(D.xc, {0: D.xc[:, 0] + 1.0})
    da = eff["predictions"]["y"]
    assert "class" in da.dims
    assert list(da["class"].values) == list(fx.clf.classes_)
    values = da.values
    assert np.all((values >= -1) & (values <= 1))
    np.testing.assert_allclose(da.sum("class").values, 0.0, atol=1e-5)
    # raising x0 raises the score: 'hi' more likely, 'lo' less
    table = summarize_effect(eff)
    assert table.loc[("ATE", "hi"), "mean"] > 0 > table.loc[("ATE", "lo"), "mean"]


def _predict_proba_rows(fx):
    p = fx.clf.predict_proba(D.xc[:10])
    assert p.shape == (10, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def _by_groups(fx):
    with pytest.warns(ConstantEffectWarning):  # the linear model: one effect for every row
        table = summarize_effect(fx.reg_effect, by=D.df["dose"])
    assert table.index.name == "dose"
    assert sorted(table.index) == sorted(D.df["dose"].unique())
    np.testing.assert_allclose(table["mean"], TRUE_DOSE, atol=0.1)


def _per_row(fx):
    with pytest.warns(ConstantEffectWarning):
        table = summarize_effect(fx.reg_effect, per_row=True)
    assert len(table) == N


def _eager_reordered(frame_labels):
    def fn(fx):
        X = D.df if frame_labels else D.df.reset_index(drop=True)
        reordered = D.df.iloc[::-1] if frame_labels else D.df.iloc[::-1].reset_index(drop=True)
        base = fx.reg.counterfactual_predict(X, None)
        inter = fx.reg.counterfactual_predict(reordered, {"dose": 1})
        estimate_effect(fx.reg, output_baseline=base, output_intervention=inter)

    return fn


def _in_sample_other_rows(fx):
    other = D.df.copy()
    other["age"] = other["age"] + 1.0  # same count, not the training rows
    fx.reg.sample_posterior_predictive(other, in_sample=True)


def _in_sample_shuffled(fx):
    shuffled = D.df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    fx.reg.effect(shuffled, {"dose": 1}, in_sample=True)


def _pipeline_input_in_sample(fx):
    # the rows were fingerprinted after the intervention set dose: "these 200 rows differ
    # from the 200 training rows"
    eff = effect(fx.inputs_pipe, D.df, {"dose": 1}, baseline={"dose": 0}, in_sample=True,
                 kind="mean")
    assert "posterior_predictive" in eff.children
    assert ate(eff) == pytest.approx(TRUE_DOSE, abs=0.1)
    new_rows = effect(fx.inputs_pipe, D.df, {"dose": 1}, baseline={"dose": 0}, kind="mean")
    assert ate(eff) == pytest.approx(ate(new_rows), rel=1e-5)


def _loo_training_rows(fx):
    with warnings.catch_warnings():  # 100 draws: a Pareto k above 0.5 is no failure here
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto",
                                category=UserWarning)
        res = fx.nuts.loo(D.xn, D.yn)
    assert np.isfinite(res.elpd)


def _mixed_groups(fx):
    base = fx.reg.counterfactual_predict(D.df, None, in_sample=True)
    inter = fx.reg.counterfactual_predict(D.df, {"dose": 1})
    estimate_effect(fx.reg, output_baseline=base, output_intervention=inter)


def _dask_partition_length(call):
    """A Dask X of four 50-row partitions given a 50-value array: an intervention value was
    given whole to every partition (uneven partitions: "expected a scalar or shape (45,)");
    an input not per row at fit was not checked."""

    def fn(fx):
        dd = pytest.importorskip("dask.dataframe")
        X = D.df.set_axis(1000 + np.arange(N))
        call(fx, dd.from_pandas(X, npartitions=4))

    return fn


def _two_fits(both_other):
    """Scenarios predicted by two fits (same settings, another y): their difference mixes
    two posteriors (an 'ATE' of about -4 where each fit's own is 2 or -2)."""

    def fn(fx):
        other = _fit(copy.deepcopy(fx.reg), D.df, -D.y)
        base = (other if both_other else fx.reg).counterfactual_predict(D.df, None)
        inter = other.counterfactual_predict(D.df, {"dose": D.df["dose"] + 1})
        estimate_effect(fx.reg, output_baseline=base, output_intervention=inter)

    return fn


def _calibrate_truth(truth_at):
    """calibrate_effect with a simulator whose true effect in simulation ``i`` is
    ``truth_at(i)``; simulations before the bad one fit quickly, none after it."""

    def fn(fx):
        calls = []

        def simulate(rng):
            calls.append(None)
            X = rng.normal(size=(60, 2))
            return X, X @ np.array([0.5, 1.0]) + rng.normal(size=60), truth_at(len(calls) - 1)

        est = ImpactRegressor(inference="svi", num_steps=100, num_samples=20)
        calibrate_effect(est, simulate, {0: plus_half}, n_simulations=3, random_state=0)

    return fn


def _no_fit(fn):
    """``fn`` must fail before any estimator is fitted."""

    def wrapped(fx):
        with mock.patch.object(ImpactRegressor, "fit",
                               side_effect=AssertionError("fitted before checking simulate")):
            fn(fx)

    return wrapped


def _nan_effect(fx):
    tree = fx.reg_effect.copy(deep=True)
    tree["predictions"]["y"].values[0, 3, 5] = np.nan
    summarize_effect(tree)


EFFECT_CASES = [
    case("intervention-group-code-out-of-range",
         lambda fx: fx.grouped.effect(D.xn, {"group": 5}, kind="mean", group=GROUP),
         IndexError, r"index 5 is out of bounds"),
    case("cauchy-outcome-predict-refused", lambda fx: fx.cauchy.predict(D.xn),
         ValueError, r"without a finite mean.*predict_quantiles\(X, 0\.5\)"),
    case("cauchy-outcome-kind-mean-refused",
         lambda fx: fx.cauchy.effect(D.xn, {0: 1.0}, kind="mean"),
         ValueError, r"kind='mean'.*finite.*kind='predictive'"),
    case("nan-effect-summary-refused", _nan_effect,
         ValueError, r"NaN or infinite values in 1 of 50 draws.*Check the model"),
    case("multiclass-default-kind-per-class-probabilities", _multiclass_default_kind),
    case("multiclass-predictive-refused",
         lambda fx: fx.clf.effect(D.xc, {0: 1.0}, kind="predictive"),
         ValueError, r"kind='probs'"),
    # advised kind='predictive', itself refused for three classes
    case("multiclass-mean-refused-advises-probs",
         lambda fx: fx.clf.effect(D.xc, {0: 1.0}, kind="mean"),
         ValueError, r"kind='mean'.*use kind='probs'"),
    case("classifier-predict-proba-sums-to-one", _predict_proba_rows),
    case("effect-empty-dict", lambda fx: fx.reg.effect(D.df, {}),
         ValueError, r"at least one site, input or column"),
    case("effect-equal-to-baseline",
         lambda fx: fx.reg.effect(D.df, {"dose": 1}, baseline={"dose": 1}),
         ValueError, r"same scenario.*change the value"),
    case("effect-baseline-not-dict", lambda fx: fx.reg.effect(D.df, {"dose": 1}, baseline=[1]),
         TypeError, r"`baseline` must be a dict"),
    case("effect-unknown-kind", lambda fx: fx.reg.effect(D.df, {"dose": 1}, kind="avg"),
         ValueError, r"`kind` must be 'predictive', 'mean' or 'probs'"),
    case("effect-probs-on-regressor", lambda fx: fx.reg.effect(D.df, {"dose": 1}, kind="probs"),
         ValueError, r"kind='probs'.*kind='predictive'"),
    case("effect-unfitted", lambda fx: unfitted().effect(D.df, {"dose": 1}), NotFittedError,
         r"not fitted"),
    case("predict-unfitted", lambda fx: unfitted().predict(D.df), NotFittedError, r"not fitted"),
    case("counterfactual-unfitted",
         lambda fx: counterfactual_predict(unfitted(), D.df, {"dose": 1}),
         NotFittedError, r"not fitted"),
    case("summary-unfitted", lambda fx: unfitted().summary(), NotFittedError, r"not fitted"),
    case("estimate-effect-lazy-unfitted",
         lambda fx: estimate_effect(unfitted(), args_baseline={"X": D.df},
                                    args_intervention={"X": D.df}),
         NotFittedError, r"not fitted"),
    case("pipeline-unfitted",
         lambda fx: effect(make_pipeline(StandardScaler(), unfitted()), D.xi, {0: 1}),
         NotFittedError, r"not fitted"),
    # was "This LinearRegression instance is not fitted yet"
    case("pipeline-ending-in-fitted-sklearn-model",
         lambda fx: effect(make_pipeline(StandardScaler(), LinearRegression()).fit(D.xi, D.yi),
                           D.xi, {0: 1}),
         TypeError, r"last step of the Pipeline is LinearRegression.*skimpact estimator"),
    case("counterfactual-fitted-sklearn-model",
         lambda fx: counterfactual_predict(LinearRegression().fit(D.xi, D.yi), D.xi, {0: 1}),
         TypeError, r"skimpact estimator.*got LinearRegression"),
    case("in-sample-other-rows-same-count", _in_sample_other_rows,
         ValueError, r"in_sample=True.*training rows.*in_sample=False"),
    case("in-sample-pipeline-input-column-effect", _pipeline_input_in_sample),
    case("in-sample-shuffled-rows-effect", _in_sample_shuffled,
         ValueError, r"in_sample=True.*training order"),
    case("estimate-effect-eager-reordered-labels", _eager_reordered(True),
         ValueError, r"same rows"),
    case("estimate-effect-eager-reordered-values", _eager_reordered(False),
         ValueError, r"different rows.*another order"),
    case("estimate-effect-both-sources",
         lambda fx: estimate_effect(fx.reg, output_baseline=fx.reg_effect,
                                    args_baseline={"X": D.df}, args_intervention={"X": D.df}),
         ValueError, r"exactly one of output_baseline.*both"),
    case("estimate-effect-neither-source",
         lambda fx: estimate_effect(fx.reg, args_intervention={"X": D.df}),
         ValueError, r"exactly one of output_baseline.*neither"),
    case("estimate-effect-output-not-tree",
         lambda fx: estimate_effect(fx.reg, output_baseline=np.zeros(3),
                                    args_intervention={"X": D.df}),
         TypeError, r"output_baseline must be an xarray.DataTree"),
    case("estimate-effect-args-without-X",
         lambda fx: estimate_effect(fx.reg, args_baseline={"intervention": None},
                                    args_intervention={"X": D.df}),
         ValueError, r"args_baseline must be a dict with at least 'X'"),
    case("estimate-effect-outputs-of-two-fits", _two_fits(False),
         ValueError, r"different fitted estimators.*same fitted estimator"),
    case("estimate-effect-outputs-of-another-fit", _two_fits(True),
         ValueError, r"output_baseline was predicted by another fitted estimator"),
    case("dask-intervention-partition-length-array",
         _dask_partition_length(lambda fx, ddf: fx.reg.predict(ddf, {"age": np.zeros(50)})),
         ValueError, r"intervention value of 'age' has shape \(50,\), not a scalar: with a "
                     r"Dask X.*one entry per row.*callable"),
    case("dask-input-partition-length-array",
         _dask_partition_length(lambda fx, ddf: fit_quick(
             ImpactRegressor(dose_model, **FAST), XK, dose=1.0).predict(
                 ddf[["age", "bmi"]], dose=DOSE[:50])),
         ValueError, r"Input 'dose' has shape \(50,\), but at fit it had shape \(\).*whole.*"
                     r"`inputs=`"),
    case("dask-effect-summary-treated",
         _dask_partition_length(lambda fx, ddf: effect_summary(
             fx.reg, ddf, {"age": 1.0}, {"age": 0.0}, treated="age")),
         ValueError, r"`treated` \(the ATT and ATC rows\) needs X in memory.*by="),
    case("estimate-effect-mixed-in-sample", _mixed_groups,
         ValueError, r"same in_sample"),
    # the true effect NaN: coverage 0.0 with only NumPy's RuntimeWarnings
    case("calibrate-true-effect-nan", _no_fit(_calibrate_truth(lambda i: np.nan)),
         ValueError, r"true effect of nan in simulation 0.*finite"),
    case("calibrate-true-effect-nan-later",
         _calibrate_truth(lambda i: 0.5 if i == 0 else np.nan),
         ValueError, r"true effect of nan in simulation 1"),
    # an array: a raw conversion error after the first fit
    case("calibrate-true-effect-array", _no_fit(_calibrate_truth(lambda i: np.full(60, 0.5))),
         ValueError, r"true effect of type ndarray of shape \(60,\).*one real number.*average"),
    case("calibrate-per-row-truth-scalar",
         _no_fit(lambda fx: calibrate_effect(ImpactRegressor(**TINY), _simulate,
                                             SWEEP_INTERVENTION, n_simulations=1,
                                             per_row=True)),
         ValueError, r"simulation 0; with per_row=True it must be an array of one real "
                     r"number per row of X \(24,\)"),
    case("calibrate-per-row-truth-nan",
         _no_fit(lambda fx: calibrate_effect(
             ImpactRegressor(**TINY), lambda rng: (*_simulate(rng)[:2], np.full(24, np.nan)),
             SWEEP_INTERVENTION, n_simulations=1, per_row=True)),
         ValueError, r"24 non-finite per-row true effects in simulation 0"),
    # the message advised in_sample=True (which loo does not take) or in_sample=False
    case("loo-other-rows", lambda fx: fx.nuts.loo(D.xn[::-1], D.yn[::-1]),
         ValueError, r"^loo needs the training rows.*log_likelihood\(X, y\)(?!.*in_sample)"),
    case("loo-subset", lambda fx: fx.nuts.loo(D.xn[:10], D.yn[:10]),
         ValueError, r"^loo needs.*10 rows differ from the 100 training rows"),
    case("loo-training-rows-works", _loo_training_rows),
    case("return-sites-unknown",
         lambda fx: fx.reg.counterfactual_predict(D.df, None, return_sites=["mu"]),
         KeyError, r"Unknown site\(s\) \['mu'\].*alpha"),
    case("prior-return-sites-unknown",
         lambda fx: fx.reg.sample_prior_predictive(D.df, return_sites=["zz"]),
         KeyError, r"Unknown site\(s\) \['zz'\]"),
    case("summary-unknown-var-names", lambda fx: fx.reg.summary(var_names=["zz"]),
         KeyError, r"zz"),
    case("summarize-unknown-var", lambda fx: summarize_effect(fx.reg_effect, var="zz"),
         KeyError, r"No variable 'zz'.*\['y'\]"),
    case("summarize-by-wrong-length", lambda fx: summarize_effect(fx.reg_effect, by=np.zeros(3)),
         ValueError, r"`by` needs one label per row \(200\)"),
    case("summarize-prob-above-one", lambda fx: summarize_effect(fx.reg_effect, prob=1.5),
         ValueError, r"prob"),
    case("summarize-prob-zero", lambda fx: summarize_effect(fx.reg_effect, prob=0),
         ValueError, r"prob"),
    case("summarize-prob-string", lambda fx: summarize_effect(fx.reg_effect, prob="wide"),
         (TypeError, ValueError), r"prob"),
    case("summarize-not-a-tree", lambda fx: summarize_effect(np.zeros(3)),
         TypeError, r"DataTree"),
    case("summarize-by-groups", _by_groups),
    case("summarize-per-row", _per_row),
    case("quantiles-out-of-range", lambda fx: fx.reg.predict_quantiles(D.df, [0.5, 1.5]),
         ValueError, r"Quantiles must be numbers in \[0, 1\]"),
    case("quantiles-empty", lambda fx: fx.reg.predict_quantiles(D.df, []),
         ValueError, r"Quantiles must be numbers in \[0, 1\]"),
    case("quantiles-nan", lambda fx: fx.reg.predict_quantiles(D.df, [np.nan]),
         ValueError, r"Quantiles must be numbers in \[0, 1\]"),
    case("quantiles-string", lambda fx: fx.reg.predict_quantiles(D.df, "median"),
         ValueError, r"Quantiles must be numbers"),
    case("coverage-one", lambda fx: fx.reg.predict_interval(D.df, coverage=1.0),
         ValueError, r"coverage must be a number in \(0, 1\)"),
    case("coverage-string", lambda fx: fx.reg.predict_interval(D.df, coverage="90%"),
         ValueError, r"coverage must be a number in \(0, 1\)"),
]


@pytest.mark.parametrize("fn, expected, match", EFFECT_CASES)
def test_effects(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ============================================================================== stores
def _existing(fx, kind="dir"):
    path = fx.tmp_path / "out.zarr"
    if kind == "dir":
        path.mkdir()
    else:
        path.write_text("not a store")
    return path


def _store_exists(call, kind="dir"):
    def fn(fx):
        path = _existing(fx, kind)
        est = fx.reg
        with mock.patch.object(FittedPosterior, "predict",
                               side_effect=AssertionError("predicted before checking store=")), \
             mock.patch.object(FittedPosterior, "prior",
                               side_effect=AssertionError("sampled before checking store=")):
            call(est, path)

    return fn


def _interrupted(call):
    """A KeyboardInterrupt while a store is written leaves neither the target nor a partial
    store behind."""

    def fn(fx):
        path = fx.tmp_path / "out.zarr"
        target = "skimpact._sinks.ZarrSink.write"
        scratch = "skimpact._sinks._ScratchSink.write"
        with mock.patch(target, side_effect=KeyboardInterrupt), \
             mock.patch(scratch, side_effect=KeyboardInterrupt):
            with pytest.raises(KeyboardInterrupt):
                call(fx.reg, path)
        assert not path.exists()
        leftovers = [p.name for p in fx.tmp_path.iterdir()
                     if p.name.endswith(".partial") or p.name.startswith(".skimpact-scratch")]
        assert leftovers == []

    return fn


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_partial_removed(fx):
    stale = fx.tmp_path / ".out.zarr.deadbeef.partial"
    stale.mkdir()
    (stale / ".skimpact-writer.json").write_text(json.dumps(
        {"pid": _dead_pid(), "host": __import__("socket").gethostname(), "time": 0.0}))
    foreign = fx.tmp_path / ".mine.partial"  # no marker: never touched
    foreign.mkdir()
    path = fx.tmp_path / "out.zarr"
    tree = fx.reg.counterfactual_predict(D.df, {"dose": 1}, store=path)
    assert path.is_dir() and not stale.exists() and foreign.is_dir()
    assert tree["predictions"]["y"].shape == (1, 50, N)


def _store_roundtrip(fx):
    path = fx.tmp_path / "eff.zarr"
    stored = fx.reg.effect(D.df, {"dose": 1}, baseline={"dose": 0}, kind="mean", store=path)
    np.testing.assert_allclose(stored["predictions"]["y"].values,
                               fx.reg_effect["predictions"]["y"].values, rtol=1e-6)
    assert [p.name for p in fx.tmp_path.iterdir()] == ["eff.zarr"]  # no scratch left


def _store_in_proc(call):
    """A directory that os.access calls writable (for root) but takes no new directory:
    the error named a hidden '.x.xxxxxxxx.partial' path (FileNotFoundError) after the
    prediction."""

    def fn(fx):
        if not __import__("os").path.isdir("/proc/self"):
            pytest.skip("needs Linux's /proc")
        _store_exists(lambda est, p: call(est, "/proc/x"))(fx)

    return fn


STORE_CASES = [
    case("effect-store-exists",
         _store_exists(lambda est, p: est.effect(D.df, {"dose": 1}, store=p)),
         FileExistsError, r"exists; remove it or give another `store=`"),
    case("counterfactual-store-exists",
         _store_exists(lambda est, p: est.counterfactual_predict(D.df, {"dose": 1}, store=p)),
         FileExistsError, r"exists; remove it"),
    case("posterior-predictive-store-exists",
         _store_exists(lambda est, p: est.sample_posterior_predictive(D.df, store=p)),
         FileExistsError, r"exists; remove it"),
    case("posterior-predictive-store-exists-as-file",
         _store_exists(lambda est, p: est.sample_posterior_predictive(D.df, store=str(p)), "file"),
         FileExistsError, r"exists; remove it"),
    case("log-likelihood-store-exists",
         _store_exists(lambda est, p: est.log_likelihood(D.df, D.y, store=p)),
         FileExistsError, r"exists; remove it"),
    case("prior-store-exists",
         _store_exists(lambda est, p: est.sample_prior_predictive(D.df, store=p)),
         FileExistsError, r"exists; remove it"),
    case("estimate-effect-store-exists",
         _store_exists(lambda est, p: estimate_effect(
             est, args_baseline={"X": D.df},
             args_intervention={"X": D.df, "intervention": {"dose": 1}}, store=p)),
         FileExistsError, r"exists; remove it"),
    case("store-not-a-path", lambda fx: fx.reg.counterfactual_predict(D.df, None, store=5),
         TypeError, r"`store` must be a path"),
    case("store-parent-is-a-file",
         lambda fx: fx.reg.effect(D.df, {"dose": 1}, store=_existing(fx, "file") / "x.zarr"),
         ValueError, r"not a directory"),
    case("store-in-proc-counterfactual",
         _store_in_proc(lambda est, p: est.counterfactual_predict(D.df, {"dose": 1}, store=p)),
         ValueError, r"Cannot create the store /proc/x: the directory /proc does not take new"),
    case("store-in-proc-effect",
         _store_in_proc(lambda est, p: est.effect(D.df, {"dose": 1}, store=p)),
         ValueError, r"Cannot create the store /proc/x.*`store=` path"),
    case("interrupted-counterfactual-leaves-nothing",
         _interrupted(lambda est, p: est.counterfactual_predict(D.df, {"dose": 1}, store=p))),
    case("interrupted-effect-leaves-nothing",
         _interrupted(lambda est, p: est.effect(D.df, {"dose": 1}, store=p))),
    case("stale-partial-store-cleaned", _stale_partial_removed),
    case("effect-store-roundtrip", _store_roundtrip),
]


@pytest.mark.parametrize("fn, expected, match", STORE_CASES)
def test_stores(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ============================================================================ numerics
def _y_offset_default(fx):
    # the built-in model centres y in float64: the signal on top of 1e9 survives float32
    rng = np.random.default_rng(3)
    y = 1e9 + 3.0 * D.df["age"].to_numpy() + rng.normal(0, 0.1, N)
    est = _fit(ImpactRegressor(**FAST), D.df, y)
    r2 = est.score(D.df, y)
    assert r2 > 0.9, f"R^2 {r2:.4g} with y around 1e9"
    assert est.predict(D.df).dtype == np.float64
    ate = est.effect(D.df, {"age": D.df["age"] + 1.0}, kind="mean")
    assert abs(float(summarize_effect(ate)["mean"].iloc[0]) - 3.0) < 0.1
    intercept = float(est.posterior_["posterior"]["intercept"].mean())
    assert abs(intercept - 1e9) < 1.0


def _x_near_2_60_default(fx):
    rng = np.random.default_rng(4)
    k = rng.integers(0, 10**6, N)
    X = (2**60 + k).astype(np.int64)[:, None]
    y = 3.0 * k / 1e6 + rng.normal(0, 0.1, N)
    est = _fit(ImpactRegressor(**FAST), X, y)
    r2 = est.score(X, y)
    assert r2 > 0.9, f"R^2 {r2:.4g} with int64 X near 2**60"


def _x_offset_custom(fx):
    X = XK + np.array([1e9, 0.0])
    _fit(ImpactRegressor(dose_model, **FAST), X, D.y, dose=DOSE)


def _y_offset_custom(fx):
    X = XK
    _fit(ImpactRegressor(dose_model, **FAST), X, 1e9 + D.y, dose=DOSE)


def _x_overflow_float32(fx):
    X = D.xn * np.array([1e40, 1.0])
    _fit(ImpactRegressor(inference="svi", num_steps=200, num_samples=20, random_state=0), X, D.yn)


def _y_huge_scale_custom(fx):
    # R^2 0.000 and warnings that blamed NUTS tuning (divergences, r_hat), not y's scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ImpactRegressor(plain_model, inference="nuts", num_warmup=20, num_samples=20,
                        random_state=0).fit(D.xn, D.yn * 1e9)


def _predict_dtype_finite(fx):
    p = fx.reg.predict(D.df)
    assert p.shape == (N,) and np.all(np.isfinite(p))
    assert fx.reg.score(D.df, D.y) > 0.95


NUMERIC_CASES = [
    case("y-offset-1e9-default-model-centres", _y_offset_default),
    case("int64-features-near-2**60-default-model-r2", _x_near_2_60_default),
    case("x-offset-1e9-custom-model-warns", _x_offset_custom,
         UserWarning, r"float32.*(StandardScaler|[Cc]entre)"),
    case("y-offset-1e9-custom-model-warns", _y_offset_custom,
         UserWarning, r"float32.*\by\b|\by\b.*float32"),
    case("y-times-1e9-custom-model-warns", _y_huge_scale_custom,
         UserWarning, r"outcome y has standard deviation 1\.\d+e\+09.*Standardise y.*widen "
                      r"the model's priors"),
    case("x-beyond-float32-range", _x_overflow_float32,
         ValueError, r"float32"),
    case("default-fit-predicts-well", _predict_dtype_finite),
]


@pytest.mark.parametrize("fn, expected, match", NUMERIC_CASES)
def test_numerics(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ========================================================================= concurrency
def _race(est, refits, predict, done_check):
    """Refit ``est`` in a thread (each of ``refits``) while predicting in this one."""
    errors, results = [], []
    done = threading.Event()

    def refit():
        try:
            for X, y in refits:
                _fit(est, X, y)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=refit)
    thread.start()
    try:
        while not done.is_set() or len(results) < 2:
            try:
                results.append(("ok", predict()))
            except ValueError as exc:
                results.append(("error", exc))
    finally:
        thread.join()
    assert not errors, errors
    for kind, value in results:
        done_check(kind, value)


def _refit_same_shape(fx):
    X = D.df.iloc[:40]
    old = fx.reg.predict(X)
    est = copy.deepcopy(fx.reg)
    new = _fit(copy.deepcopy(fx.reg), D.df, D.y + 10.0).predict(X)

    def check(kind, value):
        assert kind == "ok", value
        assert value.shape == (40,)
        assert np.allclose(value, old, atol=1e-3) or np.allclose(value, new, atol=1e-3)

    _race(est, [(D.df, D.y + 10.0), (D.df, D.y), (D.df, D.y + 10.0)],
          lambda: est.predict(X), check)


def _refit_other_features(fx):
    old = fx.reg.predict(D.df)
    est = copy.deepcopy(fx.reg)

    def check(kind, value):
        if kind == "ok":
            np.testing.assert_allclose(value, old, atol=1e-3)
        else:
            assert "features" in str(value), value

    _race(est, [(D.df[["age", "bmi"]], D.y), (D.df, D.y)], lambda: est.predict(D.df), check)


def _parallel_predictions(fx):
    serial = fx.reg.predict(D.df)
    serial_eff = fx.reg_effect["predictions"]["y"].values
    out, errors = [None] * 4, []

    def work(i):
        try:
            if i % 2:
                out[i] = fx.reg.predict(D.df)
            else:
                out[i] = fx.reg.effect(D.df, {"dose": 1}, baseline={"dose": 0},
                                       kind="mean")["predictions"]["y"].values
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, value in enumerate(out):
        np.testing.assert_allclose(value, serial_eff if i % 2 == 0 else serial, rtol=1e-6)


CONCURRENCY_CASES = [
    case("predict-while-refit-same-shape", _refit_same_shape),
    case("predict-while-refit-other-feature-count", _refit_other_features),
    case("parallel-predict-and-effect-match-serial", _parallel_predictions),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("fn, expected, match", CONCURRENCY_CASES)
def test_concurrency(fn, expected, match, request):
    run_case(fn, expected, match, request)


# ======================================================================= parameter sweep
# Every parameter of the estimators and the public functions' keyword parameters get
# hostile values, taken from an explicit table and, for the estimators, generated from
# their `_parameter_constraints`; each must be refused naming the parameter. A parameter
# added without hostile values fails test_sweep_tables_cover_every_parameter.
XS = D.df.iloc[:24]
YS = D.y[:24]
TINY = {"inference": "svi", "num_steps": 20, "num_samples": 4, "num_warmup": 4,
        "random_state": 0}

COUNT = [0, -1, 2.5, True, np.nan, "3", None]
FLAG = ["yes", 2, np.nan, None]
PROB = [0, 1, 1.5, -0.1, np.nan, np.inf, True, "wide", None, [0.9]]
SEED = ["seed", True, -1, 2.5, np.nan, 2**40]

ESTIMATOR_HOSTILE = {
    "model": ["linear", 5, True, np.nan, [1]],
    "inference": ["vi", "", 5, True, None, np.nan],
    "guide": [5, True, None, np.nan],
    "learning_rate": [0, -1.0, np.nan, np.inf, -np.inf, True, "fast", None, [0.1]],
    "num_steps": COUNT + [np.inf, 2**40],
    "num_warmup": [-1, 2.5, True, np.nan, "10", None, 2**40],
    "num_samples": COUNT + [2**40],
    "num_chains": [v for v in COUNT if v is not None] + [2**40],
    "target_accept_prob": [0, 1, 1.5, -0.1, np.nan, np.inf, True, "high", None],
    "reparam": ["x", 5, True, [1], {"alpha": 5}, {5: LocScaleReparam(0)}],
    "outcome": [5, None, True, "", "zz"],
    "row_plate": [5, True, "", "zz", ["obs"]],
    "inputs": ["dose", 5, True, [1], ["nope"], [None]],
    "missing": ["drop", "", 5, True, None],
    "batch_size": [0, -1, 2.5, True, np.nan, "8", 2**40],
    "fit_batch_size": [0, -1, 2.5, True, np.nan, "8", 2**40],
    "random_state": SEED,
    "progress_bar": ["yes", 2, None, np.nan],
    "experiment_bias": ["always", "", 5, True, None, np.nan],
}

FUNCTION_HOSTILE = {
    "baseline": ["x", 5, [1], True],
    "kind": ["bogus", "", 5, True, np.nan],
    "in_sample": FLAG,
    "return_sites": [5, True, "y", [5], ["zz"]],
    "store": [5, True, 2.5],
    "var": [5, True, "zz"],
    "prob": PROB,
    "by": [np.zeros(3), 5, True],
    "per_row": FLAG,
    "interval": ["bogus", 5, True, None],
    "n_simulations": COUNT,
    "n_jobs": ["all", 2.5, True, np.nan, 0],
    "random_state": SEED,
    "methods": [["bogus"], 5, True, [], None, ["placebo", "placebo"]],
    "n_refits": COUNT,
    "subset_fraction": [0, 1, 1.5, -0.1, np.nan, True, "half", None],
    "sample_weight": ["a", np.ones(3), True, -np.ones(24)],
    "strengths": [[], [np.nan], "high", 5, True, [-0.1], [True], None],
    "semantics": ["twin", "", 5, True, None, np.nan],
    "mediators": [5, True, None, "zz", [], ["y"], [5]],
    "treated": [np.zeros(3), 5, True, "zz", np.zeros(24), np.full(24, 2.0)],
    "lift": FLAG,
    "baseline_outcome": [5, "y", np.zeros(3), np.full((4, 24), np.nan)],
    "method": ["bogus", "", 5, True, None],
    "outcome_model": ["forest", 5, True],
    "propensity_model": [LinearRegression(), "logit", 5, True],
    "cv": [1, 0, 2.5, True, "3", None, np.nan],
    "clip": [0, 0.5, -0.1, np.nan, True, "small", None],
    "n_points": [1, 0, 2.5, True, "10", None],
    "return_draws": FLAG,
    "threshold": [np.nan, np.inf, "zero", True, None],
    "min_prob": PROB,
}


def _simulate(rng):
    X = pd.DataFrame(rng.normal(size=(24, 2)), columns=["age", "bmi"])
    return X, X["age"].to_numpy(), 1.0


SWEEP_INTERVENTION = {"age": 1.0}
SWEEP_FUNCTIONS = {
    # function: a call of it on the tiny fit with the keyword argument given
    effect: lambda fx, **kw: effect(fx.tiny, XS, SWEEP_INTERVENTION, **kw),
    counterfactual_predict:
        lambda fx, **kw: counterfactual_predict(fx.tiny, XS, SWEEP_INTERVENTION, **kw),
    summarize_effect: lambda fx, **kw: summarize_effect(fx.tiny_effect, **kw),
    effect_summary: lambda fx, **kw: effect_summary(fx.tiny, XS, SWEEP_INTERVENTION, **kw),
    calibrate_effect: lambda fx, **kw: calibrate_effect(
        fx.tiny, _simulate, SWEEP_INTERVENTION, **{"n_simulations": 1, **kw}),
    refute: lambda fx, **kw: refute(fx.tiny, XS, YS, SWEEP_INTERVENTION,
                                    **{"n_refits": 1, "methods": ("placebo",), **kw}),
    sensitivity: lambda fx, **kw: sensitivity(fx.tiny, XS, YS, SWEEP_INTERVENTION,
                                              **{"strengths": (0.1,), **kw}),
    mediation: lambda fx, **kw: mediation(fx.tiny, XS, SWEEP_INTERVENTION,
                                          **{"mediators": "coef", **kw}),
    effect_scorer: lambda fx, **kw: effect_scorer("dose", **kw),
    qini_curve: lambda fx, **kw: qini_curve(fx.tiny_effect, **kw),
    uplift_curve: lambda fx, **kw: uplift_curve(fx.tiny_effect, **kw),
    policy_value: lambda fx, **kw: policy_value(fx.tiny_effect, **kw),
}


def _keyword_parameters(fn):
    """Parameters with a default, and required keyword-only ones (mediation's mediators)."""
    return [p for p, par in inspect.signature(fn).parameters.items()
            if (par.default is not inspect.Parameter.empty or par.kind == par.KEYWORD_ONLY)
            and par.kind != par.VAR_KEYWORD]


def _from_constraints(constraints):
    """Values each of a parameter's constraints refuses: another type always, a bool and
    NaN for numbers, values beyond an Interval's bounds, an unknown option."""
    values = [object()]
    if None not in constraints and "random_state" not in constraints:
        values.append(None)
    for c in constraints:
        if isinstance(c, Interval):
            values += [True, "1", np.nan]
            if c.left is not None:
                values.append(c.left - 1)
            if c.right is not None:
                values.append(c.right + 1)
            elif c.type is Real:
                values.append(np.inf)
        elif isinstance(c, StrOptions):
            values += ["not-an-option", 5]
        elif c == "boolean":
            values += ["yes", 2]
        elif c == "random_state":
            values += [True, -1, "seed"]
    return values


def _id(value):
    """A test id for ``value`` that every pytest-xdist worker computes alike: reprs holding
    an address (a bare object, a reparam) are named by their type."""
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


def _estimator_cases():
    for cls in (ImpactRegressor, ImpactClassifier):
        for name in inspect.signature(cls).parameters:
            generated = _from_constraints(cls._parameter_constraints.get(name, []))
            for i, value in enumerate(ESTIMATOR_HOSTILE.get(name, []) + generated):
                yield pytest.param(cls, name, value, id=f"{cls.__name__}-{name}-{i}-{_id(value)}")


def _function_cases():
    for fn in SWEEP_FUNCTIONS:
        for name in _keyword_parameters(fn):
            for i, value in enumerate(FUNCTION_HOSTILE.get(name, [])):
                yield pytest.param(fn, name, value, id=f"{fn.__name__}-{name}-{i}-{_id(value)}")


@pytest.fixture(scope="module")
def tiny():
    return _fit(ImpactRegressor(**TINY), XS, YS)


@pytest.fixture(scope="module")
def tiny_effect(tiny):
    return tiny.effect(XS, SWEEP_INTERVENTION, kind="mean")


def _refused(call, name):
    """``call()`` must raise an error naming ``name``, and run nothing long before."""
    with warnings.catch_warnings():  # an accepted value shows as DID NOT RAISE
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises((InvalidParameterError, ValueError, TypeError, KeyError),
                           match=rf"(?<![\w]){re.escape(name)}(?![\w])") as excinfo:
            call()
    assert_no_internal_names(str(excinfo.value))


def test_sweep_tables_cover_every_parameter():
    for cls in (ImpactRegressor, ImpactClassifier):
        names = set(inspect.signature(cls).parameters)
        assert names == set(ESTIMATOR_HOSTILE), names ^ set(ESTIMATOR_HOSTILE)
        assert names == set(cls._parameter_constraints), names ^ set(cls._parameter_constraints)
    for fn in SWEEP_FUNCTIONS:
        missing = set(_keyword_parameters(fn)) - set(FUNCTION_HOSTILE)
        assert not missing, f"{fn.__name__} has parameters without hostile values: {missing}"
    # the public functions that take keyword parameters (mediation, where it exists)
    swept = {fn.__name__ for fn in SWEEP_FUNCTIONS}
    public = {"effect", "counterfactual_predict", "summarize_effect", "refute", "sensitivity"}
    public |= {"mediation"} & set(dir(skimpact))
    assert public | {"calibrate_effect", "effect_summary", "effect_scorer", "qini_curve",
                     "uplift_curve", "policy_value"} <= swept


@pytest.mark.parametrize("cls, name, value", list(_estimator_cases()))
def test_sweep_estimator_parameters(cls, name, value):
    y = D.yc[:24] if cls is ImpactClassifier else YS
    _refused(lambda: cls(**{**TINY, name: value}).fit(XS, y), name)


@pytest.mark.parametrize("fn, name, value", list(_function_cases()))
def test_sweep_function_keywords(fn, name, value, request):
    call = SWEEP_FUNCTIONS[fn]
    _refused(lambda: call(Fixtures(request), **{name: value}), name)


def test_matrix_size():
    tables = (INPUT_CASES, PARAMETER_CASES, FACTORY_CASES, INTERVENTION_CASES, EFFECT_CASES,
              STORE_CASES, NUMERIC_CASES, CONCURRENCY_CASES)
    assert sum(map(len, tables)) >= 80
