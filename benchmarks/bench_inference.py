"""Trade-offs of the inference settings on two small designs (the figures of the user guide's
"Choosing the inference" page).

For each design and setting: the wall time of ``fit`` and ``effect`` (compilation included,
the first fit of that setting in this process), and the average effect of the design's intervention with
``kind="mean"`` (posterior mean and sd) against the true value.

Designs (1,000 rows each):

* ``interaction``: linear, a randomised treatment whose effect grows with a covariate that
  is correlated with two others (the treatment's main effect and its interaction are
  strongly correlated in the posterior);
* ``stores``: Poisson counts with 20 non-centred store intercepts (a hierarchical model).

Run from the repository root: ``python benchmarks/bench_inference.py`` (about a minute of
CPU).
"""

import time
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from skimpact import ImpactRegressor, Model, summarize_effect

SETTINGS = {
    "svi AutoNormal, 3000 steps": dict(inference="svi", num_steps=3000, num_samples=500),
    "svi AutoMultivariateNormal, 3000 steps": dict(
        inference="svi", guide="AutoMultivariateNormal", num_steps=3000, num_samples=500),
    "nuts 1 chain, 500 + 500": dict(inference="nuts", num_warmup=500, num_samples=500),
    "map, 3000 steps": dict(inference="map", num_steps=3000, num_samples=500),
}


def interaction_design(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.0]])
    Z = rng.multivariate_normal(np.zeros(3), cov, n) + 2.0
    t = rng.binomial(1, 0.5, n)
    y = 1.0 + Z @ [0.5, -0.3, 0.2] + t * (1.0 + 0.8 * Z[:, 0]) + rng.normal(0, 1.0, n)
    X = np.column_stack([t, Z, t * Z[:, 0]])

    treated, untreated = {0: 1.0, 4: Z[:, 0]}, {0: 0.0, 4: 0.0}  # the interaction follows t
    true_ate = float(np.mean(1.0 + 0.8 * Z[:, 0]))
    return None, X, y, {}, treated, untreated, true_ate


def store_model(n_stores=20):
    def model(X, y=None, shop=None):
        alpha = numpyro.sample("alpha", dist.Normal(2.0, 2.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        tau = numpyro.sample("tau", dist.HalfNormal(0.5))
        with numpyro.plate("stores", n_stores):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Poisson(jnp.exp(alpha + X @ beta + tau * z[shop])), obs=y)

    return model


def stores_design(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    store = rng.integers(0, 20, n)
    u = rng.normal(0.0, 0.3, 20)
    price = rng.normal(size=n)
    promo = rng.binomial(1, 0.3, n)
    X = np.column_stack([price, promo]).astype(float)
    rate = np.exp(2.5 - 0.2 * price + 0.3 * promo + u[store])
    y = rng.poisson(rate)
    true_ate = float(np.mean(np.exp(2.5 - 0.2 * price + 0.3 + u[store])
                             - np.exp(2.5 - 0.2 * price + u[store])))
    return Model(store_model), X, y, {"shop": store}, {1: 1.0}, {1: 0.0}, true_ate


def main():
    print(f"{'design':12} {'setting':40} {'time s':>6} {'ATE':>7} {'sd':>6} {'true':>6}")
    for name, design in (("interaction", interaction_design), ("stores", stores_design)):
        model, X, y, inputs, intervention, baseline, truth = design()
        for label, settings in SETTINGS.items():
            est = ImpactRegressor(model, random_state=0, **settings)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y, **inputs)
                eff = est.effect(X, intervention, baseline, kind="mean", **inputs)
                ate = summarize_effect(eff).loc["ATE"]
            seconds = time.perf_counter() - start
            print(f"{name:12} {label:40} {seconds:6.1f} {ate['mean']:7.3f} {ate['sd']:6.3f} "
                  f"{truth:6.3f}")


if __name__ == "__main__":
    main()
