"""SVI fit, 5000 steps: skimpact against a jit-compiled NumPyro loop (lax.scan over
``svi.update``) on the same model, guide, optimiser and data, in the same process.

Usage: ``python benchmarks/bench_svi.py N [repeats] [fit_batch_size] [--processes K]``.
With a ``fit_batch_size`` the NumPyro loop draws the same-size random minibatches. With
``--processes K`` the comparison runs in K fresh processes one after the other and their
ratios are summarised: the same two compiled loops run up to 10% faster or slower against
each other from one process to the next (where the code and buffers land in memory), so a
single process's ratio is one draw from that spread.
"""

import json
import statistics
import subprocess
import sys
import time

import jax
from numpyro.infer import SVI, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import Adam

from _common import RssPeak, compile_count, data, linear, report

from skimpact import ImpactRegressor, Model

STEPS = 5000


def _numpyro_fit(X, y, batch):
    model = linear()
    svi = SVI(model, AutoNormal(model, init_loc_fn=init_to_median(num_samples=15)),
              Adam(0.01), Trace_ELBO())
    n = X.shape[0]

    @jax.jit
    def run(key, X, y):
        state = svi.init(key, X[:batch] if batch else X, y[:batch] if batch else y)

        def step(carry, _):
            state, key = carry
            if batch:
                key, k = jax.random.split(key)
                idx = jax.random.randint(k, (batch,), 0, n)
                state, loss = svi.update(state, X[idx], y[idx])
            else:
                state, loss = svi.update(state, X, y)
            return (state, key), loss

        (state, _), losses = jax.lax.scan(step, (state, key), None, length=STEPS)
        return svi.get_params(state), losses

    def fit():
        params, losses = run(jax.random.PRNGKey(0), X, y)
        jax.block_until_ready(losses)

    return fit


def main(n, repeats=3, batch=None, quiet=False):
    X, y = data(n)
    # the baseline's guide: the default ("auto") would pick a full-rank one for 7 latent dims
    est = ImpactRegressor(Model(linear), inference="svi", guide="AutoNormal", num_steps=STEPS,
                          num_samples=1000, random_state=0, fit_batch_size=batch)
    runs = {"numpyro": _numpyro_fit(X, y, batch), "skimpact": lambda: est.fit(X, y)}
    stats = {m: {"times": [], "peak": 0.0} for m in runs}
    for m, fn in runs.items():
        c0, t0 = compile_count(), time.perf_counter()
        fn()
        stats[m]["first"], stats[m]["compiles"] = time.perf_counter() - t0, compile_count() - c0
    for _ in range(repeats):
        for m, fn in runs.items():
            c0 = compile_count()
            with RssPeak() as rss:
                t0 = time.perf_counter()
                fn()
                stats[m]["times"].append(time.perf_counter() - t0)
            stats[m]["peak"] = max(stats[m]["peak"], rss.peak_mb)
            stats[m]["repeat_compiles"] = compile_count() - c0
    base = statistics.median(stats["numpyro"]["times"])
    if quiet:
        return {m: statistics.median(s["times"]) for m, s in stats.items()}
    report([
        {"impl": m, "rows": n, "fit_batch": batch or "full", "warmup_s": s["first"],
         "median_s": statistics.median(s["times"]),
         "ratio": statistics.median(s["times"]) / base, "warmup_compiles": s["compiles"],
         "repeat_compiles": s["repeat_compiles"], "peak_rss_MB": s["peak"]}
        for m, s in stats.items()
    ])
    print("skimpact diagnostics fit_seconds:", est.diagnostics_["fit_seconds"])


def processes(k, args):
    """Run ``main(*args)`` in ``k`` fresh processes in turn; print each process's medians
    and the spread of their ratios."""
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import bench_svi; "
            f"print(json.dumps(bench_svi.main(*{args!r}, quiet=True)))")
    rows = []
    for i in range(k):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        t = json.loads(out)
        rows.append({"process": i + 1, "numpyro_s": t["numpyro"],
                     "skimpact_s": t["skimpact"], "ratio": t["skimpact"] / t["numpyro"]})
    report(rows)
    ratios = sorted(r["ratio"] for r in rows)
    print(f"ratio over {k} processes: median {statistics.median(ratios):.3f}, "
          f"range {ratios[0]:.3f}-{ratios[-1]:.3f}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    k = None
    if "--processes" in argv:
        i = argv.index("--processes")
        k = int(argv[i + 1])
        del argv[i:i + 2]
    args = (int(argv[0]), int(argv[1]) if len(argv) > 1 else 3,
            int(argv[2]) if len(argv) > 2 else None)
    if k is None:
        main(*args)
    else:
        processes(k, args)
