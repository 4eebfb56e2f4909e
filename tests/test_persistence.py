"""Fitted estimators saved with joblib load in a fresh process; unpicklable factories fail
clearly at save time."""

import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from skimpact import ImpactClassifier, ImpactRegressor, Model
from skimpact.builtin_models import linear_model

MAP = dict(inference="map", num_steps=300, num_samples=1, learning_rate=0.05, random_state=0)


@pytest.mark.slow
def test_saved_estimator_predicts_identically_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = X @ [1.0, -2.0] + rng.normal(0, 0.3, 50)
    reg = ImpactRegressor(Model(linear_model, prior_scale=1.0), inference="svi", num_steps=200,
                          num_samples=30, random_state=0).fit(X, y)
    clf = ImpactClassifier(**MAP).fit(X, np.where(y > 0, "up", "down"))
    joblib.dump({"reg": reg, "clf": clf}, tmp_path / "models.joblib")
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np
        models = joblib.load({str(tmp_path / "models.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "reg.npy")!r}, models["reg"].predict(X))
        np.save({str(tmp_path / "q.npy")!r}, models["reg"].predict_quantiles(X, [0.1, 0.9]))
        np.save({str(tmp_path / "clf.npy")!r}, models["clf"].predict_proba(X))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "reg.npy"), reg.predict(X))
    np.testing.assert_array_equal(np.load(tmp_path / "q.npy"), reg.predict_quantiles(X, [0.1, 0.9]))
    np.testing.assert_array_equal(np.load(tmp_path / "clf.npy"), clf.predict_proba(X))


def _closure_factory():
    scale = 1.0

    def factory(prior_scale=scale):
        return linear_model(prior_scale)

    return factory


@pytest.mark.parametrize(
    "model, what",
    [
        (Model(lambda prior_scale=1.0: linear_model(prior_scale)), "is a lambda"),
        (Model(_closure_factory()), "closure"),
    ],
    ids=["lambda", "closure"],
)
def test_unpicklable_factory_fails_at_save_time_with_a_fix(tmp_path, model, what):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 1))
    est = ImpactRegressor(model, **MAP).fit(X, X[:, 0])
    with pytest.raises(pickle.PicklingError, match=what) as info:
        joblib.dump(est, tmp_path / "est.joblib")
    assert "top level of an importable module" in str(info.value)


def test_bare_lambda_model_fails_at_save_time_with_a_fix():
    def make():
        return lambda X, y=None: numpyro.sample("y", dist.Normal(X[:, 0], 1.0), obs=y)

    est = ImpactRegressor(make(), **MAP)
    with pytest.raises(pickle.PicklingError, match="top level of an importable module"):
        pickle.dumps(est)


def test_posterior_tree_is_built_from_the_fit_when_first_read():
    # fit freezes the draws; the tree is built on the first read, the same before and
    # after pickling, with the fit's time in its attrs
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2)); y = X @ [1.0, -1.0] + rng.normal(0, 0.3, 30)
    est = ImpactRegressor(inference="svi", num_steps=100, num_samples=10,
                          random_state=0).fit(X, y)
    state = dict(vars(est))
    copy = pickle.loads(pickle.dumps(est))  # pickled before anything read the tree
    tree = est.posterior_
    assert tree is est.posterior_  # built once
    assert vars(est).keys() == state.keys()  # the estimator's own state is untouched
    assert all(vars(est)[k] is v for k, v in state.items())
    again = copy.posterior_
    assert again.attrs == tree.attrs  # created_at included: the fit's time
    np.testing.assert_array_equal(again["posterior"]["coef"].values,
                                  tree["posterior"]["coef"].values)
    with pytest.raises(AttributeError, match="fit it first"):
        ImpactRegressor().posterior_
