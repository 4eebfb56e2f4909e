"""Posterior predictive, 1000 draws: skimpact against plain NumPyro, in the same process,
runs interleaved.

Usage: ``python benchmarks/bench_predictive.py N [repeats] [modes]`` with modes a comma
list of

* ``batched``: plain NumPyro at its best (:func:`_common.well_batched`: jitted
  ``Predictive`` applied to ~4 MB row chunks, the next chunk dispatched while the previous
  one is copied out), the baseline of the ratios;
* ``numpyro``: NumPyro's naive single-vmap ``Predictive`` (jitted), every row at once;
* ``memory`` / ``zarr``: ``sample_posterior_predictive`` in memory / streamed to Zarr;
* ``cf``: ``counterfactual_predict`` with a site intervention, in memory;

default ``batched,numpyro,memory,zarr,cf``. Peak RSS is sampled per mode.
"""

import gc
import shutil
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from numpyro.infer import Predictive

from _common import RssPeak, compile_count, data, linear, report, well_batched

from skimpact import ImpactRegressor, Model, counterfactual_predict

ALL = ("batched", "numpyro", "memory", "zarr", "cf")


def main(n, repeats=3, modes=ALL):
    X_fit, y_fit = data(1000)
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=500, num_samples=1000, random_state=0)
    est.fit(X_fit, y_fit)
    X, _ = data(n, seed=1)
    draws = {k: v.values.reshape((-1,) + v.shape[2:])
             for k, v in est.posterior_["posterior"].to_dataset().data_vars.items()}
    tmp = tempfile.mkdtemp(dir=".")
    counter = iter(range(1000))
    naive = jax.jit(
        lambda key, X: Predictive(
            linear(), posterior_samples=draws, return_sites=["y"], parallel=True
        )(key, X)["y"]
    )
    batched = well_batched(linear(), draws)
    b_zero = np.zeros(5, np.float32)

    def zarr_run():
        path = f"{tmp}/out{next(counter)}.zarr"
        shape = est.sample_posterior_predictive(X, store=path)["predictions"]["y"].shape
        shutil.rmtree(path)
        return shape

    runs = {
        "batched": lambda: batched(jax.random.PRNGKey(0), X).shape,
        "numpyro": lambda: np.asarray(naive(jax.random.PRNGKey(0), X)).shape,
        "memory": lambda: est.sample_posterior_predictive(X)["predictions"]["y"].shape,
        "zarr": zarr_run,
        "cf": lambda: counterfactual_predict(est, X, {"b": b_zero})["predictions"]["y"].shape,
    }
    stats = {m: {"times": [], "peak": 0.0} for m in modes}
    for m in modes:  # warm-up (compilation) timed separately
        c0, t0 = compile_count(), time.perf_counter()
        runs[m]()
        stats[m]["first"] = time.perf_counter() - t0
        stats[m]["compiles"] = compile_count() - c0
        gc.collect()
    for _ in range(repeats):
        for m in modes:
            gc.collect()
            with RssPeak() as rss:
                t0 = time.perf_counter()
                runs[m]()
                stats[m]["times"].append(time.perf_counter() - t0)
            stats[m]["peak"] = max(stats[m]["peak"], rss.peak_mb)
    base = statistics.median(stats["batched"]["times"]) if "batched" in modes else None
    rows = []
    for m in modes:
        med = statistics.median(stats[m]["times"])
        rows.append({
            "mode": m, "rows": n, "warmup_s": stats[m]["first"], "median_s": med,
            "s_per_M_rows": med / n * 1e6,
            "ratio_to_batched": med / base if base else float("nan"),
            "warmup_compiles": stats[m]["compiles"], "peak_rss_MB": stats[m]["peak"],
        })
    report(rows)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ALL,
    )
