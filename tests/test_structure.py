"""Structure declared, not guessed from sizes: the outcome site is the one observing the
outcome argument, the row plate is the outcome's plate over y (or the one named), and an
input is per row when the model uses it so, not when its length happens to be the row count."""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from skimpact import ImpactRegressor

FIT = dict(inference="svi", num_steps=300, num_samples=40, random_state=0)


def grouped(X, y=None, *, g, group_scale):
    """Three groups whose prior scales are an input of one value per group."""
    with numpyro.plate("groups", group_scale.shape[0]):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, group_scale))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("rows", X.shape[0]):
        numpyro.sample("y", dist.Normal(alpha[g] + b * X[:, 0], sigma), obs=y)


def _fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 3-row fit of a few steps does not settle
        return est.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def three_rows():
    """Three rows and three groups: the group scales are as long as the rows."""
    X, y = np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 2.0, 3.5])
    g, scales = np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0])
    return _fit(ImpactRegressor(grouped, **FIT), X, y, g=g, group_scale=scales), scales


def test_a_three_row_model_with_three_groups_keeps_group_inputs_whole(three_rows):
    est, scales = three_rows
    assert est.predictor_.layout.row_inputs_ == ("g",)
    assert est.model_info_.row_dim == "rows"
    assert est.model_info_.local_sites == {}
    # five new rows, the group scales given whole: alpha[g] + b x per draw, averaged
    X5, g5 = np.linspace(-1, 1, 5)[:, None], np.array([0, 1, 2, 0, 1])
    post = est.posterior_["posterior"]
    alpha = post["alpha"].values.reshape(-1, 3)
    b = post["b"].values.reshape(-1)
    expected = (alpha[:, g5] + b[:, None] * X5[:, 0]).mean(0)
    np.testing.assert_allclose(est.predict(X5, g=g5, group_scale=scales), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="Input 'g' has 2 rows; X has 5"):
        est.predict(X5, g=g5[:2], group_scale=scales)
    with pytest.raises(ValueError, match=r"Input 'group_scale' has shape \(2,\), but at fit "
                                         r"it had shape \(3,\).*uses it whole"):
        est.predict(X5, g=g5, group_scale=scales[:2])


def test_the_row_plate_is_named_or_the_outcomes_own():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 1)), rng.normal(size=30)
    g, scales = np.arange(30) % 3, np.ones(3)
    est = _fit(ImpactRegressor(grouped, row_plate="rows", **FIT), X, y, g=g, group_scale=scales)
    assert est.model_info_.row_dim == "rows"
    tree = est.counterfactual_predict(X[:4], None, g=g[:4], group_scale=scales)
    assert tree["predictions"]["y"].dims == ("chain", "draw", "rows")
    with pytest.raises(ValueError, match=r"row_plate='groups'.*its plates are \['rows'\]"):
        _fit(ImpactRegressor(grouped, row_plate="groups", **FIT), X, y, g=g,
             group_scale=scales)


def copy_observed(X, y=None, *, y_copy):
    """A second observed site holding the same numbers as y, sampled first."""
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("copy", dist.Normal(0.0, 10.0), obs=y_copy)
        numpyro.sample("y", dist.Normal(b * X[:, 0], 1.0), obs=y)


def test_the_outcome_site_observes_the_outcome_argument_not_equal_values():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1))
    y = 2 * X[:, 0] + rng.normal(0, 0.1, 40)
    est = _fit(ImpactRegressor(copy_observed, **FIT), X, y, y_copy=y.astype(np.float32))
    assert est.model_info_.outcome_site == "y"


def transformed(X, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(b * X[:, 0], 1.0), obs=None if y is None else y * 1.0)


def test_an_outcome_observed_through_a_computation_is_named_as_the_problem():
    X, y = np.ones((10, 1)), np.ones(10)
    with pytest.raises(ValueError, match=r"the argument itself, not a value computed from it"):
        ImpactRegressor(transformed, **FIT).fit(X, y)
