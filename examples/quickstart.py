"""
Quickstart: the effect of a treatment on simulated data
=======================================================

Simulate an outcome with a known treatment effect of 2.0, fit skimpact's default Bayesian
linear model, and estimate the average effect of setting ``treatment`` to 1 against 0 with
its 94% highest-density interval.
"""

import numpy as np
import pandas as pd

from skimpact import ImpactRegressor, summarize_effect

TRUE_EFFECT = 2.0


def simulate(n=1000, seed=0):
    """Outcome = 1 + 2 * treatment + 0.5 * age_z + noise, treatment confounded by age."""
    rng = np.random.default_rng(seed)
    age_z = rng.normal(size=n)
    treatment = rng.binomial(1, 1 / (1 + np.exp(-age_z)))
    y = 1.0 + TRUE_EFFECT * treatment + 0.5 * age_z + rng.normal(0, 1.0, n)
    X = pd.DataFrame({"treatment": treatment, "age_z": age_z}, index=pd.RangeIndex(n, name="person"))
    return X, y


def main():
    X, y = simulate()
    est = ImpactRegressor(inference="svi", num_steps=3000, random_state=0).fit(X, y)
    effect = est.effect(X, {"treatment": 1}, baseline={"treatment": 0}, kind="mean")
    summary = summarize_effect(effect, prob=0.94)
    return summary.loc["ATE"]


if __name__ == "__main__":
    ate = main()
    print(
        f"Average effect of treatment: {ate['mean']:.3f} "
        f"(94% HDI {ate['hdi_lower']:.3f} to {ate['hdi_upper']:.3f}); true effect {TRUE_EFFECT}"
    )
