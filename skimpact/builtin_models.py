"""The built-in models: a linear regression and a logistic (multinomial) classifier.

Both are model factories (see :mod:`skimpact.model`) that take X centred and scaled by
:func:`builtin_scales`; the linear model's outcome is centred by :func:`builtin_offsets`,
so the float32 cast keeps its signal whatever the outcome's size. The data's location and
scale come in as keyword inputs (not closure constants), so one compiled program serves
every fold of a cross-validation.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["builtin_offsets", "builtin_scales", "linear_model", "logistic_model"]


def linear_model(prior_scale=2.5):
    """Bayesian linear regression with weakly informative priors on the data's scale.

    The model works on standardised features and outcome, so its latent variables are of
    order one whatever the units of ``X`` and ``y``: intercept and coefficients per feature
    standard deviation ~ Normal(0, prior_scale), noise ~ Exponential(1), all in units of
    ``y``'s standard deviation. Deterministic sites ``intercept``, ``coef`` and ``sigma``
    report the parameters in the data's units. The estimator passes X and y centred on
    their training means (subtracted in float64, so no offset swallows the signal), the
    data's ``x_loc``, ``x_scale`` and ``y_scale`` as inputs, and adds the mean of y back to
    the outcome and ``intercept`` in float64 (see :func:`builtin_offsets`).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, Model
    >>> from skimpact.builtin_models import linear_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = 5 + X @ [1.0, -2.0] + rng.normal(0, 0.5, 100)
    >>> est = ImpactRegressor(Model(linear_model, prior_scale=1.0), inference="svi",
    ...                       num_steps=1000, num_samples=100, random_state=0).fit(X, y)
    >>> post = est.posterior_["posterior"]
    >>> post["coef"].mean(("chain", "draw")).values.round(1)
    array([ 0.9, -1.9], dtype=float32)
    >>> round(float(post["intercept"].mean()), 1)
    4.9
    """

    def model(X, y=None, *, x_loc=0.0, x_scale=1.0, y_scale=1.0):
        n, p = X.shape
        alpha = numpyro.sample("alpha", dist.Normal(0.0, prior_scale))
        with numpyro.plate("feature", p):
            beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale))
            coef = numpyro.deterministic("coef", beta * y_scale / x_scale)
        noise = numpyro.sample("noise", dist.Exponential(1.0))
        numpyro.deterministic("intercept", y_scale * alpha - jnp.sum(coef * x_loc))
        sigma = numpyro.deterministic("sigma", y_scale * noise)
        mu = y_scale * (alpha + (X / x_scale) @ beta)
        with numpyro.plate("obs", n):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def logistic_model(n_classes=2, prior_scale=2.5):
    """Bayesian logistic (``n_classes == 2``) or multinomial logistic regression.

    Coefficients per feature standard deviation ~ Normal(0, prior_scale); the outcome site
    ``y`` takes labels encoded as ``0 .. n_classes - 1``. The estimator passes X centred on
    the training means and the features' ``x_scale`` as an input.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactClassifier, Model
    >>> from skimpact.builtin_models import logistic_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = (X[:, 0] > 0).astype(int)
    >>> clf = ImpactClassifier(Model(logistic_model, prior_scale=1.0), inference="svi",
    ...                        num_steps=1000, num_samples=100, random_state=0).fit(X, y)
    >>> dict(clf.posterior_["posterior"]["beta"].sizes)
    {'chain': 1, 'draw': 100, 'feature': 2, 'class': 1}
    """

    def model(X, y=None, *, x_scale=1.0):
        n, p = X.shape
        k = 1 if n_classes == 2 else n_classes
        with numpyro.plate("class", k, dim=-1):
            alpha = numpyro.sample("alpha", dist.Normal(0.0, prior_scale))
            with numpyro.plate("feature", p, dim=-2):
                beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale))
        logits = alpha + (X / x_scale) @ beta
        with numpyro.plate("obs", n):
            if n_classes == 2:
                numpyro.sample("y", dist.Bernoulli(logits=logits[:, 0]), obs=y)
            else:
                numpyro.sample("y", dist.Categorical(logits=logits), obs=y)

    return model


def builtin_scales(factory, X, y=None, weights=None):
    """The data scales a built-in model takes as inputs, or ``None`` for other factories.

    Parameters
    ----------
    factory : callable
        The model factory.
    X : ndarray of shape (n, p)
        Training features (float64, not centred).
    y : ndarray of shape (n,), optional
        Training outcome (the linear model's location and scale).
    weights : ndarray of shape (n,), optional
        Frequency weights (sample weights times the observed mask): a row of weight 2
        gives the scales of that row repeated.

    Returns
    -------
    dict or None

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.builtin_models import builtin_scales, linear_model
    >>> X = np.array([[0.0, 10.0], [2.0, 30.0]]); y = np.array([1.0, 3.0])
    >>> {k: np.asarray(v).tolist() for k, v in builtin_scales(linear_model, X, y).items()}
    {'x_loc': [1.0, 20.0], 'x_scale': [1.0, 10.0], 'y_scale': 1.0}
    """
    if factory not in (linear_model, logistic_model):
        return None
    x_loc, x_scale = _loc_scale(X, weights)
    if factory is logistic_model:
        return {"x_scale": jnp.asarray(x_scale, dtype=jnp.float32)}
    _, y_scale = _loc_scale(np.asarray(y, dtype=np.float64)[:, None], weights)
    return {
        "x_loc": jnp.asarray(x_loc, dtype=jnp.float32),
        "x_scale": jnp.asarray(x_scale, dtype=jnp.float32),
        "y_scale": jnp.asarray(y_scale[0], dtype=jnp.float32),
    }


def builtin_offsets(factory, y, weights=None):
    """Offsets a built-in model's sites leave to be added after the model runs.

    The built-in linear model observes y centred on its (weighted) training mean, taken in
    float64, so a large offset (y around 1e9, say) cannot swallow the signal in float32.
    The mean is added back to the outcome and to ``intercept``.

    Parameters
    ----------
    factory : callable
        The model factory.
    y : ndarray of shape (n,)
        Training outcome (float64; NaN where unobserved).
    weights : ndarray of shape (n,), optional
        Frequency weights, as for :func:`builtin_scales` (zero where y is unobserved).

    Returns
    -------
    dict of str to float
        ``{site: offset}``; empty for every factory but :func:`linear_model`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.builtin_models import builtin_offsets, linear_model, logistic_model
    >>> builtin_offsets(linear_model, np.array([1e9, 1e9 + 2.0]))
    {'y': 1000000001.0, 'intercept': 1000000001.0}
    >>> builtin_offsets(logistic_model, np.array([0, 1]))
    {}
    """
    if factory is not linear_model:
        return {}
    y = np.asarray(y, dtype=np.float64)
    y_loc, _ = _loc_scale(np.where(np.isnan(y), 0.0, y)[:, None], weights)
    return {"y": float(y_loc[0]), "intercept": float(y_loc[0])}


def _loc_scale(X, weights=None):
    """Weighted column means and standard deviations (1 where a column is constant)."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    loc = (w @ X) / w.sum()
    scale = np.sqrt((w @ (X - loc) ** 2) / w.sum())
    return loc, np.where(scale > 0, scale, 1.0)
