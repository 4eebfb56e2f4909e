"""
Diagnostic plots: loss, traces, predictive checks and the model graph
=====================================================================

One model fitted twice, with SVI and with NUTS, and the plots that tell whether to trust
each fit: :func:`~skimpact.plotting.plot_loss` (the SVI loss per step),
:func:`~skimpact.plotting.plot_trace` (NUTS chains), :func:`~skimpact.plotting.plot_ppc`
(simulated outcomes against the observed ones) and
:func:`~skimpact.plotting.render_model` (the model's graph).
"""

# %%
# Data and two fits
# -----------------
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist

from skimpact import ImpactRegressor, Model
from skimpact.plotting import plot_loss, plot_ppc, plot_trace, render_model

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 2))
y = 1.0 + X @ [1.5, -0.5] + rng.standard_t(4, 200)  # heavy-tailed noise


def linear(prior_scale=1.0):
    """A linear model with Normal noise (the data's noise is heavier-tailed)."""

    def model(X, y=None):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale).expand([X.shape[1]])
                              .to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(alpha + X @ beta, sigma), obs=y)

    return model


svi = ImpactRegressor(Model(linear), inference="svi", num_steps=1000, learning_rate=0.03,
                      num_samples=200, random_state=0).fit(X, y)
nuts = ImpactRegressor(Model(linear), inference="nuts", num_warmup=300, num_samples=200,
                       num_chains=2, random_state=0).fit(X, y)
print("SVI converged:", svi.diagnostics_["converged"])
print("NUTS divergences:", nuts.diagnostics_["num_divergences"])

# %%
# The SVI loss
# ------------
# The loss (negative ELBO) should fall and then stay flat; its moving average makes the
# trend visible through the noise of the stochastic gradients.
plot_loss(svi)

# %%
# NUTS traces
# -----------
# Per-chain densities (left) and draws (right): chains that agree and traces without
# trends or stuck stretches.
axes = plot_trace(nuts, ["alpha", "beta", "sigma"])

# %%
# Posterior predictive check
# --------------------------
# Outcomes simulated from the posterior (thin lines) against the observed outcome: the
# observed distribution is more peaked with heavier tails than the Normal noise allows, a
# hint to try a Student-t likelihood.
ppc = nuts.sample_posterior_predictive(X, in_sample=True)
fig, ax = plt.subplots()
plot_ppc(ppc, y, num_draws=40, ax=ax)

# %%
# The model's graph
# -----------------
# :func:`~skimpact.plotting.render_model` returns a :class:`graphviz.Digraph`; in a
# notebook it displays as an image, and ``graph.render("model", format="png")`` writes
# one (both need the Graphviz programs). Its DOT source:
graph = render_model(nuts, X[:5], y[:5], render_distributions=True)
print(graph.source)
