"""Numeric hyperparameters used only as values are arguments of the compiled programs:
fits that differ in them (a grid search, a data-dependent location) compile nothing new,
while those used as shapes or in Python control flow stay static (counted compilations)."""

import pickle

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from skimpact import ImpactRegressor, Model

_COMPILES = [0]


def _count(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def grid_model(prior_scale=1.0, n_coef=2, centred=1, y_loc=0.0):
    """``prior_scale`` and ``y_loc`` are values; ``n_coef`` a shape, ``centred`` a branch."""

    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, prior_scale).expand([n_coef]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        loc = X @ b + (y_loc if centred else 0.0)
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(loc, sigma), obs=y)

    return model


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, 4.0 + X @ [1.0, -2.0] + 0.5 * rng.normal(size=n)


def _estimator(**hyper):
    return ImpactRegressor(Model(grid_model, **hyper), inference="svi", num_steps=200,
                           num_samples=50, random_state=0)


def test_values_are_arguments_and_shapes_and_branches_stay_static():
    X, y = _data()
    program = _estimator().fit(X, y).predictor_.program
    assert program.arguments == ("prior_scale", "y_loc")
    other = _estimator(prior_scale=5.0, y_loc=3.0).fit(X, y).predictor_.program
    assert other.cache_key == program.cache_key
    # a branch's value is part of the key: another value compiles its own program
    assert _estimator(centred=0).fit(X, y).predictor_.program.cache_key != program.cache_key


def test_grid_search_over_a_prior_scale_compiles_the_fit_once():
    X, y = _data()
    folds = KFold(3)
    # one fit and score of the fold shapes, with another value, compiles what they need
    train, test = next(folds.split(X))
    _estimator(prior_scale=7.0).fit(X[train], y[train]).score(X[test], y[test])
    before = _COMPILES[0]
    search = GridSearchCV(_estimator(), {"model__prior_scale": [0.1, 0.5, 1.0, 3.0]},
                          cv=folds, refit=False).fit(X, y)
    assert _COMPILES[0] == before
    scores = search.cv_results_["mean_test_score"]
    assert len(set(np.round(scores, 12))) > 1  # the value reached the model


def test_a_data_dependent_hyperparameter_recompiles_nothing_across_refits():
    fits = []
    for seed in range(3):
        X, y = _data(seed=seed)
        est = _estimator(y_loc=float(np.mean(y)))
        before = _COMPILES[0]
        est.fit(X, y).predict(X)
        fits.append(_COMPILES[0] - before)
    assert fits[1:] == [0, 0]


def test_a_program_with_arguments_pickles_and_predicts_alike():
    X, y = _data()
    est = _estimator(prior_scale=0.3, y_loc=2.0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.predictor_.program.arguments == ("prior_scale", "y_loc")
    np.testing.assert_array_equal(loaded.predict(X[:10]), est.predict(X[:10]))
    np.testing.assert_array_equal(clone(est).fit(X, y).predict(X[:10]), est.predict(X[:10]))


@pytest.mark.parametrize("value", [0.5, np.float32(0.5)])
def test_arguments_give_the_numbers_of_constants(value):
    """Built with the value as a constant (a closure over it) or passed as an argument, the
    fit and its predictions agree."""
    X, y = _data()
    est = _estimator(prior_scale=value).fit(X, y)

    def closed(X, y=None):
        return grid_model(prior_scale=value)(X, y)

    const = ImpactRegressor(closed, inference="svi", num_steps=200, num_samples=50,
                            random_state=0).fit(X, y)
    np.testing.assert_allclose(est.predict(X[:20]), const.predict(X[:20]), rtol=1e-5)
