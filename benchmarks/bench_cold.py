"""Cold start: the first fit in a fresh process, skimpact against plain NumPyro, in paired
fresh processes run one after the other, under ``/usr/bin/time -v``: SVI (5000 steps,
AutoNormal, N rows) against NumPyro's jitted ``svi.init`` + ``lax.scan``, and NUTS (500
warm-up, 1000 draws, one chain) against ``numpyro.infer.MCMC``.

Usage: ``python benchmarks/bench_cold.py N [pairs]``. Each round starts, in turn:

* ``numpyro``: plain NumPyro, no persistent compilation cache (JAX's default);
* ``skimpact``: skimpact with its compilation cache switched off
  (``SKIMPACT_COMPILATION_CACHE=0``): every program compiled;
* ``skimpact-cache-1`` / ``skimpact-cache-2``: skimpact with the cache in an empty
  directory, twice: the first process fills it, the second reads it;
* ``numpyro-cache-1`` / ``numpyro-cache-2``: plain NumPyro with JAX's persistent cache in an
  empty directory (every program cached), twice: what any jit-compiled code pays in a
  second process, which still traces and lowers its programs;
* ``numpyro-draws-cache-1`` / ``numpyro-draws-cache-2``: the same with the guide's 1000
  posterior draws in NumPyro's program too, as a skimpact fit returns them;
* ``numpyro-nuts`` / ``skimpact-nuts``: the NUTS pair, both without a cache.

Each process reports its import time, its first fit, a second ("steady") fit of the
same shape, and its compilations (programs read from the cache not counted);
``/usr/bin/time -v`` adds wall time and peak RSS of the whole process.
``python benchmarks/bench_cold.py --one IMPL N`` is the child process.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

STEPS = 5000


def child(impl, n):
    t0 = time.perf_counter()
    import jax
    from _common import cache_hits, compile_count, data, linear

    if impl in ("numpyro", "numpyro-draws"):
        from numpyro.infer import SVI, Trace_ELBO, init_to_median
        from numpyro.infer.autoguide import AutoNormal
        from numpyro.optim import Adam
    elif impl == "numpyro-nuts":
        from numpyro.infer import MCMC, NUTS
    else:
        from sklearn.base import clone

        from skimpact import ImpactRegressor, Model
    imported = time.perf_counter() - t0
    X, y = data(n)
    if impl in ("numpyro", "numpyro-draws"):
        model = linear()
        guide = AutoNormal(model, init_loc_fn=init_to_median(num_samples=15))
        svi = SVI(model, guide, Adam(0.01), Trace_ELBO())

        @jax.jit
        def run(key, X, y):
            state = svi.init(key, X, y)
            state, losses = jax.lax.scan(lambda s, _: svi.update(s, X, y), state, None,
                                         length=STEPS)
            params = svi.get_params(state)
            if impl == "numpyro-draws":
                draws = guide.sample_posterior(jax.random.fold_in(key, 1), params, X,
                                               sample_shape=(1000,))
                return draws, losses
            return params, losses

        def fit():
            jax.block_until_ready(run(jax.random.PRNGKey(0), X, y))
    elif impl == "numpyro-nuts":
        mcmc = MCMC(NUTS(linear()), num_warmup=500, num_samples=1000, progress_bar=False)

        def fit():  # the steady fit re-runs the same MCMC object
            mcmc.run(jax.random.PRNGKey(0), X, y)
            jax.block_until_ready(mcmc.get_samples())
    else:
        settings = ({"inference": "nuts", "num_warmup": 500} if impl == "skimpact-nuts" else
                    {"inference": "svi", "guide": "AutoNormal", "num_steps": STEPS})
        est = ImpactRegressor(Model(linear), num_samples=1000, random_state=0, **settings)

        def fit():
            clone(est).fit(X, y)
    c0, t1 = compile_count(), time.perf_counter()
    fit()
    first, compiles, hits = time.perf_counter() - t1, compile_count() - c0, cache_hits()
    t2 = time.perf_counter()
    fit()
    steady = time.perf_counter() - t2
    print(json.dumps({"impl": impl, "import_s": imported, "first_fit_s": first,
                      "steady_fit_s": steady, "compiles": compiles, "cache_hits": hits}))


def _spawn(impl, n, env):
    child_impl = impl.split("-cache-")[0]
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--one", child_impl, str(n)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["impl"] = impl
    for line in done.stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            m, s = line.rsplit(" ", 1)[1].split(":")[-2:]
            out["process_wall_s"] = 60 * float(m) + float(s)
        elif line.startswith("Maximum resident set size"):
            out["process_peak_rss_MB"] = int(line.rsplit(" ", 1)[1]) / 1024
    return out


def main(n, pairs=3):
    base = {k: v for k, v in os.environ.items()
            if k not in ("SKIMPACT_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
                         "PYTHONHASHSEED")}
    # Each process gets its own random string hash seed, as Python gives by default, except
    # plain NumPyro's cache pair: its Trace_ELBO orders its sum by string hashes, and the
    # pair shares a fixed seed so that its second process can find the step program.
    results = []
    for _ in range(pairs):
        with tempfile.TemporaryDirectory() as cache:
            numpyro_cache = {"JAX_COMPILATION_CACHE_DIR": os.path.join(cache, "numpyro"),
                             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                             "PYTHONHASHSEED": "0"}
            draws_cache = {**numpyro_cache,
                           "JAX_COMPILATION_CACHE_DIR": os.path.join(cache, "numpyro-draws")}
            envs = {
                "numpyro": base,
                "skimpact": {**base, "SKIMPACT_COMPILATION_CACHE": "0"},
                "skimpact-cache-1": {**base, "XDG_CACHE_HOME": cache},
                "skimpact-cache-2": {**base, "XDG_CACHE_HOME": cache},
                "numpyro-cache-1": {**base, **numpyro_cache},
                "numpyro-cache-2": {**base, **numpyro_cache},
                "numpyro-draws-cache-1": {**base, **draws_cache},
                "numpyro-draws-cache-2": {**base, **draws_cache},
                "numpyro-nuts": base,
                "skimpact-nuts": {**base, "SKIMPACT_COMPILATION_CACHE": "0"},
            }
            results += [_spawn(impl, n, env) for impl, env in envs.items()]
    rows = []
    impls = ("numpyro", "skimpact", "skimpact-cache-1", "skimpact-cache-2", "numpyro-cache-1",
             "numpyro-cache-2", "numpyro-draws-cache-1", "numpyro-draws-cache-2",
             "numpyro-nuts", "skimpact-nuts")
    for impl in impls:
        rs = [r for r in results if r["impl"] == impl]
        rows.append({
            "impl": impl, "rows": n,
            **{k: statistics.median(r[k] for r in rs)
               for k in ("import_s", "first_fit_s", "steady_fit_s", "compiles", "cache_hits",
                         "process_wall_s", "process_peak_rss_MB")},
        })
    first = {r["impl"]: r["first_fit_s"] for r in rows}
    baseline = {"svi": first["numpyro"], "nuts": first["numpyro-nuts"]}
    for r in rows:
        r["first_fit_ratio"] = r["first_fit_s"] / baseline[
            "nuts" if r["impl"].endswith("nuts") else "svi"]
        r["first_over_own_steady"] = r["first_fit_s"] / r["steady_fit_s"]
    from _common import report

    report(rows)


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
