"""Coverage of the Qini and uplift bands of ``skimpact.uplift`` over simulated datasets.

Each simulation draws n = 300 rows: covariates x1, x2, x3 ~ N(0, 1), a treatment
T ~ Bernoulli(logistic(0.5 x1)), and y = 1 + x1 + 0.5 x2 + T (1 + x1 - 0.5 x3) + N(0, 1), so
each row's true effect is tau_i = 1 + x1_i - 0.5 x3_i. The built-in linear model on the
covariates, T and the products of T with the covariates (a Pipeline: the well-specified
per-arm linear model) is fitted with NUTS, and ``qini_curve`` / ``uplift_curve`` of
``effect(est, X, {"T": 1}, {"T": 0})`` give each fraction's ``PROB`` band. The true curve is
the same sum over the same ranking (rows by posterior mean effect) of the true tau_i.
Reported: the share of (simulation, fraction) pairs whose band covers the true value,
overall and at some fractions, against the nominal ``PROB``. Run from the repository root::

    python benchmarks/bench_qini_coverage.py --simulations 100
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimpact import ImpactRegressor, effect  # noqa: E402
from skimpact.uplift import qini_curve, ranking, uplift_curve  # noqa: E402

N, PROB, POINTS = 300, 0.9, 21


def with_interactions(X):
    """X and the products of the treatment column ``T`` with every other column."""
    out = X.copy()
    for c in X.columns.drop("T"):
        out[f"T_{c}"] = X["T"] * X[c]
    return out


def simulate(rng):
    x = rng.normal(size=(N, 3))
    t = (rng.random(N) < 1 / (1 + np.exp(-0.5 * x[:, 0]))).astype(float)
    tau = 1.0 + x[:, 0] - 0.5 * x[:, 2]
    y = 1.0 + x[:, 0] + 0.5 * x[:, 1] + t * tau + rng.normal(size=N)
    X = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    X.insert(0, "T", t)
    return X, y, tau


def one(seed, settings):
    X, y, tau = simulate(np.random.default_rng(seed))
    est = make_pipeline(FunctionTransformer(with_interactions),
                        ImpactRegressor(**settings, random_state=seed)).fit(X, y)
    draws = effect(est, X, {"T": 1.0}, {"T": 0.0})["predictions"]["y"].values.reshape(-1, N)
    order = ranking(draws)
    k = np.rint(np.linspace(0, 1, POINTS) * N).astype(int)
    cum = np.concatenate([[0.0], np.cumsum(tau[order])])
    out = {}
    for name, fn, truth in (("qini", qini_curve, cum[k] / N),
                            ("uplift", uplift_curve, cum[np.maximum(k, 1)] / np.maximum(k, 1))):
        table = fn(draws, prob=PROB, n_points=POINTS)
        inside = (table["hdi_lower"].to_numpy() <= truth + 1e-12) & \
                 (truth - 1e-12 <= table["hdi_upper"].to_numpy())
        out[name] = inside[1:]  # fraction 0 of the Qini curve is 0 for every draw
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--inference", default="nuts")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    settings = {"inference": args.inference, "num_warmup": 500, "num_samples": 1000}
    start = time.perf_counter()
    covered = {"qini": [], "uplift": []}
    for seed in range(args.simulations):
        for name, inside in one(seed, settings).items():
            covered[name].append(inside)
        if seed % 10 == 9:
            print(f"{seed + 1} simulations, {time.perf_counter() - start:.0f} s: Qini cover "
                  f"{np.mean(covered['qini']):.3f}", flush=True)
    fractions = np.linspace(0, 1, POINTS)[1:]
    pick = [1, 4, 9, 19]  # fractions 0.1, 0.25, 0.5, 1.0
    print(f"| curve | cover, all fractions (nominal {PROB}) | "
          + " | ".join(f"at {fractions[i]:.2f}" for i in pick) + " |")
    print("|---|---|" + "---|" * len(pick))
    for name, rows in covered.items():
        rows = np.array(rows)
        print(f"| {name} | {rows.mean():.3f} | "
              + " | ".join(f"{rows[:, i].mean():.2f}" for i in pick) + " |")
    print(f"{args.simulations} simulations, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
