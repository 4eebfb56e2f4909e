"""``streaming.effect_summary`` against ``summarize_effect(effect(...))`` in memory, one
call per process (clean peak RSS).

Fits the benchmark linear model (5 features) on 10k rows with SVI (1000 draws), warms the
call up on 4096 rows, then times ``repeats`` calls on N rows of the effect of raising
column 0 by one (``kind`` "mean" or "predictive") and prints the median seconds and the
peak RSS sampled during them, with the 1-minute load average before and after (the machine
is shared: a figure is comparable only with one measured at a like load). Run from the
repository root, one call at a time::

    python benchmarks/bench_summary.py 1000000 mean streamed 3
    python benchmarks/bench_summary.py 1000000 mean memory 3
    python benchmarks/bench_summary.py 1000000 predictive streamed 1
    python benchmarks/bench_summary.py 10000000 mean streamed 1

With ``PYTHONPATH`` pointing at another checkout it measures that one (before / after).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent))

from _common import RssPeak, rss_mb, compile_count, data, linear  # noqa: E402

import skimpact  # noqa: E402
from skimpact import ImpactRegressor, Model, effect, summarize_effect  # noqa: E402
from skimpact.streaming import effect_summary  # noqa: E402


def main(n=1_000_000, kind="mean", mode="streamed", repeats=1):
    X, y = data(10_000)
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=2000, num_samples=1000,
                          random_state=0).fit(X, y)
    X = data(n, seed=1)[0]

    def call(X):
        inter, base = {0: X[:, 0] + 1.0}, {0: X[:, 0]}
        if mode == "streamed":
            return effect_summary(est, X, inter, base, kind=kind)
        return summarize_effect(effect(est, X, inter, base, kind=kind))

    call(X[:4096])
    compiled = compile_count()
    base = rss_mb()
    load = os.getloadavg()[0]
    times = []
    with RssPeak() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            table = call(X)
            times.append(time.perf_counter() - start)
    print(f"skimpact from {Path(skimpact.__file__).parent}; ATE {table['mean'].iloc[0]:.4f}")
    print(f"| {mode} | kind {kind} | {n} rows | median {statistics.median(times):.2f} s of "
          f"{repeats} | peak RSS {rss.peak_mb:.0f} MB (before the call {base:.0f} MB) | "
          f"compilations in the timed calls {compile_count() - compiled} | load "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1)
