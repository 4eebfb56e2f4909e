"""
Mediation: how much of an effect passes through a mediator
==========================================================

A randomised treatment ``t`` acts on the outcome ``y`` directly and through a measured
mediator ``m`` (say, an offer raises engagement, and engagement raises spend)::

    m = 1.0 t + w + Normal(0, 0.5)              w a covariate of the mediator
    y = 2.0 m + 0.5 t + Normal(0, 0.3)

so the natural direct effect of ``t`` is 0.5, the natural indirect effect 1.0 x 2.0 = 2.0
and the total effect 2.5. The model writes the mediator as an observed site of a model
input ``M``: the fit learns how ``t`` moves it, and under an intervention on ``t`` it
moves from each unit's measured value (its noise is known from the data).

:func:`skimpact.mediation` predicts every posterior draw in three worlds with the same
random numbers (``Y(0, M(0))``, ``Y(1, M(1))`` and the nested ``Y(1, M(0))``, the treatment
on with the mediator held where the control leaves it) and returns the total, direct and
indirect effects, which add up draw by draw. The effects are compared with the truth and
with the sample's least-squares estimates.
"""

import numpy as np
import numpyro
import pandas as pd
import numpyro.distributions as dist

from skimpact import ImpactRegressor, effect, mediation, summarize_effect


def simulate(n=600, seed=0):
    """Features ``X`` (treatment, covariate), outcome ``y`` and the measured mediator."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n).astype(float)
    w = rng.normal(size=n)
    m = 1.0 * t + w + 0.5 * rng.normal(size=n)
    y = 2.0 * m + 0.5 * t + 0.3 * rng.normal(size=n)
    return np.column_stack([t, w]), y, m


def model(X, y=None, M=None):
    """The treatment (column 0) moves the mediator ``m`` (observed as ``M``) and ``y``."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.0))
    gamma = numpyro.sample("gamma", dist.Normal(0.0, 2.0))
    s_m = numpyro.sample("s_m", dist.HalfNormal(1.0))
    s_y = numpyro.sample("s_y", dist.HalfNormal(1.0))
    with numpyro.plate("obs", X.shape[0]):
        m = numpyro.sample("m", dist.Normal(alpha * X[:, 0] + X[:, 1], s_m), obs=M)
        numpyro.sample("y", dist.Normal(beta * m + gamma * X[:, 0], s_y), obs=y)


def main(n=600, num_warmup=300, num_samples=300, seed=0):
    """Fit with NUTS and split the effect of the treatment.

    Returns
    -------
    pandas.DataFrame
        One row per effect (total, direct, indirect): the posterior ``mean``, its 94%
        HDI, the ``truth`` simulated and the ``least_squares`` estimate of this sample.
    """
    X, y, M = simulate(n, seed)
    est = ImpactRegressor(model, inference="nuts", num_warmup=num_warmup,
                          num_samples=num_samples, random_state=seed).fit(X, y, M=M)
    tree = mediation(est, X, {0: 1.0}, {0: 0.0}, mediators="m", M=M)
    rows = {v: summarize_effect(tree, var=v).iloc[0] for v in ("total", "direct", "indirect")}
    # the sample's own answer: least squares of the two equations
    t, w = X[:, 0], X[:, 1]
    alpha = np.linalg.lstsq(t[:, None], M - w, rcond=None)[0][0]
    beta, gamma = np.linalg.lstsq(np.column_stack([M, t]), y, rcond=None)[0]
    table = (
        pd.DataFrame(rows).T[["mean", "hdi_lower", "hdi_upper"]]
        .assign(truth=[2.5, 0.5, 2.0],
                least_squares=[gamma + alpha * beta, gamma, alpha * beta])
    )
    # the total equals the plain effect of the treatment, which moves the mediator too
    total = summarize_effect(effect(est, X, {0: 1.0}, {0: 0.0}, M=M)).iloc[0]["mean"]
    assert np.isclose(total, table.loc["total", "mean"], rtol=1e-4)
    return table


if __name__ == "__main__":
    print(main().round(3).to_string())
