"""Scaling curve: posterior predictive with 1000 draws for growing row counts, in memory
and streamed to Zarr, against the well-batched plain-NumPyro baseline in memory; seconds
per million rows and peak RSS, with the disk's write bandwidth beside them.

Usage: ``python benchmarks/bench_scaling.py N1,N2,... [modes]`` (default modes
``zarr,memory,batched``; run one process per N for clean peak RSS). Each mode is warmed up
(compiled) on 10,000 rows, then timed once on N rows. ``--dd`` measures the write
bandwidth of the current directory's disk with ``dd ... oflag=direct`` (1 GiB) first.
"""

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from _common import RssPeak, data, linear, report, well_batched

from skimpact import ImpactRegressor, Model


def disk_write_mb_s(directory, mib=1024):
    """Write bandwidth of ``directory``'s disk in MB/s, bypassing the page cache."""
    path = os.path.join(directory, "dd.bin")
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}",
                          "oflag=direct"], capture_output=True, text=True, check=True).stderr
    os.remove(path)
    return float(out.strip().splitlines()[-1].split(",")[-1].split()[0]), out.strip()


def main(ns, modes=("zarr", "memory", "batched"), dd=False):
    tmp = tempfile.mkdtemp(dir=".")
    if dd:
        print("dd:", disk_write_mb_s(tmp)[1])
    X_fit, y_fit = data(1000)
    est = ImpactRegressor(Model(linear), num_steps=500, num_samples=1000, random_state=0)
    est.fit(X_fit, y_fit)
    draws = {k: v.values.reshape((-1,) + v.shape[2:])
             for k, v in est.posterior_["posterior"].to_dataset().data_vars.items()}
    batched = well_batched(linear(), draws)

    def zarr_run(X):
        path = os.path.join(tmp, f"out{time.monotonic_ns()}.zarr")
        est.sample_posterior_predictive(X, store=path)
        shutil.rmtree(path)

    runs = {
        "zarr": zarr_run,
        "memory": lambda X: est.sample_posterior_predictive(X)["predictions"]["y"].shape,
        "batched": lambda X: batched(jax.random.PRNGKey(0), X).shape,
    }
    rows = []
    for n in ns:
        X, _ = data(n, seed=1)
        for m in modes:
            runs[m](X[:10_000])
            gc.collect()
            with RssPeak() as rss:
                t0 = time.perf_counter()
                runs[m](X)
                seconds = time.perf_counter() - t0
            rows.append({"mode": m, "rows": n, "seconds": seconds,
                         "s_per_M_rows": seconds / n * 1e6, "output_GB": n * 1000 * 4 / 1e9,
                         "peak_rss_MB": rss.peak_mb})
    report(rows)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dd"]
    main([int(v) for v in args[0].split(",")],
         tuple(args[1].split(",")) if len(args) > 1 else ("zarr", "memory", "batched"),
         dd="--dd" in sys.argv)
