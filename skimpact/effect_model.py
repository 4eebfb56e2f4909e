"""A built-in model whose effect varies with the covariates: :func:`effect_model`.

The outcome is split, after Bayesian causal forests (Hahn, Murray and Carvalho 2020), into a
prognostic function and an effect function of the covariates ``x``::

    y = mu(x, pi_hat(x)) + tau(x) * T + noise

``mu`` and ``tau`` are separate flexible functions, each an intercept, a linear term and
random Fourier features of a squared-exponential Gaussian process with one inverse length
scale per covariate (ARD: a covariate that does not matter gets a scale near zero). ``mu``
adds a single-index term, a smooth function of one learned direction of the covariates: an
outcome that rises steeply along one combination of many covariates (an exponential of a
linear score, say) is what random features in many dimensions follow worst. The
direction's prior is centred at the least-squares direction of ``y`` on the covariates
(which points along the score when ``y`` is a monotone function of it), and the knots of
its hinges span that index over the data, so SVI starts from a fit rather than from no
index at all. ``tau`` adds ``gamma * mu(x)``, an effect that scales with the prognosis
(an outcome that the treatment multiplies, or replaces by a surface of its own: then
``gamma`` is -1 and the treated arm needs none of ``mu``'s shape). ``tau`` has its own,
smaller prior scales, so the effect is shrunk towards a common value unless the data say
otherwise, and ``mu`` also sees the estimated propensity ``pi_hat(x)`` (a logistic
regression of a binary treatment on the covariates, a ridge regression for a continuous
one), which guards the effect against regularisation-induced confounding.

The data-dependent parts (column scales, the propensity model's coefficients, the random
frequencies and the single index's starting direction and knots) are computed at ``fit``
by :meth:`EffectModel.fit_inputs` and enter the model as fixed keyword inputs, so
``pi_hat`` is recomputed for any new rows inside the model and an intervention on the
treatment column leaves it unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .model import Model

__all__ = ["EffectModel", "effect_model", "effect_model_factory"]


class EffectModel(Model):
    """A :class:`~skimpact.Model` of :func:`effect_model_factory` that computes its data
    inputs (scales, propensity coefficients, random frequencies, the single index's start
    and knots) from the training data.

    Build it with :func:`effect_model`.
    """

    def fit_inputs(self, X, y, weights=None, feature_names=None):
        """The model's keyword inputs computed from the training data.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Training features (float64), the treatment column among them.
        y : ndarray of shape (n,)
            Training outcome.
        weights : ndarray of shape (n,), optional
            Frequency weights (zero where y is unobserved).
        feature_names : array-like of str, optional
            Column names of X (a DataFrame's), for a treatment given by name.

        Returns
        -------
        dict of str to jax.Array

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import effect_model
        >>> rng = np.random.default_rng(0)
        >>> X = np.column_stack([rng.normal(size=50), rng.binomial(1, 0.5, 50)])
        >>> inputs = effect_model(1).fit_inputs(X, rng.normal(size=50))
        >>> inputs["t_mask"].tolist(), float(inputs["t_unit"]), float(inputs["ps_binary"])
        ([0.0, 1.0], 1.0, 1.0)
        """
        hp = self.hyperparameters
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n, p = X.shape
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        t = treatment_index(hp["treatment"], p, feature_names)
        mask = np.zeros(p)
        mask[t] = 1.0
        T = X[:, t]
        x_loc, x_scale = _loc_scale(X, w)
        x_loc[t], x_scale[t] = 0.0, 1.0
        Z = (X - x_loc) / x_scale * (1.0 - mask)
        binary = bool(np.isin(T[w > 0], (0.0, 1.0)).all())
        coef, intercept = _propensity(np.delete(Z, t, axis=1), T, w, binary,
                                      hp["propensity_penalty"])
        coef = np.insert(coef, t, 0.0)
        score = Z @ coef + intercept
        pi = 1.0 / (1.0 + np.exp(-score)) if binary else score
        ps_loc, ps_scale = _loc_scale(pi[:, None], w)
        y_loc, y_scale = _loc_scale(np.where(w > 0, y, 0.0)[:, None], w)
        t_unit = 1.0 if binary else float(_loc_scale(T[:, None], w)[1][0])
        Z_mu = np.column_stack([Z, (pi - ps_loc[0]) / ps_scale[0]])
        index_loc, knots = _index_start(Z_mu, T, (y - y_loc[0]) / y_scale[0], w)
        rng = np.random.default_rng(hp["seed"])
        inputs = {
            "x_loc": x_loc, "x_scale": x_scale, "t_mask": mask, "t_unit": t_unit,
            "y_loc": y_loc[0], "y_scale": y_scale[0], "ps_coef": coef,
            "ps_intercept": intercept, "ps_binary": 1.0 if binary else 0.0,
            "ps_loc": ps_loc[0], "ps_scale": ps_scale[0],
            "omega_mu": rng.normal(size=(p + 1, hp["mu_features"])),
            "phase_mu": rng.uniform(0, 2 * np.pi, hp["mu_features"]),
            "omega_tau": rng.normal(size=(p, hp["tau_features"])),
            "phase_tau": rng.uniform(0, 2 * np.pi, hp["tau_features"]),
            "index_loc": index_loc, "index_knots": knots,
        }
        return {k: jnp.asarray(v, dtype=jnp.float32) for k, v in inputs.items()}

    def fit_settings(self):
        """SVI with 4000 steps and 1000 draws, used where the estimator's settings are at
        their defaults.

        The random-feature weights, their amplitudes and length scales make a correlated
        posterior: on IHDP, NUTS's warm-up took 190 to 290 leapfrog steps per iteration
        (many trees at the limit of 1023), against the 32 ``inference="auto"`` expects,
        and compiling NUTS alone took as long as the whole SVI fit. With 2000 steps a
        quarter of the IHDP fits had not settled (and warned so), two of the four with the
        largest per-unit errors among them; 4000 steps settle most of them and bring all
        four closer to the truth (``benchmarks/README.md``).

        Returns
        -------
        dict

        Examples
        --------
        >>> from skimpact import effect_model
        >>> effect_model("T").fit_settings()
        {'inference': 'svi', 'num_steps': 4000, 'num_samples': 1000}
        """
        return {"inference": "svi", "num_steps": 4000, "num_samples": 1000}


def effect_model(treatment, *, mu_features=50, tau_features=50, mu_scale=1.0,
                 tau_scale=0.5, lengthscale_prior=0.3, propensity_penalty=1.0, seed=0):
    """A model whose effect of ``treatment`` varies with the other columns.

    ``y = mu(x, pi_hat(x)) + tau(x) * T + noise``, after Bayesian causal forests (Hahn,
    Murray and Carvalho 2020): ``mu`` is the prognostic function of the covariates and the
    estimated propensity ``pi_hat(x)``, ``tau`` the effect of one unit of the treatment
    ``T``. Both are an intercept, a linear term and ``*_features`` random Fourier features
    of a Gaussian process with one inverse length scale per covariate; ``mu`` also has a
    smooth function of one learned direction of the covariates (a single index, its prior
    centred at the least-squares direction of ``y``), and
    ``tau`` a term ``tau_prognostic * mu(x)``, an effect proportional to the prognosis. ``tau`` has
    the smaller prior scales, so effects are shrunk towards their average unless the data
    show them varying. Works on the data's scale (covariates and outcome standardised at fit),
    so the defaults suit any units. ``y`` is Gaussian: use it with
    :class:`~skimpact.ImpactRegressor`. Sites: ``tau`` (each row's effect of one unit of
    ``T``, in units of y per unit of T) and ``sigma`` (noise sd) are deterministic. The
    model declares the settings it is fitted with (:meth:`EffectModel.fit_settings`: SVI,
    4000 steps, 1000 draws), used wherever the estimator's own are at their defaults.

    Parameters
    ----------
    treatment : str or int
        The treatment column: a name of a DataFrame X's column, or its position.
    mu_features, tau_features : int, default=50
        Random features of ``mu`` and ``tau``.
    mu_scale : float, default=1.0
        Prior scale (in outcome standard deviations) of ``mu``'s flexible part.
    tau_scale : float, default=0.5
        Prior scale (outcome standard deviations per unit of T, or per standard deviation
        of a continuous T) of how ``tau`` varies around its average, and of
        ``tau_prognostic``; the average itself has prior scale 1.
    lengthscale_prior : float, default=0.3
        Scale of the half-normal prior of each inverse length scale (per standardised
        covariate): small values favour smooth, nearly additive functions.
    propensity_penalty : float, default=1.0
        Inverse regularisation strength ``C`` of the propensity model (scikit-learn's
        LogisticRegression for a 0/1 treatment; ridge with penalty ``1 / C`` otherwise).
    seed : int, default=0
        Seed of the random frequencies.

    Returns
    -------
    EffectModel
        A :class:`~skimpact.Model`; its hyperparameters tune as ``model__<name>``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skimpact import ImpactRegressor, effect, effect_model, summarize_effect
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"x": rng.normal(size=300), "T": rng.binomial(1, 0.5, 300)})
    >>> y = X["x"] + (1 + X["x"]) * X["T"] + rng.normal(0, 0.3, 300)
    >>> est = ImpactRegressor(effect_model("T"), inference="svi", num_steps=2000,
    ...                       num_samples=200, random_state=0).fit(X, y)
    >>> eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    >>> cate = summarize_effect(eff, per_row=True)["mean"]
    >>> bool(np.corrcoef(cate, 1 + X["x"])[0, 1] > 0.95)
    True
    """
    return EffectModel(effect_model_factory, treatment=treatment, mu_features=mu_features,
                       tau_features=tau_features, mu_scale=mu_scale, tau_scale=tau_scale,
                       lengthscale_prior=lengthscale_prior,
                       propensity_penalty=propensity_penalty, seed=seed)


def effect_model_factory(treatment, mu_features=50, tau_features=50, mu_scale=1.0,
                         tau_scale=0.5, lengthscale_prior=0.3, propensity_penalty=1.0,
                         seed=0):
    """The NumPyro model of :func:`effect_model` (its factory).

    ``treatment``, ``propensity_penalty``, ``seed`` and the feature counts are used by
    :meth:`EffectModel.fit_inputs`, which gives the model its inputs.

    Examples
    --------
    >>> from skimpact.effect_model import effect_model_factory
    >>> callable(effect_model_factory("T"))
    True
    """

    def model(X, y=None, *, x_loc, x_scale, t_mask, t_unit, y_loc, y_scale, ps_coef,
              ps_intercept, ps_binary, ps_loc, ps_scale, omega_mu, phase_mu, omega_tau,
              phase_tau, index_loc, index_knots):
        n = X.shape[0]
        T = X @ t_mask
        Z = (X - x_loc) / x_scale * (1.0 - t_mask)
        score = Z @ ps_coef + ps_intercept
        pi = jnp.where(ps_binary > 0, jax.nn.sigmoid(score), score)
        Z_mu = jnp.concatenate([Z, ((pi - ps_loc) / ps_scale)[:, None]], axis=1)
        f_mu = _function("mu", Z_mu, omega_mu, phase_mu, 1.0, mu_scale, lengthscale_prior)
        f_mu = f_mu + _single_index("mu", Z_mu, mu_scale, index_loc, index_knots)
        f_tau = _function("tau", Z, omega_tau, phase_tau, 1.0, tau_scale, lengthscale_prior)
        # effects that scale with the prognosis: tau may follow mu itself
        prognostic = numpyro.sample("tau_prognostic", dist.Normal(0.0, tau_scale))
        f_tau = f_tau + prognostic * f_mu
        noise = numpyro.sample("noise", dist.HalfNormal(1.0))
        sigma = numpyro.deterministic("sigma", y_scale * noise)
        with numpyro.plate("obs", n):
            tau = numpyro.deterministic("tau", y_scale * f_tau / t_unit)
            mean = y_loc + y_scale * f_mu + tau * T
            numpyro.sample("y", dist.Normal(mean, sigma), obs=y)

    return model


def _function(name, Z, omega, phase, mean_scale, scale, lengthscale_prior):
    """``intercept + Z @ beta + amplitude * features(Z) @ weights`` with ARD inverse length
    scales; every latent is order one (non-centred)."""
    d, m = omega.shape
    intercept = numpyro.sample(f"{name}_intercept", dist.Normal(0.0, mean_scale))
    linear_scale = numpyro.sample(f"{name}_linear_scale", dist.HalfNormal(scale))
    amplitude = numpyro.sample(f"{name}_amplitude", dist.HalfNormal(scale))
    with numpyro.plate(f"{name}_covariate", d):
        beta = numpyro.sample(f"{name}_beta", dist.Normal(0.0, 1.0))
        inverse_lengthscale = numpyro.sample(f"{name}_inverse_lengthscale",
                                             dist.HalfNormal(lengthscale_prior))
    with numpyro.plate(f"{name}_feature", m):
        weights = numpyro.sample(f"{name}_weights", dist.Normal(0.0, 1.0))
    features = jnp.sqrt(2.0 / m) * jnp.cos((Z * inverse_lengthscale) @ omega + phase)
    return intercept + linear_scale * (Z @ beta) + amplitude * (features @ weights)


def _single_index(name, Z, scale, loc, knots, n_frequencies=8):
    """``g(Z @ direction)``: a smooth function of one learned direction of the covariates
    (``loc`` plus an order-one deviation), from sines and cosines of growing frequency
    (damped as 1 / frequency) and softplus hinges at ``knots`` along the direction (which
    keep rising beyond the data, as an exponential does, where the sines turn back)."""
    d = Z.shape[1]
    with numpyro.plate(f"{name}_covariate", d):
        direction = loc + numpyro.sample(f"{name}_direction", dist.Normal(0.0, 1.0))
    amplitude = numpyro.sample(f"{name}_index_amplitude", dist.HalfNormal(scale))
    n_knots = knots.shape[0]
    with numpyro.plate(f"{name}_index_feature", 2 * n_frequencies + n_knots):
        weights = numpyro.sample(f"{name}_index_weights", dist.Normal(0.0, 1.0))
    freq = jnp.arange(1, n_frequencies + 1) / 4.0
    index = (Z @ direction / jnp.sqrt(d))[:, None]
    basis = jnp.concatenate([jnp.cos(index * freq), jnp.sin(index * freq),
                             jax.nn.softplus(index - knots) - jax.nn.softplus(-knots)], axis=1)
    damping = jnp.concatenate([4.0 * jnp.sqrt(n_frequencies) * jnp.concatenate([freq, freq]),
                               jnp.full(n_knots, jnp.sqrt(n_knots))])
    return amplitude * (basis @ (weights / damping))


def treatment_index(treatment, n_features, feature_names=None):
    """Position of the treatment column among ``n_features`` columns.

    Examples
    --------
    >>> from skimpact.effect_model import treatment_index
    >>> treatment_index("T", 3, ["a", "T", "b"]), treatment_index(-1, 3)
    (1, 2)
    """
    if isinstance(treatment, str):
        names = [] if feature_names is None else [str(c) for c in feature_names]
        if treatment not in names:
            where = f"X has columns {names}" if names else \
                "X has no column names (give a DataFrame, or the column's position)"
            raise ValueError(f"effect_model's treatment {treatment!r} is not a column: {where}.")
        return names.index(treatment)
    if isinstance(treatment, (int, np.integer)) and not isinstance(treatment, bool) \
            and -n_features <= treatment < n_features:
        return int(treatment) % n_features
    raise ValueError(
        f"effect_model's treatment must be a column name or a position in 0..{n_features - 1}; "
        f"got {treatment!r}."
    )


def _propensity(C, T, w, binary, penalty):
    """Coefficients and intercept of the propensity score on standardised covariates."""
    from sklearn.linear_model import LogisticRegression, Ridge

    keep = w > 0
    if C.shape[1] == 0:
        return np.zeros(0), 0.0
    if binary and np.unique(T[keep]).size == 2:
        fit = LogisticRegression(C=penalty, max_iter=1000).fit(C[keep], T[keep],
                                                               sample_weight=w[keep])
        return fit.coef_[0], float(fit.intercept_[0])
    if binary:  # one arm only: a constant score
        return np.zeros(C.shape[1]), 0.0
    fit = Ridge(alpha=1.0 / penalty).fit(C[keep], T[keep], sample_weight=w[keep])
    return fit.coef_, float(fit.intercept_)


def _index_start(Z, T, y, w, n_knots=8):
    """Where the single index starts: the weighted least-squares coefficients of ``y`` on
    ``Z`` (with an intercept and ``T``, a small ridge), scaled so that ``Z @ loc /
    sqrt(d)`` has sd 1 over the data, and ``n_knots`` knots spanning that index.

    For an outcome that is a monotone function of one linear score, the least-squares
    coefficients point along the score (Brillinger 1983): the index starts near it."""
    keep = w > 0
    d = Z.shape[1]
    A = np.column_stack([np.ones(keep.sum()), T[keep], Z[keep]])
    Aw = A * w[keep, None]
    ridge = 1e-3 * w[keep].sum() * np.eye(A.shape[1])
    coef = np.linalg.solve(A.T @ Aw + ridge, Aw.T @ y[keep])[2:]
    index = Z[keep] @ coef
    sd = np.sqrt(w[keep] @ (index - w[keep] @ index / w[keep].sum()) ** 2 / w[keep].sum())
    if not sd > 1e-12:  # y does not move with Z: no direction to start from
        return np.zeros(d), np.linspace(-2.0, 2.0, n_knots)
    index = index / sd
    return coef * np.sqrt(d) / sd, np.linspace(index.min(), index.max(), n_knots)


def _loc_scale(X, w):
    """Weighted column means and standard deviations (1 where a column is constant)."""
    loc = (w @ X) / w.sum()
    scale = np.sqrt((w @ (X - loc) ** 2) / w.sum())
    return loc, np.where(scale > 0, scale, 1.0)
