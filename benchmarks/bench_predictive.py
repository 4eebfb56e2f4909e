"""Posterior predictive, 1000 draws: skimpact against NumPyro's vmapped Predictive (jitted),
in the same process, runs interleaved.

Usage: ``python benchmarks/bench_predictive.py N [repeats] [modes]`` with modes a comma
list of ``numpyro``, ``memory``, ``zarr`` (default all). Peak RSS is sampled per mode.
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

from _common import RssPeak, compile_count, data, linear, report

from skimpact import ImpactRegressor, Model


def main(n, repeats=3, modes=("numpyro", "memory", "zarr")):
    X_fit, y_fit = data(1000)
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=500, num_samples=1000, random_state=0)
    est.fit(X_fit, y_fit)
    X, _ = data(n, seed=1)
    draws = est._draws()
    tmp = tempfile.mkdtemp()
    counter = iter(range(1000))
    pred = jax.jit(
        lambda key, X: Predictive(
            linear(), posterior_samples=draws, return_sites=["y"], parallel=True
        )(key, X)["y"]
    )

    def numpyro_run():
        return np.asarray(pred(jax.random.PRNGKey(0), X)).shape

    def memory_run():
        return est.sample_posterior_predictive(X)["predictions"]["y"].shape

    def zarr_run():
        path = f"{tmp}/out{next(counter)}.zarr"
        shape = est.sample_posterior_predictive(X, store=path)["predictions"]["y"].shape
        shutil.rmtree(path)
        return shape

    runs = {"numpyro": numpyro_run, "memory": memory_run, "zarr": zarr_run}
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
    base = statistics.median(stats["numpyro"]["times"]) if "numpyro" in modes else None
    rows = []
    for m in modes:
        med = statistics.median(stats[m]["times"])
        rows.append({
            "mode": m, "rows": n, "warmup_s": stats[m]["first"], "median_s": med,
            "ratio": med / base if base else float("nan"),
            "warmup_compiles": stats[m]["compiles"], "peak_rss_MB": stats[m]["peak"],
        })
    report(rows)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ("numpyro", "memory", "zarr"),
    )
