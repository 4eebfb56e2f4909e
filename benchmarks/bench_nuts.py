"""NUTS: skimpact against plain ``numpyro.infer.MCMC`` with the same kernel settings,
warm-up, samples and chains, on the same model and data, in the same process.

Usage: ``python benchmarks/bench_nuts.py N [repeats] [num_warmup] [num_samples]``
(defaults 1000 rows, 3 repeats, 500 warm-up, 1000 samples, one chain).
"""

import statistics
import sys
import time

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from _common import compile_count, data, linear, report

from skimpact import ImpactRegressor, Model


def main(n, repeats=3, warmup=500, samples=1000):
    X, y = data(n)
    model = linear()
    mcmc = MCMC(NUTS(model, target_accept_prob=0.8), num_warmup=warmup, num_samples=samples,
                num_chains=1, progress_bar=False)
    est = ImpactRegressor(Model(linear), inference="nuts", num_warmup=warmup,
                          num_samples=samples, num_chains=1, random_state=0)

    def numpyro_fit():
        mcmc.run(jax.random.PRNGKey(0), X, y=y, extra_fields=("diverging",))
        return {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}

    runs = {"numpyro": numpyro_fit, "skimpact": lambda: est.fit(X, y)}
    stats = {m: {"times": []} for m in runs}
    for m, fn in runs.items():
        c0, t0 = compile_count(), time.perf_counter()
        fn()
        stats[m]["first"], stats[m]["compiles"] = time.perf_counter() - t0, compile_count() - c0
    for _ in range(repeats):
        for m, fn in runs.items():
            c0, t0 = compile_count(), time.perf_counter()
            fn()
            stats[m]["times"].append(time.perf_counter() - t0)
            stats[m]["repeat_compiles"] = compile_count() - c0
    base = statistics.median(stats["numpyro"]["times"])
    report([
        {"impl": m, "rows": n, "warmup+samples": f"{warmup}+{samples}", "first_s": s["first"],
         "median_s": statistics.median(s["times"]),
         "ratio": statistics.median(s["times"]) / base, "first_compiles": s["compiles"],
         "repeat_compiles": s["repeat_compiles"]}
        for m, s in stats.items()
    ])


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]) if a else 1000, *(int(v) for v in a[1:]))
