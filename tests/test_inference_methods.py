"""Inference methods as objects: a method registered from outside skimpact is selectable as
``inference=<name>`` and fits, predicts and answers effects with no edit of skimpact; the
registry refuses bad registrations with errors that say what to fix."""

import numpy as np
import pytest
from numpyro.infer import Predictive
from sklearn.utils._param_validation import InvalidParameterError

from skimpact import ImpactRegressor, summarize_effect
from skimpact.inference import InferenceResult
from skimpact.methods import (
    InferenceMethod, get_method, method_names, register_method, unregister_method,
)


class PriorOnly(InferenceMethod):
    """Draws from the prior: the data are ignored (a toy method)."""

    name = "prior-only"

    def run(self, model, args, kwargs, *, key, settings, guide, minibatch=None,
            cache_key=None, budget=None):
        draws = Predictive(model, num_samples=settings["num_samples"])(key, *args, **kwargs)
        return InferenceResult({k: np.asarray(v)[None] for k, v in draws.items()})


@pytest.fixture
def prior_only():
    method = register_method(PriorOnly())
    yield method
    unregister_method(method.name)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, 1.0 + X @ [1.0, -0.5] + rng.normal(0, 0.3, n)


def test_a_registered_method_fits_predicts_and_answers_effects(prior_only):
    X, y = _data()
    assert "prior-only" in method_names()
    est = ImpactRegressor(inference="prior-only", num_samples=40, random_state=0).fit(X, y)
    assert est.inference_ == "prior-only"
    assert est.diagnostics_["converged"]  # a method without checks fails none
    assert est.diagnostics_["inference_choice"]["reason"] == "inference='prior-only' was set."
    post = est.posterior_
    assert post["posterior"]["coef"].shape == (1, 40, 2)
    assert post.attrs["inference"] == "prior-only"
    assert "sample_stats" not in post.children  # the method writes none
    # draws that are not Markov chains: the summary has no ESS or r_hat columns
    assert "r_hat" not in est.summary().columns
    assert np.isfinite(est.predict(X)).all()
    eff = est.effect(X, {0: 1.0})
    assert eff.attrs["inference"] == "prior-only"
    draws = eff["predictions"]["y"].values
    assert np.isfinite(draws).all() and draws.shape == (1, 40, len(X))
    summary = summarize_effect(eff)  # no point-estimate warning: the draws differ
    assert summary["sd"].iloc[0] > 0
    # the prior knows nothing of the data: its draws of the slope spread far wider than a fit
    svi = ImpactRegressor(inference="svi", num_steps=500, num_samples=40,
                          random_state=0).fit(X, y)
    assert post["posterior"]["coef"].std() > 3 * svi.posterior_["posterior"]["coef"].std()


def test_auto_is_unchanged_by_another_method(prior_only):
    X, y = _data()
    est = ImpactRegressor(random_state=0).fit(X, y)
    assert est.inference_ == "nuts"
    assert est.diagnostics_["inference_choice"]["reason"].startswith("NUTS: expected")


def test_a_method_without_minibatches_refuses_fit_batch_size(prior_only):
    X, y = _data()
    with pytest.raises(ValueError, match=r"`fit_batch_size` needs inference='svi' or 'map'; "
                                         r"got 'prior-only'"):
        ImpactRegressor(inference="prior-only", fit_batch_size=10).fit(X, y)


def test_unknown_names_list_the_registered_methods():
    X, y = _data()
    with pytest.raises(InvalidParameterError,
                       match=r"'inference' parameter .* among \{'auto', 'svi', 'map', 'nuts'\}"):
        ImpactRegressor(inference="prior-only").fit(X, y)
    with pytest.raises(KeyError, match=r"No inference method is registered as 'vi'; the "
                                       r"registered ones are \['svi', 'map', 'nuts'\]"):
        get_method("vi")
    with pytest.raises(KeyError, match="No inference method is registered as 'vi'"):
        unregister_method("vi")


class _Flagged(PriorOnly):
    name = "flagged"


@pytest.mark.parametrize("method, error, message", [
    (PriorOnly, TypeError, r"an instance .* not the class itself: register_method\(PriorOnly\(\)\)"),
    (object(), TypeError, r"subclass of skimpact.methods.InferenceMethod; got object"),
    (type("Nameless", (PriorOnly,), {"name": None})(), ValueError,
     r"`name` must be a short name .* Nameless.name is None"),
    (type("Spaced", (PriorOnly,), {"name": "prior only"})(), ValueError,
     r"Spaced.name is 'prior only'"),
    (type("Auto", (PriorOnly,), {"name": "auto"})(), ValueError, r"'auto' is reserved"),
    (type("Svi", (PriorOnly,), {"name": "svi"})(), ValueError,
     r"named 'svi' is registered already .*replace=True"),
    (type("Yes", (_Flagged,), {"mcmc": "yes"})(), ValueError,
     r"Yes.mcmc must be True or False; got 'yes'"),
    (type("Listed", (_Flagged,), {"settings": ["num_steps"]})(), ValueError,
     r"Listed.settings must be a tuple of estimator parameter names"),
], ids=["class", "not-a-method", "no-name", "space", "reserved", "taken", "flag", "settings"])
def test_bad_registrations_are_refused(method, error, message):
    before = method_names()
    with pytest.raises(error, match=message):
        register_method(method)
    assert method_names() == before


def test_a_method_must_implement_run():
    class NoRun(InferenceMethod):
        name = "no-run"

    with pytest.raises(TypeError, match="abstract method 'run'"):
        NoRun()


def test_replacing_a_method_is_explicit(prior_only):
    other = type("Other", (PriorOnly,), {})()
    assert register_method(other, replace=True) is other
    assert get_method("prior-only") is other
