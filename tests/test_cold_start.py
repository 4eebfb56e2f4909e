"""Cold start: the guide is initialised inside one compiled program, no tracer outlives it,
and a second process reads every compiled program from the persistent cache."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import numpyro.infer.autoguide as autoguide
import pytest
from numpyro.infer import SVI, Trace_ELBO, init_to_median
from numpyro.optim import Adam
from numpyro.primitives import mutable
from sklearn.base import clone

from skimpact import ImpactRegressor, Model
from skimpact._compilation_cache import default_cache_dir, enable_compilation_cache
from skimpact.inference import _tapered_adam, run_inference

from models import slopes

_EVENTS = {"compile": 0}


def _count(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _EVENTS["compile"] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


_linear = slopes()


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n)).astype(np.float32)


def _settings(guide, steps):
    return {"guide": guide, "num_steps": steps, "learning_rate": 0.01, "num_samples": 7,
            "progress_bar": False, "fit_batch_size": None}


@pytest.mark.slow
@pytest.mark.parametrize("guide", ["AutoLowRankMultivariateNormal", "AutoDelta",
                                   "AutoMultivariateNormal"])
def test_compiled_init_equals_numpyro_eager_init(guide):
    # NumPyro's own path: the guide set up eagerly, then one jitted step (with the fit's
    # optimiser: one step of one is a tapered step) and the draws.
    X, y = _data(57)
    key = jax.random.PRNGKey(11)
    k_init, k_post = jax.random.split(key)
    g = getattr(autoguide, guide)(_linear, init_loc_fn=init_to_median(num_samples=15))
    svi = SVI(_linear, g, _tapered_adam(0.01, 1), Trace_ELBO())
    state, loss = jax.jit(svi.update)(svi.init(k_init, X, y=y), X, y=y)
    expected = g.sample_posterior(k_post, svi.get_params(state), X, y=y, sample_shape=(7,))
    before = _EVENTS["compile"]
    result = run_inference("svi", _linear, (X,), {"y": y}, latent_sites=("b", "sigma"),
                           deterministic_sites=(), key=key, settings=_settings(guide, 1))
    # init, one step, parameters, draws, plus a few key splits: not one per operation
    assert _EVENTS["compile"] - before <= 8
    np.testing.assert_allclose(result.diagnostics["loss"], [loss], rtol=1e-5)
    for site in ("b", "sigma"):
        # equal up to float32 rounding: XLA fuses the compiled init's arithmetic
        np.testing.assert_allclose(result.draws[site][0], expected[site], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("guide", ["AutoNormal", "AutoMultivariateNormal", "AutoDelta"])
def test_the_elbo_is_trace_elbo_summed_in_site_order(guide):
    from skimpact.inference import _SiteOrderELBO

    X, y = _data(31)
    g = getattr(autoguide, guide)(_linear)
    svi = SVI(_linear, g, Adam(0.01), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), X, y=y))
    for seed in range(3):  # same random numbers: equal up to the order of the float32 sum
        key = jax.random.PRNGKey(seed)
        expected = Trace_ELBO().loss(key, params, _linear, g, X, y=y)
        np.testing.assert_allclose(_SiteOrderELBO().loss(key, params, _linear, g, X, y=y),
                                   expected, rtol=1e-6)

    def counting(X, y=None):  # a mutable site's state is Trace_ELBO's to carry
        calls = mutable("calls", {"n": 0.0})
        calls["n"] = calls["n"] + 1.0
        _linear(X, y)

    g = autoguide.AutoNormal(counting)
    svi = SVI(counting, g, Adam(0.01), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), X, y=y))
    out = _SiteOrderELBO().loss_with_mutable_state(jax.random.PRNGKey(1), params, counting, g,
                                                    X, y=y)
    assert out["mutable_state"] == {"calls": {"n": 1.0}}


@pytest.mark.slow
def test_fits_leak_no_tracers_and_repeat_exactly():
    X, y = _data(64)
    est = ImpactRegressor(Model(lambda: _linear), inference="svi", num_steps=200,
                          num_samples=20, random_state=3)
    with jax.checking_leaks():
        est.fit(X, y)
        twin = clone(est).fit(X, y)  # same shape: reuses every compiled program
        pred = twin.predict(X)
    np.testing.assert_array_equal(est.diagnostics_["loss"], twin.diagnostics_["loss"])
    np.testing.assert_array_equal(est.predict(X), pred)
    other = clone(est).set_params(guide="AutoMultivariateNormal").fit(*_data(40, seed=1))
    assert np.isfinite(other.diagnostics_["loss"]).all()


_SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np, numpyro, numpyro.distributions as dist
    events = {"compile": 0, "hit": 0}
    def on(name, *a, **k):
        if name == "/jax/core/compile/backend_compile_duration":
            events["compile"] += 1
    def on_event(name, *a, **k):
        if name == "/jax/compilation_cache/cache_hits":
            events["hit"] += 1
    jax.monitoring.register_event_duration_secs_listener(on)
    jax.monitoring.register_event_listener(on_event)
    from skimpact import ImpactRegressor
    X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    y = X @ np.array([1.0, 2.0], np.float32)
    est = ImpactRegressor(inference="svi", guide="AutoMultivariateNormal", num_steps=100,
                          num_samples=10, random_state=0).fit(X, y)
    est.predict(X)
    print(json.dumps(events))
""")


@pytest.mark.slow
def test_second_process_reads_every_program_from_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SKIMPACT_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    # Two string hash seeds: NumPyro orders the terms of Trace_ELBO and the fields of its
    # distributions by sets of names, so with them the SVI step program and the model's
    # compiled trace differed between the processes and missed the cache (these two seeds
    # order both Normal's and HalfNormal's fields differently).
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", _SCRIPT],
                                  env={**env, "PYTHONHASHSEED": seed}, check=True,
                                  capture_output=True, text=True).stdout.splitlines()[-1])
        for seed in ("1", "6")
    ]
    first, second = runs
    # the first process compiles (a program it builds twice may already hit its own entry)
    assert first["compile"] > 5 and first["hit"] < first["compile"]
    assert os.listdir(tmp_path / "skimpact" / "jax")
    # every program the second process needs is read from disk: nothing is compiled
    assert second["hit"] == second["compile"] == first["compile"]


def test_cache_opt_out_and_user_settings_are_respected():
    saved = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        for off in ("0", "off", "False"):
            assert enable_compilation_cache({"SKIMPACT_COMPILATION_CACHE": off}) is None
        assert enable_compilation_cache({"JAX_COMPILATION_CACHE_DIR": "/elsewhere"}) is None
        assert jax.config.jax_compilation_cache_dir is None
        jax.config.update("jax_compilation_cache_dir", "/mine")
        assert enable_compilation_cache({}) is None
        assert jax.config.jax_compilation_cache_dir == "/mine"
    finally:
        jax.config.update("jax_compilation_cache_dir", saved)
    assert default_cache_dir({"XDG_CACHE_HOME": "/c"}, platform="linux") == "/c/skimpact/jax"
    assert default_cache_dir({}, platform="darwin").endswith(
        os.path.join("Library", "Caches", "skimpact", "jax"))
    assert default_cache_dir({"LOCALAPPDATA": "L"}, platform="win32") == os.path.join(
        "L", "skimpact", "jax")


def test_nuts_refit_compiles_nothing():
    X, y = _data(30)
    est = ImpactRegressor(Model(lambda: _linear), inference="nuts", num_warmup=150,
                          num_samples=150, random_state=0)
    est.fit(X, y)
    before = _EVENTS["compile"]
    twin = clone(est).fit(X, y)  # every loop reuses the first fit's compiled programs
    assert _EVENTS["compile"] == before
    np.testing.assert_array_equal(est.posterior_["posterior"]["b"].values,
                                  twin.posterior_["posterior"]["b"].values)
    assert est.posterior_["posterior"]["b"].shape == (2, 150, 3)  # two chains by default


_FIRST_FITS = textwrap.dedent("""
    import json, jax, numpy as np, numpyro, numpyro.distributions as dist
    count = [0]
    def on(name, *a, **k):
        if name == "/jax/core/compile/backend_compile_duration":
            count[0] += 1
    jax.monitoring.register_event_duration_secs_listener(on)
    from sklearn.base import clone
    from skimpact import ImpactRegressor, Model
    def linear():
        def model(X, y=None):
            b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            with numpyro.plate("obs", X.shape[0]):
                numpyro.sample("y", dist.Normal(X @ b, sigma), obs=y)
        return model
    X = np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], np.float32)
    out = {}
    for name, settings in [("nuts", dict(inference="auto", num_warmup=100, num_samples=100)),
                           ("mean_field", dict(inference="svi", guide="AutoNormal",
                                               num_steps=200, num_samples=50))]:
        est = ImpactRegressor(Model(linear), random_state=0, **settings)
        before = count[0]
        est.fit(X, y)
        first = count[0] - before
        clone(est).fit(X, y)
        out[name] = [first, count[0] - before - first, est.inference_]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_first_fits_compile_whole_programs_and_refits_nothing():
    # A fresh process without the cache: NumPyro's eager NUTS set-up, the model's first
    # trace and the Laplace check of a mean-field guide once compiled one program per
    # operation (about 150 for a first NUTS fit); now each is one program.
    env = {**os.environ, "SKIMPACT_COMPILATION_CACHE": "0"}
    out = json.loads(subprocess.run([sys.executable, "-c", _FIRST_FITS], env=env, check=True,
                                    capture_output=True, text=True).stdout.splitlines()[-1])
    first, refit, method = out["nuts"]
    assert method == "nuts" and first <= 15 and refit == 0
    # SVI after it in the same process: the guide's initialisation, the steps, and the
    # draws with the Laplace check (the model's trace is shared with the NUTS fit)
    first, refit, method = out["mean_field"]
    assert method == "svi" and first <= 4 and refit == 0


@pytest.mark.slow
def test_nuts_and_laplace_check_leak_no_tracers():
    X, y = _data(48)
    with jax.checking_leaks():
        nuts = ImpactRegressor(Model(lambda: _linear), inference="nuts", num_warmup=50,
                               num_samples=50, random_state=1).fit(X, y)
        svi = ImpactRegressor(Model(lambda: _linear), inference="svi", guide="AutoNormal",
                              num_steps=1000, learning_rate=0.05, num_samples=20,
                              random_state=1).fit(X, y)
    assert np.isfinite(nuts.posterior_["posterior"]["b"].values).all()
    assert -1 <= svi.diagnostics_["laplace_corr"] <= 1


@pytest.mark.slow
def test_the_svi_chunk_schedule_changes_nothing_of_the_fit(monkeypatch):
    # The chunk lengths follow the clock; the fit must not: one compiled loop runs every
    # chunk, so a first chunk of 3 steps and then chunks of one step (each planned to last
    # 1e-9 s) give the same losses and draws bit for bit as the default schedule (100
    # steps, then chunks of ~0.25 s, here the remaining steps at once).
    from skimpact import inference

    X, y = _data(40)
    est = ImpactRegressor(Model(lambda: _linear), inference="svi", guide="AutoNormal",
                          num_steps=60, num_samples=20, random_state=2)
    batched = clone(est).set_params(fit_batch_size=16)
    default = est.fit(X, y), clone(batched).fit(X, y)
    monkeypatch.setattr(inference, "_SVI_FIRST_CHUNK", 3)
    monkeypatch.setattr(inference, "_SVI_CHUNK_SECONDS", 1e-9)
    tiny = clone(est).fit(X, y), clone(batched).fit(X, y)
    for a, b in zip(default, tiny):
        assert len(b.diagnostics_["loss"]) == 60
        np.testing.assert_array_equal(a.diagnostics_["loss"], b.diagnostics_["loss"])
        np.testing.assert_array_equal(a.posterior_["posterior"]["b"].values,
                                      b.posterior_["posterior"]["b"].values)


def test_refit_of_a_model_with_deterministic_sites_compiles_nothing():
    # the built-in linear model records deterministic sites, evaluated per draw after the
    # fit in one program per model and shape (it used to compile a loop on every fit)
    X, y = _data(33)
    est = ImpactRegressor(inference="svi", num_steps=50, num_samples=10, random_state=0)
    est.fit(X, y)
    assert est.model_info_.deterministic_sites
    before = _EVENTS["compile"]
    twin = clone(est).fit(X, y)
    assert _EVENTS["compile"] == before
    for site in est.model_info_.deterministic_sites:
        np.testing.assert_array_equal(est.posterior_["posterior"][site].values,
                                      twin.posterior_["posterior"][site].values)
