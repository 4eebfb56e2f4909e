"""
A confounder network: do(z = Z) against do(z = 0)
=================================================

A small causal network with a confounder ``c`` of a mediator ``z`` and the outcome ``y``::

    c ~ Exponential(1)                      observed, passed to the model as ``C``
    X ~ Poisson(1)                          the features, shape (100, 1)
    z ~ LogNormal(beta_z + beta_cz c + beta_xz X, sigma)     a local latent, one per row
    y ~ Bernoulli(logits = beta_y + beta_cy c + beta_zy z)

The model is fitted with SVI (``AutoNormal`` started at feasible values) as an
:class:`~skimpact.ImpactClassifier`, then ``z`` is set by intervention: to the values ``Z``
that generated the data, and to 0. The effect of do(z = Z) against do(z = 0) is estimated
three ways, which give the same tree:

* eagerly, from two :meth:`counterfactual_predict` outputs;
* lazily, from two dicts of :meth:`counterfactual_predict` arguments;
* mixed, one of each.

The tree holds the groups ``posterior`` and ``predictions`` (``in_sample=False``); the
``predictions`` group holds ``y`` and ``z`` with dims ``(chain, draw, data)`` of sizes
``(1, num_samples, 100)``: every posterior draw is kept, ``data`` is the model's data plate.
"""

import functools

import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import init_to_feasible
from numpyro.infer.autoguide import AutoNormal

from skimpact import ImpactClassifier, summarize_effect


def model(X, y=None, C=None):
    """The confounder network: ``C`` is the observed confounder, ``z`` a local latent."""
    beta_z = numpyro.sample("beta_z", dist.Normal(0.0, 1.0))
    beta_cz = numpyro.sample("beta_cz", dist.Normal(0.0, 1.0))
    beta_xz = numpyro.sample("beta_xz", dist.Normal(0.0, 1.0))
    beta_y = numpyro.sample("beta_y", dist.Normal(0.0, 1.0))
    beta_cy = numpyro.sample("beta_cy", dist.Normal(0.0, 1.0))
    beta_zy = numpyro.sample("beta_zy", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", X.shape[0]):
        c = numpyro.sample("c", dist.Exponential(1.0), obs=C)
        z = numpyro.sample(
            "z", dist.LogNormal(beta_z + beta_cz * c + beta_xz * X[:, 0], sigma)
        )
        numpyro.sample("y", dist.Bernoulli(logits=beta_y + beta_cy * c + beta_zy * z), obs=y)


def simulate(n=100, seed=0):
    """Draw ``(X, y, C, Z)`` from the network with known coefficients."""
    rng = np.random.default_rng(seed)
    C = rng.exponential(1.0, size=n).astype(np.float32)
    X = rng.poisson(1.0, size=(n, 1)).astype(np.float32)
    Z = np.exp(rng.normal(0.1 + 0.4 * C + 0.3 * X[:, 0], 0.3)).astype(np.float32)
    logits = -1.0 + 0.5 * C + 0.8 * Z
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-logits)))
    return X, y, C, Z


def fit(X, y, C, num_steps=6000, num_samples=200, random_state=0):
    """Fit the network with SVI as an :class:`~skimpact.ImpactClassifier`."""
    est = ImpactClassifier(
        model,
        inference="svi",
        guide=functools.partial(AutoNormal, init_loc_fn=init_to_feasible),
        learning_rate=1e-3,
        num_steps=num_steps,
        num_samples=num_samples,
        random_state=random_state,
    )
    return est.fit(X, y, C=C)


def main(num_steps=6000, num_samples=200):
    """Fit, estimate the effect of do(z = Z) against do(z = 0) three ways, summarise.

    Returns
    -------
    dict
        ``eager``, ``lazy`` and ``mixed`` effect trees, ``summary`` (the eager tree's
        :func:`~skimpact.summarize_effect`), ``ate`` (its posterior mean) and the fitted
        ``estimator``.
    """
    X, y, C, Z = simulate()
    est = fit(X, y, C, num_steps=num_steps, num_samples=num_samples)
    base_args = {"X": X, "intervention": {"z": 0.0}, "C": C}
    inter_args = {"X": X, "intervention": {"z": Z}, "C": C}
    out_base = est.counterfactual_predict(**base_args)
    out_inter = est.counterfactual_predict(**inter_args)
    eager = est.estimate_effect(output_baseline=out_base, output_intervention=out_inter)
    lazy = est.estimate_effect(args_baseline=base_args, args_intervention=inter_args)
    mixed = est.estimate_effect(output_baseline=out_base, args_intervention=inter_args)
    summary = summarize_effect(eager, prob=0.94)
    return {
        "eager": eager,
        "lazy": lazy,
        "mixed": mixed,
        "summary": summary,
        "ate": float(summary.loc["ATE", "mean"]),
        "estimator": est,
    }


if __name__ == "__main__":
    result = main()
    tree = result["eager"]
    print("groups:", sorted(tree.children))
    print("predictions dims:", dict(tree["predictions"].sizes))
    print(result["summary"].round(3))
