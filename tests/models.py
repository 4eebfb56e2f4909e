"""Small NumPyro models and data used across the tests (importable, hence picklable)."""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from skimpact import ImpactRegressor


def linear(prior_scale=1.0):
    """The seed example's linear model factory: y ~ Normal(a + X b, sigma)."""

    def model(X, y=None):
        a = numpyro.sample("a", dist.Normal(0.0, 5.0))
        b = numpyro.sample("b", dist.Normal(0.0, prior_scale).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(a + X @ b, sigma), obs=y)

    return model


def slopes(prior_scale=1.0):
    """Factory of the linear model without intercept: y ~ Normal(X b, sigma)."""

    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, prior_scale).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ b, sigma), obs=y)

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


def global_chain(X, y=None):
    """A global latent ``m`` downstream of another, ``z``: do(z) moves m by 2 per unit."""
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    m = numpyro.sample("m", dist.Normal(2.0 * z, 0.1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(m + X[:, 0], s), obs=y)


def local_chain(X, y=None):
    """A per-row latent ``m`` downstream of column 0: raising it by one moves y by 2a."""
    a = numpyro.sample("a", dist.Normal(1.0, 1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        m = numpyro.sample("m", dist.Normal(2.0 * X[:, 0], 0.3))
        numpyro.sample("y", dist.Normal(a * m + X[:, 1], s), obs=y)


def hierarchical(X, y=None):
    """Group effects ``theta`` (group = column 0) around a hyperparameter ``mu``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("group", 4):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(theta[X[:, 0].astype("int32")], s), obs=y)


def mediator(X, y=None, M=None):
    """Treatment column 0 acts on y directly (gamma) and through the measured mediator
    ``m`` (alpha, then beta; the data in input ``M``): direct effect gamma, indirect
    alpha * beta."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0))
    gamma = numpyro.sample("gamma", dist.Normal(0.0, 2.0))
    s_m = numpyro.sample("s_m", dist.HalfNormal(1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        m = numpyro.sample("m", dist.Normal(alpha * X[:, 0] + X[:, 1], s_m), obs=M)
        numpyro.sample("y", dist.Normal(beta * m + gamma * X[:, 0], s), obs=y)


def dose_age_data(n=80, seed=0):
    """A DataFrame with columns dose and age: y = 1 + 2 dose - 0.5 age, noise sd 0.5."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["dose", "age"])
    y = 1.0 + 2.0 * X["dose"].to_numpy() - 0.5 * X["age"].to_numpy() + rng.normal(0, 0.5, n)
    return X, y


def fit_dose_age(**params):
    """The default model fitted to :func:`dose_age_data` with ``params``: the estimator and
    the ConvergenceWarnings its fit raised."""
    X, y = dose_age_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = ImpactRegressor(random_state=0, **params).fit(X, y)
    return est, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def chain_data(n=200, seed=0):
    """Data for :func:`global_chain`: y = 1 + x + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    return X, 1.0 + X[:, 0] + 0.3 * rng.normal(size=n)


def local_chain_data(n=300, seed=0):
    """Data for :func:`local_chain` with a = 1.5."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    m = 2.0 * X[:, 0] + 0.3 * rng.normal(size=n)
    return X, 1.5 * m + X[:, 1] + 0.3 * rng.normal(size=n)


def hierarchical_data(n=200, seed=0):
    """Data for :func:`hierarchical`: four groups around 1."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    theta = 1.0 + 0.5 * rng.normal(size=4)
    return g[:, None].astype(float), theta[g] + 0.3 * rng.normal(size=n)


def mediator_data(n=400, seed=0):
    """Data for :func:`mediator`: alpha 1, beta 2, gamma 0.5 (direct 0.5, indirect 2);
    returns X, y and the measured mediator."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n).astype(float)
    w = rng.normal(size=n)
    m = t + w + 0.5 * rng.normal(size=n)
    return np.column_stack([t, w]), 2.0 * m + 0.5 * t + 0.3 * rng.normal(size=n), m
