"""Shared helpers of the benchmarks: timing, peak memory, compilation counts, models."""

import resource
import statistics
import time

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist

_COMPILES = [0]
_CACHE_HITS = [0]


def _on_event(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


def _on_hit(name, *args, **kwargs):
    if name == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)
jax.monitoring.register_event_listener(_on_hit)


def compile_count():
    """Number of XLA compilations in this process so far (programs read from the
    persistent compilation cache are not counted: see :func:`cache_hits`)."""
    return _COMPILES[0] - _CACHE_HITS[0]


def cache_hits():
    """Number of programs read from JAX's persistent compilation cache so far."""
    return _CACHE_HITS[0]


def peak_rss_mb():
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssPeak:
    """Context manager sampling this process's resident memory; ``.peak_mb`` after exit."""

    def __enter__(self):
        import threading

        self.peak_mb, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def timed(fn, repeats):
    """Run ``fn`` once to warm up, then ``repeats`` times; returns (first, median) seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def linear(prior_scale=1.0):
    """The benchmark model: Bayesian linear regression with a data plate."""

    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, prior_scale).expand([X.shape[1]]).to_event(1))
        a = numpyro.sample("a", dist.Normal(0, prior_scale))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(a + X @ b, sigma), obs=y)

    return model


def data(n, p=5, seed=0):
    """Simulated regression data with coefficients ``1..p`` and noise scale 0.5."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    y = (0.5 + X @ np.arange(1.0, p + 1) + 0.5 * rng.normal(size=n)).astype(np.float32)
    return X, y


def report(rows):
    """Print benchmark rows as a Markdown table."""
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(_fmt(r[k]) for k in keys) + " |")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


CHUNK_BYTES = 4 * 2**20  # output per chunk of the well-batched NumPyro baseline


def well_batched(model, draws, site="y", chunk_bytes=CHUNK_BYTES):
    """Plain NumPyro at its best on CPU: ``Predictive`` (one vmap over the draws) jitted and
    applied to row chunks of about ``chunk_bytes`` of output, the next chunk dispatched
    before the previous one is copied out to a preallocated NumPy array.

    Returns ``predict(key, X) -> ndarray (draws, rows)``.
    """
    from numpyro.infer import Predictive

    n_draws = next(iter(draws.values())).shape[0]
    fn = jax.jit(lambda key, X: Predictive(model, posterior_samples=draws, return_sites=[site],
                                           parallel=True)(key, X)[site])
    rows = max(1, chunk_bytes // (4 * n_draws))

    def predict(key, X):
        n = X.shape[0]
        out = np.empty((n_draws, n), np.float32)
        bounds = [(s, min(s + rows, n)) for s in range(0, n, rows)]
        pending = fn(jax.random.fold_in(key, 0), X[: bounds[0][1]])
        for i, (start, stop) in enumerate(bounds):
            done = pending
            if i + 1 < len(bounds):
                nxt = bounds[i + 1]
                pending = fn(jax.random.fold_in(key, i + 1), X[nxt[0]:nxt[1]])
            out[:, start:stop] = np.asarray(done)
        return out

    return predict
