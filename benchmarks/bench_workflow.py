"""A whole retail workflow, end to end: GridSearchCV, refit, effects and intervals.

The workflow of issue "defaults that measure": 5,000 weekly rows of units sold (negative
binomial, 20 non-centred store intercepts), a Pipeline with a ColumnTransformer, a grid of
4 prior scales x 3 folds scored by CRPS plus the refit, then the average effect of a price
rise and 90% predictive intervals. Each arm runs the same workflow with one estimator
setting and reports the wall time, the method each fit ran and whether it converged
(ConvergenceWarnings counted):

* ``auto+svi-settings``: ``inference="auto"`` with the user's ``num_steps=1500,
  learning_rate=0.02`` (SVI's settings: they now choose SVI);
* ``auto``: ``inference="auto"`` and nothing else (the rule guesses, NUTS measures itself);
* ``svi`` and ``nuts`` forced.

Usage::

    python benchmarks/bench_workflow.py [arm,arm,...]
"""

import sys
import time
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from jax import numpy as jnp
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skimpact
from skimpact import ImpactRegressor, Model, summarize_effect
from skimpact.metrics import neg_crps_scorer

N_STORES = 20


def simulate(n=5000, seed=0):
    """Rows of price, promotion, region and store, and units sold (negative binomial)."""
    rng = np.random.default_rng(seed)
    region_of = rng.choice(["north", "south", "west"], N_STORES)
    store_effect = rng.normal(0.0, 0.3, N_STORES)
    store = rng.integers(0, N_STORES, n)
    X = pd.DataFrame({"price": rng.uniform(5.0, 15.0, n), "promo": rng.binomial(1, 0.3, n),
                      "region": region_of[store], "store": store})
    region = X["region"].map({"north": 0.0, "south": 0.2, "west": -0.2}).to_numpy()
    mean = np.exp(3.0 - 0.08 * (X["price"] - 10.0) + 0.3 * X["promo"] + region
                  + store_effect[store])
    y = rng.negative_binomial(5, 5 / (5 + mean))
    return X, y


def retail_model(n_stores=N_STORES, prior_scale=1.0):
    """Negative binomial regression with non-centred store intercepts."""

    def model(X, y=None, store=None):
        alpha = numpyro.sample("alpha", dist.Normal(3.0, 2.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale).expand([X.shape[1]])
                              .to_event(1))
        tau = numpyro.sample("tau", dist.HalfNormal(0.5))
        phi = numpyro.sample("phi", dist.HalfNormal(10.0))
        with numpyro.plate("stores", n_stores):
            z = numpyro.sample("z_store", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs", X.shape[0]):
            mean = jnp.exp(alpha + X @ beta + tau * z[store])
            numpyro.sample("y", dist.NegativeBinomial2(mean, phi), obs=y)

    return model


ARMS = {
    "auto+svi-settings": {"num_steps": 1500, "learning_rate": 0.02},
    "auto": {},
    "svi": {"inference": "svi", "num_steps": 1500, "learning_rate": 0.02},
    "nuts": {"inference": "nuts"},
}


def retail_pipeline(**settings):
    """The Pipeline of the workflow: scaled price and one-hot region before the estimator,
    which takes ``settings``."""
    return make_pipeline(
        ColumnTransformer(
            [("price", StandardScaler(), ["price"]),
             ("region", OneHotEncoder(drop="first", sparse_output=False), ["region"])],
            remainder="passthrough", verbose_feature_names_out=False,
        ).set_output(transform="pandas"),
        ImpactRegressor(Model(retail_model), inputs=["store"], random_state=0, **settings),
    )


def workflow(settings, X, y):
    """The whole workflow with one estimator setting: ``(seconds, methods, warnings)``."""
    pipeline = retail_pipeline(**settings)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search = GridSearchCV(
            pipeline, {"impactregressor__model__prior_scale": [0.05, 0.2, 1.0, 5.0]},
            scoring=neg_crps_scorer, cv=KFold(3, shuffle=True, random_state=0),
        ).fit(X, y)
        best = search.best_estimator_
        effect = skimpact.effect(best, X, {"price": lambda p: p * 1.1})
        summarize_effect(effect)
        skimpact.predict_interval(best, X, coverage=0.9)
    seconds = time.perf_counter() - start
    final = best[-1]
    not_converged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return seconds, final.inference_, final.diagnostics_["converged"], not_converged


def main(arms):
    X, y = simulate()
    print(f"{'arm':<20} {'seconds':>8}  {'refit ran':<9} {'refit converged':<16} "
          "ConvergenceWarnings (13 fits)")
    for arm in arms:
        seconds, method, converged, n_warnings = workflow(ARMS[arm], X, y)
        print(f"{arm:<20} {seconds:8.1f}  {method:<9} {str(converged):<16} {n_warnings}")


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else list(ARMS))
