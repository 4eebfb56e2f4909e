"""Effects: ``effect`` against one prediction and against two hand-written NumPyro
predictions, 1000 draws, in the same process, runs interleaved.

Usage: ``python benchmarks/bench_effect.py N [repeats]``. The intervention raises column 0
by one; the baseline is the factual scenario. Modes:

* ``one``: one ``counterfactual_predict`` (sampled outcomes, in memory): the unit;
* ``effect``: ``effect(kind="predictive")``, both scenarios in one pass;
* ``effect_mean``: ``effect(kind="mean")``;
* ``hand2``: two well-batched plain-NumPyro predictions with the same key, subtracted.
"""

import gc
import statistics
import sys
import time

import jax

from _common import RssPeak, compile_count, data, linear, report, well_batched

from skimpact import ImpactRegressor, Model, counterfactual_predict, effect


def main(n, repeats=3):
    X_fit, y_fit = data(1000)
    est = ImpactRegressor(Model(linear), num_steps=500, num_samples=1000, random_state=0)
    est.fit(X_fit, y_fit)
    X, _ = data(n, seed=1)
    X_i = X.copy()
    X_i[:, 0] += 1.0
    inter = {0: X_i[:, 0]}
    draws = {k: v.values.reshape((-1,) + v.shape[2:])
             for k, v in est.posterior_["posterior"].to_dataset().data_vars.items()}
    batched = well_batched(linear(), draws)

    def hand2():
        key = jax.random.PRNGKey(0)
        return (batched(key, X_i) - batched(key, X)).shape

    runs = {
        "one": lambda: counterfactual_predict(est, X, inter)["predictions"]["y"].shape,
        # kind="predictive" named: a regressor's default is "mean"
        "effect": lambda: effect(est, X, inter, kind="predictive")["predictions"]["y"].shape,
        "effect_mean": lambda: effect(est, X, inter, kind="mean")["predictions"]["y"].shape,
        "hand2": hand2,
    }
    stats = {m: {"times": [], "peak": 0.0} for m in runs}
    for m, fn in runs.items():
        c0, t0 = compile_count(), time.perf_counter()
        fn()
        stats[m]["first"], stats[m]["compiles"] = time.perf_counter() - t0, compile_count() - c0
    for _ in range(repeats):
        for m, fn in runs.items():
            gc.collect()
            with RssPeak() as rss:
                t0 = time.perf_counter()
                fn()
                stats[m]["times"].append(time.perf_counter() - t0)
            stats[m]["peak"] = max(stats[m]["peak"], rss.peak_mb)
    one = statistics.median(stats["one"]["times"])
    hand = statistics.median(stats["hand2"]["times"])
    report([
        {"mode": m, "rows": n, "warmup_s": s["first"], "median_s": statistics.median(s["times"]),
         "ratio_to_one": statistics.median(s["times"]) / one,
         "ratio_to_hand2": statistics.median(s["times"]) / hand,
         "warmup_compiles": s["compiles"], "peak_rss_MB": s["peak"]}
        for m, s in stats.items()
    ])


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
