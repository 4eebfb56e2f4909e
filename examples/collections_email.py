"""
A randomised e-mail campaign: the average effect of sending an e-mail
=====================================================================

The collections data (5000 customers; "Causal Inference for the Brave and True", ch. 7)
come from an experiment: ``email`` was assigned at random, ``payments`` is the amount paid.
Adjusting for ``credit_limit`` and ``risk_score`` makes the estimate precise; the published
OLS coefficient of ``email`` is 4.43 (95% CI 0.26 to 8.61).

Here skimpact's default Bayesian linear regression is fitted with NUTS, and the average
treatment effect is the contrast of the conditional mean of ``payments`` under do(email = 1)
against do(email = 0), per posterior draw, averaged over the customers. Run as a script (and
in this gallery) it uses short chains; the test suite checks ``main()``'s longer chains
against the published estimate.
"""

from pathlib import Path

import pandas as pd

from skimpact import ImpactRegressor, summarize_effect

# The docs' gallery runs the example from this folder, without __file__.
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
DATA = HERE.parent.parent / "shared" / "data"
PUBLISHED = {"ate": 4.4304, "ci_lower": 0.255, "ci_upper": 8.606}


def load(data_dir=DATA):
    """Features ``email``, ``credit_limit``, ``risk_score`` and the outcome ``payments``."""
    df = pd.read_csv(Path(data_dir) / "collections_email.csv")
    X = df[["email", "credit_limit", "risk_score"]]
    return X, df["payments"].to_numpy()


def main(num_warmup=300, num_samples=500, data_dir=DATA):
    """Fit with NUTS and summarise the ATE of do(email=1) against do(email=0).

    Returns
    -------
    dict
        ``ate`` (posterior mean), ``hdi_lower`` and ``hdi_upper`` (94% HDI),
        ``prob_positive``, ``num_divergences`` and the ``published`` reference.
    """
    X, y = load(data_dir)
    est = ImpactRegressor(
        inference="nuts", num_warmup=num_warmup, num_samples=num_samples, num_chains=2,
        random_state=0,
    ).fit(X, y)
    effect = est.effect(X, {"email": 1}, baseline={"email": 0}, kind="mean")
    row = summarize_effect(effect, prob=0.94).loc["ATE"]
    return {
        "ate": float(row["mean"]),
        "hdi_lower": float(row["hdi_lower"]),
        "hdi_upper": float(row["hdi_upper"]),
        "prob_positive": float(row["prob_positive"]),
        "num_divergences": int(est.diagnostics_["num_divergences"]),
        "published": PUBLISHED,
    }


if __name__ == "__main__":
    r = main(num_warmup=200, num_samples=200)  # short chains keep the docs build fast
    print(
        f"ATE of e-mail on payments: {r['ate']:.2f} (94% HDI {r['hdi_lower']:.2f} to "
        f"{r['hdi_upper']:.2f}, P(effect > 0) = {r['prob_positive']:.3f}); published OLS "
        f"{PUBLISHED['ate']:.2f} (95% CI {PUBLISHED['ci_lower']:.2f} to {PUBLISHED['ci_upper']:.2f})"
    )
