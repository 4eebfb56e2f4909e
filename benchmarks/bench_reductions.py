"""Reductions over the draws at scale: ``predict``, ``predict_quantiles``, ``score``, the
CRPS scorer and the log-score scorer on N rows x 1000 draws, one call per process (clean peak RSS).

Fits the benchmark linear model (5 features) on 10k rows with SVI (1000 draws), warms the
call up on 4096 rows (compiles the batch program), then times ``repeats`` calls on N rows
and prints the median seconds and the peak RSS sampled during them. Run from the
repository root, one call at a time::

    python benchmarks/bench_reductions.py 1000000 predict 3
    python benchmarks/bench_reductions.py 1000000 quantiles 1
    python benchmarks/bench_reductions.py 1000000 score 1
    python benchmarks/bench_reductions.py 1000000 crps 1
    python benchmarks/bench_reductions.py 1000000 log_score 1

With ``PYTHONPATH`` pointing at another checkout it measures that one (before / after).
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent))

from _common import RssPeak, rss_mb, compile_count, data, linear  # noqa: E402

import skimpact  # noqa: E402
from skimpact import ImpactRegressor, Model  # noqa: E402
from skimpact.metrics import log_score_scorer, neg_crps_scorer  # noqa: E402
from skimpact.pipeline import predict_quantiles  # noqa: E402


def main(n=1_000_000, call="predict", repeats=1):
    X, y = data(n)
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=2000, num_samples=1000,
                          random_state=0).fit(X[:10_000], y[:10_000])
    calls = {
        "predict": lambda X, y: est.predict(X),
        "quantiles": lambda X, y: predict_quantiles(est, X, [0.05, 0.5, 0.95]),
        "score": lambda X, y: est.score(X, y),
        "crps": lambda X, y: neg_crps_scorer(est, X, y),
        "log_score": lambda X, y: log_score_scorer(est, X, y),
    }
    fn = calls[call]
    fn(X[:4096], y[:4096])
    compiled = compile_count()
    base = rss_mb()
    times = []
    with RssPeak() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            fn(X, y)
            times.append(time.perf_counter() - start)
    print(f"skimpact from {Path(skimpact.__file__).parent}")
    print(f"| {call} | {n} rows | median {statistics.median(times):.2f} s of {repeats} | "
          f"peak RSS {rss.peak_mb:.0f} MB (before the call {base:.0f} MB) | "
          f"compilations in the timed calls {compile_count() - compiled} |")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
