"""``effect(kind="predictive")`` against ``kind="mean"`` on a hierarchical model.

Fits a model with group intercepts (N rows, 100 groups) once, then computes the average
effect of the treatment column (set to 1 against 0) both ways, interleaved, and prints per
kind the median seconds of the timed calls (after one warm-up call each), the ATE, its
posterior sd and its 94% HDI width. Run from the repository root::

    python benchmarks/bench_effect_kind.py 5000 3
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimpact import ImpactRegressor, Model, effect, summarize_effect  # noqa: E402


def group_intercepts(n_groups=100):
    def model(X, y=None, g=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfNormal(2.0))
        with numpyro.plate("groups", n_groups):
            a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 5.0).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(mu + tau * a_raw[g] + X @ b, sigma), obs=y)

    return model


def main(n=5000, repeats=3):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 100, n)
    t = rng.binomial(1, 0.5, n).astype(float)
    x = rng.normal(size=n)
    y = rng.normal(0, 0.7, 100)[g] + 0.8 * t + 0.5 * x + rng.normal(size=n)
    X = pd.DataFrame({"t": t, "x": x, "g": g})
    est = ImpactRegressor(Model(group_intercepts), inputs=["g"], random_state=0).fit(X, y)
    print(f"fit: {est.diagnostics_['inference_choice']['reason']}")
    times = {"predictive": [], "mean": []}
    results = {}
    for kind in times:  # warm-up: compilation
        effect(est, X, {"t": 1.0}, {"t": 0.0}, kind=kind)
    for _ in range(repeats):
        for kind in times:
            start = time.perf_counter()
            tree = effect(est, X, {"t": 1.0}, {"t": 0.0}, kind=kind)
            times[kind].append(time.perf_counter() - start)
            results[kind] = summarize_effect(tree).loc["ATE"]
    rows = []
    for kind, r in results.items():
        rows.append({"kind": kind, "median_s": statistics.median(times[kind]),
                     "ATE": r["mean"], "sd": r["sd"], "hdi_width": r["hdi_upper"] - r["hdi_lower"]})
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
