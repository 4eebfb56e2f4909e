"""Small NumPyro models and data used across the tests (importable, hence picklable)."""

import numpy as np
import numpyro
import numpyro.distributions as dist


def linear(prior_scale=1.0):
    """The seed example's linear model factory: y ~ Normal(a + X b, sigma)."""

    def model(X, y=None):
        a = numpyro.sample("a", dist.Normal(0.0, 5.0))
        b = numpyro.sample("b", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(a + X @ b, sigma), obs=y)

    return model


def linear_with_input(X, y=None, C=None):
    """A bare model with an extra keyword input ``C`` (one value per row)."""
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    g = numpyro.sample("g", dist.Normal(0.0, 2.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ b + g * C, 0.5), obs=y)


def payments_model(X, payments=None):
    """A model whose outcome argument is called ``payments``."""
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("payments", dist.Normal(X @ b, 1.0), obs=payments)


def seed_data(n=200, seed=0):
    """Intercept 1, slope 2, sigma 0.5."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    y = 1.0 + 2.0 * X[:, 0] + rng.normal(0.0, 0.5, n)
    return X, y
