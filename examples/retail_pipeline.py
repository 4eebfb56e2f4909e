"""
A day with skimpact: a hierarchical retail model from search to saved model
===========================================================================

Units sold per store and week depend on the price, a promotion and the region, and every
store has its own baseline (a store intercept). This example goes through the whole day
of an analysis:

1. a model factory with store intercepts and a tunable prior scale;
2. a :class:`~sklearn.pipeline.Pipeline` (a ColumnTransformer, then the estimator) tuned
   with :class:`~sklearn.model_selection.GridSearchCV` and the CRPS scorer;
3. predictive intervals, a posterior summary and effects through the Pipeline, with raw
   column names (``"price"``, not its standardised value);
4. plots of the effects: a forest of average effects, effects against a numeric feature
   (binned averages) and per category;
5. saving the fitted Pipeline and loading it back.

The data are simulated (1,000 rows, 20 stores) and the inference uses few steps so that the
example runs in seconds; see :doc:`/user_guide/inference` for settings of real analyses.
"""

# %%
# The data
# --------
# Weekly units sold are Poisson with a log-linear mean: each unit of price lowers sales by
# about 8%, a promotion raises them by 35%, regions and stores shift the baseline.
import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from jax import numpy as jnp
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skimpact
from skimpact import ImpactRegressor, Model, summarize_effect
from skimpact.metrics import neg_crps_scorer
from skimpact.plotting import plot_effect, plot_effect_by_feature

N_STORES = 20
rng = np.random.default_rng(0)
store_region = rng.choice(["north", "south", "west"], N_STORES)
store_effect = rng.normal(0.0, 0.3, N_STORES)
n = 1000
store = rng.integers(0, N_STORES, n)
X = pd.DataFrame({
    "price": rng.uniform(5.0, 15.0, n),
    "promo": rng.binomial(1, 0.3, n),
    "region": store_region[store],
    "store": store,
})
region_effect = X["region"].map({"north": 0.0, "south": 0.2, "west": -0.2}).to_numpy()


def true_mean(X):
    """Expected units sold per row under the simulation."""
    return np.exp(3.0 - 0.08 * (X["price"] - 10.0) + 0.3 * X["promo"] + region_effect
                  + store_effect[X["store"]])


y = rng.poisson(true_mean(X))
X.head()

# %%
# The model factory
# -----------------
# A factory takes the hyperparameters and returns the NumPyro model. ``store`` is a model
# *input*: the estimator's ``inputs=["store"]`` takes it from the DataFrame column of the
# same name instead of treating it as a feature. The number of stores is a hyperparameter
# because array shapes inside a model must be known before the data arrive. Keep factories
# in an importable module of your project (not in a script's ``__main__``) so that a saved
# model loads in another process (:doc:`/user_guide/model_factories`).


def retail_model(n_stores=N_STORES, prior_scale=1.0):
    """Poisson regression with non-centred store intercepts."""

    def model(X, y=None, store=None):
        alpha = numpyro.sample("alpha", dist.Normal(3.0, 2.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale).expand([X.shape[1]])
                              .to_event(1))
        tau = numpyro.sample("tau", dist.HalfNormal(0.5))
        with numpyro.plate("stores", n_stores):
            z = numpyro.sample("z_store", dist.Normal(0.0, 1.0))
        with numpyro.plate("obs", X.shape[0]):
            rate = jnp.exp(alpha + X @ beta + tau * z[store])
            numpyro.sample("y", dist.Poisson(rate), obs=y)

    return model


# %%
# A Pipeline tuned by GridSearchCV with the CRPS scorer
# -----------------------------------------------------
# The ColumnTransformer scales price, one-hot encodes the region and passes ``promo`` and
# ``store`` through under their own names (pandas output), so ``inputs=["store"]`` finds
# the column. The search tunes the prior scale of the coefficients, scored by the
# continuous ranked probability score of the posterior predictive draws.
pipeline = make_pipeline(
    ColumnTransformer(
        [("price", StandardScaler(), ["price"]),
         ("region", OneHotEncoder(drop="first", sparse_output=False), ["region"])],
        remainder="passthrough", verbose_feature_names_out=False,
    ).set_output(transform="pandas"),
    ImpactRegressor(Model(retail_model), inputs=["store"], inference="svi", num_steps=600,
                    learning_rate=0.05, num_samples=200, random_state=0),
)
search = GridSearchCV(
    pipeline, {"impactregressor__model__prior_scale": [0.02, 1.0]},
    scoring=neg_crps_scorer, cv=KFold(2, shuffle=True, random_state=0),
).fit(X, y)
best = search.best_estimator_
print("best prior scale:", search.best_params_["impactregressor__model__prior_scale"])
results = search.cv_results_
print(pd.DataFrame({"prior scale": results["param_impactregressor__model__prior_scale"],
                    "mean CRPS": -results["mean_test_score"]}).round(3))

# %%
# Predictions and the posterior through the Pipeline
# --------------------------------------------------
# A Pipeline has only scikit-learn's methods, so skimpact's other methods are functions
# that take the Pipeline and its raw ``X``.
print(skimpact.predict_interval(best, X.head(3), coverage=0.9))
print(skimpact.summary(best, var_names=["beta", "tau"]).round(3).to_string())

# %%
# Effects
# -------
# The effect of raising every price by 1 (a raw column: the shift happens before the
# scaler), and of running the promotion everywhere. ``kind="mean"`` contrasts the expected
# units sold per posterior draw.
price_up = skimpact.effect(best, X, {"price": lambda p: p + 1.0}, kind="mean")
promo_on = skimpact.effect(best, X, {"promo": 1}, baseline={"promo": 0}, kind="mean")
print(summarize_effect(price_up).round(2))
print("true average effect of price + 1:",
      round(float(np.mean(true_mean(X) * (np.exp(-0.08) - 1.0))), 2))
print(summarize_effect(promo_on, by=X["region"]).round(2))

# %%
# Plots of the effects
# --------------------
# The forest compares the average effects; the effect of a price rise shrinks in units as
# the price (and so the sales level) rises, which the binned averages show; the promotion
# adds most where sales are highest.
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
plot_effect({"price + 1": price_up, "promotion": promo_on}, ax=axes[0])
plot_effect_by_feature(price_up, X["price"], bins=8, ax=axes[1])
plot_effect_by_feature(promo_on, X["region"], ax=axes[2])
axes[1].set_title("price + 1, by price")
axes[2].set_title("promotion, by region")

# %%
# Save and load
# -------------
# A fitted Pipeline pickles with joblib; the model factory is saved by reference (its
# module and name), so load it where that module can be imported.
path = Path(tempfile.mkdtemp()) / "retail.joblib"
joblib.dump(best, path)
loaded = joblib.load(path)
print("same predictions after loading:", np.allclose(loaded.predict(X), best.predict(X)))
