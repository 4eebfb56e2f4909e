"""Effect summary over N rows x 1000 draws: in one process against a Dask cluster.

Both runs use the same engine and give the same numbers (checked): in one process,
:func:`skimpact.streaming.effect_summary` streams both scenarios batch by batch; on the
cluster every partition does the same on a worker and the client adds the per-draw sums.
Printed per mode: the time of the timed run (compilation excluded: a small warm-up with the
same batch shape runs first), the peak RSS of the process (in-process) or of each worker
(cluster; the workers' high-water marks are reset before the timed run), and the bytes the
processes wrote to disk (``/proc/<pid>/io``: zero for a summary). ``full`` (N <= 200k only)
is the in-memory path, ``summarize_effect(effect(...))``, whose two scenarios and
difference take 12 bytes x draws x N.

Usage::

    python benchmarks/bench_dask.py N [modes] [--workers 2] [--partitions 8]
    python benchmarks/bench_dask.py 1000000 local,cluster
    python benchmarks/bench_dask.py 10000000 cluster --scheduler tcp://10.0.0.5:8786

``--scheduler ADDRESS`` uses a running cluster instead of a ``LocalCluster`` (its workers
need skimpact and its dependencies installed; the rows are generated on the workers with
``dask.array.random``, so nothing but the estimator and the sums crosses the network).
"""

import argparse
import gc
import os
import time

import numpy as np

from _common import RssPeak, data, linear, report

from skimpact import ImpactRegressor, Model, effect, summarize_effect
from skimpact.streaming import effect_summary

DRAWS = 1000
INTERVENTION = {0: 1.0}
BASELINE = {0: 0.0}


def _written():
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("write_bytes")).split()[1])


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM, the peak resident set size
    return True


def _worker_memory():
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh)
    return {"peak_mb": int(status["VmHWM"].split()[0]) / 1024, "written": _written()}


def _rows(n, partitions, seed=1):
    import dask.array as da

    rs = da.random.RandomState(seed)
    return rs.normal(size=(n, 5), chunks=(-(-n // partitions), 5)).astype(np.float32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("modes", nargs="?", default="local,cluster")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--scheduler", default=None)
    args = parser.parse_args()
    modes = args.modes.split(",")

    X_fit, y_fit = data(1000)
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=500, num_samples=DRAWS,
                          random_state=0).fit(X_fit, y_fit)
    warm = data(20000, seed=2)[0]  # the same batch shape as N: compiles once
    rows, results = [], {}

    if "full" in modes and args.n <= 200_000:
        X = _rows(args.n, args.partitions).compute()
        summarize_effect(effect(est, warm, INTERVENTION, BASELINE))
        gc.collect()
        w0 = _written()
        with RssPeak() as rss:
            t0 = time.perf_counter()
            results["full"] = summarize_effect(effect(est, X, INTERVENTION, BASELINE))
            seconds = time.perf_counter() - t0
        rows.append({"mode": "full (in memory)", "rows": args.n, "seconds": seconds,
                     "peak_rss_MB": f"{rss.peak_mb:.0f}", "bytes_written": _written() - w0})
        del X

    if "local" in modes:
        X = _rows(args.n, args.partitions).compute()
        effect_summary(est, warm, INTERVENTION, BASELINE)
        gc.collect()
        w0 = _written()
        with RssPeak() as rss:
            t0 = time.perf_counter()
            results["local"] = effect_summary(est, X, INTERVENTION, BASELINE)
            seconds = time.perf_counter() - t0
        rows.append({"mode": "streamed, one process", "rows": args.n, "seconds": seconds,
                     "peak_rss_MB": f"{rss.peak_mb:.0f}", "bytes_written": _written() - w0})
        del X
        gc.collect()

    if "cluster" in modes:
        import dask.array as da
        import distributed

        if args.scheduler:
            cluster, client = None, distributed.Client(args.scheduler)
        else:
            cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        try:
            n_workers = len(client.scheduler_info()["workers"])
            effect_summary(est, da.from_array(warm, chunks=(10000, 5)), INTERVENTION,
                           BASELINE)
            client.run(_reset_peak)
            before = client.run(_worker_memory)
            w0 = _written()
            t0 = time.perf_counter()
            results["cluster"] = effect_summary(est, _rows(args.n, args.partitions),
                                                INTERVENTION, BASELINE)
            seconds = time.perf_counter() - t0
            after = client.run(_worker_memory)
            peaks = "/".join(f"{m['peak_mb']:.0f}" for m in after.values())
            written = sum(after[w]["written"] - before[w]["written"] for w in after)
            rows.append({"mode": f"streamed, {n_workers} workers x "
                                 f"{args.partitions} partitions",
                         "rows": args.n, "seconds": seconds, "peak_rss_MB": peaks,
                         "bytes_written": written + _written() - w0})
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    report(rows)
    if len(results) > 1:
        first, *others = results.values()
        for other in others:
            np.testing.assert_allclose(other.to_numpy(), first.to_numpy(), rtol=1e-5)
        print(f"\nsummaries agree ({', '.join(results)}); ATE {first['mean'].iloc[0]:.4f} "
              f"[{first['hdi_lower'].iloc[0]:.4f}, {first['hdi_upper'].iloc[0]:.4f}]")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
